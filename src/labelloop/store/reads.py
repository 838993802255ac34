"""Reads of one project's items, suggestions and labels, as DataFrames or plain rows.

Every query the facade, the stage drivers and the demo run lives here (``store`` owns SQL);
callers pass the ``Database`` and the project id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Select, bindparam, case, func, select, update

from labelloop.store.db import Database
from labelloop.store.interop import batches, final_labels_query
from labelloop.store.items import counts_by_state
from labelloop.store.models import (
    EventRow,
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    QuarantineRow,
    SuggestionRow,
)

FINAL_LABEL_COLUMNS = [
    "item_id",
    "content",
    "content_hash",
    "source",
    "position",
    "media_path",
    "meta",
    "labels",
    "source_kind",
    "source_name",
    "source_version",
    "confidence",
    "decided_at",
]


def frame(db: Database, stmt: Any) -> pd.DataFrame:
    """The rows of a SELECT as a DataFrame, with its columns even when there are no rows."""
    with db.engine.connect() as conn:
        return pd.DataFrame(
            conn.execute(stmt).mappings().all(), columns=list(stmt.selected_columns.keys())
        )


# -- the facade's tables ---------------------------------------------------------------------
def items_frame(
    db: Database, project_id: int, state: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    t = ItemRow.__table__
    stmt = (
        select(
            t.c.id,
            t.c.content,
            t.c.content_hash,
            t.c.state,
            t.c.priority,
            t.c.source,
            t.c.position,
            t.c.media_path,
            t.c.meta,
        )
        .where(t.c.project_id == project_id)
        .order_by(t.c.id)
    )
    if state is not None:
        stmt = stmt.where(t.c.state == state)
    if limit is not None:
        stmt = stmt.limit(limit)
    return frame(db, stmt)


def final_labels_frame(
    db: Database, project_id: int, source_kinds: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every final label with its provenance: one row per item, in item id order."""
    df = frame(db, final_labels_query(project_id, source_kinds, media_path=True))
    return df[FINAL_LABEL_COLUMNS]


def quarantine_frame(db: Database, project_id: int) -> pd.DataFrame:
    t = QuarantineRow.__table__
    stmt = (
        select(t.c.source, t.c.position, t.c.reason, t.c.raw)
        .where(t.c.project_id == project_id)
        .order_by(t.c.id)
    )
    return frame(db, stmt)


def suggestions_frame(
    db: Database, project_id: int, labeler: str | None = None, limit: int | None = None
) -> pd.DataFrame:
    s, it = SuggestionRow.__table__, ItemRow.__table__
    stmt = (
        select(
            s.c.item_id,
            it.c.content,
            s.c.labeler,
            s.c.labeler_version,
            s.c.label,
            s.c.confidence,
            s.c.confidence_method,
            s.c.status,
            s.c.error,
            s.c.probs,
            s.c.latency_ms,
            s.c.tokens,
            s.c.cost_usd,
        )
        .join(it, it.c.id == s.c.item_id)
        .where(it.c.project_id == project_id)
        .order_by(s.c.id)
    )
    if labeler is not None:
        stmt = stmt.where(s.c.labeler == labeler)
    if limit is not None:
        stmt = stmt.limit(limit)
    return frame(db, stmt)


def label_issues_frame(db: Database, project_id: int) -> pd.DataFrame:
    e, t = EventRow.__table__, ItemRow.__table__
    stmt = (
        select(e.c.item_id, e.c.payload, e.c.created_at, t.c.content, t.c.state)
        .join(t, t.c.id == e.c.item_id)
        .where(e.c.project_id == project_id, e.c.kind == "label_issue")
        .order_by(e.c.id.desc())
    )
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame(
        [
            {
                "item_id": r[0],
                "reason": r[1].get("reason"),
                "flagged_at": r[2],
                "content": r[3],
                "state": r[4],
            }
            for r in rows
        ],
        columns=["item_id", "reason", "flagged_at", "content", "state"],
    )


def project_counts(
    db: Database, project_id: int
) -> tuple[dict[str, int], list[tuple[list[str], str]], list[str]]:
    """Items per state, (labels, source kind) per final label, and every quarantine reason."""
    fl, q = FinalLabelRow.__table__, QuarantineRow.__table__
    with db.engine.connect() as conn:
        states = counts_by_state(conn, project_id)
        labels = [
            (list(r[0]), r[1])
            for r in conn.execute(
                select(fl.c.labels, fl.c.source_kind).where(fl.c.project_id == project_id)
            )
        ]
        reasons = list(
            conn.execute(select(q.c.reason).where(q.c.project_id == project_id)).scalars()
        )
    return states, labels, reasons


def labeler_usage(db: Database, project_id: int) -> dict[str, dict[str, float]]:
    """Per machine labeler: suggestions, invalid answers, tokens and cost (USD) so far."""
    s, t = SuggestionRow.__table__, ItemRow.__table__
    stmt = (
        select(
            s.c.labeler,
            func.count(),
            func.sum(case((s.c.status != "ok", 1), else_=0)),
            func.coalesce(func.sum(s.c.tokens), 0),
            func.coalesce(func.sum(s.c.cost_usd), 0.0),
        )
        .join(t, t.c.id == s.c.item_id)
        .where(t.c.project_id == project_id)
        .group_by(s.c.labeler)
    )
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return {
        name: {
            "suggestions": n,
            "invalid": int(bad or 0),
            "tokens": int(tok),
            "cost_usd": float(cost),
        }
        for name, n, bad, tok, cost in rows
    }


def count_items(db: Database, project_id: int) -> int:
    with db.engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(ItemRow).where(ItemRow.project_id == project_id)
        ).scalar_one()


def human_label_count(db: Database, project_id: int) -> int:
    """Human answers that count as labels (reviews and imports), undone ones included."""
    h, t = HumanLabelRow.__table__, ItemRow.__table__
    with db.engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(h.join(t, t.c.id == h.c.item_id))
            .where(t.c.project_id == project_id, h.c.action.in_(("label", "import")))
        ).scalar_one()


def audit_results(db: Database, project_id: int, task: str) -> pd.DataFrame:
    """Audited machine labels next to the first person's answer (see ``Project.audit_results``)."""
    e, h = EventRow.__table__, HumanLabelRow.__table__
    with db.engine.connect() as conn:
        audits = conn.execute(
            select(e.c.item_id, e.c.payload).where(
                e.c.project_id == project_id, e.c.kind == "audit"
            )
        ).all()
        answers: dict[int, list[str]] = {}
        for chunk in batches([a[0] for a in audits]):
            rows = conn.execute(
                select(h.c.item_id, h.c.labels)
                .where(h.c.item_id.in_(chunk), h.c.action == "label")
                .order_by(h.c.id)
            )
            for item_id, labels in rows:
                answers.setdefault(item_id, list(labels))  # the first person's answer
    multi = task == "multi_label"
    out = []
    for item_id, payload in dict(audits).items():
        answer = answers.get(item_id)
        if not answer:
            continue
        machine = list(payload.get("machine_labels") or [payload["machine_label"]])
        out.append(
            {
                "item_id": item_id,
                "machine_label": payload["machine_label"],
                "confidence": payload.get("confidence"),
                "human_label": ", ".join(answer) if multi else answer[0],
                "correct": set(answer) == set(machine)
                if multi
                else answer[0] == payload["machine_label"],
                "machine_labels": machine,
                "human_labels": answer,
            }
        )
    cols = [
        "item_id",
        "machine_label",
        "confidence",
        "human_label",
        "correct",
        "machine_labels",
        "human_labels",
    ]
    return pd.DataFrame(out, columns=cols)


def gold_answers_given(db: Database, project_id: int) -> pd.DataFrame:
    """Reviewers' answers on gold items: item_id, annotator_id, label."""
    h, t = HumanLabelRow.__table__, ItemRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(h.c.item_id, h.c.annotator, h.c.labels)
            .join(t, t.c.id == h.c.item_id)
            .where(t.c.project_id == project_id, h.c.action == "gold")
        ).all()
    return pd.DataFrame(
        [{"item_id": r[0], "annotator_id": r[1], "label": r[2][0]} for r in rows if r[2]],
        columns=["item_id", "annotator_id", "label"],
    )


def valid_answers(db: Database, project_id: int) -> pd.DataFrame:
    """Every valid machine answer's top label: labeler, label."""
    s, t = SuggestionRow.__table__, ItemRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(s.c.labeler, s.c.label)
            .join(t, t.c.id == s.c.item_id)
            .where(t.c.project_id == project_id, s.c.status == "ok", s.c.label.is_not(None))
        ).all()
    return pd.DataFrame(rows, columns=["labeler", "label"])


# -- what the stage drivers read and write ---------------------------------------------------
def items_queued_for_purpose(db: Database, project_id: int) -> list[tuple[int, str, str]]:
    """(id, what the embedder reads, content hash) of the items queued for a purpose (audit,
    calibration sample, recheck, gold, overlap): people decide them, but they show the current
    models' suggestions like any other."""
    t = ItemRow.__table__
    stmt = _embed_inputs(project_id).where(
        t.c.state == ItemState.queued,
        t.c.queue_reason.is_not(None),
        t.c.queue_reason != "review",
    )
    with db.engine.connect() as conn:
        return [(int(r[0]), r[1], r[2]) for r in conn.execute(stmt)]


def _embed_inputs(project_id: int) -> Select:
    """(id, what the embedder reads, content hash) of a project's items, by id: the image file
    for images, the text otherwise."""
    t = ItemRow.__table__
    return (
        select(t.c.id, func.coalesce(t.c.media_path, t.c.content), t.c.content_hash)
        .where(t.c.project_id == project_id)
        .order_by(t.c.id)
    )


def items_in(
    db: Database, project_id: int, states: tuple[str, ...], limit: int | None = None
) -> list[tuple[int, str, str]]:
    """(id, what the embedder reads, content hash) of the items in ``states``, by id.

    Queued items count only when plainly queued for review: items queued for a purpose
    (audit, recheck, gold, overlap) wait for people and are never re-decided by machines.
    """
    t = ItemRow.__table__
    stmt = _embed_inputs(project_id).where(t.c.state.in_(states))
    if ItemState.queued in states:
        stmt = stmt.where(
            (t.c.state != ItemState.queued)
            | t.c.queue_reason.is_(None)
            | (t.c.queue_reason == "review")
        )
    if limit is not None:
        stmt = stmt.limit(limit)
    with db.engine.connect() as conn:
        return [(int(r[0]), r[1], r[2]) for r in conn.execute(stmt)]


def set_state(conn: Connection, ids: Sequence[int], state: str) -> None:
    stmt = update(ItemRow.__table__).where(ItemRow.__table__.c.id == bindparam("i"))
    conn.execute(stmt.values(state=state), [{"i": int(i)} for i in ids])


def group_items(db: Database, members: Sequence[tuple[int, int]]) -> None:
    """Near-duplicates (item id, representative id) wait for their representative's label."""
    t = ItemRow.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("i"))
        .values(group_id=bindparam("g"), state=ItemState.grouped)
    )
    rows = [{"i": int(i), "g": int(g)} for i, g in members]
    for start in range(0, len(rows), 1000):  # short transactions: reviewers write meanwhile
        with db.short_write() as conn:
            conn.execute(stmt, rows[start : start + 1000])


def answered_by(db: Database, labeler: str, ids: Sequence[int]) -> set[int]:
    """The items among ``ids`` that ``labeler`` has answered (validly or not)."""
    s = SuggestionRow.__table__
    out: set[int] = set()
    with db.engine.connect() as conn:
        for chunk in batches([int(i) for i in ids]):
            out.update(
                conn.execute(
                    select(s.c.item_id).where(s.c.labeler == labeler, s.c.item_id.in_(chunk))
                ).scalars()
            )
    return out


def latest_valid_probs(db: Database, labeler: str, ids: Sequence[int]) -> dict[int, dict]:
    """The latest valid answer of ``labeler`` per item: its per-label probabilities."""
    s = SuggestionRow.__table__
    out: dict[int, dict] = {}
    with db.engine.connect() as conn:
        for chunk in batches([int(i) for i in ids]):
            rows = conn.execute(
                select(s.c.item_id, s.c.probs)
                .where(s.c.labeler == labeler, s.c.status == "ok", s.c.item_id.in_(chunk))
                .order_by(s.c.id)
            )
            for item_id, probs in rows:
                out[int(item_id)] = probs
    return out


def replace_suggestions(conn: Connection, item_ids: Sequence[int], labelers: Sequence[str]) -> None:
    """Drop the suggestions of ``labelers`` for ``item_ids`` (before storing fresh ones)."""
    s = SuggestionRow.__table__
    for chunk in batches([int(i) for i in item_ids]):
        conn.execute(s.delete().where(s.c.item_id.in_(chunk), s.c.labeler.in_(list(labelers))))


def rechecked_before(db: Database, ids: Sequence[int]) -> set[int]:
    """Items among ``ids`` already sent for a second review once."""
    t = ItemRow.__table__
    out: set[int] = set()
    with db.engine.connect() as conn:
        for chunk in batches([int(i) for i in ids]):
            out.update(
                conn.execute(
                    select(t.c.id).where(t.c.id.in_(chunk), t.c.reviews_needed > 1)
                ).scalars()
            )
    return out


def latest_labeler_like(db: Database, project_id: int, prefix: str) -> str | None:
    """The labeler id starting with ``prefix`` that answered an item of the project last."""
    s, t = SuggestionRow.__table__, ItemRow.__table__
    with db.engine.connect() as conn:
        return conn.execute(
            select(s.c.labeler)
            .join(t, t.c.id == s.c.item_id)
            .where(t.c.project_id == project_id, s.c.labeler.like(f"{prefix}%"))
            .order_by(s.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()


def latest_suggestion_versions(db: Database, labeler: str, ids: Sequence[int]) -> list[str | None]:
    """Per item of ``ids`` (in order), the version of ``labeler``'s newest suggestion."""
    s = SuggestionRow.__table__
    found: dict[int, str] = {}
    with db.engine.connect() as conn:
        for chunk in batches([int(i) for i in ids]):
            rows = conn.execute(
                select(s.c.item_id, s.c.labeler_version)
                .where(s.c.labeler == labeler, s.c.item_id.in_(chunk))
                .order_by(s.c.id)
            )
            found.update({int(i): v for i, v in rows})
    return [found.get(int(i)) for i in ids]


def item_states(db: Database, project_id: int) -> list[tuple[int, str, str | None]]:
    """(id, state, queue reason) of every item of the project, by id (the calibration sample
    is drawn over all of them)."""
    t = ItemRow.__table__
    stmt = (
        select(t.c.id, t.c.state, t.c.queue_reason)
        .where(t.c.project_id == project_id)
        .order_by(t.c.id)
    )
    with db.engine.connect() as conn:
        return [(int(r[0]), str(r[1]), r[2]) for r in conn.execute(stmt)]


def event_item_ids(db: Database, project_id: int, kind: str) -> set[int]:
    """Items the project's events of ``kind`` name."""
    e = EventRow.__table__
    stmt = (
        select(e.c.item_id)
        .distinct()
        .where(e.c.project_id == project_id, e.c.kind == kind, e.c.item_id.is_not(None))
    )
    with db.engine.connect() as conn:
        return {int(i) for i in conn.execute(stmt).scalars()}


def final_label_sources(db: Database, project_id: int) -> dict[str, int]:
    """Items per provenance of their final label (human, machine, propagated, import)."""
    fl = FinalLabelRow.__table__
    stmt = (
        select(fl.c.source_kind, func.count())
        .where(fl.c.project_id == project_id)
        .group_by(fl.c.source_kind)
    )
    with db.engine.connect() as conn:
        return {str(kind): int(n) for kind, n in conn.execute(stmt)}


def valid_answers_of_items(db: Database, project_id: int) -> pd.DataFrame:
    """Each machine labeler's latest valid top label per item: item_id, labeler, label."""
    s, t = SuggestionRow.__table__, ItemRow.__table__
    stmt = (
        select(s.c.item_id, s.c.labeler, s.c.label)
        .join(t, t.c.id == s.c.item_id)
        .where(t.c.project_id == project_id, s.c.status == "ok", s.c.label.is_not(None))
        .order_by(s.c.id)
    )
    df = frame(db, stmt)
    if df.empty:
        return pd.DataFrame(columns=["item_id", "labeler", "label"])
    return df.drop_duplicates(["item_id", "labeler"], keep="last").reset_index(drop=True)


def first_contents(db: Database, project_id: int, limit: int) -> list[str]:
    """The contents of the project's first ``limit`` items by id (a stable sample: items are
    only ever added, so the same rows come back as the pool grows)."""
    t = ItemRow.__table__
    stmt = select(t.c.content).where(t.c.project_id == project_id).order_by(t.c.id).limit(limit)
    with db.engine.connect() as conn:
        return [r[0] for r in conn.execute(stmt)]


def recheck_answers(db: Database, project_id: int) -> list[tuple[dict[str, Any], list[list[str]]]]:
    """Each label sent to a second person (its first ``label_issue`` event's payload) with the
    human answers its item has had since labeling began, oldest first."""
    e, h = EventRow.__table__, HumanLabelRow.__table__
    with db.engine.connect() as conn:
        first = (
            select(e.c.item_id, func.min(e.c.id).label("id"))
            .where(e.c.project_id == project_id, e.c.kind == "label_issue")
            .group_by(e.c.item_id)
            .subquery()
        )
        sent = {
            int(r.item_id): dict(r.payload or {})
            for r in conn.execute(
                select(e.c.item_id, e.c.payload).join(first, e.c.id == first.c.id)
            )
        }
        answers: dict[int, list[list[str]]] = {}
        for chunk in batches(list(sent)):
            for r in conn.execute(
                select(h.c.item_id, h.c.labels)
                .where(h.c.item_id.in_(chunk), h.c.action == "label")
                .order_by(h.c.id)
            ):
                answers.setdefault(int(r.item_id), []).append(list(r.labels or []))
    return [(payload, answers.get(i, [])) for i, payload in sent.items()]


def recheck_outcomes(db: Database, project_id: int) -> dict[str, int]:
    """Labels sent to a second person (``label_issue`` events): how many, how many a second
    person has answered since, and how many of those answers differ from the first."""
    rechecks = recheck_answers(db, project_id)
    answered = [a for _, a in rechecks if len(a) >= 2]
    return {
        "sent": len(rechecks),
        "answered": len(answered),
        "changed": sum(1 for a in answered if a[1] != a[0]),
    }
