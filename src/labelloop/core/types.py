"""Domain types shared by every stage of the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Item:
    """One thing to label. ``content`` is the text (or, for images, the file path)."""

    content: str
    content_hash: str
    id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    media_path: str | None = None


@dataclass(slots=True)
class Suggestion:
    """A machine labeler's opinion about one item.

    ``probs`` holds a probability for every label of the taxonomy. For single-label tasks they
    sum to one; for multi-label tasks each is an independent probability. ``status`` is "ok" or
    "invalid" (an invalid suggestion never becomes a label: the item goes to a person).
    """

    item_id: int | None
    content_hash: str
    labeler: str
    labeler_version: str
    probs: dict[str, float]
    confidence: float | None = None
    confidence_method: str | None = None
    status: str = "ok"
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    tokens: int = 0
    prompt_version: str | None = None
    error: str | None = None

    @property
    def top_label(self) -> str | None:
        if not self.probs:
            return None
        return max(self.probs, key=self.probs.__getitem__)
