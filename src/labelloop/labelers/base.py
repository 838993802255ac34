"""The Labeler protocol: every machine labeler suggests a probability for every label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from labelloop.core.probs import build_suggestions
from labelloop.core.types import Item, Suggestion


@runtime_checkable
class Labeler(Protocol):
    """``suggest(items)`` returns one Suggestion per item, in order, with full provenance."""

    labeler_id: str
    version: str

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]: ...


class ProbaSuggestions:
    """The one way a labeler that predicts probabilities turns them into Suggestions: its id,
    version and confidence method stamped on each (``build_suggestions``). Subclasses set
    ``labeler_id``, ``label_names``, ``task``, ``version`` and ``confidence_method``."""

    labeler_id: str
    label_names: list[str]
    task: str
    confidence_method: str = "predict_proba"

    @property
    def version(self) -> str:  # pragma: no cover - every subclass defines its own
        raise NotImplementedError

    def suggestions_from_proba(
        self, items: Sequence[Item], P: np.ndarray, latency_ms_per_item: float
    ) -> list[Suggestion]:
        return build_suggestions(
            items,
            P,
            self.label_names,
            self.task,
            self.labeler_id,
            self.version,
            latency_ms_per_item,
            self.confidence_method,
        )
