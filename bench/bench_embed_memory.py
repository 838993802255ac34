"""Peak memory and time of MiniLMEmbedder by batch shape: rows per batch, and a token budget.

Each setting runs in its own process (peak resident memory is per process) and embeds the same
texts in the pipeline's 1,024-item slices; the first setting is the baseline for the ratios.
Long texts padded into big batches make onnxruntime's attention buffers large: the token budget
(rows x padded length) keeps them small.

    .venv/bin/python bench/bench_embed_memory.py --data ../shared/data/sms_spam/sms_spam.csv \
        --column text --settings 64:0,16:0,64:2048,64:1024,64:512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = """
import json, sys, time
import pandas as pd
from labelloop.embed import MiniLMEmbedder
path, column, rows, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
texts = pd.read_csv(path)[column].dropna().astype(str).tolist()
e = MiniLMEmbedder(batch_size=rows, max_batch_tokens=budget or 10**9)
start = time.perf_counter()
for i in range(0, len(texts), 1024):
    e.embed(texts[i : i + 1024])
secs = time.perf_counter() - start
peak = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({"n": len(texts), "secs": secs, "peak_mb": peak / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--column", default="text")
    ap.add_argument(
        "--settings", default="64:0,16:0,64:2048,64:1024,64:512", help="rows:token budget (0: none)"
    )
    args = ap.parse_args()
    print(f"{'rows':>5} {'token budget':>13} {'emb/s':>7} {'ratio':>6} {'peak MB':>8} {'ratio':>6}")
    base = None
    for setting in args.settings.split(","):
        rows, budget = setting.split(":")
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.data, args.column, rows, budget],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rate = r["n"] / r["secs"]
        base = base or (rate, r["peak_mb"])
        print(
            f"{rows:>5} {budget if budget != '0' else 'none':>13} {rate:>7.1f} "
            f"{rate / base[0]:>6.2f} {r['peak_mb']:>8.0f} {r['peak_mb'] / base[1]:>6.2f}"
            f"   ({time.perf_counter() - started:.0f} s with start-up)"
        )


if __name__ == "__main__":
    main()
