"""Throughput of the LLM labeler against a local llama.cpp server, and what its cache saves.

Starts ``python -m llama_cpp.server`` with the bundled SmolLM2-135M GGUF on loopback, then:
1. labels N texts at concurrency 1, 4 and 8 (items/s; ratio against concurrency 1);
2. labels a file with 10% duplicate rows, with the cache and in-batch dedup against the same rows
   made unique (items/s, requests saved), then the same file again with a warm cache;
3. the in-process client's label scoring (exact constrained-decoding probabilities) on the same
   N texts: zero-shot, with contextual calibration, and with the k most similar human-labeled
   examples (MiniLM) as few-shot turns.

Example:
    .venv/bin/python bench/bench_llm.py --data /work/shared/data/sms_spam/sms_spam.csv \
        --text-col text --label-col label --n 48
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_server import LlamaServer  # noqa: E402

from labelloop.core.hashing import content_hash  # noqa: E402
from labelloop.core.types import Item  # noqa: E402
from labelloop.labelers.llm import (  # noqa: E402
    FewShotPool,
    LlamaCppClient,
    LLMLabeler,
    OpenAICompatClient,
    default_model_path,
)


def make_items(texts: list[str], salt: str = "", unique_rows: bool = False) -> list[Item]:
    """Items for ``texts``; ``unique_rows`` gives every row its own hash (defeats dedup)."""
    return [
        Item(t, content_hash(f"{t}|{salt}|{i if unique_rows else ''}"), i)
        for i, t in enumerate(texts)
    ]


def run(labeler: LLMLabeler, items: list[Item]) -> tuple[float, list]:
    start = time.perf_counter()
    out = labeler.suggest(items)
    return time.perf_counter() - start, out


def accuracy(out, gold: list[str] | None) -> str:
    if gold is None:
        return "-"
    ok = [s for s in out if s.status == "ok"]
    hits = sum(s.top_label == g for s, g in zip(out, gold, strict=True) if s.status == "ok")
    return f"{hits / max(1, len(ok)):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="CSV file with a text column")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default=None, help="gold labels (for an accuracy column)")
    ap.add_argument("--labels", default=None, help="comma-separated taxonomy (default: label col)")
    ap.add_argument("--n", type=int, default=48, help="items per run")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--dup-rate", type=float, default=0.10)
    ap.add_argument("--server-threads", type=int, default=1, help="llama.cpp server --n_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; best is kept")
    ap.add_argument("--pool", type=int, default=200, help="labeled rows for the few-shot pool")
    ap.add_argument("--shots", default="2,4", help="few-shot counts to compare (in-process)")
    args = ap.parse_args()
    args.shots = [int(k) for k in args.shots.split(",") if k]

    df = pd.read_csv(args.data)
    for col in [args.text_col, args.label_col]:
        if col and col not in df.columns:
            sys.exit(f"{args.data}: no column {col!r} (columns: {', '.join(df.columns)})")
    df = df.drop_duplicates(args.text_col).sample(frac=1.0, random_state=args.seed)
    sample = df.head(args.n)
    texts = sample[args.text_col].astype(str).tolist()
    gold = sample[args.label_col].astype(str).tolist() if args.label_col else None
    if args.labels:
        labels = args.labels.split(",")
    elif args.label_col:
        labels = sorted(df[args.label_col].astype(str).unique())
    else:
        sys.exit("give --labels or --label-col")

    gguf = default_model_path()
    print(f"model {gguf.name}; {len(texts)} items; labels {labels}; server threads "
          f"{args.server_threads}")  # fmt: skip
    server = LlamaServer(gguf, n_threads=args.server_threads).wait_ready()
    try:
        client = OpenAICompatClient.for_llama_cpp_server(server.url, "smollm2")
        run(LLMLabeler(client, labels), make_items(texts[:2], salt="warmup"))

        print("\n1. throughput against the llama.cpp server (confidence from logprobs)")
        print(f"   best of {args.repeats} interleaved rounds (the machine is shared and noisy)")
        print(f"{'concurrency':>11} {'seconds':>8} {'items/s':>8} {'x conc=1':>9} "
              f"{'ok':>4} {'acc':>5}")  # fmt: skip
        levels = [int(c) for c in args.concurrency.split(",")]
        best: dict[int, tuple[float, list]] = {}
        for rnd in range(args.repeats):
            for conc in levels:
                labeler = LLMLabeler(client, labels, concurrency=conc, timeout_s=120)
                secs, out = run(labeler, make_items(texts, salt=f"c{conc}r{rnd}"))
                if conc not in best or secs < best[conc][0]:
                    best[conc] = (secs, out)
        base = len(texts) / best[levels[0]][0]
        for conc in levels:
            secs, out = best[conc]
            rate = len(texts) / secs
            ok = sum(s.status == "ok" for s in out)
            print(f"{conc:>11} {secs:>8.1f} {rate:>8.2f} {rate / base:>9.2f} {ok:>4} "
                  f"{accuracy(out, gold):>5}")  # fmt: skip

        print(f"\n2. a file with {args.dup_rate:.0%} duplicate rows (concurrency 4, best of "
              f"{args.repeats} interleaved rounds)")  # fmt: skip
        rng = random.Random(args.seed)
        n_dup = round(len(texts) * args.dup_rate)
        uniq = texts[: len(texts) - n_dup]
        dup_file = uniq + [rng.choice(uniq) for _ in range(n_dup)]
        rng.shuffle(dup_file)
        print(f"{'run':>28} {'seconds':>8} {'items/s':>8} {'requests':>9} {'x baseline':>11}")
        b_secs = c_secs = float("inf")
        for rnd in range(args.repeats):
            baseline = LLMLabeler(client, labels, concurrency=4, timeout_s=120)
            secs, _ = run(baseline, make_items(dup_file, f"nodedup{rnd}", unique_rows=True))
            b_secs, b_req = min(b_secs, secs), baseline.usage().requests
            cached = LLMLabeler(client, labels, concurrency=4, timeout_s=120)
            dup_items = make_items(dup_file, salt=f"cache{rnd}")
            secs, _ = run(cached, dup_items)
            c_secs, c_req = min(c_secs, secs), cached.usage().requests
        b_rate, c_rate = len(dup_file) / b_secs, len(dup_file) / c_secs
        print(f"{'no cache (rows made unique)':>28} {b_secs:>8.1f} {b_rate:>8.2f} {b_req:>9} "
              f"{1.0:>11.2f}")  # fmt: skip
        print(f"{'cache, cold':>28} {c_secs:>8.1f} {c_rate:>8.2f} {c_req:>9} "
              f"{c_rate / b_rate:>11.2f}")  # fmt: skip
        secs, _ = run(cached, dup_items)
        w_rate, w_req = len(dup_file) / secs, cached.usage().requests - c_req
        print(f"{'cache, warm (second pass)':>28} {secs:>8.3f} {w_rate:>8.0f} {w_req:>9} "
              f"{w_rate / b_rate:>11.0f}")  # fmt: skip
        print(f"requests saved by the cold cache: {b_req - c_req} of {b_req} "
              f"({(b_req - c_req) / b_req:.0%})")  # fmt: skip
    finally:
        server.stop()

    print("\n3. in-process llama-cpp-python, label scoring (no server)")
    local = LlamaCppClient(gguf, n_threads=args.server_threads)
    run(LLMLabeler(local, labels), make_items(texts[:2], salt="warmup"))
    pool, embedder = None, None
    if args.label_col:
        from labelloop.embed.onnx_minilm import MiniLMEmbedder

        embedder = MiniLMEmbedder()
        pool_rows = df.iloc[args.n : args.n + args.pool]
        pool = FewShotPool()
        pool_texts = pool_rows[args.text_col].astype(str).tolist()
        pool.add(pool_texts, pool_rows[args.label_col].astype(str).tolist(),
                 embedder.embed(pool_texts))  # fmt: skip
    print(f"{'setting':>36} {'items/s':>8} {'acc':>5} {'tokens/item':>12}")
    settings = [("zero-shot", 0, False), ("zero-shot + calibration", 0, True)]
    if pool is not None:
        settings += [(f"{k} nearest human-labeled examples", k, False) for k in args.shots]
    for name, shots, calibrate in settings:
        labeler = LLMLabeler(
            local, labels, calibrate=calibrate, n_shots=shots,
            fewshot=pool if shots else None, embedder=embedder if shots else None,
        )  # fmt: skip
        secs, out = run(labeler, make_items(texts, salt=f"local{name}"))
        per_item = labeler.usage().input_tokens / len(texts)
        print(f"{name:>36} {len(texts) / secs:>8.2f} {accuracy(out, gold):>5} {per_item:>12.0f}")
    print(f"(few-shot pool: {args.pool} labeled rows disjoint from the {len(texts)} test rows)")


if __name__ == "__main__":
    main()
