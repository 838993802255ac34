"""Acquisition scores, diversity, cold start, dedup and priority on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.active import (
    combined_priority,
    density,
    entropy_score,
    k_center_greedy,
    label_set_uncertainty,
    least_confidence_score,
    margin_score,
    mean_kl_to_consensus,
    near_duplicate_groups,
    normalise_scores,
    representatives,
    spread_labels,
    top_k,
    typiclust_cold_start,
    uncertain_k_center,
    vote_entropy,
)

PROBS = np.array(
    [
        [1.0, 0.0, 0.0],  # certain
        [0.5, 0.5, 0.0],  # two-way tie
        [1 / 3, 1 / 3, 1 / 3],  # uniform
        [0.6, 0.3, 0.1],
    ]
)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clusters(centres: np.ndarray, per: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = np.repeat(centres, per, axis=0) + rng.normal(
        0, spread, (len(centres) * per, centres.shape[1])
    )
    return unit(pts)


# --- uncertainty and disagreement -------------------------------------------------------------


def test_margin_scores():
    np.testing.assert_allclose(margin_score(PROBS), [0.0, 1.0, 1.0, 0.7])


def test_label_set_uncertainty_reads_independent_probabilities():
    multi = np.array(
        [
            [0.99, 0.01, 0.98],  # a sure set {0, 2}
            [0.2, 0.001, 0.001],  # no label reaches 0.5: the set {0} is a guess
            [0.6, 0.5, 0.01],  # two coin flips
        ]
    )
    scores = label_set_uncertainty(multi)
    np.testing.assert_allclose(scores[0], 1 - 0.99 * 0.99 * 0.98)
    np.testing.assert_allclose(scores[2], 1 - 0.6 * 0.5 * 0.99)
    np.testing.assert_allclose(scores[1], 1 - 0.2 * 0.999 * 0.999)
    assert margin_score(multi)[1] < 0.05  # the renormalised row looks sure to the margin
    assert scores.argmin() == 0


def test_entropy_scores():
    np.testing.assert_allclose(
        entropy_score(PROBS),
        [0.0, np.log(2), np.log(3), -(0.6 * np.log(0.6) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1))],
    )


def test_least_confidence_scores():
    np.testing.assert_allclose(least_confidence_score(PROBS), [0.0, 0.5, 2 / 3, 0.4])


def test_scores_normalise_rows_and_reject_bad_input():
    np.testing.assert_allclose(margin_score(np.array([[2.0, 2.0]])), [1.0])
    with pytest.raises(ValueError, match="2-D"):
        margin_score(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="negative probability in row 0"):
        entropy_score(np.array([[-0.1, 1.1]]))


def test_disagreement_scores():
    agree = np.array([[0.9, 0.1], [0.8, 0.2], [0.95, 0.05]])  # per labeler, item 0
    split = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])  # per labeler, item 1
    stack = np.stack([agree, split], axis=1)  # (3 labelers, 2 items, 2 labels)
    ve = vote_entropy(stack)
    assert ve[0] == pytest.approx(0.0)
    assert ve[1] == pytest.approx(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3)))
    kl = mean_kl_to_consensus(stack)
    assert 0 <= kl[0] < kl[1]
    same = np.stack([PROBS, PROBS])
    np.testing.assert_allclose(mean_kl_to_consensus(same), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="3-D"):
        vote_entropy(PROBS)


# --- representativeness and diversity ---------------------------------------------------------


def test_density_is_higher_inside_a_tight_cluster():
    rng = np.random.default_rng(0)
    tight = unit(np.array([[1.0, 0, 0, 0]]) + rng.normal(0, 0.02, (30, 4)))
    loners = unit(rng.normal(0, 1, (5, 4)))
    d = density(np.vstack([tight, loners]), k=5, block=7)
    assert d[:30].min() > d[30:].max()


def test_k_center_picks_spread_points():
    centres = np.eye(6)
    x = clusters(centres, per=20, spread=0.02)
    picks = k_center_greedy(x, 6, seed=3)
    assert len(set(picks // 20)) == 6  # one per cluster
    # Already labeled clusters are avoided.
    picks = k_center_greedy(x, 4, labeled=[0, 20])
    assert not ({0, 1} & set(picks // 20)) and len(set(picks // 20)) == 4


def test_uncertain_k_center_stays_within_top_m():
    x = clusters(np.eye(4), per=10, spread=0.02)
    u = np.zeros(40)
    u[10:30] = 1.0  # clusters 1 and 2 are uncertain
    picks = uncertain_k_center(x, u, batch_size=2, top_m=20)
    assert sorted(set(picks // 10)) == [1, 2]


def test_typiclust_picks_typical_points_of_unlabeled_clusters():
    centres = np.eye(5)
    sizes = [40, 30, 20, 10, 5]
    rng = np.random.default_rng(1)
    parts, cluster_of = [], []
    for c, size in enumerate(sizes):
        parts.append(centres[c] + rng.normal(0, 0.05, (size, 5)))
        cluster_of += [c] * size
    x = unit(np.vstack(parts))
    cluster_of = np.array(cluster_of)
    picks = typiclust_cold_start(x, batch_size=3, seed=0)
    assert sorted(cluster_of[picks]) == [0, 1, 2]  # largest clusters first
    # Each pick is more typical than the median member of its cluster.
    d = density(x, k=5)
    for p in picks:
        assert d[p] >= np.median(d[cluster_of == cluster_of[p]])
    labeled = np.flatnonzero(cluster_of == 0)[:1]
    picks = typiclust_cold_start(x, batch_size=2, labeled=labeled, seed=0)
    assert 0 not in set(cluster_of[picks]) and len(set(picks)) == 2


# --- dedup ------------------------------------------------------------------------------------


def test_near_duplicate_groups_join_exact_and_near_copies_only():
    rng = np.random.default_rng(0)
    base = unit(rng.normal(0, 1, (50, 64)))  # random directions are far apart in 64-D
    exact = base[3]
    near = unit(base[7:8] + rng.normal(0, 0.01, (1, 64)))[0]
    x = np.vstack([base, exact, near])
    for block in (7, 4096):
        groups = near_duplicate_groups(x, threshold=0.95, block=block)
        assert groups[50] == groups[3] and groups[51] == groups[7]
        assert groups[3] != groups[7]
        assert len(np.unique(groups)) == 50
    assert groups[0] == 0 and groups.max() == 49


def test_dedup_chains_and_many_copies_with_bounded_edges():
    x = unit(np.tile([[1.0, 0.0]], (300, 1)))
    groups = near_duplicate_groups(x, block=32, max_edges=50)
    assert np.all(groups == 0)


def test_representatives_and_spread_labels():
    groups = np.array([0, 0, 1, 1, 1, 2])
    assert list(representatives(groups)) == [0, 2, 5]
    assert list(representatives(groups, priority=np.array([0, 1, 0, 5, 1, 0.0]))) == [1, 3, 5]
    labels, conflicts = spread_labels(groups, labeled_idx=[1, 2, 4], labels=[7, 8, 9])
    assert list(labels) == [7, 7, 8, -1, 9, -1]
    assert list(conflicts) == [1]


# --- priority ---------------------------------------------------------------------------------


def test_normalise_and_combined_priority():
    s = np.array([1.0, 100.0, 2.0, 3.0])
    np.testing.assert_allclose(normalise_scores(s, "rank"), [0, 1, 1 / 3, 2 / 3])
    np.testing.assert_allclose(normalise_scores(s, "minmax"), [0, 1, 1 / 99, 2 / 99])
    np.testing.assert_allclose(normalise_scores(np.ones(3)), 0.5)
    margin = np.array([0.9, 0.1, 0.5, 0.2])
    dens = np.array([0.1, 0.9, 0.5, 0.2])
    p = combined_priority({"margin": margin, "density": dens}, {"margin": 3, "density": 1})
    assert int(np.argmax(p)) == 0
    assert list(top_k(p, 2, exclude=[0])) == [2, 3]
    with pytest.raises(ValueError, match="missing"):
        combined_priority({"margin": margin}, {"entropy": 1.0})
    with pytest.raises(ValueError, match="lengths differ"):
        combined_priority({"a": margin, "b": dens[:2]}, {"a": 1, "b": 1})
