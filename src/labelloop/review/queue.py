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
from typing import TYPE_CHECKING, Any

from labelloop.core.errors import LabelloopError
from labelloop.store import queue as sq
from labelloop.store.db import Database
from labelloop.store.events import log_event
from labelloop.store.labels import add_human_label, set_final_labels
from labelloop.store.models import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Connection

DEFAULT_LEASE_SECONDS = 600
# Rows per transaction when the loop rewrites many items (SQLite has one writer at a time).
WRITE_CHUNK = 1000
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
        # Small transactions: a reviewer's next item never waits long behind a re-route.
        for start in range(0, len(rows), WRITE_CHUNK):
            with self.db.short_write() as conn:
                sq.enqueue_items(
                    conn, self.project_id, rows[start : start + WRITE_CHUNK], reason, reviews_needed
                )

    def recheck(
        self,
        item_ids: Sequence[int],
        reasons: Sequence[str],
        details: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Send labeled items back for one more reviewer (a suspected label error).

        The item needs one more answer than it has; the next reviewer will not be the one who
        answered before, and the final label becomes the majority (or waits for a third).
        ``details`` (one dict per item) are kept in the ``label_issue`` event beside the reason
        (the model's probability of the given label, which people's accuracy is later
        estimated from).
        """
        extra = list(details) if details is not None else [{}] * len(item_ids)
        with self.db.engine.begin() as conn:
            for item_id, reason, more in zip(item_ids, reasons, extra, strict=True):
                answers = sq.count_answerers(conn, item_id)
                if sq.requeue_for_recheck(conn, self.project_id, item_id, answers + 1):
                    payload = {"reason": reason, **more}
                    log_event(conn, self.project_id, "label_issue", payload, item_id)

    def set_priorities(self, item_ids: Sequence[int], priorities: Sequence[float]) -> None:
        """Re-score queued items in small transactions, so reviewers are never blocked long."""
        rows = [{"i": int(i), "p": float(p)} for i, p in zip(item_ids, priorities, strict=True)]
        for start in range(0, len(rows), WRITE_CHUNK):
            with self.db.short_write() as conn:
                sq.set_priorities(conn, self.project_id, rows[start : start + WRITE_CHUNK])

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
            held = sq.held_item(conn, self.project_id, annotator, now)
            if held is not None:
                sq.extend_lease(conn, held, annotator, expires)
                return self._item(conn, held, expires)
            for item_id in sq.candidate_items(conn, self.project_id, annotator, now, _CANDIDATES):
                if sq.try_lease(conn, item_id, annotator, now, expires):
                    return self._item(conn, item_id, expires)
        return None

    def _item(self, conn: Connection, item_id: int, expires: datetime) -> dict[str, Any]:
        row = sq.item_with_suggestions(conn, item_id)
        row["lease_expires_at"] = expires.isoformat()
        return row

    def _check_lease(self, conn: Connection, item_id: int, annotator: str) -> None:
        exp = sq.lease_expiry(conn, item_id, annotator)
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
        the answers, ``_decide``; without a majority one more person is asked) and it leaves
        the queue. ``labels`` are stored in the order given; ``[]`` on a multi-label task is
        the answer "none of these apply" (a decided ``final`` of ``[]``).
        """
        with self.db.engine.begin() as conn:
            self._check_lease(conn, item_id, annotator)
            reason = sq.queue_reason(conn, item_id)
            if reason == "gold":  # scores the reviewer; the item's label is known already
                add_human_label(conn, item_id, annotator, labels, "gold", time_spent_ms)
                sq.release_lease(conn, item_id, annotator)
                return {"item_id": item_id, "final": None, "answers": 0, "gold": True}
            add_human_label(conn, item_id, annotator, labels, action, time_spent_ms)
            sq.release_lease(conn, item_id, annotator)
            answers = sq.answers(conn, item_id)
            needed = sq.reviews_needed(conn, item_id)
            decided = None
            if len(answers) >= needed:
                decided, share = self._decide(answers)
                if len(answers) > 1 and share * 2 <= 1:
                    # No majority (a recheck that disagrees): one more person decides.
                    decided = None
                    sq.set_reviews_needed(conn, item_id, len(answers) + 1)
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
        members = sq.grouped_members(conn, item_id)
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
            sq.release_lease(conn, item_id, annotator)
            log_event(conn, self.project_id, "skip", {"annotator": annotator}, item_id)

    def undo(
        self, annotator: str, lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> dict[str, Any] | None:
        """Take back ``annotator``'s last answer or skip; the item comes back to them, leased.

        The history keeps both the answer and an ``undo`` record (nothing is deleted). Refused
        (LeaseError) when others have taken the item's room since: another reviewer holds it
        or answered it, and giving it back would put more people on it than it needs.
        """
        now = utcnow()
        with self.db.engine.begin() as conn:
            last = sq.last_action(conn, self.project_id, annotator)
            if last is None:
                return None
            label_id, item_id = last
            sq.lock_item(conn, item_id)
            # Move the undone answer out of the way: keep it, but as action "undone". (The
            # first write: on SQLite the check below then reads under the write lock.)
            sq.mark_undone(conn, label_id)
            if sq.others_on_item(conn, item_id, annotator, now) >= sq.reviews_needed(conn, item_id):
                raise LeaseError(
                    f"item {item_id} went to another reviewer since; it can no longer be "
                    "undone: ask for the next item"
                )
            add_human_label(conn, item_id, annotator, [], "undo", None)
            if sq.final_source_kind(conn, item_id) == "human":
                sq.reopen_item(conn, item_id)
            expires = now + timedelta(seconds=lease_seconds)
            sq.grant_lease(conn, item_id, annotator, now, expires)
            log_event(conn, self.project_id, "undo", {"annotator": annotator}, item_id)
            return self._item(conn, item_id, expires)

    def _decide(self, answers: list[list[str]]) -> tuple[list[str], float]:
        """The decided labels and the agreement behind them (a share of the answers).

        Single-label: the answer given most often (ties go to the earliest).

        Multi-label: each label any answer holds is kept when more than half of the answers
        hold it. The empty set ("none of these apply") is a set like any other: an empty answer
        votes against every label, and when no label is kept the decision is ``[]``. The share
        is the weakest agreement over those labels (for each, the share of answers on the
        winning side), so a label half the answers hold is a tie (share 1/2) and one more
        person is asked, as for single-label; ``[[]]`` alone and ``[[], []]`` decide ``[]`` at
        share 1. Kept labels come in the order people gave them (oldest answer first).
        """
        n = len(answers)
        if self.task == "multi_label":
            # dict, not set: insertion order is the people's order (a set's is arbitrary)
            counts = Counter(label for a in answers for label in dict.fromkeys(a))
            kept = [label for label, c in counts.items() if c * 2 > n]
            share = min((max(c, n - c) / n for c in counts.values()), default=1.0)
            return kept, share
        tally = Counter(tuple(a) for a in answers)
        top = max(tally.values())
        winner = next(tuple(a) for a in answers if tally[tuple(a)] == top)
        return list(winner), top / n

    def stats(self) -> dict[str, int]:
        now = utcnow()
        with self.db.engine.connect() as conn:
            return sq.queue_stats(conn, self.project_id, now)
