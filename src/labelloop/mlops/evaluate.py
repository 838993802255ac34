"""Evaluation on the test split: per-class precision, recall and F1, the confusion matrix and
the calibration curve, as numbers and as PNG plots (matplotlib's Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

CALIBRATION_BINS = 10


def classification_metrics(
    y_true: Sequence[Any], y_pred: Sequence[Any], proba: np.ndarray | None, classes: Sequence[Any]
) -> dict[str, Any]:
    """Macro and per-class scores, the confusion matrix (rows: truth, columns: prediction, in
    ``classes`` order) and, given probabilities, ROC AUC and the calibration curve (of the
    positive class for two classes, else of the top label's confidence against being right)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(classes)
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "rows": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "precision": float(np.mean(p)),
        "recall": float(np.mean(r)),
        "per_class": {
            str(c): {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(n[i]),
            }
            for i, c in enumerate(labels)
        },
        "labels": [str(c) for c in labels],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if proba is not None and len(set(y_true.tolist())) > 1:
        if len(labels) == 2:
            positive = (y_true == labels[1]).astype(int)
            out["roc_auc"] = float(roc_auc_score(positive, proba[:, 1]))
            score, hit = proba[:, 1], positive
            out["calibration_of"] = f"P({labels[1]})"
        else:
            present = [i for i, c in enumerate(labels) if c in set(y_true.tolist())]
            try:
                out["roc_auc"] = float(
                    roc_auc_score(
                        y_true,
                        proba[:, present] / proba[:, present].sum(1, keepdims=True),
                        multi_class="ovr",
                        labels=[labels[i] for i in present],
                    )
                )
            except ValueError:
                pass
            score = proba.max(axis=1)
            hit = (np.asarray(labels)[proba.argmax(axis=1)] == y_true).astype(int)
            out["calibration_of"] = "top label"
        frac, mean = calibration_curve(hit, score, n_bins=CALIBRATION_BINS, strategy="uniform")
        out["calibration"] = {"predicted": mean.tolist(), "observed": frac.tolist()}
        bins = np.minimum((score * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
        ece = sum(
            abs(hit[bins == b].mean() - score[bins == b].mean()) * (bins == b).mean()
            for b in range(CALIBRATION_BINS)
            if (bins == b).any()
        )
        out["ece"] = float(ece)
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    return {
        "rows": len(y_true),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def ship_check(metrics: Mapping[str, Any], thresholds: Mapping[str, float]) -> dict[str, bool]:
    """Each threshold met? Error metrics (mae, rmse) must be at most theirs, the rest at least."""
    out = {}
    for name, bar in thresholds.items():
        value = metrics.get(name)
        if value is None:
            out[name] = False
        elif name in ("mae", "rmse"):
            out[name] = bar <= 0 or float(value) <= bar
        else:
            out[name] = float(value) >= bar
    return out


def plot_confusion(metrics: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion"])
    labels = metrics["labels"]
    size = 2 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_title("Confusion matrix (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_calibration(metrics: Mapping[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = metrics["calibration"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.plot(cal["predicted"], cal["observed"], marker="o")
    ax.set_xlabel(f"predicted {metrics.get('calibration_of', '')}")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Calibration (test split, ECE {metrics.get('ece', float('nan')):.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plots(metrics: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """confusion.png and (with probabilities) calibration.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"confusion": str(plot_confusion(metrics, folder / "confusion.png"))}
    if "calibration" in metrics:
        out["calibration"] = str(plot_calibration(metrics, folder / "calibration.png"))
    return out
