"""The model registry (issue 14, item 5) on MLflow's SQLite store in the project folder:
versions and aliases, promotion by a paired test and the ship thresholds, rollback, the
append-only history, the pyfunc flavour, and the same through the CLI and REST."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from test_mlops import _injected

from labelloop import Project
from labelloop.core.stats import mcnemar_exact, paired_bootstrap
from labelloop.registry import CHALLENGER, CHAMPION, RegistryError


@pytest.fixture
def project(tmp_path: Path):
    X, y, names, _ = _injected()
    csv = tmp_path / "rows.csv"
    X.assign(row_id=np.arange(len(X))).to_csv(csv, index=False)
    p = Project.init(
        tmp_path / "proj",
        name="cancer model",
        labels=names,
        modality="tabular",
        content_fields=["*"],
        id_field="row_id",
        storage=f"sqlite:///{tmp_path / 's.db'}",
        model={"cv_folds": 3, "trials": 0, "ship_thresholds": {"macro_f1": 0.85}},
    )
    p.ingest(csv)
    items = p.items().sort_values("id")
    truth = y[(items["position"].astype(int) - 1).to_numpy()]
    for item_id, t in zip(items["id"], truth, strict=True):
        p.label(int(item_id), [names[t]], annotator="ana")
    yield p
    p.close()


def _register_dummy(p: Project) -> int:
    """A version that always answers the majority class: far worse than a real model."""
    from labelloop.mlops.predictor import MODEL_FILE

    first = p.train(candidates=["logistic"], register=False)
    bundle = joblib.load(first.model_path)
    dummy = Pipeline([("model", DummyClassifier(strategy="most_frequent"))])
    X = pd.DataFrame(np.zeros((4, len(bundle["columns"]))), columns=bundle["columns"])
    dummy.fit(X, ["benign", "benign", "malignant", "benign"])
    folder = Path(first.model_path).parent.parent / "dummy"
    folder.mkdir()
    joblib.dump(bundle | {"pipeline": dummy}, folder / MODEL_FILE)
    mv = p.registry.registry.register(
        p.registry.name, folder, params={"winner": "dummy"}, metrics={}, tags={}
    )
    return mv.version


def test_paired_tests_are_one_sided() -> None:
    a = np.array([True] * 50 + [False] * 50)
    b = np.array([True] * 50 + [True] * 40 + [False] * 10)
    assert mcnemar_exact(a, b)["p_value"] < 1e-6  # B right on 40 items A missed, never worse
    assert mcnemar_exact(b, a)["p_value"] > 0.99
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    errs = np.linspace(1, 2, 200)
    assert paired_bootstrap(errs, errs * 0.5)["p_value"] < 0.01
    assert paired_bootstrap(errs * 0.5, errs)["p_value"] > 0.99


def test_promotion_rollback_and_history(project: Project) -> None:
    p = project
    reg = p.registry
    assert reg.name == "cancer-model"
    assert Path(reg.registry.tracking_uri.removeprefix("sqlite:///")).parent == p.folder.resolve()
    dummy = _register_dummy(p)
    # The dummy misses the ship threshold (macro F1 ~0.39): refused, even with no champion.
    refused = p.promote(dummy)
    assert not refused.promoted and "misses ship threshold" in refused.reason
    assert reg.by_alias(CHAMPION) is None
    # Forced (with a reason) it becomes champion; then a real model beats it significantly.
    with pytest.raises(RegistryError, match="needs a reason"):
        p.promote(dummy, force=True)
    assert p.promote(dummy, force=True, reason="bootstrapping").promoted
    result = p.train(candidates=["logistic"])
    assert result.registered_version == dummy + 1
    assert reg.by_alias(CHALLENGER).version == result.registered_version
    won = p.promote()
    assert won.promoted and won.champion == dummy and won.paired_test["p_value"] < 0.05
    assert won.challenger_metrics["macro_f1"] > won.champion_metrics["macro_f1"]
    assert reg.by_alias(CHAMPION).version == result.registered_version
    assert reg.by_alias(CHALLENGER) is None  # the alias moved on
    # A second logistic model on the same labels is not significantly better: refused.
    again = p.train(candidates=["logistic"])
    same = p.promote()
    assert not same.promoted and "not significantly better" in same.reason
    assert reg.by_alias(CHAMPION).version == result.registered_version
    assert reg.by_alias(CHALLENGER).version == again.registered_version
    with pytest.raises(RegistryError, match="already the champion"):
        p.promote(result.registered_version)
    # Rollback goes back to the version the champion replaced, and says why.
    back = p.rollback(reason="worse on live traffic")
    assert back.version == dummy and reg.by_alias(CHAMPION).version == dummy
    with pytest.raises(RegistryError, match="needs a reason"):
        p.rollback(reason=" ")
    history = p.model_history()
    assert list(history["action"]) == [
        "rollback",
        "refuse",
        "register",
        "promote",
        "register",
        "promote",
        "refuse",
    ]
    assert history.iloc[0]["reason"] == "worse on live traffic"
    assert history.iloc[0]["previous_version"] == result.registered_version
    assert history["id"].is_monotonic_decreasing  # newest first, nothing rewritten
    versions = p.models()
    assert list(versions["version"]) == [1, 2, 3]
    assert versions.set_index("version").loc[dummy, "aliases"] == CHAMPION


def test_the_pyfunc_answers_like_the_predictor(project: Project) -> None:
    import mlflow.pyfunc

    from labelloop.mlops.predictor import Predictor

    p = project
    result = p.train(candidates=["logistic"])
    p.promote()
    mv = p.registry.by_alias(CHAMPION)
    assert mv is not None and mv.version == result.registered_version
    rows = pd.read_csv(p.folder.parent / "rows.csv").drop(columns="row_id").head(20)
    mlflow.set_tracking_uri(p.registry.registry.tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{p.registry.name}@champion")
        served = loaded.predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
    direct = Predictor.load(mv.path).predict_frame(rows)
    assert list(served["label"]) == list(direct["label"])
    assert np.allclose(served["confidence"], direct["confidence"])
    # The run carries the reports and the test metrics.
    run = p.registry.registry.client.get_run(mv.run_id)
    assert run.data.metrics["test_macro_f1"] > 0.85
    names = {a.path for a in p.registry.registry.client.list_artifacts(mv.run_id, "reports")}
    assert {"reports/metrics.json", "reports/confusion.png"} <= names


def test_cli_and_rest(project: Project) -> None:
    from typer.testing import CliRunner

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.cli.main import app

    p = project
    folder = str(p.folder)
    runner = CliRunner()
    out = runner.invoke(
        app, ["train", "-p", folder, "--trials", "0", "--candidate", "logistic", "--promote"]
    )
    assert out.exit_code == 0, out.output
    assert "registered: version 1" in out.output and "promoted" in out.output
    out = runner.invoke(app, ["train", "-p", folder, "--trials", "0", "--candidate", "logistic"])
    assert out.exit_code == 0, out.output
    refused = runner.invoke(app, ["promote", "-p", folder])
    assert refused.exit_code == 1 and "not significantly better" in refused.output
    listed = runner.invoke(app, ["models", "-p", folder, "--json"])
    rows = json.loads(listed.output)
    assert [(r["version"], r["aliases"]) for r in rows] == [(1, "champion"), (2, "challenger")]
    hist = runner.invoke(app, ["models", "-p", folder, "--history"])
    assert "refuse" in hist.output and "register" in hist.output

    create_user(p.db, "boss", "admin", "correct horse battery")
    create_user(p.db, "rita", "reviewer", "correct horse battery")
    admin = {"Authorization": f"Bearer {create_token(p.db, 'boss')}"}
    reviewer = {"Authorization": f"Bearer {create_token(p.db, 'rita')}"}
    predict_only = {"Authorization": f"Bearer {create_token(p.db, 'boss', scope='predict')}"}
    client = TestClient(create_app(p))
    models = client.get("/api/models", headers=reviewer).json()
    assert models["champion"] == 1 and models["challenger"] == 2
    assert client.get("/api/models", headers=predict_only).status_code == 401
    assert client.post("/api/models/promote", json={}, headers=reviewer).status_code == 403
    forced = client.post(
        "/api/models/promote", json={"force": True, "reason": "canary ok"}, headers=admin
    )
    assert forced.status_code == 200 and forced.json()["promoted"]
    back = client.post("/api/models/rollback", json={"reason": "alerts"}, headers=admin)
    assert back.status_code == 200 and back.json()["version"] == 1
    bad = client.post("/api/models/rollback", json={}, headers=admin)
    assert bad.status_code == 422
    history = client.get("/api/models/history", headers=admin).json()
    assert [h["action"] for h in history[:2]] == ["rollback", "promote"]
    assert history[0]["actor"] == "boss" and history[1]["reason"] == "forced: canary ok"
    wrong = client.post("/api/models/train", json={"candidates": ["nope"]}, headers=admin)
    assert wrong.status_code == 422
    # The champion as an edge bundle over REST (skl2onnx: the edge extra).
    pytest.importorskip("skl2onnx")
    assert client.get("/api/models/edge-bundle", headers=reviewer).status_code == 403
    bundle = client.get("/api/models/edge-bundle", headers=admin)
    assert bundle.status_code == 200, bundle.text
    assert bundle.headers["content-type"] == "application/zip"
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert "manifest.json" in names and "head.onnx" in names


def test_predict_from_python(project: Project, tmp_path: Path) -> None:
    from labelloop.mlops.predictor import Predictor

    p = project
    p.train(candidates=["logistic"])
    with pytest.raises(RegistryError, match="no version with alias 'champion'"):
        p.predict([{"x": 1}])
    p.promote()
    rows = pd.read_csv(p.folder.parent / "rows.csv").drop(columns="row_id").head(30)
    answers = p.predict(rows)
    direct = Predictor.load(p.registry.by_alias(CHAMPION).path).predict_frame(rows)
    assert answers.equals(direct) and len(answers) == 30
    rows.to_csv(tmp_path / "in.csv", index=False)
    summary = p.predict_file(tmp_path / "in.csv", tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["label"]) == list(direct["label"]) and "mean_radius" in out
    assert summary.rows == 30


def test_the_loop_student_is_registered_in_the_same_registry(tmp_path: Path) -> None:
    from test_loop import make, review

    from labelloop.demo.data import sms_spam_path

    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(40), df[df.label == "ham"].head(110)])
    path = tmp_path / "sms.csv"
    df.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    gold = dict(zip(df.text, df.label, strict=True))
    p = make(tmp_path, path)
    try:
        p.retrain()  # cold start: nothing to learn from, nothing registered
        assert review(p, gold, 40)
        first = p.retrain()
        assert first.trained and first.model_version_id is not None
        review(p, gold, 20)
        second = p.retrain()
        reg = p.registry
        versions = reg.versions(reg.student_name)
        assert [v.version for v in versions] == [1, 2]
        assert reg.by_alias(CHAMPION, reg.student_name).version == 2
        assert versions[1].tags["loop_version"] == second.model_version
        assert versions[1].metrics["n_labels"] == second.n_labels > first.n_labels
        assert (versions[1].path / "labelers.joblib").is_file()
        rows = reg.history(reg.student_name)
        assert [r["action"] for r in rows] == ["register", "register"]
        assert rows[0]["previous_version"] == 1
        # The deployed model's name is untouched by the student's versions.
        assert reg.versions() == []
    finally:
        p.close()
