"""Review-queue latency through the REST API with a large store (issue: routing and review).

    python bench/bench_queue_api.py --items 1000000 --steps 300

Builds a project with ``--items`` queued items (random priorities), starts the real app with
uvicorn on 127.0.0.1, and times, over HTTP with an API token: ``POST /api/queue/next`` (lease
the next item) and one whole labeling step (next + ``POST /api/items/{id}/label``). Prints p50
and p99 of each. The in-process ``Project.next_item`` call is timed too, as the baseline.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--storage", default="sqlite:///labelloop.db", help="SQLAlchemy URL of the store"
    )
    args = ap.parse_args()

    import httpx
    import uvicorn
    from sqlalchemy import text

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.project import Project

    work = Path(tempfile.mkdtemp(prefix="labelloop-queue-bench-"))
    try:
        data = work / "items.csv"
        with open(data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text"])
            w.writerows([f"message number {i} about something"] for i in range(args.items))
        p = Project.init(
            work / "p", name="queue-bench", labels=["ham", "spam"], storage=args.storage
        )
        t = time.perf_counter()
        p.ingest(data)
        print(f"# ingested {args.items:,} items in {time.perf_counter() - t:.1f} s")
        with p.db.engine.begin() as conn:
            conn.execute(
                text("UPDATE items SET state = 'queued', priority = abs(random() % 1000000) / 1e6")
            )
            if p.db.dialect == "sqlite":
                conn.exec_driver_sql("ANALYZE")
        create_user(p.db, "bench", "reviewer", "bench-password")
        token = create_token(p.db, "bench")

        inproc = []
        for _ in range(args.steps):
            t = time.perf_counter()
            item = p.next_item("inproc")
            inproc.append((time.perf_counter() - t) * 1000)
            p.submit(item["id"], ["ham"], annotator="inproc")

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(p), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        nexts, steps = [], []
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as c:
            for _ in range(args.steps):
                t0 = time.perf_counter()
                r = c.post("/api/queue/next")
                t1 = time.perf_counter()
                r.raise_for_status()
                item = r.json()["item"]
                c.post(
                    f"/api/items/{item['id']}/label",
                    json={"labels": ["spam"], "time_spent_ms": 1000},
                ).raise_for_status()
                t2 = time.perf_counter()
                nexts.append((t1 - t0) * 1000)
                steps.append((t2 - t0) * 1000)
        server.should_exit = True
        thread.join(timeout=10)
        print(f"queue of {args.items:,} items, {args.steps} steps, store {p.db.dialect}")
        print(
            f"in-process next_item      p50 {statistics.median(inproc):7.2f} ms  p99 {pct(inproc, 0.99):7.2f} ms"
        )
        print(
            f"HTTP POST /api/queue/next p50 {statistics.median(nexts):7.2f} ms  p99 {pct(nexts, 0.99):7.2f} ms"
        )
        print(
            f"HTTP next + label (a step) p50 {statistics.median(steps):7.2f} ms  p99 {pct(steps, 0.99):7.2f} ms"
        )
        p.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
