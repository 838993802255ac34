"""The loop as a service: stored models reused from every entrance, the events-driven worker,
one retrain per trigger across workers, a worker killed mid-retrain, and `labelloop serve`.

Nothing here asserts on time: waits poll the store until what must happen has happened (or a
generous deadline says it never did)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from labelloop.annotate.feedback import last_retrain
from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
from labelloop.labelers.factory import MODEL_KIND
from labelloop.project import Project
from labelloop.store.context import ProjectContext
from labelloop.store.loop_state import (
    acquire_lease,
    lease_holder,
    model_versions,
    release_lease,
)
from labelloop.store.reads import latest_suggestion_versions
from labelloop.workers.loop_worker import LoopWorker, loop_status

LABELS = [{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()]


@pytest.fixture(scope="module")
def sms(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """Two small files of SMS spam (first and later arrivals) and the true labels."""
    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(60), df[df.label == "ham"].head(160)])
    df = df.sample(frac=1.0, random_state=3)
    folder = tmp_path_factory.mktemp("worker-data")
    first, later = folder / "first.csv", folder / "later.csv"
    df.iloc[:180].to_csv(first, index=False)
    df.iloc[180:].to_csv(later, index=False)
    return first, later, dict(zip(df.text, df.label, strict=True))


def make(folder: Path, storage: str | None = None, **loop: object) -> Project:
    fields: dict[str, object] = {
        "name": f"w{abs(hash(str(folder))) % 10**8}",
        "labels": LABELS,
        "loop": {"retrain_every": 20, "poll_seconds": 0.2, "lease_seconds": 5, **loop},
    }
    if storage:
        fields["storage"] = storage
    return Project.init(folder, **fields)


def review(p: Project, gold: dict[str, str], n: int, who: str = "ana") -> int:
    done = 0
    for _ in range(n):
        item = p.next_item(who)
        if item is None:
            break
        p.submit(item["id"], [gold[item["content"]]], annotator=who)
        done += 1
    return done


def retrain_events(p: Project) -> int:
    with p.db.engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT count(*) FROM events WHERE project_id = {p.id} AND kind = 'retrain'"
        ).scalar_one()


def test_suggest_reuses_the_stored_model_until_the_labels_change(tmp_path, sms) -> None:
    first, later, gold = sms
    p = make(tmp_path / "p")
    p.ingest(first)
    p.suggest()
    p.route()
    assert p.model_versions() == []  # no human label yet: nothing worth storing
    review(p, gold, 30)
    r = p.retrain()
    assert r.trained and r.model_version is not None
    versions = p.model_versions()
    assert len(versions) == 1 and versions[0].version == r.model_version
    # A later suggest (new items) and route load that version instead of refitting.
    p.ingest(later)
    s = p.suggest()
    assert s.items > 0 and not s.trained and s.model_version == r.model_version
    p.route()
    assert len(p.model_versions()) == 1
    # The same from a fresh process-like entrance: a context rebuilt from the store alone.
    ctx = ProjectContext.from_storage(p.db.url, p.id, p.folder)
    try:
        assert ctx.config == p.config
        from labelloop.embed.factory import project_embedder
        from labelloop.labelers.factory import current_labelers

        labelers, trained = current_labelers(ctx, project_embedder(ctx))
        assert not trained and labelers.stored is not None
        assert labelers.stored.version == r.model_version
    finally:
        ctx.close()
    # New labels: a new version.
    review(p, gold, 5)
    r2 = p.retrain()
    assert r2.trained and r2.previous_version == r.model_version
    assert [v.version for v in p.model_versions()] == [r.model_version, r2.model_version]


def test_worker_suggests_new_items_retrains_and_refreshes_suggestions(tmp_path, sms) -> None:
    first, later, gold = sms
    p = make(tmp_path / "p")
    worker = LoopWorker(p.ctx, name="w1")
    assert worker.step().skipped == "idle"
    p.ingest(first)  # an "ingest" event wakes the worker
    step = worker.step()
    assert step.suggested == 180 and step.retrain is None
    assert p.status()["states"]["new"] == 0 and p.status()["states"]["queued"] > 0
    # Fewer labels than loop.retrain_every: no retrain.
    review(p, gold, 12)
    assert worker.step().retrain is None and retrain_events(p) == 0
    review(p, gold, 8)
    step = worker.step()
    assert step.retrain is not None and step.retrain.trained
    assert retrain_events(p) == 1
    versions = model_versions(p.db, p.id, MODEL_KIND)
    assert len(versions) == 1
    # What reviewers see is the current model's: every queued item's ensemble suggestion
    # carries the version now in use.
    queued = p.items("queued")["id"].tolist()
    assert queued and set(latest_suggestion_versions(p.db, "ensemble", queued)) == {
        versions[0].version
    }
    # Later arrivals are suggested with the stored model, not a refit.
    p.ingest(later)
    step = worker.step()
    assert step.suggested == 40 and step.retrain is None
    assert len(model_versions(p.db, p.id, MODEL_KIND)) == 1
    status = loop_status(p.ctx)
    assert status["model_version"] == versions[0].version
    assert status["workers"]["w1"]["pending_events"] == 0
    assert status["labels_until_retrain"] == 20


def test_the_lease_lets_one_holder_work_and_passes_on_when_it_expires(tmp_path) -> None:
    p = make(tmp_path / "p")
    a = acquire_lease(p.db, p.id, "loop", "a", 60)
    assert a == 1 and acquire_lease(p.db, p.id, "loop", "b", 60) is None
    assert acquire_lease(p.db, p.id, "loop", "a", 60) == 1  # ours: renewed, same token
    assert lease_holder(p.db, p.id, "loop")[0] == "a"
    release_lease(p.db, p.id, "loop", "a", 1)
    assert lease_holder(p.db, p.id, "loop") is None
    assert acquire_lease(p.db, p.id, "loop", "b", 60) == 2  # a new holder: the token grows


@pytest.mark.postgres
def test_two_workers_on_one_postgres_project_retrain_once_per_trigger(
    tmp_path, sms, pg_url
) -> None:
    first, _, gold = sms
    p = make(tmp_path / "p", storage=pg_url)
    p.ingest(first)
    workers = [LoopWorker(ProjectContext.open(p.folder), name=f"w{k}") for k in range(2)]
    try:
        workers[0].step()
        review(p, gold, 20)  # one trigger
        barrier = threading.Barrier(2)
        results: list[object] = []

        def run(w: LoopWorker) -> None:
            barrier.wait()
            for _ in range(3):
                results.append(w.step())

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert retrain_events(p) == 1
        assert len(model_versions(p.db, p.id, MODEL_KIND)) == 1
        assert sum(r.retrain is not None for r in results) == 1
    finally:
        for w in workers:
            w.ctx.close()


KILLABLE_WORKER = """
import sys, time, pathlib
import labelloop.annotate.feedback as fb
from labelloop.store.context import ProjectContext
from labelloop.workers.loop_worker import LoopWorker

marker = pathlib.Path(sys.argv[2])
real = fb.recheck_label_issues

def stall(*args, **kwargs):  # the model is stored and the queue re-routed: now die here
    marker.write_text("in retrain")
    time.sleep(600)
    return real(*args, **kwargs)

fb.recheck_label_issues = stall
LoopWorker(ProjectContext.open(sys.argv[1]), name="doomed").step()
"""


def test_a_worker_killed_mid_retrain_leaves_the_work_to_another(tmp_path, sms) -> None:
    first, _, gold = sms
    p = make(tmp_path / "p", lease_seconds=5)
    p.ingest(first)
    LoopWorker(p.ctx, name="first").step()
    review(p, gold, 20)
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_WORKER, str(p.folder), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the worker died before reaching the retrain"
            assert time.monotonic() < deadline, "the worker never reached the retrain"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # It had stored its model version but not finished: no retrain event yet, lease held.
    assert retrain_events(p) == 0
    assert len(model_versions(p.db, p.id, MODEL_KIND)) == 1
    assert lease_holder(p.db, p.id, "loop")[0] == "doomed"
    other = LoopWorker(p.ctx, name="other")
    deadline = time.monotonic() + 120
    step = other.step()
    while step.retrain is None:
        assert step.skipped and step.skipped.startswith("lease held"), step
        assert time.monotonic() < deadline, "the dead worker's lease never expired"
        time.sleep(0.5)
        step = other.step()
    # The other worker finished the retrain with the stored model: nothing done twice.
    assert not step.retrain.trained
    assert retrain_events(p) == 1
    assert len(model_versions(p.db, p.id, MODEL_KIND)) == 1
    assert last_retrain(p.ctx)["model_version"] == model_versions(p.db, p.id, MODEL_KIND)[0].version
    assert other.step().retrain is None  # and it is not due again


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_retrains_from_reviewers_labels_with_nothing_else_run(tmp_path, sms) -> None:
    first, _, gold = sms
    p = make(tmp_path / "p", retrain_every=15)
    p.ingest(first)
    from labelloop.auth import create_token, create_user

    create_user(p.db, "admin", "admin", "admin-password-1")
    create_user(p.db, "ana", "reviewer", None)
    token = create_token(p.db, "ana", "test")
    folder, pid = p.folder, p.id
    p.close()
    port = _free_port()
    exe = Path(sys.executable).with_name("labelloop")
    proc = subprocess.Popen(
        [str(exe), "serve", "-p", str(folder), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 180
            # The worker beside the app suggests and routes the ingested items by itself.
            while True:
                assert proc.poll() is None, "labelloop serve exited"
                assert time.monotonic() < deadline, "the items were never queued"
                try:
                    item = client.post("/api/queue/next").json().get("item")
                except httpx.TransportError:
                    item = None
                if item:
                    break
                time.sleep(0.5)
            answered = 0
            while answered < 15:
                label = gold[item["content"]]
                r = client.post(f"/api/items/{item['id']}/label", json={"labels": [label]})
                assert r.status_code == 200, r.text
                answered += 1
                item = client.post("/api/queue/next").json()["item"]
                assert item is not None
            p = Project.open(folder)
            try:
                while last_retrain(p.ctx) is None:
                    assert proc.poll() is None, "labelloop serve exited"
                    assert time.monotonic() < deadline, "no retrain after the reviewer's labels"
                    time.sleep(0.5)
                versions = p.model_versions()
                assert len(versions) == 1 and versions[0].n_labels == 15
                queued = p.items("queued")["id"].tolist()
                assert set(latest_suggestion_versions(p.db, "ensemble", queued)) == {
                    versions[0].version
                }
                status = client.get("/api/status").json()
                assert status["loop"]["model_version"] == versions[0].version
                dashboard = client.get("/api/dashboard").json()
                assert list(dashboard["loop"]["workers"])  # the worker beside the app
                assert p.id == pid
            finally:
                p.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    json.dumps(status)  # the status is plain JSON


@pytest.mark.parametrize("skewed", [False, True])
def test_route_pools_the_llm_answers_suggest_stored_from_any_entrance(
    tmp_path, sms, skewed: bool
) -> None:
    """The LLM's stored answers reach routing without the LLM being asked again: a plain
    ``Project.route()`` (CLI, notebook) learns its weight on human-labeled items it answered.
    One that says spam for most items (``skewed``), though right on every spam, is flagged by
    the bias checks and weighs little."""
    from labelloop.core.types import Suggestion
    from labelloop.store.labels import add_suggestions

    first, _, gold = sms
    p = Project.init(
        tmp_path / "p",
        name="llm-route",
        labels=LABELS,
        labelers={
            "llm": {
                "enabled": True,
                "backend": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
            }
        },
    )
    p.ingest(first)
    p.suggest(llm=_NoLLM())  # the cascade asks nobody here
    p.route()
    review(p, gold, 40)
    items = p.items()
    # An "LLM" that is always right, stored as the cascade stores answers.
    answers = [
        Suggestion(
            item_id=int(i),
            content_hash=h,
            labeler="llm:m",
            labeler_version="m/v1",
            probs={
                n: float(n == ("spam" if skewed and k % 4 else gold[c])) for n in SMS_SPAM_LABELS
            },
            confidence=1.0,
        )
        for k, (i, c, h) in enumerate(
            zip(items["id"], items["content"], items["content_hash"], strict=True)
        )
    ]
    with p.db.engine.begin() as conn:
        add_suggestions(conn, answers)
    r = p.route()
    if skewed:
        assert r.llm_weight <= 0.2 and "bias checks flag it" in r.llm_weight_note
        p.close()
        return
    assert r.llm_weight > 0.5  # learned on the 40 sampled human labels it also answered
    assert "fit on 40 calibration sample items" in r.llm_weight_note, r.llm_weight_note
    off = Project.open(p.folder)
    try:
        off.config.labelers.llm.enabled = False  # switched off: its answers are not used
        assert off.route().llm_weight == 0.0
    finally:
        off.close()


def test_a_capped_llm_spends_half_its_calls_on_the_calibration_sample(tmp_path, sms) -> None:
    """Its lift can only be measured on sampled items people label (issue 10, item 6): in the
    demo, 100 calls all went to the least certain items, none of them ever labeled in the
    sample, and its weight stayed "not measured yet". Now up to ``cascade.measure_share`` of a
    budget goes to sample members the policy picks (every item at cold start)."""
    from labelloop.annotate.calibration_sample import CalibrationSample

    first, _, _ = sms
    p = Project.init(
        tmp_path / "p",
        name="llm-sample",
        labels=LABELS,
        metrics={"calibration_min": 20, "calibration_share": 0.2},
    )
    p.ingest(first)
    llm = _Capped(20)
    p.suggest(llm=llm)
    sample = CalibrationSample.draw(p.ctx, 0)
    # While machines label nothing the sample takes half the labels expected by the next
    # retrain (50): 25 of the 180 items.
    assert sample.size == 25 and sample.pool == 180
    asked_in_sample = [i for i in llm.asked if i in sample.members]
    assert len(llm.asked) == 20
    # 10 of 20 calls to members; by chance alone about 20 * 25 / 180 = 3.
    assert len(asked_in_sample) >= 10, (len(asked_in_sample), sorted(llm.asked))
    p.close()


class _Capped:
    """An expensive labeler with a call budget that records what it was asked."""

    labeler_id = "llm:m"
    version = "capped"

    def __init__(self, calls: int) -> None:
        self.remaining_calls = calls
        self.asked: list[int] = []

    def suggest(self, items):  # noqa: ANN001, ANN201
        from labelloop.core.types import Suggestion

        self.asked += [int(it.id) for it in items]
        self.remaining_calls -= len(items)
        return [
            Suggestion(it.id, it.content_hash, self.labeler_id, self.version, {"ham": 1.0})
            for it in items
        ]


class _NoLLM:
    """An expensive labeler with no calls left: the cascade asks it nothing."""

    labeler_id = "llm:m"
    version = "none"
    remaining_calls = 0

    def suggest(self, items):  # noqa: ANN001, ANN201
        return []


def test_cli_retrain_worker_and_status_say_what_the_loop_did(tmp_path, sms) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    first, _, gold = sms
    p = make(tmp_path / "p")
    folder = str(p.folder)
    run = CliRunner().invoke
    p.ingest(first)
    out = run(app, ["worker", "-p", folder, "--once", "--name", "cli-w"])
    assert out.exit_code == 0, out.output
    assert p.status()["states"]["new"] == 0
    review(p, gold, 25)
    out = run(app, ["retrain", "-p", folder])
    assert out.exit_code == 0, out.output
    assert "Model version: #1 (trained now; before: none)" in out.output
    assert "Held-out macro-F1 - ->" in out.output
    again = run(app, ["retrain", "-p", folder])
    assert "stored model was reused; before: #1" in again.output
    status = run(app, ["status", "-p", folder])
    assert "Model in use: #1 trained on 25 human labels" in status.output
    assert "cli-w" in status.output
    as_json = json.loads(run(app, ["retrain", "-p", folder, "--json"]).output)
    assert as_json["model_version_id"] == 1 and as_json["trained"] is False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_killed_with_sigkill_takes_its_worker_with_it(tmp_path) -> None:
    p = make(tmp_path / "p")
    from labelloop.auth import create_user

    create_user(p.db, "admin", "admin", "admin-password-1")
    folder = p.folder
    p.close()
    exe = Path(sys.executable).with_name("labelloop")
    proc = subprocess.Popen(
        [str(exe), "serve", "-p", str(folder), "--port", str(_free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _children(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "no worker started"
            time.sleep(0.2)
        (worker,) = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while _alive(worker):
            assert time.monotonic() < deadline, "the worker outlived its serve process"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_failing_step_is_recorded_and_retried_after_a_growing_pause(
    tmp_path, monkeypatch
) -> None:
    p = make(tmp_path / "p")
    worker = LoopWorker(p.ctx, name="broken", poll_seconds=0.01)

    def broken() -> None:
        raise RuntimeError("the model file is unreadable")

    monkeypatch.setattr(worker, "step", broken)
    worker.run(threading.Event(), max_steps=3)
    with p.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT payload FROM events WHERE project_id = {p.id} AND kind = 'worker_error'"
        ).scalars()
        payloads = [json.loads(r) if isinstance(r, str) else r for r in rows]
    assert [e["in_a_row"] for e in payloads] == [1, 2, 3]
    assert all("unreadable" in e["error"] and e["worker"] == "broken" for e in payloads)
