"""Score reviewers on gold items (items whose right answer is known)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from labelloop.core.stats import wilson_interval
from labelloop.quality.annotations import require_columns


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
