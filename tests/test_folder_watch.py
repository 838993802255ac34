"""Items from a watched folder: a file is ingested once it holds still, moved to done/; an
unreadable one to failed/ with its error; one still being written is left alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from labelloop import Project
from labelloop.workers.folder_watch import FolderWatcher


@pytest.fixture
def project(tmp_path: Path):
    p = Project.init(
        tmp_path / "p",
        name="watched",
        labels=["ham", "spam"],
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    yield p
    p.close()


def test_files_are_taken_when_they_hold_still(project: Project, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watcher = FolderWatcher(inbox, project.ingest)
    pd.DataFrame({"text": [f"message {i}" for i in range(5)]}).to_csv(inbox / "a.csv", index=False)
    (inbox / "b.csv.part").write_text("text\nhalf written\n")  # a writer's temporary name
    (inbox / "notes.txt").write_text("not a table")
    assert watcher.poll().files == []  # first sight: it may still be growing
    first = watcher.poll()
    assert first.files == ["a.csv"] and first.items_added == 5
    assert (inbox / "done" / "a.csv").is_file() and not (inbox / "a.csv").exists()
    assert (inbox / "b.csv.part").exists() and (inbox / "notes.txt").exists()
    # The same file dropped again adds nothing and keeps both copies in done/.
    pd.DataFrame({"text": [f"message {i}" for i in range(5)]}).to_csv(inbox / "a.csv", index=False)
    watcher.poll()
    again = watcher.poll()
    assert again.files == ["a.csv"] and again.items_added == 0
    assert (inbox / "done" / "a.1.csv").is_file()
    # A file that grows between looks waits.
    growing = inbox / "c.jsonl"
    growing.write_text('{"text": "one"}\n')
    watcher.poll()
    growing.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert watcher.poll().files == []
    assert watcher.poll().files == ["c.jsonl"]
    assert len(project.items()) == 7


def test_an_unreadable_file_goes_to_failed_with_its_error(project: Project, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "broken.parquet").write_bytes(b"not parquet at all")
    pd.DataFrame({"text": ["fine", ""]}).to_csv(inbox / "ok.csv", index=False)
    report = FolderWatcher(inbox, project.ingest).run(interval=0, polls=2, sleep=lambda s: None)
    assert report.failed == ["broken.parquet"] and report.files == ["ok.csv"]
    assert report.quarantined == 1  # the empty row: quarantined, the file still done
    error = (inbox / "failed" / "broken.parquet.error.txt").read_text()
    assert "broken.parquet" in error or "parquet" in error.lower()


def test_cli_watch(project: Project, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from labelloop.cli.main import app

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pd.DataFrame({"text": ["x", "y"]}).to_csv(inbox / "a.csv", index=False)
    out = CliRunner().invoke(
        app, ["watch", str(inbox), "-p", str(project.folder), "--interval", "0.1", "--polls", "2"]
    )
    assert out.exit_code == 0, out.output
    assert "1 files ingested (2 new items" in out.output
