"""The device's local record of its answers, until the server has them.

One SQLite file: the device's id (a uuid made once, kept in the file, so a copied bundle on
another device is another device as long as the file is not copied too) and one row per
answer with a local id. ``sync`` sends unsynced rows and marks them only after the server
answered 2xx; the server keys results by (device id, local id), so a batch sent twice (the
answer was lost, the process died before marking) is stored once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    probabilities TEXT NOT NULL,
    needs_review INTEGER NOT NULL,
    text TEXT,
    model_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    synced_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_results_unsynced ON results (id) WHERE synced_at IS NULL;
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ResultBuffer:
    """Answers waiting to be synced, in a SQLite file (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('device_id', ?)",
                (str(uuid.uuid4()),),
            )
        self.device_id: str = self._conn.execute(
            "SELECT value FROM meta WHERE key = 'device_id'"
        ).fetchone()[0]

    def add(self, rows: Sequence[dict[str, Any]], model_version: str) -> list[int]:
        """Store answers; their local result ids, in order."""
        now = _now()
        ids = []
        with self._lock, self._conn:
            for r in rows:
                cur = self._conn.execute(
                    "INSERT INTO results (source_id, label, confidence, probabilities, "
                    "needs_review, text, model_version, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        None if r.get("id") is None else str(r["id"]),
                        r["label"],
                        float(r["confidence"]),
                        json.dumps(r["probabilities"]),
                        int(bool(r["needs_review"])),
                        r.get("text"),
                        model_version,
                        now,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def unsynced(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` answers the server does not have yet, as sync sends them."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT id, label, confidence, needs_review, text, model_version, created_at "
                "FROM results WHERE synced_at IS NULL ORDER BY id LIMIT ?",
                (limit,),
            )
            rows = cur.fetchall()
        out = []
        for rid, label, confidence, needs_review, text, version, created in rows:
            row = {
                "result_id": rid,
                "label": label,
                "confidence": confidence,
                "needs_review": bool(needs_review),
                "model_version": version,
                "created_at": created,
            }
            if needs_review and text is not None:
                row["text"] = text
            out.append(row)
        return out

    def mark_synced(self, result_ids: Sequence[int]) -> None:
        now = _now()
        with self._lock, self._conn:
            self._conn.executemany(
                "UPDATE results SET synced_at = ? WHERE id = ?", [(now, int(i)) for i in result_ids]
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            total, synced = self._conn.execute(
                "SELECT COUNT(*), COUNT(synced_at) FROM results"
            ).fetchone()
        return {"results": int(total), "synced": int(synced), "unsynced": int(total - synced)}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
