"""Decisions to a webhook, at least once: a consumer group on the decisions stream.

The stream workers publish each decision once to their output Redis Stream; the relay reads
that stream through its own consumer group (``webhooks`` by default) and POSTs every entry
to the URL as JSON, signed with HMAC-SHA256 (``X-Labelloop-Signature: sha256=<hex>``) when a
secret is given, with ``X-Labelloop-Key`` (the decision's key: receivers deduplicate by it,
since a relay killed between the POST and the acknowledgement sends it again). An entry is
acknowledged after a 2xx; a failed POST is retried with backoff up to ``tries`` times in a row,
then counted as one failure of the entry, which stays pending and is tried again later; after
``max_tries`` failures it goes to the dead-letter stream ``<stream>:webhook-dead`` with the
error, and the relay goes on. A crashed relay's entries are claimed by another (XAUTOCLAIM),
like the workers'. Because the relay reads the stream rather than sitting inside the worker, a
slow or down receiver never slows the decisions, and the stream is the backlog.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from labelloop.automate.notify import sign
from labelloop.workers.stream import Entry, RedisStreamSource

log = logging.getLogger("labelloop.webhooks")


@dataclass
class RelayReport:
    delivered: int = 0
    failed: int = 0  # failed tries of entries that stayed pending
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class WebhookRelay:
    def __init__(
        self,
        source: RedisStreamSource,
        url: str,
        *,
        secret: str | None = None,
        tries: int = 3,
        timeout: float = 5.0,
        batch: int = 50,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL is http:// or https://, not {url!r}")
        self.source = source
        self.url = url
        self.secret = secret
        self.tries = tries
        self.timeout = timeout
        self.batch = batch
        self.client = client or httpx.Client()
        self._sleep = sleep
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def body(self, entry: Entry) -> bytes:
        fields = dict(entry.fields)
        decision = fields.pop("decision", None)
        event: dict[str, Any] = {"key": fields.get("key"), "entry_id": entry.id}
        event["decision"] = json.loads(decision) if decision else fields
        return json.dumps(event, sort_keys=True).encode()

    def deliver(self, entry: Entry) -> str | None:
        """POST one entry (with retries); None when delivered, else the last error."""
        body = self.body(entry)
        headers = {
            "Content-Type": "application/json",
            "X-Labelloop-Key": entry.fields.get("key", entry.id),
        }
        if self.secret:
            headers["X-Labelloop-Signature"] = sign(body, self.secret)
        error = "not tried"
        for attempt in range(1, self.tries + 1):
            try:
                response = self.client.post(
                    self.url, content=body, headers=headers, timeout=self.timeout
                )
                if response.is_success:
                    return None
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if attempt < self.tries:
                self._sleep(min(2.0 ** (attempt - 1), 30.0))
        return error

    def step(self, block_ms: int = 1000) -> RelayReport:
        report = RelayReport()
        entries = self.source.read(self.batch, block_ms)
        done = []
        for entry in entries:
            error = self.deliver(entry)
            if error is None:
                done.append(entry.id)
                report.delivered += 1
            elif self.source.fail(entry, error):
                report.dead_lettered += 1
                log.warning("webhook: entry %s set aside after failures: %s", entry.id, error)
            else:
                report.failed += 1
        self.source.ack(done)
        return report

    def run(self, *, until_idle: bool = False, block_ms: int = 1000) -> RelayReport:
        total = RelayReport()
        while not self._stop:
            r = self.step(block_ms)
            total.delivered += r.delivered
            total.failed += r.failed
            total.dead_lettered += r.dead_lettered
            if until_idle and self.source.idle():
                break
        return total
