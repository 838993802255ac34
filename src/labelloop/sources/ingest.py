"""Ingestion: stream a source into the store in chunks; bad rows go to quarantine, never lost."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelloop.core.config import ProjectConfig
from labelloop.core.progress import Progress
from labelloop.sources.labels import LabelCounts, LabelParser, write_imported_labels
from labelloop.sources.readers import Reader
from labelloop.sources.records import RawRecord
from labelloop.sources.validate import ItemBuilder, RowRejected, check_columns, reason_kind
from labelloop.sources.video import check_video_source
from labelloop.store.db import Database
from labelloop.store.events import log_event
from labelloop.store.items import (
    count_rows,
    first_sightings,
    insert_items,
    insert_quarantine,
    refresh_planner_stats,
)
from labelloop.store.models import ItemRow, ItemSourceRow

if TYPE_CHECKING:
    from sqlalchemy import Connection


@dataclass
class IngestReport:
    """What one ingest did. ``duplicates`` are new rows whose content was already an item.

    Labels that came with the rows (class folders, a manifest's label column), imported under
    the name ``labels_source``: ``labels_unknown`` counts the names outside the taxonomy (not
    imported), ``labels_invalid`` other refused labels by reason, ``labels_kept_human`` items a
    person in the project had labeled already, ``labels_ignored`` labels read while the import
    was off.
    """

    source: str
    rows_read: int = 0
    items_added: int = 0
    duplicates: int = 0
    already_ingested: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None
    labels_source: str | None = None
    labels_imported: int = 0
    labels_already_imported: int = 0
    labels_kept_human: int = 0
    labels_unknown: dict[str, int] = field(default_factory=dict)
    labels_invalid: dict[str, int] = field(default_factory=dict)
    labels_ignored: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows_per_second": round(self.rows_per_second, 1)}


def _chunks(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    chunk: list[RawRecord] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _MetaEncoder:
    """Metadata as JSON, remembering small all-text dicts: a column like ``label`` repeats a
    few values over millions of rows, and encoding each row again was a tenth of ingest time."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
        self._seen: dict[tuple[tuple[str, str], ...], str] = {}
        self._max = max_entries

    def __call__(self, meta: dict[str, Any]) -> str:
        if len(meta) > 4 or not all(type(v) is str for v in meta.values()):
            return self._encode(meta)
        key = tuple(meta.items())
        text = self._seen.get(key)
        if text is None:
            text = self._encode(meta)
            if len(self._seen) < self._max:
                self._seen[key] = text
        return text


def _visible_nul(text: str) -> str:
    return text.replace("\x00", "\\x00")


def quarantine_path(folder: Path, source_id: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("_")[-120:] or "source"
    return folder / f"{name}.jsonl"


def ingest(
    db: Database,
    project_id: int,
    config: ProjectConfig,
    reader: Reader,
    *,
    quarantine_dir: Path | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    import_labels: bool = True,
    light: bool = False,
    connection: Connection | None = None,
) -> IngestReport:
    """Read every record of ``reader`` into the project; return a report.

    ``light`` (the stream workers' small batches, many a second): the report's counts are
    the rows this ingest's inserts wrote (their row counts) rather than the project's items
    counted before and after (two full counts per call), and PostgreSQL's planner statistics
    are not refreshed. A light ingest may run inside the caller's transaction
    (``connection``): a stream worker then writes a batch's items and its decisions with one
    commit, where each commit costs a WAL flush (4 ms on this machine's PostgreSQL).

    ``progress(rows_seen, None)`` is called after each chunk. A record's ``label`` (an image's
    class folder, a manifest's label column) is imported as the item's label when
    ``import_labels`` (``sources/labels.py``), under the reader's ``label_source`` name.

    Each chunk is written in one transaction. Items are keyed by content hash: an item row
    records its first sighting (source, position), and each exact duplicate seen elsewhere is
    linked to it as an ``item_sources`` row; so running the same ingest twice adds nothing.
    """
    if connection is not None and not light:
        raise ValueError("ingest(connection=...) is for light ingests only")
    started = time.perf_counter()
    source = reader.source_id

    def transaction() -> AbstractContextManager[Connection]:
        return nullcontext(connection) if connection is not None else db.engine.begin()

    check_columns(config, reader.columns(), source)
    check_video_source(config, getattr(reader, "video_files", ()))
    report = IngestReport(source=source)
    build_item = ItemBuilder(config)
    dumps = _MetaEncoder()
    reasons: Counter[str] = Counter()
    size = chunk_size or config.ingest.chunk_size
    qfile = None
    qpath = quarantine_path(quarantine_dir, source) if quarantine_dir else None
    label_counts = LabelCounts()
    parse_label = LabelParser(config, label_counts)
    label_source = str(getattr(reader, "label_source", None) or "import")
    labels_seen = 0

    items_before = sightings_before = 0
    items_written = sightings_written = 0
    if not light:
        with db.engine.connect() as conn:
            items_before = count_rows(conn, ItemRow.__table__, project_id)
            sightings_before = count_rows(conn, ItemSourceRow.__table__, project_id)

    rows_seen = 0
    try:
        if True:  # (one block: the quarantine file is closed whatever happens)
            chunks_done = 0
            for chunk in _chunks(reader.records(), size):
                good: list[tuple[Any, ...]] = []
                items: list[tuple[Any, ...]] = []
                sightings: list[tuple[Any, ...]] = []
                bad: list[dict[str, Any]] = []
                labels: dict[str, list[str]] = {}  # content hash -> labels (the last one wins)
                for rec in chunk:
                    reason = rec.error
                    if reason is None:
                        try:
                            content, h, meta, ext_id = build_item(rec)
                        except RowRejected as exc:
                            reason = str(exc)
                    if reason is not None:
                        where = f"line {rec.line}" if rec.line else f"record {rec.position}"
                        raw = rec.raw or json.dumps(rec.fields, default=str)[:2000]
                        if "\x00" in raw or "\x00" in reason:  # PostgreSQL refuses NUL in text
                            raw, reason = _visible_nul(raw), _visible_nul(reason)
                        bad.append(
                            {
                                "project_id": project_id,
                                "source": source,
                                "position": rec.position,
                                "reason": f"{reason} ({where})",
                                "raw": raw,
                            }
                        )
                        reasons[reason_kind(reason)] += 1
                        continue
                    report.rows_read += 1
                    good.append((h, content, rec.media_path, dumps(meta), rec.position, ext_id))
                    if rec.label is not None:
                        labels_seen += 1
                        parsed = parse_label(rec.label) if import_labels else None
                        if parsed is not None:
                            labels[h] = parsed
                with transaction() as conn:
                    seen = first_sightings(conn, project_id, [g[0] for g in good])
                    for h, content, media_path, meta_json, position, ext_id in good:
                        first = seen.get(h)
                        if first is None:  # a new item; this row is its first sighting
                            seen[h] = (source, position)
                            items.append(
                                (project_id, h, content, media_path, meta_json, source, position)
                            )
                        elif first != (source, position):  # an exact duplicate: link it
                            sightings.append((project_id, source, position, h, ext_id, meta_json))
                    added, linked = insert_items(conn, items, sightings)
                    insert_quarantine(conn, bad)
                    write_imported_labels(conn, project_id, labels, label_source, label_counts)
                items_written += added
                sightings_written += linked
                if chunks_done == 0 and not light:
                    refresh_planner_stats(db)
                chunks_done += 1
                if bad and qpath is not None:
                    if qfile is None:
                        qpath.parent.mkdir(parents=True, exist_ok=True)
                        qfile = open(qpath, "w", encoding="utf-8")  # noqa: SIM115
                    for b in bad:
                        qfile.write(
                            json.dumps(
                                {k: b[k] for k in ("source", "position", "reason", "raw")},
                                ensure_ascii=False,
                            )
                            + "\n"
                        )
                report.quarantined += len(bad)
                rows_seen += len(chunk)
                if progress is not None:
                    progress(rows_seen, None)
    finally:
        if qfile is not None:
            qfile.close()

    with transaction() as conn:
        if light:
            report.items_added, report.duplicates = items_written, sightings_written
        else:
            items_after = count_rows(conn, ItemRow.__table__, project_id)
            sightings_after = count_rows(conn, ItemSourceRow.__table__, project_id)
            report.items_added = items_after - items_before
            report.duplicates = sightings_after - sightings_before
        report.already_ingested = report.rows_read - report.items_added - report.duplicates
        report.quarantine_reasons = dict(reasons)
        report.quarantine_file = str(qpath) if qfile is not None else None
        if labels_seen:
            report.labels_source = label_source
            report.labels_imported = label_counts.imported
            report.labels_already_imported = label_counts.already_imported
            report.labels_kept_human = label_counts.kept_human
            report.labels_unknown = label_counts.unknown_names()
            report.labels_invalid = dict(label_counts.invalid)
            report.labels_ignored = 0 if import_labels else labels_seen
        report.seconds = time.perf_counter() - started
        log_event(conn, project_id, "ingest", report.as_dict())
    return report
