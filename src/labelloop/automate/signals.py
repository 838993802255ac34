"""The monitor's metrics for one check, read from the store, the registry and the items'
embeddings (``core.config.MONITOR_METRICS`` names them). Only the metrics some alert rule or
policy uses are computed: the drift metric embeds up to ``monitoring.reference_items`` items.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from labelloop.core.config import PolicySpec
from labelloop.embed.factory import project_embedder
from labelloop.store.context import ProjectContext
from labelloop.store.monitoring import contents_by_id, latest_human_labeled, queue_depth
from labelloop.store.reads import audit_results, human_label_count

CHEAP = ("human_labels", "queue_depth", "audited_precision", "estimated_precision", "audit_change")


def needed_metrics(ctx: ProjectContext, policies: Iterable[PolicySpec] | None = None) -> set[str]:
    cfg = ctx.config
    names = {r.metric for r in cfg.monitoring.alerts} | set(CHEAP)
    names.add("prediction_drift")
    if cfg.modality == "tabular":
        names.add("feature_drift_share")  # and each column's drift:<name>, for the charts
    else:
        names.add("embedding_drift_auc")  # the project's embeddings are cached: cheap
    for p in policies if policies is not None else cfg.automation.policies:
        if "rollback" in p.actions:
            names.add("champion_accuracy")
    return names


def audited_precision(ctx: ProjectContext) -> float | None:
    """The share of the latest ``window`` answered audits where people confirmed the machine."""
    audits = audit_results(ctx.db, ctx.id, ctx.config.task)
    if audits.empty:
        return None
    recent = audits.sort_values("item_id").tail(ctx.config.monitoring.window)
    return float(recent["correct"].mean())


def audit_change(ctx: ProjectContext) -> float | None:
    """1.0 when ADWIN, run over every answered audit in order (1 = the machine was wrong),
    signalled a change among the latest ``window`` audits; 0.0 when not; None without audits."""
    from labelloop.monitor.detectors import ADWIN, detect_changes

    audits = audit_results(ctx.db, ctx.id, ctx.config.task)
    if audits.empty:
        return None
    errors = (~audits.sort_values("item_id")["correct"].astype(bool)).astype(float).to_numpy()
    changes = detect_changes(errors, ADWIN())
    recent = len(errors) - ctx.config.monitoring.window
    return 1.0 if any(i >= recent for i in changes) else 0.0


def estimated_precision(ctx: ProjectContext) -> float | None:
    """Confidence-based performance estimation: the mean (calibrated) confidence of the
    latest ``window`` machine labels, what their precision should be if the calibration
    holds; shown beside the audited precision, which checks it."""
    from labelloop.monitor.detectors import estimate_accuracy
    from labelloop.store.monitoring import latest_machine_confidences

    confidences = latest_machine_confidences(ctx.db, ctx.id, ctx.config.monitoring.window)
    if not confidences:
        return None
    return estimate_accuracy(confidences).estimate


def held_out_recent(ctx: ProjectContext) -> list[tuple[int, str, str]]:
    """(item id, content, label) of the latest ``window`` human labels in the deployed model's
    validation and test splits (items never move split, so no version trained on them)."""
    from labelloop.mlops.datasets import assign_split

    cfg, window = ctx.config.model, ctx.config.monitoring.window
    rows = latest_human_labeled(ctx.db, ctx.id, window * 5)
    held = [
        (i, c, label)
        for i, c, label, h in rows
        if assign_split(
            h, "human", test_share=cfg.test_share, validation_share=cfg.validation_share
        )
        != "train"
    ]
    return held[:window]


def champion_accuracy(ctx: ProjectContext, registry: Any = None) -> float | None:
    """The deployed champion's accuracy on the latest human labels it never trained on
    (``held_out_recent``); None without a champion or such labels."""
    from labelloop.mlops.predictor import Predictor
    from labelloop.registry import open_registry

    reg = registry or open_registry(ctx)
    champion = reg.by_alias("champion")
    if champion is None:
        return None
    rows = held_out_recent(ctx)
    if not rows:
        return None
    predictor = Predictor.load(champion.path, embedder=stored_embedder(ctx))
    answers = predictor.predict_frame(model_inputs(ctx, [c for _, c, _ in rows]))
    truth = np.array([label for _, _, label in rows])
    return float((answers["label"].to_numpy() == truth).mean())


def stored_embedder(ctx: ProjectContext) -> Any:
    """The project's embedder with the store's cache (what a deployed text or image model of
    this project was trained on); None for tables, whose model takes the rows' columns."""
    return None if ctx.config.modality == "tabular" else project_embedder(ctx)


def model_inputs(ctx: ProjectContext, contents: list[str]) -> Any:
    """Stored contents as a deployed model's input: texts, or a table's rows as a frame."""
    if ctx.config.modality != "tabular":
        return contents
    import pandas as pd

    from labelloop.embed.tabular import parse_row

    return pd.DataFrame([parse_row(c) for c in contents])


def drift_vectors(ctx: ProjectContext) -> tuple[np.ndarray, np.ndarray, list[int]] | None:
    """(reference vectors: the first ``reference_items`` items, current vectors: the newest
    ``window``, the current items' ids), or None while there are too few items to compare."""
    mon = ctx.config.monitoring
    reference = contents_by_id(ctx.db, ctx.id, newest=False, limit=mon.reference_items)
    current = contents_by_id(ctx.db, ctx.id, newest=True, limit=mon.window)
    ref_ids = {i for i, _ in reference}
    current = [(i, c) for i, c in current if i not in ref_ids]
    if len(current) < 10 or len(reference) < 10:
        return None
    embedder = project_embedder(ctx)
    ref = np.asarray(embedder.embed([c for _, c in reference]), dtype=np.float32)
    cur = np.asarray(embedder.embed([c for _, c in current]), dtype=np.float32)
    return ref, cur, [i for i, _ in current]


def embedding_drift_auc(ctx: ProjectContext) -> float | None:
    from labelloop.monitor.drift import embedding_drift

    vectors = drift_vectors(ctx)
    if vectors is None:
        return None
    ref, cur, _ = vectors
    return float(embedding_drift(ref, cur).auc)


def reference_profile(ctx: ProjectContext) -> Any:
    """A table project's reference profile (``monitor.drift``) of its first
    ``monitoring.reference_items`` rows: computed once, then read from
    ``<project>/monitoring/reference-profile.json`` (delete the file to take a new reference)."""
    import pandas as pd

    from labelloop.embed.tabular import parse_row
    from labelloop.monitor.drift import ReferenceProfile, profile_reference

    path = ctx.folder / "monitoring" / "reference-profile.json"
    if path.is_file():
        return ReferenceProfile.from_json(path.read_text(encoding="utf-8"))
    rows = contents_by_id(ctx.db, ctx.id, newest=False, limit=ctx.config.monitoring.reference_items)
    if len(rows) < 50:
        return None
    profile = profile_reference(_typed(pd.DataFrame([parse_row(c) for _, c in rows]), ctx))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile.to_json(), encoding="utf-8")
    return profile


def _typed(frame: Any, ctx: ProjectContext) -> Any:
    """Stored rows hold text: the columns the training preparation calls numbers
    (``mlops.prepare.infer_kinds``, ``column_kinds`` first) become numbers."""
    import pandas as pd

    from labelloop.mlops.prepare import infer_kinds

    for name, kind in infer_kinds(frame, ctx.config.column_kinds).items():
        if kind == "number":
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def feature_drift(ctx: ProjectContext) -> dict[str, float | None]:
    """Per column of a table project, its drift statistic over its threshold (above 1:
    drifted) on the newest ``window`` rows, and the share of columns that drifted."""
    import pandas as pd

    from labelloop.embed.tabular import parse_row
    from labelloop.monitor.drift import check_drift

    if ctx.config.modality != "tabular":
        return {}
    profile = reference_profile(ctx)
    current = contents_by_id(ctx.db, ctx.id, newest=True, limit=ctx.config.monitoring.window)
    if profile is None or len(current) < 10:
        return {"feature_drift_share": None}
    frame = pd.DataFrame([parse_row(c) for _, c in current])
    numbers = [name for name, col in profile.columns.items() if col.kind == "num"]
    for name in numbers:
        if name in frame:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    report = check_drift(profile, frame)
    out: dict[str, float | None] = {"feature_drift_share": float(report.drifted_share)}
    for col in report.columns:
        ratio = col.statistic / col.threshold if col.threshold > 0 else None
        out[f"drift:{col.column}"] = None if ratio is None else float(ratio)
    return out


def prediction_drift(ctx: ProjectContext) -> float | None:
    """Drift of the labels the prediction app returned: the newest ``window`` against the
    first ``reference_items`` (statistic over threshold; above 1 drifted). None until both
    hold 50 and do not overlap."""
    from labelloop.monitor.drift import prediction_drift as drift_of
    from labelloop.store.predictions import served_labels

    mon = ctx.config.monitoring
    current = served_labels(ctx.db, ctx.id, newest=True, limit=mon.window)
    # The oldest rows not in the current window: fetch reference + window, keep what is older.
    oldest = served_labels(ctx.db, ctx.id, newest=False, limit=mon.reference_items + mon.window)
    if len(oldest) < mon.reference_items + mon.window:
        oldest = oldest[: max(len(oldest) - len(current), 0)]
    reference = oldest[: mon.reference_items]
    if len(current) < 50 or len(reference) < 50:
        return None
    col = drift_of(reference, current)
    return float(col.statistic / col.threshold) if col.threshold > 0 else None


def collect(ctx: ProjectContext, names: set[str], registry: Any = None) -> dict[str, float | None]:
    """The metrics in ``names`` now; a metric that cannot be measured yet is None."""
    values: dict[str, float | None] = {}
    if "human_labels" in names:
        values["human_labels"] = float(human_label_count(ctx.db, ctx.id))
    if "queue_depth" in names:
        values["queue_depth"] = float(queue_depth(ctx.db, ctx.id))
    if "audited_precision" in names:
        values["audited_precision"] = audited_precision(ctx)
    if "estimated_precision" in names:
        values["estimated_precision"] = estimated_precision(ctx)
    if "audit_change" in names:
        values["audit_change"] = audit_change(ctx)
    if "champion_accuracy" in names:
        values["champion_accuracy"] = champion_accuracy(ctx, registry)
    if "embedding_drift_auc" in names:
        values["embedding_drift_auc"] = embedding_drift_auc(ctx)
    if "feature_drift_share" in names:
        values.update(feature_drift(ctx))
    if "prediction_drift" in names:
        values["prediction_drift"] = prediction_drift(ctx)
    return values
