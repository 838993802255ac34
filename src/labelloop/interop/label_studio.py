"""Label Studio's JSON task format (https://labelstud.io/guide/task_format), both ways.

Import: a JSON list of tasks (or JSONL, one task a line). Each task's ``data`` is ingested
through ``LabelStudioReader``, so the project's validation, quarantine and dedup rules hold
(a task without the content field is quarantined with its position). Each annotation becomes
a human label (action "import") and the chosen one the item's final label (source_kind
"import"); each prediction becomes a ``Suggestion`` from the labeler "label-studio". An
annotation or prediction that cannot become a label (a choice outside the taxonomy, no choice,
several choices on a single-label project, a bad score) is quarantined with the task id and the
reason, and listed in the summary; cancelled annotations are skipped and counted. Importing the
same file twice adds nothing.

Export: every item as a task; a human (or imported) final label as an annotation, a machine
final label as a prediction (model_version = the labeler's version, score = its confidence).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from labelloop.core.config import Modality, ProjectConfig, TaskType
from labelloop.core.errors import IngestError
from labelloop.core.progress import Progress
from labelloop.core.types import Suggestion
from labelloop.interop.tables import ExportError, ExportSummary, as_utc
from labelloop.sources.ingest import IngestReport, ingest, quarantine_path
from labelloop.sources.records import RawRecord
from labelloop.sources.validate import ItemBuilder, RowRejected
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.interop import (
    final_labels_of,
    human_labels_by_action,
    insert_human_labels,
    item_ids_by_hash,
    latest_human_labels,
    mark_suggested,
    reading,
    stream_items_with_final_labels,
    suggestion_versions,
    writing,
)
from labelloop.store.items import insert_quarantine
from labelloop.store.labels import add_suggestions, set_final_labels
from labelloop.store.models import utcnow

LS_LABELER = "label-studio"
IMPORT_ACTION = "import"
_RAW_KEEP = 2000  # characters of a rejected task, annotation or prediction kept in quarantine
_MAX_MS = 2**31 - 1  # human_labels.time_spent_ms is a 32-bit integer
# Keys of a task that are not its data when a task comes without a "data" object.
_TASK_KEYS = {"id", "annotations", "completions", "predictions", "drafts", "meta", "project"}


# -- reading tasks ---------------------------------------------------------------------------


@dataclass(slots=True)
class _BadLine:
    """A JSONL line that is not JSON: it becomes a quarantined record, not an error."""

    line: int
    error: str
    raw: str


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def load_tasks(path: Path) -> list[Any]:
    """The tasks of a Label Studio JSON export (a list, or one task) or of a JSONL file."""
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        tasks: list[Any] = []
        with open(path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    tasks.append(json.loads(raw.decode("utf-8")))
                except UnicodeDecodeError as exc:
                    text = raw.decode("utf-8", "backslashreplace")[:_RAW_KEEP]
                    tasks.append(
                        _BadLine(line_no, f"bad encoding: not UTF-8 at byte {exc.start}", text)
                    )
                except json.JSONDecodeError as exc:
                    text = raw.decode("utf-8")[:_RAW_KEEP]
                    tasks.append(
                        _BadLine(line_no, f"invalid JSON: {exc.msg} at column {exc.colno}", text)
                    )
        return tasks
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "expected a list of Label Studio tasks"
        ) from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise IngestError(
            f"{path}: expected a list of Label Studio tasks, found a JSON {type(data).__name__}"
        )
    return data


def task_data(task: Mapping[str, Any]) -> Any:
    """A task's ``data``; as in Label Studio, a task without one is all data."""
    if "data" in task:
        return task["data"]
    return {k: v for k, v in task.items() if k not in _TASK_KEYS}


def task_annotations(task: Any) -> list[Any]:
    """Annotations (``completions`` in Label Studio before 1.0)."""
    if not isinstance(task, dict):
        return []
    found = task.get("annotations", task.get("completions")) or []
    return found if isinstance(found, list) else [found]


def task_predictions(task: Any) -> list[Any]:
    if not isinstance(task, dict):
        return []
    found = task.get("predictions") or []
    return found if isinstance(found, list) else [found]


class LabelStudioReader:
    """A ``Reader`` over Label Studio tasks: one record per task, its fields from ``data``.

    ``field_map`` renames data keys onto the project's fields (``{"text": "message"}``); other
    keys pass unchanged (non-content ones become the item's metadata). The record's position is
    the task's place in the file (1-based).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        field_map: Mapping[str, str] | None = None,
        content_fields: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.source_id = str(self.path.resolve())
        self.field_map = dict(field_map or {})
        # Given the content fields, the whole task is kept as the raw text only where one is
        # missing or blank (the task will be quarantined): dumping every task costs time.
        self.content_fields = list(content_fields) if content_fields is not None else None
        self.tasks = load_tasks(self.path)

    def columns(self) -> list[str] | None:
        return None  # tasks may differ: a task missing the content field is quarantined alone

    def size_hint(self) -> int | None:
        return len(self.tasks)

    def records(self) -> Iterator[RawRecord]:
        for position, task in enumerate(self.tasks, start=1):
            yield self.record(position, task)

    def record(self, position: int, task: Any) -> RawRecord:
        if isinstance(task, _BadLine):
            return RawRecord(position, line=task.line, error=task.error, raw=task.raw)
        if not isinstance(task, dict):
            return RawRecord(
                position,
                error=f"invalid task: expected an object, found {type(task).__name__}",
                raw=_dump(task)[:_RAW_KEEP],
            )
        data = task_data(task)
        if not isinstance(data, dict):
            return RawRecord(
                position,
                error=f"invalid task: 'data' must be an object, found {type(data).__name__} "
                f"(task id {task.get('id')})",
                raw=_dump(task)[:_RAW_KEEP],
            )
        fields = {self.field_map.get(k, k): v for k, v in data.items()}
        keep = self.content_fields is None or any(
            not isinstance(fields.get(f), str) or not fields[f].strip() for f in self.content_fields
        )
        return RawRecord(position, fields=fields, raw=_dump(task)[:_RAW_KEEP] if keep else "")


# -- turning annotations and predictions into labels ----------------------------------------


def choices_of(results: Any, from_name: str | None) -> tuple[list[str], str | None]:
    """The labels chosen in a result list, or a reason why there are none.

    Only ``choices`` results count (from the control ``from_name`` when given). Without
    ``from_name``, choices from several controls are ambiguous and refused.
    """
    if not isinstance(results, list):
        return [], "invalid result: 'result' must be a list"
    picked = [
        r
        for r in results
        if isinstance(r, dict)
        and r.get("type") == "choices"
        and (from_name is None or r.get("from_name") == from_name)
    ]
    names = sorted({str(r.get("from_name")) for r in picked})
    if from_name is None and len(names) > 1:
        return [], (
            f"ambiguous result: choices from several controls ({', '.join(names)}); "
            "pass from_name= to pick one"
        )
    labels: list[str] = []
    for r in picked:
        value = r.get("value")
        chosen = value.get("choices") if isinstance(value, dict) else None
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            return [], "invalid result: value.choices must be a list of strings"
        labels.extend(chosen)
    if not labels:
        where = f" from control {from_name!r}" if from_name else ""
        return [], f"no label: the result holds no choices{where}"
    return list(dict.fromkeys(labels)), None


def check_choices(config: ProjectConfig, labels: Sequence[str]) -> str | None:
    """Why ``labels`` cannot be a label of this project, or None."""
    allowed = set(config.label_names)
    unknown = [label for label in labels if label not in allowed]
    if unknown:
        return (
            f"label outside taxonomy: {', '.join(map(repr, unknown))} "
            f"(the labels are {', '.join(config.label_names)})"
        )
    if config.task == TaskType.single_label and len(labels) > 1:
        return (
            f"too many labels: the project is single-label, got {len(labels)} "
            f"({', '.join(map(repr, labels))})"
        )
    return None


def annotator_of(completed_by: Any) -> str:
    """A name for ``completed_by``: an email (or name) as given; a user id as ``ls-user-<id>``."""
    if isinstance(completed_by, dict):
        for key in ("email", "username"):
            if completed_by.get(key):
                return str(completed_by[key])[:200]
        completed_by = completed_by.get("id")
    if completed_by is None or completed_by == "" or isinstance(completed_by, bool):
        return LS_LABELER
    if isinstance(completed_by, int):
        return f"ls-user-{completed_by}"
    return str(completed_by)[:200]


def lead_time_ms(lead_time: Any) -> int | None:
    """Label Studio's ``lead_time`` (seconds) in milliseconds; None when absent or not a time."""
    if isinstance(lead_time, bool) or not isinstance(lead_time, int | float):
        return None
    if not math.isfinite(lead_time) or lead_time < 0:
        return None
    return min(round(lead_time * 1000), _MAX_MS)


def prediction_probs(
    label_names: Sequence[str], chosen: Sequence[str], score: float | None, multi_label: bool
) -> dict[str, float]:
    """Probabilities for a prediction that only names its choice(s) and one score.

    The chosen label(s) get the score (1.0 without one). Single-label: the other labels share
    ``1 - score`` evenly; a score under ``1/n`` is raised to ``1/n`` so the chosen label stays
    the most probable (ties go to it: it comes first). Multi-label: the others get 0, since a
    prediction says nothing about labels it did not choose.
    """
    p = 1.0 if score is None else float(score)
    if multi_label:
        return {label: (p if label in chosen else 0.0) for label in label_names}
    n = len(label_names)
    p = max(p, 1.0 / n)
    rest = min((1.0 - p) / (n - 1), p)  # min: at p = 1/n rounding must not favour the rest
    probs = {label: p for label in label_names if label in chosen}
    probs.update({label: rest for label in label_names if label not in chosen})
    return probs


def _score_of(prediction: Mapping[str, Any]) -> tuple[float | None, str | None]:
    score = prediction.get("score")
    if score is None:
        return None, None
    if isinstance(score, bool):
        return None, f"bad score: {score!r} is not a number"
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None, f"bad score: {score!r} is not a number"
    if not (0.0 <= value <= 1.0):
        return None, f"bad score: {value} is not a probability in [0, 1]"
    return value, None


def _pick_annotation(valid: list[tuple[dict[str, Any], str, list[str]]]) -> tuple[str, list[str]]:
    """The annotation that decides the final label: a ground-truth one, else the latest."""
    best = max(
        enumerate(valid),
        key=lambda iv: (
            bool(iv[1][0].get("ground_truth")),
            str(iv[1][0].get("updated_at") or iv[1][0].get("created_at") or ""),
            iv[0],
        ),
    )[1]
    return best[1], best[2]


# -- the import ------------------------------------------------------------------------------


@dataclass
class ImportIssue:
    """One thing in the file that did not become an item or a label, and why."""

    task_id: Any
    position: int  # the task's place in the file, 1-based
    part: str  # "task", "annotation" or "prediction"
    index: int | None  # the annotation's or prediction's place in the task, 1-based
    reason: str


@dataclass
class ImportSummary:
    """What one Label Studio import did; ``issues`` lists every rejected task, annotation and
    prediction (they are also in the project's quarantine)."""

    source: str
    tasks: int = 0
    ingest: IngestReport | None = None
    annotations: int = 0
    annotations_cancelled: int = 0
    annotations_rejected: int = 0
    annotations_already_imported: int = 0
    annotations_on_quarantined_tasks: int = 0
    predictions: int = 0
    predictions_rejected: int = 0
    predictions_already_imported: int = 0
    predictions_on_quarantined_tasks: int = 0
    final_labels: int = 0
    final_labels_kept: int = 0  # items whose label by a person here was left as it was
    issues: list[ImportIssue] = field(default_factory=list)
    quarantine_file: str | None = None
    seconds: float = 0.0

    def as_dict(self, *, with_issues: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("ingest", "issues")}
        out["ingest"] = self.ingest.as_dict() if self.ingest else None
        out["issues_count"] = len(self.issues)
        if with_issues:
            out["issues"] = [i.__dict__ for i in self.issues]
        return out


class _Existing:
    """What earlier imports left for a chunk's items, so importing again adds nothing."""

    def __init__(self, conn: Any, item_ids: set[int]) -> None:
        self.human = human_labels_by_action(conn, item_ids, IMPORT_ACTION)
        self.suggestions = suggestion_versions(conn, item_ids, LS_LABELER)
        self.final = final_labels_of(conn, item_ids)


@dataclass(slots=True)
class _TaskRef:
    """A task whose data became (or already was) an item."""

    position: int
    task_id: Any
    task: dict[str, Any]
    item_id: int
    content_hash: str


@dataclass
class _Writes:
    """What one chunk of tasks adds to the store, written in one transaction."""

    human_rows: list[dict[str, Any]] = field(default_factory=list)
    finals: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)


class _Importer:
    """Annotations and predictions of one file, a chunk of tasks at a time."""

    def __init__(
        self,
        ctx: ProjectContext,
        reader: LabelStudioReader,
        summary: ImportSummary,
        *,
        from_name: str | None,
        overwrite_human: bool,
    ) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.reader = reader
        self.summary = summary
        self.from_name = from_name
        self.overwrite_human = overwrite_human
        self.multi = ctx.config.task == TaskType.multi_label
        self.build_item = ItemBuilder(ctx.config)  # the ingest's own rules, to find the items
        # Running numbers over the whole file: the quarantine position of each annotation and
        # prediction, stable across runs so that a second import quarantines nothing twice.
        self.numbers = {"annotation": 0, "prediction": 0}
        self.qpath = quarantine_path(ctx.quarantine_dir, f"{reader.source_id}#labels")
        self._qfile: Any = None

    def close(self) -> None:
        if self._qfile is not None:
            self._qfile.close()
            self.summary.quarantine_file = str(self.qpath)

    def _reject(
        self, w: _Writes, t: _TaskRef, part: str, index: int, reason: str, obj: Any
    ) -> None:
        """Quarantine one annotation or prediction and list it in the summary."""
        self.summary.issues.append(ImportIssue(t.task_id, t.position, part, index, reason))
        setattr(self.summary, f"{part}s_rejected", getattr(self.summary, f"{part}s_rejected") + 1)
        w.quarantine.append(
            {
                "project_id": self.ctx.id,
                "source": f"{self.reader.source_id}#{part}s",
                "position": self.numbers[part],
                "reason": f"{reason} (task id {t.task_id}, record {t.position}, {part} {index})",
                "raw": _dump(obj)[:_RAW_KEEP],
            }
        )

    def _items_of(self, chunk: list[tuple[int, Any]]) -> list[tuple[int, Any, dict[str, Any], str]]:
        """(position, task id, task, content hash) of the tasks that are items; the others
        were quarantined by the ingest and are listed as issues here."""
        s = self.summary
        parsed: list[tuple[int, Any, dict[str, Any], str]] = []
        for position, task in chunk:
            rec = self.reader.record(position, task)
            reason = rec.error
            if reason is None:
                try:
                    _, h, _, _ = self.build_item(rec)
                except RowRejected as exc:
                    reason = str(exc)
            if reason is None:
                parsed.append((position, task.get("id"), task, h))
                continue
            annotations, predictions = task_annotations(task), task_predictions(task)
            task_id = task.get("id") if isinstance(task, dict) else None
            s.issues.append(ImportIssue(task_id, position, "task", None, reason))
            s.annotations_on_quarantined_tasks += len(annotations)
            s.predictions_on_quarantined_tasks += len(predictions)
            self.numbers["annotation"] += len(annotations)
            self.numbers["prediction"] += len(predictions)
        return parsed

    def run_chunk(self, chunk: list[tuple[int, Any]]) -> None:
        parsed = self._items_of(chunk)
        w = _Writes()
        with writing(self.ctx.db) as conn:
            ids = item_ids_by_hash(conn, self.ctx.id, {h for *_, h in parsed})
            existing = _Existing(conn, set(ids.values()))
            for position, task_id, task, h in parsed:
                t = _TaskRef(position, task_id, task, ids[h], h)
                self._annotations(t, existing, w)
                self._predictions(t, existing, w)
            insert_human_labels(conn, w.human_rows)
            set_final_labels(conn, self._final_rows(w.finals, existing))
            add_suggestions(conn, w.suggestions)
            mark_suggested(conn, [sg.item_id for sg in w.suggestions])
            insert_quarantine(conn, w.quarantine)
        self._write_quarantine(w.quarantine)

    def _annotations(self, t: _TaskRef, existing: _Existing, w: _Writes) -> None:
        s = self.summary
        valid: list[tuple[dict[str, Any], str, list[str]]] = []
        for index, ann in enumerate(task_annotations(t.task), start=1):
            self.numbers["annotation"] += 1
            if not isinstance(ann, dict):
                reason = f"invalid annotation: expected an object, found {type(ann).__name__}"
                self._reject(w, t, "annotation", index, reason, ann)
                continue
            if ann.get("was_cancelled"):
                s.annotations_cancelled += 1
                continue
            labels, reason = choices_of(ann.get("result"), self.from_name)
            reason = reason or check_choices(self.config, labels)
            if reason is not None:
                self._reject(w, t, "annotation", index, reason, ann)
                continue
            annotator = annotator_of(ann.get("completed_by"))
            valid.append((ann, annotator, labels))
            key = (t.item_id, annotator, tuple(labels))
            if key in existing.human:
                s.annotations_already_imported += 1
                continue
            existing.human.add(key)
            w.human_rows.append(
                {
                    "item_id": t.item_id,
                    "annotator": annotator,
                    "labels": labels,
                    "action": IMPORT_ACTION,
                    "time_spent_ms": lead_time_ms(ann.get("lead_time")),
                    "created_at": utcnow(),
                }
            )
            s.annotations += 1
        if valid:
            w.finals[t.item_id] = _pick_annotation(valid)

    def _predictions(self, t: _TaskRef, existing: _Existing, w: _Writes) -> None:
        s = self.summary
        for index, pred in enumerate(task_predictions(t.task), start=1):
            self.numbers["prediction"] += 1
            if not isinstance(pred, dict):
                reason = f"invalid prediction: expected an object, found {type(pred).__name__}"
                self._reject(w, t, "prediction", index, reason, pred)
                continue
            labels, reason = choices_of(pred.get("result"), self.from_name)
            score, bad_score = _score_of(pred)
            reason = reason or check_choices(self.config, labels) or bad_score
            if reason is not None:
                self._reject(w, t, "prediction", index, reason, pred)
                continue
            version = str(pred.get("model_version") or "undefined")[:200]
            if (t.item_id, version) in existing.suggestions:
                s.predictions_already_imported += 1
                continue
            existing.suggestions.add((t.item_id, version))
            w.suggestions.append(
                Suggestion(
                    item_id=t.item_id,
                    content_hash=t.content_hash,
                    labeler=LS_LABELER,
                    labeler_version=version,
                    probs=prediction_probs(self.config.label_names, labels, score, self.multi),
                    confidence=score,
                    confidence_method="label-studio score" if score is not None else None,
                )
            )
            s.predictions += 1

    def _final_rows(
        self, finals: dict[int, tuple[str, list[str]]], existing: _Existing
    ) -> list[dict[str, Any]]:
        rows = []
        for item_id, (annotator, labels) in finals.items():
            before = existing.final.get(item_id)
            if before is not None:
                old_labels, kind, name = before
                if kind == "human" and not self.overwrite_human:
                    self.summary.final_labels_kept += 1
                    continue
                if kind == "import" and old_labels == labels and name == annotator:
                    continue  # imported before, unchanged
            rows.append(
                {
                    "project_id": self.ctx.id,
                    "item_id": item_id,
                    "labels": labels,
                    "source_kind": "import",
                    "source_name": annotator,
                    "source_version": None,
                    "confidence": None,
                }
            )
            existing.final[item_id] = (labels, "import", annotator)
        self.summary.final_labels += len(rows)
        return rows

    def _write_quarantine(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._qfile is None:
            self.qpath.parent.mkdir(parents=True, exist_ok=True)
            self._qfile = open(self.qpath, "w", encoding="utf-8")  # noqa: SIM115
        for r in rows:
            record = {k: r[k] for k in ("source", "position", "reason", "raw")}
            self._qfile.write(json.dumps(record, ensure_ascii=False) + "\n")


def import_label_studio(
    ctx: ProjectContext,
    path: str | Path,
    *,
    from_name: str | None = None,
    field_map: Mapping[str, str] | None = None,
    overwrite_human: bool = False,
    chunk_size: int = 1000,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import Label Studio tasks with their annotations and predictions into the project.

    ``from_name`` picks the Choices control to read (needed only when a result holds choices
    from several). ``field_map`` renames data keys onto the project's fields. An item whose
    final label was given by a person in this project keeps it unless ``overwrite_human``.
    Rejected tasks, annotations and predictions are quarantined and listed in ``issues``.
    """
    started = time.perf_counter()
    if ctx.config.modality == Modality.image:
        raise IngestError(
            "Label Studio import is for text and tabular projects: an image task holds a URL, "
            "not the image (ingest the image folder, then import labels by content)"
        )
    if chunk_size < 1:
        raise IngestError(f"chunk_size must be at least 1, got {chunk_size}")
    reader = LabelStudioReader(path, field_map=field_map, content_fields=ctx.config.content_fields)
    summary = ImportSummary(source=reader.source_id, tasks=len(reader.tasks))
    summary.ingest = ingest(
        ctx.db,
        ctx.id,
        ctx.config,
        reader,
        quarantine_dir=ctx.quarantine_dir,
        progress=progress,
    )
    importer = _Importer(ctx, reader, summary, from_name=from_name, overwrite_human=overwrite_human)
    numbered = list(enumerate(reader.tasks, start=1))
    try:
        for start in range(0, len(numbered), chunk_size):
            importer.run_chunk(numbered[start : start + chunk_size])
    finally:
        importer.close()
    summary.seconds = time.perf_counter() - started
    with writing(ctx.db) as conn:
        log_event(conn, ctx.id, "import_label_studio", summary.as_dict(with_issues=False))
    return summary


# -- the export ------------------------------------------------------------------------------


def _split_fields(content: str, fields: Sequence[str]) -> dict[str, str]:
    """Undo the "name: value" lines that join several text content fields into one content."""
    out: dict[str, str] = {}
    rest = content
    for i, name in enumerate(fields):
        prefix = f"{name}: "
        if i == 0 and rest.startswith(prefix):
            rest = rest[len(prefix) :]
        if i + 1 < len(fields):
            marker = f"\n{fields[i + 1]}: "
            cut = rest.find(marker)
            if cut < 0:
                out[name] = rest
                return out
            out[name], rest = rest[:cut], rest[cut + len(marker) :]
        else:
            out[name] = rest
    return out


def task_data_for(
    config: ProjectConfig,
    content: str,
    meta: Mapping[str, Any] | None,
    media_path: str | None,
    data_key: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a task for an item: its metadata, then its content under the content
    field name(s) (``data_key`` renames a single one, e.g. to match ``$text``)."""
    data = dict(meta or {})
    if config.modality == Modality.image:
        data[data_key or "image"] = media_path or content
    elif config.modality == Modality.tabular:
        try:
            values = json.loads(content)
        except json.JSONDecodeError:
            values = {config.content_fields[0]: content}
        data.update(values if isinstance(values, dict) else {config.content_fields[0]: content})
    elif len(config.content_fields) == 1:
        data[data_key or config.content_fields[0]] = content
    else:
        data.update(_split_fields(content, config.content_fields))
    return data


def export_label_studio(
    ctx: ProjectContext,
    path: str | Path,
    *,
    from_name: str = "label",
    to_name: str = "text",
    data_key: str | None = None,
    include_unlabeled: bool = True,
    include_annotator: bool = True,
    chunk_size: int = 5000,
) -> ExportSummary:
    """Write the project's items as a JSON list of Label Studio tasks.

    A human or imported final label becomes an annotation (``completed_by`` is
    ``{"email": annotator}``, the form Label Studio resolves to a member on import; pass
    ``include_annotator=False`` to let Label Studio credit the importing user instead), a
    machine one a prediction (``model_version`` = the labeler's version, ``score`` = its
    confidence). ``from_name``/``to_name`` name the Choices control and the object tag of the
    labeling config (see ``label_studio_config``). Items are streamed ``chunk_size`` at a time.
    """
    started = time.perf_counter()
    if chunk_size < 1:
        raise ExportError(f"chunk_size must be at least 1, got {chunk_size}")
    path = Path(path)
    config = ctx.config
    summary = ExportSummary(
        path=str(path), format="label-studio", columns=["id", "data", "annotations", "predictions"]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        with (
            reading(ctx.db) as conn,
            reading(ctx.db) as side,
            open(part, "w", encoding="utf-8") as f,
        ):
            f.write("[")
            first = True
            chunks = stream_items_with_final_labels(
                conn, ctx.id, chunk_size, include_unlabeled=include_unlabeled
            )
            for chunk in chunks:
                people = [r["id"] for r in chunk if r["source_kind"] in ("human", "import")]
                times = latest_human_labels(side, people) if people else {}
                for r in chunk:
                    task = _task(config, r, times, from_name, to_name, data_key, include_annotator)
                    kind = r["source_kind"] or "unlabeled"
                    summary.by_source_kind[kind] = summary.by_source_kind.get(kind, 0) + 1
                    f.write(
                        ("\n" if first else ",\n")
                        + json.dumps(task, ensure_ascii=False, default=str)
                    )
                    first = False
                summary.rows += len(chunk)
            f.write("\n]\n")
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _task(
    config: ProjectConfig,
    r: Mapping[str, Any],
    times: Mapping[int, tuple[str, int | None]],
    from_name: str,
    to_name: str,
    data_key: str | None,
    include_annotator: bool,
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": r["id"],
        "data": task_data_for(config, r["content"], r["meta"], r["media_path"], data_key),
    }
    if r["labels"] is None:
        return task
    result = [
        {
            "id": f"ll-{r['id']}",
            "from_name": from_name,
            "to_name": to_name,
            "type": "choices",
            "value": {"choices": list(r["labels"])},
        }
    ]
    if r["source_kind"] == "machine":
        prediction: dict[str, Any] = {
            "model_version": r["source_version"] or r["source_name"],
            "result": result,
        }
        if r["confidence"] is not None:
            prediction["score"] = r["confidence"]
        task["predictions"] = [prediction]
        return task
    decided = as_utc(r["decided_at"])
    annotation: dict[str, Any] = {
        "result": result,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": decided.isoformat() if decided else None,
        "updated_at": decided.isoformat() if decided else None,
    }
    latest = times.get(r["id"])
    if latest is not None and latest[0] == r["source_name"] and latest[1] is not None:
        annotation["lead_time"] = latest[1] / 1000
    if include_annotator:
        annotation["completed_by"] = {"email": r["source_name"]}
    task["annotations"] = [annotation]
    return task


def label_studio_config(
    project_or_config: ProjectConfig | Any,
    *,
    from_name: str = "label",
    to_name: str = "text",
    data_key: str | None = None,
) -> str:
    """A Label Studio labeling config (XML) matching ``export_label_studio``'s tasks, for a
    ``ProjectConfig`` or anything holding one as ``.config`` (a project, its context)."""
    config = (
        project_or_config
        if isinstance(project_or_config, ProjectConfig)
        else project_or_config.config
    )
    choice = "multiple" if config.task == TaskType.multi_label else "single"
    if config.modality == Modality.image:
        key = data_key or "image"
        objects = [f"  <Image name={quoteattr(to_name)} value={quoteattr('$' + key)}/>"]
    else:
        keys = [data_key or config.content_fields[0], *config.content_fields[1:]]
        objects = [
            f"  <Header value={quoteattr(k)}/>\n  <Text name={quoteattr(to_name if i == 0 else k)} "
            f"value={quoteattr('$' + k)}/>"
            if len(keys) > 1
            else f"  <Text name={quoteattr(to_name)} value={quoteattr('$' + k)}/>"
            for i, k in enumerate(keys)
        ]
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in config.label_names)
    return (
        "<View>\n"
        + "\n".join(objects)
        + f"\n  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} "
        f'choice="{choice}" showInline="true">\n{choices}\n  </Choices>\n</View>\n'
    )
