"""The Embedder protocol and the cache interface embedders use to skip work already done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, shape (len(texts), dim)."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbeddingCache(Protocol):
    """Stores vectors by (model id, content hash). The store implements it (``labelloop.store``)."""

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None: ...
