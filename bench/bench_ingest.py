"""Ingest throughput, peak memory and next-items latency (issue: foundation).

    python bench/bench_ingest.py --rows 200000 --memory-rows 1000000 --queue-rows 1000000

Prints rows/s of labelloop's ingest into SQLite and PostgreSQL next to a bare insert of the
same rows in the same run (sqlite3 ``executemany`` into a table without indexes; PostgreSQL
``COPY``), the peak resident memory of ingesting a large CSV in a fresh process, and the time
to fetch the next 50 items to review from a store of that size.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "free win prize call now text reply stop lunch tomorrow meeting love home see you later "
    "ok sure thanks night morning cash claim urgent mobile awarded bonus week"
).split()


def make_csv(path: Path, rows: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    data = [
        (" ".join(rng.choices(WORDS, k=rng.randint(5, 14))) + f" #{i}", rng.choice(("ham", "spam")))
        for i in range(rows)
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("text", "label"))
        w.writerows(data)
    return data


def labelloop_ingest(folder: Path, csv_path: Path, storage: str) -> tuple[float, int]:
    from labelloop.project import Project

    p = Project.init(
        folder,
        name=f"bench-{folder.name}",
        labels=["ham", "spam"],
        label_field="label",
        storage=storage,
    )
    t = time.perf_counter()
    r = p.ingest(csv_path)
    elapsed = time.perf_counter() - t
    p.close()
    return r.rows_read / elapsed, r.items_added


def bare_sqlite(path: Path, data: list[tuple[str, str]]) -> float:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE t (text TEXT, label TEXT)")
    t = time.perf_counter()
    for i in range(0, len(data), 5000):
        con.executemany("INSERT INTO t VALUES (?, ?)", data[i : i + 5000])
        con.commit()
    elapsed = time.perf_counter() - t
    con.close()
    return len(data) / elapsed


def item_rows(data: list[tuple[str, str]]) -> list[tuple]:
    """The rows labelloop writes for ``data``, computed up front (hash, metadata JSON)."""
    import json

    from labelloop.core.hashing import content_hash

    return [
        (
            1,
            content_hash(t),
            t,
            None,
            json.dumps({"label": lab}),
            "bench.csv",
            i,
            "new",
            0.0,
            "2026-01-01 00:00:00.000000",
        )
        for i, (t, lab) in enumerate(data, start=1)
    ]


def bare_items_table(url: str, rows: list[tuple]) -> float:
    """The same item rows written straight into labelloop's own ``items`` table (with its
    indexes) by the driver: executemany on SQLite, COPY on PostgreSQL. The database's share."""
    from labelloop.store.db import Database
    from labelloop.store.items import ITEM_COLUMNS

    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO projects (id, name, config, created_at) VALUES "
            "(1, 'bare', '{}', '2026-01-01 00:00:00')"
        )
    cols = ", ".join(ITEM_COLUMNS)
    t = time.perf_counter()
    for i in range(0, len(rows), 5000):
        with db.engine.begin() as conn:
            if db.dialect == "sqlite":
                marks = ", ".join("?" for _ in ITEM_COLUMNS)
                conn.exec_driver_sql(
                    f"INSERT INTO items ({cols}) VALUES ({marks})", rows[i : i + 5000]
                )
            else:
                raw = conn.connection.dbapi_connection
                with raw.cursor() as cur, cur.copy(f"COPY items ({cols}) FROM STDIN") as cp:
                    for row in rows[i : i + 5000]:
                        cp.write_row(row)
    elapsed = time.perf_counter() - t
    db.dispose()
    return len(rows) / elapsed


def bare_pg_copy(url: str, data: list[tuple[str, str]]) -> float:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as con:
        con.execute("DROP TABLE IF EXISTS bench_bare")
        con.execute("CREATE TABLE bench_bare (text TEXT, label TEXT)")
        con.commit()
        t = time.perf_counter()
        with con.cursor() as cur:
            for i in range(0, len(data), 5000):
                with cur.copy("COPY bench_bare (text, label) FROM STDIN") as cp:
                    for row in data[i : i + 5000]:
                        cp.write_row(row)
                con.commit()
        elapsed = time.perf_counter() - t
        con.execute("DROP TABLE bench_bare")
    return len(data) / elapsed


def fresh_pg_database(admin_url: str) -> str:
    import psycopg

    name = f"labelloop_bench_{int(time.time())}"
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MEMORY_CHILD = """
import sys, time
from labelloop.project import Project
p = Project.init(sys.argv[1], name="mem", labels=["ham", "spam"], label_field="label")
t = time.perf_counter()
r = p.ingest(sys.argv[2])
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so it would report the parent's peak.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(r.rows_read, time.perf_counter() - t, hwm / 1024)
"""


def queue_latency(db_folder: Path, n_fetch: int = 200) -> tuple[float, float]:
    from sqlalchemy import text

    from labelloop.project import Project

    p = Project.open(db_folder)
    with p.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE items SET state = 'queued', priority = abs(random() % 1000000) / 1e6")
        )
    times = []
    for _ in range(n_fetch):
        t = time.perf_counter()
        batch = p.next_for_review(50)
        times.append((time.perf_counter() - t) * 1000)
        assert len(batch) == 50
    p.close()
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=200_000, help="rows for the throughput runs")
    ap.add_argument(
        "--memory-rows", type=int, default=1_000_000, help="rows for peak memory and queue latency"
    )
    ap.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--skip-pg", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-"))
    try:
        csv_path = work / "rows.csv"
        data = make_csv(csv_path, args.rows)
        print(f"# {args.rows:,} short texts ({csv_path.stat().st_size / 1e6:.1f} MB CSV)")
        rows = item_rows(data)
        bare = bare_sqlite(work / "bare.db", data)
        same = bare_items_table(f"sqlite:///{work / 'same.db'}", rows)
        ours, _ = labelloop_ingest(work / "sqlite", csv_path, "sqlite:///labelloop.db")
        print(
            f"sqlite     labelloop ingest {ours:>9,.0f} rows/s | executemany into items table "
            f"{same:>9,.0f} rows/s (ratio {ours / same:.2f}) | into a bare 2-column table "
            f"{bare:>9,.0f} rows/s (ratio {ours / bare:.2f})"
        )
        if not args.skip_pg:
            url = fresh_pg_database(args.pg_admin_url)
            try:
                bare_pg = bare_pg_copy(url, data)
                same_pg = bare_items_table(url, rows)
                with __import__("psycopg").connect(url) as con:
                    con.execute("TRUNCATE items, projects CASCADE")
                ours_pg, _ = labelloop_ingest(work / "pg", csv_path, url)
                print(
                    f"postgresql labelloop ingest {ours_pg:>9,.0f} rows/s | COPY into items table "
                    f"{same_pg:>9,.0f} rows/s (ratio {ours_pg / same_pg:.2f}) | into a bare 2-column table "
                    f"{bare_pg:>9,.0f} rows/s (ratio {ours_pg / bare_pg:.2f})"
                )
            finally:
                drop_pg_database(args.pg_admin_url, url)

        big = work / "big.csv"
        make_csv(big, args.memory_rows, seed=1)
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(work / "mem"), str(big)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        rows, secs, peak_mb = int(out[0]), float(out[1]), float(out[2])
        print(
            f"peak RSS ingesting {rows:,} rows ({big.stat().st_size / 1e6:.0f} MB CSV): {peak_mb:.0f} MB "
            f"({rows / secs:,.0f} rows/s)"
        )
        p50, p99 = queue_latency(work / "mem")
        print(
            f"next 50 items to review from {rows:,} queued items: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
