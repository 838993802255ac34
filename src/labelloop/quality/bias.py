"""Checks for systematic bias of a machine labeler (typically an LLM) against human labels.

Three questions: does it use the labels in the same proportions as people
(:func:`compare_label_distributions`), does it collapse onto one answer
(:func:`mode_collapse`), and does its answer depend on the order the labels were listed in the
prompt (:func:`order_sensitivity`)?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from labelloop.core.stats import wilson_interval


def _clean(values: Sequence[Any], name: str, where: str) -> pd.Series:
    s = pd.Series(list(values), dtype=object).dropna()
    if s.empty:
        raise ValueError(f"{where}: {name} has no labels")
    return s


@dataclass(frozen=True, slots=True)
class DistributionComparison:
    """``table``: per label, counts and shares for both, and ``ratio`` machine/human share."""

    table: pd.DataFrame
    total_variation: float  # half the L1 distance between the two share vectors, in [0, 1]
    chi2: float
    p_value: float  # chi-square test of homogeneity on the 2 x labels table
    over_predicted: list[Any]  # labels with ratio >= factor (and enough machine answers)
    n_machine: int
    n_human: int


def compare_label_distributions(
    machine_labels: Sequence[Any],
    human_labels: Sequence[Any],
    labels: Sequence[Any] | None = None,
    factor: float = 2.0,
    min_count: int = 5,
) -> DistributionComparison:
    """Compare how often a machine labeler and people use each label.

    The two sets need not be the same items (compare shares). A label is over-predicted when
    its machine share is at least ``factor`` times its human share and the machine gave it at
    least ``min_count`` times; a label people never used counts as over-predicted as soon as
    the machine gave it ``min_count`` times. Missing values are ignored.
    """
    where = "compare_label_distributions"
    machine = _clean(machine_labels, "machine_labels", where)
    human = _clean(human_labels, "human_labels", where)
    order = (
        list(labels)
        if labels is not None
        else sorted(set(machine) | set(human), key=lambda v: (str(type(v)), v))
    )
    unknown = (set(machine) | set(human)) - set(order)
    if unknown:
        raise ValueError(f"{where}: labels {sorted(map(str, unknown))} are not in `labels`")
    m_counts = machine.value_counts().reindex(order, fill_value=0).astype(np.int64)
    h_counts = human.value_counts().reindex(order, fill_value=0).astype(np.int64)
    m_share = m_counts / m_counts.sum()
    h_share = h_counts / h_counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(h_share > 0, m_share / h_share, np.where(m_share > 0, np.inf, np.nan))
    table = pd.DataFrame(
        {
            "machine_count": m_counts.to_numpy(),
            "human_count": h_counts.to_numpy(),
            "machine_share": m_share.to_numpy(),
            "human_share": h_share.to_numpy(),
            "ratio": ratio,
        },
        index=pd.Index(order, name="label"),
    )
    used = (m_counts + h_counts).to_numpy() > 0
    if used.sum() >= 2:
        chi2, p_value, _, _ = chi2_contingency(
            np.vstack([m_counts.to_numpy()[used], h_counts.to_numpy()[used]])
        )
    else:
        chi2, p_value = 0.0, 1.0
    over = table.index[(table["ratio"] >= factor) & (table["machine_count"] >= min_count)]
    return DistributionComparison(
        table=table,
        total_variation=float(0.5 * np.abs(m_share - h_share).sum()),
        chi2=float(chi2),
        p_value=float(p_value),
        over_predicted=list(over),
        n_machine=int(m_counts.sum()),
        n_human=int(h_counts.sum()),
    )


@dataclass(frozen=True, slots=True)
class ModeCollapse:
    label: Any  # the machine's most frequent answer
    machine_share: float
    human_share: float
    flagged: bool
    n_machine: int


def mode_collapse(
    machine_labels: Sequence[Any],
    human_labels: Sequence[Any],
    min_share: float = 0.5,
    factor: float = 1.5,
) -> ModeCollapse:
    """Does the machine labeler answer mostly one label, far more often than people do?

    Flagged when the machine's mode covers at least ``min_share`` of its answers and at least
    ``factor`` times the share people give that label (e.g. 90% vs 30%). A mode that people
    use just as much (a truly dominant class) is not flagged.
    """
    where = "mode_collapse"
    machine = _clean(machine_labels, "machine_labels", where)
    human = _clean(human_labels, "human_labels", where)
    counts = machine.value_counts()
    top = counts.max()
    mode = sorted(counts.index[counts == top], key=lambda v: (str(type(v)), v))[0]
    machine_share = float(top / len(machine))
    human_share = float((human == mode).mean())
    flagged = machine_share >= min_share and machine_share >= factor * human_share
    return ModeCollapse(mode, machine_share, human_share, bool(flagged), int(len(machine)))


@dataclass(frozen=True, slots=True)
class OrderSensitivity:
    n_items: int  # items answered (non-missing) under both orders
    n_flips: int
    flip_rate: float
    ci_low: float
    ci_high: float
    flipped_positions: np.ndarray  # positions (in the inputs) of the items whose answer changed


def order_sensitivity(
    answers_order_a: Sequence[Any],
    answers_order_b: Sequence[Any],
    confidence: float = 0.95,
) -> OrderSensitivity:
    """Share of items whose answer changes when the label order in the prompt changes.

    The two sequences hold the answers for the same items, in the same order; items missing
    (None/NaN) in either are left out. The interval is Wilson's.
    """
    a = pd.Series(list(answers_order_a), dtype=object)
    b = pd.Series(list(answers_order_b), dtype=object)
    if len(a) != len(b):
        raise ValueError(
            f"order_sensitivity: the two answer lists differ in length ({len(a)} vs {len(b)})"
        )
    both = (a.notna() & b.notna()).to_numpy()
    n = int(both.sum())
    if n == 0:
        raise ValueError("order_sensitivity: no item was answered under both orders")
    flips = both & (a.to_numpy() != b.to_numpy())
    n_flips = int(flips.sum())
    low, high = wilson_interval(n_flips, n, confidence)
    return OrderSensitivity(n, n_flips, n_flips / n, low, high, np.flatnonzero(flips))
