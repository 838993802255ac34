"""What a reader yields: one record per row, or the reason it could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RawRecord:
    """A row as read from a source, before validation.

    ``position`` is the record number in the source (1-based, stable across re-reads, so
    re-ingesting skips what is there); ``line`` is the line in the file where it starts, when
    the source has lines. A record with ``error`` set could not be read and is quarantined.
    ``media_path`` is the item's media file; ``media_bytes`` the bytes whose hash is the item's
    identity (an image's file; for a video frame, its size, time and a digest of its pixels).
    ``label`` is a label the source already gives the row (an image's class folder, a
    manifest's label column): a name, or a list of names; imported when the ingest asks.
    """

    position: int
    fields: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    error: str | None = None
    raw: str = ""
    media_path: str | None = None
    media_bytes: bytes | None = None
    label: Any = None
