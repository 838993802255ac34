"""Final labels with their provenance, written to CSV, JSONL or Parquet in chunks.

One row per labeled item: the item (id, content hash, content, where it was first seen), its
final labels, who or what decided them (``source_kind`` human / machine / import,
``source_name``, ``source_version``, ``confidence``, ``decided_at``) and one column per key of
the item's metadata. Rows are read from the store ``chunk_size`` at a time and written as they
come, so memory stays flat whatever the size of the project.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from labelloop.core.config import Modality
from labelloop.core.errors import LabelloopError
from labelloop.core.progress import Progress
from labelloop.embed.tabular import as_number
from labelloop.store.context import ProjectContext
from labelloop.store.interop import (
    count_by_source_kind,
    final_label_columns,
    reading,
    scan_meta,
    stream_final_labels,
)

FORMATS = ("csv", "jsonl", "parquet")
_SUFFIXES = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SOURCE_KINDS = ("human", "machine", "import")


class ExportError(LabelloopError):
    """An export cannot be written (unknown format, a label that clashes with the separator)."""


@dataclass
class ExportSummary:
    """What one export wrote: where, in which format, how many rows, and who decided them."""

    path: str
    format: str
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    by_source_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_format(path: str | Path, fmt: str | None = None) -> str:
    """The format named by ``fmt``, or else by the suffix of ``path``; a clear error otherwise."""
    if fmt is not None:
        name = fmt.lower().lstrip(".")
        name = _SUFFIXES.get(f".{name}", name)
        if name not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
        return name
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ExportError(
            f"{path}: cannot tell the export format from the suffix {suffix or '(none)'}; "
            f"use .csv, .jsonl or .parquet, or pass fmt= ({', '.join(FORMATS)})"
        )
    return _SUFFIXES[suffix]


# -- values and columns ---------------------------------------------------------------------


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; the store writes UTC, so say so."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def meta_columns(keys: Sequence[str], taken: Sequence[str]) -> dict[str, str]:
    """Column name per metadata key: the key itself, or ``meta_<key>`` where it would clash."""
    used = set(taken)
    names: dict[str, str] = {}
    for key in keys:
        name = key
        while name in used:
            name = f"meta_{name}"
        used.add(name)
        names[key] = name
    return names


# -- writers ---------------------------------------------------------------------------------


def _arrow_type(kinds: set[str]) -> pa.DataType:
    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"int"}:
        return pa.int64()
    if kinds and kinds <= {"int", "float"}:
        return pa.float64()
    return pa.string()


def _as_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return None if value is None else value.isoformat()


class _Layout:
    """Where things are in an output row: the fixed columns, then one per metadata key."""

    def __init__(
        self,
        fixed: list[str],
        keys: dict[str, set[str]],
        cells: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.fixed = fixed
        self.keys = list(keys)
        self.kinds = keys
        self.names = meta_columns(self.keys, fixed)
        # A table's own columns (tabular projects): the row's cells, after the metadata.
        self.cells = [name for name, _ in cells]
        self.cell_numbers = [kind == "number" for _, kind in cells]
        cell_names = meta_columns(self.cells, fixed + list(self.names.values()))
        self.cell_columns = [cell_names[c] for c in self.cells]
        self.columns = fixed + [self.names[k] for k in self.keys] + self.cell_columns
        self.labels = fixed.index("labels")
        self.decided_at = fixed.index("decided_at")
        self.content = fixed.index("content")
        # metadata columns holding something other than plain strings and numbers
        self.needs_text = [
            len(fixed) + i for i, k in enumerate(self.keys) if keys[k] - {"str", "int", "float"}
        ]

    def rows(self, chunk: list[tuple[Any, ...]]) -> list[list[Any]]:
        """Query rows (fixed columns, then the meta dict) as output rows."""
        keys, cells = self.keys, self.cells
        out = []
        for r in chunk:
            meta = r[-1] or {}
            row = [*r[:-1], *(meta.get(k) for k in keys)]
            if cells:
                values = json.loads(row[self.content])
                row += [
                    as_number(values.get(c)) if number else _as_cell_text(values.get(c))
                    for c, number in zip(cells, self.cell_numbers, strict=True)
                ]
            out.append(row)
        return out


class _CsvWriter:
    def __init__(self, path: Path, layout: _Layout, label_sep: str) -> None:
        self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        self._csv.writerow(layout.columns)
        self._layout = layout
        self._sep = label_sep

    def write(self, rows: list[list[Any]]) -> None:
        lay, sep = self._layout, self._sep
        for row in rows:
            labels = row[lay.labels]
            joined = sep.join(labels)
            if joined.count(sep) != max(len(labels) - 1, 0):  # a label holds the separator
                clash = next(label for label in labels if sep in label)
                raise ExportError(
                    f"label {clash!r} (item {row[0]}) contains the CSV label separator {sep!r}; "
                    "pass another label_separator or export to JSONL or Parquet"
                )
            row[lay.labels] = joined
            row[lay.decided_at] = _iso(row[lay.decided_at])
            for i in lay.needs_text:
                row[i] = _as_text(row[i])
        self._csv.writerows(rows)  # None is written as an empty field

    def close(self) -> None:
        self._file.close()


class _JsonlWriter:
    def __init__(self, path: Path, layout: _Layout) -> None:
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115
        self._layout = layout

    def write(self, rows: list[list[Any]]) -> None:
        lay = self._layout
        lines = []
        for row in rows:
            row[lay.decided_at] = _iso(row[lay.decided_at])
            obj = dict(zip(lay.columns, row, strict=True))
            lines.append(json.dumps(obj, ensure_ascii=False, default=str))
        self._file.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    def __init__(self, path: Path, layout: _Layout) -> None:
        self._layout = layout
        self._schema = pa.schema(
            [(c, _FIXED_TYPES[c]) for c in layout.fixed]
            + [(layout.names[k], _arrow_type(layout.kinds[k])) for k in layout.keys]
            + [
                (name, pa.float64() if number else pa.string())
                for name, number in zip(layout.cell_columns, layout.cell_numbers, strict=True)
            ]
        )
        # string columns fed other kinds of value too (numbers mixed with text, lists, ...)
        first_meta = len(layout.fixed)
        self._text = {
            first_meta + i
            for i, k in enumerate(layout.keys)
            if layout.kinds[k] - {"str"} and pa.types.is_string(_arrow_type(layout.kinds[k]))
        }
        self._writer = pq.ParquetWriter(path, self._schema)

    def write(self, rows: list[list[Any]]) -> None:
        lay = self._layout
        columns = list(zip(*rows, strict=True))
        arrays = []
        for i, f in enumerate(self._schema):
            values: Any = columns[i]
            if i == lay.decided_at:
                values = [as_utc(v) for v in values]
            elif i in self._text:
                values = [_as_text(v) for v in values]
            arrays.append(pa.array(values, type=f.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


_FIXED_TYPES: dict[str, pa.DataType] = {
    "item_id": pa.int64(),
    "content_hash": pa.string(),
    "content": pa.string(),
    "labels": pa.list_(pa.string()),
    "source_kind": pa.string(),
    "source_name": pa.string(),
    "source_version": pa.string(),
    "confidence": pa.float64(),
    "decided_at": pa.timestamp("us", tz="UTC"),
    "source": pa.string(),
    "position": pa.int64(),
    "media_path": pa.string(),
}


# -- the export ------------------------------------------------------------------------------


def export_labels(
    ctx: ProjectContext,
    path: str | Path,
    fmt: str | None = None,
    *,
    source_kinds: Sequence[str] | None = None,
    label_separator: str = "|",
    chunk_size: int = 10_000,
    progress: Progress | None = None,
) -> ExportSummary:
    """Write every final label of the project with its provenance to ``path``.

    The format comes from ``fmt`` (csv, jsonl, parquet) or the suffix of ``path``. Labels are a
    list in JSONL and Parquet and joined by ``label_separator`` in CSV. ``source_kinds`` keeps
    only labels decided by those kinds (human, machine, import). Metadata keys become columns
    (``meta_<key>`` where a key clashes with a fixed column). The file is written next to
    ``path`` and renamed into place at the end, so a failed export leaves nothing half-written.
    """
    started = time.perf_counter()
    fmt = export_format(path, fmt)
    if source_kinds is not None:
        unknown = [k for k in source_kinds if k not in SOURCE_KINDS]
        if unknown:
            raise ExportError(
                f"unknown source kind {unknown[0]!r}; use one of {', '.join(SOURCE_KINDS)}"
            )
    if chunk_size < 1:
        raise ExportError(f"chunk_size must be at least 1, got {chunk_size}")
    path = Path(path)
    image = ctx.config.modality == Modality.image
    fixed = [c for c in final_label_columns(media_path=image) if c != "meta"]
    summary = ExportSummary(path=str(path), format=fmt)

    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    with reading(ctx.db) as conn:
        summary.by_source_kind = count_by_source_kind(conn, ctx.id, source_kinds)
        layout = _Layout(
            fixed, scan_meta(conn, ctx.id, source_kinds, chunk_size), _table_columns(ctx)
        )
        summary.columns = layout.columns
        writer: _CsvWriter | _JsonlWriter | _ParquetWriter
        if fmt == "csv":
            writer = _CsvWriter(part, layout, label_separator)
        elif fmt == "jsonl":
            writer = _JsonlWriter(part, layout)
        else:
            writer = _ParquetWriter(part, layout)
        try:
            total = sum(summary.by_source_kind.values())
            chunks = stream_final_labels(conn, ctx.id, source_kinds, chunk_size, media_path=image)
            for chunk in chunks:
                writer.write(layout.rows(chunk))
                summary.rows += len(chunk)
                if progress is not None:
                    progress(summary.rows, total)
            writer.close()
            part.replace(path)
        except BaseException:
            writer.close()
            part.unlink(missing_ok=True)
            raise
    summary.seconds = time.perf_counter() - started
    return summary


def _table_columns(ctx: ProjectContext) -> list[tuple[str, str]]:
    """A tabular project's columns and kinds, in the order its features use them."""
    if ctx.config.modality != Modality.tabular:
        return []
    from labelloop.embed.factory import project_table_spec

    return [(c.name, c.kind) for c in project_table_spec(ctx).columns]


def _as_cell_text(value: Any) -> str | None:
    return None if value is None else str(value)
