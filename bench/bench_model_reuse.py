"""What reusing the stored model version saves a `labelloop suggest` (issue 9).

    python bench/bench_model_reuse.py --items 10000 --labels 500

A fresh project in a temp folder with the 77 banking77 labels (``categories.json``) and the
dataset's texts only (train.csv, then test.csv for the rest, shuffled with seed 0): ``--labels``
items are labeled by "bench" through ``Project.label`` with the dataset's own label, and
``--items`` other items are left new. The embedding cache is warmed first for every item (timed
on its own), so both runs below read the same cached vectors and compare model work only.

Then, ``--repeats`` times, on the same ``--items`` new items (reset to state new, their
suggestions deleted, between runs):

* refit: ``suggest`` when no stored model version matches the labels: ``current_labelers`` fits
  the labelers (zero-shot, student, ensemble, with their out-of-fold predictions), stores them
  as a model version, then the items are suggested;
* reuse: the same ``suggest`` with that model version in the store: it is loaded instead.

Both call ``labelloop.annotate.suggest.suggest(ctx, embedder=...)``, the function behind
``labelloop suggest`` and ``Project.suggest``, with one warm embedder. The order alternates
between repeats. Also timed alone: ``build_labelers`` (the fit), ``store_labelers`` (dump and
write), and ``current_labelers`` with the version stored (read labels, key, load). Medians.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "banking77"


def load_pool(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """banking77 texts with their labels (train then test, distinct texts, shuffled) and the
    77 label names."""
    frames = [pd.read_csv(folder / name) for name in ("train.csv", "test.csv")]
    df = pd.concat(frames)[["text", "category"]].dropna().drop_duplicates("text")
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    names = json.loads((folder / "categories.json").read_text())
    return df, list(names)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=10_000, help="new items to suggest for")
    ap.add_argument("--labels", type=int, default=500, help="human labels given beforehand")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA, help="the banking77 folder")
    args = ap.parse_args()

    from sqlalchemy import text

    from labelloop.annotate.suggest import suggest
    from labelloop.embed.factory import project_embedder
    from labelloop.labelers.factory import (
        MODEL_KIND,
        build_labelers,
        current_labelers,
        human_set,
        store_labelers,
        training_key,
    )
    from labelloop.project import Project
    from labelloop.store.loop_state import latest_model_version

    df, names = load_pool(args.data)
    if args.items + args.labels > len(df):
        raise SystemExit(f"banking77 has {len(df):,} distinct texts; ask for fewer")
    labeled, new = df.iloc[: args.labels], df.iloc[args.labels : args.labels + args.items]

    work = Path(tempfile.mkdtemp(prefix="labelloop-reuse-bench-"))
    try:
        pd.concat([labeled, new])[["text"]].to_csv(work / "items.csv", index=False)
        p = Project.init(work / "p", name="reuse-bench", labels=names)
        p.ingest(work / "items.csv")
        items = p.items()
        id_of = dict(zip(items["content"], items["id"], strict=True))
        for t, label in zip(labeled["text"], labeled["category"], strict=True):
            p.label(int(id_of[t]), [label], annotator="bench")
        ctx = p.ctx

        emb = project_embedder(ctx)
        t0 = time.perf_counter()
        emb.embed(list(items["content"]))
        warm_s = time.perf_counter() - t0

        def reset() -> None:
            """The new items back to state new, without suggestions."""
            with p.db.engine.begin() as conn:
                conn.execute(text("DELETE FROM suggestions"))
                conn.execute(text("UPDATE items SET state = 'new' WHERE state = 'suggested'"))

        def drop_models() -> None:
            with p.db.engine.begin() as conn:
                conn.execute(text("DELETE FROM model_versions"))

        def timed_suggest(expect_trained: bool) -> float:
            reset()
            t = time.perf_counter()
            r = suggest(ctx, embedder=emb)
            s = time.perf_counter() - t
            assert r.trained == expect_trained, (r.trained, expect_trained)
            assert r.items == args.items, r.items
            return s

        refit, reuse = [], []
        for rep in range(args.repeats):
            if rep % 2 == 0:
                drop_models()
                refit.append(timed_suggest(True))
                reuse.append(timed_suggest(False))
            else:
                reuse.append(timed_suggest(False))
                drop_models()
                refit.append(timed_suggest(True))
        stored = latest_model_version(ctx.db, ctx.id, MODEL_KIND, with_model=True)
        size = len(stored.model) if stored is not None and stored.model else 0

        fit, store, load = [], [], []
        humans = human_set(ctx, emb)
        key = training_key(ctx, humans, emb, "logreg")
        for _ in range(args.repeats):
            t = time.perf_counter()
            labelers = build_labelers(ctx, emb)
            fit.append(time.perf_counter() - t)
            drop_models()
            t = time.perf_counter()
            store_labelers(ctx, labelers, key, {"student_algorithm": "logreg"})
            store.append(time.perf_counter() - t)
            t = time.perf_counter()
            _, trained = current_labelers(ctx, emb)
            load.append(time.perf_counter() - t)
            assert not trained
        p.close()

        med = statistics.median
        print(
            f"banking77: {args.items:,} new items, {args.labels:,} human labels, "
            f"{len(names)} labels, SQLite; {args.repeats} repeats, medians"
        )
        print(
            f"embedding cache warmed first for all {len(items):,} items: {warm_s:.1f} s "
            "(both runs then read cached vectors)"
        )
        print(
            f"suggest, refit (fit + store labelers + suggest) {med(refit):7.2f} s  "
            f"[{', '.join(f'{x:.2f}' for x in refit)}]"
        )
        print(
            f"suggest, stored model reused (load + suggest)   {med(reuse):7.2f} s  "
            f"[{', '.join(f'{x:.2f}' for x in reuse)}]"
        )
        print(f"ratio refit / reuse                             {med(refit) / med(reuse):7.2f}x")
        print(f"fit alone (build_labelers)                      {med(fit):7.2f} s")
        print(f"store alone (dump + write the model version)    {med(store):7.2f} s")
        print(
            f"load alone (current_labelers, version stored)  {med(load):7.2f} s "
            f"(model version {size / 1e6:.1f} MB)"
        )
        print(f"suggest work without the labelers (reuse - load) ~{med(reuse) - med(load):.2f} s")
        print(
            "reproduce: .venv/bin/python bench/bench_model_reuse.py "
            f"--items {args.items} --labels {args.labels} --repeats {args.repeats}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
