"""Readers that stream records from files, folders of images and videos, manifests of image
paths, and SQL queries.

Each reader yields ``RawRecord`` lazily so memory stays flat whatever the source size. A row
that cannot be decoded becomes a record with ``error`` set; it never stops the rest.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from labelloop.core.config import VideoSettings
from labelloop.core.errors import IngestError, quoted
from labelloop.sources.records import RawRecord
from labelloop.sources.video import FRAME_POSITIONS, VIDEO_SUFFIXES, VideoReader, frame_records

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
_RAW_KEEP = 2000  # characters of a bad row kept in quarantine

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Reader(Protocol):
    source_id: str

    def columns(self) -> list[str] | None:
        """The field names, when the source declares them up front (checked before ingesting)."""
        ...

    def records(self) -> Iterator[RawRecord]: ...

    def size_hint(self) -> int | None:
        """Total bytes or rows, for a progress bar; None if unknown."""
        ...


def _bad_utf8(values: list[str]) -> str | None:
    """The first value holding bytes that were not valid UTF-8 (read as surrogate escapes)."""
    for v in values:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return v
    return None


class DelimitedReader:
    """CSV or TSV with a header row. Rows with the wrong number of fields are quarantined."""

    def __init__(self, path: Path, delimiter: str = ",") -> None:
        self.path = path
        self.delimiter = delimiter
        self.source_id = str(path.resolve())
        self._header: list[str] | None = None

    def _open(self):  # noqa: ANN202 - a text file object
        # surrogateescape keeps undecodable bytes so one bad row is quarantined, not the file.
        return open(self.path, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def columns(self) -> list[str] | None:
        with self._open() as f:
            header = next(csv.reader(f, delimiter=self.delimiter), None)
        if header is None:
            raise IngestError(f"{self.path}: the file is empty (expected a header row)")
        if _bad_utf8(header) is not None:
            raise IngestError(f"{self.path}: the header row is not valid UTF-8")
        self._header = [h.strip() for h in header]
        return self._header

    def size_hint(self) -> int | None:
        return self.path.stat().st_size

    def records(self) -> Iterator[RawRecord]:
        header = self._header or self.columns() or []
        width = len(header)
        with self._open() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            next(reader, None)
            position = 0
            line = reader.line_num + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    position += 1
                    yield RawRecord(position, line=line, error=f"unreadable row: {exc}")
                    line = reader.line_num + 1
                    continue
                position += 1
                start, line = line, reader.line_num + 1
                if not row:
                    position -= 1  # blank lines are not records
                    continue
                if len(row) == width:
                    try:
                        "".join(row).encode("utf-8")
                    except UnicodeEncodeError:
                        pass  # reported below
                    else:
                        yield RawRecord(
                            position, fields=dict(zip(header, row, strict=True)), line=start
                        )
                        continue
                raw = self.delimiter.join(row)
                if _bad_utf8(row) is not None:
                    yield RawRecord(
                        position,
                        line=start,
                        error="bad encoding: the row is not valid UTF-8",
                        raw=raw.encode("utf-8", "surrogateescape").decode(
                            "utf-8", "backslashreplace"
                        )[:_RAW_KEEP],
                    )
                    continue
                yield RawRecord(
                    position,
                    line=start,
                    error=f"wrong field count: expected {width} (as in the header), found {len(row)}",
                    raw=raw[:_RAW_KEEP],
                )


class JsonlReader:
    """One JSON object per line; blank lines are skipped, a bad line is quarantined."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source_id = str(path.resolve())

    def columns(self) -> list[str] | None:
        return None

    def size_hint(self) -> int | None:
        return self.path.stat().st_size

    def records(self) -> Iterator[RawRecord]:
        position = 0
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                position += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield RawRecord(
                        position,
                        line=line_no,
                        error=f"bad encoding: not valid UTF-8 at byte {exc.start}",
                        raw=raw.decode("utf-8", "backslashreplace")[:_RAW_KEEP],
                    )
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield RawRecord(
                        position,
                        line=line_no,
                        error=f"invalid JSON: {exc.msg} at column {exc.colno}",
                        raw=text[:_RAW_KEEP],
                    )
                    continue
                if not isinstance(obj, dict):
                    yield RawRecord(
                        position,
                        line=line_no,
                        error=f"invalid JSON: expected an object, found {type(obj).__name__}",
                        raw=text[:_RAW_KEEP],
                    )
                    continue
                yield RawRecord(position, fields=obj, line=line_no)


class ParquetReader:
    """A Parquet file, read a record batch at a time."""

    def __init__(self, path: Path, batch_size: int = 10_000) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.source_id = str(path.resolve())
        self.batch_size = batch_size
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise IngestError(f"{path}: not a readable Parquet file ({exc})") from None

    def columns(self) -> list[str] | None:
        return list(self._file.schema_arrow.names)

    def size_hint(self) -> int | None:
        return self._file.metadata.num_rows

    def records(self) -> Iterator[RawRecord]:
        position = 0
        for batch in self._file.iter_batches(batch_size=self.batch_size):
            for row in batch.to_pylist():
                position += 1
                yield RawRecord(position, fields=row)


def read_image_file(
    path: Path, rel: str, position: int, max_bytes: int, *, line: int | None = None
) -> RawRecord:
    """One image file as a record (its bytes are the item's identity), or the reason it cannot
    be one: too large, missing, or not an image Pillow can decode."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as exc:
        return RawRecord(position, line=line, error=f"unreadable image: {exc.strerror}", raw=rel)
    if size > max_bytes:
        return RawRecord(
            position,
            line=line,
            error=f"oversize image: {size} bytes > limit {max_bytes}",
            raw=rel,
        )
    try:
        data = path.read_bytes()
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return RawRecord(position, line=line, error=f"unreadable image: {exc}", raw=rel)
    return RawRecord(
        position,
        fields={"path": rel, "width": width, "height": height},
        line=line,
        media_path=str(path.resolve()),
        media_bytes=data,
    )


class ImageFolderReader:
    """Every image file under a folder (recursively, in sorted order); content is its bytes.

    The name of the folder that holds a file (``root/<label>/x.png``) is the record's
    ``label``, imported by the ingest when it is in the taxonomy (``label_source``
    "class-folders"); a file directly in the root has none. Video files in the folder become
    one image record per sampled frame (``video.py``), written under ``media_dir`` (the
    project's media folder), with the label of their folder; positions 1..n are the images',
    video k has k * 10^9 + frame number + 1.
    """

    label_source = "class-folders"

    def __init__(
        self,
        folder: Path,
        max_bytes: int,
        *,
        video: VideoSettings | None = None,
        media_dir: Path | None = None,
    ) -> None:
        self.folder = folder
        self.source_id = str(folder.resolve())
        self.max_bytes = max_bytes
        self.video = video or VideoSettings()
        self.media_dir = media_dir
        self._root = folder.resolve()
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        self._files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        self.video_files = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
        if self.video_files and media_dir is None:
            raise IngestError(
                f"{self.video_files[0]}: a video file, and no media folder to write its frames "
                "to (ingest it through a project)"
            )

    def columns(self) -> list[str] | None:
        return None

    def size_hint(self) -> int | None:
        return len(self._files)

    def folder_label(self, path: Path) -> str | None:
        """The name of the folder holding ``path`` inside the root; None directly in the root."""
        parent = path.parent.relative_to(self.folder)
        return parent.name if parent.parts else None

    def records(self) -> Iterator[RawRecord]:
        for position, path in enumerate(self._files, start=1):
            rel = str(path.relative_to(self.folder))
            if not path.resolve().is_relative_to(self._root):
                # A link that leads out of the folder would let an ingest read (and show
                # reviewers) any file this process can read.
                yield RawRecord(position, error="symbolic link leads outside the folder", raw=rel)
                continue
            rec = read_image_file(path, rel, position, self.max_bytes)
            rec.label = self.folder_label(path)
            yield rec
        yield from self._video_records()

    def _video_records(self) -> Iterator[RawRecord]:
        for number, path in enumerate(self.video_files, start=1):
            rel = str(path.relative_to(self.folder))
            base = number * FRAME_POSITIONS
            if not path.resolve().is_relative_to(self._root):
                yield RawRecord(base + 1, error="symbolic link leads outside the folder", raw=rel)
                continue
            assert self.media_dir is not None  # checked in __init__
            label = self.folder_label(path)
            for rec in frame_records(path, rel, self.media_dir, self.video, base):
                rec.label = label
                yield rec


# Columns a manifest may name its image paths in, after the project's own content field.
MANIFEST_PATH_COLUMNS = ("path", "image", "image_path", "file", "filename")


class ImageManifestReader:
    """A CSV, TSV, JSONL or Parquet file listing image paths, one row per image (image projects).

    The path is read from the first of ``path_columns`` the row has; a relative path is
    resolved against the manifest's folder, and a path that leads out of that folder (``..``,
    an absolute path elsewhere, a symbolic link) is quarantined with the reason, as is a URL
    (nothing is downloaded). The row's ``label_column`` value, when present, is the record's
    ``label`` (``label_source`` "manifest"); its other columns become the item's metadata.
    """

    label_source = "manifest"

    def __init__(
        self,
        rows: Reader,
        manifest: Path,
        max_bytes: int,
        *,
        path_columns: Sequence[str] = MANIFEST_PATH_COLUMNS,
        label_column: str | None = "label",
    ) -> None:
        self.rows = rows
        self.manifest = manifest
        self.source_id = rows.source_id
        self.max_bytes = max_bytes
        self.path_columns = list(dict.fromkeys(path_columns))
        self.label_column = label_column
        self._root = manifest.resolve().parent

    def columns(self) -> list[str] | None:
        columns = self.rows.columns()
        if columns is not None and not any(c in columns for c in self.path_columns):
            raise IngestError(
                f"{self.manifest}: an image project reads a table as a list of image paths, "
                f"and this one has no path column ({', '.join(map(repr, self.path_columns))}); "
                f"the columns are {', '.join(columns)}"
            )
        return None  # the image path is the content: no content_fields check applies

    def size_hint(self) -> int | None:
        return self.rows.size_hint()

    def records(self) -> Iterator[RawRecord]:
        for row in self.rows.records():
            yield row if row.error is not None else self.image_record(row)

    def image_record(self, row: RawRecord) -> RawRecord:
        fields = row.fields
        column = next((c for c in self.path_columns if c in fields), None)
        given = fields.get(column) if column is not None else None
        raw = json.dumps(fields, ensure_ascii=False, default=str)[:_RAW_KEEP]
        if not isinstance(given, str) or not given.strip():
            names = " or ".join(map(repr, self.path_columns[:3]))
            return RawRecord(
                row.position,
                line=row.line,
                error=f"missing content: no image path ({names})",
                raw=raw,
            )
        path, reason = self.resolve(given.strip())
        if path is None:
            return RawRecord(row.position, line=row.line, error=reason, raw=raw)
        rel = str(path.relative_to(self._root))
        rec = read_image_file(path, rel, row.position, self.max_bytes, line=row.line)
        if rec.error is not None:
            rec.raw = raw
            return rec
        rec.fields.update({k: v for k, v in fields.items() if k not in (column, "width", "height")})
        rec.fields["path"] = rel
        if self.label_column is not None:
            rec.label = fields.get(self.label_column)
        return rec

    def resolve(self, given: str) -> tuple[Path | None, str]:
        """The real path of ``given`` inside the manifest's folder, or None and the reason."""
        if "://" in given:
            return None, f"unreadable image: {quoted(given)} is a URL; give a file path"
        try:
            candidate = Path(given)
            real = (candidate if candidate.is_absolute() else self._root / candidate).resolve()
        except (OSError, ValueError) as exc:
            return None, f"unreadable image: bad path {quoted(given)} ({exc})"
        if not real.is_relative_to(self._root):
            return None, (
                f"path outside the manifest's folder: {quoted(given)} leads out of "
                f"{self._root} (paths are read inside the folder that holds the manifest)"
            )
        if real.suffix.lower() in VIDEO_SUFFIXES:
            return None, f"unsupported file: {quoted(given)} is a video; ingest the video itself"
        if not real.is_file():
            return None, f"unreadable image: no file {quoted(given)} in {self._root}"
        return real, ""


class SqlReader:
    """The rows of a SQL query against any SQLAlchemy URL, streamed with a server-side cursor."""

    def __init__(self, url: str, query: str, batch_size: int = 10_000) -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        self.url = url
        self.query = query
        self.batch_size = batch_size
        try:
            safe = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            raise IngestError(
                f"{quoted(url)}: a SQL query needs a database URL as its source "
                "(e.g. postgresql://host/db or sqlite:///file.db), not a file or folder"
            ) from None
        self.source_id = f"sql:{safe}#{query}"

    def columns(self) -> list[str] | None:
        return None

    def size_hint(self) -> int | None:
        return None

    def records(self) -> Iterator[RawRecord]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        from labelloop.store.db import make_engine

        engine = make_engine(self.url)
        try:
            with engine.connect() as conn:
                result = conn.execution_options(
                    stream_results=True, yield_per=self.batch_size
                ).execute(text(self.query))
                position = 0
                for row in result.mappings():
                    position += 1
                    yield RawRecord(position, fields=dict(row))
        except SQLAlchemyError as exc:
            raise IngestError(
                f"SQL source failed: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}"
            ) from None
        finally:
            engine.dispose()


def reader_for(
    path: str | Path,
    *,
    max_image_bytes: int = 20_000_000,
    video: VideoSettings | None = None,
    media_dir: Path | None = None,
    image_paths: Sequence[str] | None = None,
    label_column: str | None = "label",
) -> Reader:
    """Pick a reader by what ``path`` is: a folder of images (and videos), or a file by its
    suffix. Video frames are written under ``media_dir`` (a project's ``media`` folder).

    ``image_paths`` (an image project's path columns) makes a table file a manifest of image
    paths (``ImageManifestReader``), whose ``label_column`` holds labels."""
    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: no such file or folder")
    if p.is_dir():
        return ImageFolderReader(p, max_bytes=max_image_bytes, video=video, media_dir=media_dir)
    table = _table_reader(p)
    if table is not None:
        if image_paths is None:
            return table
        return ImageManifestReader(
            table, p, max_image_bytes, path_columns=image_paths, label_column=label_column
        )
    suffix = p.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        if media_dir is None:
            raise IngestError(
                f"{p}: a video file, and no media folder to write its frames to "
                "(ingest it through a project)"
            )
        return VideoReader(p, media_dir, video or VideoSettings())
    raise IngestError(
        f"{p}: unknown file type {suffix or '(none)'}; use .csv, .tsv, .jsonl, .parquet, a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder of images and videos"
    )


def _table_reader(p: Path) -> Reader | None:
    """The reader of a table file by its suffix, or None for any other file."""
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return DelimitedReader(p, ",")
    if suffix in (".tsv", ".tab"):
        return DelimitedReader(p, "\t")
    if suffix in (".jsonl", ".ndjson"):
        return JsonlReader(p)
    if suffix in (".parquet", ".pq"):
        return ParquetReader(p)
    return None
