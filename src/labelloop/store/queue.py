"""The review queue's SQL: queue state, leases, answers and the item a reviewer sees.

Every function runs inside the caller's transaction (``conn``); ``labelloop.review.queue``
decides which of them make one atomic step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, literal, select, update

from labelloop.store.models import (
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    LeaseRow,
    SuggestionRow,
)

ANSWER_ACTIONS = ("label", "accept", "correct")
# Rows that are not an answer: passing on an item, and an answer taken back (kept as "undone",
# with an "undo" row beside it). They never fill an item's room for reviewers.
NOT_ANSWERS = ("skip", "undo", "undone")
# An annotator never gets back an item they answered or skipped; an undone answer does not count.
TAKEN_BACK = ("undo", "undone")


# -- queue state --------------------------------------------------------------------------
def enqueue_items(
    conn: Connection,
    project_id: int,
    rows: Sequence[dict[str, Any]],
    reason: str,
    reviews_needed: int,
) -> None:
    """Queue the project's items ``rows`` ({"i": item id, "p": priority}) for review."""
    if not rows:
        return
    t = ItemRow.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("i"), t.c.project_id == project_id)
        .values(
            state=ItemState.queued,
            priority=bindparam("p"),
            queue_reason=reason,
            reviews_needed=reviews_needed,
        )
    )
    conn.execute(stmt, list(rows))


def count_answerers(conn: Connection, item_id: int) -> int:
    """How many distinct people answered the item (label, accept or correct)."""
    h = HumanLabelRow.__table__
    return conn.execute(
        select(func.count(h.c.annotator.distinct())).where(
            h.c.item_id == item_id, h.c.action.in_(ANSWER_ACTIONS)
        )
    ).scalar_one()


def requeue_for_recheck(
    conn: Connection, project_id: int, item_id: int, reviews_needed: int
) -> bool:
    """Put a labeled item of the project back at the top of the queue, needing
    ``reviews_needed`` answers. False if the item is not the project's."""
    t = ItemRow.__table__
    return bool(
        conn.execute(
            update(t)
            .where(t.c.id == item_id, t.c.project_id == project_id)
            .values(
                state=ItemState.queued,
                queue_reason="recheck",
                reviews_needed=reviews_needed,
                priority=1000.0,
            )
        ).rowcount
    )


def set_priorities(conn: Connection, project_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Set the priority of the project's items ``rows`` ({"i": item id, "p": priority})."""
    if not rows:
        return
    t = ItemRow.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("i"), t.c.project_id == project_id)
        .values(priority=bindparam("p"))
    )
    conn.execute(stmt, list(rows))


def set_reviews_needed(conn: Connection, item_id: int, reviews_needed: int) -> None:
    conn.execute(update(ItemRow).where(ItemRow.id == item_id).values(reviews_needed=reviews_needed))


def queue_reason(conn: Connection, item_id: int) -> str | None:
    return conn.execute(select(ItemRow.queue_reason).where(ItemRow.id == item_id)).scalar_one()


def reviews_needed(conn: Connection, item_id: int) -> int:
    return conn.execute(select(ItemRow.reviews_needed).where(ItemRow.id == item_id)).scalar_one()


# -- leases -------------------------------------------------------------------------------
def held_item(conn: Connection, project_id: int, annotator: str, now: datetime) -> int | None:
    """The queued item of the project ``annotator`` holds a live lease on (oldest lease)."""
    t = ItemRow.__table__
    return conn.execute(
        select(LeaseRow.item_id)
        .join(t, t.c.id == LeaseRow.item_id)
        .where(
            LeaseRow.annotator == annotator,
            LeaseRow.expires_at > now,
            t.c.project_id == project_id,
            t.c.state == ItemState.queued,
        )
        .order_by(LeaseRow.started_at)
        .limit(1)
    ).scalar_one_or_none()


def extend_lease(conn: Connection, item_id: int, annotator: str, expires: datetime) -> None:
    conn.execute(
        update(LeaseRow)
        .where(LeaseRow.item_id == item_id, LeaseRow.annotator == annotator)
        .values(expires_at=expires)
    )


def candidate_items(
    conn: Connection, project_id: int, annotator: str, now: datetime, limit: int
) -> list[int]:
    """Up to ``limit`` queued items ``annotator`` has not answered and that still have room
    (live leases of others plus answers below ``reviews_needed``), best first. On PostgreSQL
    the rows are locked, skipping rows another claim holds."""
    t = ItemRow.__table__
    h = HumanLabelRow.__table__
    lease = LeaseRow.__table__
    mine = exists().where(
        h.c.item_id == t.c.id, h.c.annotator == annotator, h.c.action.not_in(TAKEN_BACK)
    )
    others_leasing = (
        select(func.count())
        .where(lease.c.item_id == t.c.id, lease.c.expires_at > now, lease.c.annotator != annotator)
        .scalar_subquery()
    )
    answered = (
        select(func.count(h.c.annotator.distinct()))
        .where(h.c.item_id == t.c.id, h.c.action.not_in(NOT_ANSWERS))
        .scalar_subquery()
    )
    stmt = (
        select(t.c.id)
        .where(
            t.c.project_id == project_id,
            t.c.state == ItemState.queued,
            ~mine,
            others_leasing + answered < t.c.reviews_needed,
        )
        .order_by(t.c.priority.desc(), t.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=t, skip_locked=True)
    return list(conn.execute(stmt).scalars())


def try_lease(
    conn: Connection, item_id: int, annotator: str, now: datetime, expires: datetime
) -> bool:
    """Take a lease only if the item still has room; atomic in one statement (after dropping
    ``annotator``'s own old lease on it). True if the lease was taken."""
    lease = LeaseRow.__table__
    h = HumanLabelRow.__table__
    t = ItemRow.__table__
    conn.execute(delete(lease).where(lease.c.item_id == item_id, lease.c.annotator == annotator))
    others = (
        select(func.count())
        .where(lease.c.item_id == item_id, lease.c.expires_at > now)
        .scalar_subquery()
    )
    answered = (
        select(func.count(h.c.annotator.distinct()))
        .where(h.c.item_id == item_id, h.c.action.not_in(NOT_ANSWERS))
        .scalar_subquery()
    )
    room = select(t.c.reviews_needed).where(t.c.id == item_id).scalar_subquery()
    stmt = insert(lease).from_select(
        ["item_id", "annotator", "expires_at", "started_at"],
        select(literal(item_id), literal(annotator), literal(expires), literal(now)).where(
            others + answered < room
        ),
    )
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... SELECT here.
    return conn.execute(stmt.returning(lease.c.item_id)).first() is not None


def lease_expiry(conn: Connection, item_id: int, annotator: str) -> datetime | None:
    """When ``annotator``'s lease on the item ends (None: no lease)."""
    return conn.execute(
        select(LeaseRow.expires_at).where(
            LeaseRow.item_id == item_id, LeaseRow.annotator == annotator
        )
    ).scalar_one_or_none()


def release_lease(conn: Connection, item_id: int, annotator: str) -> None:
    conn.execute(
        delete(LeaseRow).where(LeaseRow.item_id == item_id, LeaseRow.annotator == annotator)
    )


def grant_lease(
    conn: Connection, item_id: int, annotator: str, now: datetime, expires: datetime
) -> None:
    """Give ``annotator`` a fresh lease on the item unconditionally (replacing theirs)."""
    release_lease(conn, item_id, annotator)
    conn.execute(
        insert(LeaseRow).values(
            item_id=item_id, annotator=annotator, expires_at=expires, started_at=now
        )
    )


# -- what the reviewer sees ---------------------------------------------------------------
def item_with_suggestions(conn: Connection, item_id: int) -> dict[str, Any]:
    """The item's id, content, content_hash, media_path, meta, priority, queue_reason and
    reviews_needed, plus ``suggestions`` (newest first)."""
    t = ItemRow.__table__
    row = dict(
        conn.execute(
            select(
                t.c.id,
                t.c.content,
                t.c.content_hash,
                t.c.media_path,
                t.c.meta,
                t.c.priority,
                t.c.queue_reason,
                t.c.reviews_needed,
            ).where(t.c.id == item_id)
        )
        .mappings()
        .one()
    )
    s = SuggestionRow.__table__
    row["suggestions"] = [
        dict(r)
        for r in conn.execute(
            select(
                s.c.labeler,
                s.c.labeler_version,
                s.c.prompt_version,
                s.c.probs,
                s.c.label,
                s.c.confidence,
                s.c.confidence_method,
                s.c.status,
            )
            .where(s.c.item_id == item_id)
            .order_by(s.c.id.desc())
        ).mappings()
    ]
    return row


# -- answers ------------------------------------------------------------------------------
def answers(conn: Connection, item_id: int) -> list[list[str]]:
    """The labels of every answer (label, accept, correct) on the item, oldest first."""
    h = HumanLabelRow.__table__
    return [
        list(r[0])
        for r in conn.execute(
            select(h.c.labels)
            .where(h.c.item_id == item_id, h.c.action.in_(ANSWER_ACTIONS))
            .order_by(h.c.id)
        )
    ]


def grouped_members(conn: Connection, item_id: int) -> list[int]:
    """Items still waiting (state ``grouped``) on ``item_id`` as their group's head."""
    t = ItemRow.__table__
    return list(
        conn.execute(select(t.c.id).where(t.c.group_id == item_id, t.c.state == ItemState.grouped))
        .scalars()
        .all()
    )


def last_action(conn: Connection, project_id: int, annotator: str) -> tuple[int, int] | None:
    """(human label id, item id) of ``annotator``'s newest action in the project that is not
    an undo or already undone; None if there is none."""
    h = HumanLabelRow.__table__
    t = ItemRow.__table__
    row = conn.execute(
        select(h.c.id, h.c.item_id)
        .join(t, t.c.id == h.c.item_id)
        .where(
            h.c.annotator == annotator,
            h.c.action.notin_(("undo", "undone")),
            t.c.project_id == project_id,
        )
        .order_by(h.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def lock_item(conn: Connection, item_id: int) -> None:
    """On PostgreSQL, lock the item's row until the transaction ends (a claim locks it too, so
    the two wait for each other). SQLite has one writer at a time: the caller's first write
    does the same."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(ItemRow.id).where(ItemRow.id == item_id).with_for_update())


def others_on_item(conn: Connection, item_id: int, annotator: str, now: datetime) -> int:
    """People other than ``annotator`` who hold a live lease on the item or answered it: the
    room they take of the item's ``reviews_needed`` (counted as ``try_lease`` counts it)."""
    lease = LeaseRow.__table__
    h = HumanLabelRow.__table__
    leases = conn.execute(
        select(func.count()).where(
            lease.c.item_id == item_id, lease.c.expires_at > now, lease.c.annotator != annotator
        )
    ).scalar_one()
    answered = conn.execute(
        select(func.count(h.c.annotator.distinct())).where(
            h.c.item_id == item_id, h.c.action.not_in(NOT_ANSWERS), h.c.annotator != annotator
        )
    ).scalar_one()
    return int(leases) + int(answered)


def mark_undone(conn: Connection, label_id: int) -> None:
    """Keep the human label, but as action ``undone``."""
    conn.execute(update(HumanLabelRow).where(HumanLabelRow.id == label_id).values(action="undone"))


def final_source_kind(conn: Connection, item_id: int) -> str | None:
    return conn.execute(
        select(FinalLabelRow.source_kind).where(FinalLabelRow.item_id == item_id)
    ).scalar_one_or_none()


def reopen_item(conn: Connection, item_id: int) -> None:
    """Drop the item's final label and put it back in state ``queued``."""
    conn.execute(delete(FinalLabelRow).where(FinalLabelRow.item_id == item_id))
    conn.execute(update(ItemRow).where(ItemRow.id == item_id).values(state=ItemState.queued))


# -- stats --------------------------------------------------------------------------------
def queue_stats(conn: Connection, project_id: int, now: datetime) -> dict[str, int]:
    """Queued items of the project and live leases on its items."""
    t = ItemRow.__table__
    queued = conn.execute(
        select(func.count()).where(t.c.project_id == project_id, t.c.state == ItemState.queued)
    ).scalar_one()
    leased = conn.execute(
        select(func.count())
        .select_from(LeaseRow.__table__.join(t, t.c.id == LeaseRow.item_id))
        .where(t.c.project_id == project_id, LeaseRow.expires_at > now)
    ).scalar_one()
    return {"queued": queued, "leased": leased}
