"""Student selection and semi-supervised suggestions on synthetic blobs (fast, no timing)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from labelloop.learn import (
    holdout_scores,
    label_spreading_probs,
    make_folds,
    pseudo_labels,
    select_student,
    self_training_probs,
    should_replace,
)
from labelloop.learn.selection import compare_views, cross_val_scores


def blobs(n: int = 400, centers: int = 4, dim: int = 16, std: float = 1.0, seed: int = 0):
    X, y = make_blobs(n, n_features=dim, centers=centers, cluster_std=std, random_state=seed)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def test_select_student_returns_a_fitted_model_and_a_row_per_candidate():
    X, y = blobs(300, std=3.0)
    sel = select_student(X, y, cv=3)
    assert set(sel.table.candidate) == {"logreg", "linear_svm", "random_forest", "mlp"}
    assert sel.table.chosen.sum() == 1
    assert sel.table.iloc[0].candidate == sel.name  # the chosen one first, then by score
    assert sel.table.log_loss.iloc[1:].is_monotonic_increasing
    assert set(sel.seconds) == set(sel.table.candidate)
    assert (sel.estimator.predict(X) == y).mean() > 0.9


def test_selection_prefers_a_real_model_to_a_constant_one():
    X, y = blobs(200)
    cands = {
        "constant": lambda: DummyClassifier(strategy="most_frequent"),
        "logreg": LogisticRegression(C=100.0, max_iter=1000),  # estimators are cloned
    }
    sel = select_student(X, y, candidates=cands, cv=3)
    assert sel.name == "logreg"
    assert sel.scores["constant"].macro_f1 < 0.3 < sel.scores["logreg"].macro_f1


def test_the_default_stays_unless_clearly_beaten():
    X, y = blobs(200, std=4.0)
    # Two near-identical students: whichever scores a hair higher, the default is kept.
    twins = {
        "logreg": lambda: LogisticRegression(C=100.0, max_iter=1000),
        "twin": lambda: LogisticRegression(C=90.0, max_iter=1000),
    }
    assert select_student(X, y, candidates=twins, cv=5).name == "logreg"
    # A constant default is replaced: the real model beats it by far more than the noise.
    cands = {
        "constant": lambda: DummyClassifier(strategy="most_frequent"),
        "logreg": lambda: LogisticRegression(C=100.0, max_iter=1000),
    }
    sel = select_student(X, y, candidates=cands, cv=5, default="constant")
    assert sel.name == "logreg"
    assert "gain_needed" in sel.table


def test_compare_views_switches_only_on_clear_evidence():
    X, y = blobs(300, std=4.0)
    rng = np.random.default_rng(0)
    blind = rng.normal(size=X.shape)  # says nothing about y
    # The informative view wins over the current, blind one, by far more than the noise.
    choice = compare_views({"blind": blind, "blobs": X}, y, current="blind")
    assert choice.chosen == "blobs" and choice.gain > choice.gain_needed > 0
    assert choice.scores["blobs"].log_loss < choice.scores["blind"].log_loss
    # A view that only adds noise to the current one does not replace it.
    noisy = np.hstack([X, 0.01 * rng.normal(size=(len(X), 4))])
    kept = compare_views({"blobs": X, "blobs+noise": noisy}, y, current="blobs")
    assert kept.chosen == "blobs" and kept.gain <= kept.gain_needed
    assert kept.as_dict()["scored_on"] == "all human labels"
    with pytest.raises(ValueError, match="current view"):
        compare_views({"blobs": X}, y, current="other")


def test_scores_come_from_the_random_sample_when_it_is_big_enough():
    X, y = blobs(300, std=3.0)
    sample = np.zeros(len(y), dtype=bool)
    sample[::5] = True  # 60 items: a "random sample" of the pool
    cands = {"logreg": lambda: LogisticRegression(C=100.0, max_iter=1000)}
    sel = select_student(X, y, candidates=cands, cv=3, score_mask=sample)
    row = sel.table.iloc[0]
    assert row.scored_on == "random sample" and row.n_scored == 60
    # Every item still trains: the same model as without a mask.
    plain = select_student(X, y, candidates=cands, cv=3)
    assert (
        plain.table.iloc[0].scored_on == "all human labels" and plain.table.iloc[0].n_scored == 300
    )
    np.testing.assert_allclose(sel.estimator.coef_, plain.estimator.coef_)
    # Too small a sample: all labels, as before.
    small = np.zeros(len(y), dtype=bool)
    small[:10] = True
    assert (
        select_student(X, y, candidates=cands, cv=3, score_mask=small).table.iloc[0].n_scored == 300
    )
    with pytest.raises(ValueError, match="score_mask"):
        select_student(X, y, candidates=cands, score_mask=np.ones(3, dtype=bool))


def test_rare_labels_are_train_only_and_folds_shrink():
    X, y = blobs(60, centers=3)
    y = y.copy()
    y[0] = 9  # one item: cannot be tested
    folds = make_folds(y, cv=5)
    assert folds.train_only_labels == (9,)
    assert 0 not in folds.scored
    assert all(0 in train for train, _ in folds.splits)
    sel = select_student(X, y, candidates={"logreg": LogisticRegression(max_iter=1000)}, cv=5)
    assert sel.table.n_scored.iloc[0] == 59
    few = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    assert make_folds(few, cv=5).n_folds == 4  # the largest label has four items


def test_candidates_survive_tiny_classes():
    X, y = blobs(40, centers=8, std=0.5)  # five items per label: training folds of four or less
    sel = select_student(X, y, cv=5)
    assert len(sel.table) == 4
    assert np.isfinite(sel.table.log_loss).all()


def test_multi_label_is_refused_clearly():
    X, _ = blobs(20)
    with pytest.raises(ValueError, match="multi-label"):
        select_student(X, np.zeros((20, 3), dtype=int))
    with pytest.raises(ValueError, match="multi-label"):
        select_student(X, [["a", "b"]] * 20)
    with pytest.raises(ValueError, match="rows"):
        select_student(X, np.zeros(5))


def test_should_replace_refuses_worse_and_accepts_clearly_better():
    X, y = blobs(300, std=4.0)
    folds = make_folds(y, cv=3)
    good = cross_val_scores(lambda: LogisticRegression(C=100.0, max_iter=1000), X, y, folds)
    bad = cross_val_scores(lambda: DummyClassifier(strategy="stratified"), X, y, folds)
    assert not should_replace(good, bad)
    assert should_replace(bad, good)
    assert not should_replace(bad, good, min_gain=1.0)  # no gain can exceed 1
    assert not should_replace(good, good)  # a tie is no reason to swap


def test_should_replace_compares_only_the_same_held_out_items():
    X, y = blobs(300)
    model = LogisticRegression(max_iter=1000).fit(X[:200], y[:200])
    a = holdout_scores(model, X[200:250], y[200:250])
    b = holdout_scores(model, X[250:], y[250:])
    with pytest.raises(ValueError, match="different held-out"):
        should_replace(a, b)
    old = DummyClassifier(strategy="most_frequent").fit(X[:200], y[:200])
    assert should_replace(
        holdout_scores(old, X[200:], y[200:]), holdout_scores(model, X[200:], y[200:])
    )


def test_label_spreading_recovers_blob_labels_from_5_percent():
    X, y = blobs(1000, centers=4, std=1.5)
    rng = np.random.default_rng(0)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), 12, replace=False) for c in range(4)])
    P = label_spreading_probs(X, idx, y[idx], k=10)
    assert P.shape == (1000, 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    free = np.setdiff1d(np.arange(1000), idx)
    assert (P[free].argmax(axis=1) == y[free]).mean() > 0.9


def test_self_training_never_changes_given_labels():
    X, y = blobs(400, centers=3, std=4.0)
    rng = np.random.default_rng(1)
    idx = rng.choice(400, 30, replace=False)
    given = (y[idx] + 1) % 3  # deliberately "wrong" human labels: still kept
    P = self_training_probs(X, idx, given, threshold=0.8, n_classes=5)
    assert P.shape == (400, 5)
    np.testing.assert_array_equal(P[idx].argmax(axis=1), given)
    np.testing.assert_allclose(P[idx].max(axis=1), 1.0)
    assert np.all(P[:, 3:] == 0)  # classes never labeled get no probability
    rows, labels = pseudo_labels(P, idx, 0.8)
    assert not np.isin(rows, idx).any() and len(rows) == len(labels)


def test_label_spreading_memory_stays_bounded_at_20000_items():
    X, y = blobs(20000, centers=5, dim=8, std=1.0)
    X = X.astype(np.float32)
    idx = np.arange(0, 20000, 50)
    tracemalloc.start()
    P = label_spreading_probs(X, idx, y[idx], k=5, max_iter=10)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dense = 20000 * 20000 * 8
    assert peak < dense / 20, f"peak {peak / 1e6:.0f} MB: looks like a dense n x n matrix"
    assert (P.argmax(axis=1) == y).mean() > 0.9


def test_semi_supervised_inputs_are_checked():
    X, y = blobs(50)
    with pytest.raises(ValueError, match="at least two classes"):
        label_spreading_probs(X, np.array([0, 1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="outside"):
        label_spreading_probs(X, np.array([0, 99]), np.array([0, 1]))
    with pytest.raises(ValueError, match="one each"):
        self_training_probs(X, np.array([0, 1, 2]), np.array([0, 1]))


def test_mlp_early_stopping_is_decided_once_from_the_whole_labeled_set():
    from labelloop.learn.selection import default_candidates, mlp_early_stopping

    assert not mlp_early_stopping(800, 77)  # an 80-item validation split for 77 labels: noise
    assert mlp_early_stopping(10000, 77)
    assert default_candidates(0, 10000, 77)["mlp"]().early_stopping
    assert not default_candidates(0)["mlp"]().early_stopping
