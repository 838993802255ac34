"""A pool of human-labeled items from which the examples most like an item are drawn."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np


class FewShotPool:
    """Human-labeled texts with their embedding vectors (L2-normalised, as embedders return).

    ``labels`` of one item is a label name, or a list of names for multi-label tasks.
    """

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._labels: list[tuple[str, ...]] = []
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def add(
        self, texts: Sequence[str], labels: Sequence[str | Sequence[str]], vectors: np.ndarray
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or not (len(texts) == len(labels) == vectors.shape[0]):
            raise ValueError(
                f"FewShotPool.add: {len(texts)} texts, {len(labels)} labels and vectors of shape "
                f"{vectors.shape} do not line up (expected one row per text)"
            )
        with self._lock:
            if self._vectors is not None and vectors.shape[1] != self._vectors.shape[1]:
                raise ValueError(
                    f"FewShotPool.add: vectors have {vectors.shape[1]} dimensions, the pool "
                    f"holds {self._vectors.shape[1]}"
                )
            self._texts.extend(texts)
            self._labels.extend((lab,) if isinstance(lab, str) else tuple(lab) for lab in labels)
            self._vectors = (
                vectors if self._vectors is None else np.vstack([self._vectors, vectors])
            )

    def nearest(
        self, vector: np.ndarray, k: int, exclude_text: str | None = None
    ) -> list[tuple[str, tuple[str, ...]]]:
        """The ``k`` most similar examples (cosine), most similar first, as (text, labels)."""
        with self._lock:
            if self._vectors is None or k <= 0:
                return []
            sims = self._vectors @ np.asarray(vector, dtype=np.float32)
            order = np.argsort(-sims, kind="stable")
            out = []
            for i in order:
                if exclude_text is not None and self._texts[i] == exclude_text:
                    continue
                out.append((self._texts[i], self._labels[i]))
                if len(out) == k:
                    break
            return out
