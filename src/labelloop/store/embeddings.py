"""Embeddings by (model id, content hash) as raw float32 bytes, so a million load as one array."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, select

from labelloop.store.db import Database
from labelloop.store.dialect import insert_ignore
from labelloop.store.models import EmbeddingRow

_LOOKUP_CHUNK = 900  # below SQLite's bound-parameter limit


def put_embeddings(
    conn: Connection, model_id: str, hashes: Sequence[str], vectors: np.ndarray
) -> None:
    """Store ``vectors`` of ``hashes`` in the caller's transaction; vectors kept already stay."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if len(hashes) != len(vectors):
        raise ValueError(f"{len(hashes)} hashes but {len(vectors)} vectors")
    rows = [
        {"model_id": model_id, "content_hash": h, "dim": int(v.shape[0]), "vector": v.tobytes()}
        for h, v in zip(hashes, vectors, strict=True)
    ]
    if rows:
        conn.execute(
            insert_ignore(conn, EmbeddingRow.__table__, ["model_id", "content_hash"]), rows
        )


class StoreEmbeddingCache:
    """The store as an ``EmbeddingCache`` (see ``labelloop.embed.base``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(hashes))
        with self.db.engine.connect() as conn:
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                rows = conn.execute(
                    select(EmbeddingRow.content_hash, EmbeddingRow.vector).where(
                        EmbeddingRow.model_id == model_id, EmbeddingRow.content_hash.in_(chunk)
                    )
                )
                for h, blob in rows:
                    found[h] = np.frombuffer(blob, dtype="<f4")
        return found

    def put_many(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if len(hashes):
            with self.db.engine.begin() as conn:
                put_embeddings(conn, model_id, hashes, vectors)

    def load_all(self, model_id: str) -> tuple[list[str], np.ndarray]:
        """Every stored vector of ``model_id``: (content hashes, float32 matrix)."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(EmbeddingRow.content_hash, EmbeddingRow.vector, EmbeddingRow.dim)
                .where(EmbeddingRow.model_id == model_id)
                .execution_options(yield_per=50_000)
            ).all()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dim = rows[0][2]
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim)
        return [r[0] for r in rows], matrix
