"""Monitoring and automation (issue 15, items 4-5): alerts open once, stay deduplicated and
resolve with a recovery notice delivered to a signed webhook; policies run their actions once
each as recorded runs; a quality drop injected through wrong audit answers retrains but does
not promote a challenger that is not better; a run that fails midway leaves the champion; a
held lease means no second run; drifted items rise in the review queue; a worse champion is
rolled back."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_mlops import _injected
from test_registry import _register_dummy

from labelloop import Project
from labelloop.automate import Automation
from labelloop.automate.rules import PolicyState, Signals, evaluate_alerts, plan
from labelloop.core.config import AlertRuleSpec, PolicySpec
from labelloop.registry import CHALLENGER, CHAMPION
from labelloop.store.events import log_event
from labelloop.store.loop_state import acquire_lease
from labelloop.store.models import utcnow

RULE = {"name": "quality", "metric": "audited_precision", "below": 0.9, "severity": "critical"}


def test_alerts_open_once_stay_deduplicated_and_resolve() -> None:
    rule = AlertRuleSpec(name="q", metric="audited_precision", below=0.9, for_checks=2)
    changes, streaks = evaluate_alerts([rule], {"audited_precision": 0.8}, set(), {})
    assert [c.kind for c in changes] == ["pending"]  # one breach of the two it needs
    changes, streaks = evaluate_alerts([rule], {"audited_precision": 0.7}, set(), streaks)
    assert [c.kind for c in changes] == ["open"] and "0.7 is below 0.9" in changes[0].message
    changes, streaks = evaluate_alerts([rule], {"audited_precision": 0.6}, {"q"}, streaks)
    assert [c.kind for c in changes] == ["still"]
    changes, streaks = evaluate_alerts([rule], {"audited_precision": 0.95}, {"q"}, streaks)
    assert [c.kind for c in changes] == ["resolve"] and "recovered" in changes[0].message
    # Nothing measured yet never fires.
    assert evaluate_alerts([rule], {"audited_precision": None}, set(), {})[0] == []


def test_two_policies_firing_together_run_a_shared_action_once() -> None:
    policies = [
        PolicySpec(name="labels", trigger="labels", labels=50, actions=["train", "promote"]),
        PolicySpec(name="alarm", trigger="alert", alert="q", actions=["retrain_student", "train"]),
        PolicySpec(name="nightly", trigger="schedule", every_minutes=60, actions=["train"]),
    ]
    now = utcnow()
    signals = Signals(now, 120, {}, {"q"})
    states = {"labels": PolicyState(now, 60), "nightly": PolicyState(now, 0)}
    fired, reasons, actions = plan(policies, signals, states)
    assert fired == ["labels", "alarm"]  # 60 new labels; the alert opened; the hour not up
    assert actions == ["retrain_student", "train", "promote"]  # each once, in order
    assert "60 new human labels" in reasons[0]
    assert plan(policies, Signals(now, 100, {}, set()), states)[0] == []


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, Any], str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, self.headers.get("X-Labelloop-Signature", ""))
        self.received.append((json.loads(body), "signed" if ok else "bad signature"))
        self.send_response(204 if ok else 401)
        self.end_headers()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LABELLOOP_TEST_HOOK_SECRET", "hook-secret")
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()


def _table_project(tmp_path: Path, **settings: Any) -> tuple[Project, list[int], list[str]]:
    X, y, names, _ = _injected()
    csv = tmp_path / "rows.csv"
    X.assign(row_id=np.arange(len(X))).to_csv(csv, index=False)
    p = Project.init(
        tmp_path / "proj",
        name="watch",
        labels=names,
        modality="tabular",
        content_fields=["*"],
        id_field="row_id",
        storage=f"sqlite:///{tmp_path / 's.db'}",
        model={"cv_folds": 3, "trials": 0, "ship_thresholds": {"macro_f1": 0.85}},
        **settings,
    )
    p.ingest(csv)
    items = p.items().sort_values("id")
    truth = [names[t] for t in y[(items["position"].astype(int) - 1).to_numpy()]]
    return p, [int(i) for i in items["id"]], truth


def test_quality_drop_alerts_retrains_and_refuses_a_challenger_no_better(
    tmp_path: Path, hook: str
) -> None:
    p, ids, truth = _table_project(
        tmp_path,
        monitoring={
            "alerts": [RULE],
            "webhooks": [{"url": hook, "secret_env": "LABELLOOP_TEST_HOOK_SECRET"}],
            "window": 40,
        },
        automation={
            "policies": [
                {
                    "name": "first",
                    "trigger": "labels",
                    "labels": 100,
                    "actions": ["train", "promote"],
                },
                {
                    "name": "on-quality",
                    "trigger": "alert",
                    "alert": "quality",
                    "actions": ["train", "promote"],
                },
                {
                    "name": "drop",
                    "trigger": "quality_drop",
                    "quality_below": 0.9,
                    "actions": ["train", "promote"],
                },
            ]
        },
    )
    try:
        labeled = ids[:400]
        for i, t in zip(labeled, truth[:400], strict=True):
            p.label(i, [t], annotator="ana")
        auto = Automation(p.ctx)
        first = auto.check()
        assert first.fired == ["first"] and first.status == "succeeded"
        assert p.registry.by_alias(CHAMPION).version == 1  # trained and promoted
        assert auto.check().fired == []  # nothing new: nothing runs
        # Audits: the machine's labels on 40 items, then people answer, 20 of them wrongly.
        audited = ids[400:440]
        with p.db.engine.begin() as conn:
            for i, t in zip(audited, truth[400:440], strict=True):
                log_event(conn, p.id, "audit", {"machine_label": t, "confidence": 0.99}, i)
        other = {
            n: m for n, m in zip(p.config.label_names, p.config.label_names[::-1], strict=True)
        }
        for k, (i, t) in enumerate(zip(audited, truth[400:440], strict=True)):
            p.label(i, [other[t] if k % 2 else t], annotator="ana")
        dropped = auto.check()
        assert dropped.values["audited_precision"] == pytest.approx(0.5)
        assert dropped.opened == ["quality"]
        assert dropped.fired == ["on-quality", "drop"] and dropped.actions == ["train", "promote"]
        assert dropped.status == "succeeded"
        assert dropped.outcome["train"]["version"] == 2  # one challenger for two triggers
        assert dropped.outcome["promote"]["promoted"] is False
        assert p.registry.by_alias(CHAMPION).version == 1
        assert p.registry.by_alias(CHALLENGER).version == 2
        # Still breaching: one alert, not a second, and nothing sent again.
        again = auto.check()
        assert again.opened == [] and "quality" not in again.resolved
        assert len(p.alerts(open_only=True)) == 1
        # 40 newer audits confirmed: the latest window recovers and a notice goes out.
        fresh = ids[440:480]
        with p.db.engine.begin() as conn:
            for i, t in zip(fresh, truth[440:480], strict=True):
                log_event(conn, p.id, "audit", {"machine_label": t, "confidence": 0.99}, i)
        for i, t in zip(fresh, truth[440:480], strict=True):
            p.label(i, [t], annotator="ana")
        recovered = auto.check()
        assert recovered.resolved == ["quality"]
        events = [(e["event"], e["rule"], sig) for e, sig in _Hook.received]
        assert events == [
            ("alert.opened", "quality", "signed"),
            ("alert.resolved", "quality", "signed"),
        ]
        alerts = p.alerts()
        assert [a["state"] for a in alerts] == ["resolved"]
        assert alerts[0]["deliveries"][0]["ok"] and alerts[0]["deliveries"][1]["ok"]
        runs = p.automation_runs()
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
        assert "alert: quality" in runs[0]["trigger"]
    finally:
        p.close()


def test_a_run_failing_midway_leaves_the_champion_and_a_held_lease_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, ids, truth = _table_project(
        tmp_path,
        automation={
            "policies": [
                {
                    "name": "every",
                    "trigger": "labels",
                    "labels": 50,
                    "actions": ["train", "promote"],
                }
            ]
        },
    )
    try:
        for i, t in zip(ids[:300], truth[:300], strict=True):
            p.label(i, [t], annotator="ana")
        p.train(candidates=["logistic"])
        p.promote()
        for i, t in zip(ids[300:400], truth[300:400], strict=True):
            p.label(i, [t], annotator="ana")
        import labelloop.registry.lifecycle as lifecycle

        def crash(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("disk full while scoring the challenger")

        monkeypatch.setattr(lifecycle, "_test_outcomes", crash)
        # Another process holds the lease: this check does nothing at all.
        assert acquire_lease(p.db, p.id, "automation", "someone-else", 60) is not None
        blocked = Automation(p.ctx).check()
        assert blocked.skipped and blocked.run_id is None and p.automation_runs() == []
        p.db.engine.dispose()
        from labelloop.store.loop_state import release_lease

        release_lease(p.db, p.id, "automation", "someone-else", 1)
        failed = Automation(p.ctx).check()
        assert failed.status == "failed" and "disk full" in (failed.error or "")
        assert list(failed.outcome) == ["train", "promote"]
        assert p.registry.by_alias(CHAMPION).version == 1  # untouched
        assert p.automation_runs()[0]["status"] == "failed"
        # A failed run does not count: the next check tries again.
        monkeypatch.undo()
        retried = Automation(p.ctx).check()
        assert retried.fired == ["every"] and retried.status == "succeeded"
    finally:
        p.close()


def test_a_champion_worse_on_recent_labels_is_rolled_back(tmp_path: Path) -> None:
    p, ids, truth = _table_project(tmp_path, monitoring={"window": 150})
    try:
        for i, t in zip(ids[:400], truth[:400], strict=True):
            p.label(i, [t], annotator="ana")
        good = p.train(candidates=["logistic"]).registered_version
        p.promote(good)
        dummy = _register_dummy(p)
        p.promote(dummy, force=True, reason="a bad release")
        from labelloop.automate.actions import rollback

        outcome = rollback(p.ctx, p.registry)
        assert outcome["rolled_back"], outcome
        assert p.registry.by_alias(CHAMPION).version == good
        assert p.model_history().iloc[0]["actor"] == "automation"
        # The good champion replaced the dummy's predecessor (nothing): it stays.
        assert rollback(p.ctx, p.registry)["rolled_back"] is False
    finally:
        p.close()


def test_drifted_items_rise_in_the_review_queue(tmp_path: Path) -> None:
    from labelloop.automate.actions import prioritize_drift
    from labelloop.demo.data import sms_spam_path

    sms = pd.read_csv(sms_spam_path()).drop_duplicates("text").head(200)
    bank = pd.read_csv(Path(__file__).parent / "data" / "banking77" / "sample.csv").head(60)
    p = Project.init(
        tmp_path / "p",
        name="drift",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
        monitoring={"reference_items": 200, "window": 60},
    )
    try:
        sms[["text"]].to_csv(tmp_path / "a.csv", index=False)
        bank[["text"]].to_csv(tmp_path / "b.csv", index=False)
        p.ingest(tmp_path / "a.csv")
        p.ingest(tmp_path / "b.csv")
        items = p.items().sort_values("id")
        ids = [int(i) for i in items["id"]]
        new = set(ids[-60:])
        p.enqueue(ids, [1.0] * len(ids))
        outcome = prioritize_drift(p.ctx, p.registry)
        assert outcome["drifted"] >= 45  # banking questions are not SMS
        assert set(outcome["raised"]) <= new
        first = [p.next_item(f"r{k}")["id"] for k in range(10)]
        assert set(first) <= new  # people see the drifted items first
    finally:
        p.close()


def test_no_shift_flags_few_items(tmp_path: Path) -> None:
    from labelloop.automate.actions import prioritize_drift
    from labelloop.demo.data import sms_spam_path

    sms = pd.read_csv(sms_spam_path()).drop_duplicates("text").head(260)
    p = Project.init(
        tmp_path / "p",
        name="steady",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
        monitoring={"reference_items": 200, "window": 60},
    )
    try:
        sms[["text"]].to_csv(tmp_path / "a.csv", index=False)
        p.ingest(tmp_path / "a.csv")
        outcome = prioritize_drift(p.ctx, p.registry)
        assert outcome["drifted"] <= 12, outcome["summary"]  # the same stream, later on
    finally:
        p.close()


def test_cli_and_rest(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.cli.main import app

    p, ids, truth = _table_project(
        tmp_path,
        monitoring={"alerts": [{"name": "backlog", "metric": "queue_depth", "above": 5}]},
        automation={
            "policies": [
                {
                    "name": "every",
                    "trigger": "labels",
                    "labels": 100,
                    "actions": ["train", "promote"],
                }
            ]
        },
    )
    try:
        for i, t in zip(ids[:300], truth[:300], strict=True):
            p.label(i, [t], annotator="ana")
        p.enqueue(ids[300:320])
        folder = str(p.folder)
        runner = CliRunner()
        out = runner.invoke(app, ["automate", "-p", folder, "--once", "--json"])
        assert out.exit_code == 0, out.output
        report = json.loads(out.output)
        assert report["opened"] == ["backlog"] and report["status"] == "succeeded"
        assert report["values"]["queue_depth"] == 20
        listed = runner.invoke(app, ["alerts", "-p", folder])
        assert "backlog" in listed.output and "open" in listed.output
        ran = json.loads(runner.invoke(app, ["runs", "-p", folder, "--json"]).output)
        assert [(r["status"], r["actions"]) for r in ran] == [("succeeded", ["train", "promote"])]
        assert runner.invoke(app, ["runs", "-p", folder]).exit_code == 0

        create_user(p.db, "boss", "admin", "correct horse battery")
        create_user(p.db, "rita", "reviewer", "correct horse battery")
        admin = {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}
        reviewer = {"Authorization": f"Bearer {create_token(p.db, 'rita')}"}
        client = TestClient(create_app(p))
        got = client.get("/api/alerts", params={"open_only": True}, headers=reviewer).json()
        assert [a["rule"] for a in got] == ["backlog"]
        assert (
            client.get("/api/automation/runs", headers=reviewer).json()[0]["status"] == "succeeded"
        )
        assert client.post("/api/automation/check", headers=reviewer).status_code == 403
        checked = client.post("/api/automation/check", headers=admin).json()
        assert checked["fired"] == [] and checked["opened"] == []  # still open, nothing due
        assert client.get("/api/alerts").status_code == 401
        page = client.get("/monitoring", headers=reviewer)
        assert page.status_code == 200
        html = page.text
        assert "backlog" in html and "queue_depth" in html and "<svg" in html
        assert "train, promote" in html  # the run, with its actions
        # Request ids and the Prometheus metrics of the app (issue 15, item 3).
        tagged = client.get("/api/alerts", headers={**reviewer, "X-Request-ID": "trace-42"})
        assert tagged.headers["X-Request-ID"] == "trace-42"
        fresh = client.get("/api/alerts", headers={**reviewer, "X-Request-ID": "bad id!"})
        assert len(fresh.headers["X-Request-ID"]) == 32  # not the caller's malformed one
        metrics = client.get("/metrics", headers=admin).text
        assert 'labelloop_items{project="watch",state="queued"} 20.0' in metrics
        assert (
            'labelloop_model_version{alias="champion",model="watch",project="watch"} 1.0' in metrics
        )
        assert 'labelloop_monitor_value{metric="queue_depth",project="watch"} 20.0' in metrics
        assert 'route="/api/alerts",status="200"' in metrics
        assert client.get("/metrics", headers=reviewer).status_code == 403
    finally:
        p.close()


def test_config_names_what_is_wrong() -> None:
    from labelloop.core.config import ProjectConfig

    base = {"name": "x", "labels": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(ValueError, match="waits for alert 'nope'"):
        ProjectConfig(
            **base,
            automation={
                "policies": [
                    {"name": "p", "trigger": "alert", "alert": "nope", "actions": ["train"]}
                ]
            },
        )
    with pytest.raises(ValueError, match="unknown metric"):
        ProjectConfig(**base, monitoring={"alerts": [{"name": "q", "metric": "vibes", "below": 1}]})
    with pytest.raises(ValueError, match="exactly one of above and below"):
        ProjectConfig(**base, monitoring={"alerts": [{"name": "q", "metric": "queue_depth"}]})
    with pytest.raises(ValueError, match="needs labels"):
        ProjectConfig(
            **base,
            automation={"policies": [{"name": "p", "trigger": "labels", "actions": ["train"]}]},
        )


def test_audited_precision_windows_have_honest_intervals() -> None:
    from labelloop.api.monitoring_page import audited_precision_windows, line_chart_svg

    outcomes = [True] * 25 + [True, False] * 10 + [True] * 5
    windows = audited_precision_windows(outcomes)
    assert [w["n"] for w in windows] == [25, 25]
    assert windows[0]["value"] == 1.0 and windows[0]["low"] < 0.9
    assert windows[0]["high"] == pytest.approx(1.0)
    assert windows[1]["value"] == pytest.approx(15 / 25)
    assert windows[1]["low"] < 0.6 < windows[1]["high"]
    svg = str(line_chart_svg(windows, title="t", zero_to_one=True))
    assert svg.count("<circle") == 2 and "<polygon" in svg


def test_table_feature_drift_names_the_shifted_column(tmp_path: Path) -> None:
    from labelloop.automate.signals import feature_drift

    X, _, names, _ = _injected()
    X = X.fillna(X.median())
    late = X.iloc[400:].copy()
    late["mean_radius"] = late["mean_radius"] * 1.8  # the world moved on this one column
    p = Project.init(
        tmp_path / "p",
        name="tables",
        labels=names,
        modality="tabular",
        content_fields=["*"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
        monitoring={"reference_items": 400, "window": 150},
    )
    try:
        X.iloc[:400].to_csv(tmp_path / "early.csv", index=False)
        late.to_csv(tmp_path / "late.csv", index=False)
        p.ingest(tmp_path / "early.csv")
        steady = feature_drift(p.ctx)  # the newest rows are still the reference's kind
        assert steady["drift:mean_radius"] < 1.0
        p.ingest(tmp_path / "late.csv")
        values = feature_drift(p.ctx)
        assert values["drift:mean_radius"] > 1.0
        ratios = {k: v for k, v in values.items() if k.startswith("drift:")}
        assert max(ratios, key=ratios.get) == "drift:mean_radius"
        # mean_radius, and at most one borderline other (the late rows are other patients).
        assert values["feature_drift_share"] <= 0.2
        assert (p.folder / "monitoring" / "reference-profile.json").is_file()  # kept, reused
    finally:
        p.close()


def test_audit_change_and_the_confidence_estimate(tmp_path: Path) -> None:
    from labelloop.automate.signals import audit_change, estimated_precision
    from labelloop.store.labels import set_final_labels

    p, ids, truth = _table_project(tmp_path, monitoring={"window": 100})
    try:
        assert audit_change(p.ctx) is None and estimated_precision(p.ctx) is None
        other = dict(zip(p.config.label_names, p.config.label_names[::-1], strict=True))
        # 300 audits the machine got right, then 100 with 40% wrong: a change in the window.
        with p.db.engine.begin() as conn:
            for i, t in zip(ids[:400], truth[:400], strict=True):
                log_event(conn, p.id, "audit", {"machine_label": t, "confidence": 0.95}, i)
        for k, (i, t) in enumerate(zip(ids[:400], truth[:400], strict=True)):
            p.label(i, [other[t] if k >= 300 and k % 5 < 2 else t], annotator="ana")
        assert audit_change(p.ctx) == 1.0
        # Machine labels at confidence 0.9: what their precision should be if calibrated.
        with p.db.engine.begin() as conn:
            set_final_labels(
                conn,
                [
                    {
                        "project_id": p.id,
                        "item_id": i,
                        "labels": [t],
                        "source_kind": "machine",
                        "source_name": "ensemble",
                        "source_version": "v1",
                        "confidence": 0.9,
                    }
                    for i, t in zip(ids[400:500], truth[400:500], strict=True)
                ],
            )
        assert estimated_precision(p.ctx) == pytest.approx(0.9)
    finally:
        p.close()


def test_steady_audits_signal_no_change(tmp_path: Path) -> None:
    from labelloop.automate.signals import audit_change

    p, ids, truth = _table_project(tmp_path, monitoring={"window": 100})
    try:
        other = dict(zip(p.config.label_names, p.config.label_names[::-1], strict=True))
        with p.db.engine.begin() as conn:
            for i, t in zip(ids[:400], truth[:400], strict=True):
                log_event(conn, p.id, "audit", {"machine_label": t, "confidence": 0.95}, i)
        rng = np.random.default_rng(3)
        wrong = rng.random(400) < 0.05  # the same 5% error rate throughout
        for k, (i, t) in enumerate(zip(ids[:400], truth[:400], strict=True)):
            p.label(i, [other[t] if wrong[k] else t], annotator="ana")
        assert audit_change(p.ctx) == 0.0
    finally:
        p.close()


def test_the_loop_worker_exports_its_metrics(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from labelloop.workers.loop_worker import LoopWorker

    p, ids, truth = _table_project(tmp_path)
    try:
        report = LoopWorker(p.ctx, name="w1").step()
        assert report.suggested > 0
        text = generate_latest().decode()
        assert 'labelloop_items{project="watch",state=' in text
        assert 'labelloop_loop_steps_total{kind="suggest_route"}' in text
    finally:
        p.close()


def test_retraining_handed_to_a_labels_policy(tmp_path: Path) -> None:
    """loop.retrain_by: automation: the loop worker suggests and routes but does not retrain;
    "retrain every N labels" is a labels policy like any other."""
    from labelloop.workers.loop_worker import LoopWorker

    p, ids, truth = _table_project(
        tmp_path,
        loop={"retrain_every": 50, "retrain_by": "automation"},
        automation={
            "policies": [
                {
                    "name": "every-50",
                    "trigger": "labels",
                    "labels": 50,
                    "actions": ["retrain_student"],
                }
            ]
        },
    )
    try:
        worker = LoopWorker(p.ctx, name="w1")
        worker.step()
        for i, t in zip(ids[:60], truth[:60], strict=True):
            p.label(i, [t], annotator="ana")
        assert worker.step().retrain is None  # 60 labels: the loop leaves it to the policy
        run = Automation(p.ctx).check()
        assert run.fired == ["every-50"] and run.status == "succeeded"
        assert run.outcome["retrain_student"]["n_labels"] == 60
        assert Automation(p.ctx).check().fired == []  # not again until 50 more labels
    finally:
        p.close()


def test_prediction_drift_of_the_served_labels(tmp_path: Path) -> None:
    from labelloop.automate.signals import prediction_drift
    from labelloop.store.predictions import insert_predictions

    p, _, _ = _table_project(tmp_path, monitoring={"reference_items": 300, "window": 100})
    try:

        def served(labels: list[str]) -> None:
            insert_predictions(
                p.db,
                [
                    {
                        "project_id": p.id,
                        "request_id": f"r{k}",
                        "input_ref": f"h{k}",
                        "model_name": "watch",
                        "model_version": 1,
                        "variant": "champion",
                        "served": True,
                        "output": {"label": label, "confidence": 0.9},
                        "latency_ms": 1.0,
                        "created_at": utcnow(),
                    }
                    for k, label in enumerate(labels)
                ],
            )

        rng = np.random.default_rng(0)
        served(list(rng.choice(["benign", "malignant"], 300, p=[0.65, 0.35])))
        assert prediction_drift(p.ctx) is not None
        served(list(rng.choice(["benign", "malignant"], 100, p=[0.65, 0.35])))
        assert prediction_drift(p.ctx) < 1.0  # the same mix
        served(list(rng.choice(["benign", "malignant"], 100, p=[0.15, 0.85])))
        assert prediction_drift(p.ctx) > 1.0  # the model now answers mostly "malignant"
    finally:
        p.close()
