"""Label Studio round trip (issue 12, item 5) through a real Label Studio.

Starts Label Studio (its own virtual environment: ``--label-studio`` or the environment
variable LABELLOOP_LABEL_STUDIO, the venv folder or its ``label-studio`` program) on
127.0.0.1 with a throw-away data folder, then for text, images and tables:

1. (text only) a Label Studio project with its own control names (``topic`` on ``message``,
   data key ``sms``) is filled and exported as a snapshot; labelloop imports it with the
   labeling config read from Label Studio's API;
2. labelloop adds people's answers (``ana``, mapped to a Label Studio member's email, and
   ``bo``, not mapped; some items answered by both), machine suggestions on every item,
   machine final labels and propagated labels;
3. labelloop exports; a new Label Studio project is created with the exported labeling
   config and imports the file (counts from Label Studio's answer);
4. Label Studio exports it back as plain JSON, as a snapshot and as JSON_MIN; labelloop
   re-imports the plain and snapshot exports into the same project (must add nothing) and
   the snapshot into a fresh project (must hold the same answers, annotators, predictions and
   final labels), and refuses JSON_MIN;
5. images: an image task's URL is fetched from Label Studio and compared with the file.

Prints one JSON object with the figures (and writes it with ``--json``); exits 1 when a
check fails.

    LABELLOOP_LABEL_STUDIO=/tmp/lsvenv .venv/bin/python bench/label_studio_roundtrip.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from labelloop.core.errors import IngestError
from labelloop.core.types import Suggestion
from labelloop.project import Project
from labelloop.store.labels import add_suggestions, set_final_labels

# A throwaway Label Studio on 127.0.0.1 with a temporary data folder: its admin's password and
# API token are drawn afresh for each run (nothing to keep, nothing stored in the repository).
USER, PASSWORD = "admin@example.org", secrets.token_urlsafe(16)
TOKEN = secrets.token_hex(20)
ANA_EMAIL = "ana@example.org"
TEXT_CONFIG = """<View>
  <Text name="message" value="$sms"/>
  <Choices name="topic" toName="message" choice="single" showInline="true">
    <Choice value="ham"/>
    <Choice value="spam"/>
  </Choices>
</View>
"""
SMS = Path(__file__).resolve().parents[1] / "src" / "labelloop" / "demo" / "data" / "sms_spam.csv"


# -- Label Studio, started and spoken to ------------------------------------------------------


def label_studio_program(given: str | None) -> Path:
    where = given or os.environ.get("LABELLOOP_LABEL_STUDIO")
    if not where:
        raise SystemExit("give --label-studio or LABELLOOP_LABEL_STUDIO (a venv with label-studio)")
    path = Path(where)
    for candidate in (path / "bin" / "label-studio", path):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{where}: no label-studio program there")


def start(program: Path, port: int, data_dir: Path, media_root: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(media_root),
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = open(data_dir / "label-studio.log", "w")  # noqa: SIM115 - the server's whole life
    proc = subprocess.Popen(
        [
            str(program), "start", "--no-browser", "--port", str(port),
            "--internal-host", "127.0.0.1", "--data-dir", str(data_dir),
            "--username", USER, "--password", PASSWORD, "--user-token", TOKEN,
            "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"Label Studio exited ({proc.returncode}); see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(2)
    proc.terminate()
    raise SystemExit("Label Studio did not answer within 600 s")


class LabelStudio:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Token {TOKEN}"}, timeout=300
        )

    def call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.http.request(method, url, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {url}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def version(self) -> str:
        return str(self.call("GET", "/api/version")["release"])

    def project(self, title: str, label_config: str) -> int:
        return int(
            self.call("POST", "/api/projects", json={"title": title, "label_config": label_config})[
                "id"
            ]
        )

    def import_tasks(self, pid: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        return self.call("POST", f"/api/projects/{pid}/import", json=tasks)

    def label_config(self, pid: int) -> str:
        return str(self.call("GET", f"/api/projects/{pid}")["label_config"])

    def export(self, pid: int, kind: str) -> list[dict[str, Any]]:
        params = {"exportType": kind, "download_all_tasks": "true"}
        return self.call("GET", f"/api/projects/{pid}/export", params=params)

    def snapshot(self, pid: int) -> list[dict[str, Any]]:
        options = {
            "annotations__completed_by": {"only_id": False},
            "predictions": {"only_id": False},
        }
        made = self.call(
            "POST", f"/api/projects/{pid}/exports", json={"serialization_options": options}
        )
        for _ in range(300):
            state = self.call("GET", f"/api/projects/{pid}/exports/{made['id']}")
            if state["status"] == "completed":
                break
            time.sleep(1)
        return self.call(
            "GET",
            f"/api/projects/{pid}/exports/{made['id']}/download",
            params={"exportType": "JSON"},
        )

    def add_member(self, email: str) -> None:
        self.call("POST", "/api/users", json={"email": email, "username": email.split("@")[0]})


# -- labelloop's side -------------------------------------------------------------------------


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def simulate_work(p: Project, rng: random.Random) -> None:
    """People's answers, machine suggestions on every item, machine and propagated labels."""
    labels = p.config.label_names
    items = p.items()["id"].tolist()
    final = p.final_labels()
    free = [i for i in items if i not in set(final["item_id"])]
    rng.shuffle(free)
    n = len(free)
    ana, bo = free[: int(0.3 * n)], free[int(0.3 * n) : int(0.4 * n)]
    machine, copied = free[int(0.4 * n) : int(0.6 * n)], free[int(0.6 * n) : int(0.65 * n)]
    for i in ana:
        p.label(i, [rng.choice(labels)], annotator="ana", time_spent_ms=rng.randint(800, 9000))
    for k, i in enumerate(bo):
        if k % 2 == 0:  # overlap: ana answered too
            p.label(i, [rng.choice(labels)], annotator="ana")
        p.label(i, [rng.choice(labels)], annotator="bo", time_spent_ms=rng.randint(800, 9000))
    hashes = dict(zip(p.items()["id"], p.items()["content_hash"], strict=True))
    suggestions = []
    for i in items:
        for labeler, version in (("ensemble", "e1"), ("zeroshot", "z1")):
            top = rng.random()
            probs = {name: (1 - top) / (len(labels) - 1) for name in labels}
            probs[rng.choice(labels)] = top
            probs = {k: v / sum(probs.values()) for k, v in probs.items()}
            suggestions.append(
                Suggestion(i, hashes[i], labeler, version, probs, confidence=max(probs.values()))
            )
    rows = [
        {
            "project_id": p.id,
            "item_id": i,
            "labels": [rng.choice(labels)],
            "source_kind": "machine",
            "source_name": "ensemble",
            "source_version": "e1",
            "confidence": 0.97,
        }
        for i in machine
    ] + [
        {
            "project_id": p.id,
            "item_id": i,
            "labels": [rng.choice(labels)],
            "source_kind": "propagated",
            "source_name": "ana",
            "source_version": None,
            "confidence": None,
        }
        for i in copied
    ]
    with p.db.engine.begin() as conn:
        add_suggestions(conn, suggestions)
        set_final_labels(conn, rows)


def answers(p: Project) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """Per content hash: the (annotator, labels) answers the project holds."""
    from sqlalchemy import select

    from labelloop.store.models import HumanLabelRow, ItemRow

    hl, it = HumanLabelRow.__table__, ItemRow.__table__
    out: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    with p.db.engine.connect() as conn:
        rows = conn.execute(
            select(it.c.content_hash, hl.c.annotator, hl.c.labels)
            .join(it, it.c.id == hl.c.item_id)
            .where(it.c.project_id == p.id, hl.c.action.notin_(("skip", "undo", "undone")))
        )
        for h, who, labels in rows:
            out.setdefault(h, set()).add((who, tuple(labels)))
    return out


def finals(p: Project, kinds: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], str]]:
    df = p.final_labels()
    df = df[df["source_kind"].isin(kinds)]
    return {r.content_hash: (tuple(r.labels), r.source_kind) for r in df.itertuples()}


def counts(p: Project) -> dict[str, int]:
    from sqlalchemy import func, select

    from labelloop.store.models import HumanLabelRow, ItemRow, SuggestionRow

    out = {"items": p.count()}
    with p.db.engine.connect() as conn:
        for name, table in (("answers", HumanLabelRow), ("suggestions", SuggestionRow)):
            t = table.__table__
            it = ItemRow.__table__
            out[name] = conn.execute(
                select(func.count())
                .select_from(t.join(it, it.c.id == t.c.item_id))
                .where(it.c.project_id == p.id)
            ).scalar_one()
    out["final_labels"] = len(p.final_labels())
    return out


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(what)


def round_trip(
    name: str,
    ls: LabelStudio,
    p: Project,
    work: Path,
    check: Checks,
    fresh: Project,
) -> dict[str, Any]:
    """labelloop -> Label Studio -> labelloop for one project; the figures."""
    exported = p.export(work / f"{name}.json", annotator_emails={"ana": ANA_EMAIL})
    tasks = json.loads(Path(exported.path).read_text(encoding="utf-8"))
    pid = ls.project(f"{name} (from labelloop)", exported.label_config)
    took = time.perf_counter()
    answer = ls.import_tasks(pid, tasks)
    import_s = time.perf_counter() - took
    check(answer["task_count"] == exported.rows, f"{name}: Label Studio imported every task")
    check(answer["annotation_count"] == exported.annotations, f"{name}: every annotation")
    check(answer["prediction_count"] == exported.predictions, f"{name}: every prediction")
    plain = write(work / f"{name}-plain.json", ls.export(pid, "JSON"))
    snap = write(work / f"{name}-snapshot.json", ls.snapshot(pid))
    out: dict[str, Any] = {
        "labelloop_export": {
            "tasks": exported.rows,
            "annotations": exported.annotations,
            "annotations_with_email": exported.annotations_with_email,
            "predictions": exported.predictions,
            "propagated": exported.propagated,
            "control": f"{exported.from_name} -> {exported.to_name} (${exported.data_key})",
        },
        "label_studio_import": {
            k: answer[k] for k in ("task_count", "annotation_count", "prediction_count")
        }
        | {"seconds": round(import_s, 2)},
    }
    snapshot_tasks = json.loads(snap.read_text(encoding="utf-8"))
    out["label_studio_snapshot"] = {
        "tasks": len(snapshot_tasks),
        "annotations": sum(len(t.get("annotations") or []) for t in snapshot_tasks),
        "predictions": sum(len(t.get("predictions") or []) for t in snapshot_tasks),
    }
    before = counts(p)
    again = {}
    for shape, path in (("plain", plain), ("snapshot", snap)):
        s = p.import_label_studio(path)
        again[shape] = {
            "shape": s.shape,
            "tasks_matched": s.tasks_matched,
            "annotations_added": s.annotations,
            "predictions_added": s.predictions,
            "final_labels_changed": s.final_labels,
            "predictions_as_ids": s.predictions_as_ids,
            "annotations_from_labelloop": s.annotations_from_labelloop,
            "task_ids_recorded": s.task_ids_recorded,
            "issues": len(s.issues),
        }
        check(s.shape == shape, f"{name}: {shape} export recognised")
        check(s.tasks_matched == exported.rows, f"{name}: {shape}: every task found by identity")
        check(s.annotations == 0 and s.predictions == 0, f"{name}: {shape} re-import adds nothing")
        check(s.final_labels == 0 and not s.issues, f"{name}: {shape} re-import changes nothing")
    check(counts(p) == before, f"{name}: re-imports leave the project as it was")
    check(again["plain"]["predictions_as_ids"] == exported.predictions, f"{name}: plain ids")
    out["reimport_same_project"] = again
    # identity both ways: the next export carries Label Studio's task ids
    next_tasks = json.loads(
        Path(p.export(work / f"{name}-next.json").path).read_text(encoding="utf-8")
    )
    ls_ids = {t["id"] for t in snapshot_tasks}
    carried = sum(1 for t in next_tasks if t.get("id") in ls_ids)
    check(carried == exported.rows, f"{name}: the next export carries Label Studio's task ids")
    out["next_export_with_label_studio_ids"] = carried
    # a fresh project gets the same answers, annotators, predictions and final labels
    config = ls.label_config(pid)  # what a person gives: the Label Studio project's config
    s = fresh.import_label_studio(snap, label_config=config)
    second = fresh.import_label_studio(snap, label_config=config)
    got, want = answers(fresh), answers(p)
    check(got == want, f"{name}: a fresh project holds the same answers by the same annotators")
    kinds = ("human", "import")
    check(
        {h: labels for h, (labels, _) in finals(fresh, kinds).items()}
        == {h: labels for h, (labels, _) in finals(p, kinds).items()},
        f"{name}: a fresh project holds the same people's final labels",
    )
    check(
        finals(fresh, ("propagated",)) == finals(p, ("propagated",)),
        f"{name}: propagated labels stay propagated",
    )
    check(
        s.predictions == exported.predictions - exported.propagated,
        f"{name}: every machine prediction becomes a suggestion",
    )
    check(second.annotations == 0 and second.predictions == 0, f"{name}: fresh re-import adds 0")
    annotators = sorted({who for pairs in got.values() for who, _ in pairs})
    out["fresh_project"] = {
        "items": fresh.count(),
        "annotations": s.annotations,
        "predictions": s.predictions,
        "propagated": s.propagated,
        "annotators": annotators,
        "again_added": second.annotations + second.predictions,
    }
    out["push"] = push_round(name, ls, p, pid, exported.rows, work, check)
    minimal = write(work / f"{name}-min.json", ls.export(pid, "JSON_MIN"))
    try:
        p.import_label_studio(minimal)
        out["json_min"] = "read"
        check(False, f"{name}: JSON_MIN refused")
    except IngestError as exc:
        out["json_min"] = f"refused: {str(exc)[:90]}..."
    out["label_studio_project"] = pid
    return out


def push_round(
    name: str, ls: LabelStudio, p: Project, pid: int, rows: int, work: Path, check: Checks
) -> dict[str, Any]:
    """Updating Label Studio in place: a push of what it holds adds nothing; after new work
    in labelloop it adds just that; the Label Studio project keeps one task per item."""
    emails = {"ana": ANA_EMAIL}
    first = p.push_label_studio(ls.base, TOKEN, pid, annotator_emails=emails)
    check(
        first.tasks_created + first.annotations_created + first.predictions_created == 0,
        f"{name}: a push of what Label Studio holds adds nothing",
    )
    answered = {i for i, who in zip(*answers_by_item(p), strict=True) if who == "ana"}
    todo = [i for i in p.items()["id"].tolist() if i not in answered][:3]
    for i in todo:
        p.label(i, [p.config.label_names[0]], annotator="ana")
    hashes = dict(zip(p.items()["id"], p.items()["content_hash"], strict=True))
    even = {n: 1 / len(p.config.label_names) for n in p.config.label_names}
    newer = [Suggestion(i, hashes[i], "ensemble", "e2", even, confidence=0.5) for i in todo[:2]]
    with p.db.engine.begin() as conn:
        add_suggestions(conn, newer)
    second = p.push_label_studio(ls.base, TOKEN, pid, annotator_emails=emails)
    third = p.push_label_studio(ls.base, TOKEN, pid, annotator_emails=emails)
    check(second.tasks_created == 0, f"{name}: new work creates no task")
    check(second.annotations_created == len(todo), f"{name}: the new answers reach Label Studio")
    check(second.predictions_created == len(newer), f"{name}: the new suggestions too")
    check(
        third.tasks_created + third.annotations_created + third.predictions_created == 0,
        f"{name}: a second push adds nothing",
    )
    held = ls.snapshot(pid)
    check(len(held) == rows, f"{name}: Label Studio holds one task per item")
    before = counts(p)
    back = p.import_label_studio(write(work / f"{name}-after-push.json", held))
    check(back.annotations + back.predictions == 0, f"{name}: importing it back adds nothing")
    check(counts(p) == before, f"{name}: the project is as it was")
    return {
        "first": first.as_dict() | {"seconds": round(first.seconds, 2)},
        "after_new_work": second.as_dict() | {"seconds": round(second.seconds, 2)},
        "again": third.as_dict() | {"seconds": round(third.seconds, 2)},
        "label_studio_tasks": len(held),
    }


def answers_by_item(p: Project) -> tuple[list[int], list[str]]:
    from sqlalchemy import select

    from labelloop.store.models import HumanLabelRow, ItemRow

    hl, it = HumanLabelRow.__table__, ItemRow.__table__
    with p.db.engine.connect() as conn:
        rows = conn.execute(
            select(hl.c.item_id, hl.c.annotator)
            .join(it, it.c.id == hl.c.item_id)
            .where(it.c.project_id == p.id)
        ).all()
    return [r[0] for r in rows], [r[1] for r in rows]


def text_case(
    ls: LabelStudio, work: Path, n: int, check: Checks, storage: Callable[[str], str]
) -> dict[str, Any]:
    import csv

    rng = random.Random(0)
    with open(SMS, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    pid0 = ls.project("from Label Studio", TEXT_CONFIG)
    seed = []
    for k, row in enumerate(rows):
        task: dict[str, Any] = {"data": {"sms": row["text"]}}
        if k % 10 == 0:
            choice = {"from_name": "topic", "to_name": "message", "type": "choices"}
            task["annotations"] = [{"result": [{**choice, "value": {"choices": [row["label"]]}}]}]
        if k % 5 == 1:
            choice = {"from_name": "topic", "to_name": "message", "type": "choices"}
            task["predictions"] = [
                {
                    "model_version": "ls-model-1",
                    "score": 0.8,
                    "result": [{**choice, "value": {"choices": [row["label"]]}}],
                }
            ]
        seed.append(task)
    ls.import_tasks(pid0, seed)
    first = write(work / "from-ls.json", ls.snapshot(pid0))
    (work / "from-ls.label_config.xml").write_text(ls.label_config(pid0), encoding="utf-8")
    p = Project.init(work / "text", name="sms", labels=["ham", "spam"], storage=storage("text"))
    s = p.import_label_studio(first)
    check(s.from_name == "topic" and s.data_key == "sms", "text: the labeling config was read")
    check(s.ingest is not None and s.ingest.rows_read == len(rows), "text: every task an item")
    out = {
        "first_import": {
            "tasks": s.tasks,
            "annotations": s.annotations,
            "predictions": s.predictions,
            "control": f"{s.from_name} -> {s.to_name} (${s.data_key})",
        }
    }
    simulate_work(p, rng)
    fresh = Project.init(work / "text2", name="sms2", labels=["ham", "spam"], storage=storage("t2"))
    out |= round_trip("text", ls, p, work, check, fresh)
    lc = ls.label_config(out["label_studio_project"])
    check('name="topic"' in lc and "$sms" in lc, "text: Label Studio holds the original names")
    return out


def image_case(
    ls: LabelStudio, work: Path, media_root: Path, check: Checks, storage: Callable[[str], str]
) -> dict[str, Any]:
    rng = random.Random(1)
    folder = media_root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(12):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        Image.new("RGB", (16, 16), colour).save(folder / f"img{k:02d}.png")
    fields = dict(
        modality="image",
        labels=["warm", "cool"],
        storage=storage("img"),
        label_studio={"media_root": str(media_root)},
    )
    p = Project.init(work / "images", name="imgs", **fields)
    p.ingest(folder)
    simulate_work(p, rng)
    fresh = Project.init(work / "images2", name="imgs2", **{**fields, "storage": storage("img2")})
    fresh.ingest(folder)
    out = round_trip("images", ls, p, work, check, fresh)
    task = json.loads((work / "images-snapshot.json").read_text(encoding="utf-8"))[0]
    url = task["data"]["image"]
    # Label Studio serves a local file only under a local storage of the project.
    storage_path = str(media_root / "images")
    ls.call(
        "POST",
        "/api/storages/localfiles",
        json={"project": out["label_studio_project"], "path": storage_path, "use_blob_urls": True},
    )
    served = ls.http.get(url)
    item = p.items().set_index("content_hash").loc[task["meta"]["labelloop"]["content_hash"]]
    check(served.status_code == 200, "images: Label Studio serves the image by its URL")
    check(served.content == Path(item["media_path"]).read_bytes(), "images: the same bytes")
    out["image_url"] = url
    out["image_served"] = served.status_code
    return out


def table_case(
    ls: LabelStudio, work: Path, check: Checks, storage: Callable[[str], str]
) -> dict[str, Any]:
    rng = random.Random(2)
    src = work / "rows.csv"
    lines = ["age,income,city"] + [
        f"{rng.randint(18, 90)},{rng.randint(1000, 9000)},{rng.choice(['Oslo', 'Rome', 'Lima'])}"
        for _ in range(60)
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fields = dict(
        modality="tabular",
        labels=["low", "high"],
        content_fields=["age", "income", "city"],
        storage=storage("tab"),
    )
    p = Project.init(work / "table", name="rows", **fields)
    p.ingest(src)
    simulate_work(p, rng)
    fresh = Project.init(work / "table2", name="rows2", **{**fields, "storage": storage("tab2")})
    out = round_trip("tables", ls, p, work, check, fresh)
    check(fresh.count() == p.count(), "tables: a fresh project rebuilds every row from the tasks")
    same = set(fresh.items()["content_hash"]) == set(p.items()["content_hash"])
    check(same, "tables: the same rows (content hashes)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label-studio", help="Label Studio's venv (or its label-studio program)")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument("--items", type=int, default=500, help="text items")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = ap.parse_args()
    program = label_studio_program(args.label_studio)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ls-roundtrip-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir, media_root = work / "label-studio-data", work / "media"
    data_dir.mkdir(exist_ok=True)
    media_root.mkdir(exist_ok=True)

    def storage(name: str) -> str:
        return f"sqlite:///{work / (name + '.db')}"

    started = time.perf_counter()
    proc = start(program, args.port, data_dir, media_root)
    check = Checks()
    try:
        ls = LabelStudio(args.port)
        ls.add_member(ANA_EMAIL)
        figures: dict[str, Any] = {"label_studio_version": ls.version()}
        figures["text"] = text_case(ls, work, args.items, check, storage)
        figures["images"] = image_case(ls, work, media_root, check, storage)
        figures["tables"] = table_case(ls, work, check, storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["failed_checks"] = check.failed
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
