"""Response caches: the same content asked of the same model and prompt is paid for once.

A backend stores small JSON-serialisable dicts by a string key. ``MemoryCache`` lives for the
process; ``labelloop.store.llm_cache.SQLiteCache`` keeps answers in a file across runs (SQL
lives in ``store``).
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Protocol


class ResponseCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


def cache_key(model: str, prompt_version: str, content_hash: str, fingerprint: str = "") -> str:
    """Key of one answer. ``fingerprint`` covers what else shapes it (taxonomy, method)."""
    raw = "\x1f".join([model, prompt_version, content_hash, fingerprint])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class MemoryCache:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            value = self._data.get(key)
            return dict(value) if value is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._data[key] = dict(value)
