"""Embed each distinct content once: vectors are kept by (model id, content hash)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from labelloop.core.hashing import content_hash
from labelloop.embed.base import Embedder, EmbeddingCache
from labelloop.embed.onnx_minilm import check_texts


class InMemoryEmbeddingCache:
    """An EmbeddingCache in a dict, for notebooks and tests (the store keeps vectors on disk)."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], np.ndarray] = {}

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found = ((h, self.vectors.get((model_id, h))) for h in hashes)
        return {h: v for h, v in found if v is not None}

    def put_many(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(hashes)} hashes for {len(vectors)} vectors")
        for h, vector in zip(hashes, vectors, strict=True):
            self.vectors[(model_id, h)] = np.array(vector, dtype=np.float32)


class WriteBehindCache:
    """An EmbeddingCache that reads through ``cache`` but keeps new vectors until ``take()``,
    so their owner can write them in a transaction it commits anyway (a stream worker's batch:
    one commit instead of two, ``workers.stream``). Vectors taken and never written are only
    computed again later. Thread-safe: a stream worker takes on its commit thread while it
    embeds the next batch."""

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.pending: dict[str, dict[str, np.ndarray]] = {}  # model id -> hash -> vector
        self._lock = threading.Lock()

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            mine = self.pending.get(model_id, {})
            found = {h: mine[h] for h in hashes if h in mine}
        rest = [h for h in hashes if h not in found]
        return {**found, **self.cache.get_many(model_id, rest)} if rest else found

    def put_many(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if len(hashes) != len(vectors):
            raise ValueError(f"{len(hashes)} hashes for {len(vectors)} vectors")
        with self._lock:
            self.pending.setdefault(model_id, {}).update(zip(hashes, vectors, strict=True))

    def take(self) -> list[tuple[str, list[str], np.ndarray]]:
        """(model id, hashes, vectors) of what was put since the last take; then forgets it."""
        with self._lock:
            pending, self.pending = self.pending, {}
        return [
            (model_id, list(kept), np.asarray(list(kept.values()), dtype=np.float32))
            for model_id, kept in pending.items()
            if kept
        ]


class CachedEmbedder:
    """An Embedder that asks ``cache`` first and embeds only contents it has not seen.

    Repeated texts within one call are embedded once. ``computed`` counts the texts actually sent
    to the wrapped embedder, which makes the saving visible.
    """

    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self.embedder = embedder
        self.cache = cache
        self.computed = 0

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        hashes = [content_hash(text) for text in texts]
        text_of = dict(zip(hashes, texts, strict=True))
        unique = list(text_of)
        found = self.cache.get_many(self.model_id, unique)
        missing = [h for h in unique if h not in found]
        if missing:
            vectors = self.embedder.embed([text_of[h] for h in missing])
            self.cache.put_many(self.model_id, missing, vectors)
            self.computed += len(missing)
            found = {**found, **dict(zip(missing, vectors, strict=True))}
        wrong = next((h for h in unique if np.shape(found[h]) != (self.dim,)), None)
        if wrong is not None:
            raise ValueError(
                f"the cached vector for {self.model_id!r}, content {wrong[:12]}, has shape "
                f"{np.shape(found[wrong])}, expected ({self.dim},)"
            )
        return np.asarray([found[h] for h in hashes], dtype=np.float32)
