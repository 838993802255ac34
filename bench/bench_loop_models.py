"""Does model selection or semi-supervised learning help the feedback loop? Measured, not assumed.

A simulated reviewer labels the pool with the dataset's own labels, batch by batch, chosen by
margin sampling on the logistic-regression student (the first batch is random). After each
batch the script trains, on the same human-labeled set:

- ``student``: LogisticRegression(C=100) on MiniLM embeddings (the default student);
- ``selected``: the model chosen by ``select_student`` (5-fold CV on the human labels);
- ``student+spreading`` / ``student+selftrain``: the student trained on the human labels plus
  pseudo-labels (label spreading / self-training suggestions with confidence >= ``--cut`` on
  unlabeled pool items); the pseudo-labels' own accuracy is reported too;
- ``random``: the student on a random sample of the same size (no loop), the baseline.

It reports test macro-F1 per step, labels needed to reach 95% of the fully supervised macro-F1
(student trained on the whole pool) with the ratio to random, how long ``select_student`` takes
at given label counts, and saves a learning-curve PNG under bench/out/.

Example:
    python bench/bench_loop_models.py --data /work/shared/data/banking77/train.csv \
        --test /work/shared/data/banking77/test.csv --text-col text --label-col category \
        --budget 1000 --step 100
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _datasets import encode_labels, pool_and_test  # bench/_datasets.py
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from labelloop.learn import (
    label_spreading_probs,
    pseudo_labels,
    select_student,
    self_training_probs,
)
from labelloop.learn.selection import quiet_fit

OUT = Path(__file__).parent / "out"


def embed_cached(texts: list[str], name: str) -> np.ndarray:
    """MiniLM embeddings cached in bench/out/ by a hash of the texts (same files as bench_active)."""
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    path = OUT / f"emb_minilm_{name}_{digest}.npy"
    if path.exists():
        x = np.load(path)
        if x.shape[0] == len(texts):
            return x
    from labelloop.embed.onnx_minilm import MiniLMEmbedder

    t0 = time.perf_counter()
    x = MiniLMEmbedder(intra_op_num_threads=1).embed(texts)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def student(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    with quiet_fit(1):
        return LogisticRegression(C=100.0, max_iter=1000).fit(x, y)


def macro_f1(model, x_test: np.ndarray, y_test: np.ndarray) -> float:
    with quiet_fit(1):
        pred = model.predict(x_test)
    return float(f1_score(y_test, pred, average="macro"))


def margin_pick(model, x: np.ndarray, labeled: np.ndarray, b: int) -> np.ndarray:
    free = np.setdiff1d(np.arange(len(x)), labeled)
    with quiet_fit(1):
        p = model.predict_proba(x[free])
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return free[np.argsort(top2[:, 0] - top2[:, 1], kind="stable")[:b]]


def with_pseudo(
    probs: np.ndarray, x: np.ndarray, y: np.ndarray, labeled: np.ndarray, cut: float
) -> tuple[LogisticRegression, int, float]:
    """Student on human labels + pseudo-labels above ``cut``; (model, n pseudo, their accuracy)."""
    rows, lab = pseudo_labels(probs, labeled, cut)
    xs = np.vstack([x[labeled], x[rows]])
    ys = np.concatenate([y[labeled], lab])
    acc = float((lab == y[rows]).mean()) if len(rows) else float("nan")
    return student(xs, ys), len(rows), acc


def labels_to_reach(curve: pd.Series, goal: float) -> float:
    hit = curve.dropna()
    hit = hit[hit >= goal]
    return float(hit.index[0]) if len(hit) else float("nan")


def markdown(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    idx = [str(n) for n in df.index.names]
    lines = ["| " + " | ".join(idx + [str(c) for c in df.columns]) + " |"]
    lines.append("|" + "---|" * (len(idx) + len(df.columns)))
    for key, row in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        cells = [floatfmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(k) for k in keys] + cells) + " |")
    return "\n".join(lines)


def time_selection(x: np.ndarray, y: np.ndarray, sizes: list[int], seed: int) -> None:
    if not sizes:
        return
    print("\n## select_student wall time (5-fold CV of 4 candidates + refit, 1 thread)")
    print("| labels | classes | chosen | total s | per candidate s (CV) |\n|---|---|---|---|---|")
    rng = np.random.default_rng(seed)
    for n in sizes:
        if n > len(x):
            print(f"| {n} | - | skipped: pool has {len(x)} items | | |")
            continue
        idx = rng.choice(len(x), n, replace=False)
        t0 = time.perf_counter()
        sel = select_student(x[idx], y[idx], seed=seed)
        total = time.perf_counter() - t0
        per = ", ".join(f"{k} {v:.0f}" for k, v in sel.seconds.items())
        f1s = ", ".join(f"{r.candidate} {r.macro_f1:.3f}" for r in sel.table.itertuples())
        print(f"| {n} | {len(np.unique(y[idx]))} | {sel.name} | {total:.0f} | {per} |")
        print(f"|   | CV macro-F1 | {f1s} | | |", flush=True)


def time_one_fold(x: np.ndarray, y: np.ndarray, sizes: list[int], seed: int) -> None:
    """One CV fold per candidate (fit on 80%, predict 20%): select_student costs about
    ``n_folds + 1`` times this per candidate (5 fits on 80% plus the winner's refit on 100%)."""
    from sklearn.model_selection import train_test_split as split

    from labelloop.learn import default_candidates

    if not sizes:
        return
    print("\n## one CV fold per candidate (fit on 80% + predict 20%), seconds, 1 thread")
    print(
        "| labels | candidate | one fold s | est. select_student share s (x6) |\n|---|---|---|---|"
    )
    rng = np.random.default_rng(seed)
    for n in sizes:
        idx = rng.choice(len(x), min(n, len(x)), replace=False)
        tr, te = split(idx, test_size=0.2, random_state=seed)
        total = 0.0
        for name, make in default_candidates(seed, len(idx), len(np.unique(y[idx]))).items():
            t0 = time.perf_counter()
            with quiet_fit(1):
                make().fit(x[tr], y[tr]).predict_proba(x[te])
            sec = time.perf_counter() - t0
            total += 6 * sec
            print(f"| {len(idx)} | {name} | {sec:.0f} | {6 * sec:.0f} |", flush=True)
        print(f"| {len(idx)} | all (estimate) | | {total:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="CSV file: the pool (and test, without --test)")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--test", help="CSV test file; without it 20%% of --data is held out")
    ap.add_argument("--name", help="dataset name for output files (default: file stem)")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--step", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cut", type=float, default=0.9, help="pseudo-label confidence cut")
    ap.add_argument("--spread-k", type=int, default=10)
    ap.add_argument("--self-iter", type=int, default=5, help="self-training iterations")
    ap.add_argument(
        "--select-at", help="label counts at which to run select_student (default: every step)"
    )
    ap.add_argument(
        "--random-up-to", type=int, help="continue the random baseline to this many labels"
    )
    ap.add_argument(
        "--time-select",
        default="",
        help="label counts at which to time select_student, e.g. "
        "1000,10000 (random subsets of the pool)",
    )
    ap.add_argument("--only-timing", action="store_true", help="skip the loop, only --time-select")
    ap.add_argument(
        "--time-one-fold",
        default="",
        help="label counts at which to time one CV fold per "
        "candidate (a cheaper estimate of select_student's cost at large label counts)",
    )
    args = ap.parse_args(argv)

    name = args.name or Path(args.data).stem
    pool_df, test = pool_and_test(args.data, args.test, args.text_col, args.label_col)
    classes, y, y_test = encode_labels(pool_df, test, args.label_col)
    texts = pool_df[args.text_col].astype(str).tolist() + test[args.text_col].astype(str).tolist()
    x_all = embed_cached(texts, name).astype(np.float64)
    x, x_test = x_all[: len(pool_df)], x_all[len(pool_df) :]
    k = len(classes)
    print(f"# {name}: pool {len(y)}, test {len(y_test)}, {k} classes, MiniLM embeddings")

    if args.only_timing:
        time_selection(x, y, [int(s) for s in args.time_select.split(",") if s], args.seed)
        time_one_fold(x, y, [int(s) for s in args.time_one_fold.split(",") if s], args.seed)
        return

    t0 = time.perf_counter()
    full_f1 = macro_f1(student(x, y), x_test, y_test)
    goal = 0.95 * full_f1
    print(
        f"fully supervised student macro-F1 {full_f1:.4f} ({time.perf_counter() - t0:.0f}s); "
        f"goal (95%) {goal:.4f}"
    )

    stops = list(range(args.step, args.budget + 1, args.step))
    select_at = set(stops) if not args.select_at else {int(s) for s in args.select_at.split(",")}
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    rows: list[dict] = []
    labeled = order[: args.step]  # the first batch is random: no model to ask yet
    lr: LogisticRegression | None = None
    for stop in stops:
        if lr is not None and len(labeled) < stop:
            labeled = np.concatenate([labeled, margin_pick(lr, x, labeled, stop - len(labeled))])
        xl, yl = x[labeled], y[labeled]
        row: dict = {"labels": stop}
        t = time.perf_counter()
        lr = student(xl, yl)
        row["student"] = macro_f1(lr, x_test, y_test)
        row["t_student"] = time.perf_counter() - t
        if stop in select_at:
            t = time.perf_counter()
            sel = select_student(xl, yl, seed=args.seed)
            row["selected"] = macro_f1(sel.estimator, x_test, y_test)
            row["chosen"] = sel.name
            row["t_select"] = time.perf_counter() - t
        t = time.perf_counter()
        p = label_spreading_probs(x, labeled, yl, k=args.spread_k, n_classes=k)
        model, row["n_spread"], row["acc_spread"] = with_pseudo(p, x, y, labeled, args.cut)
        row["student+spreading"] = macro_f1(model, x_test, y_test)
        row["t_spread"] = time.perf_counter() - t
        t = time.perf_counter()
        p = self_training_probs(x, labeled, yl, args.cut, args.self_iter, n_classes=k)
        model, row["n_self"], row["acc_self"] = with_pseudo(p, x, y, labeled, args.cut)
        row["student+selftrain"] = macro_f1(model, x_test, y_test)
        row["t_self"] = time.perf_counter() - t
        row["random"] = macro_f1(student(x[order[:stop]], y[order[:stop]]), x_test, y_test)
        rows.append(row)
        print(
            f"  {stop}: "
            + ", ".join(
                f"{c}={v:.3f}" if isinstance(v, float) else f"{c}={v}" for c, v in row.items()
            ),
            file=sys.stderr,
            flush=True,
        )
    res = pd.DataFrame(rows).set_index("labels")
    if args.random_up_to and args.random_up_to > args.budget:
        for stop in range(args.budget + args.step, args.random_up_to + 1, args.step):
            f1 = macro_f1(student(x[order[:stop]], y[order[:stop]]), x_test, y_test)
            res.loc[stop, "random"] = f1
    OUT.mkdir(parents=True, exist_ok=True)
    res.to_csv(OUT / f"loop_models_{name}.csv")

    curves = ["random", "student", "selected", "student+spreading", "student+selftrain"]
    curves = [c for c in curves if c in res.columns]
    print(
        f"\n## test macro-F1 by human labels (margin sampling, batches of {args.step}; "
        f"random = no loop; pseudo-label cut {args.cut})"
    )
    table = res.loc[stops, curves].copy()
    if "chosen" in res.columns:
        table["chosen"] = res.loc[stops, "chosen"].fillna("-")
    print(markdown(table))
    print("\n## pseudo-labels added (count, accuracy against the true labels)")
    pseudo = res.loc[stops, ["n_spread", "acc_spread", "n_self", "acc_self"]].astype(object)
    pseudo[["n_spread", "n_self"]] = pseudo[["n_spread", "n_self"]].astype(int)
    print(markdown(pseudo))
    print("\n## seconds per step")
    tcols = [c for c in ("t_student", "t_select", "t_spread", "t_self") if c in res.columns]
    print(markdown(res.loc[stops, tcols], "{:.1f}"))

    need = {c: labels_to_reach(res[c], goal) for c in curves}
    print(f"\n## human labels to reach 95% of full macro-F1 ({goal:.3f}); ratio to random")
    print("| model | labels | ratio to random |\n|---|---|---|")
    top_random = int(res["random"].dropna().index.max())
    for c in curves:
        top = top_random if c == "random" else args.budget
        shown = f"{need[c]:.0f}" if np.isfinite(need[c]) else f"> {top}"
        if np.isfinite(need[c]) and np.isfinite(need["random"]):
            ratio = f"{need[c] / need['random']:.2f}"
        elif np.isfinite(need[c]):
            ratio = f"< {need[c] / top_random:.2f} (random did not reach it)"
        else:
            ratio = "n/a"
        print(f"| {c} | {shown} | {ratio} |")

    if args.time_select:
        time_selection(x, y, [int(s) for s in args.time_select.split(",") if s], args.seed)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "-", "--", "-", "-"]  # "selected" is dashed: it often equals the student
    for c, ls in zip(curves, styles, strict=False):
        s = res[c].dropna()
        ax.plot(s.index, s.values, marker="o", ms=3, ls=ls, label=c)
    ax.axhline(goal, color="grey", ls="--", lw=1, label="95% of full supervision")
    ax.set_xlabel("human labels")
    ax.set_ylabel("test macro-F1")
    ax.set_title(f"{name}: student variants in the labeling loop")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = OUT / f"loop_models_{name}.png"
    fig.savefig(png, dpi=120)
    print(f"\nsaved {png}")


if __name__ == "__main__":
    main()
