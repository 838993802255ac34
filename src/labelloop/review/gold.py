"""Gold items: items whose right answer is known, mixed into the queue to score reviewers."""

from __future__ import annotations

from labelloop.store.context import ProjectContext
from labelloop.store.reads import final_labels_frame, items_frame


def gold_answers(ctx: ProjectContext) -> dict[int, str]:
    """Items with a known answer: imported labels, and the input's label field when
    ``review.gold_from_label_field`` is on (single-label tasks)."""
    out: dict[int, str] = {}
    imported = final_labels_frame(ctx.db, ctx.id, ("import",))
    out.update(
        {int(i): ls[0] for i, ls in zip(imported["item_id"], imported["labels"], strict=True)}
    )
    field = ctx.config.label_field
    if ctx.config.review.gold_from_label_field and field:
        allowed = set(ctx.config.label_names)
        items = items_frame(ctx.db, ctx.id)
        for i, meta in zip(items["id"], items["meta"], strict=True):
            value = (meta or {}).get(field)
            if value in allowed:
                out.setdefault(int(i), value)
    return out
