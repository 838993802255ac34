"""Suggestions, human labels and final labels, each with its provenance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, update
from sqlalchemy.dialects import postgresql, sqlite

from labelloop.core.types import Suggestion
from labelloop.store.models import (
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    SuggestionRow,
    utcnow,
)


def add_suggestions(conn: Connection, suggestions: Sequence[Suggestion]) -> None:
    """Store machine suggestions with labeler id, version, prompt version, latency and cost."""
    rows = [
        {
            "item_id": s.item_id,
            "labeler": s.labeler,
            "labeler_version": s.labeler_version,
            "prompt_version": s.prompt_version,
            "probs": s.probs,
            "label": s.top_label if s.status == "ok" else None,
            "confidence": s.confidence,
            "confidence_method": s.confidence_method,
            "status": s.status,
            "error": s.error,
            "latency_ms": s.latency_ms,
            "cost_usd": s.cost_usd,
            "tokens": s.tokens,
            "created_at": utcnow(),
        }
        for s in suggestions
    ]
    if rows:
        conn.execute(insert(SuggestionRow), rows)


def add_human_label(
    conn: Connection,
    item_id: int,
    annotator: str,
    labels: list[str],
    action: str,
    time_spent_ms: int | None = None,
) -> None:
    conn.execute(
        insert(HumanLabelRow).values(
            item_id=item_id,
            annotator=annotator,
            labels=labels,
            action=action,
            time_spent_ms=time_spent_ms,
            created_at=utcnow(),
        )
    )


def set_final_labels(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert final labels. Each row: project_id, item_id, labels, source_kind, source_name,
    source_version, confidence. The item's state follows (labeled for people, auto for machines).
    """
    if not rows:
        return
    now = utcnow()
    values = [{**r, "decided_at": now} for r in rows]
    table = FinalLabelRow.__table__
    ins = (sqlite if conn.dialect.name == "sqlite" else postgresql).insert(table)
    stmt = ins.on_conflict_do_update(
        index_elements=["item_id"],
        set_={
            c: ins.excluded[c]
            for c in (
                "labels",
                "source_kind",
                "source_name",
                "source_version",
                "confidence",
                "decided_at",
            )
        },
    )
    conn.execute(stmt, values)
    by_state: dict[str, list[int]] = {}
    for r in rows:
        state = ItemState.auto if r["source_kind"] == "machine" else ItemState.labeled
        # (human, import and propagated labels all come from people)
        by_state.setdefault(state, []).append(r["item_id"])
    for state, ids in by_state.items():
        for start in range(0, len(ids), 900):
            conn.execute(
                update(ItemRow).where(ItemRow.id.in_(ids[start : start + 900])).values(state=state)
            )
