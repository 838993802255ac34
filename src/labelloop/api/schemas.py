"""Request and response bodies of the REST API (they make up the OpenAPI document at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

# Bounds of what the store can hold: ids are 64-bit, a few counters 32-bit columns. A number
# past them is a 422 here, not a database error (a 500) later.
MAX_ID = 2**63 - 1
MAX_INT32 = 2**31 - 1
ItemId = Annotated[int, Field(ge=1, le=MAX_ID)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
QueueReason = Literal["review", "audit", "overlap", "gold", "recheck"]


class Health(BaseModel):
    status: str = "ok"


class WorkerOut(BaseModel):
    last_event_id: int = Field(description="the last event of the outbox it has processed")
    seen_at: datetime | None
    pending_events: int = Field(description="events written since, not yet processed")
    lag_seconds: float | None = Field(description="age of the oldest unprocessed event")


class LoopOut(BaseModel):
    """The feedback loop: the model in use and the workers that drive it."""

    model_version: str | None = Field(description="the stored labelers in use")
    model_version_id: int | None
    model_metrics: dict[str, Any] = Field(
        description="held-out macro-F1 and accuracy (out of fold on the human labels)"
    )
    model_n_labels: int | None
    model_created_at: datetime | None
    last_retrain_at: datetime | None
    last_retrain: dict[str, Any]
    labels_until_retrain: int
    workers: dict[str, WorkerOut]
    lease_holder: str | None = Field(description="the worker doing the loop's work right now")


class StatusOut(BaseModel):
    project: str
    items: int
    states: dict[str, int] = Field(description="items per state (new, queued, labeled, ...)")
    labels: dict[str, dict[str, int]] = Field(
        description="final labels per label, split by who decided (human, machine, import)"
    )
    quarantined: int
    quarantine_reasons: dict[str, int]
    loop: LoopOut


class IngestOut(BaseModel):
    source: str
    rows_read: int
    items_added: int
    duplicates: int
    already_ingested: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    quarantine_file: str | None = None
    rows_per_second: float
    # Labels that came with the images (class folders, a manifest's label column).
    labels_source: str | None = None
    labels_imported: int = 0
    labels_already_imported: int = 0
    labels_kept_human: int = 0
    labels_unknown: dict[str, int] = {}
    labels_invalid: dict[str, int] = {}
    labels_ignored: int = 0


class ItemOut(BaseModel):
    id: int
    content: str
    content_hash: str
    state: str
    priority: float
    source: str
    position: int
    media_path: str | None = None
    meta: dict[str, Any] = {}


class QuarantineOut(BaseModel):
    source: str
    position: int
    reason: str
    raw: str


class SuggestionOut(BaseModel):
    labeler: str
    labeler_version: str
    prompt_version: str | None = None
    probs: dict[str, Any] = {}
    label: str | None = None
    confidence: float | None = None
    confidence_method: str | None = None
    status: str = "ok"


class LeasedItem(BaseModel):
    id: int
    content: str
    content_hash: str
    media_path: str | None = None
    media_url: str | None = Field(None, description="where to fetch the item's image, if any")
    cells: dict[str, Any] | None = Field(
        None, description="a table row's columns and values (tabular projects)"
    )
    meta: dict[str, Any] = {}
    priority: float
    queue_reason: str | None = None
    reviews_needed: int = 1
    suggestions: list[SuggestionOut] = []
    lease_expires_at: str


class ProgressOut(BaseModel):
    """The reviewer's progress, from the store (cached a few seconds per reviewer)."""

    done: int = Field(description="items whose final label people decided, in the project")
    left: int = Field(description="items queued for people")
    mine: int = Field(description="your answers in the project")
    per_hour: float | None = Field(
        description="your items per hour of time on items (last 8 hours); null before any"
    )
    as_of: datetime = Field(description="when the numbers were read from the store")


class NextOut(BaseModel):
    item: LeasedItem | None = Field(description="the leased item, or null when nothing is left")
    progress: ProgressOut | None = Field(
        None, description="your progress (sent by POST /api/queue/next and /api/undo)"
    )


class LabelIn(BaseModel):
    labels: list[Annotated[str, Field(max_length=1000)]] = Field(
        max_length=10_000,
        examples=[["spam"], ["billing", "bug"], []],
        description="the labels in the order the person gave them (kept so); a label given "
        "twice counts once, at its first place. Multi-label: [] means 'none of these apply'. "
        "Single-label: exactly one label ([] is a 422).",
    )
    time_spent_ms: int | None = Field(
        None, ge=0, le=MAX_INT32, description="ms between showing and answering"
    )


class SubmitOut(BaseModel):
    item_id: int
    final: list[str] | None = Field(
        description="the decided labels ([]: none of these apply, multi-label), or null while "
        "more reviews are due"
    )
    answers: int


class SkipOut(BaseModel):
    item_id: int
    skipped: bool = True


class EnqueueIn(BaseModel):
    item_ids: list[ItemId] = Field(min_length=1, max_length=1_000_000)
    priorities: list[FiniteFloat] | None = Field(
        None, max_length=1_000_000, description="one finite number per item (higher first)"
    )
    reason: QueueReason = "review"
    reviews_needed: int = Field(1, ge=1, le=1000)


class EnqueueOut(BaseModel):
    enqueued: int


class FinalLabelOut(BaseModel):
    item_id: int
    content: str
    labels: list[str] = Field(
        description="in the order people gave them; [] (multi-label): none of these apply"
    )
    source_kind: str
    source_name: str
    source_version: str | None = None
    confidence: float | None = None
    decided_at: str | None = None


class SuggestionRecordOut(BaseModel):
    """One stored suggestion with its item (GET /api/suggestions)."""

    item_id: int
    content: str
    labeler: str
    labeler_version: str
    label: str | None = None
    confidence: float | None = None
    confidence_method: str | None = None
    status: str
    error: str | None = None
    probs: dict[str, float] = {}
    latency_ms: float = 0.0
    tokens: int = 0
    cost_usd: float = 0.0


class UserIn(BaseModel):
    username: str = Field(max_length=100)
    role: str = Field(
        max_length=100, examples=["reviewer"], description="admin, reviewer or viewer"
    )
    password: str | None = Field(
        None, max_length=1024, description="needed to log in through the browser"
    )


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    active: bool = Field(True, description="a deactivated user cannot log in or use tokens")


class TokenIn(BaseModel):
    name: str = Field("api", min_length=1, max_length=100, description="what the token is for")
    days: int | None = Field(
        None, ge=1, le=3650, description="how long it works (default: auth.token_days)"
    )


class TokenOut(BaseModel):
    username: str
    token: str = Field(description="shown once; send as 'Authorization: Bearer <token>'")
    id: int
    name: str
    expires_at: datetime


class TokenInfoOut(BaseModel):
    """A stored API token, never its value."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="to the hour")
    state: Literal["live", "revoked", "expired"]


class RevokeOut(BaseModel):
    username: str
    revoked: int = Field(description="tokens that were live and are revoked now")


class AccountOut(BaseModel):
    username: str
    active: bool
    revoked_tokens: int
    ended_sessions: int
    message: str


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class PasswordChangeIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordOut(BaseModel):
    username: str
    revoked_tokens: int = Field(description="the user's other API tokens, revoked by the change")
    ended_sessions: int = Field(description="the user's other browser sessions, ended")
    message: str


class ReviewerStats(BaseModel):
    annotator: str
    labels: int
    median_seconds: float | None


class MeasuredOut(BaseModel):
    measured: bool
    value: float | None = None
    measured_on: str = Field(description="what the number was computed on")


class IntervalOut(MeasuredOut):
    low: float | None = None
    high: float | None = None


class LabelIssueOut(BaseModel):
    item_id: int
    reason: str | None
    state: str
    content: str


class GoldScoreOut(BaseModel):
    annotator: str
    n_gold: int
    n_correct: int
    accuracy: float
    ci_low: float
    ci_high: float


class LabelerBiasOut(BaseModel):
    labeler: str
    n: int
    total_variation: float
    over_predicted: str
    mode: str
    mode_share: float
    human_mode_share: float
    one_label: bool
    flagged: bool


class DashboardProgressOut(BaseModel):
    total: int
    done: int = Field(
        description="items with a final label (labeled by people or auto by machines)"
    )
    left: int
    done_share: float | None
    by_state: dict[str, int]
    human_left: int = Field(
        description="items left for people: queued now, plus the not yet routed ones times "
        "the share of decided items people decided"
    )
    machine_share: float | None = Field(description="share of decided items machines decided")
    per_hour: float | None = Field(
        description="the team's answers per active hour over its last 8 active hours; null "
        "with too little activity"
    )
    pace_answers: int
    pace_active_hours: float
    hours_left: float | None = Field(description="human_left / per_hour, in active hours")
    estimate: str = Field(description="the time left, as a sentence")


class ThroughputBinOut(BaseModel):
    start: str
    count: int


class ReviewerPaceOut(BaseModel):
    annotator: str
    answers: int
    per_hour: float | None
    last_at: str


class ThroughputOut(BaseModel):
    unit: Literal["hour", "day"]
    bins: list[ThroughputBinOut] = Field(description="human labels per bin, empty bins too")
    per_reviewer: list[ReviewerPaceOut]


class LabelSourcesOut(BaseModel):
    label: str
    human: int
    machine: int
    propagated: int = Field(description="near-duplicates that took their representative's label")
    import_: int = Field(alias="import")
    total: int


class BiasLabelOut(BaseModel):
    label: str
    direction: Literal["over", "under", "even"] = Field(
        description="the flag, or for an unflagged label the way it leans so far"
    )
    machine_count: int
    human_count: int
    machine_share: float
    human_share: float
    q_value: float = Field(description="Fisher's exact test, Benjamini-Hochberg over labels")
    more_needed: int | None = Field(
        description="more human labels a test of a twofold skew would need (unflagged labels)"
    )


class BiasCheckOut(BaseModel):
    labeler: str
    n_items: int = Field(description="items both the labeler and people labeled")
    labels: int
    testable: int = Field(description="labels with enough human labels to test a twofold skew")
    flags: list[BiasLabelOut]
    waiting: list[BiasLabelOut] = Field(description="unflagged labels closest to enough evidence")
    one_label: dict[str, Any] | None


class DashboardOut(BaseModel):
    project: str
    items: int
    states: dict[str, int]
    label_counts: dict[str, int]
    labels_by_source: dict[str, dict[str, int]] = Field(
        description="final labels per label, split by who decided them"
    )
    decided_by: dict[str, int] = Field(description="final labels by who decided them")
    human_share: float | None
    reviewers: list[ReviewerStats]
    reviewer_agreement: MeasuredOut
    audited_precision: IntervalOut = Field(
        description="precision of machine labels on the audited share, with a 95% interval"
    )
    label_issues: list[LabelIssueOut] = Field(
        description="labels flagged as probably wrong, sent to a second reviewer"
    )
    labeler_bias: list[LabelerBiasOut] = Field(
        description="each machine labeler's label spread against people's"
    )
    loop: LoopOut = Field(description="the model in use, the last retrain and the loop workers")
    gold_scores: list[GoldScoreOut] = Field(
        description="each reviewer's accuracy on gold items, with a 95% Wilson interval"
    )
    progress: DashboardProgressOut = Field(description="items done and left, and the time left")
    throughput: ThroughputOut = Field(description="human labels over time and per reviewer")
    label_table: list[LabelSourcesOut] = Field(
        description="every label of the taxonomy with its final labels per source"
    )
    items_by_source: dict[str, int] = Field(
        description="items by who decided their final label (human, machine, propagated, import)"
    )
    bias_checks: list[BiasCheckOut] = Field(
        description="per machine labeler: labels it over- or under-predicts on evidence"
    )


# -- items in (POST /api/items) --------------------------------------------------------------
MAX_ITEMS_PER_REQUEST = 1000
ItemFieldValue = Annotated[str, Field(max_length=100_000)] | int | FiniteFloat | bool


class ItemIn(BaseModel):
    external_id: str = Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="your id for the item (idempotency key); no control characters",
    )
    fields: dict[Annotated[str, Field(min_length=1, max_length=200)], ItemFieldValue] = Field(
        min_length=1,
        max_length=200,
        description="the item's content fields (the project's content_fields, e.g. text)",
    )


class ItemResultOut(BaseModel):
    external_id: str
    status: Literal["added", "already", "conflict", "rejected"]
    item_id: int | None = None
    reason: str | None = None


class ItemsOut(BaseModel):
    added: int
    already: int
    conflicts: int
    rejected: int
    streamed: int = Field(description="items put on the stream workers' input stream now")
    items: list[ItemResultOut]
