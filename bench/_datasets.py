"""Loading a labeled benchmark dataset the same way in every script (and the same split)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split


def pool_and_test(
    data: str, test: str | None, text_col: str, label_col: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labeled pool and the test set: ``test`` if given, else a stratified 20% of ``data``
    (random_state 0, so every script holds out the same items)."""
    df = pd.read_csv(data)
    for col in (text_col, label_col):
        if col not in df.columns:
            sys.exit(f"{data}: no column {col!r}; columns: {list(df.columns)}")
    df = df.dropna(subset=[text_col, label_col])
    if test:
        return df, pd.read_csv(test).dropna(subset=[text_col, label_col])
    pool, held_out = train_test_split(df, test_size=0.2, random_state=0, stratify=df[label_col])
    return pool, held_out


def encode_labels(
    pool: pd.DataFrame, test: pd.DataFrame, label_col: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sorted class names, pool label indices, test label indices)."""
    classes = sorted(set(pool[label_col]) | set(test[label_col]))
    index = {c: i for i, c in enumerate(classes)}
    return classes, pool[label_col].map(index).to_numpy(), test[label_col].map(index).to_numpy()
