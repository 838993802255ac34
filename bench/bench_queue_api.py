"""Review-queue latency through the REST API with a large store (issue: routing and review).

    python bench/bench_queue_api.py --items 1000000 --steps 300

Builds a project with ``--items`` queued items (random priorities), starts the real app with
uvicorn on 127.0.0.1, and times, over HTTP with an API token: ``POST /api/queue/next`` (lease
the next item) and one whole labeling step (next + ``POST /api/items/{id}/label``). Prints p50
and p99 of each. The in-process ``Project.next_item`` call is timed too, as the baseline.

``--storage`` takes several URLs, measured one after the other in the same run. A PostgreSQL
URL names a server: the bench creates a fresh database on it (as ``tests/conftest.py`` does)
and drops it afterwards.

    python bench/bench_queue_api.py --items 1000000 --steps 300 \
        --storage sqlite --storage postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _http import served  # bench/_http.py
from _stores import fresh_store  # bench/_stores.py


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def queue_everything(p: object) -> None:
    """Every item queued with a random priority in [0, 1), then fresh planner statistics.
    ``random()`` differs by dialect: an integer on SQLite, a float in [0, 1) on PostgreSQL."""
    from sqlalchemy import text

    db = p.db  # type: ignore[attr-defined]
    pid = p.ctx.id  # type: ignore[attr-defined]
    priority = "random()" if db.dialect == "postgresql" else "abs(random() % 1000000) / 1e6"
    with db.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE items SET state = 'queued', priority = {priority} WHERE project_id = :p"),
            {"p": pid},
        )
    # ANALYZE outside the UPDATE's transaction (PostgreSQL's VACUUM cannot run in one).
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE items" if db.dialect == "postgresql" else "ANALYZE")


def measure(storage_url: str, work: Path, data: Path, items: int, steps: int) -> dict[str, object]:
    """Fill one store with ``items`` queued items and time ``steps`` review steps on it."""
    import httpx

    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.project import Project

    p = Project.init(work / "p", name="queue-bench", labels=["ham", "spam"], storage=storage_url)
    dialect = p.db.dialect
    t = time.perf_counter()
    p.ingest(data)
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    queue_everything(p)
    queue_s = time.perf_counter() - t
    print(f"# {dialect}: ingested {items:,} items in {ingest_s:.1f} s, queued in {queue_s:.1f} s")
    create_user(p.db, "bench", "reviewer", "bench-password")
    token = create_token(p.db, "bench")

    inproc = []
    for _ in range(steps):
        t = time.perf_counter()
        item = p.next_item("inproc")
        inproc.append((time.perf_counter() - t) * 1000)
        p.submit(item["id"], ["ham"], annotator="inproc")

    nexts, steps_ms = [], []
    with (
        served(create_app(p)) as port,
        httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as c,
    ):
        for _ in range(steps):
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
            steps_ms.append((t2 - t0) * 1000)
    p.close()
    return {"store": dialect, "inproc": inproc, "next": nexts, "step": steps_ms, "fill_s": ingest_s}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument(
        "--storage",
        action="append",
        help="'sqlite' (a file in a temporary folder), a PostgreSQL server URL (a fresh "
        "database is made on it), or any SQLAlchemy URL; repeat to measure several in one run "
        "(default: sqlite)",
    )
    args = ap.parse_args()
    stores = args.storage or ["sqlite"]

    base = Path(tempfile.mkdtemp(prefix="labelloop-queue-bench-"))
    results = []
    try:
        data = base / "items.csv"
        with open(data, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text"])
            w.writerows([f"message number {i} about something"] for i in range(args.items))
        for k, storage in enumerate(stores):
            work = base / f"store-{k}"
            work.mkdir()
            with fresh_store(storage, work) as url:
                with open("/proc/loadavg") as f:
                    load = f.read().split()[0]
                print(f"# {storage}: load average (1 min) {load} at start")
                results.append(measure(url, work, data, args.items, args.steps))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"\nqueue of {args.items:,} items, {args.steps} steps per store\n")
    print("| store | call | p50 | p99 |")
    print("|---|---|---|---|")
    for r in results:
        for key, call in (
            ("inproc", "`Project.next_item` in process (baseline)"),
            ("next", "`POST /api/queue/next`"),
            ("step", "one labeling step: next + `POST /api/items/{id}/label`"),
        ):
            xs = r[key]
            assert isinstance(xs, list)
            print(
                f"| {r['store']} | {call} | {statistics.median(xs):.2f} ms | {pct(xs, 0.99):.2f} ms |"
            )


if __name__ == "__main__":
    main()
