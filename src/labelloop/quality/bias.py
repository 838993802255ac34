"""Checks for systematic bias of a machine labeler (typically an LLM) against human labels.

Three questions: does it use the labels in the same proportions as people
(:func:`compare_label_distributions`), does it collapse onto one answer
(:func:`mode_collapse`), and does its answer depend on the order the labels were listed in the
prompt (:func:`order_sensitivity`)?

A label is flagged only on evidence: a ratio of shares past ``factor`` is not enough on its own,
since with 22 human labels over 77 labels most labels have no human label at all and any ratio
is noise (issue 11: ~70 of 77 labels were flagged that way). Each label gets Fisher's exact
test of the two shares, the p-values are corrected over the labels (Benjamini-Hochberg), and a
flag needs q < ``alpha``, the ratio past ``factor`` and ``min_count`` answers behind it.
Where the evidence is short, :func:`human_labels_needed` says how many human labels a test
would need to see a ``factor``-fold skew of a label with the machine's share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, false_discovery_control, fisher_exact, norm

from labelloop.core.stats import wilson_interval


def _clean(values: Sequence[Any], name: str, where: str) -> pd.Series:
    s = pd.Series(list(values), dtype=object).dropna()
    if s.empty:
        raise ValueError(f"{where}: {name} has no labels")
    return s


@dataclass(frozen=True, slots=True)
class DistributionComparison:
    """``table``: per label, counts and shares for both, ``ratio`` machine/human share, the
    test (``p_value``, ``q_value`` after Benjamini-Hochberg over the labels), ``flag``
    ("over", "under" or "") and ``human_needed`` (human labels in all a test of a
    ``factor``-fold skew of this label would need; see :func:`human_labels_needed`)."""

    table: pd.DataFrame
    total_variation: float  # half the L1 distance between the two share vectors, in [0, 1]
    chi2: float
    p_value: float  # chi-square test of homogeneity on the 2 x labels table
    over_predicted: list[Any]  # labels flagged "over" (see compare_label_distributions)
    n_machine: int
    n_human: int
    under_predicted: list[Any]  # labels flagged "under": people use them far more often


def compare_label_distributions(
    machine_labels: Sequence[Any],
    human_labels: Sequence[Any],
    labels: Sequence[Any] | None = None,
    factor: float = 2.0,
    min_count: int = 5,
    alpha: float = 0.05,
    power: float = 0.8,
    same_items: bool = False,
) -> DistributionComparison:
    """Compare how often a machine labeler and people use each label.

    The two sets need not be the same items (compare shares). A label is over-predicted when
    its machine share is at least ``factor`` times its human share (a label people never used
    counts as infinitely over), the machine gave it at least ``min_count`` times, and Fisher's
    exact test of the two shares stays significant at ``alpha`` after the Benjamini-Hochberg
    correction over the labels. Under-predicted: the same the other way round, with at least
    ``min_count`` human labels of it. Missing values are ignored.

    ``same_items``: the two sequences are the answers to the same items (machine and people
    side by side). Then a labeler is judged on the items people labeled only, so a human
    sample that is not random (people label the queued, uncertain items) cannot pass for a
    skew; Fisher's test, which takes the two as independent, is conservative there.
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
    skew = label_skew_tests(
        m_counts.to_numpy(), h_counts.to_numpy(), factor=factor, alpha=alpha, min_count=min_count
    )
    over_side = ~(h_share.to_numpy() > m_share.to_numpy())
    needed = human_labels_needed(
        m_share.to_numpy(),
        int(m_counts.sum()),
        over=over_side,
        n_tests=len(order),
        factor=factor,
        alpha=alpha,
        power=power,
        min_count=min_count,
        same_items=same_items,
    )
    table = pd.DataFrame(
        {
            "machine_count": m_counts.to_numpy(),
            "human_count": h_counts.to_numpy(),
            "machine_share": m_share.to_numpy(),
            "human_share": h_share.to_numpy(),
            "ratio": ratio,
            "p_value": skew.p_value,
            "q_value": skew.q_value,
            "flag": skew.flag,
            "human_needed": needed,
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
    return DistributionComparison(
        table=table,
        total_variation=float(0.5 * np.abs(m_share - h_share).sum()),
        chi2=float(chi2),
        p_value=float(p_value),
        over_predicted=list(table.index[skew.flag == "over"]),
        n_machine=int(m_counts.sum()),
        n_human=int(h_counts.sum()),
        under_predicted=list(table.index[skew.flag == "under"]),
    )


@dataclass(frozen=True, slots=True)
class SkewTests:
    """Per label: Fisher's two-sided p-value, its Benjamini-Hochberg q-value over the labels
    either side used (1.0 for labels neither used), and the flag ("over", "under" or "")."""

    p_value: np.ndarray
    q_value: np.ndarray
    flag: np.ndarray


def label_skew_tests(
    machine_counts: np.ndarray,
    human_counts: np.ndarray,
    *,
    factor: float = 2.0,
    alpha: float = 0.05,
    min_count: int = 5,
) -> SkewTests:
    """Test, label by label, whether the machine's share differs from people's.

    ``machine_counts`` and ``human_counts`` hold each label's count (same order). A label is
    flagged "over" when q < ``alpha``, machine share >= ``factor`` x human share and the
    machine gave it ``min_count`` times or more; "under" when q < ``alpha``, human share >=
    ``factor`` x machine share and people gave it ``min_count`` times or more.
    """
    m = np.asarray(machine_counts, dtype=np.int64)
    h = np.asarray(human_counts, dtype=np.int64)
    if m.shape != h.shape or m.ndim != 1:
        raise ValueError(f"label_skew_tests: counts of shapes {m.shape} and {h.shape}")
    if factor < 1.0:
        raise ValueError(f"label_skew_tests: factor={factor}, expected >= 1")
    n_m, n_h = int(m.sum()), int(h.sum())
    p = np.ones(len(m))
    used = (m + h) > 0
    if n_m > 0 and n_h > 0:
        for k in np.flatnonzero(used):
            table = [[m[k], n_m - m[k]], [h[k], n_h - h[k]]]
            p[k] = float(fisher_exact(table, alternative="two-sided").pvalue)
    q = np.ones(len(m))
    if used.any():
        q[used] = false_discovery_control(np.clip(p[used], 0.0, 1.0), method="bh")
    m_share = m / max(n_m, 1)
    h_share = h / max(n_h, 1)
    significant = q < alpha
    over = significant & (m_share >= factor * h_share) & (m >= min_count) & (m_share > 0)
    under = significant & (h_share >= factor * m_share) & (h >= min_count) & (h_share > 0)
    flag = np.where(over, "over", np.where(under, "under", ""))
    return SkewTests(p_value=p, q_value=q, flag=flag)


def human_labels_needed(
    machine_share: np.ndarray,
    n_machine: int,
    *,
    over: np.ndarray | bool = True,
    n_tests: int = 1,
    factor: float = 2.0,
    alpha: float = 0.05,
    power: float = 0.8,
    min_count: int = 5,
    same_items: bool = False,
) -> np.ndarray:
    """Human labels in all that a test of a ``factor``-fold skew of each label would need.

    Taking the machine's share ``p0`` as known (it rests on many more answers than people's),
    the size of a one-sample test of "people's share is ``p0``" against ``p0 / factor``
    (``over``) or ``p0 * factor`` (under), two-sided at ``alpha / n_tests`` (the first step of
    Benjamini-Hochberg over ``n_tests`` labels) with the given ``power``: the normal
    approximation ``((z_a sqrt(p0 q0) + z_b sqrt(p1 q1)) / |p0 - p1|)^2``. Under-prediction
    also needs ``min_count`` human labels of the label. With ``same_items`` the machine's share
    rests on as few items as people's: the two-sample size, ``((z_a sqrt(2 pm qm) + z_b
    sqrt(p0 q0 + p1 q1)) / |p0 - p1|)^2`` with ``pm`` the mean of the two shares (pairing
    only helps, so this errs high). A rough figure ("~"), not a promise.
    ``inf`` where no number of labels can show the skew (a share that cannot grow ``factor``
    times).
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"human_labels_needed: alpha={alpha}, power={power}: expected (0, 1)")
    if factor <= 1.0:
        raise ValueError(f"human_labels_needed: factor={factor}, expected > 1")
    floor = 0.5 / max(int(n_machine), 1)
    p0 = np.clip(np.asarray(machine_share, dtype=np.float64), floor, 1.0 - floor)
    is_over = np.broadcast_to(np.asarray(over, dtype=bool), p0.shape)
    p1 = np.where(is_over, p0 / factor, p0 * factor)
    possible = p1 < 1.0
    p1 = np.clip(p1, 0.0, 1.0 - 1e-12)
    z_a = float(norm.ppf(1.0 - alpha / (2 * max(int(n_tests), 1))))
    z_b = float(norm.ppf(power))
    if same_items:
        mean = (p0 + p1) / 2
        spread = z_a * np.sqrt(2 * mean * (1 - mean)) + z_b * np.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    else:
        spread = z_a * np.sqrt(p0 * (1 - p0)) + z_b * np.sqrt(p1 * (1 - p1))
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (spread / np.abs(p0 - p1)) ** 2
        n = np.where(is_over, n, np.maximum(n, min_count / p1))
    return np.where(possible, np.ceil(n), np.inf)


@dataclass(frozen=True, slots=True)
class ModeCollapse:
    label: Any  # the machine's most frequent answer
    machine_share: float
    human_share: float
    flagged: bool
    n_machine: int
    p_value: float = 1.0  # Fisher's exact test of the two shares of ``label``


def mode_collapse(
    machine_labels: Sequence[Any],
    human_labels: Sequence[Any],
    min_share: float = 0.5,
    factor: float = 1.5,
    alpha: float = 0.05,
) -> ModeCollapse:
    """Does the machine labeler answer mostly one label, far more often than people do?

    Flagged when the machine's mode covers at least ``min_share`` of its answers, at least
    ``factor`` times the share people give that label (e.g. 90% vs 30%), and Fisher's exact
    test of the two shares gives p < ``alpha`` (a handful of human labels is not evidence).
    A mode that people use just as much (a truly dominant class) is not flagged.
    """
    where = "mode_collapse"
    machine = _clean(machine_labels, "machine_labels", where)
    human = _clean(human_labels, "human_labels", where)
    counts = machine.value_counts()
    top = int(counts.max())
    mode = sorted(counts.index[counts == top], key=lambda v: (str(type(v)), v))[0]
    machine_share = float(top / len(machine))
    h_mode = int((human == mode).sum())
    human_share = float(h_mode / len(human))
    table = [[top, len(machine) - top], [h_mode, len(human) - h_mode]]
    p_value = float(fisher_exact(table, alternative="two-sided").pvalue)
    flagged = (
        machine_share >= min_share and machine_share >= factor * human_share and p_value < alpha
    )
    return ModeCollapse(mode, machine_share, human_share, bool(flagged), int(len(machine)), p_value)


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
