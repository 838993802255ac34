"""The model-based threshold rule (``fit_calibrated_thresholds``, issue 10) on synthetic scores:
it keeps the precision target on the pool it labels and labels more than the sample bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelloop.routing.thresholds import (
    class_alpha,
    fit_calibrated_thresholds,
    fit_correctness_model,
    fit_sample_thresholds,
)

TARGET = 0.95


def scores(
    n: int, rng: np.random.Generator, k: int = 2, offset: tuple[float, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Items whose predicted label (uniform over k) is right with probability equal to the
    confidence (calibrated), or with log-odds lower by ``offset[label]`` (that label
    overconfident). Confidences are skewed high, as a trained model's are on most of a pool."""
    conf = 1.0 / k + (1.0 - 1.0 / k) * rng.beta(4.0, 1.0, size=n)
    pred = rng.integers(k, size=n)
    z = np.log(conf / (1 - conf)) - (np.asarray(offset)[pred] if offset is not None else 0.0)
    right = rng.random(n) < 1 / (1 + np.exp(-z))
    other = (pred + rng.integers(1, k, size=n)) % k
    probs = np.tile(((1.0 - conf) / (k - 1))[:, None], (1, k))
    probs[np.arange(n), pred] = conf
    return probs, np.where(right, pred, other)


def realised(thresholds: np.ndarray, probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(share of the pool auto-labeled, its precision; nan when nothing is)."""
    pred = probs.argmax(axis=1)
    auto = probs.max(axis=1) >= thresholds[pred]
    return float(auto.mean()), float((pred[auto] == y[auto]).mean()) if auto.any() else math.nan


def classes_met(thresholds: np.ndarray, probs: np.ndarray, y: np.ndarray) -> bool:
    """Every label with 20+ machine labels at least the target."""
    pred = probs.argmax(axis=1)
    auto = probs.max(axis=1) >= thresholds[pred]
    for j in np.unique(pred[auto]):
        mine = auto & (pred == j)
        if mine.sum() >= 20 and (y[mine] == j).mean() < TARGET:
            return False
    return True


def loop_like(
    rng: np.random.Generator, offset: tuple[float, ...] | None = None
) -> tuple[np.ndarray, ...]:
    """A pool, a random sample of 150 labeled items, and 250 actively chosen (the least
    confident of 2,000) labeled items, as the loop has them."""
    pool, pool_y = scores(4000, rng, offset=offset)
    sample, y = scores(150, rng, offset=offset)
    cand, cand_y = scores(2000, rng, offset=offset)
    hard = np.argsort(cand.max(axis=1))[:250]
    return pool, pool_y, sample, y, np.r_[sample, cand[hard]], np.r_[y, cand_y[hard]]


def test_calibrated_rule_keeps_the_target_and_labels_more_than_the_bound() -> None:
    """Fit on every label (the actively chosen, hard ones too: chosen by the confidence the
    model conditions on, they leave P(right | confidence) as it is), guarded by the sample."""
    rng = np.random.default_rng(0)
    met, covered, bound_covered = 0, [], []
    draws = 200
    for r in range(draws):
        pool, pool_y, sample, y, every, every_y = loop_like(rng)
        ts = fit_calibrated_thresholds(
            every, every_y, pool, n_draws=100, seed=r, guard_probs=sample, guard_y=y
        )
        cov, prec = realised(ts.values, pool, pool_y)
        met += bool(cov == 0 or prec >= TARGET)
        covered.append(cov)
        bound_covered.append(realised(fit_sample_thresholds(sample, y).values, pool, pool_y)[0])
    assert met >= 0.9 * draws
    assert np.mean(covered) > np.mean(bound_covered)


def test_an_overconfident_class_gets_its_own_cut_and_keeps_the_target() -> None:
    rng = np.random.default_rng(1)
    met, cuts, covered, bound_covered = 0, [], [], []
    draws = 60
    for r in range(draws):
        pool, pool_y, sample, y, every, every_y = loop_like(rng, offset=(0.0, 1.0))
        ts = fit_calibrated_thresholds(
            every, every_y, pool, n_draws=100, seed=r, guard_probs=sample, guard_y=y
        )
        met += classes_met(ts.values, pool, pool_y)
        cuts.append(ts.values)
        covered.append(realised(ts.values, pool, pool_y)[0])
        bound_covered.append(realised(fit_sample_thresholds(sample, y).values, pool, pool_y)[0])
    assert met >= 0.9 * draws
    cuts_arr = np.array(cuts)
    assert np.median(cuts_arr[:, 1]) > np.median(cuts_arr[:, 0])
    assert np.mean(covered) > np.mean(bound_covered)


def test_the_guard_refuses_cuts_the_sample_shows_below_target() -> None:
    rng = np.random.default_rng(3)
    pool, _ = scores(4000, rng)
    fit, fit_y = scores(400, rng)  # calibrated: the model alone would pass cuts
    guard, guard_y = scores(200, rng, offset=(2.5, 2.5))  # the random sample: far below
    free = fit_calibrated_thresholds(fit, fit_y, pool, target=TARGET, guard_alpha=None)
    assert free.values.max() < 1.0
    guarded = fit_calibrated_thresholds(
        fit, fit_y, pool, target=TARGET, guard_probs=guard, guard_y=guard_y
    )
    assert np.all(guarded.values > free.values)


def test_one_sampled_error_among_the_top_items_does_not_end_the_scan() -> None:
    """Issue 10, item 3: with the guard applied cut by cut, one wrong sampled item with only two
    sampled items above it ("1 wrong of 3" is below 0.95 by the Wilson test) refused the cuts
    around it, and the scan from the top stopped above it: coverage swung with where one random
    error fell. Applied to the model's run of passing cuts, the guard keeps the lowest cut it
    does not refuse; the precision target still holds on the pool."""
    rng = np.random.default_rng(6)
    pool, pool_y = scores(4000, rng)
    fit, fit_y = scores(400, rng)
    guard, guard_y = scores(300, rng)
    low = guard.max(axis=1) < 0.97
    guard, guard_y = guard[low], guard_y[low]
    top = np.array([[0.995, 0.005], [0.995, 0.005], [0.98, 0.02]])  # two right, one wrong
    guard, guard_y = np.r_[guard, top], np.r_[guard_y, [0, 0, 1]]
    kw = {"target": TARGET, "guard_probs": guard, "guard_y": guard_y}
    each = fit_calibrated_thresholds(fit, fit_y, pool, guard_scope="each-cut", **kw)
    run = fit_calibrated_thresholds(fit, fit_y, pool, **kw)
    assert each.values[0] > 0.98  # the old behaviour: stopped above the error
    assert run.values[0] < 0.95
    cov_each, _ = realised(each.values, pool, pool_y)
    cov_run, prec_run = realised(run.values, pool, pool_y)
    assert cov_run > cov_each + 0.1
    assert prec_run >= TARGET


def test_no_sample_and_no_passing_cut_auto_accept_nothing_with_a_reason() -> None:
    rng = np.random.default_rng(4)
    pool, _ = scores(500, rng)
    empty = fit_calibrated_thresholds(np.zeros((0, 2)), np.zeros(0, int), pool)
    assert np.all(np.isinf(empty.values))
    assert all(t.reason for t in empty.labels)
    bad, bad_y = scores(200, rng, offset=(20.0, 20.0))
    none = fit_calibrated_thresholds(bad, bad_y, pool, target=TARGET)
    assert np.all(np.isinf(none.values))
    assert "lower bound" in none.labels[0].reason


def test_correctness_model_recovers_a_known_curve_and_stays_finite_when_all_are_right() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.5, 0.999, size=20_000)
    z = np.log(conf / (1 - conf))
    right = rng.random(len(conf)) < 1 / (1 + np.exp(-(0.5 + 0.8 * z)))
    theta = fit_correctness_model(conf, np.zeros(len(conf), int), right, k=1, class_sd=0.01)
    assert theta[0] == pytest.approx(0.5, abs=0.1)
    assert theta[1] == pytest.approx(0.8, abs=0.05)
    all_right = fit_correctness_model(conf[:50], np.zeros(50, int), np.ones(50, bool), k=1)
    assert np.all(np.isfinite(all_right))


def test_input_checks() -> None:
    rng = np.random.default_rng(6)
    sample, y = scores(100, rng)
    with pytest.raises(ValueError, match="columns"):
        fit_calibrated_thresholds(sample, y, np.full((10, 3), 1 / 3))
    with pytest.raises(ValueError, match="draws"):
        fit_calibrated_thresholds(sample, y, sample, draws="magic")  # type: ignore[arg-type]


def test_the_loop_routes_with_the_calibrated_rule(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """metrics.threshold_rule "calibrated" reaches the route: thresholds come from the rule,
    machines label, and what they label meets the target on this easy slice."""
    import pandas as pd

    import labelloop.annotate.route as route_module
    from labelloop.demo.data import SMS_SPAM_LABELS, sms_spam_path
    from labelloop.project import Project

    fits, alphas = [], []

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        fits.append(len(args[2]))  # the pool's size
        alphas.append(kwargs["alpha"])
        return fit_calibrated_thresholds(*args, **kwargs)

    monkeypatch.setattr(route_module, "fit_calibrated_thresholds", counted)

    df = pd.read_csv(sms_spam_path()).drop_duplicates("text")
    df = pd.concat([df[df.label == "spam"].head(80), df[df.label == "ham"].head(320)])
    data = tmp_path / "sms400.csv"
    df.sample(frac=1.0, random_state=0).to_csv(data, index=False)
    gold = dict(zip(df.text, df.label, strict=True))
    p = Project.init(
        tmp_path / "p",
        name="sms",
        labels=[{"name": k, "description": v} for k, v in SMS_SPAM_LABELS.items()],
        label_field="label",
    )
    try:
        p.config.metrics.threshold_rule = "calibrated"
        p.ingest(data)
        p.suggest()
        p.route()
        for _ in range(160):
            item = p.next_item("sim")
            if item is None:
                break
            p.submit(item["id"], [gold[item["content"]]], annotator="sim")
        r = p.route()
        assert fits and fits[-1] > 100  # the rule ran, over the items machines may label
        assert r.auto > 0, r.thresholds
        assert all(t["threshold"] == math.inf or t["lower_bound"] >= TARGET for t in r.thresholds)
        fl = p.final_labels()
        machine = fl[fl.source_kind == "machine"]
        right = [ls[0] == gold[c] for c, ls in zip(machine.content, machine.labels, strict=True)]
        assert np.mean(right) >= TARGET
        # metrics.class_guarantee "all": both labels' bounds at 97.5%, not 95%.
        assert alphas[-1] == 0.05
        p.config.metrics.class_guarantee = "all"
        p.route()
        assert alphas[-1] == 0.025
    finally:
        p.close()


def test_mixture_quantile_matches_the_normal_and_a_large_sample() -> None:
    from scipy.stats import norm

    from labelloop.routing.thresholds import _mixture_quantile

    one = _mixture_quantile(np.array([[0.9, 0.5]]), np.array([[0.01**2, 0.2**2]]), 0.05)
    assert np.allclose(one, [0.9 + 0.01 * norm.ppf(0.05), 0.5 + 0.2 * norm.ppf(0.05)], atol=1e-6)
    rng = np.random.default_rng(0)
    means, sds = rng.normal(0.9, 0.03, size=(50, 1)), rng.uniform(0.005, 0.03, size=(50, 1))
    drawn = (means + sds * rng.standard_normal((50, 40_000))).ravel()
    mixed = _mixture_quantile(means, sds**2, 0.05)[0]
    assert abs(mixed - np.quantile(drawn, 0.05)) < 0.002


def test_the_cuts_do_not_move_with_the_seed_of_the_draws() -> None:
    """Issue 10, item 3: the bound is a 5% quantile over parameter draws, and the threshold the
    run of cuts through the best bound. With plain Monte Carlo draws and drawn luck, the seed
    alone moved youtube_spam's coverage between 0.33 and 0.57 (the best of noisy bounds is a
    lucky one); Sobol draws and the luck in closed form leave it where the evidence puts it."""
    rng = np.random.default_rng(8)
    pool, pool_y = scores(3000, rng)
    fit, fit_y = scores(300, rng)
    covers = [
        realised(
            fit_calibrated_thresholds(fit, fit_y, pool, target=TARGET, seed=s).values,
            pool,
            pool_y,
        )[0]
        for s in range(6)
    ]
    assert max(covers) - min(covers) < 0.02, covers


def test_a_large_pool_is_cut_on_a_bounded_grid() -> None:
    """Beyond MAX_CUTS distinct confidences a label's candidate cuts are thinned by rank; the
    cut found is close to the one the full grid gives and still meets the target."""
    import labelloop.routing.thresholds as thresholds

    rng = np.random.default_rng(9)
    pool, pool_y = scores(6000, rng)
    fit, fit_y = scores(400, rng)
    thinned = fit_calibrated_thresholds(fit, fit_y, pool, target=TARGET)
    full_grid = thresholds.MAX_CUTS
    try:
        thresholds.MAX_CUTS = 10**9
        full = fit_calibrated_thresholds(fit, fit_y, pool, target=TARGET)
    finally:
        thresholds.MAX_CUTS = full_grid
    cov_thin, prec_thin = realised(thinned.values, pool, pool_y)
    cov_full, _ = realised(full.values, pool, pool_y)
    assert abs(cov_thin - cov_full) < 0.01
    assert prec_thin >= TARGET


def test_pool_confidence_on_the_held_out_scale_keeps_an_overconfident_pool_honest() -> None:
    """The correctness model is fit on held-out probabilities (models fit on part of the
    labels); the final model is sharper on the pool: the same items, confidences pushed up
    (log-odds x 2.5), rightness unchanged. Read on those confidences, the model promises what
    the pool does not keep; read on the held-out scale (``pool_conf``), it keeps the target."""
    rng = np.random.default_rng(10)
    fit, fit_y = scores(400, rng)
    guard, guard_y = scores(100, rng)
    held_scale, pool_y = scores(4000, rng)
    conf = held_scale.max(axis=1)
    sharp = 1 / (1 + np.exp(-2.5 * np.log(conf / (1 - conf))))
    pool = np.where(held_scale == conf[:, None], sharp[:, None], (1 - sharp)[:, None])
    kw = {"target": TARGET, "guard_probs": guard, "guard_y": guard_y}
    naive = fit_calibrated_thresholds(fit, fit_y, pool, **kw)
    honest = fit_calibrated_thresholds(fit, fit_y, pool, pool_conf=conf, **kw)
    _, prec_naive = realised(naive.values, pool, pool_y)
    cov_honest, prec_honest = realised(honest.values, pool, pool_y)
    assert prec_naive < TARGET
    assert prec_honest >= TARGET and cov_honest > 0.2
    with pytest.raises(ValueError, match="pool_conf"):
        fit_calibrated_thresholds(fit, fit_y, pool, pool_conf=conf[:10])


def test_a_guarantee_for_every_label_at_once_keeps_all_of_many_labels_at_the_target() -> None:
    """metrics.class_guarantee: with 25 labels, each bound at 95% leaves a label below target
    now and then (about 1 in 20 of those that auto-accept, by chance alone); bounds at
    1 - 0.05 / 25 leave one below in fewer draws (here: 5 of 12 against none), and label
    less."""
    assert class_alpha(0.05, 77, "each") == 0.05
    assert class_alpha(0.05, 77, "all") == pytest.approx(0.05 / 77)
    with pytest.raises(ValueError, match="guarantee"):
        class_alpha(0.05, 77, "most")
    rng = np.random.default_rng(7)
    k, draws = 25, 12
    failed = {"each": 0, "all": 0}
    covered: dict[str, list[float]] = {"each": [], "all": []}
    for r in range(draws):
        pool, pool_y = scores(5000, rng, k=k)
        every, every_y = scores(1000, rng, k=k)
        for guarantee in failed:
            ts = fit_calibrated_thresholds(
                every,
                every_y,
                pool,
                alpha=class_alpha(0.05, k, guarantee),
                n_draws=64,
                seed=r,
                guard_alpha=None,
            )
            failed[guarantee] += not classes_met(ts.values, pool, pool_y)
            covered[guarantee].append(realised(ts.values, pool, pool_y)[0])
    assert failed["all"] <= failed["each"]
    assert failed["all"] <= 1, failed
    assert np.mean(covered["all"]) < np.mean(covered["each"])
