"""Ingestion on SQLite and PostgreSQL: every format, dedup, re-ingest, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

from labelloop.core.errors import IngestError

GOOD_ROWS = [
    ("Free entry to win a prize, text WIN now", "spam"),
    ("Are we still on for lunch?", "ham"),
    ("Are we still on for lunch?", "ham"),  # exact duplicate
    ("Call me when you land", "ham"),
]


def write_csv(path: Path, rows, sep: str = ",") -> Path:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, sep=sep, index=False)
    return path


def test_csv_ingest_dedups_and_reingest_adds_nothing(make_project, tmp_path: Path) -> None:
    p = make_project(label_field="label")
    src = write_csv(tmp_path / "a.csv", GOOD_ROWS)
    seen: list[tuple[int, int | None]] = []
    r = p.ingest(src, progress=lambda done, total: seen.append((done, total)))
    assert (r.rows_read, r.items_added, r.duplicates, r.quarantined) == (4, 3, 1, 0)
    assert seen and seen[-1] == (4, None)  # rows seen so far; the total is not known ahead
    again = p.ingest(src)
    assert (again.items_added, again.duplicates, again.already_ingested) == (0, 0, 4)
    assert p.count() == 3
    items = p.items()
    assert sorted(items["content"]) == sorted({t for t, _ in GOOD_ROWS})
    assert set(items["meta"].map(lambda m: m["label"])) == {"ham", "spam"}
    with p.db.engine.connect() as conn:
        links = conn.execute(
            text("SELECT count(*) FROM item_sources WHERE project_id = :p"), {"p": p.id}
        ).scalar_one()
    assert links == 1  # the duplicate's sighting is linked to its one item


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet"])
def test_other_formats(make_project, tmp_path: Path, fmt: str) -> None:
    p = make_project()
    df = pd.DataFrame(GOOD_ROWS, columns=["text", "label"])
    path = tmp_path / f"a.{fmt}"
    if fmt == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_parquet(path)
    r = p.ingest(path)
    assert (r.rows_read, r.items_added, r.duplicates, r.quarantined) == (4, 3, 1, 0)


def test_sql_query_source(make_project, tmp_path: Path) -> None:
    src_url = f"sqlite:///{tmp_path / 'src.db'}"
    eng = create_engine(src_url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE msgs (id INTEGER PRIMARY KEY, body TEXT, tag TEXT)"))
        conn.execute(
            text("INSERT INTO msgs (body, tag) VALUES (:b, :t)"),
            [{"b": t, "t": label} for t, label in GOOD_ROWS] + [{"b": None, "t": "ham"}],
        )
    eng.dispose()
    p = make_project(content_fields=["body"], id_field="id")
    r = p.ingest_sql(src_url, "SELECT id, body, tag FROM msgs ORDER BY id")
    assert (r.rows_read, r.items_added, r.quarantined) == (4, 3, 1)
    assert "missing content" in p.quarantine()["reason"][0]
    assert p.ingest_sql(src_url, "SELECT id, body, tag FROM msgs ORDER BY id").items_added == 0


def test_bad_rows_are_quarantined_with_source_line_and_reason(make_project, tmp_path: Path) -> None:
    p = make_project()
    p.config.ingest.max_content_chars = 50
    src = tmp_path / "bad.csv"
    src.write_bytes(
        b"text,label\n"
        b"fine message,ham\n"  # line 2
        b",ham\n"  # line 3: empty content
        b"one,two,three\n"  # line 4: wrong field count
        b"caf\xe9 in latin-1,ham\n"  # line 5: bad encoding
        + b"x"
        * 80
        + b",spam\n"  # line 6: oversize
        b"another fine one,ham\n"  # line 7
    )
    r = p.ingest(src)
    assert (r.rows_read, r.items_added, r.quarantined) == (2, 2, 4)
    assert r.quarantine_reasons == {
        "missing content": 1,
        "wrong field count": 1,
        "bad encoding": 1,
        "oversize content": 1,
    }
    q = p.quarantine()
    assert list(q["position"]) == [2, 3, 4, 5]
    assert all(q["source"] == str(src.resolve()))
    assert [reason.rsplit("(", 1)[1] for reason in q["reason"]] == [
        "line 3)",
        "line 4)",
        "line 5)",
        "line 6)",
    ]
    assert "caf\\xe9" in q["raw"][2]  # the bad bytes are kept, visibly
    # ... and in the quarantine file, one JSON line each
    lines = Path(r.quarantine_file).read_text().splitlines()
    assert [json.loads(x)["position"] for x in lines] == [2, 3, 4, 5]
    # re-ingesting does not duplicate quarantine rows
    p.ingest(src)
    assert len(p.quarantine()) == 4
    assert p.status()["quarantine_reasons"]["bad encoding"] == 1


def test_jsonl_bad_lines(make_project, tmp_path: Path) -> None:
    p = make_project()
    src = tmp_path / "a.jsonl"
    src.write_bytes(
        b'{"text": "good one"}\n'
        b"{not json}\n"
        b"[1, 2]\n"
        b'{"body": "no text field"}\n'
        b'{"text": "caf\xe9"}\n'
        b"\n"
        b'{"text": "good two"}\n'
    )
    r = p.ingest(src)
    assert (r.rows_read, r.quarantined) == (2, 4)
    reasons = list(p.quarantine()["reason"])
    assert reasons[0].startswith("invalid JSON") and reasons[0].endswith("(line 2)")
    assert reasons[1].startswith("invalid JSON: expected an object")
    assert reasons[2].startswith("missing content: no field 'text'")
    assert reasons[3].startswith("bad encoding") and reasons[3].endswith("(line 5)")


def test_missing_content_column_refuses_whole_file_and_writes_nothing(
    make_project, tmp_path: Path
) -> None:
    p = make_project()
    src = tmp_path / "wrong.csv"
    src.write_text("body,label\nhello,ham\n")
    with pytest.raises(IngestError, match=r"no column 'text'.*columns are body, label"):
        p.ingest(src)
    assert p.count() == 0


def test_unknown_and_missing_sources(make_project, tmp_path: Path) -> None:
    p = make_project()
    with pytest.raises(IngestError, match="no such file"):
        p.ingest(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(IngestError, match="unknown file type .xlsx"):
        p.ingest(tmp_path / "x.xlsx")


def test_image_folder(make_project, tmp_path: Path) -> None:
    p = make_project(modality="image", labels=["cat", "dog"])
    p.config.ingest.max_image_bytes = 5_000
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(folder / "a.png")
    Image.new("RGB", (8, 8), "red").save(folder / "sub" / "copy.png")  # same bytes
    Image.new("RGB", (8, 8), "blue").save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    Image.effect_noise((64, 64), 50).convert("RGB").save(folder / "huge.bmp")  # > 5,000 bytes
    r = p.ingest(folder)
    assert (r.rows_read, r.items_added, r.duplicates, r.quarantined) == (3, 2, 1, 2)
    assert r.quarantine_reasons == {"unreadable image": 1, "oversize image": 1}
    items = p.items()
    assert all(Path(m).exists() for m in items["media_path"])
    assert set(items["meta"].map(lambda m: m["width"])) == {8}


def test_an_image_folder_in_a_text_project_says_how_to_make_an_image_project(
    make_project, tmp_path: Path
) -> None:
    """Issue 12: it used to quarantine every file with exit code 0 and no hint."""
    p = make_project()  # modality text
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8), "red").save(folder / "a.png")
    with pytest.raises(IngestError, match="--modality image"):
        p.ingest(folder)
    assert p.status()["items"] == 0 and p.status()["quarantined"] == 0


def test_dataframe_round_trip_of_status(make_project, tmp_path: Path) -> None:
    p = make_project()
    p.ingest(write_csv(tmp_path / "a.csv", GOOD_ROWS))
    s = p.status()
    assert s["items"] == 3 and s["states"]["new"] == 3 and s["quarantined"] == 0


def test_a_light_ingest_counts_what_it_wrote(make_project, tmp_path: Path) -> None:
    """The stream workers' light ingest: no full counts, the same report for a lone ingest."""
    from labelloop.sources.ingest import ingest
    from labelloop.sources.readers import reader_for

    p = make_project(labels=["a", "b"])
    try:
        csv = tmp_path / "rows.csv"
        csv.write_text("text\none\ntwo\none\nthree\n")
        light = ingest(p.db, p.id, p.config, reader_for(csv), light=True)
        assert (light.items_added, light.duplicates, light.quarantined) == (3, 1, 0)
        again = ingest(p.db, p.id, p.config, reader_for(csv), light=True)
        assert (again.items_added, again.duplicates, again.already_ingested) == (0, 0, 4)
        full = ingest(p.db, p.id, p.config, reader_for(csv))
        assert (full.items_added, full.duplicates, full.already_ingested) == (0, 0, 4)
    finally:
        p.close()
