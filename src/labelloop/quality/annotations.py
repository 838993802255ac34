"""Turn a long table of annotations (item, annotator, label) into integer codes.

Every function of this package that takes a pandas table goes through :func:`encode_annotations`,
so bad input (a missing column, an empty table, a missing value) fails in one place with one kind
of message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True, slots=True)
class EncodedAnnotations:
    """Annotations as parallel integer arrays, plus the values the codes stand for.

    ``items[item_idx[r]]`` was labelled ``labels[label_idx[r]]`` by
    ``annotators[annotator_idx[r]]`` in row ``r``.
    """

    item_idx: np.ndarray
    annotator_idx: np.ndarray
    label_idx: np.ndarray
    items: np.ndarray
    annotators: np.ndarray
    labels: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def count_matrix(self) -> np.ndarray:
        """Items x labels matrix: how many annotations gave each label to each item."""
        counts = np.zeros((self.n_items, self.n_labels), dtype=np.int64)
        np.add.at(counts, (self.item_idx, self.label_idx), 1)
        return counts


def require_columns(df: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """Raise a ValueError naming the missing columns and the ones that exist."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{where}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; the table has {list(df.columns)}")


def encode_annotations(
    df: pd.DataFrame,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    labels: Sequence[Any] | None = None,
) -> EncodedAnnotations:
    """Encode a long table of annotations, one row per (item, annotator, label).

    ``labels`` fixes the label order (and lets a label no one used still get a column);
    without it the labels found are sorted. A label outside ``labels`` raises ValueError.
    """
    where = "encode_annotations"
    require_columns(df, [item_col, annotator_col, label_col], where)
    if len(df) == 0:
        raise ValueError(f"{where}: the annotation table is empty")
    for col in (item_col, annotator_col, label_col):
        n_missing = int(df[col].isna().sum())
        if n_missing:
            first = df.index[df[col].isna()][0]
            raise ValueError(
                f"{where}: column {col!r} has {n_missing} missing value(s), first at row {first!r}"
            )
    item_idx, items = pd.factorize(df[item_col], sort=True)
    annotator_idx, annotators = pd.factorize(df[annotator_col], sort=True)
    if labels is None:
        label_idx, label_values = pd.factorize(df[label_col], sort=True)
        label_array = np.asarray(label_values)
    else:
        label_array = np.asarray(list(labels), dtype=object)
        if len(set(label_array.tolist())) != len(label_array):
            raise ValueError(f"{where}: `labels` has duplicates: {list(label_array)}")
        lookup = {value: code for code, value in enumerate(label_array.tolist())}
        codes = df[label_col].map(lookup)
        unknown = codes.isna()
        if unknown.any():
            bad = sorted({str(v) for v in df.loc[unknown, label_col]})[:5]
            raise ValueError(
                f"{where}: column {label_col!r} has labels outside {list(label_array)}: {bad}"
            )
        label_idx = codes.to_numpy(dtype=np.int64)
    return EncodedAnnotations(
        item_idx=np.asarray(item_idx, dtype=np.int64),
        annotator_idx=np.asarray(annotator_idx, dtype=np.int64),
        label_idx=np.asarray(label_idx, dtype=np.int64),
        items=np.asarray(items),
        annotators=np.asarray(annotators),
        labels=label_array,
    )
