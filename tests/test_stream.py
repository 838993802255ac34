"""Stream workers against the real Redis (and both stores): every item decided and published
exactly once by two workers, a worker killed in a batch loses nothing and duplicates nothing,
a poison item is set aside, SIGTERM hands back a finished batch, the in-process source decides
alike. Redis is reached at ``LABELLOOP_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``);
without it these tests skip, unless ``LABELLOOP_REQUIRE_REDIS=1`` makes that a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from labelloop.store.stream_decisions import count_decisions
from labelloop.workers.stream import (
    InProcessSink,
    InProcessSource,
    RedisStreamSink,
    RedisStreamSource,
    StreamWorker,
)

REDIS_URL = os.environ.get("LABELLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")
WORDS = ["win", "prize", "call", "meeting", "lunch", "free", "cash", "tomorrow", "now", "home"]


def _texts(n: int) -> list[str]:
    return [
        f"message {i}: {WORDS[i % 10]} {WORDS[(i * 7) % 10]} {WORDS[(i * 3) % 10]}"
        for i in range(n)
    ]


def _fill(client: Any, stream: str, n: int) -> None:
    pipe = client.pipeline()
    for i, text in enumerate(_texts(n)):
        pipe.xadd(stream, {"external_id": f"x{i}", "text": text})
    pipe.execute()


def _names(client: Any) -> tuple[str, str, str]:
    p = client.test_prefix
    return f"{p}:in", f"{p}:group", f"{p}:out"


def _published(client: Any, out: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(f["decision"]) for _, f in client.xrange(out)]


def _pending(client: Any, stream: str, group: str) -> int:
    return int(client.xpending(stream, group)["pending"])


def test_two_workers_share_a_stream_and_decide_each_item_once(make_project, redis) -> None:
    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 300)
    workers = [
        StreamWorker(
            p.ctx,
            RedisStreamSource(redis, stream, group, consumer=f"w{k}"),
            RedisStreamSink(redis, out),
            batch_size=32,
        )
        for k in range(2)
    ]
    threads = [threading.Thread(target=w.run, kwargs={"until_idle": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)
    decisions = _published(redis, out)
    assert sorted(d["external_id"] for d in decisions) == sorted(f"x{i}" for i in range(300))
    assert len({d["item_id"] for d in decisions}) == 300
    assert {d["decision"] for d in decisions} <= {"auto", "review"}
    assert sum(w.report.published for w in workers) == 300
    assert sum(w.report.decided for w in workers) == 300
    assert _pending(redis, stream, group) == 0
    with p.ctx.db.engine.connect() as conn:
        assert count_decisions(conn, p.ctx.id) == 300


def test_a_redelivered_batch_makes_no_second_decision(make_project, redis) -> None:
    """Entries handed out again (as after a crash) find their decisions stored."""
    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 20)
    sink = RedisStreamSink(redis, out)
    first = StreamWorker(p.ctx, RedisStreamSource(redis, stream, group, consumer="a"), sink)
    first.run(until_idle=True)
    # The same entries again, under another group: a full redelivery.
    again = StreamWorker(p.ctx, RedisStreamSource(redis, stream, group + "2", consumer="b"), sink)
    again.run(until_idle=True)
    assert first.report.decided == 20 and again.report.decided == 0
    assert again.report.already_published == 20 and again.report.published == 0
    assert again._labeler.embedder.computed == 0  # the vectors came from the store's cache
    assert len(_published(redis, out)) == 20
    with p.ctx.db.engine.connect() as conn:
        assert count_decisions(conn, p.ctx.id) == 20


_CHILD = """
import sys, time
from pathlib import Path
from labelloop.store.context import ProjectContext
from labelloop.workers.stream import (
    RedisStreamSink, RedisStreamSource, StreamWorker, redis_client, stop_on_sigterm,
)
folder, url, stream, group, out, marker, go = sys.argv[1:8]
client = redis_client(url)

def hold(entries):  # inside the batch: decisions committed, nothing published or acked
    Path(marker).write_text(str(len(entries)))
    while not Path(go).exists():
        time.sleep(0.05)

ctx = ProjectContext.open(folder)
w = StreamWorker(
    ctx, RedisStreamSource(client, stream, group, consumer="child"),
    RedisStreamSink(client, out), batch_size=16, before_publish=hold,
)
with stop_on_sigterm(w):
    w.run()
"""


def _start_child(tmp_path: Path, p: Any, client: Any) -> tuple[subprocess.Popen, Path, Path]:
    script = tmp_path / "child.py"
    script.write_text(_CHILD, encoding="utf-8")
    marker, go = tmp_path / "in-batch", tmp_path / "go"
    stream, group, out = _names(client)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(p.ctx.folder), REDIS_URL, stream, group, out]
        + [str(marker), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300  # a bound on a hung child, not a timing assumption
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the worker exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the worker never reached its first batch")
        time.sleep(0.05)
    return proc, marker, go


def test_a_worker_killed_in_a_batch_loses_nothing_and_duplicates_nothing(
    make_project, redis, tmp_path: Path
) -> None:
    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 50)
    proc, marker, _ = _start_child(tmp_path, p, redis)
    assert marker.read_text() == "16"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    # Its batch, decided, unpublished and unacked; and the next one if it was read meanwhile
    # (run() labels the next batch while one commits), labeled and not yet written.
    assert _pending(redis, stream, group) in (16, 32)
    rescue = StreamWorker(
        p.ctx,
        RedisStreamSource(redis, stream, group, consumer="rescue", claim_idle_ms=0),
        RedisStreamSink(redis, out),
        batch_size=16,
    )
    rescue.run(until_idle=True)
    decisions = _published(redis, out)
    assert Counter(d["external_id"] for d in decisions) == Counter(f"x{i}" for i in range(50))
    assert rescue.report.decided == 50 - 16  # the killed batch's decisions were reused
    assert rescue.report.published == 50
    assert _pending(redis, stream, group) == 0
    with p.ctx.db.engine.connect() as conn:
        assert count_decisions(conn, p.ctx.id) == 50


def test_sigterm_finishes_and_acks_the_batch_then_exits_0(
    make_project, redis, tmp_path: Path
) -> None:
    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 50)
    proc, _, go = _start_child(tmp_path, p, redis)
    proc.send_signal(signal.SIGTERM)
    go.write_text("")
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    # The batches in hand (the one committing, and the next if it was read before the
    # signal) are published and acknowledged, and nothing more is read.
    published = len(_published(redis, out))
    assert published in (16, 32)
    assert _pending(redis, stream, group) == 0
    groups = {g["name"]: g for g in redis.xinfo_groups(stream)}
    assert int(groups[group]["lag"]) == 50 - published
    rest = StreamWorker(
        p.ctx, RedisStreamSource(redis, stream, group, consumer="b"), RedisStreamSink(redis, out)
    )
    rest.run(until_idle=True)
    decisions = _published(redis, out)
    assert Counter(d["external_id"] for d in decisions) == Counter(f"x{i}" for i in range(50))


def test_a_poison_item_is_set_aside_and_the_stream_goes_on(make_project, redis) -> None:
    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 20)
    redis.xadd(stream, {"external_id": "poison", "text": "POISON pill"})

    def labeler_raises(entries: list[Any]) -> None:
        if any("POISON" in e.fields.get("text", "") for e in entries):
            raise RuntimeError("the labeler cannot read this")

    w = StreamWorker(
        p.ctx,
        RedisStreamSource(redis, stream, group, consumer="a", claim_idle_ms=0, max_tries=3),
        RedisStreamSink(redis, out),
        batch_size=8,
        before_labeling=labeler_raises,
    )
    w.run(until_idle=True)
    dead = redis.xrange(f"{stream}:dead")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["external_id"] == "poison" and fields["_tries"] == "3"
    assert "RuntimeError: the labeler cannot read this" in fields["_error"]
    assert sorted(d["external_id"] for d in _published(redis, out)) == sorted(
        f"x{i}" for i in range(20)
    )
    assert w.report.set_aside == 1 and w.report.retried == 2
    assert _pending(redis, stream, group) == 0


def test_the_in_process_source_decides_as_the_redis_one(make_project, redis) -> None:
    stream, group, out = _names(redis)
    _fill(redis, stream, 40)
    a = make_project()
    StreamWorker(a.ctx, RedisStreamSource(redis, stream, group), RedisStreamSink(redis, out)).run(
        until_idle=True
    )
    b = make_project()
    source, sink = InProcessSource(), InProcessSink()
    for i, text in enumerate(_texts(40)):
        source.put({"external_id": f"x{i}", "text": text})
    source.put({"external_id": "empty", "text": ""})  # refused by ingest: set aside
    source.put({"external_id": "again", "text": _texts(1)[0]})  # the same item as x0
    w = StreamWorker(b.ctx, source, sink, batch_size=7)
    w.run(until_idle=True)

    def key(d: dict[str, Any]) -> tuple[Any, ...]:
        return (d["external_id"], d["decision"], d["label"], round(d["confidence"], 6))

    assert sorted(map(key, sink.decisions)) == sorted(map(key, _published(redis, out)))
    assert [e.fields["external_id"] for e, _ in source.dead] == ["empty"]
    assert "missing content" in source.dead[0][1]
    assert w.report.already_published == 1 and source.idle()


def test_the_cli_worker_drains_a_stream(make_project, redis) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    p = make_project()
    stream, group, out = _names(redis)
    _fill(redis, stream, 10)
    args = ["stream-worker", "-p", str(p.ctx.folder), "--redis", REDIS_URL, "--stream", stream]
    args += ["--group", group, "--out-stream", out, "--until-idle"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"{stream} (group {group}) -> {out}" in text
    assert "10 entries in 1 batches: 10 decided, 10 published" in text
    assert len(_published(redis, out)) == 10
    res = CliRunner().invoke(app, [*args[:4], "redis://127.0.0.1:1/0"])
    assert res.exit_code == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in " ".join(res.output.split())


def test_post_items_is_idempotent_by_external_id_and_feeds_the_stream(
    tmp_path: Path, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.project import Project

    p = Project.init(
        tmp_path / "proj",
        name="items",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 'store.db'}",
    )
    create_user(p.db, "boss", "admin", "correct horse")
    create_user(p.db, "vic", "viewer", "correct horse")
    admin = {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}
    viewer = {"Authorization": f"Bearer {create_token(p.db, 'vic')}"}
    stream, group, out = _names(redis)
    monkeypatch.setenv("LABELLOOP_ITEMS_REDIS", REDIS_URL)
    monkeypatch.setenv("LABELLOOP_ITEMS_STREAM", stream)
    with TestClient(create_app(p)) as client:
        one = {"external_id": "a", "fields": {"text": "free cash now"}}
        r = client.post("/api/items", json=one, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["added"] == 1 and r.json()["streamed"] == 1
        many = [
            one,  # again: nothing new
            {"external_id": "b", "fields": {"text": "lunch tomorrow?"}},
            {"external_id": "c", "fields": {"text": "free cash now"}},  # same content as a
            {"external_id": "a", "fields": {"text": "other words"}},  # a with other content
            {"external_id": "d", "fields": {"text": ""}},
        ]
        got = client.post("/api/items", json=many, headers=admin).json()
        status = {(i["external_id"], i["status"]) for i in got["items"]}
        assert status == {
            ("a", "already"),
            ("b", "added"),
            ("c", "added"),
            ("a", "conflict"),
            ("d", "rejected"),
        }
        ids = {i["external_id"]: i["item_id"] for i in got["items"] if i["status"] == "added"}
        assert ids["c"] == r.json()["items"][0]["item_id"]  # one item for one content
        assert got["streamed"] == 2  # b and c; a was on the stream already
        assert client.post("/api/items", json=one, headers=viewer).status_code == 403
        too_many = [{"external_id": f"x{i}", "fields": {"text": "t"}} for i in range(1001)]
        assert client.post("/api/items", json=too_many, headers=admin).status_code == 422
        bad = {"external_id": "", "fields": {"text": "t"}}
        assert client.post("/api/items", json=bad, headers=admin).status_code == 422
    assert p.status()["items"] == 2
    StreamWorker(p.ctx, RedisStreamSource(redis, stream, group), RedisStreamSink(redis, out)).run(
        until_idle=True
    )
    assert sorted(d["external_id"] for d in _published(redis, out)) == ["a", "b"]
    p.close()


def test_the_rule_is_not_frozen_while_the_loop_holds_its_lease(make_project) -> None:
    """Freezing the rule may train; it waits for the loop's lease (one retrain at a time)."""
    from labelloop.store.loop_state import acquire_lease, release_lease
    from labelloop.workers.loop_worker import LEASE

    p = make_project()
    token = acquire_lease(p.ctx.db, p.ctx.id, LEASE, "the-loop", 600)
    assert token is not None
    source, sink = InProcessSource(), InProcessSink()
    source.put({"external_id": "a", "text": "free cash now"})
    w = StreamWorker(p.ctx, source, sink)
    batch = source.read(10, 10)
    w.stop()  # stopping while the lease is held: the batch is left pending, nothing written
    w.process(batch)
    assert w.report.decided == 0 and not sink.decisions and source.pending
    release_lease(p.ctx.db, p.ctx.id, LEASE, "the-loop", token)
    source.claim_idle_ms = 0  # the stopped worker's pending entry is handed out again
    w = StreamWorker(p.ctx, source, sink)
    w.run(until_idle=True)
    assert w.report.decided == 1 and len(sink.decisions) == 1 and source.idle()


def test_with_human_labels_auto_decisions_store_machine_labels(tmp_path: Path) -> None:
    """Past 30 human labels the frozen rule has thresholds: confident items are decided
    ``auto`` under the stored model version, and their machine labels are in the store."""
    import pandas as pd

    from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path

    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    spam, ham = df[df.label == "spam"], df[df.label == "ham"]
    train = pd.concat([spam.head(40), ham.head(120)])
    stream = pd.concat([spam.iloc[40:70], ham.iloc[120:190]])
    p = _sms_project(tmp_path, SMS_SPAM_LABELS)
    train[["text"]].to_csv(tmp_path / "train.csv", index=False)
    p.ingest(tmp_path / "train.csv")
    ids = dict(zip(p.items()["content"], p.items()["id"], strict=True))
    for text, label in zip(train.text, train.label, strict=True):
        p.label(int(ids[text]), [label], annotator="sim")
    source, sink = InProcessSource(), InProcessSink()
    for k, text in enumerate(stream.text):
        source.put({"external_id": f"s{k}", "text": text})
    w = StreamWorker(p.ctx, source, sink, batch_size=32)
    w.run(until_idle=True)
    assert w.report.model_version and len(sink.decisions) == len(stream)
    assert {d["model_version"] for d in sink.decisions} == {w.report.model_version}
    auto = [d for d in sink.decisions if d["decision"] == "auto"]
    assert auto, Counter(d["reason"][:40] for d in sink.decisions)
    truth = dict(zip([f"s{k}" for k in range(len(stream))], stream.label, strict=True))
    right = sum(d["label"] == truth[d["external_id"]] for d in auto)
    assert right / len(auto) >= 0.9
    machine = p.final_labels()
    machine = machine[machine["source_kind"] == "machine"]
    assert set(machine["item_id"]) <= {d["item_id"] for d in auto}
    assert len(machine) >= len(auto) // 2  # audited ones wait for a person
    # A newer model version (a retrain): the worker refreezes its rule and decides again under it, once;
    # the items are no longer new, so no second suggestion is stored.
    more = ham.iloc[300:340]
    more[["text"]].to_csv(tmp_path / "more.csv", index=False)
    p.ingest(tmp_path / "more.csv")
    ids = dict(zip(p.items()["content"], p.items()["id"], strict=True))
    for text in more.text:
        p.label(int(ids[text]), ["ham"], annotator="sim")
    p.retrain()  # the loop's job: the stream worker only notices the stored version
    suggestions = len(p.suggestions())
    first_version = w.report.model_version
    for k, text in enumerate(stream.text[:10]):
        source.put({"external_id": f"s{k}", "text": text})
        source.put({"external_id": f"s{k}", "text": text})  # and a redelivery
    w.run(until_idle=True)
    assert w.report.model_version != first_version
    again = [d for d in sink.decisions if d["model_version"] == w.report.model_version]
    assert sorted(d["external_id"] for d in again) == sorted(f"s{k}" for k in range(10))
    assert len(p.suggestions()) == suggestions
    p.close()


def _sms_project(folder: Path, labels: dict[str, str]) -> Any:
    from labelloop.project import Project

    return Project.init(
        folder / "p",
        name="sms",
        labels=[{"name": k, "description": v} for k, v in labels.items()],
        storage=f"sqlite:///{folder / 'store.db'}",
        # Thresholds fit on every human label (no random calibration sample to wait for).
        metrics={"calibration_share": 0.0, "calibration_min": 0},
    )


def test_a_later_human_label_on_a_streamed_item_is_published_once(make_project) -> None:
    from labelloop.workers.label_publisher import LabelPublisher

    p = make_project()
    source, sink = InProcessSource(), InProcessSink()
    for i, text in enumerate(_texts(8)):
        source.put({"external_id": f"x{i}", "text": text})
    publisher = LabelPublisher(p.ctx, sink)
    w = StreamWorker(p.ctx, source, sink, batch_size=4, after_batch=publisher.step)
    w.run(until_idle=True)
    assert len(sink.decisions) == 8 and publisher.published == 0
    items = p.items().sort_values("id")
    first = int(items["id"].iloc[0])
    label = p.config.label_names[0]
    p.label(first, [label], annotator="ana")  # a person, after the machines' decision
    assert publisher.step() == 1
    assert publisher.step() == 0  # the cursor moved: nothing twice
    human = [d for d in sink.decisions if d["decision"] == "human"]
    assert human == [
        {
            "decision": "human",
            "item_id": first,
            "external_id": "x0",
            "labels": [label],
            "annotator": "ana",
        }
    ]
    # A fresh publisher (another process) starting from the same cursor publishes nothing new.
    assert LabelPublisher(p.ctx, sink).step() == 0


def test_post_items_pushes_back_while_the_workers_are_behind(
    tmp_path: Path, redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stream settings from the project file; above stream.max_lag entries waiting for the
    workers' group, POST /api/items answers 429 with Retry-After and takes nothing."""
    from fastapi.testclient import TestClient

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.project import Project

    monkeypatch.delenv("LABELLOOP_ITEMS_REDIS", raising=False)
    monkeypatch.delenv("LABELLOOP_ITEMS_STREAM", raising=False)
    stream, group, out = _names(redis)
    p = Project.init(
        tmp_path / "proj",
        name="pressure",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 'store.db'}",
        stream={"redis_url": REDIS_URL, "items_stream": stream, "group": group, "max_lag": 5},
    )
    try:
        create_user(p.db, "boss", "admin", "correct horse")
        admin = {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}
        RedisStreamSource(redis, stream, group)  # the workers' group exists, nothing read yet
        with TestClient(create_app(p)) as client:
            batch = [{"external_id": f"e{i}", "fields": {"text": f"hello {i}"}} for i in range(6)]
            first = client.post("/api/items", json=batch, headers=admin)
            assert first.status_code == 200 and first.json()["streamed"] == 6
            late = {"external_id": "late", "fields": {"text": "one more"}}
            pushed = client.post("/api/items", json=late, headers=admin)
            assert pushed.status_code == 429 and pushed.headers["retry-after"] == "1"
            assert "6 entries behind" in pushed.json()["detail"]
            assert p.status()["items"] == 6  # nothing taken
            StreamWorker(
                p.ctx, RedisStreamSource(redis, stream, group), RedisStreamSink(redis, out)
            ).run(until_idle=True)
            assert client.post("/api/items", json=late, headers=admin).status_code == 200
    finally:
        p.close()


def test_image_entries_run_through_the_stream_inside_the_import_folders(
    make_project, tmp_path: Path
) -> None:
    from PIL import Image

    from labelloop.core.errors import LabelloopError

    images = tmp_path / "images"
    images.mkdir()
    paths = []
    for k, colour in enumerate(["red", "blue", "green", "red", "blue"]):
        path = images / f"{k}.png"
        Image.new("RGB", (8 + k, 8), colour).save(path)
        paths.append(path)
    (images / "notes.png").write_text("not an image")
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), "black").save(outside)
    with pytest.raises(LabelloopError, match="ingest.import_dirs"):
        StreamWorker(make_project(modality="image").ctx, InProcessSource(), InProcessSink())
    p = make_project(modality="image", ingest={"import_dirs": [str(images)]})
    source, sink = InProcessSource(), InProcessSink()
    for k, path in enumerate(paths):
        source.put({"external_id": f"img{k}", "path": str(path)})
    source.put({"external_id": "climb", "path": str(images / ".." / "secret.png")})
    source.put({"external_id": "abs", "path": str(outside)})
    source.put({"external_id": "broken", "path": str(images / "notes.png")})
    source.put({"external_id": "none"})
    w = StreamWorker(p.ctx, source, sink, batch_size=4)
    w.run(until_idle=True)
    assert sorted(d["external_id"] for d in sink.decisions) == [f"img{k}" for k in range(5)]
    reasons = {e.fields["external_id"]: why for e, why in source.dead}
    assert "outside ingest.import_dirs" in reasons["climb"]
    assert "outside ingest.import_dirs" in reasons["abs"]
    assert "unreadable image" in reasons["broken"]
    assert "no image path" in reasons["none"]
    items = p.items()
    assert len(items) == 5 and set(items["content"]) == {str(x.resolve()) for x in paths}


def test_a_video_entry_becomes_one_decided_item_per_sampled_frame(
    make_project, tmp_path: Path
) -> None:
    from test_video import BLUE, RED, make_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    clip = make_clip(videos / "clip.mp4", [RED] * 20 + [BLUE] * 20)  # 4 s at 10 fps
    (videos / "broken.mp4").write_bytes(b"not a video")
    p = make_project(
        modality="image",
        labels=["red", "blue"],
        ingest={"import_dirs": [str(videos)]},
        video={"every_seconds": 1.0},
    )
    source, sink = InProcessSource(), InProcessSink()
    source.put({"external_id": "cam1", "path": str(clip)})
    source.put({"external_id": "bad", "path": str(videos / "broken.mp4")})
    source.put({"external_id": "gone", "path": str(videos / "missing.mp4")})
    w = StreamWorker(p.ctx, source, sink, batch_size=8)
    w.run(until_idle=True)
    assert sorted(d["external_id"] for d in sink.decisions) == [
        f"cam1#frame={k}" for k in (0, 10, 20, 30)
    ]
    reasons = {e.fields["external_id"]: why for e, why in source.dead}
    assert "unreadable video" in reasons["bad"] and "unreadable video" in reasons["gone"]
    items = p.items()
    assert len(items) == 4
    assert all(Path(m).is_file() for m in items["media_path"])  # the frames, as PNGs
    # the same entry again (a redelivery) adds no item and publishes nothing new
    source.put({"external_id": "cam1", "path": str(clip)})
    StreamWorker(p.ctx, source, sink, batch_size=8).run(until_idle=True)
    assert len(p.items()) == 4 and len(sink.decisions) == 4
    p.close()


@pytest.mark.parametrize("source_kind", ["in-process", "redis"])
def test_a_pipelined_worker_never_claims_back_the_batch_it_is_committing(
    make_project, redis, source_kind: str
) -> None:
    """``run`` labels batch n + 1 while batch n commits; with claim_idle_ms 0 every pending
    entry is claimable at once, and still no entry is labeled twice."""
    p = make_project()
    if source_kind == "redis":
        stream, group, out = _names(redis)
        _fill(redis, stream, 60)
        source: Any = RedisStreamSource(redis, stream, group, claim_idle_ms=0)
        sink: Any = RedisStreamSink(redis, out)
    else:
        source, sink = InProcessSource(claim_idle_ms=0), InProcessSink()
        for i in range(60):
            source.put({"external_id": f"x{i}", "text": f"message number {i}"})
    labeled: list[str] = []
    w = StreamWorker(
        p.ctx,
        source,
        sink,
        batch_size=8,
        before_labeling=lambda entries: labeled.extend(e.id for e in entries),
    )
    w.run(until_idle=True)
    assert len(labeled) == 60 and len(set(labeled)) == 60
    assert w.report.decided == 60 and w.report.published == 60 and source.idle()
    p.close()


def test_a_batch_is_written_with_one_commit(make_project) -> None:
    """Items, their new embeddings, decisions, suggestions and machine labels: one
    transaction a batch (a commit is a WAL flush on PostgreSQL)."""
    from sqlalchemy import event

    p = make_project()
    source, sink = InProcessSource(), InProcessSink()
    w = StreamWorker(p.ctx, source, sink, batch_size=16)
    source.put({"external_id": "warm", "text": "a first message freezes the rule"})
    w.run(until_idle=True)
    commits: list[int] = []
    event.listen(p.ctx.db.engine, "commit", lambda conn: commits.append(1))
    for i, text in enumerate(_texts(16)):
        source.put({"external_id": f"c{i}", "text": text})
    w.process(w._gather())
    assert w.report.decided == 17 and len(sink.decisions) == 17
    assert len(commits) == 1
    with p.ctx.db.engine.connect() as conn:  # the batch's vectors were written with it
        from sqlalchemy import text as sql

        stored = conn.execute(sql("SELECT COUNT(*) FROM embeddings")).scalar_one()
    assert stored >= 17
    p.close()
