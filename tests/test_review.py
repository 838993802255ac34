"""The review queue on SQLite and PostgreSQL: leases, overlap, stale leases, skip, undo."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import update

from labelloop.core.errors import LabelError
from labelloop.review.queue import LeaseError
from labelloop.store.models import LeaseRow, utcnow


@pytest.fixture
def queued(make_project, tmp_path):
    p = make_project()
    path = tmp_path / "q.csv"
    pd.DataFrame({"text": [f"message {i}" for i in range(6)]}).to_csv(path, index=False)
    p.ingest(path)
    ids = list(p.items()["id"])
    p.enqueue(ids, [0.1, 0.9, 0.5, 0.3, 0.2, 0.0])
    return p, ids


def test_two_reviewers_never_get_the_same_item(queued) -> None:
    p, ids = queued
    a = p.next_item("ana")
    b = p.next_item("ben")
    assert a["id"] == ids[1] and b["id"] == ids[2]  # best first, and not the same
    assert p.next_item("ana")["id"] == ids[1]  # asking again returns the held item


def test_submit_labels_and_moves_on(queued) -> None:
    p, ids = queued
    item = p.next_item("ana")
    out = p.submit(item["id"], ["spam"], annotator="ana", time_spent_ms=900)
    assert out["final"] == ["spam"]
    assert p.next_item("ana")["id"] == ids[2]
    fl = p.final_labels()
    assert list(fl["labels"]) == [["spam"]] and list(fl["source_kind"]) == ["human"]


def test_label_outside_taxonomy_is_refused(queued) -> None:
    p, _ = queued
    item = p.next_item("ana")
    with pytest.raises(LabelError, match="not in the taxonomy"):
        p.submit(item["id"], ["eggs"], annotator="ana")


def test_stale_lease_is_refused_and_item_goes_to_someone_else(queued) -> None:
    p, ids = queued
    item = p.next_item("ana")
    with p.db.engine.begin() as conn:
        conn.execute(update(LeaseRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert p.next_item("ben")["id"] == item["id"]  # expired: free for others
    with pytest.raises(LeaseError, match="expired"):
        p.submit(item["id"], ["ham"], annotator="ana")


def test_submit_without_lease_is_refused(queued) -> None:
    p, ids = queued
    with pytest.raises(LeaseError, match="not leased"):
        p.submit(ids[0], ["ham"], annotator="ana")


def test_overlap_gives_one_item_to_k_reviewers_then_majority(queued) -> None:
    p, ids = queued
    p.enqueue([ids[5]], [5.0], reviews_needed=3)
    answers = {"ana": "spam", "ben": "ham", "cy": "spam"}
    for who, label in answers.items():
        item = p.next_item(who)
        assert item["id"] == ids[5]
        p.submit(item["id"], [label], annotator=who)
    assert p.next_item("dee")["id"] == ids[1]  # three reviews done: out of the queue
    row = p.final_labels().iloc[0]
    assert row["labels"] == ["spam"] and row["source_name"] == "majority"
    assert row["confidence"] == pytest.approx(2 / 3)


def test_skip_passes_item_to_others(queued) -> None:
    p, ids = queued
    item = p.next_item("ana")
    p.skip(item["id"], annotator="ana")
    assert p.next_item("ana")["id"] != item["id"]
    assert p.next_item("ben")["id"] == item["id"]


def test_undo_brings_the_last_item_back(queued) -> None:
    p, ids = queued
    first = p.next_item("ana")
    p.submit(first["id"], ["spam"], annotator="ana")
    again = p.undo(annotator="ana")
    assert again["id"] == first["id"]
    assert p.final_labels().empty
    p.submit(first["id"], ["ham"], annotator="ana")
    assert list(p.final_labels()["labels"]) == [["ham"]]


def test_an_undone_item_whose_lease_lapsed_is_served_again(queued) -> None:
    """An answer taken back is no answer: once the undoer's lease lapses, the item goes to
    the next person (and back to the undoer), not stuck in the queue for good."""
    p, ids = queued
    first = p.next_item("ana")
    p.submit(first["id"], ["spam"], annotator="ana")
    assert p.undo(annotator="ana")["id"] == first["id"]
    with p.db.engine.begin() as conn:  # ana walks away: her lease lapses
        conn.execute(
            update(LeaseRow)
            .where(LeaseRow.item_id == first["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert p.next_item("ben")["id"] == first["id"]
    p.skip(first["id"], annotator="ben")
    assert p.next_item("ana")["id"] == first["id"]


def test_next_item_carries_suggestions(queued) -> None:
    from labelloop.core.types import Suggestion
    from labelloop.store.labels import add_suggestions

    p, ids = queued
    with p.db.engine.begin() as conn:
        add_suggestions(
            conn,
            [
                Suggestion(
                    ids[1], "h", "student", "3", {"ham": 0.3, "spam": 0.7}, 0.7, "predict_proba"
                )
            ],
        )
    item = p.next_item("ana")
    assert item["suggestions"][0]["label"] == "spam"
    assert item["suggestions"][0]["labeler"] == "student"


def test_empty_queue_returns_none(make_project) -> None:
    p = make_project()
    assert p.next_item("ana") is None
