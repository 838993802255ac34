"""Exporting final labels (CSV, JSONL, Parquet) and Label Studio's task format both ways."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from labelloop.core.errors import IngestError
from labelloop.interop import (
    ExportError,
    export_format,
    export_label_studio,
    export_labels,
    import_label_studio,
    label_studio_config,
)
from labelloop.interop.label_studio import annotator_of, lead_time_ms, prediction_probs
from labelloop.store.interop import scan_meta, scan_meta_python
from labelloop.store.labels import set_final_labels
from labelloop.store.models import HumanLabelRow, ItemRow, QuarantineRow, SuggestionRow

PROVENANCE = ["source_kind", "source_name", "source_version", "confidence", "decided_at"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def first_id(p) -> int:
    return int(p.items()["id"].iloc[0])


def machine_label(p, item_id: int, labels: list[str], version: str, confidence: float) -> None:
    with p.db.engine.begin() as conn:
        set_final_labels(
            conn,
            [
                {
                    "project_id": p.id,
                    "item_id": item_id,
                    "labels": labels,
                    "source_kind": "machine",
                    "source_name": "student",
                    "source_version": version,
                    "confidence": confidence,
                }
            ],
        )


@pytest.fixture
def labeled(make_project, tmp_path: Path):
    """Four items: one labeled by a person, one by a machine, one imported, one unlabeled."""
    p = make_project(labels=["ham", "spam"], label_field="label")
    src = write_jsonl(
        tmp_path / "sms.jsonl",
        [
            {
                "text": "see you at 6",
                "label": "ham",
                "n": 1,
                "w": 0.5,
                "tags": ["a", "b"],
                "code": "A1",
            },
            {
                "text": "WIN a prize now",
                "label": "spam",
                "n": 2,
                "w": 1,
                "source": "web",
                "code": 7,
            },
            {"text": "call me", "label": "ham", "n": 3},
            {"text": "not yet labeled", "n": 4},
        ],
    )
    p.ingest(src)
    ids = p.items()["id"].tolist()
    p.label(ids[0], ["ham"], annotator="alice", time_spent_ms=1500)
    machine_label(p, ids[1], ["spam"], "v3", 0.97)
    p.label(ids[2], ["ham"], annotator="bob", action="import", source_kind="import")
    return p, ids


# -- tables ------------------------------------------------------------------------------------


def read_back(path: Path, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_holds_labels_provenance_and_metadata(
    labeled, tmp_path: Path, fmt: str
) -> None:
    p, ids = labeled
    path = tmp_path / f"out.{fmt}"
    summary = export_labels(p, path)
    assert summary.format == fmt and summary.rows == 3
    assert summary.by_source_kind == {"human": 1, "machine": 1, "import": 1}
    df = read_back(path, fmt)
    assert list(df.columns[:11]) == [
        "item_id", "content_hash", "content", "labels", *PROVENANCE, "source", "position",
    ]  # fmt: skip
    # metadata keys become columns; "source" clashes with the item's source, so it is renamed
    assert {"label", "n", "w", "tags", "meta_source"} <= set(df.columns)
    assert df["item_id"].tolist() == ids[:3]  # the unlabeled item is not exported
    first, second, third = (df.iloc[i] for i in range(3))
    labels = [first["labels"], second["labels"]]
    assert labels == (["ham", "spam"] if fmt == "csv" else [["ham"], ["spam"]])
    assert [first["source_kind"], second["source_kind"], third["source_kind"]] == [
        "human", "machine", "import",
    ]  # fmt: skip
    assert first["source_name"] == "alice" and third["source_name"] == "bob"
    assert second["source_name"] == "student" and second["source_version"] == "v3"
    assert second["confidence"] == pytest.approx(0.97) and pd.isna(first["confidence"])
    assert pd.isna(first["source_version"])
    assert first["content"] == "see you at 6" and len(first["content_hash"]) == 64
    assert second["meta_source"] == "web" and first["label"] == "ham"
    assert int(first["n"]) == 1 and float(second["w"]) == 1.0
    decided = pd.to_datetime(df["decided_at"], utc=True)
    assert decided.notna().all()
    assert first["position"] == 1 and first["source"].endswith("sms.jsonl")


def test_parquet_keeps_types(labeled, tmp_path: Path) -> None:
    p, _ = labeled
    path = tmp_path / "out.parquet"
    export_labels(p, path, chunk_size=1)  # one row group per row: the schema holds across chunks
    schema = pq.read_schema(path)
    assert pa.types.is_list(schema.field("labels").type)
    assert schema.field("labels").type.value_type == pa.string()
    assert str(schema.field("n").type) == "int64"
    assert str(schema.field("w").type) == "double"  # 0.5 and 1 mixed: float
    assert str(schema.field("decided_at").type) == "timestamp[us, tz=UTC]"
    assert str(schema.field("tags").type) == "string"  # nested values as JSON text
    assert str(schema.field("code").type) == "string"  # text and numbers mixed: text
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    df = pd.read_parquet(path)
    assert json.loads(df["tags"].iloc[0]) == ["a", "b"]
    assert df["code"].tolist()[:2] == ["A1", "7"]


def test_metadata_scan_in_the_database_matches_python(labeled, tmp_path: Path) -> None:
    p, _ = labeled
    with p.db.engine.connect() as conn:
        in_db = scan_meta(conn, p.id, None, 1000)
        in_python = scan_meta_python(conn, p.id, None, 1000)
        humans = scan_meta(conn, p.id, ["human"], 1000)
    assert in_db == in_python
    assert list(in_db) == ["label", "n", "w", "tags", "code", "source"]  # in order of first sight
    assert in_db["w"] == {"int", "float"} and in_db["tags"] == {"json"}
    assert set(humans) == {"label", "n", "w", "tags", "code"}


def test_chunked_export_equals_one_chunk(labeled, tmp_path: Path) -> None:
    p, _ = labeled
    export_labels(p, tmp_path / "a.jsonl", chunk_size=1)
    export_labels(p, tmp_path / "b.jsonl", chunk_size=1000)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_multi_label_joined_in_csv_listed_elsewhere(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["billing", "bug", "praise"], task="multi_label")
    p.ingest(write_jsonl(tmp_path / "t.jsonl", [{"text": "app crashes and I was charged"}]))
    p.label(first_id(p), ["billing", "bug"], annotator="carol")
    export_labels(p, tmp_path / "m.csv")
    export_labels(p, tmp_path / "m.jsonl")
    export_labels(p, tmp_path / "m.parquet")
    assert pd.read_csv(tmp_path / "m.csv")["labels"].tolist() == ["billing|bug"]
    assert pd.read_json(tmp_path / "m.jsonl", lines=True)["labels"].tolist() == [["billing", "bug"]]
    assert list(pd.read_parquet(tmp_path / "m.parquet")["labels"].iloc[0]) == ["billing", "bug"]
    export_labels(p, tmp_path / "semi.csv", label_separator=";")
    assert pd.read_csv(tmp_path / "semi.csv")["labels"].tolist() == ["billing;bug"]


def test_label_holding_the_separator_is_refused_in_csv(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["a|b", "c"], task="multi_label")
    p.ingest(write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}]))
    p.label(first_id(p), ["a|b", "c"], annotator="d")
    with pytest.raises(ExportError, match=r"'a\|b' .*separator"):
        export_labels(p, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()
    assert not list(tmp_path.glob(".m.csv*"))  # no half-written file left behind


def test_format_from_suffix_or_argument_and_clear_errors(labeled, tmp_path: Path) -> None:
    p, _ = labeled
    assert export_format("x.CSV") == "csv" and export_format("x.ndjson") == "jsonl"
    assert export_format("x.data", "Parquet") == "parquet"
    with pytest.raises(ExportError, match=r"x\.xlsx.*\.xlsx.*\.csv, \.jsonl or \.parquet"):
        export_labels(p, tmp_path / "x.xlsx")
    with pytest.raises(ExportError, match="unknown export format 'xml'"):
        export_labels(p, tmp_path / "x.csv", fmt="xml")
    with pytest.raises(ExportError, match="unknown source kind 'robot'"):
        export_labels(p, tmp_path / "x.csv", source_kinds=["robot"])
    s = export_labels(p, tmp_path / "labels.out", fmt="jsonl", source_kinds=["human", "import"])
    assert s.rows == 2
    kinds = pd.read_json(tmp_path / "labels.out", lines=True)["source_kind"].tolist()
    assert kinds == ["human", "import"]


def test_empty_project_writes_a_header_only_file(make_project, tmp_path: Path) -> None:
    p = make_project()
    assert export_labels(p, tmp_path / "e.csv").rows == 0
    assert pd.read_csv(tmp_path / "e.csv").columns[0] == "item_id"
    export_labels(p, tmp_path / "e.parquet")
    assert pd.read_parquet(tmp_path / "e.parquet").empty


# -- Label Studio import -----------------------------------------------------------------------


def choice(*labels: str, from_name: str = "sentiment") -> list[dict[str, Any]]:
    return [
        {
            "from_name": from_name,
            "to_name": "text",
            "type": "choices",
            "value": {"choices": list(labels)},
        }
    ]


LS_TASKS: list[Any] = [
    {
        "id": 11,
        "data": {"text": "see you at 6", "lang": "en"},
        "annotations": [
            {
                "result": choice("ham"),
                "completed_by": {"email": "ann@example.org"},
                "lead_time": 2.5,
            }
        ],
        "predictions": [{"model_version": "m1", "score": 0.8, "result": choice("spam")}],
    },
    {
        "id": 12,
        "data": {"text": "WIN a prize now"},
        "annotations": [
            {"result": [], "was_cancelled": True, "completed_by": 3},
            {"result": choice("spam"), "completed_by": 7, "lead_time": 1.0},
        ],
    },
    {
        "id": 13,
        "data": {"text": "is this spam?"},
        "annotations": [{"result": choice("maybe"), "completed_by": 7}],
        "predictions": [{"model_version": "m1", "score": 3.0, "result": choice("ham")}],
    },
    {"id": 14, "data": {"body": "no text field here"}, "annotations": [{"result": choice("ham")}]},
    {"id": 15, "text": "a task without a data object"},
    {
        "id": 16,
        "data": {"text": "lunch?"},
        "annotations": [
            {"result": choice("spam"), "completed_by": 1, "ground_truth": True},
            {"result": choice("ham"), "completed_by": 2},
        ],
    },
]


def rows_of(p, table) -> list[dict[str, Any]]:
    """Rows of a per-item table that belong to project ``p`` (the store may hold others)."""
    t = table.__table__
    stmt = (
        select(t)
        .join(ItemRow.__table__, ItemRow.id == t.c.item_id)
        .where(ItemRow.project_id == p.id)
    )
    with p.db.engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt.order_by(t.c.id)).mappings()]


def counts(p) -> tuple[int, int, int]:
    q = QuarantineRow.__table__
    with p.db.engine.connect() as conn:
        quarantined = conn.execute(
            select(func.count()).select_from(q).where(q.c.project_id == p.id)
        ).scalar_one()
    return len(rows_of(p, HumanLabelRow)), len(rows_of(p, SuggestionRow)), quarantined


def test_label_studio_import(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"])
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(LS_TASKS), encoding="utf-8")
    s = import_label_studio(p, path)

    assert s.tasks == 6 and s.ingest is not None
    assert s.ingest.items_added == 5 and s.ingest.quarantined == 1
    assert (s.annotations, s.annotations_cancelled, s.annotations_rejected) == (4, 1, 1)
    assert s.annotations_on_quarantined_tasks == 1
    assert (s.predictions, s.predictions_rejected) == (1, 1)
    assert s.final_labels == 3

    issues = {(i.task_id, i.part): i for i in s.issues}
    assert set(issues) == {(13, "annotation"), (13, "prediction"), (14, "task")}
    assert issues[(13, "annotation")].reason.startswith("label outside taxonomy: 'maybe'")
    assert issues[(13, "prediction")].reason.startswith("bad score: 3.0")
    assert issues[(14, "task")].position == 4
    assert "missing content" in issues[(14, "task")].reason

    q = p.quarantine()
    task_row = q[q["source"] == s.source].iloc[0]
    assert task_row["position"] == 4 and "(record 4)" in task_row["reason"]
    assert json.loads(task_row["raw"])["id"] == 14  # the whole task is kept, annotations too
    ann_row = q[q["source"] == s.source + "#annotations"].iloc[0]
    assert "task id 13" in ann_row["reason"] and "maybe" in ann_row["raw"]
    assert p.status()["quarantine_reasons"]["label outside taxonomy"] == 1
    assert s.quarantine_file and Path(s.quarantine_file).exists()

    final = p.final_labels().set_index("content")
    assert final.loc["see you at 6", "labels"] == ["ham"]
    assert final.loc["see you at 6", "source_kind"] == "import"
    assert final.loc["see you at 6", "source_name"] == "ann@example.org"
    assert final.loc["see you at 6", "meta"] == {"lang": "en"}
    assert final.loc["WIN a prize now", "source_name"] == "ls-user-7"
    assert final.loc["lunch?", "labels"] == ["spam"]  # the ground-truth annotation wins
    assert "is this spam?" not in final.index and "a task without a data object" not in final.index
    items = p.items().set_index("content")
    assert items.loc["a task without a data object", "state"] == "new"
    assert items.loc["see you at 6", "state"] == "labeled"

    rows = [(r["annotator"], r["action"], r["time_spent_ms"]) for r in rows_of(p, HumanLabelRow)]
    [sg] = rows_of(p, SuggestionRow)
    assert ("ann@example.org", "import", 2500) in rows and ("ls-user-7", "import", 1000) in rows
    assert sg["labeler"] == "label-studio" and sg["labeler_version"] == "m1"
    assert sg["confidence"] == pytest.approx(0.8) and sg["label"] == "spam"
    assert sg["probs"] == pytest.approx({"ham": 0.2, "spam": 0.8})

    # importing the same file again adds nothing
    before = counts(p)
    again = import_label_studio(p, path)
    assert again.annotations == 0 and again.annotations_already_imported == 4
    assert again.predictions == 0 and again.predictions_already_imported == 1
    assert again.final_labels == 0
    assert counts(p) == before


def test_import_keeps_a_label_given_here_unless_told(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"])
    p.ingest(write_jsonl(tmp_path / "t.jsonl", [{"text": "see you at 6"}]))
    p.label(first_id(p), ["spam"], annotator="here")
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(LS_TASKS[:1]), encoding="utf-8")
    s = import_label_studio(p, path)
    assert s.final_labels == 0 and s.final_labels_kept == 1 and s.annotations == 1
    assert p.final_labels()["source_name"].tolist() == ["here"]
    s = import_label_studio(p, path, overwrite_human=True)
    assert s.final_labels == 1
    assert p.final_labels()["source_name"].tolist() == ["ann@example.org"]


def test_import_from_name_field_map_and_several_controls(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"], content_fields=["message"])
    task = {
        "data": {"text": "hello there"},
        "annotations": [{"result": choice("ham") + choice("positive", from_name="tone")}],
    }
    path = tmp_path / "ls.jsonl"
    path.write_text(json.dumps(task) + "\n{not json\n", encoding="utf-8")
    s = import_label_studio(p, path, field_map={"text": "message"})
    assert s.ingest.items_added == 1 and s.ingest.quarantine_reasons == {"invalid JSON": 1}
    assert s.annotations_rejected == 1
    assert [i.reason for i in s.issues if i.part == "annotation"][0].startswith(
        "ambiguous result: choices from several controls (sentiment, tone)"
    )
    s = import_label_studio(p, path, field_map={"text": "message"}, from_name="sentiment")
    assert s.annotations == 1 and p.final_labels()["labels"].tolist() == [["ham"]]


def test_single_label_project_refuses_several_choices(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"])
    task = {"data": {"text": "x"}, "annotations": [{"result": choice("ham", "spam")}]}
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([task]), encoding="utf-8")
    s = import_label_studio(p, path)
    assert s.annotations == 0 and s.issues[0].reason.startswith("too many labels")
    assert s.final_labels == 0


def test_unreadable_file_is_one_clear_error(make_project, tmp_path: Path) -> None:
    p = make_project()
    bad = tmp_path / "bad.json"
    bad.write_text('[{"data": ', encoding="utf-8")
    with pytest.raises(IngestError, match=r"bad\.json: not valid JSON .*line 1"):
        import_label_studio(p, bad)
    bad.write_text('"just a string"', encoding="utf-8")
    with pytest.raises(IngestError, match="expected a list of Label Studio tasks"):
        import_label_studio(p, bad)
    with pytest.raises(IngestError, match="no such file"):
        import_label_studio(p, tmp_path / "missing.json")


def test_small_conversions() -> None:
    assert annotator_of({"id": 3, "email": "a@b.c"}) == "a@b.c"
    assert annotator_of({"id": 3}) == annotator_of(3) == "ls-user-3"
    assert annotator_of(None) == "label-studio" and annotator_of("zoe") == "zoe"
    assert lead_time_ms(2.5) == 2500 and lead_time_ms(1e12) == 2**31 - 1
    assert lead_time_ms(-1) is None and lead_time_ms("2") is None and lead_time_ms(True) is None
    probs = prediction_probs(["a", "b", "c"], ["c"], 0.1, multi_label=False)
    assert max(probs, key=probs.__getitem__) == "c"  # a score under 1/n still picks the choice
    assert sum(probs.values()) == pytest.approx(1.0)
    assert prediction_probs(["a", "b"], ["a"], None, False) == {"a": 1.0, "b": 0.0}
    assert prediction_probs(["a", "b", "c"], ["a", "c"], 0.7, True) == {
        "a": 0.7,
        "b": 0.0,
        "c": 0.7,
    }


# -- Label Studio export and the round trip ----------------------------------------------------


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_label_studio_round_trip(make_project, tmp_path: Path, task: str) -> None:
    labels = ["ham", "spam", "promo"]
    a = make_project(labels=labels, task=task)
    a.ingest(
        write_jsonl(
            tmp_path / "src.jsonl",
            [
                {"text": "see you at 6", "lang": "en"},
                {"text": "WIN a prize now", "lang": "en"},
                {"text": "50% off today", "n": 3},
                {"text": "still unlabeled"},
            ],
        )
    )
    two = ["spam", "promo"] if task == "multi_label" else ["promo"]
    ids = a.items()["id"].tolist()
    a.label(ids[0], ["ham"], annotator="alice@example.org", time_spent_ms=1200)
    a.label(ids[2], two, annotator="bob@example.org")
    machine_label(a, ids[1], ["spam"], "zeroshot-v2", 0.91)

    out = tmp_path / "tasks.json"
    s = export_label_studio(a, out, from_name="label", to_name="text")
    assert s.rows == 4 and s.by_source_kind == {"human": 2, "machine": 1, "unlabeled": 1}
    tasks = json.loads(out.read_text(encoding="utf-8"))
    by_text = {t["data"]["text"]: t for t in tasks}
    human = by_text["see you at 6"]
    assert human["data"] == {"text": "see you at 6", "lang": "en"}
    ann = human["annotations"][0]
    assert "completed_by" not in ann and ann["lead_time"] == 1.2  # no email mapping given
    [recorded] = human["meta"]["labelloop"]["annotations"].values()
    assert recorded == {"annotator": "alice@example.org", "labels": ["ham"]}
    assert ann["result"][0]["from_name"] == "label" and ann["result"][0]["to_name"] == "text"
    assert ann["result"][0]["value"] == {"choices": ["ham"]}
    pred = by_text["WIN a prize now"]["predictions"][0]
    assert pred["model_version"] == "student:zeroshot-v2" and pred["score"] == pytest.approx(0.91)
    assert "annotations" not in by_text["still unlabeled"]

    b = make_project(labels=labels, task=task)
    imported = import_label_studio(b, out)
    assert imported.issues == [] and imported.ingest.items_added == 4

    def humans(p) -> dict[str, tuple[list[str], str]]:
        df = p.final_labels()
        df = df[df["source_kind"] != "machine"]
        return {r.content_hash: (r.labels, r.source_name) for r in df.itertuples()}

    assert humans(b) == humans(a)
    assert set(b.final_labels()["source_kind"]) == {"import"}
    assert b.items()["meta"].tolist() == a.items()["meta"].tolist()
    [sg] = rows_of(b, SuggestionRow)
    [spent] = [
        r["time_spent_ms"] for r in rows_of(b, HumanLabelRow) if r["annotator"].startswith("alice")
    ]
    machine = a.final_labels().query("source_kind == 'machine'").iloc[0]
    assert sg["label"] == machine["labels"][0] and sg["labeler_version"] == "student:zeroshot-v2"
    assert sg["confidence"] == pytest.approx(machine["confidence"])
    assert spent == 1200

    unlabeled = export_label_studio(a, tmp_path / "labeled.json", include_unlabeled=False)
    assert unlabeled.rows == 3


def test_label_studio_config_matches_the_export(make_project) -> None:
    p = make_project(labels=["ham", "spam & eggs"], task="multi_label")
    root = ET.fromstring(label_studio_config(p, from_name="label", to_name="text"))
    text = root.find("Text")
    choices = root.find("Choices")
    assert text is not None and text.get("name") == "text" and text.get("value") == "$text"
    assert choices is not None and choices.get("toName") == "text"
    assert choices.get("name") == "label" and choices.get("choice") == "multiple"
    assert [c.get("value") for c in choices] == ["ham", "spam & eggs"]
