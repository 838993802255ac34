"""Threshold rules compared offline on the loop's final arrays (issue 10, third round).

    python bench/bench_autolabel.py --data ../shared/data/youtube_spam/youtube_spam.csv \\
        --budget 400 --retrain-every 50 --seeds 0,1,2 --dump /tmp/i10/youtube
    python bench/bench_threshold_rules.py /tmp/i10/youtube/seed*.npz --draws 60

Each dump (``bench_autolabel.dump_state``) holds the held-out probabilities and labels of every
human label, which of them are calibration-sample evidence, and the final ensemble's
probabilities over the items people did not label (the pool) with the dataset's labels. For
each rule this prints, on the pool:

* ``real``: thresholds fit on the loop's own calibration sample (held-out probabilities, the
  calibrator fit on every human label as ``annotate.route`` does) and applied to the pool;
  coverage against the oracle's (``bench_autolabel.oracle_coverage``), realised precision
  overall, and the classes with 20+ machine labels below the target;
* ``draws``: ``--draws`` fresh random samples of the same size drawn from the pool itself
  (the dataset's labels as people's answers, the calibrator fit on the sample), each rule fit
  on the sample and measured on the rest of the pool: mean coverage / oracle, and the share of
  draws whose realised precision falls below target overall and for any class with 20+ machine
  labels. One loop run gives one draw; these give the rule's error rate. Each draw also
  takes as many "actively chosen" labels as the loop had (the smallest margins among a random
  half of the rest: hard items), for the rules that fit on every human label and for the
  calibrator, and leaves them out of the measured pool.
* ``--draw-seeds N``: the ``real`` fit again with N seeds of the rule's own random draws
  (posterior draws, bootstrap resamples): the range of coverage the seed alone gives on the
  same evidence (issue 10, fourth round).
* ``--ceiling``: what a rule that knew the pool's calibration curve exactly could label
  (``known_curve_cuts``): the loop's correctness model (logistic in logit(confidence), a
  per-label offset and slope) fit on the whole pool's truth, so there is no estimation error
  left, with per label the lowest cut whose share right among the items it labels still
  clears the target at 95% (each item right by chance around its known probability) and,
  apart, the lowest cut whose expected share right clears it. The gap between the oracle and
  these is what no honest rule can close; the gap between these and ``real`` is estimation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_autolabel import oracle_coverage  # noqa: E402

from labelloop.routing.calibration import fit_calibrator  # noqa: E402
from labelloop.routing.thresholds import (  # noqa: E402
    _design,
    _sigmoid,
    class_alpha,
    fit_calibrated_thresholds,
    fit_correctness_model,
    fit_sample_thresholds,
)

Rule = Callable[..., np.ndarray]


def rules(target: float, n_boot: int, reviewer_accuracy: float = 1.0) -> dict[str, Rule]:
    """name -> f(sample probs, sample labels, all labels' probs, all labels, pool probs, seed)
    -> per-label thresholds. "all": the correctness model is fit on every human label (the
    actively chosen ones too), the random sample only guards. ``reviewer_accuracy``: the upper
    bound on people's accuracy the loop fit its thresholds with (in newer dumps), so the
    calibrated rules reproduce the loop's."""

    def bound(alpha: float) -> Rule:
        def f(s, y, all_p, all_y, pool, seed, pool_conf=None):  # noqa: ANN001, ANN202
            return fit_sample_thresholds(s, y, target=target, alpha=alpha).values

        return f

    def calibrated(fit_on: str = "sample", **kw: object) -> Rule:
        def f(s, y, all_p, all_y, pool, seed, pool_conf=None):  # noqa: ANN001, ANN202
            if fit_on == "all":
                return fit_calibrated_thresholds(
                    all_p,
                    all_y,
                    pool,
                    pool_conf=pool_conf,
                    target=target,
                    n_draws=n_boot,
                    seed=int(seed),
                    guard_probs=s,
                    guard_y=y,
                    reviewer_accuracy=reviewer_accuracy,
                    **kw,
                ).values
            return fit_calibrated_thresholds(
                s, y, pool, target=target, n_draws=n_boot, seed=int(seed), **kw
            ).values

        return f

    def every_label() -> Rule:
        def f(s, y, all_p, all_y, pool, seed, pool_conf=None):  # noqa: ANN001, ANN202
            alpha = class_alpha(0.05, pool.shape[1], "all")
            return calibrated("all", alpha=alpha)(s, y, all_p, all_y, pool, seed, pool_conf)

        return f

    return {
        "bound (current, 95%)": bound(0.05),
        "bound 80%": bound(0.20),
        "sample: boot 95% +guard": calibrated(draws="bootstrap", guard_alpha=0.05),
        "sample: laplace 95% +guard": calibrated(guard_alpha=0.05),
        "all: boot 95% +guard": calibrated("all", draws="bootstrap", guard_alpha=0.05),
        # The rule metrics.threshold_rule "calibrated" runs (fit_calibrated_thresholds'
        # defaults, fit on every human label, the sample guarding).
        "all: laplace 95% +guard (calibrated)": calibrated("all"),
        # metrics.class_guarantee "all": every label's bound at 1 - 0.05 / labels.
        "all: laplace, every label at once (calibrated, class_guarantee all)": every_label(),
        # Before 2026-12-02's evening: the guard refused cuts one by one and the scan started
        # at the highest cut, so the first refusal or jitter near the top ended it.
        "all: laplace, guard each cut, scan from top": calibrated("all", guard_scope="each-cut"),
        "all: laplace 95% +guard, not predictive": calibrated("all", predictive=False),
        "all: laplace sd1 slopes 95% +guard": calibrated("all", class_sd=1.0, slope_sd=1.0),
    }


def known_curve_cuts(
    pool: np.ndarray, truth: np.ndarray, target: float, z: float = 1.645
) -> np.ndarray:
    """Per-label thresholds from the pool's own calibration curve, fit knowing the truth (see
    ``--ceiling``): the lowest cut whose items' modelled share right, minus ``z`` standard
    deviations of its luck (0: the expected share alone), is >= ``target``; inf where none is."""
    n, k = pool.shape
    pred = pool.argmax(axis=1)
    conf = pool.max(axis=1)
    theta = fit_correctness_model(conf, pred, pred == truth, k, class_sd=3.0, slope_sd=3.0)
    p_right = _sigmoid(_design(conf, pred, k, True) @ theta)
    thr = np.full(k, np.inf)
    for j in range(k):
        mine = np.flatnonzero(pred == j)
        if not len(mine):
            continue
        order = mine[np.argsort(-conf[mine], kind="stable")]
        m = np.arange(1, len(order) + 1)
        mean = np.cumsum(p_right[order]) / m
        low = mean - z * np.sqrt(np.cumsum(p_right[order] * (1 - p_right[order]))) / m
        ok = np.flatnonzero(low >= target)
        if len(ok):
            thr[j] = conf[order][ok[-1]]
    return thr


def measure(
    thr: np.ndarray, pool: np.ndarray, truth: np.ndarray, target: float
) -> tuple[int, float, int, int, str]:
    """(machine labels, precision, classes with 20+ below target, classes with 20+, worst)."""
    pred = pool.argmax(axis=1)
    conf = pool.max(axis=1)
    auto = conf >= thr[pred]
    if not auto.any():
        return 0, float("nan"), 0, 0, "-"
    right = pred[auto] == truth[auto]
    big, below, worst = 0, 0, (2.0, "-")
    for j in np.unique(pred[auto]):
        m = pred[auto] == j
        if m.sum() >= 20:
            big += 1
            p = float(right[m].mean())
            below += p < target
            worst = min(worst, (p, f"{j}: {p:.2f} on {int(m.sum())}"))
    return int(auto.sum()), float(right.mean()), below, big, worst[1]


def run_dump(path: Path, args: argparse.Namespace) -> list[dict[str, object]]:
    d = np.load(path)
    held, y, in_sample = d["held_out"], d["y"], d["in_sample"].astype(bool)
    pool_raw, truth = d["pool"], d["truth"]
    keep = truth >= 0
    pool_raw, truth = pool_raw[keep], truth[keep]
    target = args.target
    accuracy = float(d["reviewer_accuracy"]) if "reviewer_accuracy" in d.files else 1.0
    table = rules(target, args.n_boot, accuracy)
    names = [n for n in table if not args.rules or any(r in n for r in args.rules.split(","))]
    rows: list[dict[str, object]] = []
    # The loop's own evidence.
    cal = fit_calibrator(held, y)
    pool = cal.transform(pool_raw)
    # The loop's rule reads pool items at the held-out models' confidence (newer dumps).
    pool_conf = None
    if "pool_folds" in d.files:
        folds = cal.transform(d["pool_folds"][keep])
        pool_conf = folds[np.arange(len(pool)), pool.argmax(axis=1)]
    sample = cal.transform(held[in_sample])
    oracle = oracle_coverage(pool_raw, truth, target) / len(truth)
    print(
        f"\n{path}: {len(truth)} pool items, {int(in_sample.sum())} sampled of {len(y)} human "
        f"labels, calibrator {cal.method}, oracle coverage {oracle:.3f}",
        flush=True,
    )
    if args.ceiling:
        from scipy.stats import norm

        every = class_alpha(0.05, pool.shape[1], "all")
        for name, z in (
            ("ceiling: known curve, expected", 0.0),
            ("ceiling: known curve, 95% on realised", float(norm.ppf(0.95))),
            ("ceiling: known curve, 99% on realised", float(norm.ppf(0.99))),
            ("ceiling: known curve, every label at once", float(norm.ppf(1 - every))),
        ):
            thr = known_curve_cuts(pool, truth, target, z)
            n_auto, prec, below, big, worst = measure(thr, pool, truth, target)
            cover = n_auto / len(truth)
            print(
                f"  {name:36s} coverage {cover:.3f} ({cover / oracle:.2f} of oracle) "
                f"precision {prec:.3f} below {below}/{big} worst {worst}",
                flush=True,
            )
            rows.append(
                {
                    "dump": str(path),
                    "rule": name,
                    "coverage": cover,
                    "oracle": oracle,
                    "precision": prec,
                    "below": below,
                    "big": big,
                    "worst": worst,
                }
            )
    for name in names:
        t0 = time.perf_counter()
        thr = table[name](sample, y[in_sample], cal.transform(held), y, pool, 0, pool_conf)
        n_auto, prec, below, big, worst = measure(thr, pool, truth, target)
        row = {
            "dump": str(path),
            "rule": name,
            "coverage": n_auto / len(truth),
            "oracle": oracle,
            "precision": prec,
            "below": below,
            "big": big,
            "worst": worst,
        }
        if args.draw_seeds:
            covers = [
                measure(
                    table[name](sample, y[in_sample], cal.transform(held), y, pool, s, pool_conf),
                    pool,
                    truth,
                    target,
                )[0]
                / len(truth)
                for s in range(args.draw_seeds)
            ]
            row.update(seed_min=min(covers), seed_max=max(covers))
        # Fresh samples of the same size from the pool.
        if args.draws:
            rng = np.random.default_rng(args.seed)
            ratios, fail_all, fail_class, n_below = [], 0, 0, []
            n_s, n_a = int(in_sample.sum()), int((~in_sample).sum())
            for r in range(args.draws):
                idx = rng.choice(len(truth), n_s, replace=False)
                left = np.setdiff1d(np.arange(len(truth)), idx)
                # Actively chosen labels: the smallest margins among a random half of the
                # rest (uncertainty sampling with some spread), as hard as the loop's.
                half = rng.choice(left, len(left) // 2, replace=False)
                top2 = np.sort(pool_raw[half], axis=1)[:, -2:]
                act = half[np.argsort(top2[:, 1] - top2[:, 0])[:n_a]]
                rest = np.setdiff1d(left, act)
                both = np.r_[idx, act]
                c = fit_calibrator(pool_raw[both], truth[both])
                rest_cal = c.transform(pool_raw[rest])
                thr_r = table[name](
                    c.transform(pool_raw[idx]),
                    truth[idx],
                    c.transform(pool_raw[both]),
                    truth[both],
                    rest_cal,
                    r,
                )
                n_r, p_r, b_r, _, _ = measure(thr_r, rest_cal, truth[rest], target)
                o_r = oracle_coverage(pool_raw[rest], truth[rest], target)
                ratios.append(n_r / max(o_r, 1))
                fail_all += bool(n_r and p_r < target)
                fail_class += bool(b_r)
                n_below.append(b_r)
            row.update(
                draws=args.draws,
                draw_ratio=float(np.mean(ratios)),
                draw_ratio_min=float(np.min(ratios)),
                fail_all=fail_all / args.draws,
                fail_class=fail_class / args.draws,
                mean_below=float(np.mean(n_below)),
            )
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(
            f"  {name:36s} coverage {row['coverage']:.3f} ({row['coverage'] / oracle:.2f} of "
            f"oracle) precision {prec:.3f} below {below}/{big} worst {worst}"
            + (
                f" | draws: coverage/oracle {row['draw_ratio']:.2f} (min {row['draw_ratio_min']:.2f}),"
                f" precision < target {row['fail_all']:.0%}, a class < target {row['fail_class']:.0%}"
                f" (mean {row['mean_below']:.1f} classes)"
                if args.draws
                else ""
            )
            + (
                f" | {args.draw_seeds} seeds of its draws: coverage {row['seed_min']:.2f} - "
                f"{row['seed_max']:.2f}"
                if args.draw_seeds
                else ""
            )
            + f" [{row['seconds']:.0f} s]",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dumps", nargs="+", type=Path)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--draws", type=int, default=0, help="fresh samples per dump")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--draw-seeds", type=int, default=0, help="refit with this many seeds of the rule's draws"
    )
    ap.add_argument("--rules", default="", help="comma-separated substrings of rule names")
    ap.add_argument(
        "--ceiling", action="store_true", help="also the rules that know the pool's curve"
    )
    args = ap.parse_args()
    for path in args.dumps:
        run_dump(path, args)


if __name__ == "__main__":
    main()
