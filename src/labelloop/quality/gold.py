"""Score reviewers on gold items (items whose right answer is known)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from labelloop.quality.annotations import require_columns


def wilson_interval(
    successes: int | np.ndarray, n: int | np.ndarray, confidence: float = 0.95
) -> tuple[Any, Any]:
    """Wilson score interval for a proportion; (nan, nan) where ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small ``n`` and
    proportions near 0 or 1, which is the usual case for a reviewer scored on 20 gold items.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    s = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if np.any(s < 0) or np.any(s > m):
        raise ValueError("wilson_interval: need 0 <= successes <= n")
    z = norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / m
        denom = 1.0 + z**2 / m
        centre = (p + z**2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z**2 / (4.0 * m**2)) / denom
        low = np.where(m > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(m > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def score_against_gold(
    df: pd.DataFrame,
    gold: Mapping[Any, Any] | pd.Series,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Accuracy of each annotator on the gold items they labelled.

    ``gold`` maps item id to its right label. Rows on non-gold items are ignored. Returns one
    row per annotator who labelled at least one gold item: ``n_gold``, ``n_correct``,
    ``accuracy``, ``ci_low``, ``ci_high`` (Wilson), sorted from the lowest lower bound, so the
    reviewers to look at come first.
    """
    require_columns(df, [item_col, annotator_col, label_col], "score_against_gold")
    gold_series = gold if isinstance(gold, pd.Series) else pd.Series(dict(gold), dtype=object)
    if gold_series.index.has_duplicates:
        raise ValueError("score_against_gold: gold has an item more than once")
    if gold_series.isna().any():
        raise ValueError("score_against_gold: gold has items without an answer")
    on_gold = df[df[item_col].isin(gold_series.index)]
    columns = ["n_gold", "n_correct", "accuracy", "ci_low", "ci_high"]
    if on_gold.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name=annotator_col))
    expected = on_gold[item_col].map(gold_series)
    correct = (on_gold[label_col].to_numpy() == expected.to_numpy()).astype(np.int64)
    grouped = pd.DataFrame({annotator_col: on_gold[annotator_col].to_numpy(), "c": correct})
    stats = grouped.groupby(annotator_col)["c"].agg(["size", "sum"])
    n_gold = stats["size"].to_numpy()
    n_correct = stats["sum"].to_numpy()
    low, high = wilson_interval(n_correct, n_gold, confidence)
    out = pd.DataFrame(
        {
            "n_gold": n_gold,
            "n_correct": n_correct,
            "accuracy": n_correct / n_gold,
            "ci_low": low,
            "ci_high": high,
        },
        index=stats.index,
    )
    return out.sort_values(["ci_low", "n_gold"], ascending=[True, False])
