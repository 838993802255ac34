"""The loop as a service: how soon people's labels reach the queue, and what a reviewer feels
meanwhile (issue 9).

    python bench/bench_serve_loop.py --items 10000 --retrains 6 --think-ms 300

A project of ``--items`` banking77 texts (train.csv, distinct texts, seed-0 shuffle; 77 labels
from categories.json) with ``loop.retrain_every`` = ``--retrain-every`` (50) and
``loop.poll_seconds`` = 0.2 in its project file, other loop settings at their defaults
(incremental re-score every 10 labels, student selection every 4th retrain). Before the
server starts, every item is embedded (cached in the store) and one retrain suggests and routes
them all, so the service starts with a full queue. Then the real ``labelloop serve -p P`` runs
in a subprocess (uvicorn on 127.0.0.1, a free port, the loop worker thread beside it), and one
reviewer (API token) labels through the API, ``POST /api/queue/next`` then
``POST /api/items/{id}/label`` with the dataset's label, pausing ``--think-ms`` between items.

Measured, in the same run:

* label-to-queue latency: from the moment the POST of the label that made a retrain due
  returned, to the moment the new ``retrain`` event (written after the queue is re-scored) is
  seen in the store (polled every 20 ms from this process); p50 / p99 over ``--retrains``;
* the reviewer's step (next + label) p50 / p99: overall, while a retrain was running (from the
  event's start to its end, as the worker reports it) and outside retrains.

Stops after ``--retrains`` retrains or ``--max-seconds``, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from _http import free_port  # bench/_http.py

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "banking77"


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (with fewer than 100 values, p99 is the largest)."""
    xs = sorted(xs)
    return xs[max(0, min(len(xs), math.ceil(q * len(xs))) - 1)] if xs else float("nan")


def summary(xs: list[float]) -> str:
    if not xs:
        return "no steps"
    return (
        f"p50 {statistics.median(xs):7.1f} ms  p99 {pct(xs, 0.99):7.1f} ms  "
        f"max {max(xs):7.1f} ms  ({len(xs)} steps)"
    )


def wall(when: datetime) -> float:
    """A stored timestamp (naive ones are UTC) as seconds since the epoch."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class RetrainWatcher:
    """Polls the store for new ``retrain`` events; keeps (seen_at, payload, created_at)."""

    def __init__(self, project, interval: float = 0.02) -> None:
        from labelloop.store.loop_state import last_event

        self._last_event = last_event
        self.project, self.interval = project, interval
        row = last_event(project.db, project.id, ("retrain",))
        self.last_id = int(row[0]) if row else 0
        self.seen: list[tuple[float, dict, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            row = self._last_event(self.project.db, self.project.id, ("retrain",))
            if row is not None and int(row[0]) > self.last_id:
                self.seen.append((time.time(), dict(row[2] or {}), wall(row[3])))
                self.last_id = int(row[0])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--retrain-every", type=int, default=50)
    ap.add_argument("--retrains", type=int, default=6, help="stop after this many retrains")
    ap.add_argument("--think-ms", type=float, default=300.0, help="reviewer's pause per item")
    ap.add_argument("--start-labels", type=int, default=0, help="human labels given beforehand")
    ap.add_argument("--max-seconds", type=float, default=200.0, help="of reviewing, at most")
    ap.add_argument("--data", type=Path, default=DATA, help="the banking77 folder")
    args = ap.parse_args()

    import httpx

    from labelloop.auth import create_token, create_user
    from labelloop.embed.factory import project_embedder
    from labelloop.project import Project

    df = pd.read_csv(args.data / "train.csv")[["text", "category"]].dropna()
    df = df.drop_duplicates("text").sample(frac=1.0, random_state=0).head(args.items)
    names = json.loads((args.data / "categories.json").read_text())
    gold = dict(zip(df["text"], df["category"], strict=True))

    work = Path(tempfile.mkdtemp(prefix="labelloop-serve-bench-"))
    server = None
    try:
        df[["text"]].to_csv(work / "items.csv", index=False)
        folder = work / "p"
        p = Project.init(
            folder,
            name="serve-bench",
            labels=names,
            loop={"retrain_every": args.retrain_every, "poll_seconds": 0.2},
        )
        p.ingest(work / "items.csv")
        items = p.items()
        for i, t in list(zip(items["id"], items["content"], strict=True))[: args.start_labels]:
            p.label(int(i), [gold[t]], annotator="bench")
        t0 = time.perf_counter()
        project_embedder(p.ctx).embed(list(items["content"]))
        embed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = p.retrain()
        first_s = time.perf_counter() - t0
        create_user(p.db, "admin", "admin", "bench-password")
        create_user(p.db, "rev", "reviewer", "bench-password")
        token = create_token(p.db, "rev")
        p.close()

        port = free_port()
        exe = Path(sys.executable).parent / "labelloop"
        log = open(work / "serve.log", "w")  # noqa: SIM115 (closed with the server)
        server = subprocess.Popen(
            [str(exe), "serve", "-p", str(folder), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the server did not start:\n{(work / 'serve.log').read_text()}")
            time.sleep(0.1)

        watch_p = Project.open(folder)
        watcher = RetrainWatcher(watch_p)
        watcher.thread.start()
        posted: dict[int, float] = {}  # label ordinal -> when its POST returned (epoch s)
        steps: list[tuple[float, float, float]] = []  # (start, end epoch s, step ms)
        n = args.start_labels
        started = time.time()
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as c:
            while len(watcher.seen) < args.retrains and time.time() - started < args.max_seconds:
                w0, t = time.time(), time.perf_counter()
                r = c.post("/api/queue/next")
                r.raise_for_status()
                item = r.json()["item"]
                if item is None:
                    print("# the queue ran dry")
                    break
                c.post(
                    f"/api/items/{item['id']}/label",
                    json={"labels": [gold[item["content"]]], "time_spent_ms": int(args.think_ms)},
                ).raise_for_status()
                ms = (time.perf_counter() - t) * 1000
                n += 1
                posted[n] = time.time()
                steps.append((w0, posted[n], ms))
                time.sleep(args.think_ms / 1000)
            # wait for a retrain already due to finish, so it is counted
            due_by = time.time() + 120
            while (
                len(watcher.seen) < args.retrains
                and n - (watcher.seen[-1][1].get("label_actions", 0) if watcher.seen else 0)
                >= args.retrain_every
                and time.time() < due_by
            ):
                time.sleep(0.05)
        watcher.stop.set()
        watcher.thread.join()
        reviewing_s = time.time() - started

        # label-to-queue latency per retrain: from the POST of the label that made it due
        prev = int(first.label_actions)
        lat, lines, busy = [], [], []
        for seen_at, payload, created in watcher.seen:
            trigger = prev + args.retrain_every
            ran = float(payload.get("seconds") or 0.0)
            busy.append((created - ran, created))
            if trigger in posted:
                lat.append(seen_at - posted[trigger])
                lines.append(
                    f"  retrain at {payload.get('label_actions')} label actions (due at "
                    f"{trigger}): {lat[-1]:6.2f} s after the trigger label; the retrain itself "
                    f"{ran:5.2f} s, trained {payload.get('trained')}, "
                    f"student selection {'yes' if payload.get('selection') else 'no'}"
                )
            prev = int(payload.get("label_actions", trigger))
        during = [ms for s, e, ms in steps if any(s < b and e > a for a, b in busy)]
        outside = [ms for s, e, ms in steps if not any(s < b and e > a for a, b in busy)]
        from labelloop.store.loop_state import count_events

        errors = count_events(watch_p.db, watch_p.id, "worker_error")
        watch_p.close()
        if errors:
            print(f"# {errors} worker errors; serve log tail:")
            print((work / "serve.log").read_text()[-3000:])

        print(
            f"banking77: {len(df):,} items, {len(names)} labels, SQLite; labelloop serve "
            f"(uvicorn + loop worker) in a subprocess; retrain_every {args.retrain_every}, "
            f"poll 0.2 s; one reviewer over HTTP, {args.think_ms:.0f} ms pause per item"
        )
        print(
            f"before serving: embedding all items {embed_s:.1f} s (cached), first suggest + "
            f"route of all items {first_s:.1f} s"
        )
        print(
            f"{n - args.start_labels} labels in {reviewing_s:.0f} s, {len(watcher.seen)} retrains"
        )
        for line in lines:
            print(line)
        if lat:
            print(
                f"label-to-queue latency over {len(lat)} retrains: p50 "
                f"{statistics.median(lat):.2f} s  p99 {pct(lat, 0.99):.2f} s  max {max(lat):.2f} s"
            )
        print(f"reviewer step (next + label), all      : {summary([s[2] for s in steps])}")
        print(f"reviewer step during a retrain          : {summary(during)}")
        print(f"reviewer step outside retrains          : {summary(outside)}")
        print(
            "reproduce: .venv/bin/python bench/bench_serve_loop.py "
            f"--items {args.items} --retrain-every {args.retrain_every} --retrains "
            f"{args.retrains} --think-ms {args.think_ms:g} --start-labels {args.start_labels}"
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
