"""Send the buffered answers to the server: ``POST {url}/api/edge/sync``, JSON, Bearer token.

Batches go oldest first; a batch is marked synced only after a 2xx answer, so a lost answer
or a crash between the server's commit and the mark means the batch is sent again, and the
server (keyed by device id and local result id) stores it once. A 413 (the server's
``api.max_body_bytes``) halves the batch and tries again.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from labelloop.edge.buffer import ResultBuffer

SYNC_PATH = "/api/edge/sync"
MAX_BATCH = 5000  # the server's limit per request


class SyncError(Exception):
    """The server refused a batch or could not be reached; what was sent before stays synced."""


def post_json(url: str, token: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    data = json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        },
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        body = response.read()
    return json.loads(body) if body else {}


def sync_buffer(
    buffer: ResultBuffer,
    url: str,
    token: str,
    *,
    batch: int = 500,
    timeout: float = 10,
) -> dict[str, int]:
    """Send every unsynced answer; counts of what was sent and what the server found new."""
    if not url.startswith(("http://", "https://")):
        raise SyncError(f"{url!r}: the server URL must start with http:// or https://")
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch must be 1 to {MAX_BATCH}, got {batch}")
    endpoint = url.rstrip("/") + SYNC_PATH
    totals = {"sent": 0, "new": 0, "queued": 0, "batches": 0}
    size = batch
    while True:
        rows = buffer.unsynced(size)
        if not rows:
            return totals
        payload = {"device_id": buffer.device_id, "results": rows}
        try:
            answer = post_json(endpoint, token, payload, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 413 and size > 1:
                size = max(1, size // 2)
                continue
            raise SyncError(f"{endpoint}: HTTP {exc.code}: {_detail(exc)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SyncError(f"{endpoint}: {exc}") from None
        buffer.mark_synced([r["result_id"] for r in rows])
        totals["sent"] += len(rows)
        totals["new"] += int(answer.get("new", 0))
        totals["queued"] += int(answer.get("queued", 0))
        totals["batches"] += 1


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
        return str(json.loads(body).get("detail", body))[:500]
    except Exception:  # noqa: BLE001 - the status alone still says what happened
        return exc.reason if isinstance(exc.reason, str) else ""
