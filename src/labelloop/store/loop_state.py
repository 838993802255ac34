"""What the loop keeps between runs: model versions, worker cursors on the events outbox, and
job leases (one retrain at a time per project, across processes and machines)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from labelloop.store.db import Database
from labelloop.store.models import (
    EventRow,
    JobLeaseRow,
    ModelVersionRow,
    WorkerCursorRow,
    utcnow,
)


# -- model versions --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelVersion:
    id: int
    kind: str
    version: str
    algorithm: str
    metrics: dict[str, Any]
    n_labels: int
    training_key: str | None
    created_at: datetime
    model: bytes | None = None


def _version(row: Any, with_model: bool) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        kind=row.kind,
        version=row.version,
        algorithm=row.algorithm,
        metrics=row.metrics or {},
        n_labels=row.n_labels,
        training_key=row.training_key,
        created_at=row.created_at,
        model=row.model if with_model else None,
    )


def save_model_version(
    db: Database,
    project_id: int,
    *,
    kind: str,
    version: str,
    algorithm: str,
    metrics: dict[str, Any],
    trained_on: Sequence[int],
    model: bytes,
    training_key: str,
) -> int:
    """Store a trained model (promoted: the loop serves the newest one); returns its row id."""
    with db.engine.begin() as conn:
        return int(
            conn.execute(
                insert(ModelVersionRow)
                .values(
                    project_id=project_id,
                    kind=kind,
                    version=version,
                    algorithm=algorithm,
                    metrics=metrics,
                    n_labels=len(trained_on),
                    trained_on=[int(i) for i in trained_on],
                    promoted=True,
                    model=model,
                    training_key=training_key,
                    created_at=utcnow(),
                )
                .returning(ModelVersionRow.id)
            ).scalar_one()
        )


def latest_model_version(
    db: Database,
    project_id: int,
    kind: str,
    *,
    training_key: str | None = None,
    with_model: bool = False,
) -> ModelVersion | None:
    """The newest promoted model of ``kind`` (with ``training_key``: the newest trained on
    exactly that), or None."""
    m = ModelVersionRow.__table__
    cols = [c for c in m.c if with_model or c.name != "model"]
    stmt = select(*cols).where(
        m.c.project_id == project_id, m.c.kind == kind, m.c.promoted.is_(True)
    )
    if training_key is not None:
        stmt = stmt.where(m.c.training_key == training_key)
    with db.engine.connect() as conn:
        row = conn.execute(stmt.order_by(m.c.id.desc()).limit(1)).first()
    return None if row is None else _version(row, with_model)


def model_version_by_id(
    db: Database, version_id: int, *, with_model: bool = False
) -> ModelVersion | None:
    """One stored model version by its row id, or None."""
    m = ModelVersionRow.__table__
    cols = [c for c in m.c if with_model or c.name != "model"]
    with db.engine.connect() as conn:
        row = conn.execute(select(*cols).where(m.c.id == version_id)).first()
    return None if row is None else _version(row, with_model)


def model_versions(db: Database, project_id: int, kind: str | None = None) -> list[ModelVersion]:
    """Every stored model version (without the model bytes), oldest first."""
    m = ModelVersionRow.__table__
    stmt = select(*[c for c in m.c if c.name != "model"]).where(m.c.project_id == project_id)
    if kind is not None:
        stmt = stmt.where(m.c.kind == kind)
    with db.engine.connect() as conn:
        return [_version(r, False) for r in conn.execute(stmt.order_by(m.c.id))]


# -- the events outbox -----------------------------------------------------------------------
def events_after(
    db: Database, project_id: int, after_id: int, limit: int = 10_000
) -> list[tuple[int, str, int | None, dict[str, Any]]]:
    """(id, kind, item_id, payload) of the project's events after ``after_id``, oldest first."""
    e = EventRow.__table__
    with db.engine.connect() as conn:
        return [
            (int(r[0]), r[1], r[2], r[3] or {})
            for r in conn.execute(
                select(e.c.id, e.c.kind, e.c.item_id, e.c.payload)
                .where(e.c.project_id == project_id, e.c.id > after_id)
                .order_by(e.c.id)
                .limit(limit)
            )
        ]


def last_event(db: Database, project_id: int, kinds: Sequence[str] | None = None) -> Any:
    """The newest event (id, kind, payload, created_at) of the project, of ``kinds`` if given."""
    e = EventRow.__table__
    stmt = select(e.c.id, e.c.kind, e.c.payload, e.c.created_at).where(e.c.project_id == project_id)
    if kinds is not None:
        stmt = stmt.where(e.c.kind.in_(list(kinds)))
    with db.engine.connect() as conn:
        return conn.execute(stmt.order_by(e.c.id.desc()).limit(1)).first()


def count_events(db: Database, project_id: int, kind: str) -> int:
    e = EventRow.__table__
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(e.c.project_id == project_id, e.c.kind == kind)
            ).scalar_one()
        )


def event_lag(
    db: Database, project_id: int, after_id: int, ignore_kinds: Collection[str] = ()
) -> tuple[int, datetime | None]:
    """How many events follow ``after_id``, and when the oldest of them was written; events of
    ``ignore_kinds`` (ones a worker writes itself and never acts on) do not count."""
    e = EventRow.__table__
    stmt = select(func.count(), func.min(e.c.created_at)).where(
        e.c.project_id == project_id, e.c.id > after_id
    )
    if ignore_kinds:
        stmt = stmt.where(e.c.kind.not_in(list(ignore_kinds)))
    with db.engine.connect() as conn:
        n, oldest = conn.execute(stmt).one()
    return int(n), oldest


def get_cursor(db: Database, project_id: int, worker: str) -> int:
    c = WorkerCursorRow.__table__
    with db.engine.connect() as conn:
        value = conn.execute(
            select(c.c.last_event_id).where(c.c.project_id == project_id, c.c.worker == worker)
        ).scalar_one_or_none()
    return int(value or 0)


def cursors(db: Database, project_id: int) -> dict[str, tuple[int, datetime]]:
    """Every worker's cursor on the project: name -> (last event id, when it moved)."""
    c = WorkerCursorRow.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(c.c.worker, c.c.last_event_id, c.c.updated_at).where(
                c.c.project_id == project_id
            )
        ).all()
    return {r[0]: (int(r[1]), r[2]) for r in rows}


def set_cursor(db: Database, project_id: int, worker: str, event_id: int) -> None:
    """Move a worker's cursor forward (never back)."""
    c = WorkerCursorRow.__table__
    now = utcnow()
    with db.engine.begin() as conn:
        done = conn.execute(
            update(c)
            .where(c.c.project_id == project_id, c.c.worker == worker)
            .values(last_event_id=func.max(c.c.last_event_id, event_id), updated_at=now)
            if db.dialect == "sqlite"
            else update(c)
            .where(c.c.project_id == project_id, c.c.worker == worker)
            .values(last_event_id=func.greatest(c.c.last_event_id, event_id), updated_at=now)
        ).rowcount
        if not done:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(c).values(
                            project_id=project_id,
                            worker=worker,
                            last_event_id=event_id,
                            updated_at=now,
                        )
                    )
            except IntegrityError:  # another process of the same worker name got there first
                pass


# -- job leases ------------------------------------------------------------------------------
def acquire_lease(
    db: Database, project_id: int, name: str, holder: str, seconds: float
) -> int | None:
    """Take the lease ``name`` for ``seconds`` if it is free, expired or already ours.

    Returns the fencing token (it grows with every change of holder), or None when another
    holder has it. One statement decides, so two processes never both win."""
    lease = JobLeaseRow.__table__
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    with db.engine.begin() as conn:
        row = conn.execute(
            update(lease)
            .where(
                lease.c.project_id == project_id,
                lease.c.name == name,
                (lease.c.expires_at < now) | (lease.c.holder == holder),
            )
            .values(
                token=lease.c.token + case((lease.c.holder != holder, 1), else_=0),
                holder=holder,
                expires_at=until,
            )
            .returning(lease.c.token)
        ).first()
        if row is not None:
            return int(row[0])
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(lease).values(
                        project_id=project_id, name=name, holder=holder, token=1, expires_at=until
                    )
                )
            return 1
        except IntegrityError:  # held by someone else, and not expired
            return None


def _held_by(project_id: int, name: str, holder: str, token: int) -> Any:
    """The lease row as ``holder`` took it (same fencing token: nobody took it over since)."""
    lease = JobLeaseRow.__table__
    return and_(
        lease.c.project_id == project_id,
        lease.c.name == name,
        lease.c.holder == holder,
        lease.c.token == token,
    )


def renew_lease(
    db: Database, project_id: int, name: str, holder: str, token: int, seconds: float
) -> bool:
    """Extend our lease; False if it was lost (expired and taken by another holder)."""
    lease = JobLeaseRow.__table__
    with db.engine.begin() as conn:
        return bool(
            conn.execute(
                update(lease)
                .where(_held_by(project_id, name, holder, token))
                .values(expires_at=utcnow() + timedelta(seconds=seconds))
            ).rowcount
        )


def release_lease(db: Database, project_id: int, name: str, holder: str, token: int) -> None:
    """Let the lease go at once (it would also expire by itself)."""
    lease = JobLeaseRow.__table__
    with db.engine.begin() as conn:
        conn.execute(
            update(lease)
            .where(_held_by(project_id, name, holder, token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


def lease_holder(db: Database, project_id: int, name: str) -> tuple[str, datetime] | None:
    """Who holds the lease and until when (an expired lease counts as free: None)."""
    lease = JobLeaseRow.__table__
    with db.engine.connect() as conn:
        row = conn.execute(
            select(lease.c.holder, lease.c.expires_at).where(
                lease.c.project_id == project_id, lease.c.name == name
            )
        ).first()
    if row is None:
        return None
    expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=utcnow().tzinfo)
    return (row[0], expires) if expires > utcnow() else None
