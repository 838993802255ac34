"""Stream workers (issue 13, "Measured"): throughput of one and two workers against the
labelers alone, and end-to-end latency from ``POST /api/items`` to the published decision.

Builds an SMS spam project with 120 human labels (zero-shot + student ensemble, calibrator,
thresholds: the default labelers route), freezes its rule once, then on the real Redis:

- ceiling: the labelers alone in this process (``BlockLabeler`` of the frozen rule, models
  loaded beforehand, raw embedder, no store, no Redis) on the N texts in batches of
  ``--batch-size``, as the worker calls them;
- labelers + store: ``StreamWorker`` in this process on an ``InProcessSource`` /
  ``InProcessSink`` (ingest, embedding cache, decisions, suggestions; no Redis), with the
  seconds per stage from the worker's Prometheus histogram;
- one worker and two workers: ``labelloop stream-worker --until-idle`` subprocesses on a
  stream filled with N entries (XADD) beforehand. Sustained throughput is taken from the
  output stream's entry ids (Redis' publish times): items after each worker's first batch over
  the time from the end of that batch to the last publication, so process start, model
  loading and freezing the rule are left out, as they are from the ceiling;
- latency: the app under uvicorn in this process with ``LABELLOOP_ITEMS_REDIS`` set, one
  ``labelloop stream-worker`` subprocess, a paced producer doing one ``POST /api/items`` per
  item at ``--latency-share`` of the one-worker throughput, and the decisions read back from
  the output stream. Latency is the decision's publish time (its entry id, Redis' clock on this
  machine) minus the time just before the POST; measured at the default ``--max-wait-ms`` 200
  and at each ``--wait`` given. With ``--feed xadd`` (or ``both``) the producer XADDs to the
  input stream itself instead: the worker's latency without the app's share of the CPU.

Texts are SMS messages (short); the two-worker and latency runs use the same texts with a
marker appended (new content, so new items). Before each timed phase the bench waits for the
1-minute load average to fall under ``--quiet-load`` (at most ``--load-wait`` seconds in all)
and prints the load it started at. A PostgreSQL ``--storage`` URL names a server: a fresh
database is made on it and dropped afterwards.

    .venv/bin/python bench/bench_stream.py --items 3000 --latency-items 1000
    .venv/bin/python bench/bench_stream.py --storage postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
from _http import served  # bench/_http.py
from _sms import sms_project  # bench/_sms.py
from _stores import fresh_store  # bench/_stores.py

from labelloop.project import Project

LABELLOOP = str(Path(sys.executable).parent / "labelloop")
STAGES = ("read", "ingest", "label", "store", "publish")


# -- the machine's load ------------------------------------------------------------------------
class Quiet:
    """Waits for a quiet machine before each timed phase, within one budget for the run."""

    def __init__(self, threshold: float, budget_s: float) -> None:
        self.threshold = threshold
        self.left = budget_s

    def wait(self, phase: str) -> float:
        load = _load()
        while load > self.threshold and self.left > 0:
            time.sleep(min(30.0, self.left))
            self.left -= 30.0
            load = _load()
        print(f"# {phase}: load average (1 min) {load:.2f} at start", flush=True)
        return load


def _load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# -- the store and the project -----------------------------------------------------------------
def build_project(folder: Path, storage_url: str) -> tuple[Project, list[str]]:
    """The SMS project of ``bench/_sms.py`` on ``storage_url``, and the other texts shuffled."""
    p, rest = sms_project(folder, storage=storage_url)
    return p, list(rest.text.sample(frac=1.0, random_state=1))


def texts_for(base: list[str], n: int, marker: str) -> list[str]:
    """``n`` texts from ``base`` (repeated if short), each with ``marker`` appended unless
    it is empty: new content for each run, so new items and no embedding-cache hits."""
    out = [base[k % len(base)] for k in range(n)]
    if marker or n > len(base):
        out = [f"{t} [{marker}{k}]" for k, t in enumerate(out)]
    return out


# -- Redis helpers -----------------------------------------------------------------------------
def fill(client: Any, stream: str, texts: list[str], prefix: str) -> None:
    pipe = client.pipeline(transaction=False)
    for k, text in enumerate(texts):
        pipe.xadd(stream, {"external_id": f"{prefix}{k}", "text": text})
        if k % 1000 == 999:
            pipe.execute()
    pipe.execute()


def publish_times(client: Any, out: str) -> list[tuple[int, dict[str, Any]]]:
    """(publish time in ms, decision) of every entry of the output stream."""
    return [
        (int(i.split("-")[0]), json.loads(f["decision"]))
        for i, f in client.xrange(out)
        if "decision" in f
    ]


def sustained_rate(times_ms: list[int], first_batches: int, batch: int) -> float:
    """Items per second after the first batch of each worker: (N - workers x batch) over
    the time from the end of those first batches to the last publication."""
    ts = sorted(times_ms)
    skip = min(len(ts) - 1, first_batches * batch)
    span = (ts[-1] - ts[skip - 1]) / 1000
    return (len(ts) - skip) / span


def worker_cmd(
    folder: Path, redis_url: str, names: dict[str, str], *, batch: int, wait_ms: int, idle: bool
) -> list[str]:
    cmd = [
        LABELLOOP,
        "stream-worker",
        "--project",
        str(folder),
        "--redis",
        redis_url,
        "--stream",
        names["in"],
        "--group",
        names["group"],
        "--out-stream",
        names["out"],
        "--batch-size",
        str(batch),
        "--max-wait-ms",
        str(wait_ms),
        "--json",
    ]
    return [*cmd, "--until-idle"] if idle else cmd


def run_workers(
    n: int, folder: Path, client: Any, redis_url: str, names: dict[str, str], batch: int
) -> tuple[float, float, list[dict[str, Any]]]:
    """``n`` worker processes until the stream is idle: (sustained items/s, wall seconds,
    their reports)."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            worker_cmd(folder, redis_url, names, batch=batch, wait_ms=200, idle=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode:
            raise SystemExit(f"stream-worker failed ({proc.returncode}):\n{err[-3000:]}")
        reports.append(json.loads(out[out.index("{") :]))
    wall = time.perf_counter() - started
    times = [t for t, _ in publish_times(client, names["out"])]
    return sustained_rate(times, n, batch), wall, reports


# -- latency -----------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure_latency(
    p: Project,
    client: Any,
    redis_url: str,
    names: dict[str, str],
    texts: list[str],
    *,
    rate: float,
    batch: int,
    wait_ms: int,
    warmup: list[str],
    via: str = "post",
) -> dict[str, Any]:
    """POST each text at ``rate`` per second to the app (which puts it on the input stream),
    one worker deciding; latency = decision publish time - time before the POST. With
    ``via="xadd"`` the producer XADDs to the input stream itself (no app: the worker alone)."""
    import httpx

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user

    os.environ["LABELLOOP_ITEMS_REDIS"] = redis_url
    os.environ["LABELLOOP_ITEMS_STREAM"] = names["in"]
    user = f"admin-{uuid.uuid4().hex[:6]}"
    create_user(p.db, user, "admin", "bench-password-123")
    token = create_token(p.db, user)
    stack = ExitStack()  # the app stops after the worker, in the finally below
    port = stack.enter_context(served(create_app(p)))
    log = Path(p.folder) / f"worker-{names['in'].replace(':', '_')}.log"
    worker = subprocess.Popen(
        [*worker_cmd(p.folder, redis_url, names, batch=batch, wait_ms=wait_ms, idle=False)]
        + ["--log-json"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    tag = names["in"].rsplit(":", 2)[-2]  # external ids are the project's: one set per run
    sent: dict[str, float] = {}
    post_ms: list[float] = []
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ) as c:

            def post(external: str, text: str) -> None:
                t = time.time()
                sent[external] = t
                if via == "xadd":
                    client.xadd(names["in"], {"external_id": external, "text": text})
                else:
                    c.post(
                        "/api/items", json={"external_id": external, "fields": {"text": text}}
                    ).raise_for_status()
                post_ms.append((time.time() - t) * 1000)

            # Warm-up: the worker starts, loads its models and freezes the rule.
            for k, text in enumerate(warmup):
                post(f"{tag}w{k}", text)
            deadline = time.monotonic() + 300
            while client.xlen(names["out"]) < len(warmup):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"worker did not decide the warm-up:\n{log.read_text()[-3000:]}"
                    )
                time.sleep(0.1)
            post_ms.clear()
            # Paced producer.
            t0 = time.time()
            for k, text in enumerate(texts):
                pause = t0 + k / rate - time.time()
                if pause > 0:
                    time.sleep(pause)
                post(f"{tag}m{k}", text)
            offered = len(texts) / (time.time() - t0)
            deadline = time.monotonic() + 120
            while client.xlen(names["out"]) < len(warmup) + len(texts):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        stack.close()
    # The input entry's id is when the app put the item on the stream: it splits the latency
    # into the POST (validation, ingest, XADD) and the worker (wait, batch, publish).
    queued = {f["external_id"]: int(i.split("-")[0]) for i, f in client.xrange(names["in"])}
    measured = [
        (ms, d["external_id"])
        for ms, d in publish_times(client, names["out"])
        if str(d.get("external_id", "")).startswith(f"{tag}m")
    ]
    lat = [ms - sent[e] * 1000 for ms, e in measured]
    stages = batch_stages(log)
    in_worker = [ms - queued[e] for ms, e in measured]
    return {
        "via": via,
        "wait_ms": wait_ms,
        "n": len(lat),
        "offered": offered,
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "max": max(lat),
        "post_p50": pct(post_ms, 0.5),
        "worker_p50": pct(in_worker, 0.5),
        "worker_p99": pct(in_worker, 0.99),
        "stages": stages,
    }


def batch_stages(log: Path) -> str:
    """The worker's JSON log lines, summed up: mean batch size and mean ms per batch in each
    stage (``read`` is the micro-batch's gathering, waits included)."""
    batches = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "batch":
            batches.append(rec)
    batches = batches[1:]  # the first one loads the models and freezes the rule
    if not batches:
        return "no batch logged"
    size = statistics.mean(r["batch_size"] for r in batches)
    parts = [
        f"{s} {statistics.mean(1000 * r['seconds'].get(s, 0.0) for r in batches):.0f}"
        for s in STAGES
    ]
    return f"{len(batches)} batches of {size:.1f} on average; ms per batch: " + ", ".join(parts)


# -- the run -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=3000, help="items per throughput run")
    ap.add_argument("--latency-items", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--latency-share", type=float, default=0.5)
    ap.add_argument(
        "--wait", type=int, action="append", help="max-wait-ms values to time latency at"
    )
    ap.add_argument("--storage", default="sqlite", help="'sqlite', or a PostgreSQL server URL")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--quiet-load", type=float, default=1.5)
    ap.add_argument("--load-wait", type=float, default=600, help="seconds, for the whole run")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument(
        "--feed",
        choices=["post", "xadd", "both"],
        default="both",
        help="latency producer: POST /api/items to the app, XADD to the stream, or both",
    )
    args = ap.parse_args()

    from prometheus_client import REGISTRY

    from labelloop.workers.bulk import BlockLabeler, freeze_rule
    from labelloop.workers.stream import InProcessSink, InProcessSource, StreamWorker, redis_client

    quiet = Quiet(args.quiet_load, args.load_wait)
    client = redis_client(args.redis)
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    base = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    rows: list[tuple[str, int, float, str]] = []  # (run, workers, items/s, load)
    latency: list[dict[str, Any]] = []
    n, b = args.items, args.batch_size

    def names(run: str) -> dict[str, str]:
        return {k: f"{prefix}:{run}:{k}" for k in ("in", "group", "out")}

    try:
        with fresh_store(args.storage, base) as url:
            t = time.perf_counter()
            p, pool = build_project(base, url)
            rule = freeze_rule(p.ctx)  # trains and stores the model version the workers use
            print(
                f"# project built in {time.perf_counter() - t:.0f} s; store {p.db.dialect}, "
                f"model version {rule.model_version}, thresholds {rule.thresholds}",
                flush=True,
            )
            texts = texts_for(pool, n, "")

            # Ceiling: the labelers alone, as the worker calls them.
            labeler = BlockLabeler(rule)
            labeler(pd.DataFrame({"text": texts_for(pool, b, "warm")}), 0)
            load = quiet.wait("ceiling")
            t = time.perf_counter()
            for start in range(0, n, b):
                labeler(pd.DataFrame({"text": texts[start : start + b]}), 0)
            ceiling = n / (time.perf_counter() - t)
            rows.append(("labelers alone in-process (ceiling)", 1, ceiling, f"{load:.2f}"))
            # The floor under latency: one small batch's labeling time.
            floor = []
            for size in (1, 16):
                small = texts_for(pool, 128, f"floor{size}-")
                t = time.perf_counter()
                for start in range(0, len(small), size):
                    labeler(pd.DataFrame({"text": small[start : start + size]}), 0)
                floor.append(
                    f"{size}: {1000 * (time.perf_counter() - t) * size / len(small):.1f} ms"
                )
            print("# labelers alone, ms per batch of " + ", ".join(floor), flush=True)

            # Labelers + store, no Redis: the worker in this process.
            if not args.skip_inprocess:
                source, sink = InProcessSource(), InProcessSink()
                warm = StreamWorker(p.ctx, source, sink, batch_size=b)
                for k, text in enumerate(texts_for(pool, b, "warm-ip")):
                    source.put({"external_id": f"warm{k}", "text": text})
                warm.run(until_idle=True)  # freezes the rule, loads the models
                for k, text in enumerate(texts_for(pool, n, "ip")):
                    source.put({"external_id": f"ip{k}", "text": text})

                def stage_sums() -> dict[str, float]:
                    return {
                        s: REGISTRY.get_sample_value(
                            "labelloop_stream_stage_seconds_sum", {"stage": s}
                        )
                        or 0.0
                        for s in STAGES
                    }

                before = stage_sums()
                load = quiet.wait("labelers + store")
                t = time.perf_counter()
                warm.run(until_idle=True)
                rate = n / (time.perf_counter() - t)
                after = stage_sums()
                stages = ", ".join(f"{s} {1000 * (after[s] - before[s]) / n:.2f}" for s in STAGES)
                print(f"# labelers + store: ms per item by stage: {stages}", flush=True)
                rows.append(("worker in-process, no Redis", 1, rate, f"{load:.2f}"))

            # One and two worker processes on Redis.
            one = names("one")
            fill(client, one["in"], texts, "a")
            load = quiet.wait("one worker")
            rate1, wall1, rep = run_workers(1, p.folder, client, args.redis, one, b)
            assert sum(r["published"] for r in rep) == n, rep
            rows.append(("`stream-worker`, 1 process", 1, rate1, f"{load:.2f}"))
            print(f"# one worker: {wall1:.1f} s wall including start", flush=True)

            two = names("two")
            fill(client, two["in"], texts_for(pool, n, "two"), "b")
            load = quiet.wait("two workers")
            rate2, wall2, rep = run_workers(2, p.folder, client, args.redis, two, b)
            assert sum(r["published"] for r in rep) == n, rep
            rows.append(("`stream-worker`, 2 processes", 2, rate2, f"{load:.2f}"))
            print(f"# two workers: {wall2:.1f} s wall including start", flush=True)

            # Latency from POST /api/items at a share of one worker's throughput.
            feeds = ["post", "xadd"] if args.feed == "both" else [args.feed]
            plan = [(v, w) for v in feeds for w in [200, *(args.wait or [])]]
            for k, (via, wait_ms) in enumerate(plan):
                run = names(f"lat{k}")
                load = quiet.wait(f"latency via {via}, max-wait-ms {wait_ms}")
                lat = measure_latency(
                    p,
                    client,
                    args.redis,
                    run,
                    texts_for(pool, args.latency_items, f"lat{k}-"),
                    rate=args.latency_share * rate1,
                    batch=b,
                    wait_ms=wait_ms,
                    warmup=texts_for(pool, 20, f"warm{k}-"),
                    via=via,
                )
                lat["load"] = load
                latency.append(lat)
                print(f"# latency: {lat}", flush=True)
            dialect = p.db.dialect
            p.close()
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        shutil.rmtree(base, ignore_errors=True)

    print(f"\n    .venv/bin/python {' '.join(sys.argv)}\n")
    print(
        f"{n:,} SMS texts per run, batches of {b}, store {dialect}, Redis {args.redis}; "
        f"ratio against the ceiling measured in the same run\n"
    )
    print(f"| {'run':<36} | workers | items/s | ratio to ceiling | load |")
    print(f"|{'-' * 38}|--------:|--------:|-----------------:|-----:|")
    for name, workers, rate, load in rows:
        print(f"| {name:<36} | {workers:>7} | {rate:>7.1f} | {rate / ceiling:>16.2f} | {load} |")
    if latency:
        print(
            f"\nLatency, item sent (POST /api/items, or XADD) -> decision published, one worker, "
            f"{args.latency_share:.0%} of its throughput ({args.latency_share * rate1:.1f} items/s)\n"
        )
        print(
            "| producer | max-wait-ms | items | offered items/s | p50 ms | p99 ms | max ms | send p50 ms "
            "| stream->published p50 / p99 ms | load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in latency:
            print(
                f"| {r['via']} | {r['wait_ms']} | {r['n']} | {r['offered']:.1f} | {r['p50']:.1f} | "
                f"{r['p99']:.1f} | {r['max']:.1f} | {r['post_p50']:.1f} | "
                f"{r['worker_p50']:.0f} / {r['worker_p99']:.0f} | {r['load']:.2f} |"
            )
        for r in latency:
            print(f"{r['via']}, max-wait-ms {r['wait_ms']}: {r['stages']}")


if __name__ == "__main__":
    main()
