"""Label Studio interchange (issue 12, item 5): what a stock Label Studio accepts, both ways.

``as_label_studio`` turns labelloop's export into what Label Studio 1.23.2 hands back, as
recorded against a real one (bench/label_studio_roundtrip.py): the task gets a new id, each
annotation's ``id`` becomes its ``import_id``, ``completed_by`` becomes the importing user
(an int in the plain JSON export, an object with the email in a snapshot), predictions
become bare ids (plain) or objects (snapshot), and the task's ``meta`` is kept. The last test
runs the real round trip when LABELLOOP_LABEL_STUDIO names a Label Studio install.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from labelloop.cli.main import app
from labelloop.core.errors import IngestError
from labelloop.core.types import Suggestion
from labelloop.interop import ExportError, export_kind
from labelloop.store.labels import add_suggestions, set_final_labels
from labelloop.store.models import HumanLabelRow, ItemRow, SuggestionRow

REPO = Path(__file__).resolve().parents[1]
TEXT_CONFIG = """<View>
  <Text name="message" value="$sms"/>
  <Choices name="topic" toName="message" choice="single">
    <Choice value="ham"/><Choice value="spam"/>
  </Choices>
</View>"""
# One task of a real Label Studio 1.23.2 plain JSON export (trimmed of empty fields).
RECORDED_PLAIN = {
    "id": 1,
    "annotations": [
        {
            "id": 1,
            "completed_by": 1,
            "result": [
                {
                    "id": "r1",
                    "from_name": "topic",
                    "to_name": "message",
                    "type": "choices",
                    "value": {"choices": ["ham"]},
                }
            ],
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2026-12-02T07:21:32.677388Z",
            "updated_at": "2026-12-02T07:21:32.677429Z",
            "lead_time": 1.5,
            "prediction": {},
            "result_count": 0,
            "unique_id": "89edefe5-d25e-43ef-b3cb-8fef823f1636",
            "import_id": None,
            "task": 1,
            "project": 1,
        }
    ],
    "drafts": [],
    "predictions": [1],
    "data": {"sms": "hello"},
    "meta": {},
    "inner_id": 1,
    "total_annotations": 1,
    "total_predictions": 1,
    "project": 1,
}
# JSON_MIN of the same task, as Label Studio writes it.
RECORDED_MIN = [
    {
        "sms": "hello",
        "id": 1,
        "topic": "ham",
        "annotator": 1,
        "annotation_id": 1,
        "created_at": "2026-12-02T07:21:32.677388Z",
        "updated_at": "2026-12-02T07:21:32.677429Z",
        "lead_time": 1.5,
    }
]


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def as_label_studio(
    tasks: list[dict[str, Any]], shape: str, members: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    """What Label Studio exports after importing ``tasks`` (see the module docstring)."""
    members = members or {}
    out = []
    ann_id = pred_id = 0
    for k, task in enumerate(tasks, start=1):
        annotations = []
        for ann in task.get("annotations", []):
            ann_id += 1
            email = (ann.get("completed_by") or {}).get("email", "admin@example.org")
            user = members.get(email, 1)
            by: Any = user if shape == "plain" else {"id": user, "email": email}
            annotations.append(
                {
                    **{key: v for key, v in ann.items() if key != "completed_by"},
                    "id": ann_id,
                    "import_id": ann.get("id"),
                    "completed_by": by,
                    "unique_id": f"u-{ann_id}",
                    "task": k,
                }
            )
        predictions: list[Any] = []
        for pred in task.get("predictions", []):
            pred_id += 1
            predictions.append(pred_id if shape == "plain" else {**pred, "id": pred_id, "task": k})
        out.append(
            {
                "id": 1000 + k,
                "annotations": annotations,
                "drafts": [],
                "predictions": predictions,
                "data": task["data"],
                "meta": task.get("meta", {}),
                "inner_id": k,
                "total_annotations": len(annotations),
                "total_predictions": len(predictions),
                "project": 7,
            }
        )
    return out


def suggest(p, item_ids: list[int], labeler: str = "ensemble", version: str = "e1") -> None:
    items = p.items().set_index("id")
    names = p.config.label_names
    rows = []
    for i in item_ids:
        probs = {n: 0.1 / (len(names) - 1) for n in names}
        probs[names[-1]] = 0.9
        rows.append(Suggestion(i, items.loc[i, "content_hash"], labeler, version, probs, 0.9))
    with p.db.engine.begin() as conn:
        add_suggestions(conn, rows)


def final(p, item_id: int, labels: list[str], kind: str, name: str, version=None, conf=None):
    row = {
        "project_id": p.id,
        "item_id": item_id,
        "labels": labels,
        "source_kind": kind,
        "source_name": name,
        "source_version": version,
        "confidence": conf,
    }
    with p.db.engine.begin() as conn:
        set_final_labels(conn, [row])


def answers(p) -> set[tuple[str, str, tuple[str, ...]]]:
    hl, it = HumanLabelRow.__table__, ItemRow.__table__
    with p.db.engine.connect() as conn:
        rows = conn.execute(
            select(it.c.content_hash, hl.c.annotator, hl.c.labels)
            .join(it, it.c.id == hl.c.item_id)
            .where(it.c.project_id == p.id)
        )
        return {(h, who, tuple(labels)) for h, who, labels in rows}


def suggestions(p) -> list[dict[str, Any]]:
    sg, it = SuggestionRow.__table__, ItemRow.__table__
    with p.db.engine.connect() as conn:
        rows = conn.execute(
            select(sg).join(it, it.c.id == sg.c.item_id).where(it.c.project_id == p.id)
        )
        return [dict(r) for r in rows.mappings()]


@pytest.fixture
def worked(make_project, tmp_path: Path):
    """Five items: ana's answer; ana's and bo's answers; a machine label; a label propagated
    from ana; a queued item with only machine suggestions. Every item has suggestions."""
    p = make_project(labels=["ham", "spam"])
    src = tmp_path / "src.jsonl"
    texts = ["see you at 6", "WIN a prize", "50% off", "call me back", "lunch?"]
    src.write_text("".join(json.dumps({"text": t, "lang": "en"}) + "\n" for t in texts))
    p.ingest(src)
    ids = p.items()["id"].tolist()
    suggest(p, ids)
    suggest(p, ids, "zeroshot", "z1")
    p.label(ids[0], ["ham"], annotator="ana", time_spent_ms=2500)
    p.label(ids[1], ["spam"], annotator="ana")
    p.label(ids[1], ["spam"], annotator="bo")
    final(p, ids[2], ["spam"], "machine", "ensemble", "e1", 0.97)
    final(p, ids[3], ["ham"], "propagated", "ana")
    return p, ids


def export_tasks(p, path: Path, **options: Any) -> tuple[Any, list[dict[str, Any]]]:
    s = p.export(path, **options)
    return s, json.loads(path.read_text(encoding="utf-8"))


# -- export ----------------------------------------------------------------------------------


def test_export_is_what_a_stock_label_studio_imports(worked, tmp_path: Path) -> None:
    p, ids = worked
    s, tasks = export_tasks(p, tmp_path / "tasks.json")  # .json: Label Studio by default
    assert s.format == "label-studio" and s.rows == 5
    assert (s.annotations, s.annotations_with_email, s.propagated) == (3, 0, 1)
    by_id = {t["meta"]["labelloop"]["item_id"]: t for t in tasks}
    ann = by_id[ids[0]]["annotations"][0]
    assert "completed_by" not in ann  # no mapping: Label Studio credits the importing user
    assert ann["lead_time"] == 2.5 and ann["ground_truth"] is False
    ours = by_id[ids[0]]["meta"]["labelloop"]
    assert ours["annotations"][str(ann["id"])] == {"annotator": "ana", "labels": ["ham"]}
    assert ours["content_hash"] == p.items().set_index("id").loc[ids[0], "content_hash"]
    assert by_id[ids[0]]["data"] == {"text": "see you at 6", "lang": "en"}
    assert "id" not in by_id[ids[0]]  # no Label Studio task id known yet
    assert [a["id"] for a in by_id[ids[1]]["annotations"]] != []  # both people's answers
    assert len(by_id[ids[1]]["annotations"]) == 2

    # an email mapping: the project file's setting, then the option on top of it
    p.config.label_studio.annotator_emails["ana"] = "ana@x.org"
    s, tasks = export_tasks(p, tmp_path / "mapped.json", annotator_emails={"bo": "bo@x.org"})
    assert s.annotations_with_email == 3
    emails = {a["completed_by"]["email"] for t in tasks for a in t.get("annotations", []) if a}
    assert emails == {"ana@x.org", "bo@x.org"}
    with pytest.raises(ExportError, match="not an email address"):
        p.export(tmp_path / "bad.json", annotator_emails={"bo": "bo"})


def test_predictions_for_every_item_with_suggestions(worked, tmp_path: Path) -> None:
    p, ids = worked
    _, tasks = export_tasks(p, tmp_path / "tasks.json")
    by_id = {t["meta"]["labelloop"]["item_id"]: t for t in tasks}
    queued = by_id[ids[4]]
    assert "annotations" not in queued
    versions = {pr["model_version"]: pr for pr in queued["predictions"]}
    assert set(versions) == {"ensemble:e1", "zeroshot:z1"}
    assert versions["ensemble:e1"]["score"] == pytest.approx(0.9)
    assert versions["ensemble:e1"]["result"][0]["value"] == {"choices": ["spam"]}
    machine = [pr["model_version"] for pr in by_id[ids[2]]["predictions"]]
    assert machine.count("ensemble:e1") == 1  # the machine's final label, not twice
    assert by_id[ids[2]]["meta"]["labelloop"]["final"]["source_kind"] == "machine"
    s, tasks = export_tasks(p, tmp_path / "none.json", include_predictions=False)
    assert s.predictions == 0 and all("predictions" not in t for t in tasks)


def test_propagated_labels_are_marked_and_stay_propagated(
    worked, make_project, tmp_path: Path
) -> None:
    p, ids = worked
    _, tasks = export_tasks(p, tmp_path / "tasks.json")
    copied = next(t for t in tasks if t["meta"]["labelloop"]["item_id"] == ids[3])
    assert "annotations" not in copied  # not the person's annotation
    assert "labelloop:propagated" in [pr["model_version"] for pr in copied["predictions"]]
    assert copied["meta"]["labelloop"]["final"]["source_kind"] == "propagated"
    fresh = make_project(labels=["ham", "spam"])
    s = fresh.import_label_studio(write(tmp_path / "ls.json", as_label_studio(tasks, "snapshot")))
    assert s.propagated == 1
    row = fresh.final_labels().set_index("content").loc["call me back"]
    assert row["source_kind"] == "propagated" and row["source_name"] == "ana"
    assert not [a for a in answers(fresh) if a[0] == copied["meta"]["labelloop"]["content_hash"]]


# -- import: both shapes, identity, JSON_MIN --------------------------------------------------


@pytest.mark.parametrize("shape", ["plain", "snapshot"])
def test_reimport_into_the_same_project_adds_nothing(worked, tmp_path: Path, shape: str) -> None:
    p, ids = worked
    _, tasks = export_tasks(p, tmp_path / "tasks.json")
    back = write(tmp_path / f"{shape}.json", as_label_studio(tasks, shape))
    before = (answers(p), len(suggestions(p)), p.final_labels().to_json(date_format="iso"))
    s = p.import_label_studio(back)
    assert s.shape == shape and s.tasks_matched == 5 and s.issues == []
    assert (s.annotations, s.predictions, s.final_labels) == (0, 0, 0)
    assert s.annotations_from_labelloop == 3
    assert (answers(p), len(suggestions(p)), p.final_labels().to_json(date_format="iso")) == before
    if shape == "plain":
        assert s.predictions_as_ids == sum(len(t["predictions"]) for t in tasks)
        assert s.predictions_rejected == 0 and "snapshot" in s.warnings[0]
    # Label Studio's task ids are read back, and the next export carries them
    assert s.task_ids_recorded == 5
    _, again = export_tasks(p, tmp_path / "next.json")
    assert sorted(t["id"] for t in again) == [1001, 1002, 1003, 1004, 1005]


def test_a_fresh_project_gets_answers_annotators_and_predictions(
    worked, make_project, tmp_path: Path
) -> None:
    p, _ = worked
    _, tasks = export_tasks(p, tmp_path / "tasks.json", annotator_emails={"ana": "ana@x.org"})
    back = write(tmp_path / "snap.json", as_label_studio(tasks, "snapshot", {"ana@x.org": 2}))
    fresh = make_project(labels=["ham", "spam"])
    s = fresh.import_label_studio(back)
    assert s.ingest is not None and s.ingest.items_added == 5 and s.issues == []
    assert answers(fresh) == {(h, who, labels) for h, who, labels in answers(p)}
    people = fresh.final_labels().query("source_kind == 'import'")
    assert set(people["source_name"]) == {"ana", "bo"} and len(people) == 2
    got = {(sg["labeler"], sg["labeler_version"]) for sg in suggestions(fresh)}
    assert got == {("label-studio", "ensemble:e1"), ("label-studio", "zeroshot:z1")}
    assert s.predictions == sum(len(t.get("predictions", [])) for t in tasks) - 1  # propagated
    again = fresh.import_label_studio(back)
    assert (again.annotations, again.predictions, again.final_labels) == (0, 0, 0)


def test_an_answer_given_in_label_studio_is_imported_once(worked, tmp_path: Path) -> None:
    p, ids = worked
    _, tasks = export_tasks(p, tmp_path / "tasks.json")
    back = as_label_studio(tasks, "snapshot")
    result = [dict(back[4]["predictions"][0]["result"][0])]
    back[4]["annotations"].append(
        {
            "id": 99,
            "import_id": None,
            "completed_by": {"id": 3, "email": "cy@x.org"},
            "result": result,
        }
    )
    path = write(tmp_path / "snap.json", back)
    s = p.import_label_studio(path, annotators={"cy@x.org": "cy"})
    assert s.annotations == 1 and s.final_labels == 1
    assert p.final_labels().set_index("item_id").loc[ids[4], "source_name"] == "cy"
    assert p.import_label_studio(path, annotators={"cy@x.org": "cy"}).annotations == 0


def test_json_min_is_refused_with_the_reason(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"])
    with pytest.raises(IngestError, match="JSON_MIN export .* Export 'JSON'"):
        p.import_label_studio(write(tmp_path / "min.json", RECORDED_MIN))
    assert p.count() == 0


def test_recorded_plain_export_with_its_labeling_config(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["ham", "spam"])  # content field "text"; Label Studio's is "sms"
    path = write(tmp_path / "export.json", [RECORDED_PLAIN])
    s = p.import_label_studio(path, label_config=TEXT_CONFIG)
    assert (s.shape, s.from_name, s.to_name, s.data_key) == ("plain", "topic", "message", "sms")
    assert s.annotations == 1 and s.predictions_as_ids == 1 and s.predictions_rejected == 0
    row = p.final_labels().iloc[0]
    assert row["content"] == "hello" and row["source_name"] == "ls-user-1"
    # the next export keeps Label Studio's names and config, and its task id
    out = p.export(tmp_path / "back.json")
    assert (out.from_name, out.to_name, out.data_key) == ("topic", "message", "sms")
    assert out.label_config == TEXT_CONFIG
    assert Path(out.label_config_path).read_text(encoding="utf-8") == TEXT_CONFIG
    [task] = json.loads(Path(out.path).read_text(encoding="utf-8"))
    assert task["id"] == 1 and task["data"] == {"sms": "hello"}
    assert task["annotations"][0]["result"][0]["from_name"] == "topic"
    # the config beside a file is read without being named
    other = make_project(labels=["ham", "spam"])
    again = other.import_label_studio(out.path)
    assert again.from_name == "topic" and again.annotations == 1 and again.issues == []
    with pytest.raises(IngestError, match="no Choices control 'label'"):
        p.import_label_studio(path, label_config=TEXT_CONFIG, from_name="label")


def test_multi_label_none_of_these_survives(make_project, tmp_path: Path) -> None:
    p = make_project(labels=["a", "b", "c"], task="multi_label")
    src = tmp_path / "src.jsonl"
    src.write_text(json.dumps({"text": "x"}) + "\n" + json.dumps({"text": "y"}) + "\n")
    p.ingest(src)
    ids = p.items()["id"].tolist()
    p.label(ids[0], [], annotator="ana")
    p.label(ids[1], ["a", "c"], annotator="ana")
    _, tasks = export_tasks(p, tmp_path / "tasks.json")
    fresh = make_project(labels=["a", "b", "c"], task="multi_label")
    s = fresh.import_label_studio(write(tmp_path / "s.json", as_label_studio(tasks, "snapshot")))
    assert s.issues == [] and answers(fresh) == answers(p)


# -- tables and images -----------------------------------------------------------------------


def test_table_rows_round_trip(make_project, tmp_path: Path) -> None:
    fields = dict(modality="tabular", labels=["low", "high"], content_fields=["age", "city"])
    p = make_project(**fields)
    src = tmp_path / "rows.csv"
    src.write_text("age,city,note\n34,Oslo,x\n71,Rome,y\n", encoding="utf-8")
    p.ingest(src)
    ids = p.items()["id"].tolist()
    p.label(ids[0], ["high"], annotator="ana")
    suggest(p, ids)
    s, tasks = export_tasks(p, tmp_path / "rows.json")
    assert tasks[0]["data"]["row"] == json.loads(p.items()["content"].iloc[0])
    root = ET.fromstring(s.label_config)
    table = root.find("Table")
    assert table is not None and table.get("value") == "$row" and table.get("name") == "table"
    fresh = make_project(**fields)
    back = fresh.import_label_studio(write(tmp_path / "s.json", as_label_studio(tasks, "snapshot")))
    assert back.issues == [] and back.ingest is not None and back.ingest.items_added == 2
    assert set(fresh.items()["content_hash"]) == set(p.items()["content_hash"])
    assert answers(fresh) == answers(p) and back.predictions == 2


def test_images_are_given_by_url_and_found_again(make_project, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "imgs").mkdir(parents=True)
    for k, colour in enumerate([(250, 10, 10), (10, 10, 250)]):
        Image.new("RGB", (8, 8), colour).save(media / "imgs" / f"i{k}.png")
    fields = dict(
        modality="image", labels=["warm", "cool"], label_studio={"media_root": str(media)}
    )
    p = make_project(**fields)
    p.ingest(media / "imgs")
    ids = p.items()["id"].tolist()
    p.label(ids[0], ["warm"], annotator="ana")
    s, tasks = export_tasks(p, tmp_path / "imgs.json")
    urls = sorted(t["data"]["image"] for t in tasks)
    assert urls == ["/data/local-files/?d=imgs/i0.png", "/data/local-files/?d=imgs/i1.png"]
    assert ET.fromstring(s.label_config).find("Image").get("value") == "$image"
    # by identity (meta), and by the image's file when a task has no labelloop meta
    back = as_label_studio(tasks, "plain")
    assert p.import_label_studio(write(tmp_path / "b.json", back)).tasks_matched == 2
    fresh = make_project(**fields)
    fresh.ingest(media / "imgs")
    for t in back:
        t["meta"] = {}
    s2 = fresh.import_label_studio(write(tmp_path / "c.json", back))
    assert s2.tasks_matched == 2 and s2.annotations == 1 and s2.issues == []
    empty = make_project(**fields)  # images not ingested: the tasks are quarantined, clearly
    s3 = empty.import_label_studio(write(tmp_path / "c.json", back))
    assert s3.tasks_matched == 0 and s3.issues[0].reason.startswith("unknown image")
    with pytest.raises(ExportError, match="not under the media root"):
        p.export(tmp_path / "x.json", media_root=tmp_path / "elsewhere")


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_guesses_label_studio_from_json_and_names_formats(worked, tmp_path: Path) -> None:
    p, _ = worked
    runner = CliRunner()
    out = tmp_path / "x.json"
    folder = str(p.ctx.folder)
    res = runner.invoke(
        app, ["export", str(out), "-p", folder, "--annotator-emails", "ana=ana@x.org"]
    )
    assert res.exit_code == 0, res.output
    assert "Wrote 5 tasks" in res.output and "2 with an annotator email" in res.output
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert {
        a.get("completed_by", {}).get("email") for t in tasks for a in t.get("annotations", [])
    } == {
        "ana@x.org",
        None,
    }
    assert (tmp_path / "x.label_config.xml").is_file()
    res = runner.invoke(app, ["export", str(tmp_path / "x.txt"), "-p", folder])
    assert res.exit_code == 1 and "--format csv, jsonl, parquet or label-studio" in res.output
    assert "fmt=" not in res.output
    res = runner.invoke(app, ["import", str(out), "-p", folder])
    assert res.exit_code == 0 and "0 annotations and 0 predictions added" in res.output
    min_file = write(tmp_path / "min.json", RECORDED_MIN)
    res = runner.invoke(app, ["import", str(min_file), "-p", folder])
    assert res.exit_code == 1 and "JSON_MIN" in res.output
    assert export_kind("a.csv") == "csv" and export_kind("a.out", "ls") == "label-studio"


# -- the real Label Studio -------------------------------------------------------------------


def test_round_trip_through_a_real_label_studio(tmp_path: Path) -> None:
    where = os.environ.get("LABELLOOP_LABEL_STUDIO")
    if not where:
        pytest.skip(
            "set LABELLOOP_LABEL_STUDIO to a Label Studio venv (python -m venv v && "
            "v/bin/pip install label-studio) to run the real round trip"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "label_studio_roundtrip.py"),
            "--label-studio",
            where,
            "--port",
            str(port),
            "--items",
            "80",
            "--json",
            str(figures),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(figures.read_text(encoding="utf-8"))
    assert got["failed_checks"] == []
    text = got["text"]
    assert text["label_studio_import"]["task_count"] == text["labelloop_export"]["tasks"]
    assert text["reimport_same_project"]["snapshot"]["annotations_added"] == 0
    assert set(text["fresh_project"]["annotators"]) >= {"ana", "bo"}
    assert text["push"]["again"]["tasks_created"] == 0
