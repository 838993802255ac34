"""Issue 10: precision estimates active learning cannot bias, per-class guarantees with
shrinkage, an audit test that stays valid when checked often, and rechecks that pay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelloop.core.stats import proportion_interval
from labelloop.quality.label_issues import choose_rechecks, label_error_probability
from labelloop.routing.sample import (
    calibration_members,
    calibration_size,
    inclusion,
    keyed_uniforms,
)
from labelloop.routing.sequential import below_target, log_e_value, tighten_thresholds
from labelloop.routing.thresholds import (
    beta_prior_strength,
    effective_counts,
    fit_sample_thresholds,
    fit_thresholds,
    passing_cut,
    precision_through_noise,
    shrunk_lower_bounds,
    weighted_precision_bound,
)

# --- the calibration sample ---------------------------------------------------------------------


def test_sample_is_a_function_of_ids_and_size_and_grows_by_adding() -> None:
    ids = np.arange(1, 5001)
    small = calibration_members(ids, 60)
    large = calibration_members(ids, 90)
    assert small.sum() == 60 and large.sum() == 90
    assert np.all(large[small])  # growing keeps every earlier member
    shuffled = np.random.default_rng(0).permutation(ids)
    again = calibration_members(shuffled, 60)
    assert set(shuffled[again]) == set(ids[small])  # order of the pool does not matter
    assert inclusion(60, 5000) == pytest.approx(0.012)


def test_sample_is_uniform_over_the_pool() -> None:
    ids = np.arange(100_000)
    u = keyed_uniforms(list(ids[:20_000]))
    assert 0.49 < u.mean() < 0.51
    members = ids[calibration_members(ids, 5_000)]
    # Members spread evenly over the ids (no block of the pool is favoured).
    counts = np.bincount(members // 10_000, minlength=10)
    assert counts.min() > 400 and counts.max() < 600


def test_calibration_size_schedule() -> None:
    assert calibration_size(0, 0.15, 60) == 60
    assert calibration_size(1000, 0.15, 60) == 150
    assert calibration_size(300, 0.15, 60, lookahead=100) == 60
    assert calibration_size(1000, 0.15, 60, pool=100) == 100
    assert calibration_size(1000, 0.0, 60) == 0
    with pytest.raises(ValueError):
        calibration_size(10, 0.6, 60)


def test_sample_estimate_is_unbiased_where_active_labels_are_not() -> None:
    """A pool where hard items (low model confidence) are what active learning picks: the
    precision above a cut measured on the active picks is far below the truth, measured on a
    random sample it is close."""
    rng = np.random.default_rng(1)
    n = 20_000
    conf = rng.beta(8, 1.2, n)
    right = rng.random(n) < conf  # calibrated: P(right) = confidence
    cut = 0.8
    truth = right[conf >= cut].mean()
    active = np.argsort(conf)[:2_000]  # the least confident: what uncertainty sampling takes
    act_above = active[conf[active] >= cut]
    members = calibration_members(np.arange(n), 2_000)
    sam_above = np.flatnonzero(members & (conf >= cut))
    est_active = right[act_above].mean() if len(act_above) else 0.0
    est_sample, low, n_eff = weighted_precision_bound(right[sam_above])
    assert abs(est_sample - truth) < 0.02
    assert truth - est_active > 0.05
    assert low < truth and n_eff == len(sam_above)


# --- weighted bounds ----------------------------------------------------------------------------


def test_effective_counts_equal_weights_are_plain_counts() -> None:
    correct = np.array([1, 1, 0, 1], dtype=bool)
    assert effective_counts(correct, np.full(4, 7.0)) == pytest.approx((3.0, 4.0))


def test_unequal_weights_shrink_the_effective_sample() -> None:
    correct = np.array([1, 1, 1, 1, 0, 0], dtype=bool)
    w = np.array([1, 1, 1, 1, 10, 10], dtype=float)
    k, n = effective_counts(correct, w)
    assert n < 6
    assert k / n == pytest.approx(4 / 24)  # the Horvitz-Thompson share right
    est, low, n_eff = weighted_precision_bound(correct, w)
    assert low < est and n_eff == pytest.approx(n)


def test_weighted_bound_corrects_a_biased_sample() -> None:
    """Items drawn with unequal, known probabilities: 1 / pi weights recover the pool's
    precision where the unweighted share is off."""
    rng = np.random.default_rng(2)
    n = 50_000
    hard = rng.random(n) < 0.3
    right = np.where(hard, rng.random(n) < 0.7, rng.random(n) < 0.99)
    pi = np.where(hard, 0.2, 0.02)  # hard items oversampled tenfold
    drawn = rng.random(n) < pi
    unweighted = right[drawn].mean()
    est, low, _ = weighted_precision_bound(right[drawn], 1.0 / pi[drawn])
    assert abs(est - right.mean()) < 0.01
    assert right.mean() - unweighted > 0.05
    assert low < est


# --- shrinkage ----------------------------------------------------------------------------------


def test_prior_strength_falls_when_classes_disagree() -> None:
    same = beta_prior_strength(np.array([98, 49, 97]), np.array([100, 50, 100]), 50.0)
    apart = beta_prior_strength(np.array([99, 25, 98]), np.array([100, 50, 100]), 50.0)
    assert same == 50.0
    assert apart < 10.0


def test_few_labels_borrow_from_the_rest_but_a_bad_class_does_not() -> None:
    agree = shrunk_lower_bounds(np.array([200.0, 5.0, 300.0]), np.array([200.0, 5.0, 300.0]))
    assert agree[1] >= 0.95  # 5 of 5 right, next to precise classes: passes without 30 labels
    bad = shrunk_lower_bounds(np.array([200.0, 6.0, 300.0]), np.array([200.0, 12.0, 300.0]))
    assert bad[1] < 0.8  # 6 of 12 right: its own evidence wins over the prior
    assert bad[0] > 0.95 and bad[2] > 0.95
    alone = shrunk_lower_bounds(np.array([5.0]), np.array([5.0]), max_strength=0.0)
    assert alone[0] < 0.75  # without borrowing, 5 of 5 proves little


def _pool(rng: np.random.Generator, n: int, rare_precision: float) -> tuple[np.ndarray, np.ndarray]:
    """Three classes; class 2 is rare and, when predicted, right only ``rare_precision``."""
    pred = rng.choice(3, size=n, p=[0.6, 0.35, 0.05])
    conf = rng.uniform(0.9, 1.0, n)
    p_right = np.where(pred == 2, rare_precision, 0.995)
    right = rng.random(n) < p_right
    y = np.where(right, pred, (pred + 1) % 3)
    probs = np.zeros((n, 3))
    probs[np.arange(n), pred] = conf
    for j in range(3):
        probs[np.arange(n), (pred + 1 + j) % 3] += 0.0 if j == 2 else (1 - conf) / 2
    return probs, y


def test_a_failing_rare_class_is_not_swallowed() -> None:
    rng = np.random.default_rng(3)
    probs, y = _pool(rng, 3_000, rare_precision=0.6)
    ts = fit_sample_thresholds(probs, y, target=0.95, label_names=["a", "b", "rare"])
    assert ts["a"].auto_accepts and ts["b"].auto_accepts
    assert not ts["rare"].auto_accepts
    assert ts.method == "beta-binomial-eb"


def test_sample_thresholds_meet_the_target_per_class_on_the_pool() -> None:
    """Fit on a 300-item random sample, check realised precision on the whole pool."""
    rng = np.random.default_rng(4)
    n, k = 30_000, 5
    logits = rng.normal(0, 1, (n, k)) + 3.5 * np.eye(k)[rng.integers(0, k, n)]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in probs])  # calibrated by construction
    sample = calibration_members(np.arange(n), 300)
    ts = fit_sample_thresholds(probs[sample], y[sample], target=0.9)
    pred, conf = probs.argmax(axis=1), probs.max(axis=1)
    auto = conf >= ts.values[pred]
    assert auto.mean() > 0.2
    for j in range(k):
        mine = auto & (pred == j)
        if mine.sum() >= 20:
            assert (y[mine] == j).mean() >= 0.9


def test_a_class_with_a_handful_of_right_answers_borrows_unless_it_must_show_its_own() -> None:
    # Others: 200 sampled items, 199 right. The class: 3 sampled items, all right.
    k = np.array([199.0, 3.0])
    n = np.array([200.0, 3.0])
    borrowed = shrunk_lower_bounds(k, n, 0.05, 20.0)
    own = shrunk_lower_bounds(k, n, 0.05, 20.0, min_prior_wrong=1.0)
    assert borrowed[1] >= 0.9  # the near-perfect prior carries it
    assert own[1] < 0.9 and own[0] >= 0.95  # three answers prove little; 200 still do


def test_precision_through_noisy_people() -> None:
    # 90%-accurate people, two labels: a machine right 97.5% of the time agrees 88% of the time
    assert precision_through_noise(np.array([0.88]), 0.9, 2)[0] == pytest.approx(0.975)
    # unmeasured people (accuracy 1) change nothing; a higher accuracy gives a lower precision
    assert precision_through_noise(np.array([0.88]), 1.0, 2)[0] == pytest.approx(0.88)
    assert precision_through_noise(np.array([0.88]), 0.95, 2)[0] < 0.975
    # with more labels a person's error rarely lands on the machine's label
    assert precision_through_noise(np.array([0.88]), 0.9, 77)[0] == pytest.approx(
        (0.88 - 0.1 / 76) / (0.9 - 0.1 / 76)
    )
    with pytest.raises(ValueError, match="chance"):
        precision_through_noise(np.array([0.5]), 0.5, 2)


def test_noisy_people_hide_a_precise_machine_until_their_accuracy_is_known() -> None:
    """A calibrated pool whose labels people give with 10% errors: against people's labels the
    bound never reaches 0.95; corrected by their measured accuracy, the realised precision
    against the truth still meets it."""
    rng = np.random.default_rng(11)
    n = 20_000
    pred = rng.integers(0, 2, n)
    conf = rng.uniform(0.6, 1.0, n)
    right = rng.random(n) < conf  # calibrated
    probs = np.where(pred[:, None] == 0, np.c_[conf, 1 - conf], np.c_[1 - conf, conf])
    truth = np.where(right, pred, 1 - pred)
    noisy = np.where(rng.random(n) < 0.1, 1 - truth, truth)  # people: 90% right
    sample = rng.choice(n, 400, replace=False)
    plain = fit_sample_thresholds(probs[sample], noisy[sample], target=0.95)
    assert not any(t.auto_accepts for t in plain.labels)
    fixed = fit_sample_thresholds(probs[sample], noisy[sample], target=0.95, reviewer_accuracy=0.9)
    auto = conf >= fixed.values[pred]
    assert auto.sum() >= 500 and (truth[auto] == pred[auto]).mean() >= 0.95


def test_passing_cut_stops_at_the_first_failure_below_a_pass() -> None:
    # Bounds over ascending cuts: a lucky pass at index 1 below a failing stretch (2, 3).
    lows = np.array([0.90, 0.96, 0.93, 0.94, 0.97, 0.98, 0.91])
    assert passing_cut(lows, 0.95, scan="lowest") == 1
    assert passing_cut(lows, 0.95) == 4  # from the top: 6 fails, 5 and 4 pass, 3 fails
    assert passing_cut(np.array([0.96, 0.97, 0.99]), 0.95) == 0
    assert passing_cut(np.array([0.9, 0.9]), 0.95) == -1
    with pytest.raises(ValueError, match="scan"):
        passing_cut(lows, 0.95, scan="best")  # type: ignore[arg-type]


def test_first_run_scan_is_less_optimistic_than_the_lowest_pass() -> None:
    """Over many small samples of a pool whose precision falls with confidence, the threshold
    from the first passing run from the top realises the target on the pool more often than
    the lowest passing cut, and never admits more items."""
    rng = np.random.default_rng(7)
    n = 20_000
    conf = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < np.clip(0.55 + 0.45 * (conf - 0.5) / 0.5 + 0.03, 0, 1)
    probs = np.c_[conf, 1 - conf]
    y = np.where(right, 0, 1)
    misses = {"lowest": 0, "first-run": 0}
    for draw in range(40):
        sample = rng.choice(n, 150, replace=False)
        admitted = {}
        for scan in misses:
            ts = fit_sample_thresholds(probs[sample], y[sample], target=0.95, scan=scan)
            auto = (conf >= ts.values[0]) & (conf >= 0.5)
            admitted[scan] = int(auto.sum())
            if auto.sum() >= 20 and right[auto].mean() < 0.95:
                misses[scan] += 1
        assert admitted["first-run"] <= admitted["lowest"], draw
    assert misses["first-run"] <= misses["lowest"]


def test_no_sample_labels_auto_accept_nothing() -> None:
    ts = fit_sample_thresholds(np.zeros((0, 2)), np.zeros(0, dtype=int), label_names=["a", "b"])
    assert not any(t.auto_accepts for t in ts.labels)
    assert [t.label for t in ts.labels] == ["a", "b"]


# --- the sequential audit test ------------------------------------------------------------------


def test_e_value_closed_form_matches_numeric_integral() -> None:
    k, n, target = 18, 20, 0.95
    q = np.linspace(0, target, 200_001)[:-1] + target / 400_000
    lik = np.exp(k * np.log(q) + (n - k) * np.log1p(-q))
    numeric = lik.mean() / (target**k * (1 - target) ** (n - k))
    assert math.exp(log_e_value(k, n, target)) == pytest.approx(numeric, rel=1e-3)


def _ever_rejects(stream: np.ndarray, target: float, alpha: float) -> tuple[bool, bool]:
    """Checked after every audit: does the e-process, or a repeated fixed-n interval test,
    ever say precision is below target?"""
    k = np.cumsum(stream)
    e_hit = naive_hit = False
    for i in range(len(stream)):
        n = i + 1
        e_hit = e_hit or log_e_value(int(k[i]), n, target) >= math.log(1 / alpha)
        if n >= 10 and not naive_hit:
            naive_hit = proportion_interval(int(k[i]), n, 2 * alpha)[2] < target
    return e_hit, naive_hit


def test_sequential_test_keeps_its_error_rate_under_repeated_checks() -> None:
    rng = np.random.default_rng(5)
    target, alpha, runs = 0.95, 0.05, 300
    e_errors = naive_errors = 0
    for _ in range(runs):
        stream = rng.random(300) < target  # precision exactly at target: H0 holds
        e_hit, naive_hit = _ever_rejects(stream, target, alpha)
        e_errors += e_hit
        naive_errors += naive_hit
    assert e_errors / runs <= alpha + 0.02  # Ville: at most alpha, however often checked
    assert naive_errors / runs > 2 * alpha  # peeking at a fixed-n test inflates it


def test_sequential_test_catches_a_class_below_target() -> None:
    rng = np.random.default_rng(6)
    caught = sum(below_target(rng.random(150) < 0.8, 0.95) for _ in range(100))
    assert caught >= 95


def test_tighten_raises_only_the_failing_class() -> None:
    rng = np.random.default_rng(7)
    n = 400
    probs = np.full((n, 2), 0.5)
    y = np.zeros(n, dtype=int)
    conf = rng.uniform(0.9, 1.0, n)
    probs[:, 0] = conf
    probs[:, 1] = 1 - conf
    ts = fit_thresholds(
        np.vstack([probs, probs[:, ::-1]]),
        np.r_[y, np.ones(n, dtype=int)],
        target=0.95,
        min_support=30,
        label_names=["a", "b"],
    )
    assert ts["a"].auto_accepts and ts["b"].auto_accepts
    labels = np.r_[np.zeros(100, dtype=int), np.ones(100, dtype=int)]
    aconf = np.r_[rng.uniform(0.95, 1.0, 100), rng.uniform(0.95, 1.0, 100)]
    # Class a: right only where confidence > 0.99; class b: always right.
    right = np.r_[aconf[:100] > 0.99, np.ones(100, dtype=bool)]
    out = tighten_thresholds(ts, labels, aconf, right)
    assert out["b"].threshold == ts["b"].threshold
    assert out["a"].threshold > 0.985 or math.isinf(out["a"].threshold)
    assert "sequential" in out["a"].reason


# --- rechecks -----------------------------------------------------------------------------------


def test_error_probability_weighs_model_against_reviewer() -> None:
    probs = np.array([[0.98, 0.02], [0.5, 0.5], [0.02, 0.98], [0.001, 0.999]])
    labels = np.array([0, 0, 0, 0])
    pw = label_error_probability(labels, probs, 0.95)
    assert pw[0] < 0.01 and 0.04 < pw[1] < 0.06
    assert 0.6 < pw[2] < 0.8  # a confident model against a 95% reviewer: more likely wrong
    assert pw[3] > 0.9
    careful = label_error_probability(labels, probs, 0.999)
    assert np.all(careful <= pw)


def test_choose_rechecks_pays_and_respects_the_cap() -> None:
    pw = np.array([0.2, 0.9, 0.6, 0.51, 0.95])
    assert choose_rechecks(pw, 0.5).tolist() == [4, 1, 2, 3]
    assert choose_rechecks(pw, 0.5, max_count=2).tolist() == [4, 1]
    assert choose_rechecks(pw, 0.92).tolist() == [4]


def test_rechecks_catch_injected_noise_at_a_low_rate() -> None:
    """A model that is 97% accurate and a reviewer who errs on 10%: flagged labels are few and
    mostly real errors; on clean labels almost nothing is flagged."""
    rng = np.random.default_rng(8)
    n = 2_000
    truth = rng.integers(0, 2, n)
    conf = rng.beta(30, 1, n)
    model_right = rng.random(n) < conf
    top = np.where(model_right, truth, 1 - truth)
    probs = np.zeros((n, 2))
    probs[np.arange(n), top] = conf
    probs[np.arange(n), 1 - top] = 1 - conf
    clean = choose_rechecks(label_error_probability(truth, probs), 0.5)
    assert len(clean) / n < 0.05
    noisy = np.where(rng.random(n) < 0.1, 1 - truth, truth)
    flagged = choose_rechecks(label_error_probability(noisy, probs), 0.5, max_count=int(0.1 * n))
    wrong = np.flatnonzero(noisy != truth)
    assert len(np.intersect1d(flagged, wrong)) / len(wrong) >= 0.5
    assert len(np.intersect1d(flagged, wrong)) / max(len(flagged), 1) >= 0.8


def test_people_s_accuracy_learns_from_answered_rechecks() -> None:
    from labelloop.quality.label_issues import reviewer_accuracy_estimate

    prior = reviewer_accuracy_estimate(0, 0, [], [], k=2)
    assert abs(prior - 0.95) < 0.005  # the prior's mean when nothing is measured
    doubted = np.full(20, 0.1)  # the model gave the people's label 0.1 each time
    held = reviewer_accuracy_estimate(0, 0, doubted, np.zeros(20, bool), k=2)
    overturned = reviewer_accuracy_estimate(
        0, 0, doubted, np.r_[np.ones(15, bool), [False] * 5], k=2
    )
    assert held > 0.98 and overturned < 0.9  # doubted labels that hold up, or do not
    # gold answers alone: the Beta posterior mean (prior 0.95 worth 20 answers)
    assert abs(reviewer_accuracy_estimate(90, 100, [], [], k=2) - (19 + 90) / 120) < 1e-3
    with pytest.raises(ValueError, match="p_given and changed"):
        reviewer_accuracy_estimate(0, 0, [0.1, 0.2], [True], k=2)


def test_people_s_accuracy_from_rechecks_in_a_project(make_project) -> None:
    """Rechecks record the model's probability of the given label; answered ones move the
    accuracy rechecks are weighed against, and each overturned label buys one more recheck."""
    import pandas as pd

    from labelloop.annotate.feedback import recheck_budget
    from labelloop.annotate.reviewers import reviewer_accuracy
    from labelloop.review.queue import ReviewQueue

    p = make_project()
    path = p.folder / "in.csv"
    pd.DataFrame({"text": [f"message {i}" for i in range(40)]}).to_csv(path, index=False)
    p.ingest(path)
    ids = [int(i) for i in p.items()["id"]]
    assert len(ids) == 40
    for i in ids:
        p.label(i, ["ham"], annotator="ana")
    before = recheck_budget(p.ctx)
    assert before == 2  # 5% of 40 label actions
    assert reviewer_accuracy(p.ctx)[0] == pytest.approx(0.95, abs=0.005)
    ReviewQueue(p.ctx.db, p.ctx.id, p.ctx.config.task).recheck(
        ids[:2], ["doubted", "doubted"], [{"p_given": 0.05}, {"p_given": 0.05}]
    )
    for i in ids[:2]:  # a second person overturns both
        p.label(i, ["spam"], annotator="bo")
    accuracy, rests_on = reviewer_accuracy(p.ctx)
    assert rests_on == 2 and accuracy < 0.93
    assert recheck_budget(p.ctx) == 2  # 5% of 42 actions, + 2 overturned, - 2 sent
    p.close()
