"""Stream workers: items in from a stream, one decision per item out, in micro-batches.

``StreamWorker(ctx, source, sink).run()`` reads entries (an external id and the item's content
fields) from a ``Source`` in micro-batches (``batch_size`` entries or ``max_wait_ms``,
whichever comes first), and for each batch:

1. builds the items as ingest does (a row ingest refuses is set aside with its reason) and
   ingests them (idempotent: an item is its content hash, so a redelivered entry adds nothing);
2. labels them with the project's labelers and routing rule, frozen as bulk annotation freezes
   it (``workers.bulk.freeze_rule``; refrozen when a new model version is stored, under the
   loop's lease, so many stream workers never retrain at once);
3. in one transaction records each item's decision under the rule's model version
   (``store.stream_decisions``, unique per item and version) and, for the items it decided
   first and still ``new``, the suggestions and the machine label of an ``auto`` decision (the
   loop's next route queues the rest, as after a bulk run);
4. publishes each item's stored decision to the ``Sink`` once per (item, model version), then
   acknowledges the batch.

Delivery is at least once and every write is idempotent: an entry delivered again (a worker
killed in a batch, its entries claimed by another) finds its decision stored and publishes
that one, and the sink refuses a second publication of the same key. A labeler that raises
on an entry (a poison item) is retried ``max_tries`` times, then the entry goes to the
source's dead-letter place with the error, and the stream goes on. ``run()`` commits (step 3
and 4) a batch on a second thread while it labels the next, so a worker holds at most two
batches. ``stop()`` (SIGTERM in the CLI) reads nothing more and ends the loop once the batches
in hand are written, published and acknowledged.

Sources: ``RedisStreamSource`` (a consumer group: XREADGROUP, XACK, XAUTOCLAIM of entries
idle past ``claim_idle_ms``, a dead-letter stream) and ``InProcessSource`` (a
``queue.Queue``, the embedded default with no Redis). Sinks: ``RedisStreamSink`` (XADD, made
idempotent by a Lua script that marks the key and adds the entry atomically) and
``InProcessSink`` (a list).
"""

from __future__ import annotations

import json
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from labelloop.core.config import Modality
from labelloop.core.errors import LabelloopError
from labelloop.core.types import Item
from labelloop.embed.cached import CachedEmbedder, InMemoryEmbeddingCache, WriteBehindCache
from labelloop.sources.records import RawRecord
from labelloop.sources.validate import ItemBuilder, RowRejected
from labelloop.store.context import ProjectContext
from labelloop.workers import metrics

EXTERNAL_ID = "external_id"  # the entry field holding the item's id in the caller's system
MAX_TRIES = 3
CLAIM_IDLE_MS = 60_000
HOLDING_MARGIN_MS = 250  # see RedisStreamSource.read


# -- entries, sources, sinks -------------------------------------------------------------------
@dataclass
class Entry:
    """One stream entry: the source's id for it and its fields (strings)."""

    id: str
    fields: dict[str, str]
    position: int  # a stable number for the ingest's (source, position) sighting


class Source(Protocol):
    name: str

    def read(
        self, count: int, block_ms: int, *, claim: bool = True, holding_ms: float = 0.0
    ) -> list[Entry]:
        """Up to ``count`` entries, waiting at most ``block_ms`` for the first; with
        ``claim``, entries left pending by a stalled or dead consumer come first.
        ``holding_ms``: the reader still holds entries it read this long ago (a batch being
        committed); entries pending for no longer than that are not claimed, so a reader
        never claims its own batch back."""
        ...

    def ack(self, ids: Sequence[str]) -> None: ...

    def fail(self, entry: Entry, error: str) -> bool:
        """Note that ``entry`` failed; True when it was set aside (dead-lettered, acked)."""
        ...

    def set_aside(self, entry: Entry, error: str) -> None:
        """Dead-letter ``entry`` with ``error`` now, and acknowledge it."""
        ...

    def idle(self) -> bool:
        """Nothing waiting and nothing delivered but unacknowledged."""
        ...


class Sink(Protocol):
    def publish(self, key: str, decision: dict[str, Any]) -> bool:
        """Publish ``decision`` unless ``key`` was published before; True when published."""
        ...


def _redis_position(entry_id: str) -> int:
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1_000_000 + int(seq or 0)


class RedisStreamSource:
    """A Redis Stream read through a consumer group.

    ``read`` first claims entries another consumer left pending longer than ``claim_idle_ms``
    (XAUTOCLAIM: a crashed worker's batch); an entry delivered more than ``max_tries`` times
    that way goes to the dead-letter stream (``<stream>:dead``). Then XREADGROUP with COUNT and
    BLOCK. Failures are counted per entry in the hash ``<stream>:<group>:failures``."""

    def __init__(
        self,
        client: Any,
        stream: str,
        group: str,
        *,
        consumer: str | None = None,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        max_tries: int = MAX_TRIES,
        dead_letter: str | None = None,
    ) -> None:
        import redis

        self.client = client
        self.stream = stream
        self.group = group
        self.name = f"redis:{stream}"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_idle_ms = int(claim_idle_ms)
        self.max_tries = int(max_tries)
        self.dead_letter = dead_letter or f"{stream}:dead"
        self.failures = f"{stream}:{group}:failures"
        self._claim_from = "0-0"
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @classmethod
    def connect(cls, url: str, stream: str, group: str, **options: Any) -> RedisStreamSource:
        return cls(redis_client(url), stream, group, **options)

    def _entries(self, raw: Sequence[Any]) -> list[Entry]:
        return [
            Entry(str(i), {str(k): str(v) for k, v in f.items()}, _redis_position(str(i)))
            for i, f in raw
            if f is not None
        ]

    def read(
        self, count: int, block_ms: int, *, claim: bool = True, holding_ms: float = 0.0
    ) -> list[Entry]:
        if claim:
            # Redis stamps a delivery with its cached clock, which may lag by its clock tick
            # (up to 100 ms at the default hz 10), so what this reader holds may look that
            # much older to XAUTOCLAIM: hence the margin.
            least = math.ceil(holding_ms) + HOLDING_MARGIN_MS if holding_ms > 0 else 1
            entries = self._claim(count, max(self.claim_idle_ms, least))
            if entries:
                return entries
        # block_ms 0: no BLOCK at all, only what is waiting now (Redis checks a BLOCK's
        # timeout on its clock ticks, so even BLOCK 1 waits for the next entry, up to ~10 ms).
        got = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=block_ms if block_ms > 0 else None,
        )
        return self._entries(got[0][1]) if got else []

    def _claim(self, count: int, min_idle_ms: int) -> list[Entry]:
        claimed = self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=min_idle_ms,
            start_id=self._claim_from,
            count=count,
        )
        self._claim_from = str(claimed[0])
        return self._over_delivered(self._entries(claimed[1]))

    def _over_delivered(self, entries: list[Entry]) -> list[Entry]:
        """Claimed entries delivered more than ``max_tries`` times (a worker died on each of
        them, or kept failing) are set aside; the others are returned."""
        keep = []
        for e in entries:
            info = self.client.xpending_range(self.stream, self.group, e.id, e.id, 1)
            times = int(info[0]["times_delivered"]) if info else 1
            if times > self.max_tries:
                error = f"delivered {times} times without being acknowledged"
                self._set_aside(e, error, times)
                metrics.dead_lettered(e.id, e.fields.get(EXTERNAL_ID), error)
            else:
                keep.append(e)
        return keep

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            pipe = self.client.pipeline(transaction=True)
            pipe.xack(self.stream, self.group, *ids)
            pipe.hdel(self.failures, *ids)
            pipe.execute()

    def fail(self, entry: Entry, error: str) -> bool:
        tries = int(self.client.hincrby(self.failures, entry.id, 1))
        if tries < self.max_tries:
            return False
        self._set_aside(entry, error, tries)
        return True

    def set_aside(self, entry: Entry, error: str) -> None:
        self._set_aside(entry, error, 0)

    def _set_aside(self, entry: Entry, error: str, tries: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        fields = {**entry.fields, "_entry_id": entry.id, "_error": error[:2000], "_tries": tries}
        pipe.xadd(self.dead_letter, fields)
        pipe.xack(self.stream, self.group, entry.id)
        pipe.hdel(self.failures, entry.id)
        pipe.execute()

    def idle(self) -> bool:
        summary = self.client.xpending(self.stream, self.group)
        if int(summary["pending"]):
            return False
        groups = self.client.xinfo_groups(self.stream)
        mine = next((g for g in groups if str(g["name"]) == self.group), None)
        if mine is None:
            return True
        if mine.get("lag") is not None:
            return not int(mine["lag"])
        # Lag unknown (entries deleted mid-stream): compare the group's last id with the stream's.
        last = self.client.xinfo_stream(self.stream)["last-generated-id"]
        return str(mine["last-delivered-id"]) == str(last)


# KEYS: the stream, the hash of keys added. ARGV: the key, then the entry's fields and values.
_ADD_ONCE = """
if redis.call('HSETNX', KEYS[2], ARGV[1], '1') == 1 then
  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
end
return false
"""


class RedisStreamSink:
    """Decisions to a Redis Stream, each key once: the key's mark in ``<stream>:published``
    and the XADD happen in one Lua script, which Redis runs atomically, so a worker killed at
    any point publishes a decision either once or not at all."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.published = f"{stream}:published"
        self._script = client.register_script(_ADD_ONCE)

    @classmethod
    def connect(cls, url: str, stream: str) -> RedisStreamSink:
        return cls(redis_client(url), stream)

    def publish(self, key: str, decision: dict[str, Any]) -> bool:
        payload = json.dumps(decision, sort_keys=True)
        args = [key, "key", key, "decision", payload]
        return self._script(keys=[self.stream, self.published], args=args) is not None


class RedisStreamFeed:
    """Items onto a worker's input stream, each external id once (``<stream>:external_ids``
    marks it in the same atomic script as the XADD)."""

    def __init__(self, client: Any, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.added = f"{stream}:external_ids"
        self._script = client.register_script(_ADD_ONCE)

    def add(self, external_id: str, fields: dict[str, Any]) -> bool:
        """XADD the item unless its external id was added before; True when added now."""
        args: list[Any] = [external_id, EXTERNAL_ID, external_id]
        for k, v in fields.items():
            if k != EXTERNAL_ID:
                args += [k, str(v)]
        return self._script(keys=[self.stream, self.added], args=args) is not None


def redis_client(url: str) -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - a default dependency
        raise LabelloopError("stream workers need redis-py: pip install 'redis>=5'") from None
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise LabelloopError(f"cannot reach Redis at {url}: {exc}") from None
    return client


class InProcessSource:
    """The embedded default: entries put on a ``queue.Queue`` by this process. Same semantics
    as the Redis source: an entry read and not acknowledged is pending, and is handed out
    again (claimed) once pending ``claim_idle_ms``; a failed entry goes back on the queue
    until ``max_tries``, then to ``dead`` with its error."""

    def __init__(
        self,
        *,
        max_tries: int = MAX_TRIES,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        name: str = "in-process",
    ) -> None:
        self.name = name
        self.max_tries = max_tries
        self.claim_idle_ms = claim_idle_ms
        self.queue: queue.Queue[Entry] = queue.Queue()
        self.pending: dict[str, tuple[Entry, float]] = {}  # id -> (entry, when handed out)
        self.failures: dict[str, int] = {}
        self.dead: list[tuple[Entry, str]] = []
        self._lock = threading.Lock()
        self._next = 0

    def put(self, fields: dict[str, Any]) -> str:
        with self._lock:
            self._next += 1
            n = self._next
        entry = Entry(f"{n}-0", {str(k): str(v) for k, v in fields.items()}, n)
        self.queue.put(entry)
        return entry.id

    def read(
        self, count: int, block_ms: int, *, claim: bool = True, holding_ms: float = 0.0
    ) -> list[Entry]:
        now = time.monotonic()
        if claim:
            least = max(self.claim_idle_ms, holding_ms + 1)
            with self._lock:
                idle = [e for e, t in self.pending.values() if (now - t) * 1000 >= least][:count]
                self.pending.update({e.id: (e, now) for e in idle})
            if idle:
                return idle
        out: list[Entry] = []
        try:
            if block_ms > 0:
                out.append(self.queue.get(timeout=block_ms / 1000))
            while len(out) < count:
                out.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        with self._lock:
            self.pending.update({e.id: (e, time.monotonic()) for e in out})
        return out

    def ack(self, ids: Sequence[str]) -> None:
        with self._lock:
            for i in ids:
                self.pending.pop(i, None)
                self.failures.pop(i, None)

    def fail(self, entry: Entry, error: str) -> bool:
        with self._lock:
            self.pending.pop(entry.id, None)
            tries = self.failures[entry.id] = self.failures.get(entry.id, 0) + 1
            if tries >= self.max_tries:
                self.dead.append((entry, error))
                return True
        self.queue.put(entry)
        return False

    def set_aside(self, entry: Entry, error: str) -> None:
        with self._lock:
            self.pending.pop(entry.id, None)
            self.failures.pop(entry.id, None)
            self.dead.append((entry, error))

    def idle(self) -> bool:
        with self._lock:
            return self.queue.empty() and not self.pending


class InProcessSink:
    """Decisions kept in a list, each key once."""

    def __init__(self) -> None:
        self.decisions: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def publish(self, key: str, decision: dict[str, Any]) -> bool:
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
            self.decisions.append(decision)
            return True


# -- the worker --------------------------------------------------------------------------------
@dataclass
class StreamReport:
    batches: int = 0
    entries: int = 0
    decided: int = 0  # decisions made now (not found stored)
    published: int = 0
    already_published: int = 0
    set_aside: int = 0  # dead-lettered: rejected rows, poison items
    retried: int = 0  # failures short of max_tries (the entry comes back)
    model_version: str | None = None
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the last few poison errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _EntryReader:
    """The batch's good records as an ingest reader."""

    def __init__(self, source_id: str, records: list[RawRecord]) -> None:
        self.source_id = source_id
        self._records = records

    def columns(self) -> list[str] | None:
        return None

    def records(self) -> Iterator[RawRecord]:
        return iter(self._records)

    def size_hint(self) -> int | None:
        return len(self._records)


class _Prepared:
    """A batch's entries that make items: their records, hashes and external ids."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.records: list[RawRecord] = []
        self.hashes: list[str] = []
        self.externals: list[str | None] = []

    def entry_ids(self) -> list[str]:
        return list(dict.fromkeys(e.id for e in self.entries))

    def of_entry(self, entry_id: str) -> _Prepared:
        """The records of one entry (one, or a video's frames)."""
        out = _Prepared()
        for k, e in enumerate(self.entries):
            if e.id == entry_id:
                out.entries.append(e)
                out.records.append(self.records[k])
                out.hashes.append(self.hashes[k])
                out.externals.append(self.externals[k])
        return out


class StreamWorker:
    """Decides stream entries in micro-batches; see the module doc.

    ``before_labeling(entries)`` is called inside a batch just before the labelers run
    (raising there is a labeler raising); ``before_publish(entries)`` after the batch's
    decisions are committed, before any is published. Both are for tests and probes."""

    def __init__(
        self,
        ctx: ProjectContext,
        source: Source,
        sink: Sink,
        *,
        batch_size: int = 64,
        max_wait_ms: int = 200,
        linger_ms: int = 0,
        name: str | None = None,
        before_labeling: Callable[[list[Entry]], None] | None = None,
        before_publish: Callable[[list[Entry]], None] | None = None,
        after_batch: Callable[[], Any] | None = None,
    ) -> None:
        self.image = ctx.config.modality == Modality.image
        self.image_roots = [(ctx.folder / d).resolve() for d in ctx.config.ingest.import_dirs]
        if self.image and not self.image_roots:
            raise LabelloopError(
                f"project {ctx.config.name!r}: image entries name files, which a stream worker "
                "reads only inside ingest.import_dirs; set it in the project file"
            )
        if batch_size < 1 or max_wait_ms < 1:
            raise LabelloopError(
                f"batch_size={batch_size}, max_wait_ms={max_wait_ms}: both must be at least 1"
            )
        self.ctx = ctx
        self.source = source
        self.sink = sink
        self.batch_size = batch_size
        self.max_wait_ms = max_wait_ms
        self.linger_ms = max(0, int(linger_ms))
        self.name = name or f"stream-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.before_labeling = before_labeling
        self.before_publish = before_publish
        self.after_batch = after_batch  # between batches, idle or not (LabelPublisher.step)
        self.builder = ItemBuilder(ctx.config)
        self.report = StreamReport()
        self._stop = threading.Event()
        self._rule: Any = None
        self._labeler: Any = None
        self._embedding_writes = WriteBehindCache(InMemoryEmbeddingCache())
        self._seconds: dict[str, float] = {}  # this batch's seconds per stage (its log line)
        self._in_flight: Future[None] | None = None  # the batch being committed
        self._in_flight_read_at = 0.0  # when it was read (time.monotonic)
        self._in_flight_ids: set[str] = set()  # its entries

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the current batch, then return from ``run``."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until_idle: bool = False, max_batches: int | None = None) -> StreamReport:
        """Decide batches until ``stop()``; with ``until_idle``, also when the source has
        nothing waiting and nothing pending.

        Pipelined: a batch's writes, publications and acknowledgement (``_commit``) run on a
        second thread while the next batch is read and labeled, so a batch's store round trips
        do not add to the next one's wait (onnxruntime releases the GIL while it embeds). At
        most one batch is being committed at a time, and always under the rule it was labeled
        with: the rule is refrozen only after the commit in flight is done."""
        started = time.perf_counter()
        done = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-commit") as pool:
            try:
                while not self.stopping and (max_batches is None or done < max_batches):
                    read_started, read_at = time.perf_counter(), time.monotonic()
                    entries = self._gather()
                    if entries:
                        metrics.observe_stage(
                            "read", time.perf_counter() - read_started, self._seconds
                        )
                        commit = self._label_batch(entries)
                        self._drain()
                        if commit is not None:
                            self._in_flight = pool.submit(commit)
                            self._in_flight_read_at = read_at
                            self._in_flight_ids = {e.id for e in entries}
                        done += 1
                    else:
                        self._drain()  # nothing new: finish what is in flight first
                    if self.after_batch is not None:
                        self.after_batch()
                    if not entries and until_idle and self.source.idle():
                        break
            finally:
                self._drain()
        self.report.seconds += time.perf_counter() - started
        return self.report

    def _holding_ms(self) -> float:
        """How long ago the batch being committed was read (0: none is)."""
        if self._in_flight is None:
            return 0.0
        return (time.monotonic() - self._in_flight_read_at) * 1000

    def _drain(self) -> None:
        """Wait for the batch being committed, if any (its error, if it failed, raises here)."""
        in_flight, self._in_flight, self._in_flight_ids = self._in_flight, None, set()
        if in_flight is not None:
            in_flight.result()

    def _gather(self) -> list[Entry]:
        """One micro-batch: ``batch_size`` entries, or what arrived by ``max_wait_ms``, or,
        once the batch has entries, what else is waiting within ``linger_ms``, whichever comes
        first. Under light load a batch closes as soon as the stream is momentarily empty (a
        waiting item is not held back to fill it); under heavy load each read returns many
        entries at once, so batches grow with the backlog and throughput with them."""
        deadline = time.monotonic() + self.max_wait_ms / 1000
        out: list[Entry] = []
        while len(out) < self.batch_size and not self.stopping:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                break
            wait = left if not out else min(left, self.linger_ms)  # 0: only what waits now
            # Claims only on the first read: the entries of this batch are pending too.
            got = self.source.read(
                self.batch_size - len(out), wait, claim=not out, holding_ms=self._holding_ms()
            )
            if self._in_flight is not None:  # never the batch being committed, whatever clocks say
                got = [e for e in got if e.id not in self._in_flight_ids]
            if not got and out:
                break
            out.extend(got)
        return out

    # -- one batch ---------------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> None:
        """Decide, store, publish and acknowledge one batch (module doc, steps 1-4), here and
        now (``run`` overlaps the commit with the next batch)."""
        commit = self._label_batch(entries)
        if commit is not None:
            commit()

    def _label_batch(self, entries: list[Entry]) -> Callable[[], None] | None:
        """Steps 1-2 of one batch; returns its commit (steps 3-4), or None when the worker
        stops before any write (the batch stays pending for another worker)."""
        self.report.batches += 1
        self.report.entries += len(entries)
        metrics.BATCH_SIZE.observe(len(entries))
        if not self._refresh_rule():
            self._seconds = {}
            return None
        labeled = self._labeled(self._prepare(entries), isolate=True)
        seconds, self._seconds = self._seconds, {}

        def commit() -> None:
            decisions: dict[str, int] = {}
            for prepared, frame in labeled:
                self._commit(prepared, frame, seconds, decisions)
            metrics.batch_done(self.source, len(entries), seconds, decisions)

        return commit

    def _labeled(
        self, prepared: _Prepared, *, isolate: bool
    ) -> list[tuple[_Prepared, pd.DataFrame]]:
        """The batch's records with the labelers' results; when a labeler raises, each entry
        is labeled alone, and the entries that still make it raise are failed."""
        if not prepared.entries:
            return []
        try:
            if self.before_labeling is not None:
                self.before_labeling(prepared.entries)
            return [(prepared, self._label(prepared))]
        except Exception as exc:  # a labeler raised: find the entries that make it raise
            ids = prepared.entry_ids()
            if len(ids) == 1 or not isolate:
                for entry_id in ids:
                    self._failed(prepared.of_entry(entry_id).entries[0], exc)
                return []
            out: list[tuple[_Prepared, pd.DataFrame]] = []
            for entry_id in ids:
                out.extend(self._labeled(prepared.of_entry(entry_id), isolate=False))
            return out

    def _failed(self, entry: Entry, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.report.errors = [*self.report.errors[-4:], error]
        if self.source.fail(entry, error):
            self.report.set_aside += 1
            metrics.dead_lettered(entry.id, entry.fields.get(EXTERNAL_ID), error)
        else:
            self.report.retried += 1

    def _prepare(self, entries: list[Entry]) -> _Prepared:
        out = _Prepared()
        for e in entries:
            fields = dict(e.fields)
            external = fields.pop(EXTERNAL_ID, None)
            if external is None and self.ctx.config.id_field:
                external = fields.get(self.ctx.config.id_field)
            try:
                recs, video = (
                    self._image_records(e, fields)
                    if self.image
                    else ([RawRecord(e.position, fields=fields)], False)
                )
                made = [(rec, self.builder(rec)[1]) for rec in recs]
            except RowRejected as exc:
                self.source.set_aside(e, f"rejected: {exc}")
                self.report.set_aside += 1
                metrics.dead_lettered(e.id, external, f"rejected: {exc}")
                continue
            for rec, digest in made:
                out.entries.append(e)
                out.records.append(rec)
                out.hashes.append(digest)
                # each frame of a video is an item with its own decision
                frame = f"#frame={rec.fields['frame']}" if video and external is not None else ""
                out.externals.append(None if external is None else f"{external}{frame}")
        return out

    def _image_records(self, e: Entry, fields: dict[str, str]) -> tuple[list[RawRecord], bool]:
        """An image entry's file (``path``, or a column the bulk labeler knows) read as
        ingest reads one, or a video's sampled frames (one record each, ``video:`` settings;
        the frames are written under the project's media folder), and whether it was a video.
        A path outside ``ingest.import_dirs`` (after resolving ``..`` and links) or an
        unreadable file is a RowRejected, so the entry is set aside."""
        from labelloop.sources.readers import read_image_file
        from labelloop.sources.video import VIDEO_SUFFIXES, frame_records
        from labelloop.workers.bulk import IMAGE_PATH_COLUMNS

        given = next((fields[c] for c in IMAGE_PATH_COLUMNS if fields.get(c)), None)
        if not given:
            raise RowRejected("missing content: no image path")
        try:
            real = Path(given).expanduser().resolve()
        except (OSError, ValueError):
            raise RowRejected("unreadable image path") from None
        if not any(real.is_relative_to(root) for root in self.image_roots):
            raise RowRejected("image path outside ingest.import_dirs")
        if real.suffix.lower() in VIDEO_SUFFIXES:
            if not real.is_file():
                raise RowRejected(f"unreadable video: no such file {given}")
            frames = frame_records(
                real, str(real), self.ctx.folder / "media", self.ctx.config.video
            )
            good = [r for r in frames if r.error is None]
            if not good:
                raise RowRejected("unreadable video: no frame could be read")
            for rec in good:  # a stable sighting per entry and frame
                rec.position = _position(f"{self.source.name}:{e.id}", str(rec.fields["frame"]))
                rec.fields = {**fields, **rec.fields}
            return good, True
        rec = read_image_file(real, str(real), e.position, self.ctx.config.ingest.max_image_bytes)
        if rec.error is not None:
            raise RowRejected(rec.error)
        rec.fields = {**fields, **rec.fields}
        return [rec], False

    def _label(self, prepared: _Prepared) -> pd.DataFrame:
        with metrics.stage("label", self._seconds):
            # An image item is labeled from the file ingest read (a video frame's PNG).
            rows = [{"path": r.media_path} if self.image else r.fields for r in prepared.records]
            frame = pd.DataFrame(rows)
            return self._labeler(frame, 0)

    def _commit(
        self,
        prepared: _Prepared,
        result: pd.DataFrame,
        seconds: dict[str, float],
        decisions: dict[str, int],
    ) -> None:
        from labelloop.sources.ingest import ingest
        from labelloop.store.embeddings import put_embeddings
        from labelloop.store.item_lookup import item_ids_by_hash
        from labelloop.store.labels import add_suggestions, set_final_labels
        from labelloop.store.stream_decisions import (
            claim_new_items,
            decisions_for,
            record_decisions,
        )

        ctx, rule = self.ctx, self._rule
        version = rule.model_version or ""
        names = rule.label_names
        # One transaction, so one commit (a WAL flush on PostgreSQL) a batch: the items, the
        # embeddings computed for them, the decisions, suggestions and machine labels.
        with ctx.db.engine.begin() as conn:
            started = time.perf_counter()
            ingest(
                ctx.db,
                ctx.id,
                ctx.config,
                _EntryReader(self.source.name, prepared.records),
                light=True,
                connection=conn,
            )
            ids = item_ids_by_hash(conn, ctx.id, prepared.hashes)
            ingested = time.perf_counter()
            metrics.observe_stage("ingest", ingested - started, seconds)
            rows = self._decision_rows(prepared, result, ids)
            for model_id, hashes, vectors in self._embedding_writes.take():
                put_embeddings(conn, model_id, hashes, vectors)
            new = record_decisions(conn, ctx.id, rows)
            moved = claim_new_items(conn, sorted(new))  # new -> suggested, only if still new
            fresh = [r for r in rows if r["item_id"] in moved]
            if fresh:
                probs = result.iloc[[r["_k"] for r in fresh]][[f"p_{n}" for n in names]]
                items = [
                    Item(content="", content_hash=prepared.hashes[r["_k"]], id=r["item_id"])
                    for r in fresh
                ]
                ensemble = self._labeler.labelers.ensemble
                add_suggestions(
                    conn, ensemble.suggestions_from_proba(items, probs.to_numpy(float), 0.0)
                )
                set_final_labels(
                    conn,
                    [
                        {
                            "project_id": ctx.id,
                            "item_id": r["item_id"],
                            "labels": str(r["label"]).split("|"),
                            "source_kind": "machine",
                            "source_name": "ensemble",
                            "source_version": ensemble.version,
                            "confidence": r["confidence"],
                        }
                        for r in fresh
                        if r["decision"] == "auto" and not r["_audit"]
                    ],
                )
            stored = decisions_for(conn, ctx.id, [r["item_id"] for r in rows], version)
        metrics.observe_stage("store", time.perf_counter() - ingested, seconds)
        self.report.decided += len(new)
        for r in rows:
            if r["item_id"] in new:
                decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
                metrics.DECISIONS.labels(decision=r["decision"]).inc()
        if self.before_publish is not None:
            self.before_publish(prepared.entries)
        with metrics.stage("publish", seconds):
            for r in rows:
                decision = stored[r["item_id"]]
                key = f"{decision['item_id']}:{version}"
                if self.sink.publish(key, {**decision, "project": ctx.config.name}):
                    self.report.published += 1
                else:
                    self.report.already_published += 1
            self.source.ack([e.id for e in prepared.entries])

    def _decision_rows(
        self, prepared: _Prepared, result: pd.DataFrame, ids: dict[str, int]
    ) -> list[dict[str, Any]]:
        """One decision row per distinct item of the batch (the same content twice in a batch
        is one item with one decision); ``_k`` is its first entry's row in ``result``."""
        rule = self._rule
        rows: list[dict[str, Any]] = []
        seen: set[int] = set()
        labels, confidences = result["label"].to_numpy(object), result["confidence"].to_numpy()
        decisions, reasons, audits = result["decision"], result["reason"], result["audit"]
        for k, h in enumerate(prepared.hashes):
            item_id = ids[h]
            if item_id in seen:
                continue
            seen.add(item_id)
            label, confidence = labels[k], confidences[k]
            rows.append(
                {
                    "item_id": item_id,
                    "model_version": rule.model_version or "",
                    "model_version_id": rule.model_version_id,
                    "external_id": prepared.externals[k],
                    "decision": str(decisions.iat[k]),
                    "label": None if pd.isna(label) else str(label),
                    "confidence": None if pd.isna(confidence) else float(confidence),
                    "reason": str(reasons.iat[k]),
                    "_k": k,
                    "_audit": bool(audits.iat[k]),
                }
            )
        return rows

    # -- the rule ----------------------------------------------------------------------------
    def _refresh_rule(self) -> bool:
        """Freeze the rule at the start and again when a newer model version is stored."""
        from labelloop.labelers.factory import MODEL_KIND
        from labelloop.store.loop_state import latest_model_version

        latest = latest_model_version(self.ctx.db, self.ctx.id, MODEL_KIND)
        latest_id = latest.id if latest is not None else None
        if self._rule is not None and self._rule.model_version_id == latest_id:
            return True
        self._drain()  # the batch in flight commits under the rule it was labeled with
        rule = self._freeze()
        if rule is None:  # stopped while waiting for the lease
            return False
        self._rule = rule
        from labelloop.embed.factory import project_embedder
        from labelloop.workers.bulk import BlockLabeler

        self._labeler = BlockLabeler(self._rule)
        # Unlike a bulk run's pool, embed through the store's cache: the loop's route then
        # finds these items' vectors, and a redelivered batch is not embedded again. New
        # vectors are written with the batch's decisions (``_commit``), in its transaction.
        embedder = project_embedder(self.ctx)
        if isinstance(embedder, CachedEmbedder):
            self._embedding_writes = WriteBehindCache(embedder.cache)
            embedder.cache = self._embedding_writes
        self._labeler.embedder = embedder
        self.report.model_version = self._rule.model_version
        return True

    def _freeze(self) -> Any:
        """``bulk.freeze_rule`` under the loop's lease: it may train (labels changed since the
        last model version), and one retrain at a time holds for stream workers too."""
        from labelloop.store.loop_state import acquire_lease, release_lease
        from labelloop.workers.bulk import freeze_rule
        from labelloop.workers.loop_worker import LEASE

        while not self.stopping:
            token = acquire_lease(self.ctx.db, self.ctx.id, LEASE, self.name, 900)
            if token is not None:
                try:
                    return freeze_rule(self.ctx)
                finally:
                    release_lease(self.ctx.db, self.ctx.id, LEASE, self.name, token)
            self._stop.wait(1.0)
        return None


@contextmanager
def stop_on_sigterm(worker: StreamWorker) -> Iterator[None]:
    """Within the block, SIGTERM (and SIGINT) make ``worker`` finish its batch and return from
    ``run``; the previous handlers come back after it."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in before:
        signal.signal(sig, lambda *_: worker.stop())
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@dataclass
class SubmitReport:
    added: int = 0  # external ids seen for the first time
    already: int = 0  # sent before with the same content: nothing new
    conflicts: int = 0  # sent before with other content: refused
    rejected: int = 0  # refused by validation (the reason per item)
    streamed: int = 0  # put on the input stream now
    items: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit_items(
    ctx: ProjectContext,
    items: Sequence[tuple[str, dict[str, Any]]],
    *,
    feed: RedisStreamFeed | None = None,
    source: str = "api:items",
) -> SubmitReport:
    """Items (external id, content fields) into the project, idempotent by external id: the
    id is pinned to its first content (``store.stream_decisions.claim_external_ids``); the
    same id again adds nothing, with other content it is a conflict. Accepted items are
    ingested (content-hash dedup) and, with a ``feed``, put on the stream workers' input
    stream once per external id; without one the loop worker picks them up."""
    from labelloop.sources.ingest import ingest
    from labelloop.store.item_lookup import item_ids_by_hash
    from labelloop.store.stream_decisions import claim_external_ids

    report = SubmitReport()
    builder = ItemBuilder(ctx.config)
    built: list[tuple[str, dict[str, Any], str]] = []
    for external, fields in items:
        content = {k: v for k, v in fields.items() if k != EXTERNAL_ID}
        try:
            _, digest, _, _ = builder(RawRecord(0, fields=content))
        except RowRejected as exc:
            report.rejected += 1
            report.items.append({"external_id": external, "status": "rejected", "reason": str(exc)})
            continue
        built.append((external, content, digest))
    with ctx.db.engine.begin() as conn:  # one commit: the ids pinned and their items
        new, pinned = claim_external_ids(conn, ctx.id, [(e, h) for e, _, h in built])
        accepted = [b for b in built if pinned.get(b[0]) == b[2]]
        records = [
            RawRecord(_position(source, e), fields=dict(c)) for e, c, _ in accepted if e in new
        ]
        if records:
            reader = _EntryReader(source, records)
            ingest(ctx.db, ctx.id, ctx.config, reader, light=True, connection=conn)
        ids = item_ids_by_hash(conn, ctx.id, [h for _, _, h in accepted])
    for external, content, digest in built:
        row: dict[str, Any] = {"external_id": external, "item_id": ids.get(digest)}
        if pinned.get(external) != digest:
            report.conflicts += 1
            row |= {"status": "conflict", "item_id": None}
            row["reason"] = "this external_id was sent before with other content"
        elif external in new:
            report.added += 1
            row["status"] = "added"
        else:
            report.already += 1
            row["status"] = "already"
        if row["status"] != "conflict" and feed is not None and feed.add(external, content):
            report.streamed += 1
        report.items.append(row)
    return report


def _position(source: str, external_id: str) -> int:
    """A stable 62-bit position for an external id (the ingest's sighting of the item)."""
    import hashlib

    digest = hashlib.sha256(f"{source}\0{external_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def decisions_by_external_id(decisions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Published decisions keyed by external id (for comparing runs)."""
    return {str(d.get("external_id")): d for d in decisions}
