"""The review queue over the store.

An item waits in state ``queued`` with a priority (highest first). ``claim`` hands the best
item a reviewer has not answered yet to that reviewer under a lease that expires; while the
lease lives nobody else gets the item, unless it needs several reviews (overlap), in which
case up to ``reviews_needed`` people may hold it at once. A submit needs a live lease.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, literal, select, update

from labelloop.core.errors import LabelloopError
from labelloop.store.db import Database
from labelloop.store.events import log_event
from labelloop.store.labels import add_human_label, set_final_labels
from labelloop.store.models import (
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    LeaseRow,
    SuggestionRow,
    utcnow,
)

DEFAULT_LEASE_SECONDS = 600
_CANDIDATES = 20


class LeaseError(LabelloopError):
    """The reviewer holds no live lease on the item (it expired or was never theirs)."""


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class ReviewQueue:
    """Queue operations for one project. Every method is one short transaction."""

    def __init__(self, db: Database, project_id: int, task: str = "single_label") -> None:
        self.db = db
        self.project_id = project_id
        self.task = task

    # -- filling the queue ---------------------------------------------------------------
    def enqueue(
        self,
        item_ids: Sequence[int],
        priorities: Sequence[float] | None = None,
        *,
        reason: str = "review",
        reviews_needed: int = 1,
    ) -> None:
        """Put items in the queue (or update their priority if they are there already)."""
        prios = list(priorities) if priorities is not None else [0.0] * len(item_ids)
        rows = [{"i": int(i), "p": float(p)} for i, p in zip(item_ids, prios, strict=True)]
        if not rows:
            return
        t = ItemRow.__table__
        stmt = (
            update(t)
            .where(t.c.id == bindparam("i"), t.c.project_id == self.project_id)
            .values(
                state=ItemState.queued,
                priority=bindparam("p"),
                queue_reason=reason,
                reviews_needed=reviews_needed,
            )
        )
        with self.db.engine.begin() as conn:
            conn.execute(stmt, rows)

    def recheck(self, item_ids: Sequence[int], reasons: Sequence[str]) -> None:
        """Send labeled items back for one more reviewer (a suspected label error).

        The item needs one more answer than it has; the next reviewer will not be the one who
        answered before, and the final label becomes the majority (or waits for a third).
        """
        h = HumanLabelRow.__table__
        t = ItemRow.__table__
        with self.db.engine.begin() as conn:
            for item_id, reason in zip(item_ids, reasons, strict=True):
                answers = conn.execute(
                    select(func.count(h.c.annotator.distinct())).where(
                        h.c.item_id == item_id, h.c.action.in_(("label", "accept", "correct"))
                    )
                ).scalar_one()
                conn.execute(
                    update(t)
                    .where(t.c.id == item_id)
                    .values(
                        state=ItemState.queued,
                        queue_reason="recheck",
                        reviews_needed=answers + 1,
                        priority=1000.0,
                    )
                )
                log_event(conn, self.project_id, "label_issue", {"reason": reason}, item_id)

    def set_priorities(self, item_ids: Sequence[int], priorities: Sequence[float]) -> None:
        """Re-score queued items in small transactions, so reviewers are never blocked long."""
        t = ItemRow.__table__
        stmt = update(t).where(t.c.id == bindparam("i")).values(priority=bindparam("p"))
        rows = [{"i": int(i), "p": float(p)} for i, p in zip(item_ids, priorities, strict=True)]
        for start in range(0, len(rows), 2000):
            with self.db.engine.begin() as conn:
                conn.execute(stmt, rows[start : start + 2000])

    # -- reviewing -----------------------------------------------------------------------
    def claim(
        self, annotator: str, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> dict[str, Any] | None:
        """The next item for ``annotator`` under a fresh lease, with its machine suggestions.

        A reviewer who already holds a live lease gets that item again (a page reload does
        not skip work). Returns None when nothing is left for this reviewer.
        """
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        with self.db.engine.begin() as conn:
            held = self._held(conn, annotator, now)
            if held is not None:
                conn.execute(
                    update(LeaseRow)
                    .where(LeaseRow.item_id == held, LeaseRow.annotator == annotator)
                    .values(expires_at=expires)
                )
                return self._item(conn, held, expires)
            for item_id in self._candidates(conn, annotator, now):
                if self._try_lease(conn, item_id, annotator, now, expires):
                    return self._item(conn, item_id, expires)
        return None

    def _held(self, conn: Connection, annotator: str, now: datetime) -> int | None:
        t = ItemRow.__table__
        return conn.execute(
            select(LeaseRow.item_id)
            .join(t, t.c.id == LeaseRow.item_id)
            .where(
                LeaseRow.annotator == annotator,
                LeaseRow.expires_at > now,
                t.c.project_id == self.project_id,
                t.c.state == ItemState.queued,
            )
            .order_by(LeaseRow.started_at)
            .limit(1)
        ).scalar_one_or_none()

    def _candidates(self, conn: Connection, annotator: str, now: datetime) -> list[int]:
        t = ItemRow.__table__
        h = HumanLabelRow.__table__
        lease = LeaseRow.__table__
        mine = exists().where(h.c.item_id == t.c.id, h.c.annotator == annotator)
        others_leasing = (
            select(func.count())
            .where(
                lease.c.item_id == t.c.id, lease.c.expires_at > now, lease.c.annotator != annotator
            )
            .scalar_subquery()
        )
        answered = (
            select(func.count(h.c.annotator.distinct()))
            .where(h.c.item_id == t.c.id, h.c.action != "skip")
            .scalar_subquery()
        )
        stmt = (
            select(t.c.id)
            .where(
                t.c.project_id == self.project_id,
                t.c.state == ItemState.queued,
                ~mine,
                others_leasing + answered < t.c.reviews_needed,
            )
            .order_by(t.c.priority.desc(), t.c.id)
            .limit(_CANDIDATES)
        )
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(of=t, skip_locked=True)
        return list(conn.execute(stmt).scalars())

    def _try_lease(
        self, conn: Connection, item_id: int, annotator: str, now: datetime, expires: datetime
    ) -> bool:
        """Take a lease only if the item still has room; atomic in one statement."""
        lease = LeaseRow.__table__
        h = HumanLabelRow.__table__
        t = ItemRow.__table__
        conn.execute(
            delete(lease).where(lease.c.item_id == item_id, lease.c.annotator == annotator)
        )
        others = (
            select(func.count())
            .where(lease.c.item_id == item_id, lease.c.expires_at > now)
            .scalar_subquery()
        )
        answered = (
            select(func.count(h.c.annotator.distinct()))
            .where(h.c.item_id == item_id, h.c.action != "skip")
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

    def _item(self, conn: Connection, item_id: int, expires: datetime) -> dict[str, Any]:
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
        row["lease_expires_at"] = expires.isoformat()
        return row

    def _check_lease(self, conn: Connection, item_id: int, annotator: str) -> None:
        exp = conn.execute(
            select(LeaseRow.expires_at).where(
                LeaseRow.item_id == item_id, LeaseRow.annotator == annotator
            )
        ).scalar_one_or_none()
        if exp is None:
            raise LeaseError(
                f"item {item_id} is not leased to {annotator!r}; ask for the next item"
            )
        if _aware(exp) <= utcnow():
            raise LeaseError(
                f"the lease of {annotator!r} on item {item_id} expired; the item may have gone "
                "to someone else: ask for the next item"
            )

    def submit(
        self,
        item_id: int,
        annotator: str,
        labels: list[str],
        *,
        time_spent_ms: int | None = None,
        action: str = "label",
    ) -> dict[str, Any]:
        """Record ``annotator``'s labels (already checked against the taxonomy).

        When the item has all the reviews it needs, its final label is decided (majority of
        the answers; ties go to the earliest) and it leaves the queue.
        """
        with self.db.engine.begin() as conn:
            self._check_lease(conn, item_id, annotator)
            reason = conn.execute(
                select(ItemRow.queue_reason).where(ItemRow.id == item_id)
            ).scalar_one()
            if reason == "gold":  # scores the reviewer; the item's label is known already
                add_human_label(conn, item_id, annotator, labels, "gold", time_spent_ms)
                conn.execute(
                    delete(LeaseRow).where(
                        LeaseRow.item_id == item_id, LeaseRow.annotator == annotator
                    )
                )
                return {"item_id": item_id, "final": None, "answers": 0, "gold": True}
            add_human_label(conn, item_id, annotator, labels, action, time_spent_ms)
            conn.execute(
                delete(LeaseRow).where(LeaseRow.item_id == item_id, LeaseRow.annotator == annotator)
            )
            answers = self._answers(conn, item_id)
            needed = conn.execute(
                select(ItemRow.reviews_needed).where(ItemRow.id == item_id)
            ).scalar_one()
            decided = None
            if len(answers) >= needed:
                decided, share = self._decide(answers)
                if len(answers) > 1 and share * 2 <= 1:
                    # No majority (a recheck that disagrees): one more person decides.
                    decided = None
                    conn.execute(
                        update(ItemRow)
                        .where(ItemRow.id == item_id)
                        .values(reviews_needed=len(answers) + 1)
                    )
            if decided is not None:
                name = annotator if len(answers) == 1 else "majority"
                final = {
                    "project_id": self.project_id,
                    "labels": decided,
                    "source_version": None,
                    "confidence": share if len(answers) > 1 else None,
                }
                set_final_labels(
                    conn,
                    [{**final, "item_id": item_id, "source_kind": "human", "source_name": name}],
                )
                self._spread_to_group(conn, item_id, final, name)
            log_event(
                conn, self.project_id, "label", {"annotator": annotator, "labels": labels}, item_id
            )
        return {"item_id": item_id, "final": decided, "answers": len(answers)}

    def _spread_to_group(
        self, conn: Connection, item_id: int, final: dict[str, Any], name: str
    ) -> None:
        """Near-duplicates waiting on this item take its label, marked as propagated."""
        t = ItemRow.__table__
        members = (
            conn.execute(
                select(t.c.id).where(t.c.group_id == item_id, t.c.state == ItemState.grouped)
            )
            .scalars()
            .all()
        )
        if members:
            set_final_labels(
                conn,
                [
                    {**final, "item_id": m, "source_kind": "propagated", "source_name": name}
                    for m in members
                    if m != item_id
                ],
            )

    def skip(self, item_id: int, annotator: str) -> None:
        """The reviewer passes on the item: it goes back to the queue for others."""
        with self.db.engine.begin() as conn:
            self._check_lease(conn, item_id, annotator)
            add_human_label(conn, item_id, annotator, [], "skip", None)
            conn.execute(
                delete(LeaseRow).where(LeaseRow.item_id == item_id, LeaseRow.annotator == annotator)
            )
            log_event(conn, self.project_id, "skip", {"annotator": annotator}, item_id)

    def undo(
        self, annotator: str, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> dict[str, Any] | None:
        """Take back ``annotator``'s last answer or skip; the item comes back to them, leased.

        The history keeps both the answer and an ``undo`` record (nothing is deleted).
        """
        h = HumanLabelRow.__table__
        t = ItemRow.__table__
        now = utcnow()
        with self.db.engine.begin() as conn:
            last = conn.execute(
                select(h.c.id, h.c.item_id)
                .join(t, t.c.id == h.c.item_id)
                .where(
                    h.c.annotator == annotator,
                    h.c.action.notin_(("undo", "undone")),
                    t.c.project_id == self.project_id,
                )
                .order_by(h.c.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return None
            label_id, item_id = last
            # Move the undone answer out of the way: keep it, but as action "undone".
            conn.execute(
                update(HumanLabelRow).where(HumanLabelRow.id == label_id).values(action="undone")
            )
            add_human_label(conn, item_id, annotator, [], "undo", None)
            final = conn.execute(
                select(FinalLabelRow.source_kind).where(FinalLabelRow.item_id == item_id)
            ).scalar_one_or_none()
            if final == "human":
                conn.execute(delete(FinalLabelRow).where(FinalLabelRow.item_id == item_id))
                conn.execute(
                    update(ItemRow).where(ItemRow.id == item_id).values(state=ItemState.queued)
                )
            expires = now + timedelta(seconds=lease_seconds)
            conn.execute(
                delete(LeaseRow).where(LeaseRow.item_id == item_id, LeaseRow.annotator == annotator)
            )
            conn.execute(
                insert(LeaseRow).values(
                    item_id=item_id, annotator=annotator, expires_at=expires, started_at=now
                )
            )
            log_event(conn, self.project_id, "undo", {"annotator": annotator}, item_id)
            return self._item(conn, item_id, expires)

    def _answers(self, conn: Connection, item_id: int) -> list[list[str]]:
        h = HumanLabelRow.__table__
        return [
            list(r[0])
            for r in conn.execute(
                select(h.c.labels)
                .where(h.c.item_id == item_id, h.c.action.in_(("label", "accept", "correct")))
                .order_by(h.c.id)
            )
        ]

    def _decide(self, answers: list[list[str]]) -> tuple[list[str], float]:
        """Majority over answers; for multi-label, each label kept by a majority."""
        n = len(answers)
        if self.task == "multi_label":
            counts = Counter(label for a in answers for label in set(a))
            kept = [label for label, c in counts.items() if c * 2 > n] or list(answers[0])
            return kept, min(counts[label] for label in kept) / n
        counts = Counter(tuple(a) for a in answers)
        top = max(counts.values())
        winner = next(tuple(a) for a in answers if counts[tuple(a)] == top)
        return list(winner), top / n

    def stats(self) -> dict[str, int]:
        now = utcnow()
        with self.db.engine.connect() as conn:
            t = ItemRow.__table__
            queued = conn.execute(
                select(func.count()).where(
                    t.c.project_id == self.project_id, t.c.state == ItemState.queued
                )
            ).scalar_one()
            leased = conn.execute(
                select(func.count())
                .select_from(LeaseRow.__table__.join(t, t.c.id == LeaseRow.item_id))
                .where(t.c.project_id == self.project_id, LeaseRow.expires_at > now)
            ).scalar_one()
        return {"queued": queued, "leased": leased}
