"""The store on SQLite and PostgreSQL: migrations, the event log, the queue, labels, embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from labelloop.core.errors import LabelError, StoreError
from labelloop.core.types import Suggestion
from labelloop.store.db import Database, head_revision
from labelloop.store.embeddings import StoreEmbeddingCache
from labelloop.store.events import log_event
from labelloop.store.labels import add_suggestions
from labelloop.store.models import ItemRow, ItemState


def test_migrations_reach_head_and_are_idempotent(storage_url: str) -> None:
    db = Database(storage_url)
    Database(storage_url).dispose()  # opening again is a no-op
    with db.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            == head_revision()
        )
    db.dispose()


def test_newer_schema_is_refused(storage_url: str) -> None:
    db = Database(storage_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StoreError, match="newer labelloop"):
        Database(storage_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head_revision()})
    db.dispose()


def test_unreachable_store_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        Database("postgresql://nobody@127.0.0.1:1/none")


def test_event_log_is_append_only(make_project) -> None:
    p = make_project()
    with p.db.engine.begin() as conn:
        log_event(conn, p.id, "hello", {"x": 1})
    for stmt in ("UPDATE events SET kind = 'changed'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), p.db.engine.begin() as conn:
            conn.execute(text(stmt))
    with p.db.engine.connect() as conn:
        assert conn.execute(text("SELECT kind FROM events")).scalars().all().count("hello") == 1


def _queue(p, priorities: list[float]) -> list[int]:
    import pandas as pd

    from labelloop.sources.readers import ParquetReader

    ids = []
    path = p.folder / "q.parquet"
    pd.DataFrame({"text": [f"item {i}" for i in range(len(priorities))]}).to_parquet(path)
    p.ingest(ParquetReader(path))
    items = p.items()
    ids = list(items["id"])
    with p.db.engine.begin() as conn:
        for item_id, pr in zip(ids, priorities, strict=True):
            conn.execute(
                update(ItemRow)
                .where(ItemRow.id == item_id)
                .values(state=ItemState.queued, priority=pr)
            )
    return ids


def test_next_for_review_orders_by_priority_then_id(make_project) -> None:
    p = make_project()
    ids = _queue(p, [0.1, 0.9, 0.5, 0.9, 0.0])
    got = list(p.next_for_review(limit=3)["id"])
    assert got == [ids[1], ids[3], ids[2]]


def test_labels_are_checked_against_the_taxonomy(make_project) -> None:
    p = make_project()
    ids = _queue(p, [0.5, 0.4])
    p.label(ids[0], ["spam"], annotator="ana", time_spent_ms=1200)
    with pytest.raises(LabelError, match="'eggs' is not in the taxonomy"):
        p.label(ids[1], ["eggs"], annotator="ana")
    with pytest.raises(LabelError, match="single-label"):
        p.label(ids[1], ["ham", "spam"], annotator="ana")
    fl = p.final_labels()
    assert list(fl["labels"]) == [["spam"]] and list(fl["source_name"]) == ["ana"]
    assert p.status()["states"]["labeled"] == 1
    assert p.status()["labels"] == {"spam": {"human": 1}}


def test_suggestions_keep_provenance(make_project) -> None:
    p = make_project()
    ids = _queue(p, [0.5])
    s = Suggestion(
        item_id=ids[0],
        content_hash="h",
        labeler="llm",
        labeler_version="smollm2@q4",
        probs={"ham": 0.2, "spam": 0.8},
        confidence=0.8,
        confidence_method="logprobs",
        latency_ms=120.0,
        cost_usd=0.0001,
        tokens=42,
        prompt_version="v1",
    )
    with p.db.engine.begin() as conn:
        add_suggestions(conn, [s])
        row = conn.execute(
            text(
                "SELECT labeler, label, confidence_method, prompt_version, tokens FROM suggestions "
                "WHERE item_id = :i"
            ),
            {"i": ids[0]},
        ).one()
    assert tuple(row) == ("llm", "spam", "logprobs", "v1", 42)


def test_embedding_cache_round_trip(storage_url: str) -> None:
    db = Database(storage_url)
    cache = StoreEmbeddingCache(db)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 384)).astype(np.float32)
    hashes = [f"h{i}" for i in range(5)]
    cache.put_many("m", hashes, vecs)
    cache.put_many("m", hashes[:2], vecs[:2])  # already there: ignored
    got = cache.get_many("m", ["h3", "h0", "nope"])
    assert set(got) == {"h3", "h0"}
    np.testing.assert_array_equal(got["h3"], vecs[3])
    keys, matrix = cache.load_all("m")
    order = [int(k[1:]) for k in keys]
    np.testing.assert_array_equal(matrix, vecs[order])
    assert cache.get_many("other-model", hashes) == {}
    db.dispose()


def test_status_counts_labeler_usage(make_project) -> None:
    p = make_project()
    ids = _queue(p, [0.5, 0.4])
    with p.db.engine.begin() as conn:
        add_suggestions(
            conn,
            [
                Suggestion(
                    ids[0],
                    "h",
                    "llm",
                    "v",
                    {"ham": 1.0, "spam": 0.0},
                    1.0,
                    "logprobs",
                    tokens=100,
                    cost_usd=0.002,
                ),
                Suggestion(
                    ids[1],
                    "h",
                    "llm",
                    "v",
                    {},
                    None,
                    None,
                    status="invalid",
                    tokens=50,
                    cost_usd=0.001,
                ),
            ],
        )
    usage = p.status()["labelers"]["llm"]
    assert usage == {
        "suggestions": 2,
        "invalid": 1,
        "tokens": 150,
        "cost_usd": pytest.approx(0.003),
    }


def test_bulk_insert_of_rows_believed_new_survives_a_concurrent_writer(make_project) -> None:
    """Another writer stored the same content between our lookup and our insert."""
    from labelloop.store.items import insert_items

    p = make_project()
    ids = _queue(p, [0.1])
    row = p.items().iloc[0]
    stale = (p.id, row["content_hash"], "dup", None, "{}", "other.csv", 1)
    fresh = (p.id, "f" * 64, "new one", None, "{}", "other.csv", 2)
    with p.db.engine.begin() as conn:
        insert_items(conn, [stale, fresh], [])
    items = p.items()
    assert len(items) == 2 and set(items["content"]) == {row["content"], "new one"}
    assert ids == [int(items["id"].iloc[0])]
