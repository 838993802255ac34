"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa and Krippendorff's alpha (nominal).

All three are "chance-corrected": 1 is perfect agreement, 0 is what raters who label at random
with the observed label frequencies would reach, negative is worse than that. They are undefined
(NaN here) when every rating is the same label, because chance agreement is then already 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from labelloop.quality.annotations import encode_annotations


def cohen_kappa(
    rater_a: Sequence[Any], rater_b: Sequence[Any], labels: Sequence[Any] | None = None
) -> float:
    """Cohen's kappa between two raters who labelled the same items, in the same order."""
    a = np.asarray(rater_a, dtype=object)
    b = np.asarray(rater_b, dtype=object)
    if a.ndim != 1 or b.ndim != 1 or len(a) != len(b):
        raise ValueError(
            f"cohen_kappa: the two raters need 1-D sequences of equal length, got shapes "
            f"{a.shape} and {b.shape}"
        )
    if len(a) == 0:
        raise ValueError("cohen_kappa: no items")
    codes, uniques = pd.factorize(np.concatenate([a, b]))
    if len(uniques) < 2:
        return float("nan")  # one label everywhere: chance agreement is 1, kappa undefined
    if labels is not None:
        unknown = set(uniques.tolist()) - set(labels)
        if unknown:
            raise ValueError(f"cohen_kappa: labels {sorted(map(str, unknown))} not in `labels`")
    # Integer codes: sklearn rejects object arrays that mix types.
    return float(cohen_kappa_score(codes[: len(a)], codes[len(a) :]))


def _validate_counts(counts: np.ndarray, where: str) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"{where}: expected an items x categories matrix, got {counts.shape}")
    if counts.size and (counts.min() < 0 or not np.all(np.equal(np.mod(counts, 1), 0))):
        raise ValueError(f"{where}: counts must be non-negative whole numbers")
    return counts.astype(np.float64)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa from an items x categories count matrix.

    ``counts[i, j]`` is how many raters put item ``i`` in category ``j``. Fleiss (1971) assumes
    the same number of raters per item; here the number may vary: items with fewer than two
    ratings are left out (they cannot show agreement), each remaining item's agreement
    ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i - 1))`` is averaged with equal weight, and chance
    agreement uses the category shares over all ratings of those items. With a constant number
    of raters this is exactly Fleiss' formula.
    """
    c = _validate_counts(counts, "fleiss_kappa")
    n_i = c.sum(axis=1)
    c = c[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if len(c) == 0:
        raise ValueError("fleiss_kappa: no item has two or more ratings")
    p_i = (c * (c - 1)).sum(axis=1) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = c.sum(axis=0) / c.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def coincidence_matrix(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's coincidence matrix from a units x values count matrix.

    Each unit with ``m_u >= 2`` values contributes every ordered pair of its values (from
    different coders) with weight ``1 / (m_u - 1)``; units with a single value are unpairable.
    """
    c = _validate_counts(counts, "coincidence_matrix")
    m_u = c.sum(axis=1)
    pairable = m_u >= 2
    c = c[pairable]
    w = 1.0 / (m_u[pairable] - 1.0)
    return (c * w[:, None]).T @ c - np.diag((c * w[:, None]).sum(axis=0))


def krippendorff_alpha_nominal(counts: np.ndarray) -> float:
    """Krippendorff's alpha for nominal data from a units x values count matrix.

    Missing ratings are simply absent from the counts. ``alpha = 1 - D_o / D_e`` with
    ``D_o = sum_{c != k} o_ck / n`` and ``D_e = sum_{c != k} n_c n_k / (n (n - 1))`` where ``o`` is
    the coincidence matrix, ``n_c`` its margins and ``n`` the number of pairable values
    (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011).
    """
    o = coincidence_matrix(counts)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        raise ValueError("krippendorff_alpha_nominal: no unit has two or more values")
    observed = o.sum() - np.trace(o)
    expected = (n_c.sum() ** 2 - (n_c**2).sum()) / (n - 1)
    if expected == 0:
        return float("nan")
    return float(1.0 - observed / expected)


def bootstrap_interval(
    counts: np.ndarray,
    statistic: Any,
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(counts)``, resampling items (rows)."""
    c = np.asarray(counts)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        try:
            value = statistic(c[rng.integers(0, len(c), len(c))])
        except ValueError:  # a resample with nothing to measure
            continue
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def pairwise_cohen_kappa(
    df: pd.DataFrame,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    min_shared: int = 1,
) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators who share at least ``min_shared`` items.

    If an annotator labelled an item more than once, their first label counts. Returns one row
    per pair (annotator_a, annotator_b, n_shared, observed_agreement, kappa), most shared first.
    """
    enc = encode_annotations(df, item_col, annotator_col, label_col)
    wide = np.full((enc.n_items, enc.n_annotators), -1, dtype=np.int64)
    order = np.arange(len(enc.item_idx))[::-1]  # written last-to-first so the first label wins
    wide[enc.item_idx[order], enc.annotator_idx[order]] = enc.label_idx[order]
    rows = []
    for a, b in combinations(range(enc.n_annotators), 2):
        shared = (wide[:, a] >= 0) & (wide[:, b] >= 0)
        n_shared = int(shared.sum())
        if n_shared < max(min_shared, 1):
            continue
        la, lb = wide[shared, a], wide[shared, b]
        rows.append(
            {
                "annotator_a": enc.annotators[a],
                "annotator_b": enc.annotators[b],
                "n_shared": n_shared,
                "observed_agreement": float((la == lb).mean()),
                "kappa": cohen_kappa(la, lb),
            }
        )
    columns = ["annotator_a", "annotator_b", "n_shared", "observed_agreement", "kappa"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["n_shared", "annotator_a"], ascending=[False, True], ignore_index=True)


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """Agreement of a set of annotations, with what it was measured on."""

    n_items: int
    n_items_multi: int  # items with two or more ratings: the ones agreement is measured on
    n_annotations: int
    n_annotators: int
    observed_agreement: float  # mean share of agreeing rater pairs per item (multi-rated items)
    fleiss_kappa: float
    krippendorff_alpha: float
    krippendorff_alpha_ci: tuple[float, float]
    pairwise: pd.DataFrame


def agreement_report(
    df: pd.DataFrame,
    item_col: str = "item_id",
    annotator_col: str = "annotator_id",
    label_col: str = "label",
    labels: Sequence[Any] | None = None,
    min_shared: int = 20,
    n_boot: int = 200,
    seed: int = 0,
) -> AgreementReport:
    """All agreement figures from a long table (one row per item, annotator, label).

    ``krippendorff_alpha_ci`` is a 95% bootstrap interval over items (``n_boot=0`` skips it).
    """
    enc = encode_annotations(df, item_col, annotator_col, label_col, labels)
    counts = enc.count_matrix()
    n_i = counts.sum(axis=1)
    multi = counts[n_i >= 2]
    if len(multi):
        m = multi.sum(axis=1)
        observed = float(((multi * (multi - 1)).sum(axis=1) / (m * (m - 1))).mean())
    else:
        observed = float("nan")
    ci = (
        bootstrap_interval(counts, krippendorff_alpha_nominal, n_boot=n_boot, seed=seed)
        if n_boot > 0
        else (float("nan"), float("nan"))
    )
    return AgreementReport(
        n_items=enc.n_items,
        n_items_multi=int(len(multi)),
        n_annotations=int(len(enc.item_idx)),
        n_annotators=enc.n_annotators,
        observed_agreement=observed,
        fleiss_kappa=fleiss_kappa(counts),
        krippendorff_alpha=krippendorff_alpha_nominal(counts),
        krippendorff_alpha_ci=ci,
        pairwise=pairwise_cohen_kappa(df, item_col, annotator_col, label_col, min_shared),
    )
