"""The edge bundle on one core: per-item latency for short texts, and the bundle's size.

    python bench/bench_edge.py --items 500

A small SMS spam project (200 ham + 100 spam from the bundled demo data, seed 0, logistic
head on MiniLM vectors, no tuning) is trained and exported with ``export_edge``. Then, in
the same process pinned to one CPU (``os.sched_setaffinity``; onnxruntime with one thread),
``--items`` short texts (the held-out messages of at most ``--max-words`` words) are answered
one at a time, a batch of one, by:

* the edge runtime's model alone (``EdgeAnnotator.predict_proba``: tokenize, embed, head);
* the edge runtime with its SQLite buffer (``EdgeAnnotator.annotate``: the above plus one
  committed insert);
* the server-side ``Predictor.predict_frame`` (the same embedder, the sklearn pipeline).

Each after ``--warmup`` untimed calls. Prints p50 / p99 milliseconds and the bundle's size
(the sum of its files, MB = 10^6 bytes). Targets (issue 14): < 10 ms per short text, < 30 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SMS = Path(__file__).resolve().parents[1] / "src" / "labelloop" / "demo" / "data" / "sms_spam.csv"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn, texts: list[str], warmup: int) -> list[float]:  # noqa: ANN001
    for t in texts[:warmup]:
        fn([t])
    out = []
    for t in texts:
        start = time.perf_counter()
        fn([t])
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--max-words", type=int, default=20)
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: first)")
    args = parser.parse_args()

    from labelloop.edge import EdgeAnnotator
    from labelloop.mlops.predictor import Predictor
    from labelloop.project import Project
    from labelloop.serve.edge_export import export_edge

    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    raw = pd.read_csv(SMS).drop_duplicates("text")
    train = pd.concat(
        [
            raw[raw["label"] == "ham"].sample(200, random_state=0),
            raw[raw["label"] == "spam"].sample(100, random_state=0),
        ]
    )
    rest = raw.drop(train.index)
    short = rest[rest["text"].str.split().str.len() <= args.max_words]["text"]
    texts = short.sample(min(args.items, len(short)), random_state=0).tolist()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        csv = tmp / "sms.csv"
        train.to_csv(csv, index=False)
        p = Project.init(
            tmp / "proj", name="sms", labels=["ham", "spam"], storage=f"sqlite:///{tmp / 's.db'}"
        )
        try:
            p.ingest(csv)
            items = p.items()
            by_text = dict(zip(train["text"], train["label"], strict=False))
            for item_id, content in zip(items["id"], items["content"], strict=True):
                p.label(int(item_id), [by_text[content]], annotator="ana")
            result = p.train(register=False, candidates=["logistic"], trials=0, folds=3)
        finally:
            p.close()
        manifest = export_edge(result.model_path, tmp / "bundle", labels=["ham", "spam"])
        size_mb = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
        predictor = Predictor.load(result.model_path)
        with EdgeAnnotator(tmp / "bundle", tmp / "results.sqlite") as edge:
            figures = {
                "edge model (predict_proba)": timed(edge.predict_proba, texts, args.warmup),
                "edge annotate (+ SQLite buffer)": timed(edge.annotate, texts, args.warmup),
                "server Predictor.predict_frame": timed(
                    predictor.predict_frame, texts, args.warmup
                ),
            }
    words = statistics.median(len(t.split()) for t in texts)
    print(f"command: python bench/bench_edge.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"{len(texts)} short texts (<= {args.max_words} words, median {words:.0f}), batch of "
        f"one, 1 CPU, onnxruntime 1 thread; head: {result.winner}"
    )
    for name, ms in figures.items():
        print(
            f"  {name:34s} p50 {percentile(ms, 0.5):6.2f} ms   p99 {percentile(ms, 0.99):6.2f} ms"
        )
    print(f"bundle size: {size_mb:.1f} MB ({len(manifest['files'])} files)")
    for name, entry in sorted(manifest["files"].items()):
        print(f"  {name:18s} {entry['bytes'] / 1e6:8.3f} MB")


if __name__ == "__main__":
    main()
