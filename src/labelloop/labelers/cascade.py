"""The cascade: cheap labelers first, the expensive one (an LLM) only where it pays.

One implementation serves the product (``annotate.suggest`` hands it the cheap ensemble's
probabilities) and direct use (``Cascade.run`` over items with any cheap labeler): the policy
picks cold-start, unsure and disputed items; a capped labeler (``remaining_calls``) answers the
least certain first; and a taxonomy larger than ``candidate_labels`` is narrowed per item to
the cheap labelers' likeliest labels (``suggest_among``), so a prompt stays short.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labelloop.core.config import TaskType
from labelloop.core.probs import as_task, check_label_names, confidence_of, dicts_to_probs
from labelloop.core.types import Item, Suggestion
from labelloop.labelers.base import Labeler
from labelloop.labelers.ensemble import EnsembleLabeler


@dataclass(frozen=True)
class CascadePolicy:
    """When the expensive labeler is worth calling.

    - ``min_human_labels``: below this many human labels (cold start) every item goes to it;
    - ``confidence_threshold``: items whose cheap confidence is below it go to it;
    - ``disagreement_threshold``: items whose cheap labelers disagree above it go to it
      (mean pairwise JS divergence, 0..1; set to 1.0 to ignore disagreement);
    - ``measure_share``: with a call budget, at most this share of the remaining calls goes
      first to preferred items (the calibration sample's members, see ``Cascade.pick``).
    """

    min_human_labels: int = 50
    confidence_threshold: float = 0.8
    disagreement_threshold: float = 0.3
    measure_share: float = 0.5

    def __post_init__(self) -> None:
        if self.min_human_labels < 0:
            raise ValueError(f"min_human_labels must be >= 0, got {self.min_human_labels}")
        for name in ("confidence_threshold", "disagreement_threshold", "measure_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v}")


def select_for_expensive(
    confidence: np.ndarray,
    disagreement_scores: np.ndarray,
    n_human_labels: int,
    policy: CascadePolicy,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A boolean mask of items for the expensive labeler, and the reason masks behind it."""
    c = np.asarray(confidence, dtype=np.float64)
    d = np.asarray(disagreement_scores, dtype=np.float64)
    if c.shape != d.shape:
        raise ValueError(f"confidence has shape {c.shape}, disagreement {d.shape}")
    cold = np.full(c.shape, n_human_labels < policy.min_human_labels)
    low = c < policy.confidence_threshold
    split = d > policy.disagreement_threshold
    reasons = {"cold_start": cold, "low_confidence": low & ~cold, "disagreement": split & ~cold}
    return cold | low | split, reasons


class Cascade:
    """Cheap labelers first; the expensive labeler only for the items the policy picks.

    >>> cascade = Cascade(llm, config.label_names, config.task, CascadePolicy(), cheap=ensemble)
    >>> suggestions, stats = cascade.run(items, n_human_labels=store_count)
    >>> stats["expensive_share"], stats["calls_saved"]

    or, with the cheap probabilities already computed (what ``annotate.suggest`` does):

    >>> picked, answers = cascade.ask(items, probs, disagreement, n_human_labels)

    Each returned Suggestion keeps the identity of the labeler that made it (provenance).
    An invalid expensive answer is returned as is, so the item goes to a person.
    """

    labeler_id = "cascade"

    def __init__(
        self,
        expensive: Labeler,
        label_names: Sequence[str],
        task: TaskType | str = TaskType.single_label,
        policy: CascadePolicy | None = None,
        *,
        cheap: Labeler | None = None,
        n_human_labels: int = 0,
        candidate_labels: int | None = None,
    ) -> None:
        self.cheap = cheap
        self.expensive = expensive
        self.label_names = check_label_names(label_names)
        self.task = as_task(task)
        self.policy = policy or CascadePolicy()
        self.n_human_labels = n_human_labels
        # None: the expensive labeler's own setting (``candidate_labels`` attribute), if any.
        self.candidate_labels = (
            getattr(expensive, "candidate_labels", 0)
            if candidate_labels is None
            else candidate_labels
        )
        self.last_stats: dict[str, Any] = {}

    @property
    def version(self) -> str:
        e = self.expensive
        cheap = f"{self.cheap.labeler_id}@{self.cheap.version}" if self.cheap else "probs"
        return f"cascade({cheap}>{e.labeler_id}@{e.version})"

    def pick(
        self,
        probs: np.ndarray | None,
        split: np.ndarray | None,
        n_human_labels: int,
        n: int,
        prefer: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Indices of the items the expensive labeler answers (ascending), and the reason masks.

        ``probs`` None means the cheap side was not run (cold start: every item qualifies). A
        capped labeler's ``remaining_calls`` keeps the least certain items first.

        ``prefer``: a mask of items to ask whatever the policy says: the calibration sample's
        members, which people label, so the answers there measure the labeler's lift on an
        unbiased basis (issue 10: in the demo all 100 calls went to the least certain items,
        none of them a labeled sample member, and the weight was never measured). A capped
        labeler spends at most ``policy.measure_share`` of its calls on them (the least
        certain first), an uncapped one answers them all; ``measure_share`` 0 turns it off."""
        if probs is None:
            mask = np.full(n, n_human_labels < self.policy.min_human_labels)
            reasons = {"cold_start": mask.copy()}
            conf = np.zeros(n)
        else:
            conf = confidence_of(probs, self.task)
            dis = np.zeros(n) if split is None else split
            mask, reasons = select_for_expensive(conf, dis, n_human_labels, self.policy)
        picked = np.flatnonzero(mask)
        share = self.policy.measure_share
        wanted = np.zeros(0, dtype=np.int64)
        if prefer is not None and len(prefer) and share > 0:
            wanted = np.flatnonzero(np.asarray(prefer, dtype=bool))
            wanted = wanted[np.argsort(conf[wanted], kind="stable")]
        budget = getattr(self.expensive, "remaining_calls", None)
        if budget is None:
            picked = np.union1d(picked, wanted)
        else:  # a capped labeler: the least certain items first
            first = wanted[: math.ceil(share * budget)]
            order = picked[np.argsort(conf[picked], kind="stable")]
            order = np.concatenate([first, order[~np.isin(order, first)]])
            picked = np.sort(order[:budget])
        reasons["calibration_sample"] = np.isin(np.arange(n), wanted) & ~mask
        return picked, reasons

    def candidates(self, probs: np.ndarray | None, picked: np.ndarray) -> list[list[str]] | None:
        """Per picked item, the labels its prompt shows (None: the whole taxonomy)."""
        k = self.candidate_labels or 0
        if (
            probs is None
            or not k
            or not hasattr(self.expensive, "suggest_among")
            or not 0 < k < probs.shape[1]
        ):
            return None
        top = np.argsort(-probs[picked], axis=1, kind="stable")[:, :k]
        return [[self.label_names[j] for j in row] for row in top]

    def ask(
        self,
        items: Sequence[Item],
        probs: np.ndarray | None,
        split: np.ndarray | None,
        n_human_labels: int,
        prefer: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[Suggestion]]:
        """The expensive labeler's answers for the items the policy picks (and their indices);
        ``prefer``: see ``pick``."""
        picked, _ = self.pick(probs, split, n_human_labels, len(items), prefer)
        if not len(picked):
            return picked, []
        chosen = [items[i] for i in picked]
        shown = self.candidates(probs, picked)
        if shown is not None:
            answers = self.expensive.suggest_among(chosen, shown)  # type: ignore[attr-defined]
        else:
            answers = self.expensive.suggest(chosen)
        if len(answers) != len(chosen):
            raise RuntimeError(
                f"expensive labeler {self.expensive.labeler_id!r} returned "
                f"{len(answers)} suggestions for {len(chosen)} items"
            )
        return picked, list(answers)

    def _cheap(self, items: Sequence[Item]) -> tuple[list[Suggestion], np.ndarray]:
        if self.cheap is None:
            raise ValueError("Cascade.run needs a cheap labeler (cheap=...)")
        if isinstance(self.cheap, EnsembleLabeler):
            return self.cheap.suggest_with_disagreement(items)
        return self.cheap.suggest(items), np.zeros(len(items))

    def run(
        self, items: Sequence[Item], n_human_labels: int | None = None
    ) -> tuple[list[Suggestion], dict[str, Any]]:
        """Suggestions for every item (in order) and stats on where they came from."""
        n_human = self.n_human_labels if n_human_labels is None else n_human_labels
        n = len(items)
        cold = n_human < self.policy.min_human_labels
        probs = split = None
        cheap_sugg: list[Suggestion | None] = [None] * n
        if not cold:  # at cold start the cheap side would be thrown away: do not run it
            cheap_list, split = self._cheap(items)
            cheap_sugg = list(cheap_list)
            probs = dicts_to_probs([s.probs for s in cheap_list], self.label_names)
        picked, reasons = self.pick(probs, split, n_human, n)
        _, expensive_sugg = self.ask(items, probs, split, n_human)
        out = list(cheap_sugg)
        for i, s in zip(picked, expensive_sugg, strict=True):
            out[i] = s
        n_exp = len(picked)
        stats: dict[str, Any] = {
            "n_items": n,
            "n_expensive": n_exp,
            "n_cheap_only": n - n_exp,
            "expensive_share": n_exp / n if n else 0.0,
            "calls_saved": n - n_exp,
            "cold_start": cold,
            "n_human_labels": n_human,
            "reasons": {k: int(v.sum()) for k, v in reasons.items()},
            "expensive_invalid": sum(1 for s in expensive_sugg if s.status != "ok"),
        }
        self.last_stats = stats
        return out, stats  # type: ignore[return-value]

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        """The Labeler protocol: ``run`` with the stored ``n_human_labels`` (stats: last_stats)."""
        return self.run(items)[0]
