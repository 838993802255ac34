"""Operations: the stream worker's Prometheus metrics and JSON log lines, ``--health`` of
both workers, the app's ``/ready`` and ``/metrics``. Redis for the healthy check is reached at
``LABELLOOP_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``); without it that test skips."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import create_engine
from typer.testing import CliRunner

from labelloop.workers.metrics import STAGES, JsonFormatter
from labelloop.workers.stream import InProcessSink, InProcessSource, StreamWorker

REDIS_URL = os.environ.get("LABELLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")
CLOSED = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _snapshot() -> dict[str, float]:
    out = {
        "batches": _value("labelloop_stream_batch_size_count"),
        "entries": _value("labelloop_stream_batch_size_sum"),
        "auto": _value("labelloop_stream_decisions_total", decision="auto"),
        "review": _value("labelloop_stream_decisions_total", decision="review"),
        "dead": _value("labelloop_stream_dead_letters_total"),
    }
    for s in STAGES:
        out[s] = _value("labelloop_stream_stage_seconds_count", stage=s)
    return out


def test_a_stream_run_counts_its_metrics_and_logs_json_lines(make_project) -> None:
    p = make_project()
    source, sink = InProcessSource(max_tries=1), InProcessSink()
    for i in range(12):
        source.put({"external_id": f"x{i}", "text": f"message {i}: win cash now or lunch home"})
    source.put({"external_id": "empty", "text": ""})  # refused by ingest: dead-lettered
    source.put({"external_id": "poison", "text": "POISON pill"})

    def labeler_raises(entries: list[Any]) -> None:
        if any("POISON" in e.fields.get("text", "") for e in entries):
            raise RuntimeError("the labeler cannot read this")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("labelloop.stream")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    before = _snapshot()
    try:
        w = StreamWorker(p.ctx, source, sink, batch_size=5, before_labeling=labeler_raises)
        w.run(until_idle=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    after = _snapshot()
    delta = {k: after[k] - before[k] for k in after}

    assert w.report.batches == 3 and w.report.decided == 12 and w.report.set_aside == 2
    assert delta["batches"] == 3 and delta["entries"] == 14
    assert delta["auto"] + delta["review"] == 12
    assert delta["dead"] == 2
    for s in STAGES:
        assert delta[s] >= 3, s  # every batch reads, ingests, labels, stores and publishes
    assert REGISTRY.get_sample_value("labelloop_stream_lag_entries") == 0

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    batches = [x for x in lines if x.get("event") == "batch"]
    assert [b["batch_size"] for b in batches] == [5, 5, 4]
    assert set(batches[0]["seconds"]) == set(STAGES)
    assert sum(sum(b["decisions"].values()) for b in batches) == 12
    dead = {x["external_id"]: x for x in lines if x.get("event") == "dead_letter"}
    assert set(dead) == {"empty", "poison"}
    assert "RuntimeError: the labeler cannot read this" in dead["poison"]["error"]
    assert dead["poison"]["level"] == "WARNING" and dead["poison"]["entry_id"]


def _cli(*args: str) -> Any:
    from labelloop.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_stream_worker_health_exit_codes(make_project, redis) -> None:
    client = redis
    p = make_project()
    stream, group = f"{client.test_prefix}:in", "g"
    folder = str(p.ctx.folder)
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
        for i in range(3):
            client.xadd(stream, {"external_id": f"x{i}", "text": "hello"})
        args = ["stream-worker", "-p", folder, "--stream", stream, "--group", group, "--health"]
        res = _cli(*args, "--redis", REDIS_URL)
        assert res.exit_code == 0, res.output
        out = json.loads(res.output)
        assert out == {
            "redis": "ok",
            "store": "ok",
            "stream": stream,
            "group": group,
            "lag": 3,
            "healthy": True,
        }
        res = _cli(*args, "--redis", REDIS_URL, "--max-lag", "2")
        assert res.exit_code == 1 and json.loads(res.output)["lag"] == 3
        res = _cli(*args, "--redis", CLOSED)
        assert res.exit_code == 1
        out = json.loads(res.output)
        assert out["healthy"] is False and out["redis"].startswith("error: cannot reach Redis at")
    finally:
        client.delete(stream)


def test_health_is_unhealthy_without_redis_or_store(tmp_path: Path, make_project) -> None:
    missing = str(tmp_path / "no-project")
    res = _cli("stream-worker", "-p", missing, "--redis", CLOSED, "--health")
    assert res.exit_code == 1
    out = json.loads(res.output)
    assert out["store"].startswith("error:") and out["redis"].startswith("error:")
    res = _cli("worker", "-p", missing, "--health")
    assert res.exit_code == 1 and json.loads(res.output)["healthy"] is False
    p = make_project()
    res = _cli("worker", "-p", str(p.ctx.folder), "--health")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["store"] == "ok" and out["healthy"] is True and "model" in json.dumps(out["loop"])


@pytest.fixture
def app_env(tmp_path: Path):
    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.project import Project

    p = Project.init(
        tmp_path / "proj", name="ops", labels=["ham", "spam"], storage=f"sqlite:///{tmp_path}/s.db"
    )
    tokens = {}
    for name, role in (("boss", "admin"), ("vic", "viewer")):
        create_user(p.db, name, role, "correct horse")
        tokens[role] = {"Authorization": f"Bearer {create_token(p.db, name)}"}
    client = TestClient(create_app(p))
    yield SimpleNamespace(p=p, client=client, tokens=tokens, tmp=tmp_path)
    client.close()
    p.close()


def test_ready_is_200_when_the_store_answers_and_503_when_not(app_env, monkeypatch) -> None:
    r = app_env.client.get("/ready")
    assert r.status_code == 200 and r.json() == {"store": "ok"}
    broken = create_engine(f"sqlite:///{app_env.tmp}/no-such-dir/x.db")
    monkeypatch.setattr(app_env.p, "db", SimpleNamespace(engine=broken, dispose=broken.dispose))
    r = app_env.client.get("/ready")
    assert r.status_code == 503 and r.json() == {"store": "unavailable"}


def test_metrics_need_an_admin(app_env) -> None:
    assert app_env.client.get("/metrics").status_code == 401
    assert app_env.client.get("/metrics", headers=app_env.tokens["viewer"]).status_code == 403
    r = app_env.client.get("/metrics", headers=app_env.tokens["admin"])
    assert r.status_code == 200
    assert "labelloop_stream_batch_size" in r.text and "labelloop_stream_lag_entries" in r.text
