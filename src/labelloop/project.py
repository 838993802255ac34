"""The notebook-facing API: a ``Project`` is a folder with ``labelloop.yaml`` and a store.

    >>> import labelloop
    >>> p = labelloop.Project.init("spam", name="spam", labels=["ham", "spam"])
    >>> report = p.ingest("sms.csv")
    >>> p.status()["items"]

The CLI and the REST API are thin layers over this class.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from labelloop import auth
from labelloop import registry as model_registry
from labelloop.annotate.checks import labeler_bias
from labelloop.annotate.feedback import RetrainReport, retrain
from labelloop.annotate.reviewers import gold_scores
from labelloop.annotate.route import RouteReport, route
from labelloop.annotate.suggest import SuggestReport, suggest
from labelloop.automate import Automation
from labelloop.core.config import (
    ALL_COLUMNS,
    PROJECT_FILE,
    Modality,
    ProjectConfig,
    parse_project_config,
)
from labelloop.core.errors import ConfigError, IngestError, LabelError, LabelloopError, quoted
from labelloop.core.progress import Progress
from labelloop.embed.factory import project_column_order, project_embedder
from labelloop.interop import (
    ExportSummary,
    ImportSummary,
    LabelStudioPushSummary,
    export_kind,
    export_label_studio,
    export_labels,
    import_label_studio,
    push_label_studio,
)
from labelloop.labelers.base import Labeler
from labelloop.labelers.factory import MODEL_KIND, LabelerSet, current_labelers
from labelloop.labelers.llm.factory import project_llm_labeler
from labelloop.mlops import TrainResult, evaluate_latest, snapshot
from labelloop.mlops import train as train_model
from labelloop.mlops.datasets import Dataset
from labelloop.mlops.train import frame_splits, records_frame, train_frame
from labelloop.registry.student import student_hook
from labelloop.review.gold import gold_answers
from labelloop.review.queue import ReviewQueue
from labelloop.sources.ingest import IngestReport, ingest
from labelloop.sources.readers import (
    MANIFEST_PATH_COLUMNS,
    ImageFolderReader,
    Reader,
    SqlReader,
    reader_for,
)
from labelloop.sources.rest import RestReader
from labelloop.sources.validate import reason_kind
from labelloop.store import reads
from labelloop.store.context import ProjectContext
from labelloop.store.db import Database
from labelloop.store.events import log_event
from labelloop.store.items import next_for_review
from labelloop.store.labels import add_human_label, set_final_labels
from labelloop.store.loop_state import ModelVersion, model_versions
from labelloop.store.monitoring import alert_history, automation_runs
from labelloop.workers.loop_worker import loop_status


class Project:
    """One annotation task: its configuration, its store and what has happened to its items."""

    def __init__(self, ctx: ProjectContext) -> None:
        self.ctx = ctx
        self._registry: model_registry.ProjectRegistry | None = None
        self.folder: Path = ctx.folder
        self.config: ProjectConfig = ctx.config
        self.db: Database = ctx.db
        self.id: int = ctx.id

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        folder: str | Path,
        config: ProjectConfig | dict[str, Any] | None = None,
        *,
        overwrite: bool = False,
        **fields: Any,
    ) -> Project:
        """Create a project folder with ``labelloop.yaml`` and an empty store.

        Pass a ``ProjectConfig``, a dict, or keyword fields; ``labels`` may be plain names.
        """
        folder = Path(folder)
        path = folder / PROJECT_FILE
        if path.exists() and not overwrite:
            raise ConfigError(
                str(path),
                None,
                "a project already exists here (overwrite=True, or `labelloop init --force`, "
                "replaces its file)",
            )
        if config is None:
            config = dict(fields)
        if isinstance(config, dict):
            data = dict(config)
            data["labels"] = [
                {"name": label} if isinstance(label, str) else label
                for label in data.get("labels", [])
            ]
            config = parse_project_config(data, str(path))
        made_folder = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            # The store first: a project file is written only once its store works, so a
            # failed init (a server that is down, a bad URL) leaves nothing that blocks a retry.
            project = cls._connect(folder, config)
        except BaseException:
            if made_folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        path.write_text(config.to_yaml(), encoding="utf-8")
        return project

    @classmethod
    def open(cls, path: str | Path = ".") -> Project:
        """Open the project in a folder (or given its YAML file)."""
        return cls(ProjectContext.open(path))

    @classmethod
    def _connect(cls, folder: Path, config: ProjectConfig) -> Project:
        return cls(ProjectContext.connect(folder, config))

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- ingestion -----------------------------------------------------------------------
    @property
    def quarantine_dir(self) -> Path:
        return self.ctx.quarantine_dir

    def ingest(
        self,
        source: str | Path | Reader,
        *,
        import_labels: bool = True,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest a CSV, TSV, JSONL or Parquet file, a video, a folder of images and videos,
        or any ``Reader``. Sampled video frames are written under the project's ``media``.

        In an image project a table file is a manifest of image paths (a ``path`` or ``image``
        column, relative to the manifest's folder, or the project's own content field), and
        labels that come with the images are imported when ``import_labels``: the folder
        holding each image (``root/<label>/x.png``) and the manifest's ``label_field`` column
        (``label`` when the project names none). Names outside the taxonomy are not imported
        and are counted by name in the report's ``labels_unknown``."""
        image = self.config.modality == Modality.image
        reader = (
            source
            if hasattr(source, "records")
            else reader_for(
                source,
                max_image_bytes=self.config.ingest.max_image_bytes,
                video=self.config.video,
                media_dir=self.folder / "media",
                image_paths=self._manifest_path_columns() if image else None,
                label_column=self.config.label_field or "label",
            )
        )
        if isinstance(reader, ImageFolderReader) and not image:
            raise IngestError(
                f"{source}: a folder of images, but this project's modality is "
                f"{self.config.modality}; an image project is made with "
                "`labelloop init FOLDER --modality image --labels ...` (or `modality: image`)"
            )
        return ingest(
            self.db,
            self.id,
            self.config,
            reader,
            quarantine_dir=self.quarantine_dir,
            progress=progress,
            import_labels=import_labels,
        )

    def _manifest_path_columns(self) -> list[str]:
        """Where an image manifest holds its paths: the project's content field when it names
        one (not the default ``text``), then the usual names."""
        own = [f for f in self.config.content_fields if f not in ("text", *ALL_COLUMNS)]
        return [*own, *MANIFEST_PATH_COLUMNS]

    def ingest_sql(self, url: str, query: str, *, progress: Progress | None = None) -> IngestReport:
        """Ingest the rows of a SQL query against any SQLAlchemy URL."""
        return self.ingest(SqlReader(url, query), progress=progress)

    def ingest_rest(
        self, url: str, *, progress: Progress | None = None, **options: Any
    ) -> IngestReport:
        """Ingest the rows of a paginated JSON API (``sources.rest.RestReader``'s options:
        items_key, page_param, cursor_param, token_env, max_pages)."""
        return self.ingest(RestReader(url, **options), progress=progress)

    # -- reading -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counts per state, per final label (and who decided it), quarantine reasons, the
        machine labelers' usage, and the loop (model version in use, last retrain, workers)."""
        states, label_rows, quarantine = reads.project_counts(self.db, self.id)
        per_label: dict[str, dict[str, int]] = {}
        for labels, kind in label_rows:
            for label in labels:
                per_label.setdefault(label, {}).setdefault(kind, 0)
                per_label[label][kind] += 1
        reasons: dict[str, int] = {}
        for reason in quarantine:
            kind = reason_kind(reason)
            reasons[kind] = reasons.get(kind, 0) + 1
        return {
            "project": self.config.name,
            "items": sum(states.values()),
            "labelers": self.labeler_usage(),
            "states": states,
            "labels": per_label,
            "quarantined": len(quarantine),
            "quarantine_reasons": reasons,
            "loop": loop_status(self.ctx),
        }

    def labeler_usage(self) -> dict[str, dict[str, float]]:
        """Per machine labeler: suggestions, invalid answers, tokens and cost (USD) so far."""
        return reads.labeler_usage(self.db, self.id)

    def items(self, state: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Items as a DataFrame (id, content, content_hash, state, priority, source, position, meta)."""
        return reads.items_frame(self.db, self.id, state, limit)

    def quarantine(self) -> pd.DataFrame:
        """Rows that could not become items: source, position, reason, raw text."""
        return reads.quarantine_frame(self.db, self.id)

    def next_for_review(self, limit: int = 50) -> pd.DataFrame:
        with self.db.engine.connect() as conn:
            return pd.DataFrame(next_for_review(conn, self.id, limit))

    def count(self) -> int:
        return reads.count_items(self.db, self.id)

    # -- labels --------------------------------------------------------------------------
    def check_labels(self, labels: Sequence[str]) -> list[str]:
        """The labels of one answer, in the order given, each once; refused (LabelError) when
        one is outside the taxonomy, or a single-label answer is not exactly one label.

        A multi-label answer may be empty: ``[]`` means "none of these labels apply" and is
        stored, aggregated and exported as the empty set. A label given twice counts once, at
        its first place (``["b", "a", "b"]`` -> ``["b", "a"]``).
        """
        allowed = set(self.config.label_names)
        unknown = [label for label in labels if label not in allowed]
        if unknown:
            names = self.config.label_names
            shown = ", ".join(names[:20]) + (
                f", ... ({len(names)} in all)" if len(names) > 20 else ""
            )
            raise LabelError(
                f"label {quoted(unknown[0])} is not in the taxonomy of project "
                f"{self.config.name!r} (labels: {shown})"
            )
        kept = list(dict.fromkeys(labels))
        if self.config.task == "single_label" and len(kept) != 1:
            got = "no label" if not kept else f"{len(kept)} labels"
            raise LabelError(
                f"project {self.config.name!r} is single-label: an answer is exactly one "
                f"label; got {got} (an empty answer, 'none of these', is only for multi-label "
                "projects)"
            )
        return kept

    def label(
        self,
        item_id: int,
        labels: Sequence[str],
        *,
        annotator: str,
        action: str = "label",
        time_spent_ms: int | None = None,
        source_kind: str = "human",
    ) -> None:
        """Record a human label and make it the item's final label."""
        labels = self.check_labels(labels)
        with self.db.engine.begin() as conn:
            add_human_label(conn, item_id, annotator, labels, action, time_spent_ms)
            log_event(conn, self.id, "label", {"annotator": annotator, "labels": labels}, item_id)
            set_final_labels(
                conn,
                [
                    {
                        "project_id": self.id,
                        "item_id": item_id,
                        "labels": labels,
                        "source_kind": source_kind,
                        "source_name": annotator,
                        "source_version": None,
                        "confidence": None,
                    }
                ],
            )

    # -- machines ----------------------------------------------------------------------------
    def labelers(self, *, store: bool = True) -> LabelerSet:
        """The trained machine labelers for the current human labels: the stored model version
        trained on exactly these labels, or trained now (and stored, unless ``store=False``)."""
        return current_labelers(self.ctx, project_embedder(self.ctx), store=store)[0]

    def column_order(self) -> list[str]:
        """A tabular project's columns, those that best separate people's labels first (how the
        review page orders a row's cells). Raises for a project that is not tabular."""
        if self.config.modality != Modality.tabular:
            raise LabelloopError(
                f"column_order: the project is {self.config.modality}, not tabular"
            )
        return project_column_order(self.ctx)

    def model_versions(self) -> list[ModelVersion]:
        """Every stored version of the project's labelers, oldest first (without the bytes)."""
        return model_versions(self.db, self.id, MODEL_KIND)

    def suggest(
        self,
        *,
        limit: int | None = None,
        llm: Labeler | None = None,
        progress: Progress | None = None,
    ) -> SuggestReport:
        """Run the machine labelers over items without suggestions.

        The labelers are the stored model version for the current human labels (refit only
        when those changed). ``llm`` is an optional expensive labeler (any ``Labeler``) asked
        only where the cascade policy says it pays; by default the one configured under
        ``labelers.llm``, if enabled. ``progress(done, total)`` is called after each batch.
        """
        if llm is None and self.config.labelers.llm.enabled:
            llm = project_llm_labeler(self.ctx)
        return suggest(self.ctx, limit=limit, expensive=llm, progress=progress)

    def route(self) -> RouteReport:
        """Auto-label what meets the precision target; queue the rest. The configured LLM's
        stored answers (from ``suggest``) are pooled in, as in the loop."""
        return route(self.ctx)

    def retrain(self, *, llm: Labeler | None = None, select: bool = False) -> RetrainReport:
        """One retrain now: labelers brought up to the current human labels (stored as a model
        version), new items suggested, pending ones re-routed with the current models'
        suggestions, suspected label errors sent for a recheck."""
        if llm is None and self.config.labelers.llm.enabled:
            llm = project_llm_labeler(self.ctx)
        report = retrain(
            self.ctx,
            llm=llm,
            select=select,
            flag_label_issues=self.config.loop.flag_label_issues,
        )[0]
        if report.trained and self.config.model.register_student:
            student_hook(self.registry)(report)
        return report

    # -- review ------------------------------------------------------------------------------
    @property
    def queue(self) -> ReviewQueue:
        """The review queue (leases, submit, skip, undo) of this project."""
        return ReviewQueue(self.db, self.id, self.config.task)

    def enqueue(
        self,
        item_ids: Sequence[int],
        priorities: Sequence[float] | None = None,
        *,
        reason: str = "review",
        reviews_needed: int = 1,
    ) -> None:
        """Send items to people, highest priority first."""
        self.queue.enqueue(item_ids, priorities, reason=reason, reviews_needed=reviews_needed)

    def next_item(self, annotator: str, lease_seconds: int = 600) -> dict[str, Any] | None:
        """The next item for ``annotator``, leased to them, with the machines' suggestions."""
        return self.queue.claim(annotator, lease_seconds)

    def submit(
        self,
        item_id: int,
        labels: Sequence[str],
        *,
        annotator: str,
        time_spent_ms: int | None = None,
    ) -> dict[str, Any]:
        """A reviewer's answer on a leased item (labels checked by ``check_labels``: kept in
        the order given, each once; ``[]`` on a multi-label task is "none of these apply").
        Returns the item id, its decided ``final`` labels (None while more reviews are due)
        and the number of answers."""
        return self.queue.submit(
            item_id, annotator, self.check_labels(labels), time_spent_ms=time_spent_ms
        )

    def skip(self, item_id: int, *, annotator: str) -> None:
        self.queue.skip(item_id, annotator)

    def undo(self, *, annotator: str) -> dict[str, Any] | None:
        """Take back the reviewer's last answer; the item is leased to them again."""
        return self.queue.undo(annotator)

    # -- moving labels in and out ------------------------------------------------------------
    def export(self, path: str | Path, fmt: str | None = None, **options: Any) -> ExportSummary:
        """Final labels with provenance to CSV, JSONL or Parquet, or every item as Label Studio
        tasks (``fmt="label-studio"``, or a ``.json`` file; options: ``annotator_emails``,
        ``from_name``, ``media_url``, ... of ``interop.export_label_studio``). Returns a summary
        (rows, columns, per source kind; for Label Studio also annotations and predictions)."""
        kind = export_kind(path, fmt)
        if kind == "label-studio":
            return export_label_studio(self.ctx, path, **options)
        return export_labels(self.ctx, path, kind, **options)

    def import_label_studio(self, path: str | Path, **options: Any) -> ImportSummary:
        """Tasks, annotations and predictions from Label Studio's JSON (or JSONL) export, plain
        or snapshot (options: ``label_config``, ``from_name``, ``annotators``, ... of
        ``interop.import_label_studio``). What labelloop exported comes back without doubles."""
        return import_label_studio(self.ctx, path, **options)

    def push_label_studio(
        self, url: str, token: str, project: int, **options: Any
    ) -> LabelStudioPushSummary:
        """Bring a running Label Studio's project up to date over its REST API: new items
        become tasks, known ones get their new annotations and predictions (no doubles)."""
        return push_label_studio(self.ctx, url, token, project, **options)

    def audit_results(self) -> pd.DataFrame:
        """Audited machine labels: the machine's label next to the person's answer.

        One row per audited item a person has answered: item_id, machine_label, confidence,
        human_label, correct, and machine_labels / human_labels (the whole sets, as lists).
        In a multi-label project an audit is correct only when the person's whole set equals
        the machine's (``machine_label`` and ``human_label`` then show each set joined by
        ", "); in a single-label project it is correct when the person's label is the
        machine's. ``routing.router.audited_precision(df.correct)`` gives the precision of
        machine labels with its interval.
        """
        return reads.audit_results(self.db, self.id, self.config.task)

    def gold_answers(self) -> dict[int, str]:
        """Items with a known answer: imported labels, and the input's label field when
        ``review.gold_from_label_field`` is on (single-label tasks)."""
        return gold_answers(self.ctx)

    def gold_scores(self) -> pd.DataFrame:
        """Each reviewer's accuracy on the gold items they answered, with a Wilson interval."""
        scores = gold_scores(self.ctx)
        return scores.reset_index().rename(columns={"annotator_id": "annotator"})

    def labeler_bias(self) -> pd.DataFrame:
        """Each machine labeler's spread over the labels next to people's (skew, one-label answers)."""
        return labeler_bias(self.ctx)

    def label_issues(self) -> pd.DataFrame:
        """Labels flagged as probably wrong (sent to a second reviewer), with the reason."""
        return reads.label_issues_frame(self.db, self.id)

    def suggestions(self, labeler: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Machine suggestions, one row each, oldest first: optionally of one labeler only and
        at most ``limit`` rows. ``probs`` holds every label's probability."""
        return reads.suggestions_frame(self.db, self.id, labeler, limit)

    def final_labels(self) -> pd.DataFrame:
        """Every final label with its provenance: one row per item."""
        return reads.final_labels_frame(self.db, self.id)

    # -- the deployed model (issue 14) ----------------------------------------------------------
    def dataset(self, *, save: bool = True) -> Dataset:
        """The final labels as a versioned snapshot with stable train/validation/test splits."""
        return snapshot(self.ctx, save=save)

    def train(self, *, register: bool = True, **options: Any) -> TrainResult:
        """Select, tune and evaluate the deployed model (``labelloop.mlops.train``'s options:
        trials, budget_seconds, candidates, features, folds, seed, progress); with
        ``register`` (default) log it to MLflow as a new version aliased ``challenger``."""
        result = train_model(self.ctx, **options)
        if register:
            mv = model_registry.register_trained(self.registry, result)
            result.registered_version = mv.version
        return result

    def train_rows(
        self,
        rows: pd.DataFrame | Reader,
        target: str,
        *,
        register: bool = True,
        **options: Any,
    ) -> TrainResult:
        """Train the deployed model on rows that do not come from the store: a DataFrame, or
        any ``Reader`` (a SQL query, a paginated REST API, a file); ``target`` is the column
        to predict. Splits are stable by the hash of each row's values; the model goes to
        ``models/<version>/`` and the registry like ``train``'s."""
        frame = rows if isinstance(rows, pd.DataFrame) else records_frame(rows)
        if target not in frame.columns:
            raise LabelloopError(
                f"no column {quoted(target)} to predict; the rows have "
                f"{', '.join(map(str, frame.columns))}"
            )
        frame = frame[frame[target].notna()]
        if frame.empty:
            raise LabelloopError(f"no row has a value in {quoted(target)}")
        X = frame.drop(columns=[target]).reset_index(drop=True)
        y = (
            frame[target].astype(str)
            if self.config.model.task == "classification"
            else frame[target]
        )
        split, version = frame_splits(X, y.to_numpy(), self.config.model)
        result = train_frame(
            X,
            y.to_numpy(),
            split,
            settings=self.config.model,
            folder=self.folder / "models" / version,
            version=version,
            **options,
        )
        if register:
            mv = model_registry.register_trained(self.registry, result)
            result.registered_version = mv.version
        return result

    def predict(
        self,
        rows: pd.DataFrame | Sequence[Any],
        *,
        alias: str | None = None,
        version: int | None = None,
    ) -> pd.DataFrame:
        """The registered model's answers (default: the champion) for rows: a DataFrame of
        table columns or texts, or a list of strings; one row out per row in, with label,
        confidence and p_<label> (value for regression). What ``/predict`` answers."""
        from labelloop.mlops.predictor import Predictor

        return Predictor.load(
            self.registry.resolve(version=version, alias=alias).path
        ).predict_frame(rows)

    def predict_file(
        self,
        input_path: str | Path,
        output_path: str | Path,
        *,
        alias: str | None = None,
        version: int | None = None,
        **options: Any,
    ) -> Any:
        """Batch prediction over a CSV, JSONL or Parquet file in constant memory (``labelloop
        predict``); options: batch_size, probabilities, progress. Returns the summary."""
        from labelloop.mlops.predictor import Predictor
        from labelloop.serve.batch import predict_file

        predictor = Predictor.load(self.registry.resolve(version=version, alias=alias).path)
        return predict_file(predictor, input_path, output_path, **options)

    def export_edge(self, out_dir: str | Path, **options: Any) -> dict[str, Any]:
        """Write an edge bundle of the champion (or ``version=N``) to ``out_dir``: int8 ONNX
        embedder, the head as ONNX, tokenizer, labels, thresholds and a manifest with
        checksums, for ``labelloop.edge.EdgeAnnotator`` on a device. Options: version,
        min_confidence, thresholds, overwrite, progress. Returns the manifest."""
        from labelloop.serve.edge_export import export_project_edge

        return export_project_edge(self.ctx, out_dir, **options)

    # -- monitoring and automation (issue 15) ---------------------------------------------------
    def automation(self, **options: Any) -> Automation:
        """The project's automation: ``.check()`` measures, raises or resolves alerts and runs
        the policies that are due (``labelloop automate`` repeats it)."""
        return Automation(self.ctx, registry=self.registry, **options)

    def alerts(self, *, open_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts, newest first: rule, metric, severity, state, value, bound, message, times
        and deliveries."""
        return alert_history(self.db, self.id, open_only=open_only, limit=limit)

    def automation_runs(self, limit: int = 200) -> list[dict[str, Any]]:
        """Automation runs, newest first: policies, trigger, actions, status, outcome."""
        return automation_runs(self.db, self.id, limit)

    @property
    def registry(self) -> model_registry.ProjectRegistry:
        """The project's model registry (MLflow; ``MLFLOW_TRACKING_URI`` or the project's
        ``mlflow.db``), opened on first use."""
        if self._registry is None:
            self._registry = model_registry.open_registry(self.ctx)
        return self._registry

    def models(self) -> pd.DataFrame:
        """The deployed model's registered versions: version, aliases, dataset, test scores."""
        rows = []
        for mv in self.registry.versions():
            tests = {k[5:]: v for k, v in mv.metrics.items() if k.startswith("test_")}
            rows.append(
                {
                    "version": mv.version,
                    "aliases": ",".join(mv.aliases),
                    "dataset_version": mv.dataset_version,
                    "winner": mv.tags.get("winner"),
                    "created_at": mv.created_at,
                    **tests,
                }
            )
        return pd.DataFrame(rows)

    def model_history(self, limit: int = 200) -> pd.DataFrame:
        """Registrations, promotions, refusals and rollbacks, newest first, with reasons."""
        return pd.DataFrame(self.registry.history(limit=limit))

    def promote(
        self,
        version: int | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
    ) -> model_registry.PromotionDecision:
        """Make the challenger (or ``version``) the champion if it meets the ship thresholds
        and beats the champion by a paired test on the same test items; recorded either way."""
        return model_registry.promote(
            self.registry, version, force=force, reason=reason, actor=actor
        )

    def rollback(
        self, version: int | None = None, *, reason: str, actor: str | None = None
    ) -> model_registry.ModelVersion:
        """Point the champion back at the version it replaced (or ``version``)."""
        return model_registry.rollback(self.registry, version, reason=reason, actor=actor)

    def evaluate(self) -> dict[str, Any]:
        """The latest trained model's scores on the current test split."""
        return evaluate_latest(self.ctx)

    # -- users and credentials (the same as ``labelloop user ...`` and /api/users) -------------

    def create_user(self, username: str, role: str, password: str | None = None) -> auth.User:
        """A user of the review app and the API; without a password, API tokens only."""
        return auth.create_user(self.db, username, role, password)

    def users(self) -> list[auth.User]:
        return auth.list_users(self.db)

    def create_token(
        self, username: str, name: str = "api", days: int | None = None, scope: str = "api"
    ) -> auth.IssuedToken:
        """A new API token (``.token`` is shown once) that works for ``days`` days (default
        ``auth.token_days``); refused for a deactivated user. ``scope="predict"`` makes a
        token for the prediction app only."""
        days = self.config.auth.token_days if days is None else days
        return auth.issue_token(self.db, username, name, days, scope)

    def tokens(self, username: str) -> list[auth.TokenInfo]:
        """The user's API tokens (id, name, created, expires, last used, state), never values."""
        return auth.list_tokens(self.db, username)

    def revoke_tokens(self, username: str, token_id: int | None = None) -> int:
        """Revoke one of the user's tokens, or all; how many were live."""
        return auth.revoke_tokens(self.db, username, token_id)

    def deactivate_user(self, username: str) -> auth.Revocation:
        """No more logins or tokens for ``username``; their tokens and sessions stop at once.
        Refused for the last active admin."""
        return auth.deactivate_user(self.db, username)

    def reactivate_user(self, username: str) -> bool:
        """Let a deactivated user log in again (old tokens stay revoked)."""
        return auth.reactivate_user(self.db, username)

    def set_password(self, username: str, password: str) -> auth.Revocation:
        """A new password; the user's tokens are revoked and their sessions ended."""
        return auth.set_password(self.db, username, password)
