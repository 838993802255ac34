"""Alert delivery: the log always, and each configured webhook at or above its severity.

A webhook gets ``POST`` JSON (``event``: ``alert.opened`` or ``alert.resolved``, the rule,
metric, value, bound, severity, message, project, time); with ``secret_env`` set the body is
signed with HMAC-SHA256 in ``X-Labelloop-Signature: sha256=<hex>`` so the receiver can check
it came from us. Failed tries back off (1, 2, 4 s, capped) up to ``tries``; the outcome of
each delivery is stored with the alert, and a webhook that stays down never stops the check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from labelloop.core.config import WebhookSpec

log = logging.getLogger("labelloop.alerts")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    event: dict[str, Any],
    webhooks: Sequence[WebhookSpec],
    *,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Log ``event`` and POST it to each webhook that wants its severity; one result per
    webhook (url, ok, status or error, tries)."""
    level = logging.INFO if event["event"].endswith("resolved") else logging.WARNING
    log.log(level, "%s", json.dumps(event, default=str))
    body = json.dumps(event, default=str, sort_keys=True).encode()
    results = []
    own = client is None
    client = client or httpx.Client()
    try:
        for hook in webhooks:
            if SEVERITY_RANK[event["severity"]] < SEVERITY_RANK[hook.min_severity]:
                continue
            headers = {"Content-Type": "application/json"}
            if hook.secret_env:
                secret = os.environ.get(hook.secret_env)
                if not secret:
                    results.append(
                        {"url": hook.url, "ok": False, "error": f"{hook.secret_env} is not set"}
                    )
                    continue
                headers["X-Labelloop-Signature"] = sign(body, secret)
            results.append(_post(client, hook, body, headers, sleep))
    finally:
        if own:
            client.close()
    return results


def _post(
    client: httpx.Client,
    hook: WebhookSpec,
    body: bytes,
    headers: dict[str, str],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    outcome: dict[str, Any] = {"url": hook.url, "ok": False}
    for attempt in range(1, hook.tries + 1):
        outcome["tries"] = attempt
        try:
            response = client.post(
                hook.url, content=body, headers=headers, timeout=hook.timeout_seconds
            )
            outcome["status"] = response.status_code
            if response.is_success:
                outcome["ok"] = True
                return outcome
        except httpx.HTTPError as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        if attempt < hook.tries:
            sleep(min(2.0 ** (attempt - 1), 30.0))
    log.warning("webhook %s failed after %d tries: %s", hook.url, hook.tries, outcome)
    return outcome
