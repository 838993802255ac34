"""The schema. Alembic migrations (``store/migrations``) create and evolve it; this is their source.

Items are stored once per content hash (``items``, with the source and position where each
was first seen); every further place the same content was seen (an exact duplicate) is an
``item_sources`` row linked by the hash, so duplicates are labeled once and re-ingesting the
same source adds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ItemState:
    """Where an item stands in the loop."""

    new = "new"  # ingested, no machine suggestion yet
    suggested = "suggested"  # has suggestions, not routed yet
    queued = "queued"  # waiting for a person
    auto = "auto"  # labeled by machines (may still be audited)
    labeled = "labeled"  # labeled by a person
    skipped = "skipped"
    grouped = "grouped"  # a near-duplicate waiting for its group's representative to be labeled

    all = (new, suggested, queued, auto, labeled, skipped, grouped)


class ItemRow(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    media_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=ItemState.new)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    # How many people must label the item (more than one for overlap and gold checks).
    reviews_needed: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Why it is queued: "review" (machines unsure), "audit" (a sampled machine label), "gold".
    queue_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Near-duplicates share the id of their group's representative; its label spreads to them.
    group_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash", name="uq_items_project_hash"),
        # "next items to review": WHERE project_id=? AND state=? ORDER BY priority DESC, id
        Index("ix_items_queue", "project_id", "state", text("priority DESC"), "id"),
        Index(
            "ix_items_group_id",
            "group_id",
            sqlite_where=text("group_id IS NOT NULL"),
            postgresql_where=text("group_id IS NOT NULL"),
        ),
    )


class ItemSourceRow(Base):
    """A further sighting of an item's exact content (a duplicate) in a source."""

    __tablename__ = "item_sources"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (
        UniqueConstraint("project_id", "source", "position", name="uq_item_sources_position"),
        Index("ix_item_sources_hash", "project_id", "content_hash"),
    )


class QuarantineRow(Base):
    """A row that could not become an item, kept with where it came from and why."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (
        UniqueConstraint("project_id", "source", "position", name="uq_quarantine_position"),
    )


class SuggestionRow(Base):
    __tablename__ = "suggestions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    labeler: Mapped[str] = mapped_column(String(100))
    labeler_version: Mapped[str] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    probs: Mapped[dict[str, Any]] = mapped_column(JSON)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    confidence_method: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_suggestions_labeler", "labeler", "item_id"),)


class HumanLabelRow(Base):
    """One human action on an item: who, when, what, how long it took."""

    __tablename__ = "human_labels"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(200))
    labels: Mapped[list[Any]] = mapped_column(JSON)
    action: Mapped[str] = mapped_column(String(32))  # accept, correct, skip, import
    time_spent_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FinalLabelRow(Base):
    """The label an item ends with, and who or what decided it."""

    __tablename__ = "final_labels"
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    labels: Mapped[list[Any]] = mapped_column(JSON)
    source_kind: Mapped[str] = mapped_column(String(16))  # human, machine, import
    source_name: Mapped[str] = mapped_column(String(200))  # annotator or labeler id
    source_version: Mapped[str | None] = mapped_column(String(200), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (Index("ix_final_labels_project", "project_id", "source_kind"),)


class EventRow(Base):
    """Append-only log of what happened (ingest, label, retrain, ...)."""

    __tablename__ = "events"
    # The outbox: workers read "events of this project after my cursor".
    __table_args__ = (Index("ix_events_project_id_id", "project_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EmbeddingRow(Base):
    """A vector by (model, content hash), raw little-endian float32 bytes: a million load fast."""

    __tablename__ = "embeddings"
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class UserRow(Base):
    """A person (or a machine account) who may use the review app and the API."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(300), nullable=True)
    role: Mapped[str] = mapped_column(String(16))  # admin, reviewer, viewer
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiTokenRow(Base):
    """An API token for machines; only its SHA-256 is stored. It works until ``expires_at``
    (a token without one works never: migration 0005 gave every older token a date) unless
    revoked; ``last_used_at`` is stamped at most once an hour, so checking a token is a read."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # "api": everything the user's role allows in the annotation app; "predict": only the
    # prediction app (labelloop serve-models), which accepts nothing else.
    scope: Mapped[str] = mapped_column(String(32), default="api", server_default="api")


class WebSessionRow(Base):
    """A logged-in browser session; only the SHA-256 of the cookie value is stored."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LeaseRow(Base):
    """An item handed to a reviewer until ``expires_at``; nobody else gets it meanwhile."""

    __tablename__ = "leases"
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    annotator: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersionRow(Base):
    """A trained model: what it is, how well it did, on which human labels, and the model itself."""

    __tablename__ = "model_versions"
    __table_args__ = (
        Index("ix_model_versions_training_key", "project_id", "kind", "training_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))  # student, ...
    version: Mapped[str] = mapped_column(String(200))
    algorithm: Mapped[str] = mapped_column(String(100))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_labels: Mapped[int] = mapped_column(Integer)
    trained_on: Mapped[list[Any]] = mapped_column(JSON)  # human-labeled item ids
    promoted: Mapped[bool] = mapped_column(default=False)
    model: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # A digest of what it was trained on (labels, taxonomy, algorithm): equal keys, equal model.
    training_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkerCursorRow(Base):
    """How far a loop worker has read the events outbox of a project."""

    __tablename__ = "worker_cursors"
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobLeaseRow(Base):
    """A named job (such as the retrain) held by one process until ``expires_at``.

    ``token`` grows with every new holder (a fencing token): a holder whose lease expired and
    was taken over can tell, and its late writes are refused."""

    __tablename__ = "job_leases"
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelHistoryRow(Base):
    """The model registry's append-only history: registrations, promotions, rollbacks and
    refused promotions, each with its reason and the evidence (``details``). Rows are only
    ever inserted."""

    __tablename__ = "model_history"
    __table_args__ = (Index("ix_model_history_project_model", "project_id", "model_name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))  # register, promote, refuse, rollback, alias
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictionRow(Base):
    """One answer of the prediction app: which model version and variant (champion,
    challenger, shadow) answered which input (``input_ref``: the hash of the row), whether it
    was returned to the caller (``served``; shadow answers never are), and how long it took."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_project_created", "project_id", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(64))
    input_ref: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str] = mapped_column(String(16))
    served: Mapped[bool] = mapped_column()
    output: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EdgeResultRow(Base):
    """One answer an edge device gave offline (``POST /api/edge/sync``), stored once per
    (device, local result id) however often the device sends it; ``item_id``: the item a
    low-confidence answer's text became, queued for people."""

    __tablename__ = "edge_results"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "device_id", "result_id", name="uq_edge_results_device_result"
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(64))
    result_id: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(200))
    needs_review: Mapped[bool] = mapped_column()
    item_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("items.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRow(Base):
    """A monitoring alert: opened when its rule's metric crosses the bound, updated (never
    duplicated) while it stays open, resolved with a recovery notice when it no longer does.
    ``deliveries``: where it was sent and how that went."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_project_state", "project_id", "state"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(100))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))  # open, resolved
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    bound: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    deliveries: Mapped[list[Any]] = mapped_column(JSON)


class AutomationRunRow(Base):
    """One automation run: the policies that fired, the actions run once each in order, how
    each went (``outcome``) and the run's status (running, succeeded, failed)."""

    __tablename__ = "automation_runs"
    __table_args__ = (Index("ix_automation_runs_project", "project_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    policies: Mapped[list[Any]] = mapped_column(JSON)
    trigger: Mapped[str] = mapped_column(Text)
    actions: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    human_labels: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class MetricValueRow(Base):
    """One measurement of a monitored metric by an automation check (the charts over time)."""

    __tablename__ = "metric_values"
    __table_args__ = (
        Index("ix_metric_values_project_metric", "project_id", "metric", "measured_at"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
