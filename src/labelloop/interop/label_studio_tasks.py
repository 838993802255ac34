"""Label Studio tasks as read from a file: the JSON shapes, labelloop's identity in a task's
``meta``, the ``Reader`` the ingest runs over, and turning a result into labels."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelloop.core.config import ProjectConfig, TaskType
from labelloop.core.errors import IngestError
from labelloop.interop.label_studio_export import META_KEY
from labelloop.sources.records import RawRecord

LS_LABELER = "label-studio"
RAW_KEEP = 2000  # characters of a rejected task, annotation or prediction kept in quarantine
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


def dump_json(obj: Any) -> str:
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
                    text = raw.decode("utf-8", "backslashreplace")[:RAW_KEEP]
                    tasks.append(
                        _BadLine(line_no, f"bad encoding: not UTF-8 at byte {exc.start}", text)
                    )
                except json.JSONDecodeError as exc:
                    text = raw.decode("utf-8")[:RAW_KEEP]
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


def refuse_json_min(tasks: Sequence[Any], source: str) -> None:
    """Label Studio's ``JSON_MIN`` export is refused, with the reason: its rows are one per
    annotation, flat (``{"text": .., "id": .., "sentiment": "Positive", "annotator": 1,
    "annotation_id": 3}``), so a control's value cannot be told from a data field, and it
    holds no predictions and no task metadata (labelloop's identity)."""
    for task in tasks:
        if (
            isinstance(task, dict)
            and "data" not in task
            and "annotations" not in task
            and "annotation_id" in task
            and "annotator" in task
        ):
            raise IngestError(
                f"{source}: this is Label Studio's JSON_MIN export (flat rows with "
                "'annotator' and 'annotation_id'), which labelloop does not read: it mixes "
                "labels with data fields and drops predictions and task metadata, so labels "
                "and identity would be lost. Export 'JSON' (or a snapshot) from Label Studio "
                "instead"
            )


def task_shape(tasks: Sequence[Any]) -> str:
    """Which JSON shape a file is: ``plain`` (Label Studio's JSON export: annotators and
    predictions as ids), ``snapshot`` (Label Studio's, with full objects), ``labelloop``
    (written by ``export_label_studio``) or ``tasks`` (anything else)."""
    from_ls = snapshot = labelloop = False
    for task in tasks:
        if not isinstance(task, dict):
            continue
        if "inner_id" in task or "total_annotations" in task:
            from_ls = True
        meta = task.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get(META_KEY), dict):
            labelloop = True
        preds = task.get("predictions")
        if isinstance(preds, list) and any(
            isinstance(p, int) and not isinstance(p, bool) for p in preds
        ):
            return "plain"
        for ann in task_annotations(task):
            if isinstance(ann, dict):
                by = ann.get("completed_by")
                if isinstance(by, int) and not isinstance(by, bool) and from_ls:
                    return "plain"
                if isinstance(by, dict):
                    snapshot = True
    if from_ls:
        return "snapshot" if snapshot else "plain"
    return "labelloop" if labelloop else "tasks"


def labelloop_meta(task: Any) -> dict[str, Any]:
    """The ``meta.labelloop`` labelloop wrote into a task (empty when none)."""
    if isinstance(task, dict):
        meta = task.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get(META_KEY), dict):
            return meta[META_KEY]
    return {}


class LabelStudioReader:
    """A ``Reader`` over Label Studio tasks: one record per task, its fields from ``data``.

    ``field_map`` renames data keys onto the project's fields (``{"text": "message"}``); other
    keys pass unchanged (non-content ones become the item's metadata). ``flatten`` names a
    data key holding an object whose keys are fields (a table row's cells under ``row``).
    Tasks at the positions in ``skip`` are not read (their items are known already). The
    record's position is the task's place in the file (1-based).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        field_map: Mapping[str, str] | None = None,
        content_fields: Sequence[str] | None = None,
        tasks: list[Any] | None = None,
        flatten: str | None = None,
        skip: set[int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.source_id = str(self.path.resolve())
        self.field_map = dict(field_map or {})
        # Given the content fields, the whole task is kept as the raw text only where one is
        # missing or blank (the task will be quarantined): dumping every task costs time.
        self.content_fields = list(content_fields) if content_fields is not None else None
        self.tasks = tasks if tasks is not None else load_tasks(self.path)
        self.flatten = flatten
        self.skip = skip or set()

    def columns(self) -> list[str] | None:
        return None  # tasks may differ: a task missing the content field is quarantined alone

    def size_hint(self) -> int | None:
        return len(self.tasks)

    def records(self) -> Iterator[RawRecord]:
        for position, task in enumerate(self.tasks, start=1):
            if position not in self.skip:
                yield self.record(position, task)

    def record(self, position: int, task: Any) -> RawRecord:
        if isinstance(task, _BadLine):
            return RawRecord(position, line=task.line, error=task.error, raw=task.raw)
        if not isinstance(task, dict):
            return RawRecord(
                position,
                error=f"invalid task: expected an object, found {type(task).__name__}",
                raw=dump_json(task)[:RAW_KEEP],
            )
        data = task_data(task)
        if not isinstance(data, dict):
            return RawRecord(
                position,
                error=f"invalid task: 'data' must be an object, found {type(data).__name__} "
                f"(task id {task.get('id')})",
                raw=dump_json(task)[:RAW_KEEP],
            )
        if self.flatten is not None and isinstance(data.get(self.flatten), dict):
            data = {
                **{k: v for k, v in data.items() if k != self.flatten},
                **data[self.flatten],
            }
        fields = {self.field_map.get(k, k): v for k, v in data.items()}
        keep = self.content_fields is None or any(
            not isinstance(fields.get(f), str) or not fields[f].strip() for f in self.content_fields
        )
        return RawRecord(position, fields=fields, raw=dump_json(task)[:RAW_KEEP] if keep else "")


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


def annotator_of(completed_by: Any, names: Mapping[str, str] | None = None) -> str:
    """A name for ``completed_by``: an email (or name) as given; a user id as ``ls-user-<id>``;
    either mapped through ``names`` (Label Studio email or ``ls-user-<id>`` -> annotator)."""
    names = names or {}
    if isinstance(completed_by, dict):
        for key in ("email", "username"):
            if completed_by.get(key):
                found = str(completed_by[key])[:200]
                return names.get(found, found)
        completed_by = completed_by.get("id")
    if completed_by is None or completed_by == "" or isinstance(completed_by, bool):
        return LS_LABELER
    found = f"ls-user-{completed_by}" if isinstance(completed_by, int) else str(completed_by)
    return names.get(found, found[:200])


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


def score_of(prediction: Mapping[str, Any]) -> tuple[float | None, str | None]:
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


def pick_annotation(valid: list[tuple[dict[str, Any], str, list[str]]]) -> tuple[str, list[str]]:
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
