"""Turning a raw record into an item row, or a reason to quarantine it."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from hashlib import sha256
from typing import Any

from labelloop.core.config import ALL_COLUMNS, Modality, ProjectConfig
from labelloop.core.errors import IngestError
from labelloop.sources.records import RawRecord


class RowRejected(Exception):
    """Raised inside validation; the message becomes the quarantine reason."""


def reason_kind(reason: str) -> str:
    """The kind of a quarantine reason: every reason reads "kind: detail"."""
    return reason.split(":", 1)[0]


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):  # NUL made visible: PostgreSQL cannot store it in text
        return value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    return str(value)


def _has_nul(value: Any) -> bool:
    """A NUL character anywhere in a value (keys and nested values included)."""
    if type(value) is str:
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _refuse_nul(fields: dict[str, Any]) -> None:
    """PostgreSQL cannot store NUL in text (SQLite can): refuse such a row on every store, so a
    project behaves the same on both and one bad row never sinks its chunk."""
    for key, value in fields.items():  # runs for every row: plain text first, no calls
        if type(value) is str and type(key) is str:
            if "\x00" not in value and "\x00" not in key:
                continue
        elif not (_has_nul(value) or _has_nul(key)):
            continue
        name = str(key).replace("\x00", "\\x00")[:80]
        raise RowRejected(f"nul-character: field {name!r} holds a NUL character (\\x00)")


def check_columns(config: ProjectConfig, columns: list[str] | None, source: str) -> None:
    """Refuse a source whose declared columns lack a content field: every row would be bad."""
    if columns is None or config.modality == Modality.image or config.content_fields == ALL_COLUMNS:
        return
    missing = [f for f in config.content_fields if f not in columns]
    if missing:
        raise IngestError(
            f"{source}: no column {', '.join(map(repr, missing))} for the content "
            f"(the project's content_fields); the columns are {', '.join(columns)}"
        )


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value if isinstance(value, str) else str(value)


def _cell(value: Any) -> Any:
    """A table cell as JSON: None for missing, numbers as numbers, anything else as text."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, bool | int | float):
        return value
    text = _text_of(value)
    return text if text.strip() else None


class ItemBuilder:
    """Turns records into (content, content hash, metadata, external id), or RowRejected.

    Built once per ingest with the project's settings looked up in advance: this runs for
    every row, millions of times.
    """

    def __init__(self, config: ProjectConfig) -> None:
        self.image = config.modality == Modality.image
        self.tabular = config.modality == Modality.tabular
        self.fields = list(config.content_fields)
        # ["*"]: every column but the id and known-label ones (tables with many columns)
        self.all_columns = self.fields == ALL_COLUMNS
        self.skip = {f for f in (config.id_field, config.label_field) if f}
        self.single = self.fields[0] if len(self.fields) == 1 and not self.tabular else None
        self.limit = config.ingest.max_content_chars
        self.id_field = config.id_field

    def __call__(self, rec: RawRecord) -> tuple[str, str, dict[str, Any], str | None]:
        fields = rec.fields
        _refuse_nul(fields)
        if self.image:
            if rec.media_bytes is None:
                raise RowRejected("unreadable image: no image data")
            content = str(fields.get("path", rec.media_path or ""))
            meta = {k: _json_safe(v) for k, v in fields.items()}
            return content, sha256(rec.media_bytes).hexdigest(), meta, None

        if self.single is not None:
            content = self._text(fields, self.single)
            names: tuple[str, ...] | list[str] = (self.single,)
        elif self.tabular:
            names = [k for k in fields if k not in self.skip] if self.all_columns else self.fields
            content = json.dumps(self._cells(fields, names), sort_keys=True, ensure_ascii=False)
        else:
            values = {name: self._text(fields, name) for name in self.fields}
            names = self.fields
            content = "\n".join(f"{k}: {v}" for k, v in values.items())
        if len(content) > self.limit:
            raise RowRejected(f"oversize content: {len(content)} characters > limit {self.limit}")
        meta = {
            k: v if type(v) is str else _json_safe(v) for k, v in fields.items() if k not in names
        }
        external_id = None
        if self.id_field is not None and fields.get(self.id_field) is not None:
            external_id = _text_of(fields[self.id_field])
        return content, sha256(content.encode("utf-8")).hexdigest(), meta, external_id

    @staticmethod
    def _cells(fields: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """A table row's cells: numbers stay numbers, an empty or absent cell is null (a
        missing value the features handle), but a row with no value at all is refused."""
        missing = [n for n in names if n not in fields]
        if len(missing) == len(names):
            raise RowRejected(f"missing content: none of the columns {', '.join(names[:5])}")
        cells = {n: _cell(fields.get(n)) for n in names}
        if all(v is None for v in cells.values()):
            raise RowRejected("missing content: every cell of the row is empty")
        return cells

    @staticmethod
    def _text(fields: dict[str, Any], name: str) -> str:
        try:
            value = fields[name]
        except KeyError:
            raise RowRejected(f"missing content: no field {name!r}") from None
        text = value if type(value) is str else _text_of(value)
        if not text or text.isspace():
            raise RowRejected(f"missing content: field {name!r} is empty")
        return text
