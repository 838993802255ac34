"""The prediction app's log (``predictions``): every answer, served or shadow, for monitoring.

Written in batches by the app's background writer (``serve.app``), never on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select

from labelloop.store.db import Database
from labelloop.store.models import PredictionRow

COLUMNS = (
    "id",
    "project_id",
    "request_id",
    "input_ref",
    "model_name",
    "model_version",
    "variant",
    "served",
    "output",
    "latency_ms",
    "created_at",
)


def insert_predictions(db: Database, rows: Sequence[dict[str, Any]]) -> int:
    """One executemany in one transaction; each row has every column but ``id``."""
    if not rows:
        return 0
    with db.engine.begin() as conn:
        conn.execute(insert(PredictionRow), list(rows))
    return len(rows)


def recent_predictions(
    db: Database,
    project_id: int,
    *,
    limit: int = 100,
    model_name: str | None = None,
    served: bool | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows first, as plain dicts."""
    table = PredictionRow.__table__
    q = select(*(table.c[c] for c in COLUMNS)).where(table.c.project_id == project_id)
    if model_name is not None:
        q = q.where(table.c.model_name == model_name)
    if served is not None:
        q = q.where(table.c.served == served)
    q = q.order_by(table.c.id.desc()).limit(limit)
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def counts_by_variant(
    db: Database, project_id: int, *, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Rows per (model name, version, variant, served), with their mean latency in ms."""
    t = PredictionRow.__table__
    q = (
        select(
            t.c.model_name,
            t.c.model_version,
            t.c.variant,
            t.c.served,
            func.count().label("rows"),
            func.avg(t.c.latency_ms).label("mean_latency_ms"),
        )
        .where(t.c.project_id == project_id)
        .group_by(t.c.model_name, t.c.model_version, t.c.variant, t.c.served)
        .order_by(t.c.model_name, t.c.model_version, t.c.variant, t.c.served)
    )
    if since is not None:
        q = q.where(t.c.created_at >= since)
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def served_labels(db: Database, project_id: int, *, newest: bool, limit: int) -> list[str]:
    """The labels the prediction app returned (served rows only), the oldest or the newest
    ``limit``, oldest first."""
    t = PredictionRow.__table__
    order = t.c.id.desc() if newest else t.c.id
    with db.engine.connect() as conn:
        outputs = conn.execute(
            select(t.c.output)
            .where(t.c.project_id == project_id, t.c.served.is_(True))
            .order_by(order)
            .limit(limit)
        ).scalars()
        labels = [o.get("label") for o in outputs if isinstance(o, dict) and o.get("label")]
    return labels[::-1] if newest else labels
