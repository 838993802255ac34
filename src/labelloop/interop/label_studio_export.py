"""Export to Label Studio's JSON task format, in a shape a stock Label Studio imports.

Each item is a task. Its ``data`` holds the content (text fields; an image as a URL; a table
row as one object under ``row``) and the item's metadata. Each person's latest answer is an
annotation; ``completed_by`` is written only for annotators mapped to an email
(``label_studio.annotator_emails`` in the project file, or ``annotator_emails=``), since Label
Studio refuses a whole import over one email that is not a member of its organization.
Without an email Label Studio credits the importing user, and the labelloop annotator stays in
the task's ``meta`` (Label Studio keeps a task's ``meta`` but drops unknown annotation keys).

Machine answers are predictions (``model_version`` = ``labeler:version``, ``score`` = the
confidence): the machine's final label, and the latest suggestion of each labeler on any item,
queued ones included. A label copied to a near-duplicate (final label ``propagated``) is a
prediction with model version ``labelloop:propagated``, never a person's annotation.

Identity: ``meta.labelloop`` holds the item id, the content hash, each annotation's human label
id (also the annotation's ``id``, which Label Studio keeps as ``import_id``), the predictions'
labelers and the final label's provenance; a task whose Label Studio id is known (from an
earlier import) carries it as ``id``. An import of the file, or of Label Studio's export of
it, finds the items by content hash and adds nothing that is already there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from labelloop.core.config import Modality, ProjectConfig, TaskType
from labelloop.interop.label_studio_config import (
    LabelConfig,
    config_fits,
    config_path_for,
    default_data_key,
    default_to_name,
    label_studio_config,
    parse_label_config,
)
from labelloop.interop.tables import (
    ExportError,
    ExportSummary,
    as_utc,
    export_format,
)
from labelloop.store.context import ProjectContext
from labelloop.store.interop import (
    event_payloads,
    human_answers,
    latest_suggestions,
    reading,
    stream_items_with_final_labels,
)

META_KEY = "labelloop"  # the key of labelloop's identity in a task's meta
PROPAGATED = "labelloop:propagated"  # model_version of a label copied to a near-duplicate
IMPORT_EVENT = "import_label_studio"
TASK_IDS_EVENT = "label_studio_task_ids"
LS_ANNOTATIONS = "ls_annotations"  # meta.labelloop: labelloop answer id -> LS annotation id
FORMAT = "label-studio"
_FORMAT_NAMES = {"label-studio", "label_studio", "labelstudio", "ls"}


@dataclass
class LabelStudioExportSummary(ExportSummary):
    """An export's rows are tasks; the counts say what Label Studio will import."""

    annotations: int = 0
    annotations_with_email: int = 0  # annotators mapped to a Label Studio member's email
    predictions: int = 0
    propagated: int = 0
    from_name: str = ""
    to_name: str = ""
    data_key: str = ""
    label_config: str = ""
    label_config_path: str | None = None


@dataclass(frozen=True)
class Controls:
    """The names an export writes: the Choices control, its object tag and the data key."""

    from_name: str
    to_name: str
    data_key: str
    label_config: str


def export_kind(path: str | Path, fmt: str | None = None, *, option: str = "fmt=") -> str:
    """``"label-studio"`` for that format (or a ``.json`` file without one), else the table
    format named by ``fmt`` or the suffix; ``option`` names the switch in the error."""
    if fmt is not None and fmt.lower() in _FORMAT_NAMES:
        return FORMAT
    if fmt is None and Path(path).suffix.lower() == ".json":
        return FORMAT
    try:
        return export_format(path, fmt)
    except ExportError:
        what = f"format {fmt!r}" if fmt is not None else f"suffix {Path(path).suffix or '(none)'}"
        raise ExportError(
            f"{path}: unknown export {what}; use a .csv, .jsonl, .parquet or .json (Label "
            f"Studio) file, or pass {option} csv, jsonl, parquet or label-studio"
        ) from None


def imported_controls(ctx: ProjectContext) -> dict[str, Any]:
    """The Label Studio control names (and labeling config) of the project's latest import
    that knew them; empty when none did."""
    with reading(ctx.db) as conn:
        for payload in event_payloads(conn, ctx.id, IMPORT_EVENT, newest_first=True):
            found = payload.get("label_studio")
            if isinstance(found, dict) and found.get("from_name"):
                return found
    return {}


def label_studio_task_ids(ctx: ProjectContext) -> dict[int, int]:
    """Item id -> Label Studio task id, as read back by imports (the latest wins)."""
    ids: dict[int, int] = {}
    with reading(ctx.db) as conn:
        for payload in event_payloads(conn, ctx.id, TASK_IDS_EVENT):
            ids.update({int(k): int(v) for k, v in (payload.get("ids") or {}).items()})
    return ids


def export_controls(
    ctx: ProjectContext,
    from_name: str | None = None,
    to_name: str | None = None,
    data_key: str | None = None,
) -> Controls:
    """The control names to write: the ones given, else the imported ones, else defaults; and
    the labeling config: the imported one while it still fits the project, else a new one."""
    config = ctx.config
    seen = imported_controls(ctx)
    from_name = from_name or seen.get("from_name") or "label"
    to_name = to_name or seen.get("to_name") or default_to_name(config)
    data_key = data_key or seen.get("data_key") or default_data_key(config)
    xml = seen.get("label_config")
    if xml and seen.get("from_name") == from_name and seen.get("to_name") == to_name:
        lc: LabelConfig | None = None
        try:
            lc = parse_label_config(xml)
        except Exception:  # a config stored by an import parsed then; be safe
            lc = None
        if lc is not None and config_fits(lc, config, from_name):
            return Controls(from_name, to_name, data_key, xml)
    generated = label_studio_config(config, from_name=from_name, to_name=to_name, data_key=data_key)
    return Controls(from_name, to_name, data_key, generated)


# -- task data -------------------------------------------------------------------------------


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


def media_url_for(
    media_path: str | None,
    content: str,
    item_id: int,
    template: str,
    media_root: str | Path,
) -> str:
    """An image item's URL for Label Studio: ``template`` with ``{path}`` (the file relative to
    ``media_root``, URL-quoted), ``{name}`` and ``{item_id}``."""
    file = Path(media_path or content)
    root = Path(media_root)
    try:
        rel = file.resolve().relative_to(root.resolve())
    except ValueError:
        raise ExportError(
            f"item {item_id}: its image {str(file)!r} is not under the media root "
            f"{str(root)!r} (label_studio.media_root); Label Studio cannot be given its URL"
        ) from None
    return template.format(path=quote(rel.as_posix()), name=quote(file.name), item_id=item_id)


def task_data_for(
    config: ProjectConfig,
    content: str,
    meta: Mapping[str, Any] | None,
    media: str | None,
    data_key: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a task for an item: its metadata, then its content: under the content
    field name(s) for text (``data_key`` renames a single one, e.g. to match ``$text``), the
    image's URL (``media``) under ``data_key`` or ``image``, a table row's cells as one object
    under ``data_key`` or ``row``."""
    data = dict(meta or {})
    if config.modality == Modality.image:
        data[data_key or "image"] = media or content
    elif config.modality == Modality.tabular:
        try:
            values = json.loads(content)
        except json.JSONDecodeError:
            values = {config.content_fields[0]: content}
        if not isinstance(values, dict):
            values = {config.content_fields[0]: content}
        data[data_key or "row"] = values
    elif len(config.content_fields) == 1:
        data[data_key or config.content_fields[0]] = content
    else:
        data.update(_split_fields(content, config.content_fields))
    return data


# -- the export ------------------------------------------------------------------------------


def _result(labels: Sequence[str], c: Controls, rid: str) -> list[dict[str, Any]]:
    if not labels:
        return []
    return [
        {
            "id": rid,
            "from_name": c.from_name,
            "to_name": c.to_name,
            "type": "choices",
            "value": {"choices": list(labels)},
        }
    ]


def _suggested_labels(
    config: ProjectConfig, label: str | None, probs: Mapping[str, float]
) -> list[str]:
    """A suggestion's answer: its label (single-label), the labels at 0.5 or more (multi)."""
    if config.task == TaskType.multi_label:
        return [name for name in config.label_names if float(probs.get(name, 0.0)) >= 0.5]
    if label:
        return [label]
    return [max(probs, key=lambda k: probs[k])] if probs else []


@dataclass
class _Exporter:
    ctx: ProjectContext
    controls: Controls
    emails: dict[str, str]
    media_url: str
    media_root: str
    ls_ids: dict[int, int]
    include_predictions: bool
    summary: LabelStudioExportSummary
    by_kind: dict[str, int] = field(default_factory=dict)

    def task(
        self,
        r: Mapping[str, Any],
        answers: list[tuple[int, str, list[str], str, int | None, Any]],
        suggestions: list[tuple[str, str, str | None, dict[str, float], float | None]],
    ) -> dict[str, Any]:
        config, c, s = self.ctx.config, self.controls, self.summary
        item_id = int(r["id"])
        media = None
        if config.modality == Modality.image:
            media = media_url_for(
                r["media_path"], r["content"], item_id, self.media_url, self.media_root
            )
        task: dict[str, Any] = {}
        if item_id in self.ls_ids:
            task["id"] = self.ls_ids[item_id]
        task["data"] = task_data_for(config, r["content"], r["meta"], media, c.data_key)
        ours: dict[str, Any] = {
            "item_id": item_id,
            "content_hash": r["content_hash"],
            "project": config.name,
        }
        kind = r["source_kind"]
        if kind is not None:
            ours["final"] = {
                "labels": list(r["labels"]),
                "source_kind": kind,
                "source_name": r["source_name"],
                "source_version": r["source_version"],
                "confidence": r["confidence"],
            }
        annotations: list[dict[str, Any]] = []
        recorded: dict[str, dict[str, Any]] = {}
        if not answers and kind in ("human", "import"):
            # a person's final label with no answer on record: it is still a person's label
            answers = [(-item_id, r["source_name"], list(r["labels"]), kind, None, r["decided_at"])]
        for row_id, annotator, labels, _action, spent, created in answers:
            when = as_utc(created)
            ann: dict[str, Any] = {
                "id": row_id,
                "result": _result(labels, c, f"ll-{row_id}"),
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": when.isoformat() if when else None,
            }
            if spent is not None:
                ann["lead_time"] = spent / 1000
            email = self.emails.get(annotator)
            if email:
                ann["completed_by"] = {"email": email}
                s.annotations_with_email += 1
            annotations.append(ann)
            recorded[str(row_id)] = {"annotator": annotator, "labels": list(labels)}
        if annotations:
            task["annotations"] = annotations
            ours["annotations"] = recorded
            s.annotations += len(annotations)
        predictions = self._predictions(r, suggestions) if self.include_predictions else []
        if predictions:
            task["predictions"] = [p for p, _ in predictions]
            ours["predictions"] = {p["model_version"]: who for p, who in predictions}
            s.predictions += len(predictions)
        task["meta"] = {META_KEY: ours}
        name = kind or "unlabeled"
        self.by_kind[name] = self.by_kind.get(name, 0) + 1
        return task

    def _predictions(
        self,
        r: Mapping[str, Any],
        suggestions: list[tuple[str, str, str | None, dict[str, float], float | None]],
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        config, c = self.ctx.config, self.controls
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        kind = r["source_kind"]
        if kind == "machine":
            version = r["source_name"]
            if r["source_version"]:
                version = f"{version}:{r['source_version']}"
            pred: dict[str, Any] = {
                "model_version": version,
                "result": _result(r["labels"], c, f"ll-{r['id']}-final"),
            }
            if r["confidence"] is not None:
                pred["score"] = r["confidence"]
            who = {"labeler": r["source_name"], "version": r["source_version"], "final": True}
            out.append((pred, who))
        elif kind == "propagated":
            pred = {
                "model_version": PROPAGATED,
                "result": _result(r["labels"], c, f"ll-{r['id']}-propagated"),
            }
            out.append((pred, {"labeler": "propagated", "from": r["source_name"]}))
            self.summary.propagated += 1
        taken = {p["model_version"] for p, _ in out}
        for labeler, version, label, probs, confidence in suggestions:
            model_version = f"{labeler}:{version}"
            if model_version in taken:
                continue
            labels = _suggested_labels(config, label, probs)
            score = confidence
            if score is None and probs:
                score = max(float(v) for v in probs.values())
            pred = {
                "model_version": model_version,
                "result": _result(labels, c, f"ll-{r['id']}-{labeler}"),
            }
            if score is not None:
                pred["score"] = float(score)
            out.append((pred, {"labeler": labeler, "version": version}))
            taken.add(model_version)
        return out


def export_label_studio(
    ctx: ProjectContext,
    path: str | Path,
    *,
    from_name: str | None = None,
    to_name: str | None = None,
    data_key: str | None = None,
    include_unlabeled: bool = True,
    include_predictions: bool = True,
    annotator_emails: Mapping[str, str] | None = None,
    media_url: str | None = None,
    media_root: str | Path | None = None,
    label_config_path: str | Path | None = None,
    chunk_size: int = 5000,
) -> LabelStudioExportSummary:
    """Write the project's items as a JSON list of Label Studio tasks, and the labeling config.

    ``from_name`` / ``to_name`` / ``data_key`` name the Choices control, its object tag and the
    content's data key; by default the ones the project was imported with (else ``label``,
    ``text``/``image``/``table``, the content field). ``annotator_emails`` (added to the
    project's ``label_studio.annotator_emails``) gives annotators' Label Studio emails.
    ``media_url`` / ``media_root`` turn an image's file into its URL (default: the project's
    settings, Label Studio's local-files URL). The labeling config is written to
    ``label_config_path`` (default: ``<name>.label_config.xml`` beside the file). Without
    ``include_unlabeled`` only items with a final label are written.
    """
    started = time.perf_counter()
    if chunk_size < 1:
        raise ExportError(f"chunk_size must be at least 1, got {chunk_size}")
    path = Path(path)
    config = ctx.config
    settings = config.label_studio
    emails = {**settings.annotator_emails, **dict(annotator_emails or {})}
    for name, email in emails.items():
        if "@" not in email:
            raise ExportError(f"annotator {name!r}: {email!r} is not an email address")
    controls = export_controls(ctx, from_name, to_name, data_key)
    summary = LabelStudioExportSummary(
        path=str(path),
        format=FORMAT,
        columns=["id", "data", "meta", "annotations", "predictions"],
        from_name=controls.from_name,
        to_name=controls.to_name,
        data_key=controls.data_key,
        label_config=controls.label_config,
    )
    exporter = _Exporter(
        ctx=ctx,
        controls=controls,
        emails=emails,
        media_url=media_url if media_url is not None else settings.media_url,
        media_root=str(media_root if media_root is not None else settings.media_root),
        ls_ids=label_studio_task_ids(ctx),
        include_predictions=include_predictions,
        summary=summary,
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
                ids = [int(r["id"]) for r in chunk]
                answers = human_answers(side, ids)
                suggestions = latest_suggestions(side, ids) if include_predictions else {}
                for r in chunk:
                    task = exporter.task(r, answers.get(r["id"], []), suggestions.get(r["id"], []))
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
    config_file = Path(label_config_path) if label_config_path else config_path_for(path)
    config_file.write_text(controls.label_config, encoding="utf-8")
    summary.label_config_path = str(config_file)
    summary.by_source_kind = exporter.by_kind
    summary.seconds = time.perf_counter() - started
    return summary
