"""Readers that stream records from files, folders of images and videos, and SQL queries.

Each reader yields ``RawRecord`` lazily so memory stays flat whatever the source size. A row
that cannot be decoded becomes a record with ``error`` set; it never stops the rest.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
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


class ImageFolderReader:
    """Every image file under a folder (recursively, in sorted order); content is its bytes.

    Video files in the folder become one image record per sampled frame (``video.py``), written
    under ``media_dir`` (the project's media folder); positions 1..n are the images', video k
    has k * 10^9 + frame number + 1.
    """

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

    def records(self) -> Iterator[RawRecord]:
        from PIL import Image, UnidentifiedImageError

        for position, path in enumerate(self._files, start=1):
            rel = str(path.relative_to(self.folder))
            if not path.resolve().is_relative_to(self._root):
                # A link that leads out of the folder would let an ingest read (and show
                # reviewers) any file this process can read.
                yield RawRecord(position, error="symbolic link leads outside the folder", raw=rel)
                continue
            size = path.stat().st_size
            if size > self.max_bytes:
                yield RawRecord(
                    position,
                    error=f"oversize image: {size} bytes > limit {self.max_bytes}",
                    raw=rel,
                )
                continue
            data = path.read_bytes()
            try:
                with Image.open(path) as img:
                    img.verify()
                with Image.open(path) as img:
                    img.load()
                    width, height = img.size
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                yield RawRecord(position, error=f"unreadable image: {exc}", raw=rel)
                continue
            yield RawRecord(
                position,
                fields={"path": rel, "width": width, "height": height},
                media_path=str(path.resolve()),
                media_bytes=data,
            )
        yield from self._video_records()

    def _video_records(self) -> Iterator[RawRecord]:
        for number, path in enumerate(self.video_files, start=1):
            rel = str(path.relative_to(self.folder))
            base = number * FRAME_POSITIONS
            if not path.resolve().is_relative_to(self._root):
                yield RawRecord(base + 1, error="symbolic link leads outside the folder", raw=rel)
                continue
            assert self.media_dir is not None  # checked in __init__
            yield from frame_records(path, rel, self.media_dir, self.video, base)


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
) -> Reader:
    """Pick a reader by what ``path`` is: a folder of images (and videos), or a file by its
    suffix. Video frames are written under ``media_dir`` (a project's ``media`` folder)."""
    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: no such file or folder")
    if p.is_dir():
        return ImageFolderReader(p, max_bytes=max_image_bytes, video=video, media_dir=media_dir)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return DelimitedReader(p, ",")
    if suffix in (".tsv", ".tab"):
        return DelimitedReader(p, "\t")
    if suffix in (".jsonl", ".ndjson"):
        return JsonlReader(p)
    if suffix in (".parquet", ".pq"):
        return ParquetReader(p)
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
