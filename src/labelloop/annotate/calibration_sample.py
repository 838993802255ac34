"""The project's calibration sample as the annotate stages use it: which items are in it now
(``CalibrationSample``, drawn by ``routing.sample``), sending its members to people, and which
human labels are its evidence (``calibration_evidence``). Routing fits thresholds on that
evidence; the cascade asks the LLM about members first, so the LLM's lift is measured on it
too (``annotate.suggest``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelloop.review.queue import ReviewQueue
from labelloop.routing.sample import (
    calibration_members,
    calibration_size,
    inclusion,
    keyed_uniforms,
)
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.models import ItemState
from labelloop.store.reads import event_item_ids, item_states

IDLE_SHARE = 0.5  # the sample's share of human labels while machines label nothing
SAMPLE_PRIORITY = 150.0  # added to a sampled item's queue priority (cold start: +100)


@dataclass(frozen=True)
class CalibrationSample:
    """The project's calibration sample now (``routing.sample``): which items are in it."""

    members: frozenset[int]
    size: int
    pool: int
    states: dict[int, tuple[str, str | None]]

    @property
    def active(self) -> bool:
        return self.size > 0

    @property
    def inclusion(self) -> float:
        return inclusion(self.size, self.pool)

    @classmethod
    def draw(cls, ctx: ProjectContext, human_labels: int) -> CalibrationSample:
        """The sample for ``human_labels`` labels, sized ahead for the labels expected before
        the next retrain (``loop.retrain_every``), so it does not lag behind a slow cadence.
        Single-label projects only for now: the multi-label set threshold is still fit on every
        human label, so a sample there would cost people work and measure nothing.

        While machines have labeled nothing, the sample takes ``IDLE_SHARE`` of the human labels
        (at least ``metrics.calibration_share``): it is the only evidence that can let them
        start, and a random label teaches the student about as much as an actively chosen one
        this early. Measured on SMS spam (issue 10): at share 0.2 one seed's sample stayed at
        100 items to 400 labels, its bound at 0.94, and machines labeled nothing."""
        m = ctx.config.metrics
        if ctx.config.task != "single_label":
            return cls(frozenset(), 0, 0, {})
        rows = item_states(ctx.db, ctx.id)
        share = m.calibration_share
        if share and not any(r[1] == ItemState.auto for r in rows):  # machines idle
            share = max(share, IDLE_SHARE)
        size = calibration_size(
            human_labels,
            share,
            m.calibration_min,
            lookahead=ctx.config.loop.retrain_every,
            pool=len(rows),
        )
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        members = frozenset(int(i) for i in ids[calibration_members(ids, size)])
        return cls(members, size, len(rows), {r[0]: (r[1], r[2]) for r in rows})

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.array([int(i) in self.members for i in ids], dtype=bool)

    def members_first(self, items: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        """``items`` (id first) with the sample's members ahead, each part by id: they fall in
        the first batch, where a capped LLM's calls go."""
        return sorted(items, key=lambda it: (it[0] not in self.members, it[0]))

    def enqueue(self, ctx: ProjectContext, pending: np.ndarray) -> int:
        """Send sampled items to people ahead of the active-learning queue (queue reason
        "audit": to a reviewer, a random check like the audits), with a ``calibration`` event
        recording the inclusion probability. ``pending``: sampled items this routing decided;
        sampled items machines labeled earlier go too (a near-duplicate waiting on its group's
        label stays with its group).
        Returns how many were newly queued."""
        if not self.active:
            return 0
        done = event_item_ids(ctx.db, ctx.id, "calibration")
        earlier = sorted(
            i
            for i in self.members
            if i not in done and self.states.get(i, ("", None))[0] == ItemState.auto
        )
        ids = [int(i) for i in pending] + earlier
        # Ahead of everything, the cold start's typical items (+100) included: the first
        # calibration_min labels are the random sample, which is then the cold start too (never
        # worse than random, and thresholds can exist as soon as the cold start is done). In the
        # order of the keyed draw, not by active-learning priority: any part of the sample
        # people have labeled so far is then itself a random sample (by priority, the first 50
        # were the typical, easy items, and thresholds passed on them that the pool missed).
        prio = (SAMPLE_PRIORITY + 1.0 - keyed_uniforms(ids)).tolist()
        ReviewQueue(ctx.db, ctx.id, ctx.config.task).enqueue(ids, prio, reason="audit")
        new = [i for i in ids if i not in done]
        with ctx.db.engine.begin() as conn:
            for item_id in new:
                payload = {"inclusion": self.inclusion, "sample_size": self.size, "pool": self.pool}
                log_event(conn, ctx.id, "calibration", payload, item_id)
        return len(new)


def calibration_evidence(ctx: ProjectContext, item_ids: np.ndarray) -> np.ndarray | None:
    """Which of the human-labeled ``item_ids`` measure precision; None when the project keeps
    no calibration sample (multi-label, or ``metrics.calibration_share`` 0).

    The evidence is the items sent to people as sample members (a ``calibration`` event), each
    a random draw from the items still machines' to label when it was sent. A member people had
    labeled earlier for another reason (an actively chosen, hard item) is left out, as machines
    will never label it. Sent items stay evidence when later arrivals push them out of the
    current sample (the draw keeps the smallest keys of a larger pool), so the sample itself
    need not be drawn here."""
    if ctx.config.task != "single_label" or ctx.config.metrics.calibration_share == 0:
        return None
    sent = event_item_ids(ctx.db, ctx.id, "calibration")
    return np.array([int(i) in sent for i in item_ids], dtype=bool)
