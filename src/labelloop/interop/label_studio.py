"""Label Studio's JSON task format (https://labelstud.io/guide/task_format), both ways.

Import reads a JSON list of tasks (or JSONL, one task a line) in any of Label Studio's JSON
shapes: the plain ``JSON`` export (annotators and predictions as bare ids), a snapshot export
(full objects), a task file written by hand or by ``export_label_studio``. ``JSON_MIN`` is
refused with the reason (one flat row per annotation: no predictions, no task identity).
Tasks whose ``meta.labelloop`` names an item of the project (by content hash) are that item;
the others go through ingest, so validation, quarantine and dedup hold (an image task is
matched to an ingested image by its file). Each annotation becomes a human label (action
"import") and the chosen one the item's final label (source_kind "import"); each prediction a
``Suggestion`` from the labeler "label-studio". What labelloop exported comes back as what it
was: an annotation whose ``import_id`` (or ``id``) labelloop recorded keeps its annotator and
is not added again, labelloop's own predictions are not re-added, a propagated label stays
propagated. An annotation or prediction that cannot become a label is quarantined with the
task id and the reason, and listed in the summary; cancelled annotations are skipped and
counted. The labeling config (given, or ``<file>.label_config.xml`` beside the file) names the
control to read and the content's data key; the control names are kept for the next export.
Importing the same file twice adds nothing.

Export: ``label_studio_export.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from labelloop.core.config import Modality, TaskType
from labelloop.core.errors import IngestError
from labelloop.core.progress import Progress
from labelloop.core.types import Suggestion
from labelloop.interop.label_studio_config import (
    LabelConfig,
    config_path_for,
    default_data_key,
    label_studio_config,
    read_label_config,
)
from labelloop.interop.label_studio_export import (
    IMPORT_EVENT,
    LS_ANNOTATIONS,
    PROPAGATED,
    TASK_IDS_EVENT,
    LabelStudioExportSummary,
    export_kind,
    export_label_studio,
    label_studio_task_ids,
    task_data_for,
)
from labelloop.interop.label_studio_tasks import (
    LS_LABELER,
    RAW_KEEP,
    LabelStudioReader,
    annotator_of,
    check_choices,
    choices_of,
    dump_json,
    labelloop_meta,
    lead_time_ms,
    load_tasks,
    pick_annotation,
    prediction_probs,
    refuse_json_min,
    score_of,
    task_annotations,
    task_data,
    task_predictions,
    task_shape,
)
from labelloop.sources.ingest import IngestReport, ingest, quarantine_path
from labelloop.sources.validate import ItemBuilder, RowRejected
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.interop import (
    answer_keys,
    final_labels_of,
    insert_human_labels,
    item_ids_by_media_path,
    mark_suggested,
    reading,
    suggestion_keys,
    writing,
)
from labelloop.store.item_lookup import item_ids_by_hash
from labelloop.store.items import insert_quarantine
from labelloop.store.labels import add_suggestions, set_final_labels
from labelloop.store.models import utcnow

__all__ = [
    "ImportIssue",
    "ImportSummary",
    "LabelStudioExportSummary",
    "LabelStudioReader",
    "annotator_of",
    "export_kind",
    "export_label_studio",
    "import_label_studio",
    "label_studio_config",
    "lead_time_ms",
    "prediction_probs",
    "task_data_for",
]

IMPORT_ACTION = "import"

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
    prediction (they are also in the project's quarantine), ``warnings`` what was read but
    could not be used whole (e.g. predictions a plain export gives as bare ids)."""

    source: str
    shape: str = "tasks"  # plain, snapshot, labelloop or tasks (see task_shape)
    tasks: int = 0
    tasks_matched: int = 0  # tasks found as items of the project by labelloop's identity
    ingest: IngestReport | None = None
    annotations: int = 0
    annotations_cancelled: int = 0
    annotations_rejected: int = 0
    annotations_already_imported: int = 0  # the same answer is in the project already
    annotations_from_labelloop: int = 0  # annotations labelloop exported, found by their id
    annotations_on_quarantined_tasks: int = 0
    predictions: int = 0
    predictions_rejected: int = 0
    predictions_already_imported: int = 0
    predictions_from_labelloop: int = 0  # labelloop's own machine answers and propagated labels
    predictions_as_ids: int = 0  # a plain export's predictions: ids only, nothing to read
    predictions_on_quarantined_tasks: int = 0
    final_labels: int = 0
    final_labels_kept: int = 0  # items whose label by a person here was left as it was
    propagated: int = 0  # near-duplicates' copied labels, kept as propagated
    task_ids_recorded: int = 0  # Label Studio task ids read back for the project's items
    from_name: str | None = None
    to_name: str | None = None
    data_key: str | None = None
    label_config: str | None = None  # the file the labeling config was read from
    warnings: list[str] = field(default_factory=list)
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
    """What the project holds for a chunk's items, so importing again adds nothing."""

    def __init__(self, conn: Any, item_ids: set[int]) -> None:
        self.answers = answer_keys(conn, item_ids)
        self.suggestions = suggestion_keys(conn, item_ids)
        self.final = final_labels_of(conn, item_ids)


@dataclass(slots=True)
class _TaskRef:
    """A task whose data became (or already was) an item."""

    position: int
    task_id: Any
    task: dict[str, Any]
    item_id: int
    content_hash: str
    ours: dict[str, Any]


@dataclass
class _Writes:
    """What one chunk of tasks adds to the store, written in one transaction."""

    human_rows: list[dict[str, Any]] = field(default_factory=list)
    # item id -> (annotator or source, labels, source kind)
    finals: dict[int, tuple[str, list[str], str]] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    task_ids: dict[int, int] = field(default_factory=dict)


def _int_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _local_file(url: Any, media_root: Path) -> str | None:
    """The file behind an image task's URL: Label Studio's local-files URL (``?d=`` under
    ``media_root``), a ``file://`` URL or a plain path; None for anything else."""
    if not isinstance(url, str) or not url:
        return None
    parsed = urlparse(url)
    if "d" in parse_qs(parsed.query) and parsed.path.rstrip("/").endswith("local-files"):
        return str((media_root / unquote(parse_qs(parsed.query)["d"][0])).resolve())
    if parsed.scheme == "file":
        return str(Path(unquote(parsed.path)).resolve())
    if not parsed.scheme and url.startswith("/"):
        return str(Path(url).resolve())
    return None


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
        names: Mapping[str, str],
        known: dict[int, tuple[int, str]],
        task_ids: dict[int, int],
    ) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.reader = reader
        self.summary = summary
        self.from_name = from_name
        self.overwrite_human = overwrite_human
        self.names = names
        self.known = known  # task position -> (item id, content hash), found by identity
        self.task_ids = task_ids  # item id -> Label Studio task id, as recorded before
        self.multi = ctx.config.task == TaskType.multi_label
        self.image = ctx.config.modality == Modality.image
        self.build_item = ItemBuilder(ctx.config)  # the ingest's own rules, to find the items
        self.controls: tuple[str, str] | None = None  # (from_name, to_name) first seen
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
                "raw": dump_json(obj)[:RAW_KEEP],
            }
        )

    def _task_issue(self, w: _Writes, position: int, task: Any, reason: str) -> None:
        """A task that is no item: listed (ingest quarantined it, unless it is an image task,
        which is quarantined here); its annotations and predictions are counted, not read."""
        s = self.summary
        annotations, predictions = task_annotations(task), task_predictions(task)
        task_id = task.get("id") if isinstance(task, dict) else None
        s.issues.append(ImportIssue(task_id, position, "task", None, reason))
        s.annotations_on_quarantined_tasks += len(annotations)
        s.predictions_on_quarantined_tasks += len(predictions)
        self.numbers["annotation"] += len(annotations)
        self.numbers["prediction"] += len(predictions)
        if self.image:
            w.quarantine.append(
                {
                    "project_id": self.ctx.id,
                    "source": self.reader.source_id,
                    "position": position,
                    "reason": f"{reason} (record {position})",
                    "raw": dump_json(task)[:RAW_KEEP],
                }
            )

    def _items_of(
        self, chunk: list[tuple[int, Any]], w: _Writes
    ) -> list[tuple[int, Any, dict[str, Any], str, int | None]]:
        """(position, task id, task, content hash, item id if known) of the tasks that are
        items; the others are listed as issues."""
        parsed: list[tuple[int, Any, dict[str, Any], str, int | None]] = []
        for position, task in chunk:
            if position in self.known:
                item_id, h = self.known[position]
                parsed.append((position, task.get("id"), task, h, item_id))
                continue
            if self.image:
                reason = (
                    "unknown image: the task names no image of this project (ingest the image "
                    "folder first; tasks are matched by labelloop's identity in meta, or by "
                    "the image's file)"
                )
                self._task_issue(w, position, task, reason)
                continue
            rec = self.reader.record(position, task)
            reason = rec.error
            if reason is None:
                try:
                    _, h, _, _ = self.build_item(rec)
                except RowRejected as exc:
                    reason = str(exc)
            if reason is None:
                parsed.append((position, task.get("id"), task, h, None))
                continue
            self._task_issue(w, position, task, reason)
        return parsed

    def run_chunk(self, chunk: list[tuple[int, Any]]) -> None:
        w = _Writes()
        parsed = self._items_of(chunk, w)
        with writing(self.ctx.db) as conn:
            ids = item_ids_by_hash(conn, self.ctx.id, {h for *_, h, i in parsed if i is None})
            refs = [
                _TaskRef(position, task_id, task, i if i is not None else ids[h], h, {})
                for position, task_id, task, h, i in parsed
            ]
            existing = _Existing(conn, {t.item_id for t in refs})
            for t in refs:
                t.ours = labelloop_meta(t.task)
                task_id = _int_id(t.task_id)
                if task_id is not None and self.task_ids.get(t.item_id) != task_id:
                    w.task_ids[t.item_id] = task_id
                    self.task_ids[t.item_id] = task_id
                self._annotations(t, existing, w)
                self._predictions(t, existing, w)
            insert_human_labels(conn, w.human_rows)
            set_final_labels(conn, self._final_rows(w.finals, existing))
            add_suggestions(conn, w.suggestions)
            mark_suggested(conn, [sg.item_id for sg in w.suggestions])
            insert_quarantine(conn, w.quarantine)
            if w.task_ids:
                ids_payload = {str(k): v for k, v in w.task_ids.items()}
                log_event(conn, self.ctx.id, TASK_IDS_EVENT, {"ids": ids_payload})
                self.summary.task_ids_recorded += len(w.task_ids)
        self._write_quarantine([q for q in w.quarantine if q["source"] != self.reader.source_id])

    def _labels_of(
        self, obj: dict[str, Any], recorded: dict[str, Any] | None
    ) -> tuple[list[str], str | None]:
        """The labels of an annotation or prediction, or why there are none. An empty result
        is the empty set ("none of these apply") where labelloop recorded one."""
        labels, reason = choices_of(obj.get("result"), self.from_name)
        if (
            reason is not None
            and reason.startswith("no label")
            and recorded is not None
            and recorded.get("labels") == []
            and self.multi
        ):
            return [], None
        if reason is None and self.controls is None:
            for r in obj.get("result") or []:
                if isinstance(r, dict) and r.get("type") == "choices":
                    self.controls = (str(r.get("from_name")), str(r.get("to_name")))
                    break
        return labels, reason or check_choices(self.config, labels)

    def _annotations(self, t: _TaskRef, existing: _Existing, w: _Writes) -> None:
        s = self.summary
        recorded = t.ours.get("annotations")
        recorded = recorded if isinstance(recorded, dict) else {}
        pushed = t.ours.get(LS_ANNOTATIONS)
        placed = {str(v): k for k, v in pushed.items()} if isinstance(pushed, dict) else {}
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
            # Label Studio keeps the id of an imported annotation as its import_id; one that
            # push_label_studio added is noted in the task's meta by its Label Studio id.
            key = ann.get("import_id") if "import_id" in ann else ann.get("id")
            if (key is None or str(key) not in recorded) and placed:
                key = placed.get(str(ann.get("id")), key)
            rec = recorded.get(str(key)) if key is not None and recorded else None
            rec = rec if isinstance(rec, dict) else None
            labels, reason = self._labels_of(ann, rec)
            if reason is not None:
                self._reject(w, t, "annotation", index, reason, ann)
                continue
            if rec is not None and rec.get("labels") == labels and rec.get("annotator"):
                annotator = str(rec["annotator"])[:200]  # labelloop's annotator, unchanged
                s.annotations_from_labelloop += 1
            else:
                annotator = annotator_of(ann.get("completed_by"), self.names)
            valid.append((ann, annotator, labels))
            answer = (t.item_id, annotator, tuple(labels))
            if answer in existing.answers:
                s.annotations_already_imported += 1
                continue
            existing.answers.add(answer)
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
        final = t.ours.get("final")
        final = final if isinstance(final, dict) else {}
        final_labels = final.get("labels")
        if valid:
            # labelloop's decided label (a majority of several answers) when it is among them
            if final.get("source_kind") in ("human", "import") and any(
                labels == final_labels for _, _, labels in valid
            ):
                w.finals[t.item_id] = (str(final.get("source_name"))[:200], final_labels, "import")
            else:
                annotator, labels = pick_annotation(valid)
                w.finals[t.item_id] = (annotator, labels, "import")
        elif (
            final.get("source_kind") == "propagated"
            and isinstance(final_labels, list)
            and check_choices(self.config, final_labels) is None
        ):
            w.finals[t.item_id] = (str(final.get("source_name"))[:200], final_labels, "propagated")

    def _predictions(self, t: _TaskRef, existing: _Existing, w: _Writes) -> None:
        s = self.summary
        recorded = t.ours.get("predictions")
        recorded = recorded if isinstance(recorded, dict) else {}
        for index, pred in enumerate(task_predictions(t.task), start=1):
            self.numbers["prediction"] += 1
            if _int_id(pred) is not None:
                s.predictions_as_ids += 1  # a plain export's: only the prediction's id
                continue
            if not isinstance(pred, dict):
                reason = f"invalid prediction: expected an object, found {type(pred).__name__}"
                self._reject(w, t, "prediction", index, reason, pred)
                continue
            version = str(pred.get("model_version") or "undefined")[:200]
            rec = recorded.get(version)
            rec = rec if isinstance(rec, dict) else None
            if version == PROPAGATED or (rec is not None and rec.get("labeler") == "propagated"):
                s.predictions_from_labelloop += 1  # the final label says it (propagated)
                continue
            if rec is not None:
                s.predictions_from_labelloop += 1
                mine = (t.item_id, str(rec.get("labeler")), str(rec.get("version")))
                held = existing.final.get(t.item_id)
                if mine in existing.suggestions or (  # this project's own suggestion or label
                    rec.get("final")
                    and held is not None
                    and held[1] == "machine"
                    and held[2] == rec.get("labeler")
                ):
                    s.predictions_already_imported += 1
                    continue
            labels, reason = self._labels_of(pred, rec)
            score, bad_score = score_of(pred)
            reason = reason or bad_score
            if reason is not None:
                self._reject(w, t, "prediction", index, reason, pred)
                continue
            labeler, _, own_version = version.partition(":")
            if (t.item_id, LS_LABELER, version) in existing.suggestions or (
                (t.item_id, labeler, own_version) in existing.suggestions
            ):  # imported before, or this project's own suggestion ("labeler:version")
                s.predictions_already_imported += 1
                continue
            existing.suggestions.add((t.item_id, LS_LABELER, version))
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
        self, finals: dict[int, tuple[str, list[str], str]], existing: _Existing
    ) -> list[dict[str, Any]]:
        rows = []
        for item_id, (annotator, labels, kind) in finals.items():
            before = existing.final.get(item_id)
            if before is not None:
                old_labels, old_kind, name = before
                if kind == "propagated":
                    continue  # a copied label never replaces one the project has
                if old_kind == "human" and not self.overwrite_human:
                    self.summary.final_labels_kept += 1
                    continue
                if old_kind == "import" and old_labels == labels and name == annotator:
                    continue  # imported before, unchanged
            rows.append(
                {
                    "project_id": self.ctx.id,
                    "item_id": item_id,
                    "labels": labels,
                    "source_kind": kind,
                    "source_name": annotator,
                    "source_version": None,
                    "confidence": None,
                }
            )
            existing.final[item_id] = (labels, kind, annotator)
            if kind == "propagated":
                self.summary.propagated += 1
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


def _known_items(
    ctx: ProjectContext,
    tasks: list[Any],
    data_key: str,
    media_root: Path,
) -> dict[int, tuple[int, str]]:
    """Task position -> (item id, content hash) for the tasks whose item the project holds:
    by the content hash labelloop wrote in the task's meta, and for an image task by its file."""
    by_hash: dict[int, str] = {}
    by_file: dict[int, str] = {}
    image = ctx.config.modality == Modality.image
    for position, task in enumerate(tasks, start=1):
        h = labelloop_meta(task).get("content_hash")
        if isinstance(h, str) and h:
            by_hash[position] = h
        elif image and isinstance(task, dict):
            data = task_data(task)
            if isinstance(data, dict):
                file = _local_file(data.get(data_key), media_root)
                if file is not None:
                    by_file[position] = file
    known: dict[int, tuple[int, str]] = {}
    with reading(ctx.db) as conn:
        ids = item_ids_by_hash(conn, ctx.id, set(by_hash.values()))
        known.update({p: (ids[h], h) for p, h in by_hash.items() if h in ids})
        files = item_ids_by_media_path(conn, ctx.id, set(by_file.values()))
        known.update({p: files[f] for p, f in by_file.items() if f in files})
    return known


def import_label_studio(
    ctx: ProjectContext,
    path: str | Path,
    *,
    from_name: str | None = None,
    field_map: Mapping[str, str] | None = None,
    label_config: str | Path | None = None,
    annotators: Mapping[str, str] | None = None,
    media_root: str | Path | None = None,
    overwrite_human: bool = False,
    chunk_size: int = 1000,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import Label Studio tasks with their annotations and predictions into the project.

    ``label_config`` is the project's labeling config (a file or the XML; by default
    ``<file>.label_config.xml`` beside the file when there is one): it names the Choices control
    to read and the data key of the content. ``from_name`` picks the control (needed only when
    several hold choices). ``field_map`` renames data keys onto the project's fields.
    ``annotators`` maps Label Studio annotators (an email, or ``ls-user-<id>`` for a bare id)
    to labelloop names, on top of the project's ``label_studio.annotator_emails`` read
    backwards. ``media_root`` is Label Studio's local-files document root, to find an image
    task's file (default: the project's ``label_studio.media_root``). An item whose final
    label was given by a person in this project keeps it unless ``overwrite_human``. Rejected
    tasks, annotations and predictions are quarantined and listed in ``issues``.
    """
    started = time.perf_counter()
    if chunk_size < 1:
        raise IngestError(f"chunk_size must be at least 1, got {chunk_size}")
    config = ctx.config
    settings = config.label_studio
    path = Path(path)
    tasks = load_tasks(path)
    refuse_json_min(tasks, str(path))
    lc: LabelConfig | None = None
    sibling = config_path_for(path)
    if label_config is not None:
        lc = read_label_config(label_config)
    elif sibling.is_file():
        lc = read_label_config(sibling)
    data_key = None
    to_name = None
    if lc is not None:
        control = lc.control(from_name, str(label_config or sibling))
        from_name, to_name, data_key = control.name, control.to_name, lc.data_key(control)
    if (
        field_map is None
        and data_key is not None
        and config.modality == Modality.text
        and len(config.content_fields) == 1
        and data_key != config.content_fields[0]
    ):
        field_map = {data_key: config.content_fields[0]}
    key = data_key or default_data_key(config)
    root = Path(media_root if media_root is not None else settings.media_root)
    known = _known_items(ctx, tasks, key, root)
    reader = LabelStudioReader(
        path,
        field_map=field_map,
        content_fields=config.content_fields,
        tasks=tasks,
        flatten=key if config.modality == Modality.tabular else None,
        skip=set(known),
    )
    summary = ImportSummary(
        source=reader.source_id, shape=task_shape(tasks), tasks=len(tasks), tasks_matched=len(known)
    )
    if lc is not None:
        summary.label_config = str(label_config) if label_config is not None else str(sibling)
        if label_config is not None and str(label_config).lstrip().startswith("<"):
            summary.label_config = "(given as XML)"
    if config.modality != Modality.image:
        summary.ingest = ingest(
            ctx.db, ctx.id, config, reader, quarantine_dir=ctx.quarantine_dir, progress=progress
        )
    names = {email: name for name, email in settings.annotator_emails.items()}
    names.update(annotators or {})
    importer = _Importer(
        ctx,
        reader,
        summary,
        from_name=from_name,
        overwrite_human=overwrite_human,
        names=names,
        known=known,
        task_ids=label_studio_task_ids(ctx),
    )
    numbered = list(enumerate(tasks, start=1))
    try:
        for start in range(0, len(numbered), chunk_size):
            importer.run_chunk(numbered[start : start + chunk_size])
    finally:
        importer.close()
    if summary.predictions_as_ids:
        summary.warnings.append(
            f"{summary.predictions_as_ids:,} predictions came as bare ids (Label Studio's plain "
            "JSON export holds no prediction content): export a snapshot from Label Studio "
            "(Export > Create new snapshot, or POST /api/projects/<id>/exports) to carry them"
        )
    if from_name is None and importer.controls is not None:
        from_name, to_name = importer.controls
    summary.from_name, summary.to_name = from_name, to_name
    summary.data_key = data_key
    summary.seconds = time.perf_counter() - started
    payload = summary.as_dict(with_issues=False)
    if from_name:
        payload["label_studio"] = {
            "from_name": from_name,
            "to_name": to_name,
            "data_key": data_key,
            "label_config": lc.xml if lc is not None else None,
        }
    with writing(ctx.db) as conn:
        log_event(conn, ctx.id, IMPORT_EVENT, payload)
    return summary
