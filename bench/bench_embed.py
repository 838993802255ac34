"""Embedding throughput of MiniLMEmbedder against the bare onnxruntime session (the ceiling).

The ceiling runs the same session on the same pre-tokenised, pre-padded batches, so the ratio
shows what tokenising, padding, pooling and normalising cost on top of the model itself. It also
compares length-sorted with unsorted batching. Runs are interleaved slice by slice and repeated;
the best of the repeats is reported (the least disturbed by other processes on a shared machine),
with emb per CPU-second of this process beside it (less sensitive to other processes).

    .venv/bin/python bench/bench_embed.py --data /work/shared/data/sms_spam/sms_spam.csv \
        --column text --n 1000 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import pandas as pd

from labelloop.embed import MiniLMEmbedder


def load_texts(path: str, column: str, n: int) -> list[str]:
    frame = pd.read_csv(path)
    if column not in frame.columns:
        raise SystemExit(f"{path}: no column {column!r}; columns are {list(frame.columns)}")
    texts = frame[column].dropna().astype(str).tolist()
    if not texts:
        raise SystemExit(f"{path}: column {column!r} is empty")
    return (texts * (n // len(texts) + 1))[:n]


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) that ``run`` took."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def variants_for(
    texts: list[str], threads: int, batch_size: int
) -> dict[str, Callable[[], object]]:
    sorted_embedder = MiniLMEmbedder(batch_size=batch_size, intra_op_num_threads=threads)
    unsorted_embedder = MiniLMEmbedder(
        batch_size=batch_size, intra_op_num_threads=threads, sort_by_length=False
    )
    sorted_batches = [inputs for _, inputs in sorted_embedder.batches(texts)]
    unsorted_batches = [inputs for _, inputs in unsorted_embedder.batches(texts)]
    session = sorted_embedder.session  # same session, same thread pool: a like-for-like ceiling

    def raw(batches: list[dict]) -> Callable[[], None]:
        return lambda: [session.run(None, inputs) for inputs in batches]

    return {
        CEILING: raw(sorted_batches),
        EMBEDDER: lambda: sorted_embedder.embed(texts),
        "raw session, unsorted batches": raw(unsorted_batches),
        UNSORTED: lambda: unsorted_embedder.embed(texts),
    }


CEILING = "raw session, sorted batches (ceiling)"
EMBEDDER = "MiniLMEmbedder, sorted"
UNSORTED = "MiniLMEmbedder, unsorted"


def bench(
    texts: list[str], threads: int, batch_size: int, repeats: int, slices: int
) -> dict[str, list[tuple[float, float]]]:
    """(wall emb/s, emb per CPU second) of each variant, one pair per repeat.

    The texts are cut into ``slices``; each slice runs every variant back to back (in rotating
    order), so that all variants see the same spells of load from other processes.
    """
    size = -(-len(texts) // slices)
    parts = [texts[start : start + size] for start in range(0, len(texts), size)]
    per_part = [variants_for(part, threads, batch_size) for part in parts]
    names = list(per_part[0])
    per_part[0][EMBEDDER]()  # warm up
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for _ in range(repeats):
        wall = dict.fromkeys(names, 0.0)
        cpu = dict.fromkeys(names, 0.0)
        for index, variants in enumerate(per_part):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                seconds, cpu_seconds = timed(variants[name])
                wall[name] += seconds
                cpu[name] += cpu_seconds
        for name in names:
            rates[name].append((len(texts) / wall[name], len(texts) / cpu[name]))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV file with the texts")
    parser.add_argument("--column", default="text", help="column holding the texts")
    parser.add_argument("--n", type=int, default=1000, help="texts to embed (cycled if fewer)")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts, comma-separated")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=5, help="interleaving slices per repeat")
    args = parser.parse_args()

    texts = load_texts(args.data, args.column, args.n)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"{len(texts)} texts from {args.data}:{args.column} (mean {mean_chars:.0f} chars), "
        f"batch {args.batch_size}, best and median of {args.repeats}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for threads in (int(t) for t in args.threads.split(",")):
        rates = bench(texts, threads, args.batch_size, args.repeats, args.slices)
        best = {name: max(wall for wall, _ in values) for name, values in rates.items()}
        per_cpu = {name: max(cpu for _, cpu in values) for name, values in rates.items()}
        print(f"\nintra_op_num_threads={threads}   (wall emb/s: best, median | emb per CPU-s)")
        for name, values in rates.items():
            median = statistics.median(wall for wall, _ in values)
            print(f"  {name:<38} {best[name]:7.1f} {median:7.1f} | {per_cpu[name]:7.1f}")
        print(
            f"  ratio MiniLMEmbedder / ceiling: {best[EMBEDDER] / best[CEILING]:.3f} wall, "
            f"{per_cpu[EMBEDDER] / per_cpu[CEILING]:.3f} CPU  (target >= 0.9)"
        )
        print(
            f"  ratio sorted / unsorted batching (MiniLMEmbedder): "
            f"{best[EMBEDDER] / best[UNSORTED]:.2f}x wall, "
            f"{per_cpu[EMBEDDER] / per_cpu[UNSORTED]:.2f}x CPU"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
