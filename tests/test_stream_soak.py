"""``kill -9`` ten times over a stream of 10,000 items (issue 13), on the real Redis and
PostgreSQL: each worker process kills itself with SIGKILL in the middle of one of its batches,
at a different stage each time (before the labelers run, after the batch's decisions are
committed but before anything is published, and halfway through publishing), and the next
worker claims what it left. At the end every item was decided once, published once, and
nothing is pending or set aside. The kill points are chosen by batch number, not by time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from test_stream import REDIS_URL, _fill, _names, _pending

from labelloop.store.stream_decisions import count_decisions
from labelloop.workers.stream import RedisStreamSink, RedisStreamSource, StreamWorker

ITEMS = 10_000
KILLS = 10
BATCH = 64
STAGES = ("labeling", "committed", "publishing")

_CHILD = """
import os, signal, sys
from labelloop.store.context import ProjectContext
from labelloop.workers.stream import (
    RedisStreamSink, RedisStreamSource, StreamWorker, redis_client,
)

folder, url, stream, group, out, kill_at, stage, consumer = sys.argv[1:9]
kill_at, batches = int(kill_at), [0]
number = {}  # a batch's first entry id -> the batch's number (the commit of batch n runs
committing = [0]  # while batch n + 1 is labeled, so the hooks ask which batch they are in)
client = redis_client(url)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def before_labeling(entries):
    batches[0] += 1
    number[entries[0].id] = batches[0]
    if stage == "labeling" and batches[0] == kill_at:
        die()

def before_publish(entries):
    committing[0] = number.get(entries[0].id, 0)
    if stage == "committed" and committing[0] == kill_at:
        die()

class HalfThenDie(RedisStreamSink):
    sent = 0
    def publish(self, key, decision):
        if stage == "publishing" and committing[0] == kill_at:
            self.sent += 1
            if self.sent > 20:  # a third of the batch is out, the rest is not
                die()
        return super().publish(key, decision)

ctx = ProjectContext.open(folder)
w = StreamWorker(
    ctx,
    RedisStreamSource(client, stream, group, consumer=consumer, claim_idle_ms=0, max_tries=100),
    HalfThenDie(client, out),
    batch_size=64,
    max_wait_ms=50,
    before_labeling=before_labeling,
    before_publish=before_publish,
)
w.run(until_idle=True)
sys.exit(3)  # ran dry before its kill point: the parent treats this as a failure
"""


def test_ten_kills_over_ten_thousand_items_lose_and_duplicate_nothing(
    pg_url: str, redis: Any, tmp_path: Path
) -> None:
    from labelloop.project import Project

    p = Project.init(
        tmp_path / "soak",
        name=f"soak-{uuid.uuid4().hex[:8]}",
        labels=["ham", "spam"],
        storage=pg_url,
    )
    try:
        stream, group, out = _names(redis)
        _fill(redis, stream, ITEMS)
        script = tmp_path / "child.py"
        script.write_text(_CHILD, encoding="utf-8")
        for k in range(KILLS):
            stage = STAGES[k % len(STAGES)]
            kill_at = 2 + k % 4  # after the claimed batch(es) of the previous death
            proc = subprocess.run(
                [sys.executable, str(script), str(p.ctx.folder), REDIS_URL, stream, group, out]
                + [str(kill_at), stage, f"child-{k}"],
                capture_output=True,
                text=True,
                timeout=600,  # a bound on a hung child, not a timing assumption
            )
            assert proc.returncode == -9, (
                f"kill {k} ({stage}): {proc.returncode} {proc.stderr[-2000:]}"
            )
        # Some entries are pending for dead consumers; a last worker claims and finishes all.
        last = StreamWorker(
            p.ctx,
            RedisStreamSource(
                redis, stream, group, consumer="last", claim_idle_ms=0, max_tries=100
            ),
            RedisStreamSink(redis, out),
            batch_size=BATCH,
        )
        last.run(until_idle=True)
        published = [json.loads(f["decision"]) for _, f in redis.xrange(out)]
        counts = Counter(d["external_id"] for d in published)
        assert len(counts) == ITEMS and set(counts.values()) == {1}  # each published once
        assert _pending(redis, stream, group) == 0
        assert redis.xlen(f"{stream}:dead") == 0  # nothing set aside
        with p.ctx.db.engine.connect() as conn:
            assert count_decisions(conn, p.ctx.id) == ITEMS  # each decided once
        assert len(p.items()) == ITEMS
    finally:
        p.close()
