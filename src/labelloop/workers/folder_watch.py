"""Items from a watched folder (issue 13, item 1): files dropped into a folder are ingested.

Every ``interval`` seconds the watcher lists the folder's table files (CSV, TSV, JSONL,
Parquet); a file is ingested once its size and modification time held still for one whole
poll (a writer still copying it is left alone), then moved into ``<folder>/done/`` (or
``<folder>/failed/`` with a ``.error.txt`` beside it when it cannot be read at all: a bad row
is quarantined by ingest as always and does not fail the file). Ingest is idempotent by
source and row, so a watcher killed between the ingest and the move ingests nothing twice
when it meets the file again. Hidden files and names starting with ``~`` or ending in
``.part`` / ``.tmp`` are skipped (the usual marks of a file being written).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("labelloop.watch")
TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq"}


@dataclass
class WatchReport:
    files: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    items_added: int = 0
    quarantined: int = 0


class FolderWatcher:
    """``ingest(path) -> IngestReport`` is the project's ingest (``Project.ingest``)."""

    def __init__(self, folder: str | Path, ingest: Callable[[Path], Any]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"{self.folder}: not a folder")
        self.ingest = ingest
        self.done = self.folder / "done"
        self.failed = self.folder / "failed"
        self._seen: dict[Path, tuple[int, int]] = {}
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def candidates(self) -> list[Path]:
        out = []
        for p in sorted(self.folder.iterdir()):
            name = p.name
            if not p.is_file() or name.startswith((".", "~")) or name.endswith((".part", ".tmp")):
                continue
            if p.suffix.lower() in TABLE_SUFFIXES:
                out.append(p)
        return out

    def poll(self) -> WatchReport:
        """One look at the folder: ingest the files that held still since the last look."""
        report = WatchReport()
        now: dict[Path, tuple[int, int]] = {}
        for path in self.candidates():
            st = path.stat()
            now[path] = (st.st_size, st.st_mtime_ns)
            if self._seen.get(path) != now[path]:
                continue  # new or still changing: look again next time
            self._take(path, report)
            now.pop(path, None)
        self._seen = now
        return report

    def _take(self, path: Path, report: WatchReport) -> None:
        try:
            result = self.ingest(path)
        except Exception as exc:  # noqa: BLE001 - the file fails, the watcher goes on
            self.failed.mkdir(exist_ok=True)
            target = _free_name(self.failed / path.name)
            shutil.move(str(path), target)
            target.with_name(target.name + ".error.txt").write_text(f"{exc}\n", encoding="utf-8")
            report.failed.append(path.name)
            log.warning("watch: %s failed: %s", path.name, exc)
            return
        self.done.mkdir(exist_ok=True)
        shutil.move(str(path), _free_name(self.done / path.name))
        report.files.append(path.name)
        report.items_added += int(getattr(result, "items_added", 0))
        report.quarantined += int(getattr(result, "quarantined", 0))
        log.info("watch: %s ingested: %s", path.name, getattr(result, "items_added", "?"))

    def run(
        self,
        *,
        interval: float = 2.0,
        polls: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> WatchReport:
        total = WatchReport()
        n = 0
        while not self._stop and (polls is None or n < polls):
            r = self.poll()
            total.files += r.files
            total.failed += r.failed
            total.items_added += r.items_added
            total.quarantined += r.quarantined
            n += 1
            if polls is None or n < polls:
                sleep(interval)
        return total


def _free_name(path: Path) -> Path:
    """``path``, or ``name.1.ext``, ``name.2.ext``... when taken (a file dropped twice)."""
    if not path.exists():
        return path
    k = 1
    while True:
        candidate = path.with_name(f"{path.stem}.{k}{path.suffix}")
        if not candidate.exists():
            return candidate
        k += 1
