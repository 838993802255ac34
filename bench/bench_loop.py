"""How long a retrain takes, and how long a reviewer waits for the next item meanwhile.

    python bench/bench_loop.py --data ../shared/data/banking77/train.csv --label-col category --labels 1000,10000

For each size N: a project with the dataset's items, the first N of them labeled by people
(written straight to the store), embeddings computed once beforehand (cached in the store,
timed separately), then ``FeedbackLoop.retrain()`` is timed. During a second retrain a
simulated reviewer keeps taking and answering items; the p50/p99 of its next-item + submit
step is compared with the same step measured with no retrain running (same run).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))] if xs else float("nan")


def label_first(p, n: int) -> None:
    """Write n human labels (the dataset's own, on a random sample) straight to the store."""
    from labelloop.store.labels import set_final_labels
    from labelloop.store.models import HumanLabelRow, utcnow

    items = p.items().sample(n=n, random_state=0)  # files are often sorted by label
    field = p.config.label_field
    with p.db.engine.begin() as conn:
        conn.execute(
            HumanLabelRow.__table__.insert(),
            [
                {
                    "item_id": int(i),
                    "annotator": "bench",
                    "labels": [m[field]],
                    "action": "label",
                    "time_spent_ms": None,
                    "created_at": utcnow(),
                }
                for i, m in zip(items["id"], items["meta"], strict=True)
            ],
        )
        set_final_labels(
            conn,
            [
                {
                    "project_id": p.id,
                    "item_id": int(i),
                    "labels": [m[field]],
                    "source_kind": "human",
                    "source_name": "bench",
                    "source_version": None,
                    "confidence": None,
                }
                for i, m in zip(items["id"], items["meta"], strict=True)
            ],
        )


def reviewer_steps(
    p, gold: dict[str, str], stop: threading.Event, out: list[float], limit: int
) -> None:
    while not stop.is_set() and len(out) < limit:
        t = time.perf_counter()
        item = p.next_item("reviewer")
        if item is None:
            return
        p.submit(item["id"], [gold[item["content"]]], annotator="reviewer")
        out.append((time.perf_counter() - t) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", required=True)
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--labels", default="1000,10000", help="human-label counts to time")
    args = ap.parse_args()

    from labelloop.annotate.feedback import FeedbackLoop
    from labelloop.project import Project
    from labelloop.store.db import background_writer

    df = pd.read_csv(args.data)[[args.text_col, args.label_col]].dropna()
    df.columns = ["text", "label"]
    df = df.drop_duplicates("text")
    names = sorted(df["label"].unique())
    gold = dict(zip(df["text"], df["label"], strict=True))
    for n in [int(x) for x in args.labels.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="labelloop-loop-bench-"))
        try:
            data = work / "data.csv"
            df.to_csv(data, index=False)
            p = Project.init(work / "p", name="loop-bench", labels=names, label_field="label")
            p.ingest(data)
            loop = FeedbackLoop(p, retrain_every=10**9, flag_label_issues=True)
            t = time.perf_counter()
            loop.embedder.embed(list(p.items()["content"]))
            embed_s = time.perf_counter() - t
            loop.retrain()  # suggest + route everything once, so queue and suggestions exist
            n_human = min(n, len(df) - 300)  # keep items in the queue for the reviewer
            label_first(p, n_human)

            quiet: list[float] = []
            reviewer_steps(p, gold, threading.Event(), quiet, 40)

            t = time.perf_counter()
            loop.retrain()
            retrain_s = time.perf_counter() - t

            busy: list[float] = []
            stop = threading.Event()
            th = threading.Thread(target=reviewer_steps, args=(p, gold, stop, busy, 10**6))
            th.start()
            t = time.perf_counter()
            with background_writer():  # as the loop worker runs it: reviewers' writes first
                report = loop.retrain()
            busy_retrain_s = time.perf_counter() - t
            stop.set()
            th.join()
            print(
                f"{n_human:>6,} human labels on {len(df):,} items ({len(names)} labels): embedding all items "
                f"{embed_s:.1f} s (once, then cached); retrain {retrain_s:.1f} s "
                f"({busy_retrain_s:.1f} s with a reviewer working; student held-out macro-F1 "
                f"{report.held_out_macro_f1:.3f})"
            )
            print(
                f"        reviewer step (next + submit): quiet p50 {statistics.median(quiet):.1f} ms "
                f"p99 {pct(quiet, 0.99):.1f} ms | during retrain p50 {statistics.median(busy):.1f} ms "
                f"p99 {pct(busy, 0.99):.1f} ms, max {max(busy):.1f} ms over {len(busy)} steps"
            )
            p.close()
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
