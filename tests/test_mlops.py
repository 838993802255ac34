"""The deployed model's lifecycle (issue 14, items 1-4): snapshots and splits, preparation and
the quality report, selection with tuning, evaluation on the test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from labelloop import Project
from labelloop.core.config import ProjectConfig
from labelloop.mlops.datasets import assign_split, dataset_version, labels_frame
from labelloop.mlops.prepare import build_preprocessor, infer_kinds, quality_report

SMS = Path(__file__).resolve().parents[1] / "src" / "labelloop" / "demo" / "data" / "sms_spam.csv"


def _final_labels(n: int, kinds: list[str] | None = None, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "item_id": np.arange(n),
            "content_hash": [f"h{i:05d}" for i in range(n)],
            "content": [f"row {i}" for i in range(n)],
            "labels": [[str(v)] for v in rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1])],
            "source_kind": kinds or ["human"] * n,
        }
    )


def test_snapshot_version_is_content_addressed_and_splits_are_stable() -> None:
    fl = _final_labels(2000)
    first = labels_frame(fl)
    v1 = dataset_version(first["content_hash"].tolist(), first["label"].tolist())
    shuffled = labels_frame(fl.sample(frac=1, random_state=3).assign(item_id=lambda d: d.index + 7))
    assert dataset_version(shuffled["content_hash"].tolist(), shuffled["label"].tolist()) == v1
    # One more label: a new version, and every earlier item keeps its split.
    more = pd.concat([fl, _final_labels(2100).iloc[2000:]], ignore_index=True)
    second = labels_frame(more)
    assert dataset_version(second["content_hash"].tolist(), second["label"].tolist()) != v1
    before = first.set_index("content_hash")["split"]
    after = second.set_index("content_hash")["split"].loc[before.index]
    assert (before == after).all()
    # A changed label changes the version.
    relabeled = fl.copy()
    relabeled.at[0, "labels"] = ["c"] if fl.at[0, "labels"] != ["c"] else ["a"]
    r = labels_frame(relabeled)
    assert dataset_version(r["content_hash"].tolist(), r["label"].tolist()) != v1
    # Stratified approximately: every label's test share is near 20%.
    share = first.groupby("label")["split"].apply(lambda s: (s == "test").mean())
    assert ((share > 0.13) & (share < 0.27)).all(), share
    sizes = first["split"].value_counts(normalize=True)
    assert abs(sizes["test"] - 0.2) < 0.03 and abs(sizes["validation"] - 0.1) < 0.03


def test_machine_labels_never_reach_validation_or_test() -> None:
    kinds = ["human", "import", "machine", "propagated"] * 250
    df = labels_frame(_final_labels(1000, kinds))
    held = df[df["split"] != "train"]
    assert set(held["source_kind"]) == {"human", "import"}
    assert set(df[df["source_kind"].isin(["machine", "propagated"])]["split"]) == {"train"}
    # A person's label: the split depends on the content hash only.
    assert assign_split("h00001", "human") == assign_split("h00001", "import")


def _injected(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, list[str], dict[str, int]]:
    """Breast cancer with 8% of three columns missing and 10 extreme values in two others."""
    data = load_breast_cancer(as_frame=True)
    X = data.frame.drop(columns="target").iloc[:, :10].copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    rng = np.random.default_rng(seed)
    missing = {}
    for col in X.columns[:3]:
        rows = rng.choice(len(X), int(0.08 * len(X)), replace=False)
        X.loc[rows, col] = np.nan
        missing[col] = len(rows)
    for col in X.columns[3:5]:
        rows = rng.choice(len(X), 10, replace=False)
        X.loc[rows, col] = X[col].max() * 50
    return X, data.target.to_numpy(), list(data.target_names), missing


def test_quality_report_finds_injected_missing_values_outliers_duplicates_and_leakage() -> None:
    X, y, names, missing = _injected()
    X = pd.concat([X, X.iloc[:5]], ignore_index=True)  # five exact duplicates
    y = np.concatenate([y, y[:5]])
    splits = pd.Series(["train"] * (len(X) - 5) + ["test"] * 5)
    report = quality_report(X, splits, pd.Series(np.asarray(names)[y]))
    for col, n in missing.items():
        assert report.missing_share[col] == pytest.approx(
            (n + X[col].iloc[-5:].isna().sum()) / len(X), abs=1e-3
        )
    assert report.missing_share[X.columns[5]] == 0.0
    for col in X.columns[3:5]:
        assert report.outliers[col] >= 10
    assert report.duplicates == 5
    assert report.leakage == {"test/train": 5}
    assert set(report.class_balance) == set(names)
    assert abs(sum(report.class_balance.values()) - 1) < 1e-6


def test_preparation_imputes_clips_encodes_dates_and_text() -> None:
    df = pd.DataFrame(
        {
            "x": ["1", "2", None, "3", "1000", "2", "1", "3"],
            "color": ["red", "blue", None, "red", "red", "blue", "red", "blue"],
            "day": ["2024-01-01", "2024-02-03", "2024-03-05", None] * 2,
            "note": ["a short free text note here"] * 4 + ["another longer free text note"] * 4,
        }
    )
    kinds = infer_kinds(df)
    assert kinds == {"x": "number", "color": "category", "day": "date", "note": "text"}
    prep = build_preprocessor(kinds, {"x_doubled": lambda d: pd.to_numeric(d["x"]) * 2})
    out = prep.fit_transform(df)
    assert out.shape[0] == len(df) and np.isfinite(out).all()
    numbers = prep.named_steps["columns"].named_transformers_["number"]
    assert numbers.named_steps["clip"].clipped_[0] == 1  # the 1000
    assert numbers.named_steps["impute"].statistics_[0] == 2.0  # the median


@pytest.fixture
def table_project(tmp_path: Path):
    X, y, names, _ = _injected()
    csv = tmp_path / "rows.csv"
    X.assign(row_id=np.arange(len(X))).to_csv(csv, index=False)
    p = Project.init(
        tmp_path / "proj",
        name="cancer",
        labels=names,
        modality="tabular",
        content_fields=["*"],
        id_field="row_id",
        storage=f"sqlite:///{tmp_path / 's.db'}",
        model={
            "cv_folds": 3,
            "trials": 4,
            "budget_seconds": 20,
            "ship_thresholds": {"macro_f1": 0.9},
        },
    )
    p.ingest(csv)
    items = p.items().sort_values("id")
    truth = y[(items["position"].astype(int) - 1).to_numpy()]
    for i, (item_id, t) in enumerate(zip(items["id"], truth, strict=True)):
        kind = "machine" if i % 10 == 0 else "human"
        p.label(int(item_id), [names[t]], annotator="ana", source_kind=kind)
    yield p
    p.close()


def test_train_on_a_table_with_missing_values_and_outliers(table_project: Project) -> None:
    p = table_project
    seen: list[tuple[int, int | None]] = []
    result = p.train(progress=lambda done, total: seen.append((done, total)))
    assert set(result.cv_scores) == {"logistic", "tree", "forest", "svm", "mlp", "boosting"}
    assert result.winner in result.cv_scores
    assert result.cv_scores[result.winner] == max(result.cv_scores.values())
    assert 6 <= result.trials <= 10 and seen and seen[-1][0] == result.trials
    # Breast cancer: about 0.95 macro-F1 for any sensible model; 0.9 is the stated bar.
    assert result.test_metrics["macro_f1"] > 0.9, result.test_metrics
    assert result.ships and result.ship == {"macro_f1": True}
    assert set(result.test_metrics["per_class"]) == {"malignant", "benign"}
    cm = np.asarray(result.test_metrics["confusion"])
    assert cm.sum() == result.split_sizes["test"] == result.test_metrics["rows"]
    assert len(result.test_metrics["calibration"]["predicted"]) >= 2
    for path in [result.model_path, *result.plots.values()]:
        assert Path(path).exists()
    assert Path(result.plots["calibration"]).read_bytes()[:4] == b"\x89PNG"
    # The quality report and the preparation saw the injected values.
    assert result.quality["missing_share"]["mean_radius"] > 0.05
    assert result.quality["outliers"]["mean_smoothness"] >= 10
    clipped = {r["column"]: r["clipped"] for r in result.preparation["numbers"]}
    assert clipped["mean_smoothness"] >= 5  # of the 10, those in train and validation (fitted)
    # The test split: human labels only; the saved dataset is the same snapshot.
    ds = p.dataset()
    assert ds.version == result.dataset_version
    assert set(ds.split("test")["source_kind"]) == {"human"}
    assert sum(ds.counts()["test"].values()) == result.split_sizes["test"]
    assert set(ds.counts()["train"]) == {"malignant", "benign"}
    assert pd.read_parquet(ds.path)["split"].tolist() == ds.frame["split"].tolist()
    saved = json.loads((Path(result.model_path).parent / "metrics.json").read_text())
    assert saved["winner"] == result.winner
    again = p.evaluate()
    assert again["metrics"]["macro_f1"] == pytest.approx(result.test_metrics["macro_f1"])


def test_train_on_sms_text_beats_a_bar(tmp_path: Path) -> None:
    raw = pd.read_csv(SMS).drop_duplicates("text")
    sms = pd.concat(
        [
            raw[raw["label"] == "ham"].sample(200, random_state=0),
            raw[raw["label"] == "spam"].sample(100, random_state=0),
        ]
    )
    csv = tmp_path / "sms.csv"
    sms.to_csv(csv, index=False)
    p = Project.init(
        tmp_path / "proj",
        name="sms",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    try:
        p.ingest(csv)
        items = p.items()
        by_text = dict(zip(sms["text"], sms["label"], strict=False))
        for item_id, content in zip(items["id"], items["content"], strict=True):
            p.label(int(item_id), [by_text[content]], annotator="ana")
        result = p.train(candidates=["logistic", "forest"], trials=0, folds=3)
        # MiniLM vectors of 300 SMS: cross-validated macro-F1 0.95 (logistic), 0.83 on these 53
        # test rows (measured); 0.75 is the bar (always "ham" scores 0.38).
        assert result.test_metrics["macro_f1"] > 0.75, (result.cv_scores, result.test_metrics)
        assert result.cv_scores["logistic"] > 0.85
        assert result.split_sizes["test"] > 30
    finally:
        p.close()


def test_model_settings_check_the_metric_against_the_task() -> None:
    base = {"name": "x", "labels": [{"name": "a"}, {"name": "b"}]}
    assert ProjectConfig(**base).model.primary_metric == "macro_f1"
    ProjectConfig(**base, model={"task": "regression", "primary_metric": "rmse"})
    with pytest.raises(ValueError, match="does not fit a classification model"):
        ProjectConfig(**base, model={"primary_metric": "rmse"})


def test_cli_train_and_evaluate(table_project: Project) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    folder = str(table_project.folder)
    runner = CliRunner()
    out = runner.invoke(
        app, ["train", "-p", folder, "--trials", "0", "--candidate", "logistic", "--json"]
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["winner"] == "logistic" and list(result["cv_scores"]) == ["logistic"]
    out = runner.invoke(app, ["evaluate", "-p", folder])
    assert out.exit_code == 0, out.output
    assert "malignant" in out.output and "ship thresholds: macro_f1: met" in out.output
    empty = runner.invoke(app, ["evaluate", "-p", str(Path(folder).parent / "nowhere")])
    assert empty.exit_code != 0


def test_init_takes_the_model_task_and_metric(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app
    from labelloop.core.config import load_project_config

    runner = CliRunner()
    args = ["init", str(tmp_path / "r"), "--labels", "a,b", "--model-task", "regression"]
    assert runner.invoke(app, args).exit_code == 0
    model = load_project_config(tmp_path / "r" / "labelloop.yaml").model
    assert (model.task, model.primary_metric, model.ship_thresholds) == (
        "regression",
        "rmse",
        {"rmse": 0.0},
    )
    bad = runner.invoke(
        app, ["init", str(tmp_path / "c"), "--labels", "a,b", "--primary-metric", "mae"]
    )
    assert bad.exit_code != 0 and "does not fit a classification model" in bad.output


def test_select_model_regression_with_tuning() -> None:
    from sklearn.datasets import load_diabetes

    from labelloop.mlops.evaluate import ship_check
    from labelloop.mlops.select import select_model

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    prep = build_preprocessor(infer_kinds(X))
    sel = select_model(
        prep,
        X,
        y.to_numpy(),
        task="regression",
        metric="rmse",
        candidates=["linear", "tree"],
        folds=3,
        trials=3,
        budget_seconds=30,
    )
    assert len(sel.trials) == 5 and all(t.score < 0 for t in sel.trials)  # negated RMSE
    assert sel.best.candidate == "linear" and -sel.best.score < 60  # target spread (std) is 77
    assert [t.params for t in sel.trials[:2]] == [{}, {}]
    assert all(t.params for t in sel.trials[2:])
    assert ship_check({"rmse": 55.0}, {"rmse": 50.0}) == {"rmse": False}
    assert ship_check({"rmse": 45.0, "r2": 0.5}, {"rmse": 50.0, "r2": 0.4}) == {
        "rmse": True,
        "r2": True,
    }


def test_train_frame_takes_rows_from_anywhere(tmp_path: Path) -> None:
    """Rows from a SQL query or a REST API arrive as a DataFrame: stable splits from the rows'
    values, a content-addressed version, the same result files."""
    import sqlite3

    from labelloop.core.config import ModelSettings
    from labelloop.mlops import train_frame
    from labelloop.mlops.train import frame_splits

    X, y, names, _ = _injected()
    db = tmp_path / "rows.db"
    with sqlite3.connect(db) as conn:
        X.assign(target=np.asarray(names)[y]).to_sql("rows", conn, index=False)
        rows = pd.read_sql("SELECT * FROM rows", conn)
    target = rows.pop("target")
    settings = ModelSettings(cv_folds=3, trials=0)
    split, version = frame_splits(rows, target, settings)
    again, same = frame_splits(rows.iloc[::-1], target.iloc[::-1], settings)
    assert same == version and (again[::-1] == split).all()
    result = train_frame(
        rows, target, settings=settings, folder=tmp_path / "m", candidates=["logistic"]
    )
    assert result.dataset_version == version
    assert result.test_metrics["macro_f1"] > 0.9
    assert (tmp_path / "m" / "model.joblib").exists()


def test_an_svm_winner_is_calibrated_for_probabilities(tmp_path: Path) -> None:
    from labelloop.core.config import ModelSettings
    from labelloop.mlops import train_frame

    X, y, names, _ = _injected()
    result = train_frame(
        X,
        np.asarray(names)[y],
        settings=ModelSettings(cv_folds=3, trials=0, ship_thresholds={"roc_auc": 0.95}),
        folder=tmp_path,
        candidates=["svm"],
    )
    assert result.winner == "svm"
    assert result.test_metrics["roc_auc"] > 0.95 and result.ship == {"roc_auc": True}
    assert 0 <= result.test_metrics["ece"] < 0.2
