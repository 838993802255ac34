"""Benchmark the cheap labelers: zero-shot, zero-shot + prototypes, student, ensemble, cascade.

For a labeled text set: N items play the human labels, a held-out test set is scored. Prints
accuracy, macro-F1 and ECE per labeler against a majority-class baseline measured in the same
run (ratios), saves an accuracy-vs-coverage PNG, and measures how many items a cascade sends to
the expensive labeler (the student is the cheap side; the zero-shot labeler with prototypes
stands in for the expensive LLM).

    python bench/bench_labelers.py --data /work/shared/data/banking77/train.csv \\
        --test /work/shared/data/banking77/test.csv --label-col category --n-train 770 --limit 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from labelloop.core.config import LabelSpec  # noqa: E402
from labelloop.core.hashing import content_hash  # noqa: E402
from labelloop.core.probs import (  # noqa: E402
    accuracy_coverage_curve,
    build_suggestions,
    expected_calibration_error,
)
from labelloop.core.types import Item, Suggestion  # noqa: E402
from labelloop.labelers.cascade import Cascade, CascadePolicy  # noqa: E402
from labelloop.labelers.ensemble import EnsembleLabeler  # noqa: E402
from labelloop.labelers.student import StudentLabeler  # noqa: E402
from labelloop.labelers.zeroshot import ZeroShotLabeler  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="CSV with texts and labels (the training pool)")
    p.add_argument("--test", help="CSV scored as the test set; default: a 20%% split of --data")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default="label")
    p.add_argument("--n-train", type=int, default=200, help="human labels the learners get")
    p.add_argument("--limit", type=int, default=2000, help="at most this many test items")
    p.add_argument(
        "--label-desc",
        action="append",
        default=[],
        metavar="LABEL=TEXT",
        help="a description of a label for the zero-shot labeler (repeatable, several per label)",
    )
    p.add_argument("--min-labels", type=int, default=50, help="cascade cold start threshold")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--out", default=str(Path(__file__).parent / "out"))
    return p.parse_args(argv)


def load(path: str, text_col: str, label_col: str) -> pd.DataFrame:
    df = pd.read_csv(path)
    for col in (text_col, label_col):
        if col not in df.columns:
            sys.exit(f"{path}: no column {col!r}; columns: {list(df.columns)}")
    df = df[[text_col, label_col]].dropna()
    return df.rename(columns={text_col: "text", label_col: "label"}).astype(str)


def label_specs(names: Sequence[str], descs: Sequence[str]) -> list[LabelSpec]:
    extra: dict[str, list[str]] = {n: [] for n in names}
    for d in descs:
        name, _, text = d.partition("=")
        if name not in extra:
            sys.exit(f"--label-desc {d!r}: unknown label {name!r}")
        extra[name].append(text)
    return [
        LabelSpec(name=n, description=extra[n][0] if extra[n] else "", examples=extra[n][1:])
        for n in names
    ]


def sample_train(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n items with every label present at least once when n allows (a human's first batch)."""
    first = df.groupby("label", sort=False).sample(1, random_state=int(rng.integers(1 << 31)))
    first = first.head(n)
    rest = df.drop(first.index)
    extra = rest.sample(max(0, n - len(first)), random_state=int(rng.integers(1 << 31)))
    return pd.concat([first, extra]).sample(frac=1.0, random_state=int(rng.integers(1 << 31)))


class Precomputed:
    """A labeler over precomputed probabilities, keyed by item id; counts the items it sees."""

    def __init__(self, labeler_id: str, P: np.ndarray, names: Sequence[str]) -> None:
        self.labeler_id, self.version, self.P, self.names = labeler_id, "bench", P, list(names)
        self.items_seen = 0

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        self.items_seen += len(items)
        P = self.P[[it.id for it in items]]
        return build_suggestions(items, P, self.names, "single_label", self.labeler_id, "b", 0, "p")


def scores(P: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred = P.argmax(axis=1)
    correct = pred == y
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.unique(y), zero_division=0)),
        "ece": expected_calibration_error(P.max(axis=1), correct),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    pool = load(args.data, args.text_col, args.label_col)
    if args.test:
        test = load(args.test, args.text_col, args.label_col)
    else:
        test = pool.sample(frac=0.2, random_state=args.seed)
        pool = pool.drop(test.index)
    if len(test) > args.limit:
        test = test.sample(args.limit, random_state=args.seed)
    names = sorted(set(pool["label"]) | set(test["label"]))
    index = {n: i for i, n in enumerate(names)}
    train = sample_train(pool, args.n_train, rng)
    y_train = train["label"].map(index).to_numpy()
    y_test = test["label"].map(index).to_numpy()
    dataset = Path(args.data).parent.name or Path(args.data).stem
    print(f"# {dataset}: {len(names)} labels, {len(train)} human labels, {len(test)} test items")

    try:
        from labelloop.embed.onnx_minilm import MiniLMEmbedder
    except ImportError as exc:
        sys.exit(f"the MiniLM embedder is not available yet ({exc}); nothing to benchmark")
    emb = MiniLMEmbedder(intra_op_num_threads=args.threads)
    t0 = time.perf_counter()
    X_train = emb.embed(train["text"].tolist())
    X_test = emb.embed(test["text"].tolist())
    t_embed = time.perf_counter() - t0
    n_emb = len(X_train) + len(X_test)
    print(f"embedding: {n_emb} texts in {t_embed:.1f}s ({n_emb / t_embed:.0f} emb/s)")

    specs = label_specs(names, args.label_desc)
    timings: dict[str, float] = {}
    probs: dict[str, np.ndarray] = {}

    prior = np.bincount(y_train, minlength=len(names)) + 1.0
    probs["majority (baseline)"] = np.tile(prior / prior.sum(), (len(y_test), 1))

    t0 = time.perf_counter()
    zs = ZeroShotLabeler(emb, specs)
    probs["zero-shot"] = zs.predict_proba(X_test)
    timings["zero-shot"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    zs_oof = zs.out_of_fold_proba(X_train, y_train)
    zs.add_examples(X_train, y_train)
    probs["zero-shot+proto"] = zs.predict_proba(X_test)
    timings["zero-shot+proto"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    st = StudentLabeler(names, embedder=emb).fit(X_train, y_train)
    probs["student"] = st.predict_proba(X_test)
    timings["student"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    st_oof = st.out_of_fold_proba(X_train, y_train)
    ens = EnsembleLabeler([zs, st], names, min_labels=30).fit(np.stack([zs_oof, st_oof]), y_train)
    probs["ensemble"] = ens.predict_proba(X_test)
    timings["ensemble"] = time.perf_counter() - t0
    print(f"ensemble weights: zero-shot+proto {ens.weights[0]:.2f}, student {ens.weights[1]:.2f}")

    base = scores(probs["majority (baseline)"], y_test)
    print(f"\n{'labeler':22} {'acc':>6} {'macroF1':>8} {'ECE':>6} {'acc/base':>8} {'s':>6}")
    results = {}
    for name, P in probs.items():
        s = scores(P, y_test)
        results[name] = s
        print(
            f"{name:22} {s['accuracy']:6.3f} {s['macro_f1']:8.3f} {s['ece']:6.3f} "
            f"{s['accuracy'] / base['accuracy']:8.2f} {timings.get(name, 0.0):6.2f}"
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, P in probs.items():
        if name.startswith("majority"):
            continue
        conf = P.max(axis=1)
        curve = accuracy_coverage_curve(conf, P.argmax(axis=1) == y_test, np.linspace(0, 1, 101))
        ax.plot(curve["coverage"], curve["accuracy"], label=name)
    ax.set_xlabel("coverage (share of items with confidence >= threshold)")
    ax.set_ylabel("accuracy on covered items")
    ax.set_title(f"{dataset}: {len(train)} human labels, {len(test)} test items")
    ax.grid(alpha=0.3)
    ax.legend()
    png = out / f"labelers_{dataset}_n{len(train)}.png"
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"\naccuracy-vs-coverage plot: {png}")

    # The cascade: student cheap, zero-shot+proto as the stand-in expensive labeler.
    items = [
        Item(content=t, content_hash=content_hash(t), id=i) for i, t in enumerate(test["text"])
    ]
    exp_acc = results["zero-shot+proto"]["accuracy"]
    cheap_acc = results["student"]["accuracy"]
    print(
        f"\ncascade (cheap=student acc {cheap_acc:.3f}, expensive stand-in=zero-shot+proto "
        f"acc {exp_acc:.3f}); n_human={len(train)}, cold start below {args.min_labels}"
    )
    print(
        f"{'conf<':>6} {'sent':>6} {'share':>6} {'saved':>6} {'acc':>6} {'acc/expensive':>13} "
        f"{'acc if expensive were right':>27}"
    )
    cheap_right = probs["student"].argmax(axis=1) == y_test
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        cheap = Precomputed("student", probs["student"], names)
        expensive = Precomputed("zeroshot", probs["zero-shot+proto"], names)
        policy = CascadePolicy(args.min_labels, threshold, 1.0)
        sugg, stats = Cascade(expensive, names, policy=policy, cheap=cheap).run(items, len(train))
        assert expensive.items_seen == stats["n_expensive"]
        acc = float(np.mean([index[s.top_label] == y for s, y in zip(sugg, y_test, strict=True)]))
        sent = np.array([s.labeler == "zeroshot" for s in sugg])
        oracle = float(np.mean(sent | cheap_right))
        print(
            f"{threshold:6.2f} {stats['n_expensive']:6d} {stats['expensive_share']:6.2f} "
            f"{stats['calls_saved']:6d} {acc:6.3f} {acc / exp_acc:13.2f} {oracle:27.3f}"
        )


if __name__ == "__main__":
    main()
