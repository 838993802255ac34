"""Alerts and automation runs (``labelloop automate``): every statement against their tables,
and the reads the monitor's metrics come from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from labelloop.store.db import Database
from labelloop.store.models import (
    AlertRow,
    AutomationRunRow,
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    MetricValueRow,
    utcnow,
)

_ALERT_COLS = [c for c in AlertRow.__table__.columns]
_RUN_COLS = [c for c in AutomationRunRow.__table__.columns]


def _rows(result: Any, cols: list[Any]) -> list[dict[str, Any]]:
    names = [c.name for c in cols]
    return [dict(zip(names, r, strict=True)) for r in result]


# -- alerts ------------------------------------------------------------------------------------


def open_alerts(db: Database, project_id: int) -> dict[str, dict[str, Any]]:
    """Rule name -> its open alert."""
    t = AlertRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(*_ALERT_COLS).where(t.c.project_id == project_id, t.c.state == "open")
        )
        return {r["rule"]: r for r in _rows(rows, _ALERT_COLS)}


def open_alert(
    db: Database,
    project_id: int,
    *,
    rule: str,
    metric: str,
    severity: str,
    value: float | None,
    bound: float,
    message: str,
) -> int:
    now = utcnow()
    with db.engine.begin() as conn:
        return int(
            conn.execute(
                insert(AlertRow)
                .values(
                    project_id=project_id,
                    rule=rule,
                    metric=metric,
                    severity=severity,
                    state="open",
                    value=value,
                    bound=bound,
                    message=message,
                    opened_at=now,
                    last_seen_at=now,
                    deliveries=[],
                )
                .returning(AlertRow.id)
            ).scalar_one()
        )


def touch_alert(db: Database, alert_id: int, value: float | None) -> None:
    """An open alert seen again: its latest value and time, nothing sent."""
    t = AlertRow.__table__
    with db.engine.begin() as conn:
        conn.execute(update(t).where(t.c.id == alert_id).values(value=value, last_seen_at=utcnow()))


def resolve_alert(db: Database, alert_id: int, value: float | None) -> None:
    t = AlertRow.__table__
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == alert_id, t.c.state == "open")
            .values(state="resolved", value=value, resolved_at=now, last_seen_at=now)
        )


def record_deliveries(db: Database, alert_id: int, deliveries: list[dict[str, Any]]) -> None:
    t = AlertRow.__table__
    with db.engine.begin() as conn:
        before = conn.execute(select(t.c.deliveries).where(t.c.id == alert_id)).scalar_one()
        conn.execute(
            update(t).where(t.c.id == alert_id).values(deliveries=list(before or []) + deliveries)
        )


def alert_history(
    db: Database, project_id: int, *, open_only: bool = False, limit: int = 200
) -> list[dict[str, Any]]:
    """Alerts, newest first."""
    t = AlertRow.__table__
    q = select(*_ALERT_COLS).where(t.c.project_id == project_id)
    if open_only:
        q = q.where(t.c.state == "open")
    with db.engine.connect() as conn:
        return _rows(conn.execute(q.order_by(t.c.id.desc()).limit(limit)), _ALERT_COLS)


# -- automation runs -----------------------------------------------------------------------


def start_run(
    db: Database,
    project_id: int,
    *,
    policies: list[str],
    trigger: str,
    actions: list[str],
    human_labels: int,
    holder: str,
) -> int:
    with db.engine.begin() as conn:
        return int(
            conn.execute(
                insert(AutomationRunRow)
                .values(
                    project_id=project_id,
                    policies=policies,
                    trigger=trigger,
                    actions=actions,
                    status="running",
                    outcome={},
                    human_labels=human_labels,
                    holder=holder,
                    started_at=utcnow(),
                )
                .returning(AutomationRunRow.id)
            ).scalar_one()
        )


def finish_run(
    db: Database,
    run_id: int,
    *,
    status: str,
    outcome: dict[str, Any],
    error: str | None,
    started_at: datetime,
) -> None:
    t = AutomationRunRow.__table__
    now = utcnow()
    with db.engine.begin() as conn:
        conn.execute(
            update(t)
            .where(t.c.id == run_id)
            .values(
                status=status,
                outcome=outcome,
                error=error,
                finished_at=now,
                seconds=(now - started_at).total_seconds(),
            )
        )


def automation_runs(db: Database, project_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Runs, newest first."""
    t = AutomationRunRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(*_RUN_COLS)
            .where(t.c.project_id == project_id)
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        return _rows(rows, _RUN_COLS)


def last_runs_by_policy(db: Database, project_id: int) -> dict[str, dict[str, Any]]:
    """Policy name -> its newest run that did not fail (when it ran and at how many labels)."""
    out: dict[str, dict[str, Any]] = {}
    for run in automation_runs(db, project_id, limit=1000):
        if run["status"] == "failed":
            continue
        for name in run["policies"]:
            out.setdefault(name, run)
    return out


# -- what the metrics read -----------------------------------------------------------------


def queue_depth(db: Database, project_id: int) -> int:
    t = ItemRow.__table__
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(t)
                .where(t.c.project_id == project_id, t.c.state == ItemState.queued)
            ).scalar_one()
        )


def latest_human_labeled(
    db: Database, project_id: int, limit: int
) -> list[tuple[int, str, str, str]]:
    """(item id, content, final label, content hash) of the ``limit`` items people labeled
    last (single labels), newest first."""
    f, i = FinalLabelRow.__table__, ItemRow.__table__
    h = HumanLabelRow.__table__
    last = (
        select(h.c.item_id, func.max(h.c.id).label("at"))
        .where(h.c.action == "label")
        .group_by(h.c.item_id)
        .subquery()
    )
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(i.c.id, i.c.content, f.c.labels, i.c.content_hash)
            .join(f, f.c.item_id == i.c.id)
            .join(last, last.c.item_id == i.c.id)
            .where(i.c.project_id == project_id, f.c.source_kind == "human")
            .order_by(last.c.at.desc())
            .limit(limit)
        ).all()
    return [(int(r[0]), r[1], r[2][0], r[3]) for r in rows if r[2] and len(r[2]) == 1]


def contents_by_id(
    db: Database, project_id: int, *, newest: bool, limit: int
) -> list[tuple[int, str]]:
    """(id, content) of the first or the newest ``limit`` items."""
    t = ItemRow.__table__
    order = t.c.id.desc() if newest else t.c.id
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.id, t.c.content)
            .where(t.c.project_id == project_id)
            .order_by(order)
            .limit(limit)
        ).all()
    return [(int(r[0]), r[1]) for r in rows]


def queued_priorities(db: Database, project_id: int) -> dict[int, float]:
    """Queued item id -> its priority."""
    t = ItemRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.id, t.c.priority).where(
                t.c.project_id == project_id, t.c.state == ItemState.queued
            )
        ).all()
    return {int(r[0]): float(r[1] or 0.0) for r in rows}


def items_in_state(db: Database, project_id: int, ids: list[int], state: str) -> list[int]:
    t = ItemRow.__table__
    out: list[int] = []
    with db.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            out += [
                int(r[0])
                for r in conn.execute(
                    select(t.c.id).where(
                        t.c.project_id == project_id, t.c.id.in_(chunk), t.c.state == state
                    )
                )
            ]
    return out


# -- metric values over time ---------------------------------------------------------------


def record_values(db: Database, project_id: int, values: dict[str, float | None]) -> None:
    now = utcnow()
    rows = [
        {"project_id": project_id, "metric": k, "value": v, "measured_at": now}
        for k, v in values.items()
    ]
    if rows:
        with db.engine.begin() as conn:
            conn.execute(insert(MetricValueRow), rows)


def metric_history(
    db: Database, project_id: int, limit_per_metric: int = 500
) -> dict[str, list[tuple[datetime, float | None]]]:
    """Metric -> its latest ``limit_per_metric`` (time, value), oldest first."""
    t = MetricValueRow.__table__
    out: dict[str, list[tuple[datetime, float | None]]] = {}
    with db.engine.connect() as conn:
        names = conn.execute(
            select(t.c.metric).where(t.c.project_id == project_id).distinct()
        ).scalars()
        for name in list(names):
            rows = conn.execute(
                select(t.c.measured_at, t.c.value)
                .where(t.c.project_id == project_id, t.c.metric == name)
                .order_by(t.c.measured_at.desc())
                .limit(limit_per_metric)
            ).all()
            out[name] = [(r[0], r[1]) for r in reversed(rows)]
    return out


def latest_machine_confidences(db: Database, project_id: int, limit: int) -> list[float]:
    """The confidences of the ``limit`` newest machine labels (final labels by a machine)."""
    f = FinalLabelRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(f.c.confidence)
            .where(
                f.c.project_id == project_id,
                f.c.source_kind == "machine",
                f.c.confidence.is_not(None),
            )
            .order_by(f.c.decided_at.desc())
            .limit(limit)
        ).scalars()
        return [float(c) for c in rows]
