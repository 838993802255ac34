"""The driver: snapshot the labels, prepare, select and tune, evaluate on test, save.

``train(ctx)`` returns a :class:`TrainResult` and writes, under the project folder,
``datasets/<version>/labels.parquet`` and ``models/<version>/`` (``model.joblib``: the fitted
preparation + estimator pipeline and how to featurize; ``metrics.json``; ``confusion.png`` and
``calibration.png``). ``<version>`` is the dataset version: the same labels give the same
folder, so retraining on unchanged labels replaces the model instead of piling up copies.

Features: a tabular project's rows are its columns (the preparation pipeline handles them);
a text or image project's items are embedded with the project's embedder first (vectors as
number columns), so the saved pipeline expects vectors and ``model.joblib`` names the embedder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from labelloop.core.config import ModelSettings
from labelloop.core.errors import LabelloopError
from labelloop.core.hashing import content_hash
from labelloop.core.progress import Progress
from labelloop.embed.factory import project_embedder, project_embedding_settings
from labelloop.embed.tabular import parse_row
from labelloop.mlops.datasets import assign_split, dataset_version, snapshot
from labelloop.mlops.evaluate import classification_metrics, plots, regression_metrics, ship_check
from labelloop.mlops.prepare import (
    FeatureFunctions,
    build_preprocessor,
    infer_kinds,
    preparation_report,
    quality_report,
)
from labelloop.mlops.select import make_estimator, select_model
from labelloop.store.context import ProjectContext

MODEL_FILE = "model.joblib"


@dataclass
class TrainResult:
    dataset_version: str
    winner: str
    params: dict[str, Any]
    metric: str
    cv_scores: dict[str, float]  # each candidate's best cross-validated primary metric
    trials: int  # pipelines cross-validated (defaults and tuning)
    test_metrics: dict[str, Any]
    ship: dict[str, bool]  # each ship threshold met?
    quality: dict[str, Any]
    preparation: dict[str, Any]
    split_sizes: dict[str, int]
    model_path: str
    plots: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    registered_version: int | None = None  # set when the registry took it (Project.train)

    @property
    def ships(self) -> bool:
        return all(self.ship.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ships": self.ships}


def feature_frame(
    ctx: ProjectContext, contents: list[str]
) -> tuple[pd.DataFrame, dict[str, str], str]:
    """The model's input for stored contents, the column kinds and how it was made."""
    if ctx.config.modality == "tabular":
        X = pd.DataFrame([parse_row(c) for c in contents])
        kinds = infer_kinds(X, ctx.config.column_kinds)
        return X, kinds, "table"
    embedder = project_embedder(ctx)
    vectors = np.asarray(embedder.embed(contents), dtype=np.float32)
    X = pd.DataFrame(vectors, columns=[f"v{i}" for i in range(vectors.shape[1])])
    return X, dict.fromkeys(X.columns, "number"), f"embedder:{embedder.model_id}"


def targets(frame: pd.DataFrame, task: str) -> np.ndarray:
    """The ``label`` column of a dataset frame as the model's targets."""
    if task == "classification":
        return frame["label"].to_numpy()
    y = pd.to_numeric(frame["label"], errors="coerce")
    if y.isna().any():
        bad = frame["label"][y.isna()].iloc[0]
        raise LabelloopError(f"a regression model needs numeric labels; found {bad!r}")
    return y.to_numpy(dtype=float)


def train(
    ctx: ProjectContext,
    *,
    trials: int | None = None,
    budget_seconds: float | None = None,
    candidates: list[str] | None = None,
    features: FeatureFunctions | None = None,
    folds: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainResult:
    """Train the project's deployed model on its final labels (config ``model:`` section;
    arguments override it) and evaluate it on the test split."""
    start = time.perf_counter()
    cfg = ctx.config.model
    ds = snapshot(ctx)
    X, kinds, featurizer = feature_frame(ctx, ds.frame["content"].tolist())
    result = train_frame(
        X,
        targets(ds.frame, cfg.task),
        ds.frame["split"].to_numpy(),
        settings=cfg,
        folder=Path(ctx.folder) / "models" / ds.version,
        version=ds.version,
        kinds=kinds,
        featurizer=featurizer,
        trials=trials,
        budget_seconds=budget_seconds,
        candidates=candidates,
        features=features,
        folds=folds,
        seed=seed,
        progress=progress,
        bundle_info={
            "modality": str(ctx.config.modality),
            "embedding": project_embedding_settings(ctx).model_dump(),
        },
    )
    result.seconds = time.perf_counter() - start
    return result


def frame_splits(
    X: pd.DataFrame, y: Sequence[Any], settings: ModelSettings
) -> tuple[np.ndarray, str]:
    """Stable splits and a content-addressed version for rows that do not come from the store
    (a SQL query, a REST API, any DataFrame): a row's key is the hash of its values."""
    hashes = [
        content_hash(json.dumps(row, sort_keys=True, default=str))
        for row in X.astype(object).where(X.notna(), None).to_dict("records")
    ]
    split = np.array(
        [
            assign_split(
                h,
                "human",
                test_share=settings.test_share,
                validation_share=settings.validation_share,
            )
            for h in hashes
        ]
    )
    return split, dataset_version(hashes, [str(v) for v in y])


def records_frame(reader: Any, *, max_rows: int = 5_000_000) -> pd.DataFrame:
    """The rows of any source ``Reader`` (a SQL query, a REST API, a file) as a DataFrame for
    ``train_frame``; rows that could not be read are left out, and if every row is bad the
    first reason is the error."""
    rows, first_error = [], None
    for record in reader.records():
        if record.error is not None:
            first_error = first_error or record.error
            continue
        rows.append(record.fields)
        if len(rows) > max_rows:
            raise LabelloopError(f"more than {max_rows:,} rows: train on a sample or a query")
    if not rows:
        raise LabelloopError(f"the source gave no rows{': ' + first_error if first_error else ''}")
    return pd.DataFrame(rows)


def train_frame(
    X: pd.DataFrame,
    y: Sequence[Any],
    split: Sequence[str] | None = None,
    *,
    settings: ModelSettings | None = None,
    folder: str | Path,
    version: str | None = None,
    kinds: Mapping[str, str] | None = None,
    featurizer: str = "table",
    trials: int | None = None,
    budget_seconds: float | None = None,
    candidates: list[str] | None = None,
    features: FeatureFunctions | None = None,
    folds: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    bundle_info: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train on any frame (pandas in): rows ``X``, targets ``y`` and their ``split`` (default:
    ``frame_splits``); the model and its reports go to ``folder``. ``bundle_info`` is saved
    with the model (``train`` records the modality and embedding settings there, so a
    deployed model embeds its inputs as it was trained)."""
    start = time.perf_counter()
    cfg = settings or ModelSettings()
    X = X.reset_index(drop=True)
    y = np.asarray(y) if cfg.task == "classification" else np.asarray(y, dtype=float)
    if split is None:
        split, made = frame_splits(X, y, cfg)
        version = version or made
    split = np.asarray(split)
    version = version or "frame"
    trials = cfg.trials if trials is None else trials
    budget = cfg.budget_seconds if budget_seconds is None else budget_seconds
    kinds = dict(kinds) if kinds is not None else infer_kinds(X)
    quality = quality_report(
        X, pd.Series(split), pd.Series(y) if cfg.task == "classification" else None, kinds=kinds
    )
    dev, test = split != "test", split == "test"
    if not test.any():
        raise LabelloopError(
            "the test split is empty: it holds human labels only, about "
            f"{cfg.test_share:.0%} of them; label more items"
        )
    if cfg.task == "classification" and len(set(y[dev])) < 2:
        raise LabelloopError("training needs at least two labels among the train items")
    prepare = build_preprocessor(kinds, features, clip=featurizer == "table")
    selection = select_model(
        prepare,
        X[dev].reset_index(drop=True),
        y[dev],
        task=cfg.task,
        metric=cfg.primary_metric,
        candidates=candidates,
        folds=folds or cfg.cv_folds,
        trials=trials,
        budget_seconds=budget,
        seed=seed,
        progress=progress,
    )
    best = selection.best
    estimator = make_estimator(best.candidate, cfg.task, best.params, seed)
    if best.candidate == "svm" and cfg.task == "classification":
        # Platt scaling on held-out folds, for the calibration curve and ROC AUC.
        estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=3, ensemble=False)
    model = Pipeline([("prepare", prepare), ("model", estimator)])
    with threadpool_limits(1):
        model.fit(X[dev], y[dev])
    metrics = _test_metrics(model, X[test], y[test], cfg.task)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = TrainResult(
        dataset_version=version,
        winner=best.candidate,
        params=best.params,
        metric=cfg.primary_metric,
        cv_scores=selection.by_candidate(),
        trials=len(selection.trials),
        test_metrics=metrics,
        ship=ship_check(metrics, cfg.ship_thresholds),
        quality=quality.as_dict(),
        preparation=preparation_report(model.named_steps["prepare"]),
        split_sizes={s: int((split == s).sum()) for s in ("train", "validation", "test")},
        model_path=str(folder / MODEL_FILE),
        plots=plots(metrics, folder) if cfg.task == "classification" else {},
    )
    bundle = {
        "pipeline": model,
        "featurizer": featurizer,
        "task": cfg.task,
        "dataset": version,
        "columns": [str(c) for c in X.columns],
        "modality": "tabular" if featurizer == "table" else "text",
        **dict(bundle_info or {}),
    }
    joblib.dump(bundle, folder / MODEL_FILE)
    result.seconds = time.perf_counter() - start
    (folder / "metrics.json").write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return result


def _test_metrics(model: Pipeline, X: pd.DataFrame, y: np.ndarray, task: str) -> dict[str, Any]:
    if task != "classification":
        return regression_metrics(y, model.predict(X))
    proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return classification_metrics(y, model.predict(X), proba, list(model.classes_))


def latest_model(folder: Path) -> Path:
    """The most recently written model.joblib under ``models/``."""
    found = sorted(
        (Path(folder) / "models").glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise LabelloopError(
            f"no trained model under {Path(folder) / 'models'} (run `labelloop train`)"
        )
    return found[-1]


def evaluate_latest(ctx: ProjectContext, *, write_plots: bool = True) -> dict[str, Any]:
    """The latest model's scores on the current test split (human labels only; items never
    change split, so labels added since training are new test items, never trained on)."""
    path = latest_model(Path(ctx.folder))
    bundle = joblib.load(path)
    ds = snapshot(ctx, save=False)
    test = ds.split("test")
    if test.empty:
        raise LabelloopError("the test split is empty: label more items")
    X, _, featurizer = feature_frame(ctx, test["content"].tolist())
    if featurizer != bundle["featurizer"]:
        raise LabelloopError(
            f"{path} was trained on features {bundle['featurizer']!r}, the project now makes "
            f"{featurizer!r}: retrain"
        )
    y = targets(test, bundle["task"])
    metrics = _test_metrics(bundle["pipeline"], X, y, bundle["task"])
    out: dict[str, Any] = {"model": str(path), "dataset_version": ds.version, "metrics": metrics}
    out["ship"] = ship_check(metrics, ctx.config.model.ship_thresholds)
    if write_plots and bundle["task"] == "classification":
        out["plots"] = plots(metrics, path.parent / "evaluation")
    return out
