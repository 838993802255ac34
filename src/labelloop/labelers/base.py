"""The Labeler protocol: every machine labeler suggests a probability for every label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from labelloop.core.types import Item, Suggestion


@runtime_checkable
class Labeler(Protocol):
    """``suggest(items)`` returns one Suggestion per item, in order, with full provenance."""

    labeler_id: str
    version: str

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]: ...
