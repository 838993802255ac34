"""Tests for labelloop.quality: known published values and planted synthetic effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

from labelloop.quality import (
    aggregate_dawid_skene,
    agreement_report,
    cohen_kappa,
    coincidence_matrix,
    compare_label_distributions,
    confident_joint,
    dawid_skene,
    encode_annotations,
    find_label_issues,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    majority_vote,
    mode_collapse,
    order_sensitivity,
    out_of_fold_pred_probs,
    pairwise_cohen_kappa,
    per_class_thresholds,
    score_against_gold,
    wilson_interval,
)

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210.
FLEISS_WIKIPEDIA = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5, missing data; nominal alpha = 0.743.
_ = None
KRIPPENDORFF_EXAMPLE = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    "C": [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
}


def _long(wide: dict[str, list]) -> pd.DataFrame:
    rows = [
        (unit + 1, coder, value)
        for coder, values in wide.items()
        for unit, value in enumerate(values)
        if value is not None
    ]
    return pd.DataFrame(rows, columns=["item_id", "annotator_id", "label"])


# --- agreement ---------------------------------------------------------------------------


def test_fleiss_kappa_matches_the_worked_example():
    assert fleiss_kappa(FLEISS_WIKIPEDIA) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_ignores_items_with_a_single_rating():
    with_singles = np.vstack([FLEISS_WIKIPEDIA, [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]]])
    assert fleiss_kappa(with_singles) == pytest.approx(fleiss_kappa(FLEISS_WIKIPEDIA))
    assert fleiss_kappa(np.array([[3, 0], [0, 2], [2, 0]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two or more"):
        fleiss_kappa(np.array([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="non-negative"):
        fleiss_kappa(np.array([[1, -1], [0, 2]]))


def test_krippendorff_alpha_nominal_matches_the_published_example():
    counts = encode_annotations(_long(KRIPPENDORFF_EXAMPLE)).count_matrix()
    assert krippendorff_alpha_nominal(counts) == pytest.approx(0.743, abs=5e-4)
    o = coincidence_matrix(counts)
    # Values from the paper's coincidence matrix: o_11 = 7, o_12 = 4/3, n = 40 pairable values.
    assert o[0, 0] == pytest.approx(7.0)
    assert o[0, 1] == pytest.approx(4 / 3)
    assert o.sum() == pytest.approx(40.0)
    np.testing.assert_allclose(o, o.T)


def test_cohen_kappa_known_value_symmetry_and_edge_cases():
    # Wikipedia's 50-item example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(b, a) == pytest.approx(cohen_kappa(a, b))
    assert cohen_kappa([1, 2, 3, 1], [1, 2, 3, 1]) == pytest.approx(1.0)
    assert np.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    with pytest.raises(ValueError, match="equal length"):
        cohen_kappa([1, 2], [1])


def test_pairwise_kappa_and_report_on_a_long_table():
    df = _long(KRIPPENDORFF_EXAMPLE)
    pairs = pairwise_cohen_kappa(df)
    assert len(pairs) == 6
    top = pairs.iloc[0]
    assert (top.annotator_a, top.annotator_b, top.n_shared) == ("B", "D", 10)
    sub = df[df.annotator_id.isin(["B", "D"])].pivot(
        index="item_id", columns="annotator_id", values="label"
    )
    sub = sub.dropna()
    assert top.kappa == pytest.approx(cohen_kappa(sub["B"], sub["D"]))

    report = agreement_report(df, min_shared=1, n_boot=50)
    assert report.n_items == 12 and report.n_items_multi == 11 and report.n_annotators == 4
    assert report.krippendorff_alpha == pytest.approx(0.743, abs=5e-4)
    low, high = report.krippendorff_alpha_ci
    assert low < report.krippendorff_alpha < high


def test_long_table_errors_name_the_problem():
    df = _long(KRIPPENDORFF_EXAMPLE)
    with pytest.raises(ValueError, match="missing column"):
        agreement_report(df.rename(columns={"label": "answer"}))
    bad = df.astype({"label": object})
    bad.loc[3, "label"] = None
    with pytest.raises(ValueError, match="'label' has 1 missing"):
        majority_vote(bad)
    with pytest.raises(ValueError, match="outside"):
        majority_vote(df, labels=[1, 2, 3])


# --- aggregation -------------------------------------------------------------------------


def test_majority_vote_breaks_ties_deterministically_and_flags_them():
    df = pd.DataFrame(
        {
            "item_id": [1, 1, 1, 2, 2, 3, 3, 4],
            "annotator_id": ["a", "b", "c", "a", "b", "a", "b", "c"],
            "label": ["pos", "pos", "neg", "pos", "neg", "neg", "neg", "neg"],
        }
    )
    mv = majority_vote(df)  # "neg" is more frequent overall (5 vs 3): ties go to it
    assert mv.loc[1, "label"] == "pos" and not mv.loc[1, "tied"]
    assert mv.loc[1, "support"] == pytest.approx(2 / 3)
    assert mv.loc[2, "label"] == "neg" and mv.loc[2, "tied"]
    assert majority_vote(df, labels=["pos", "neg"], tie_break="first").loc[2, "label"] == "pos"
    shuffled = majority_vote(df.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(shuffled, mv)


def _simulate_crowd(accuracies, n_items=600, n_classes=2, per_item=None, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    rows = []
    for i in range(n_items):
        who = range(len(accuracies))
        if per_item is not None:
            who = rng.choice(len(accuracies), per_item, replace=False)
        for a in who:
            if rng.random() < accuracies[a]:
                label = truth[i]
            else:
                label = rng.choice([c for c in range(n_classes) if c != truth[i]])
            rows.append((i, f"ann{a}", int(label)))
    return truth, pd.DataFrame(rows, columns=["item_id", "annotator_id", "label"])


def test_dawid_skene_recovers_a_planted_good_annotator_better_than_majority_vote():
    # Three classes: with two, weak annotators carry little information and the likelihood is
    # too flat for 800 items to pin the good annotator down.
    accuracies = [0.95, 0.65, 0.65, 0.6, 0.6]
    truth, df = _simulate_crowd(accuracies, n_items=600, n_classes=3, seed=1)
    mv = majority_vote(df)
    agg = aggregate_dawid_skene(df)
    mv_acc = float((mv["label"].to_numpy() == truth).mean())
    ds_acc = float((agg.items["label"].to_numpy() == truth).mean())
    assert agg.result.converged
    assert ds_acc >= mv_acc + 0.03, (ds_acc, mv_acc)
    assert ds_acc >= 0.92
    est = agg.annotators["accuracy"]
    assert est["ann0"] == pytest.approx(0.95, abs=0.03)
    assert est.idxmax() == "ann0"
    for a, true_acc in zip(["ann1", "ann2", "ann3", "ann4"], accuracies[1:], strict=True):
        assert est[a] == pytest.approx(true_acc, abs=0.06)
    np.testing.assert_allclose(agg.result.posteriors.sum(axis=1), 1.0)
    np.testing.assert_allclose(agg.result.confusion.sum(axis=2), 1.0)


def test_dawid_skene_learns_to_invert_an_adversarial_annotator_with_missing_ratings():
    truth, df = _simulate_crowd([0.85, 0.8, 0.05, 0.75, 0.8], n_items=600, per_item=3, seed=2)
    agg = aggregate_dawid_skene(df)
    assert agg.annotators.loc["ann2", "accuracy"] < 0.15
    ds_acc = float((agg.items["label"].to_numpy() == truth).mean())
    mv_acc = float((majority_vote(df)["label"].to_numpy() == truth).mean())
    assert ds_acc > mv_acc


def test_dawid_skene_rejects_bad_codes():
    with pytest.raises(ValueError, match="same length"):
        dawid_skene(np.array([0, 1]), np.array([0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        dawid_skene(np.array([0, 1]), np.array([0, 0]), np.array([0, 2]), n_classes=2)


# --- gold --------------------------------------------------------------------------------


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-3), pytest.approx(0.9433, abs=1e-3))
    low0, high0 = wilson_interval(0, 10)
    assert low0 == 0.0 and 0.2 < high0 < 0.35
    assert all(np.isnan(wilson_interval(0, 0)))


def test_score_against_gold():
    gold = {1: "a", 2: "b", 3: "a", 4: "b"}
    df = pd.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 1, 2, 3, 99],
            "annotator_id": ["good"] * 4 + ["bad"] * 3 + ["good"],
            "label": ["a", "b", "a", "b", "b", "a", "a", "z"],
        }
    )
    scores = score_against_gold(df, gold)
    assert list(scores.index) == ["bad", "good"]  # weakest lower bound first
    assert scores.loc["good", "n_gold"] == 4 and scores.loc["good", "accuracy"] == 1.0
    assert scores.loc["bad", "n_correct"] == 1
    assert scores.loc["bad", "accuracy"] == pytest.approx(1 / 3)
    assert scores.loc["bad", "ci_low"] < 1 / 3 < scores.loc["bad", "ci_high"]


# --- label issues ------------------------------------------------------------------------


def _noisy_blobs(n=600, n_flips=30, seed=0):
    centers = [(0.0, 0.0), (6.0, 0.0), (0.0, 6.0)]  # separable: the clean labels are learnable
    X, y = make_blobs(n_samples=n, centers=centers, cluster_std=1.0, random_state=seed)
    rng = np.random.default_rng(seed)
    flipped = rng.choice(n, n_flips, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 3, n_flips)) % 3
    return X, y, noisy, set(flipped.tolist())


def test_confident_learning_finds_planted_label_flips():
    X, _, noisy, flipped = _noisy_blobs()
    probs, classes = out_of_fold_pred_probs(LogisticRegression(max_iter=500), X, noisy)
    assert list(classes) == [0, 1, 2] and probs.shape == (600, 3)
    issues = find_label_issues(noisy, probs, class_names=["red", "green", "blue"])
    found = set(issues["index"].tolist())
    precision = len(found & flipped) / max(len(found), 1)
    recall = len(found & flipped) / len(flipped)
    assert precision >= 0.9 and recall >= 0.8, (precision, recall)
    assert issues["score"].is_monotonic_increasing
    first = issues.iloc[0]
    assert first["reason"] == (
        f"given {first['given']}, model says {first['suggested']} with p={first['p_suggested']:.2f}"
    )
    by_margin = find_label_issues(noisy, probs, rank_by="normalized_margin")
    assert set(by_margin["index"]) == found


def test_confident_joint_and_thresholds_on_a_hand_made_case():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    np.testing.assert_allclose(per_class_thresholds(labels, probs), [(0.9 + 0.8 + 0.2) / 3, 0.8])
    cj = confident_joint(labels, probs, calibrate=False)
    np.testing.assert_array_equal(cj, [[2, 1], [0, 1]])
    calibrated = confident_joint(labels, probs)
    np.testing.assert_allclose(calibrated.sum(axis=1), [3, 2])
    issues = find_label_issues(labels, probs)
    assert issues["index"].tolist() == [2]
    with pytest.raises(ValueError, match="sum to 1"):
        find_label_issues(labels, probs * 0.5)
    with pytest.raises(ValueError, match="integer class indices"):
        find_label_issues(np.array(["a", "a", "a", "b", "b"]), probs)


def test_out_of_fold_probabilities_handle_a_rare_class():
    X, y = make_blobs(n_samples=60, centers=2, random_state=0)
    y = y.astype(object)
    y[:] = np.where(y == 0, "ham", "spam")
    y[0] = "rare"  # one example: missing from some training folds
    probs, classes = out_of_fold_pred_probs(LogisticRegression(), X, y, n_splits=5)
    assert list(classes) == ["ham", "rare", "spam"]
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(TypeError, match="predict_proba"):
        out_of_fold_pred_probs(object(), X, y)


# --- bias --------------------------------------------------------------------------------


def test_bias_checks_flag_a_labeler_that_overuses_one_label():
    human = ["spam"] * 30 + ["ham"] * 50 + ["promo"] * 20
    machine = ["spam"] * 90 + ["ham"] * 8 + ["promo"] * 2
    collapse = mode_collapse(machine, human)
    assert collapse.flagged and collapse.label == "spam"
    assert (collapse.machine_share, collapse.human_share) == (0.9, 0.3)
    cmp = compare_label_distributions(machine, human)
    assert cmp.over_predicted == ["spam"]
    assert cmp.total_variation == pytest.approx(0.6)
    assert cmp.p_value < 1e-6
    assert cmp.table.loc["spam", "ratio"] == pytest.approx(3.0)


def test_bias_checks_leave_a_faithful_labeler_alone():
    human = ["ham"] * 80 + ["spam"] * 20
    machine = ["ham"] * 78 + ["spam"] * 22
    assert not mode_collapse(machine, human).flagged  # ham is dominant for people too
    cmp = compare_label_distributions(machine, human)
    assert cmp.over_predicted == [] and cmp.p_value > 0.5


def test_order_sensitivity_flip_rate_with_interval():
    a = ["x"] * 100 + [None]
    b = ["x"] * 90 + ["y"] * 10 + ["y"]
    result = order_sensitivity(a, b)
    assert (result.n_items, result.n_flips, result.flip_rate) == (100, 10, 0.1)
    assert result.ci_low < 0.1 < result.ci_high
    assert result.flipped_positions.tolist() == list(range(90, 100))
    with pytest.raises(ValueError, match="differ in length"):
        order_sensitivity(["x"], ["x", "y"])
