"""Active learning and auto-accept routing, simulated on a labeled dataset.

A simulated reviewer answers with the dataset's own labels. The student is a logistic
regression on MiniLM embeddings (TF-IDF + SVD with ``--features tfidf``). For each strategy
and seed, the script labels the pool batch by batch and records test macro-F1 after every
batch. It reports:

- macro-F1 at each budget, per strategy (mean over seeds);
- labels needed to reach 95% of the fully supervised macro-F1 (student trained on the whole
  pool), and the ratio to random sampling in the same run;
- routing at a precision target after selected budgets: calibrate and fit per-label thresholds
  on out-of-fold probabilities of the human-labeled items, then auto-accept the rest of the pool;
  the precision measured on the auto-accepted items and the share auto-accepted.

Example:
    python bench/bench_active.py --data /work/shared/data/sms_spam/sms_spam.csv \
        --text-col text --label-col label --name sms_spam --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from _datasets import encode_labels, pool_and_test  # bench/_datasets.py
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold

from labelloop.active import (
    combined_priority,
    density,
    entropy_score,
    least_confidence_score,
    margin_score,
    typiclust_cold_start,
    uncertain_k_center,
)
from labelloop.routing import fit_calibrator, fit_thresholds, route

OUT = Path(__file__).parent / "out"
DEFAULT_STRATEGIES = (
    "random,margin,entropy,least_confidence,typiclust+margin,margin+kcenter,margin+density"
)


# --- features ---------------------------------------------------------------------------------


def embed_cached(texts: list[str], features: str, name: str) -> tuple[np.ndarray, str]:
    """Embeddings for ``texts``, cached in bench/out/ by a hash of the texts."""
    digest = hashlib.sha256("\x1f".join(texts).encode()).hexdigest()[:16]
    if features in ("auto", "minilm"):
        path = OUT / f"emb_minilm_{digest}.npy"
        if path.exists():
            return np.load(path), "minilm"
        try:
            from labelloop.embed.onnx_minilm import MiniLMEmbedder
        except ImportError as exc:
            if features == "minilm":
                raise
            print(f"MiniLM embedder unavailable ({exc}); using TF-IDF + SVD", file=sys.stderr)
        else:
            t0 = time.perf_counter()
            x = MiniLMEmbedder(intra_op_num_threads=1).embed(texts)
            print(
                f"embedded {len(texts)} texts in {time.perf_counter() - t0:.1f}s", file=sys.stderr
            )
            OUT.mkdir(parents=True, exist_ok=True)
            np.save(path, x)
            return x, "minilm"
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)
    x = TruncatedSVD(256, random_state=0).fit_transform(tfidf)
    x[np.linalg.norm(x, axis=1) == 0] = 1.0  # texts with no known term: one shared direction
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), "tfidf-svd256"


# --- student ----------------------------------------------------------------------------------


class Student:
    """Logistic regression whose probabilities always have one column per class of the task."""

    def __init__(self, n_classes: int, c: float) -> None:
        self.n_classes = n_classes
        self.c = c

    def fit(self, x: np.ndarray, y: np.ndarray) -> Student:
        self.classes = np.unique(y)
        if len(self.classes) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", message="The number of unique classes")
                self.model = LogisticRegression(C=self.c, max_iter=300).fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.n_classes))
        if len(self.classes) == 1:
            out[:, self.classes[0]] = 1.0
        else:
            out[:, self.classes] = self.model.predict_proba(x)
        return out


def out_of_fold_probs(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, folds: int = 5
) -> np.ndarray:
    """Probabilities for each labeled item from a student that did not see it."""
    oof = np.zeros((len(y), n_classes))
    for train, test in KFold(folds, shuffle=True, random_state=0).split(x):
        oof[test] = Student(n_classes, c).fit(x[train], y[train]).predict_proba(x[test])
    return oof


# --- strategies -------------------------------------------------------------------------------


class Pool:
    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, c: float, seed: int) -> None:
        self.x, self.y, self.n_classes, self.c = x, y, n_classes, c
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self._density: np.ndarray | None = None

    @property
    def density(self) -> np.ndarray:
        if self._density is None:
            self._density = density(self.x, k=10)
        return self._density


Selector = Callable[[Pool, np.ndarray, np.ndarray | None, int], np.ndarray]


def _unlabeled(pool: Pool, labeled: np.ndarray) -> np.ndarray:
    mask = np.ones(len(pool.y), dtype=bool)
    mask[labeled] = False
    return np.flatnonzero(mask)


def _random(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int) -> np.ndarray:
    return pool.rng.choice(_unlabeled(pool, labeled), b, replace=False)


def _top(score_fn: Callable[[np.ndarray], np.ndarray]) -> Selector:
    def select(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int) -> np.ndarray:
        if probs is None:
            return _random(pool, labeled, probs, b)
        free = _unlabeled(pool, labeled)
        s = score_fn(probs[free])
        return free[np.argsort(-s, kind="stable")[:b]]

    return select


def _typiclust(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int) -> np.ndarray:
    return typiclust_cold_start(pool.x, b, labeled=labeled, seed=pool.seed)


def _then(cold_until: int, first: Selector, second: Selector) -> Selector:
    def select(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int) -> np.ndarray:
        return (first if len(labeled) < cold_until else second)(pool, labeled, probs, b)

    return select


def _margin_kcenter(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int):
    if probs is None:
        return _random(pool, labeled, probs, b)
    return uncertain_k_center(pool.x, margin_score(probs), b, top_m=10 * b, labeled=labeled)


def _margin_density(pool: Pool, labeled: np.ndarray, probs: np.ndarray | None, b: int):
    if probs is None:
        return _random(pool, labeled, probs, b)
    free = _unlabeled(pool, labeled)
    p = combined_priority(
        {"margin": margin_score(probs[free]), "density": pool.density[free]},
        {"margin": 0.7, "density": 0.3},
    )
    return free[np.argsort(-p, kind="stable")[:b]]


def make_strategies(cold_start: int) -> dict[str, Selector]:
    margin = _top(margin_score)
    return {
        "random": _random,
        "margin": margin,
        "entropy": _top(entropy_score),
        "least_confidence": _top(least_confidence_score),
        "typiclust": _typiclust,
        "typiclust+margin": _then(cold_start, _typiclust, margin),
        "margin+kcenter": _margin_kcenter,
        "margin+density": _margin_density,
    }


# --- the simulation ---------------------------------------------------------------------------


def routing_figures(
    pool: Pool, labeled: np.ndarray, model: Student, args: argparse.Namespace
) -> dict[str, float]:
    """Calibrate + fit thresholds on the labeled items, then auto-accept the rest of the pool."""
    xl, yl = pool.x[labeled], pool.y[labeled]
    oof = out_of_fold_probs(xl, yl, pool.n_classes, args.C)
    cal = fit_calibrator(oof, yl)
    ts = fit_thresholds(
        cal.transform(oof), yl, target=args.target, alpha=args.alpha, min_support=args.min_support
    )
    free = _unlabeled(pool, labeled)
    probs = cal.transform(model.predict_proba(pool.x[free]))
    d = route(probs, ts, audit_rate=0.0)
    right = d.label[d.auto] == pool.y[free][d.auto]
    per_label = [
        right[d.label[d.auto] == j].mean()
        for j in np.unique(d.label[d.auto])
        if (d.label[d.auto] == j).sum() >= 20
    ]
    return {
        "calibrator": cal.method,
        "labels_auto": int(sum(t.auto_accepts for t in ts.labels)),
        "auto_share": float(d.auto.mean()),
        "auto_precision": float(right.mean()) if right.size else float("nan"),
        "worst_label_precision": float(min(per_label)) if per_label else float("nan"),
    }


def run_one(
    pool: Pool,
    x_test: np.ndarray,
    y_test: np.ndarray,
    select: Selector,
    checkpoints: list[int],
    routing_at: set[int],
    args: argparse.Namespace,
) -> tuple[list[tuple[int, float]], dict[int, dict[str, float]]]:
    labeled = np.zeros(0, dtype=np.int64)
    probs = None
    curve: list[tuple[int, float]] = []
    routing: dict[int, dict[str, float]] = {}
    stops = sorted(
        set(range(args.batch_size, max(checkpoints) + 1, args.batch_size)) | set(checkpoints)
    )
    for stop in stops:
        picks = select(pool, labeled, probs, stop - len(labeled))
        labeled = np.concatenate([labeled, np.asarray(picks, dtype=np.int64)])
        assert len(np.unique(labeled)) == len(labeled) == stop, "a strategy repeated an item"
        model = Student(pool.n_classes, args.C).fit(pool.x[labeled], pool.y[labeled])
        probs = model.predict_proba(pool.x)
        f1 = f1_score(y_test, model.predict_proba(x_test).argmax(axis=1), average="macro")
        curve.append((stop, float(f1)))
        if stop in routing_at:
            routing[stop] = routing_figures(pool, labeled, model, args)
    return curve, routing


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (index included), floats to 3 decimals."""
    idx = [str(n) for n in df.index.names]
    head = "| " + " | ".join(idx + [str(c) for c in df.columns]) + " |"
    lines = [head, "|" + "---|" * (len(idx) + len(df.columns))]
    for key, row in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(k) for k in keys] + cells) + " |")
    return "\n".join(lines)


def labels_to_reach(curve: pd.Series, goal: float) -> float:
    hit = curve[curve >= goal]
    return float(hit.index[0]) if len(hit) else float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="CSV file: the pool (and test, without --test)")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--test", help="CSV test file; without it 20%% of --data is held out")
    ap.add_argument("--limit", type=int, help="subsample the pool to this many rows")
    ap.add_argument("--name", help="dataset name for output files (default: file stem)")
    ap.add_argument("--budgets", default="50,100,200,400,800")
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    ap.add_argument(
        "--cold-start", type=int, default=100, help="typiclust+margin: labels by TypiClust"
    )
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--features", choices=["auto", "minilm", "tfidf"], default="auto")
    ap.add_argument("--C", type=float, default=10.0, help="inverse regularisation of the student")
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--min-support", type=int, default=30)
    ap.add_argument(
        "--random-up-to",
        type=int,
        help="run random sampling on to this many labels (when it needs more than the budgets "
        "to reach the goal, so the ratio can still be measured)",
    )
    ap.add_argument("--routing-at", default="200,800", help="budgets at which to measure routing")
    args = ap.parse_args(argv)

    name = args.name or Path(args.data).stem
    pool_df, test = pool_and_test(args.data, args.test, args.text_col, args.label_col)
    if args.limit and args.limit < len(pool_df):
        pool_df = pool_df.sample(args.limit, random_state=0)
    classes, y_pool, y_test = encode_labels(pool_df, test, args.label_col)
    texts = pool_df[args.text_col].astype(str).tolist() + test[args.text_col].astype(str).tolist()
    x_all, feature_name = embed_cached(texts, args.features, name)
    x_pool, x_test = x_all[: len(pool_df)], x_all[len(pool_df) :]

    budgets = sorted(int(b) for b in args.budgets.split(","))
    routing_at = {int(b) for b in args.routing_at.split(",") if b}
    seeds = [int(s) for s in args.seeds.split(",")]
    strategies = make_strategies(args.cold_start)
    names = [s.strip() for s in args.strategies.split(",")]
    unknown = [s for s in names if s not in strategies]
    if unknown:
        sys.exit(f"--strategies: unknown {unknown}; known: {list(strategies)}")
    if "random" not in names:
        names.insert(0, "random")  # the baseline every ratio is measured against

    full = Student(len(classes), args.C).fit(x_pool, y_pool)
    full_f1 = f1_score(y_test, full.predict_proba(x_test).argmax(axis=1), average="macro")
    goal = 0.95 * full_f1
    print(
        f"# {name}: pool {len(y_pool)}, test {len(y_test)}, {len(classes)} classes, "
        f"features {feature_name}, student LogisticRegression(C={args.C}), "
        f"batch {args.batch_size}, seeds {seeds}"
    )
    print(f"fully supervised macro-F1 {full_f1:.4f}; goal (95%) {goal:.4f}")

    rows, route_rows = [], []
    for strategy in names:
        t0 = time.perf_counter()
        for seed in seeds:
            pool = Pool(x_pool, y_pool, len(classes), args.C, seed)
            stops = budgets
            if strategy == "random" and args.random_up_to and args.random_up_to > max(budgets):
                stops = budgets + [args.random_up_to]
            curve, routing = run_one(
                pool, x_test, y_test, strategies[strategy], stops, routing_at, args
            )
            rows += [(strategy, seed, n, f1) for n, f1 in curve]
            route_rows += [
                {"strategy": strategy, "seed": seed, "labels": n, **r} for n, r in routing.items()
            ]
        print(f"  {strategy}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    res = pd.DataFrame(rows, columns=["strategy", "seed", "labels", "macro_f1"])
    OUT.mkdir(parents=True, exist_ok=True)
    res.to_csv(OUT / f"active_{name}.csv", index=False)
    mean = res.groupby(["strategy", "labels"]).macro_f1.mean().unstack("strategy")[names]

    print(f"\n## macro-F1 by labels (mean of {len(seeds)} seeds)")
    print(markdown(mean.loc[budgets].T))
    need = {s: labels_to_reach(mean[s], goal) for s in names}
    max_random = int(mean["random"].dropna().index.max())
    print(f"\n## labels to reach 95% of full macro-F1 ({goal:.3f}); ratio to random")
    print("| strategy | labels | ratio to random |\n|---|---|---|")
    for s in names:
        ratio = need[s] / need["random"] if np.isfinite(need["random"]) else float("nan")
        top = max_random if s == "random" else max(budgets)
        shown = f"{need[s]:.0f}" if np.isfinite(need[s]) else f"> {top}"
        if not np.isfinite(need["random"]) and np.isfinite(need[s]):
            note = f"< {need[s] / max_random:.2f} (random did not reach it)"
        else:
            note = f"{ratio:.2f}" if np.isfinite(ratio) else "n/a"
        print(f"| {s} | {shown} | {note} |")

    if route_rows:
        rr = pd.DataFrame(route_rows)
        rr.to_csv(OUT / f"active_{name}_routing.csv", index=False)
        summary = rr.groupby(["strategy", "labels"]).agg(
            auto_precision=("auto_precision", "mean"),
            auto_precision_min=("auto_precision", "min"),
            worst_label=("worst_label_precision", "min"),
            auto_share=("auto_share", "mean"),
            labels_auto=("labels_auto", "mean"),
            calibrators=("calibrator", lambda c: ",".join(sorted(set(c)))),
        )
        print(
            f"\n## routing at target {args.target} (alpha {args.alpha}, min support "
            f"{args.min_support}): precision measured on the auto-accepted rest of the pool"
        )
        print(markdown(summary))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in names:
        ax.plot(mean.index, mean[s], label=s, lw=2 if s == "random" else 1.3)
    ax.axhline(goal, color="grey", ls="--", lw=1, label="95% of full supervision")
    ax.axhline(full_f1, color="black", ls=":", lw=1, label="full supervision")
    ax.set(xlabel="human labels", ylabel="test macro-F1", title=f"{name} ({feature_name} + LR)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / f"active_{name}.png", dpi=120)
    print(f"\nwrote {OUT / f'active_{name}.png'} and {OUT / f'active_{name}.csv'}")


if __name__ == "__main__":
    main()
