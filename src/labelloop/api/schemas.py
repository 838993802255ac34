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
    meta: dict[str, Any] = {}
    priority: float
    queue_reason: str | None = None
    reviews_needed: int = 1
    suggestions: list[SuggestionOut] = []
    lease_expires_at: str


class NextOut(BaseModel):
    item: LeasedItem | None = Field(description="the leased item, or null when nothing is left")


class LabelIn(BaseModel):
    labels: list[Annotated[str, Field(max_length=1000)]] = Field(
        min_length=1, max_length=10_000, examples=[["spam"]]
    )
    time_spent_ms: int | None = Field(
        None, ge=0, le=MAX_INT32, description="ms between showing and answering"
    )


class SubmitOut(BaseModel):
    item_id: int
    final: list[str] | None = Field(
        description="the decided label, or null while more reviews are due"
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
    labels: list[str]
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


class TokenOut(BaseModel):
    username: str
    token: str = Field(description="shown once; send as 'Authorization: Bearer <token>'")


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
