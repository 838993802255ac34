"""Review step latency with the review page's progress numbers, on a store of 1,000,000 items.

    .venv/bin/python bench/bench_review_step.py --items 1000000 --answered 50000 --steps 1500

Builds a SQLite project of ``--items`` items written straight through the store's bulk
functions (``store.items.insert_items``, ``store.bulk.insert_ignore_rows``; no ingest, no
embeddings), of which ``--answered`` are already labeled by 20 reviewers (human labels with
their time spent, and final labels) and the rest queued. Then one review step (``POST
/api/queue/next`` then ``POST /api/items/{id}/label``, in-process through FastAPI's
TestClient with an API token) is timed ``--steps`` times for each of three variants, which
take turns step by step:

- before: the old ``/api/queue/next`` response, without progress numbers;
- after: the response with progress (done / left / items per hour), cached per reviewer for
  ``ProgressCache.ttl_seconds`` (5 s) with the reviewer's own answers counted in between;
- uncached (for reference): the progress read from the store at every step.

Prints p50 and p99 (ms) of each, and what one uncached read of the numbers costs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

CHUNK = 50_000
REVIEWERS = 20


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def build_store(folder: Path, n_items: int, n_answered: int):  # noqa: ANN201
    """A project of ``n_items`` items, the first ``n_answered`` labeled by people."""
    from labelloop.project import Project
    from labelloop.store.bulk import datetime_param, insert_ignore_rows
    from labelloop.store.items import insert_items
    from labelloop.store.models import HumanLabelRow, utcnow

    p = Project.init(
        folder, name="step-bench", labels=["ham", "spam"], storage=f"sqlite:///{folder}/s.db"
    )
    started = time.perf_counter()
    for start in range(0, n_items, CHUNK):
        rows = [
            (
                p.id,
                hashlib.sha256(str(i).encode()).hexdigest(),
                f"message number {i} about something",
                None,
                "{}",
                "bench",
                i,
            )
            for i in range(start, min(start + CHUNK, n_items))
        ]
        with p.db.engine.begin() as conn:
            insert_items(conn, rows, [])
    with p.db.engine.begin() as conn:
        first = conn.exec_driver_sql("SELECT min(id) FROM items").scalar_one()
        conn.exec_driver_sql(
            "UPDATE items SET state = 'queued', queue_reason = 'review', "
            "priority = abs(random() % 1000000) / 1e6 WHERE id >= ?",
            (first + n_answered,),
        )
        conn.exec_driver_sql(
            "UPDATE items SET state = 'labeled' WHERE id < ?", (first + n_answered,)
        )
        when = datetime_param(conn, HumanLabelRow.__table__.c.created_at, utcnow())
        old = datetime_param(
            conn, HumanLabelRow.__table__.c.created_at, utcnow() - timedelta(days=2)
        )
        for start in range(0, n_answered, CHUNK):
            ids = range(first + start, first + min(start + CHUNK, n_answered))
            insert_ignore_rows(
                conn,
                "human_labels",
                ("item_id", "annotator", "labels", "action", "time_spent_ms", "created_at"),
                [
                    (i, f"r{i % REVIEWERS}", '["ham"]', "label", 4000, when if i % 2 else old)
                    for i in ids
                ],
                ["id"],
            )
            insert_ignore_rows(
                conn,
                "final_labels",
                ("item_id", "project_id", "labels", "source_kind", "source_name", "decided_at"),
                [(i, p.id, '["ham"]', "human", f"r{i % REVIEWERS}", when) for i in ids],
                ["item_id"],
            )
        conn.exec_driver_sql("ANALYZE")
    print(
        f"# built {n_items:,} items ({n_answered:,} labeled) in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return p


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--answered", type=int, default=50_000)
    ap.add_argument("--steps", type=int, default=1500, help="steps per variant")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    import labelloop.api.routes_api as routes
    from labelloop.api import create_app
    from labelloop.auth import create_token, create_user
    from labelloop.review import progress as progress_mod

    work = Path(tempfile.mkdtemp(prefix="labelloop-step-bench-"))
    try:
        p = build_store(work / "p", args.items, args.answered)
        create_user(p.db, "r3", "reviewer", "bench-password")  # has answers already
        token = create_token(p.db, "r3")
        reads = []
        for _ in range(5):
            t = time.perf_counter()
            numbers = progress_mod.read_progress(p.db, p.id, "r3")
            reads.append((time.perf_counter() - t) * 1000)
        print(f"# one uncached read of the numbers: {statistics.median(reads):.1f} ms ({numbers})")

        cached = routes._progress
        variants = {
            "before": lambda project, annotator: None,
            "after": cached,
            "uncached": lambda project, annotator: progress_mod.read_progress(
                project.db, project.id, annotator
            ).as_dict(),
        }
        times: dict[str, list[float]] = {v: [] for v in variants}
        with TestClient(create_app(p), headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(20):  # warm up
                item = c.post("/api/queue/next").json()["item"]
                c.post(f"/api/items/{item['id']}/label", json={"labels": ["spam"]})
            # The variants take turns step by step, so the machine's load falls on all alike.
            for _ in range(args.steps):
                for name, fn in variants.items():
                    routes._progress = fn
                    t0 = time.perf_counter()
                    r = c.post("/api/queue/next")
                    item = r.json()["item"]
                    c.post(
                        f"/api/items/{item['id']}/label",
                        json={"labels": ["spam"], "time_spent_ms": 3000},
                    ).raise_for_status()
                    times[name].append((time.perf_counter() - t0) * 1000)
            routes._progress = cached
            last = c.post("/api/queue/next").json()["progress"]
        print(f"# final progress: {json.dumps(last)}")
        print(
            f"review step (next + label), {args.items:,} items, SQLite, TestClient, "
            f"{args.steps} steps per variant, taking turns"
        )
        base = statistics.median(times["before"])
        base99 = pct(times["before"], 0.99)
        for name, xs in times.items():
            p50, p99 = statistics.median(xs), pct(xs, 0.99)
            print(
                f"{name:9s} p50 {p50:6.2f} ms ({p50 / base:5.3f}x)  "
                f"p99 {p99:6.2f} ms ({p99 / base99:5.3f}x)  max {max(xs):7.2f} ms"
            )
        p.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
