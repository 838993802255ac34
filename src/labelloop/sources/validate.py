"""Turning a raw record into an item row, or a reason to quarantine it."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from labelloop.core.config import Modality, ProjectConfig
from labelloop.core.errors import IngestError
from labelloop.core.hashing import content_hash
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
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def check_columns(config: ProjectConfig, columns: list[str] | None, source: str) -> None:
    """Refuse a source whose declared columns lack a content field: every row would be bad."""
    if columns is None or config.modality == Modality.image:
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


def build_item(config: ProjectConfig, rec: RawRecord) -> tuple[str, str, dict[str, Any], str | None]:
    """(content, content hash, metadata, external id) for a record, or RowRejected."""
    fields = rec.fields
    if config.modality == Modality.image:
        if rec.media_bytes is None:
            raise RowRejected("unreadable image: no image data")
        content = str(fields.get("path", rec.media_path or ""))
        meta = {k: _json_safe(v) for k, v in fields.items()}
        return content, content_hash(rec.media_bytes), meta, None

    values: dict[str, str] = {}
    for name in config.content_fields:
        if name not in fields:
            raise RowRejected(f"missing content: no field {name!r}")
        text = _text_of(fields[name])
        if not text.strip():
            raise RowRejected(f"missing content: field {name!r} is empty")
        values[name] = text
    if config.modality == Modality.tabular:
        content = json.dumps(values, sort_keys=True, ensure_ascii=False)
    elif len(values) == 1:
        content = next(iter(values.values()))
    else:
        content = "\n".join(f"{k}: {v}" for k, v in values.items())
    limit = config.ingest.max_content_chars
    if len(content) > limit:
        raise RowRejected(f"oversize content: {len(content)} characters > limit {limit}")
    meta = {k: _json_safe(v) for k, v in fields.items() if k not in values}
    external_id = None
    if config.id_field is not None and fields.get(config.id_field) is not None:
        external_id = _text_of(fields[config.id_field])
    return content, content_hash(content), meta, external_id
