"""The project definition: one annotation task, described by a YAML file.

A config error names the file, the key (dotted path, list positions included) and what is wrong.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelloop.core.errors import ConfigError, quoted

PROJECT_FILE = "labelloop.yaml"
# URL schemes of the stores labelloop runs on (postgres:// is an alias SQLAlchemy once took).
SUPPORTED_STORES = ("sqlite", "postgresql", "postgres")
# content_fields of a table whose every column (but id_field and label_field) is content.
ALL_COLUMNS = ["*"]
AUTO_CHAR_NGRAMS = 1024  # the n-gram features `embedding.char_ngrams: auto` tries
# The metrics a deployed model may be chosen on or held to, per task (ModelSettings).
MODEL_METRICS = {
    "classification": ("macro_f1", "accuracy", "precision", "recall", "roc_auc"),
    "regression": ("mae", "rmse", "r2"),
}


class Modality(StrEnum):
    text = "text"
    image = "image"
    tabular = "tabular"


class TaskType(StrEnum):
    single_label = "single_label"
    multi_label = "multi_label"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


class LabelSpec(_Strict):
    """One label of the taxonomy."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    examples: list[str] = Field(default_factory=list)
    guidelines: str = ""

    @field_validator("name")
    @classmethod
    def _no_outer_space(cls, v: str) -> str:
        if v != v.strip():
            raise ValueError("label name must not start or end with whitespace")
        return v


class Metrics(_Strict):
    """What success means, decided before any model is trained."""

    primary: str = "macro_f1"
    precision_target: float = Field(default=0.95, gt=0.0, le=1.0)
    audit_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    # Random calibration sample of the pool (routing/sample.py): thresholds are fit on its human
    # labels, not on the actively chosen (hard) ones. It holds calibration_min items from the
    # start, then calibration_share of the human labels. 0 turns it off and thresholds are fit
    # on every human label's held-out probabilities (biased low under active learning).
    calibration_share: float = Field(default=0.2, ge=0.0, le=0.5)
    calibration_min: int = Field(default=100, ge=0)
    # How many sampled items' worth of evidence a class may borrow from the other classes.
    prior_strength: float = Field(default=20.0, ge=0.0, le=1000.0)
    # The fewest wrong items' worth that borrowed evidence holds. 0: a class borrows the others'
    # precision whole, so the overall precision is guarded but a class can pass on a handful of
    # right answers (banking77 at 1,000 labels: 14 of 75 intents below 0.95). 1: every class
    # must show its own evidence (the same run: nothing auto-labeled until far more labels).
    prior_min_wrong: float = Field(default=0.0, ge=0.0, le=100.0)
    # How thresholds are fit on the sample. "bound": a lower bound on the sampled items' own
    # precision above each cut (fit_sample_thresholds). "calibrated": a model of P(right |
    # confidence, label) fit on every human label's held-out probabilities, averaged over the
    # pool items each cut would label, with a lower quantile over its parameters' posterior,
    # and no cut the random sample shows below target (fit_calibrated_thresholds; issue 10).
    # "calibrated" is the default: with two reviewers at 400 labels it labels 0.98 of the
    # sms_spam pool and 0.27-0.92 of youtube_spam's (oracle 0.96-1.00), where "bound" labeled
    # 0.43-0.98 and 0.00-0.44 with one. On banking77 (1,000 labels) it leaves 0 intents of 23
    # under 0.95 at coverage 0.17 (oracle 0.80), where "bound" left 15 of 75 at 0.59
    # (docs/benchmarks.md, issue 10, third and fourth rounds).
    threshold_rule: Literal["bound", "calibrated"] = "calibrated"
    # Whose precision the 95% bounds promise. "each": every label that auto-accepts meets the
    # target with 95% confidence on its own, so of many such labels about 1 in 20 may fall
    # short by chance (banking77 at 1,000 labels: 3 of 36 intents with 20+ machine labels below
    # 0.95). "all": every label at once (each bound at 1 - 0.05 / labels); refit on that run's
    # final arrays, 0 of 17 below, at coverage 0.11 of the pool instead of 0.34
    # (docs/benchmarks.md, issue 10, eighth round). Two labels: 97.5% each.
    class_guarantee: Literal["each", "all"] = "each"


class IngestSettings(_Strict):
    chunk_size: int = Field(default=5000, ge=1)
    max_content_chars: int = Field(default=20_000, ge=1)
    max_image_bytes: int = Field(default=20_000_000, ge=1)
    # Folders an admin may ingest from by server path over HTTP (relative: to the project
    # folder). Empty: path ingest over HTTP is off (uploads and the CLI still work).
    import_dirs: list[str] = Field(default_factory=list)

    @field_validator("import_dirs")
    @classmethod
    def _folders(cls, v: list[str]) -> list[str]:
        for folder in v:
            if not folder.strip() or _has_control(folder):
                raise ValueError(f"import folder {folder!r} is empty or holds control characters")
        return v


class VideoSettings(_Strict):
    """How a video file becomes image items (one per sampled frame; image projects only)."""

    every_seconds: float = Field(default=1.0, gt=0, le=86_400)  # one frame per this many seconds
    max_frames_per_file: int = Field(default=300, ge=1, le=1_000_000)
    # Consecutive frames within this mean absolute difference (0-255, on 16x16 grayscale
    # thumbnails) of their group's first frame share a group; 0: only identical thumbnails.
    group_max_difference: float = Field(default=4.0, ge=0, le=255)


class ApiSettings(_Strict):
    """Limits of the web app and REST API (``labelloop serve``)."""

    max_body_bytes: int = Field(default=1_000_000, ge=1_000)  # any request but an upload
    max_upload_bytes: int = Field(default=100_000_000, ge=1_000)  # file uploads (ingest, import)
    # Reverse proxies (IP addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are
    # believed; from anyone else the socket peer address counts (login throttling).
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return v


class AuthSettings(_Strict):
    """How long credentials last: API tokens (``labelloop user token --days`` overrides) and
    browser sessions."""

    token_days: int = Field(default=90, ge=1, le=3650)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)


class EmbeddingSettings(_Strict):
    """Which embedder turns items into vectors (the zero-shot and student labelers use them)."""

    backend: Literal["minilm", "openai", "sentence-transformers"] = "minilm"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    threads: int = Field(default=1, ge=1)
    batch_size: int = Field(default=64, ge=1)
    # MiniLM: rows x padded length per batch at most this (long texts go in smaller batches).
    max_batch_tokens: int = Field(default=512, ge=1)
    # Text: append this many hashed character n-gram features to each vector (0: off), so the
    # student sees surface cues (URLs, "FREE", phone numbers) as well as meaning. Helps spam
    # and moderation tasks, hurts intent taxonomies (embed.char_ngrams, docs/benchmarks.md).
    # "auto" (the default): start without them; at each retrain the loop compares the student
    # with and without AUTO_CHAR_NGRAMS of them on the random calibration sample's held-out
    # log-loss and switches the project's vectors when the other view is clearly better.
    char_ngrams: int | Literal["auto"] = Field(default="auto")

    @field_validator("char_ngrams")
    @classmethod
    def _char_ngrams_range(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 0 <= v <= 65536:
            raise ValueError(f"char_ngrams={v}: expected 0 to 65536, or 'auto'")
        return v


class LLMSettings(_Strict):
    """The LLM labeler: the bundled local model, or any OpenAI-compatible endpoint."""

    enabled: bool = False
    backend: Literal["llama-cpp", "openai"] = "llama-cpp"
    base_url: str | None = None
    model: str | None = None
    # The NAME of the environment variable holding the API key; the key itself never lives here.
    api_key_env: str | None = None
    # How the answer's JSON schema is sent (openai backend): "auto" tries the standard
    # json_schema, then a schema inside json_object (llama-cpp-python's server), then bare
    # json_object, then plain text validated by labelloop, and keeps the first accepted.
    structured_output: Literal[
        "auto", "json_schema", "json_object_schema", "json_object", "none"
    ] = "auto"
    concurrency: int = Field(default=4, ge=1)  # parallel requests (openai backend only)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    few_shot: int = Field(default=4, ge=0)
    # A taxonomy larger than this is not shown whole: the prompt lists the labels the cheap
    # labelers rank highest (this many) plus those of the few-shot examples. 0: always whole.
    candidate_labels: int = Field(default=10, ge=0)
    price_in_per_1k: float = Field(default=0.0, ge=0)
    price_out_per_1k: float = Field(default=0.0, ge=0)


class CascadeSettings(_Strict):
    """When the expensive labeler (the LLM) is asked, on top of the cheap ones."""

    min_human_labels: int = Field(default=50, ge=0)
    confidence_threshold: float = Field(default=0.8, ge=0, le=1)
    disagreement_threshold: float = Field(default=0.3, ge=0, le=1)
    # With a call budget (max_calls), at most this share of the calls left goes first to the
    # calibration sample's members the cascade picks: people label those, so the LLM's weight
    # is measured there (issue 10); the rest to the least certain items.
    measure_share: float = Field(default=0.5, ge=0, le=1)


class ActiveSettings(_Strict):
    """How the review queue is ordered: weights of the acquisition scores (higher first)."""

    uncertainty: float = Field(default=1.0, ge=0)  # margin between the two top labels
    disagreement: float = Field(default=0.5, ge=0)  # among the machine labelers
    density: float = Field(default=0.3, ge=0)  # representativeness in embedding space
    # Below this many human labels, queue the most typical items of unlabeled clusters first.
    cold_start_labels: int = Field(default=100, ge=0)
    # Items at least this similar (cosine) are near-duplicates: reviewed once, label spread.
    near_duplicate_threshold: float = Field(default=0.97, gt=0, le=1)


class LoopSettings(_Strict):
    """The feedback loop as a service (``labelloop serve`` / ``labelloop worker``)."""

    retrain_every: int = Field(default=50, ge=1)  # new human labels between full retrains
    # Who retrains: the loop worker every retrain_every labels ("loop"), or only the
    # automation's policies ("automation": a labels policy with retrain_student is then the
    # same rule as one policy among the others; the loop worker still suggests and routes).
    retrain_by: Literal["loop", "automation"] = "loop"
    update_every: int = Field(default=10, ge=0)  # incremental re-score between them (0: off)
    select_every: int = Field(default=4, ge=0)  # compare student kinds every k retrains (0: off)
    poll_seconds: float = Field(default=1.0, gt=0, le=3600)  # how often a worker reads the outbox
    lease_seconds: float = Field(default=120.0, ge=5, le=86_400)  # a dead worker's work moves on
    flag_label_issues: bool = True  # send suspected label errors to a second reviewer
    # A label goes to a second person when its chance of being wrong exceeds this (the cost of
    # a second review over the gain of fixing a wrong label), at most recheck_max_rate of the
    # human label actions in all plus one for each recheck that overturned a label. 0.2: with
    # two reviewers and people's accuracy learned from answered rechecks, youtube_spam had
    # 1.5-2.5% of clean labels rechecked and 59-80% of 10% injected errors caught (0.5:
    # 0.2-0.8% and 0-11%; docs/benchmarks.md, issue 10, third round).
    recheck_cost_ratio: float = Field(default=0.2, gt=0.0, lt=1.0)
    recheck_max_rate: float = Field(default=0.05, ge=0.0, le=1.0)


class ReviewSettings(_Strict):
    """How people's work is checked: overlap between reviewers and gold items."""

    overlap_share: float = Field(default=0.0, ge=0, le=1)  # share of review items given to k people
    overlap_k: int = Field(default=2, ge=2)
    gold_share: float = Field(
        default=0.0, ge=0, le=1
    )  # gold items mixed into the queue, per item queued
    # Use the input's label_field as the gold answer (for datasets that carry one).
    gold_from_label_field: bool = False


class LabelerSettings(_Strict):
    zeroshot: bool = True
    student: bool = True
    student_min_labels: int = Field(default=10, ge=2)
    # Self-training on the unlabeled items as a labeler of its own (its pseudo-labels never
    # become human labels). Off by default: measured, it did not help (docs/benchmarks.md).
    semi_supervised: bool = False
    llm: LLMSettings = Field(default_factory=LLMSettings)
    cascade: CascadeSettings = Field(default_factory=CascadeSettings)


class LabelStudioSettings(_Strict):
    """Label Studio interchange (``export --format label-studio``, ``import``)."""

    # labelloop annotator -> email of a member of the Label Studio organization. An annotator
    # without an email here is written without ``completed_by`` (Label Studio credits the
    # importing user) and kept in the task's ``meta``; an import maps the emails back.
    annotator_emails: dict[str, str] = Field(default_factory=dict)
    # An image item's URL in a task: {path} (relative to media_root, URL-quoted), {name} and
    # {item_id}. The default is Label Studio's local-files URL, served when Label Studio runs
    # with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and its document root at media_root.
    media_url: str = "/data/local-files/?d={path}"
    media_root: str = "/"

    @field_validator("annotator_emails")
    @classmethod
    def _emails(cls, v: dict[str, str]) -> dict[str, str]:
        for name, email in v.items():
            if "@" not in email or _has_control(email) or email != email.strip():
                raise ValueError(f"annotator {name!r}: {email!r} is not an email address")
        return v


class StreamSettings(_Strict):
    """The stream workers' Redis streams (``labelloop stream-worker``, ``POST /api/items``).
    The environment overrides the URL (``LABELLOOP_ITEMS_REDIS``, so a password need not live
    in the file) and the input stream (``LABELLOOP_ITEMS_STREAM``)."""

    redis_url: str | None = Field(default=None, pattern=r"^rediss?://", max_length=2000)
    items_stream: str = Field(default="labelloop:items", min_length=1, max_length=200)
    group: str = Field(default="labelloop", min_length=1, max_length=200)
    decisions_stream: str = Field(default="labelloop:decisions", min_length=1, max_length=200)
    batch_size: int = Field(default=64, ge=1, le=10_000)
    max_wait_ms: int = Field(default=200, ge=1, le=60_000)
    # Once a batch has entries, how long it waits for more before it closes (0: it takes what
    # is waiting at that moment and closes).
    linger_ms: int = Field(default=0, ge=0, le=60_000)
    # Backpressure: POST /api/items answers 429 while the workers' group has more entries
    # waiting or pending than this (None: never).
    max_lag: int | None = Field(default=100_000, ge=1)


class ServingSettings(_Strict):
    """How the prediction app (``labelloop serve-models``) splits traffic between the
    registered ``champion`` and ``challenger``."""

    # Share of requests the challenger answers (A/B), sticky by the request's key; 0: none.
    challenger_share: float = Field(default=0.0, ge=0.0, le=1.0)
    # The challenger also scores every request the champion answers; logged, never returned.
    shadow: bool = False
    log_predictions: bool = True  # every answer to the predictions table (for monitoring)
    max_rows: int = Field(default=1000, ge=1, le=100_000)  # rows per request at most


class ModelSettings(_Strict):
    """The deployed model's problem (issue 14): its task, the metric it is chosen on and the
    scores it must reach to ship. A threshold of 0 (the default) means no bar."""

    task: Literal["classification", "regression"] = "classification"
    # classification: macro_f1, accuracy, precision, recall, roc_auc; regression: mae, rmse, r2.
    primary_metric: str = "macro_f1"
    # Metric -> the score a model must reach to ship; empty: {primary_metric: 0}, no bar.
    ship_thresholds: dict[str, float] = Field(default_factory=dict)
    cv_folds: int = Field(default=5, ge=2, le=20)
    test_share: float = Field(default=0.2, gt=0.0, lt=0.5)  # of the human labels
    validation_share: float = Field(default=0.1, ge=0.0, lt=0.5)
    trials: int = Field(default=20, ge=0)  # Optuna trials (0: no tuning)
    budget_seconds: float = Field(default=120.0, gt=0)  # tuning's time budget
    # The registered model's name (default: the project's name); the student is "<name>-student".
    registry_name: str | None = Field(default=None, min_length=1, max_length=200)
    # A challenger is promoted only if better than the champion at this significance (paired
    # test on the same test items) and meeting every ship threshold.
    promotion_alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    # Register each new student of the annotation loop in the same registry as
    # "<registry_name>-student" (alias champion: the loop serves the newest).
    register_student: bool = True

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelSettings:
        allowed = MODEL_METRICS[self.task]
        if not self.ship_thresholds:
            self.ship_thresholds = {self.primary_metric: 0.0}
        for name in [self.primary_metric, *self.ship_thresholds]:
            if name not in allowed:
                raise ValueError(
                    f"metric {name!r} does not fit a {self.task} model (one of {sorted(allowed)})"
                )
        return self


# What the monitor measures on each check (labelloop automate): the names alert rules and
# policies refer to.
MONITOR_METRICS = {
    "audited_precision": "share of the latest `monitoring.window` audited machine labels people confirmed",
    "estimated_precision": "mean calibrated confidence of the latest `window` machine labels (CBPE)",
    "audit_change": "1 when ADWIN over the audit outcomes signalled a change in the latest `window`",
    "champion_accuracy": "the deployed champion's accuracy on the latest `window` human labels",
    "embedding_drift_auc": "domain-classifier ROC AUC, latest `window` items against the reference",
    "feature_drift_share": "table projects: share of columns whose drift test fires, latest `window` rows",
    "prediction_drift": "served labels, latest `window` against the first: statistic over threshold",
    "human_labels": "human label actions so far",
    "queue_depth": "items waiting for a person",
}


class AlertRuleSpec(_Strict):
    """An alert: ``metric`` above or below a bound for ``for_checks`` checks in a row."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    metric: str
    above: float | None = None
    below: float | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    for_checks: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_bound(self) -> AlertRuleSpec:
        if self.metric not in MONITOR_METRICS:
            raise ValueError(
                f"alert {self.name!r}: unknown metric {self.metric!r} "
                f"(one of {', '.join(sorted(MONITOR_METRICS))})"
            )
        if (self.above is None) == (self.below is None):
            raise ValueError(f"alert {self.name!r}: give exactly one of above and below")
        return self


class WebhookSpec(_Strict):
    """Where alerts (and their recovery notices) are POSTed as JSON. With ``secret_env`` the
    body is signed: ``X-Labelloop-Signature: sha256=<HMAC of the body>``."""

    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    min_severity: Literal["info", "warning", "critical"] = "info"
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    tries: int = Field(default=3, ge=1, le=10)


class MonitoringSettings(_Strict):
    """What ``labelloop automate`` watches and whom it tells (issue 15)."""

    alerts: list[AlertRuleSpec] = Field(default_factory=list)
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    window: int = Field(default=200, ge=10, le=100_000)  # latest items / labels a check reads
    reference_items: int = Field(default=2000, ge=50, le=1_000_000)  # drift reference size
    # An item the drift classifier gives this probability of being recent is "drifted".
    drift_item_probability: float = Field(default=0.7, gt=0.5, lt=1.0)


AutomationAction = Literal["prioritize_drift", "retrain_student", "train", "promote", "rollback"]
# The order actions run in when several policies fire at once (each runs once).
ACTION_ORDER: tuple[str, ...] = (
    "prioritize_drift",
    "retrain_student",
    "train",
    "promote",
    "rollback",
)


class PolicySpec(_Strict):
    """A trigger and the actions it runs. Triggers: ``schedule`` (every ``every_minutes``),
    ``labels`` (every ``labels`` new human labels), ``alert`` (while the alert named ``alert``
    is open, or any alert when unnamed; once per opening), ``quality_drop``
    (``audited_precision`` below ``quality_below``, again only after new human labels)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    trigger: Literal["schedule", "labels", "alert", "quality_drop"]
    every_minutes: float | None = Field(default=None, gt=0, le=525_600)
    labels: int | None = Field(default=None, ge=1)
    alert: str | None = None
    quality_below: float | None = Field(default=None, gt=0, le=1)
    actions: list[AutomationAction] = Field(min_length=1)

    @model_validator(mode="after")
    def _trigger_has_its_setting(self) -> PolicySpec:
        needed = {"schedule": "every_minutes", "labels": "labels", "quality_drop": "quality_below"}
        key = needed.get(self.trigger)
        if key is not None and getattr(self, key) is None:
            raise ValueError(f"policy {self.name!r}: a {self.trigger} trigger needs {key}")
        return self


class AutomationSettings(_Strict):
    """Policies ``labelloop automate`` runs; runs of one project never overlap."""

    policies: list[PolicySpec] = Field(default_factory=list)
    check_seconds: float = Field(default=60.0, ge=1, le=86_400)  # between checks
    run_timeout_seconds: float = Field(default=3600.0, ge=10, le=86_400)  # the run's lease
    drift_boost: float = Field(default=5.0, gt=0, le=1000)  # priority added to drifted items


class ProjectConfig(_Strict):
    """A project: its name, what the items are, the taxonomy, the targets and the store."""

    name: str = Field(min_length=1, max_length=200)
    modality: Modality = Modality.text
    task: TaskType = TaskType.single_label
    labels: list[LabelSpec] = Field(min_length=2)
    content_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    # Tables: a column's kind, where inference (number when 90% of values parse) is wrong.
    column_kinds: dict[str, Literal["number", "category"]] = Field(default_factory=dict)
    # A column that already holds a label (a dataset's own answer); kept in the item's metadata
    # so simulations and evaluations can use it. It never becomes a human label by itself.
    label_field: str | None = None
    id_field: str | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    labelers: LabelerSettings = Field(default_factory=LabelerSettings)
    active: ActiveSettings = Field(default_factory=ActiveSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    # SQLAlchemy URL. A relative SQLite path is relative to the project folder.
    storage: str = "sqlite:///labelloop.db"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        # The name ends up in file names (exports): it must not climb out of a folder.
        if "/" in v or "\\" in v or ".." in v or _has_control(v):
            raise ValueError(
                "project name must not hold '/', '\\', '..', NUL or other control characters"
            )
        return v

    @field_validator("storage")
    @classmethod
    def _supported_storage(cls, v: str) -> str:
        # Checked here, before anything is written, so an unsupported URL leaves nothing behind.
        scheme = v.split("://", 1)[0].split("+", 1)[0].lower() if "://" in v else ""
        if scheme not in SUPPORTED_STORES:
            raise ValueError(
                f"storage {quoted(v)} is not supported: use sqlite:///FILE or "
                "postgresql://USER@HOST/DB"
            )
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> ProjectConfig:
        names = [label.name for label in self.labels]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"label {name!r} appears twice in labels")
            seen.add(name)
        return self

    @model_validator(mode="after")
    def _policies_name_known_alerts(self) -> ProjectConfig:
        rules = [r.name for r in self.monitoring.alerts]
        if len(set(rules)) != len(rules):
            raise ValueError("monitoring.alerts: two rules share a name")
        for policy in self.automation.policies:
            if policy.trigger == "alert" and policy.alert is not None and policy.alert not in rules:
                raise ValueError(
                    f"automation policy {policy.name!r} waits for alert {policy.alert!r}, which "
                    f"monitoring.alerts does not define ({', '.join(rules) or 'none'})"
                )
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def resolved_storage(self, project_dir: Path) -> str:
        """The storage URL with a relative SQLite path made absolute against the project folder."""
        prefix = "sqlite:///"
        if self.storage.startswith(prefix):
            raw = self.storage[len(prefix) :]
            if raw and raw != ":memory:" and not raw.startswith("/"):
                return prefix + str((project_dir / raw).resolve())
        return self.storage

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _key_of(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def parse_project_config(data: Any, source: str) -> ProjectConfig:
    """Validate a mapping; on failure raise ConfigError naming ``source``, the key and the problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, None, "expected a mapping of keys to values at the top level")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
        more = len(exc.errors()) - 1
        if more:
            problem += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(source, _key_of(tuple(err["loc"])), problem) from None


def load_project_config(path: str | Path) -> ProjectConfig:
    """Read and validate a project YAML file (or the ``labelloop.yaml`` inside a folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / PROJECT_FILE
    if not p.exists():
        raise ConfigError(str(p), None, "file not found (run `labelloop init` to create a project)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), None, f"not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            str(p), None, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    return parse_project_config(data, str(p))
