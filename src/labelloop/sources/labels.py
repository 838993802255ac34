"""Labels that come with the rows of a source (an image's class folder, a manifest's label
column), imported during the ingest as a Label Studio import's are: one human label with the
action ``import`` per item and source, and the item's final label with source kind ``import``.

A name outside the taxonomy is not imported; the ingest report counts it by name, so a typo in a
folder name shows up instead of vanishing. A final label given by a person in the project is
kept. Ingesting the same source again imports nothing twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labelloop.core.config import ProjectConfig, TaskType
from labelloop.store.interop import (
    final_labels_of,
    human_labels_by_action,
    insert_human_labels,
)
from labelloop.store.item_lookup import item_ids_by_hash
from labelloop.store.labels import set_final_labels
from labelloop.store.models import utcnow

IMPORT_ACTION = "import"  # the human_labels action of an imported label (as Label Studio's)
MAX_REPORTED_NAMES = 50  # distinct unknown names listed in a report; the rest are summed


@dataclass
class LabelCounts:
    """What the labels of one ingest did. ``unknown``: names outside the taxonomy, with how
    many rows gave each; ``invalid``: other labels refused, by reason."""

    imported: int = 0
    already_imported: int = 0
    kept_human: int = 0
    unknown: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)

    def unknown_names(self) -> dict[str, int]:
        """The unknown names, most rows first; past ``MAX_REPORTED_NAMES`` one ``...`` entry."""
        top = self.unknown.most_common(MAX_REPORTED_NAMES)
        out = dict(top)
        rest = sum(self.unknown.values()) - sum(out.values())
        if rest:
            out["..."] = rest
        return out


class LabelParser:
    """A source's label value as a list of taxonomy labels, or None (counted in ``counts``)."""

    def __init__(self, config: ProjectConfig, counts: LabelCounts) -> None:
        self.allowed = set(config.label_names)
        self.multi = config.task == TaskType.multi_label
        self.counts = counts

    def __call__(self, value: Any) -> list[str] | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            names = [value.strip()]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            names = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        else:
            self.counts.invalid[f"not a label name: {type(value).__name__}"] += 1
            return None
        if not names:
            return None
        unknown = [n for n in names if n not in self.allowed]
        if unknown:
            self.counts.unknown.update(unknown)
            return None
        if len(names) > 1 and not self.multi:
            self.counts.invalid["several labels on a single-label project"] += 1
            return None
        return names


def write_imported_labels(
    conn: Any,
    project_id: int,
    labels_by_hash: dict[str, list[str]],
    annotator: str,
    counts: LabelCounts,
) -> None:
    """Store the labels of items (by content hash) as imported by ``annotator``, inside the
    caller's transaction: a human label with the action ``import`` (once per item, annotator
    and labels) and the final label, unless a person in the project gave the item one."""
    if not labels_by_hash:
        return
    ids = item_ids_by_hash(conn, project_id, set(labels_by_hash))
    item_ids = set(ids.values())
    seen = human_labels_by_action(conn, item_ids, IMPORT_ACTION)
    finals = final_labels_of(conn, item_ids)
    human_rows: list[dict[str, Any]] = []
    final_rows: list[dict[str, Any]] = []
    for h, labels in labels_by_hash.items():
        item_id = ids.get(h)
        if item_id is None:  # not stored (cannot happen after insert_items; be safe)
            continue
        before = finals.get(item_id)
        if before is not None and before[1] == "human":
            counts.kept_human += 1
            continue
        if (item_id, annotator, tuple(labels)) in seen:
            # imported before: whatever became of its final label since then stays
            counts.already_imported += 1
            continue
        human_rows.append(_human_row(item_id, annotator, labels))
        final_rows.append(_final_row(project_id, item_id, annotator, labels))
        counts.imported += 1
    insert_human_labels(conn, human_rows)
    set_final_labels(conn, final_rows)


def _human_row(item_id: int, annotator: str, labels: Sequence[str]) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "annotator": annotator,
        "labels": list(labels),
        "action": IMPORT_ACTION,
        "time_spent_ms": None,
        "created_at": utcnow(),
    }


def _final_row(
    project_id: int, item_id: int, annotator: str, labels: Sequence[str]
) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "item_id": item_id,
        "labels": list(labels),
        "source_kind": "import",
        "source_name": annotator,
        "source_version": None,
        "confidence": None,
    }
