"""The calibration sample: a random share of the pool whose human labels measure precision.

Why: after the cold start, active learning hands people the items the model finds hardest, so
held-out probabilities of those items understate how well the model does on the rest of the
pool (issue 10: 0.65-0.80 accurate there against 0.84-0.95 elsewhere), and thresholds fit on
them never clear the target. A precision estimate that represents the items machines will label
needs labels on items drawn at random from the pool.

The draw: every item gets a uniform number from a hash of its id (``keyed_uniforms``), and the
sample of size n is the n items of the project with the smallest numbers. That is a simple
random sample of the pool without replacement (inclusion probability n / N for every item) and
a function of the item ids and n alone: it does not depend on when retrains happened, on the
model, or on the order items were labeled in. Growing n keeps every earlier member. An item
people labeled for another reason (cold start, active learning) that falls in the sample counts
as a sample member too: membership was decided by its key, not by why it was labeled.

Why not stratified by predicted label and confidence: inclusion probabilities that depend on
the model change with every retrain, so the sample (and its weights) would depend on the retrain
cadence, which issue 10 asks to remove. The weights are still carried (``inclusion``) so the
estimators take Horvitz-Thompson weights and a stratified draw can be added later.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

CALIBRATION_SALT = "calibration"


def keyed_uniforms(keys: Sequence[object], salt: object = CALIBRATION_SALT) -> np.ndarray:
    """A uniform number in [0, 1) per key, the same for the same (salt, key) in any call: the
    one keyed draw of the project (the calibration sample, audits, overlap items)."""
    out = np.empty(len(keys), dtype=np.float64)
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def calibration_size(
    human_labels: int, share: float, minimum: int, lookahead: int = 0, pool: int | None = None
) -> int:
    """How many items the calibration sample holds when ``human_labels`` people's labels exist
    and ``lookahead`` more are expected before the next routing: ``minimum`` from the start
    (enough for a one-sided 95% bound to clear 0.95 when nearly all are right), then ``share``
    of the human labels. Capped by the pool size. ``share`` 0 turns the sample off."""
    if not 0.0 <= share <= 0.5:
        raise ValueError(f"share={share}: expected a share in [0, 0.5]")
    if minimum < 0 or human_labels < 0 or lookahead < 0:
        raise ValueError("human_labels, minimum and lookahead must be >= 0")
    if share == 0.0:
        return 0
    n = max(minimum, math.ceil(share * (human_labels + lookahead)))
    return min(n, pool) if pool is not None else n


def calibration_members(item_ids: Sequence[int] | np.ndarray, size: int) -> np.ndarray:
    """A boolean mask over ``item_ids`` (all items of the project): the ``size`` items with the
    smallest keyed uniforms, a simple random sample of them."""
    ids = np.asarray(item_ids, dtype=np.int64)
    mask = np.zeros(len(ids), dtype=bool)
    if size <= 0 or not len(ids):
        return mask
    u = keyed_uniforms([int(i) for i in ids])
    order = np.lexsort((ids, u))  # ties (practically none) broken by id
    mask[order[: min(size, len(ids))]] = True
    return mask


def inclusion(size: int, pool: int) -> float:
    """Inclusion probability of each item in a simple random sample of ``size`` from ``pool``."""
    if pool <= 0:
        return 0.0
    return min(1.0, size / pool)
