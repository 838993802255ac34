"""A labeler with no opinion: uniform probabilities over the labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.labelers.base import ProbaSuggestions


class PriorLabeler(ProbaSuggestions):
    """Uniform probabilities: the only opinion machines have about, say, images before any
    human label exists (zero-shot needs text). Routing then sends everything to people."""

    labeler_id = "prior"
    confidence_method = "uniform"
    version = "uniform"

    def __init__(self, label_names: Sequence[str], task: str = "single_label") -> None:
        self.label_names = list(label_names)
        self.task = task
        self.k = len(label_names)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), self.k), 1.0 / self.k)

    def out_of_fold_proba(self, X: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
        return self.predict_proba(X)
