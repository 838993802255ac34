"""Bulk annotation throughput (issue 13, item 3): the labelers alone, the local process pool and
Ray, on the same file and the same frozen rule.

Builds an SMS spam project with 120 human labels (a student, calibrator and thresholds), then
labels N other SMS texts from a Parquet file:

- ceiling: the labelers in this process (``BlockLabeler``, loaded once, not timed), no I/O;
- local engine with 1 and 2 worker processes (``annotate_file(engine="local")``);
- Ray engine on a local Ray with 1 and 2 CPUs (one actor per CPU).

Engine times are wall clock of the whole call as a user sees it: reading the file, starting
the pool (and Ray), loading the models in each worker, labeling, writing the blocks. Prints
items/s, items per CPU-hour and Ray's overhead against the local engine with as many workers.

    .venv/bin/python bench/bench_bulk.py --rows 5000 --block-rows 500
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from _sms import sms_project  # bench/_sms.py

from labelloop.workers.bulk import BlockLabeler, annotate_file, read_output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--block-rows", type=int, default=500)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench_bulk_"))
    try:
        p, rest = sms_project(base)
        texts = list(rest.text)
        while len(texts) < args.rows:  # the SMS set has ~5,100 distinct texts
            texts += [f"{t} ({len(texts)})" for t in rest.text][: args.rows - len(texts)]
        bulk = pd.DataFrame({"id": range(args.rows), "text": texts[: args.rows]})
        data = base / "bulk.parquet"
        bulk.to_parquet(data, index=False)
        results: list[tuple[str, int, float]] = []

        # Ceiling: one rule, the labelers in-process, models already loaded.
        out0 = base / "out-rule"
        annotate_file(p.ctx, data, out0, workers=0, block_rows=args.rows)  # freezes the rule
        import joblib

        labeler = BlockLabeler(joblib.load(out0 / "rule.joblib"))
        labeler(bulk.head(64), 0)  # warm-up
        t0 = time.perf_counter()
        for start in range(0, args.rows, args.block_rows):
            labeler(bulk.iloc[start : start + args.block_rows], start)
        results.append(("labelers in-process (ceiling)", 1, time.perf_counter() - t0))

        reference = None
        runs = [("local", 1), ("local", 2)]
        if not args.skip_ray:
            runs += [("ray", 1), ("ray", 2)]
        for engine, n in runs:
            out = base / f"out-{engine}-{n}"
            t0 = time.perf_counter()
            annotate_file(p.ctx, data, out, engine=engine, workers=n, block_rows=args.block_rows)
            results.append(
                (
                    f"{engine} engine, {n} {'CPUs' if engine == 'ray' else 'workers'}",
                    n,
                    time.perf_counter() - t0,
                )
            )
            decisions = read_output(out)[["row", "label", "decision"]]
            if reference is None:
                reference = decisions
            elif not decisions.equals(reference):
                raise SystemExit(f"{engine} x{n}: decisions differ from local x1")
        p.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"\n{args.rows:,} SMS texts, blocks of {args.block_rows}; decisions identical across runs\n"
    )
    print(
        f"| {'run':<32} | {'CPUs':>4} | {'seconds':>7} | {'items/s':>7} | {'items per CPU-hour':>18} |"
    )
    print(f"|{'-' * 34}|{'-' * 6}:|{'-' * 8}:|{'-' * 8}:|{'-' * 19}:|")
    rate: dict[str, float] = {}
    for name, cpus, seconds in results:
        per_s = args.rows / seconds
        rate[name] = per_s
        print(
            f"| {name:<32} | {cpus:>4} | {seconds:>7.1f} | {per_s:>7.0f} | {per_s * 3600 / cpus:>18,.0f} |"
        )
    for n in (1, 2):
        ray = rate.get(f"ray engine, {n} CPUs")
        local = rate.get(f"local engine, {n} workers")
        if ray and local:
            print(
                f"Ray overhead at {n} CPU(s): {local / ray - 1:+.0%} time against the local engine"
            )


if __name__ == "__main__":
    main()
