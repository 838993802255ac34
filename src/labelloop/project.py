"""The notebook-facing API: a ``Project`` is a folder with ``labelloop.yaml`` and a store.

    >>> import labelloop
    >>> p = labelloop.Project.init("spam", name="spam", labels=["ham", "spam"])
    >>> report = p.ingest("sms.csv")
    >>> p.status()["items"]

The CLI and the REST API are thin layers over this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import case, func, select

from labelloop.core.config import (
    PROJECT_FILE,
    ProjectConfig,
    load_project_config,
    parse_project_config,
)
from labelloop.core.errors import ConfigError, LabelError
from labelloop.review.queue import ReviewQueue
from labelloop.sources.ingest import IngestReport, ingest
from labelloop.sources.readers import Reader, SqlReader, reader_for
from labelloop.sources.validate import reason_kind
from labelloop.store.db import Database
from labelloop.store.items import counts_by_state, next_for_review
from labelloop.store.labels import add_human_label, set_final_labels
from labelloop.store.models import (
    EventRow,
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    QuarantineRow,
    SuggestionRow,
)
from labelloop.store.projects import ensure_project


class Project:
    """One annotation task: its configuration, its store and what has happened to its items."""

    def __init__(self, folder: Path, config: ProjectConfig, db: Database, project_id: int) -> None:
        self.folder = folder
        self.config = config
        self.db = db
        self.id = project_id

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
            raise ConfigError(str(path), None, "a project already exists here (use overwrite=True)")
        if config is None:
            config = dict(fields)
        if isinstance(config, dict):
            data = dict(config)
            data["labels"] = [
                {"name": label} if isinstance(label, str) else label
                for label in data.get("labels", [])
            ]
            config = parse_project_config(data, str(path))
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(config.to_yaml(), encoding="utf-8")
        return cls._connect(folder, config)

    @classmethod
    def open(cls, path: str | Path = ".") -> Project:
        """Open the project in a folder (or given its YAML file)."""
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        return cls._connect(folder, load_project_config(p))

    @classmethod
    def _connect(cls, folder: Path, config: ProjectConfig) -> Project:
        db = Database(config.resolved_storage(folder.resolve()))
        with db.session() as s:
            project_id = ensure_project(s, config)
        return cls(folder, config, db, project_id)

    def close(self) -> None:
        self.db.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- ingestion -----------------------------------------------------------------------
    @property
    def quarantine_dir(self) -> Path:
        return self.folder / "quarantine"

    def ingest(self, source: str | Path | Reader, *, progress: bool = False) -> IngestReport:
        """Ingest a CSV, TSV, JSONL or Parquet file, a folder of images, or any ``Reader``."""
        reader = (
            source
            if hasattr(source, "records")
            else reader_for(source, max_image_bytes=self.config.ingest.max_image_bytes)
        )
        return ingest(
            self.db,
            self.id,
            self.config,
            reader,
            quarantine_dir=self.quarantine_dir,
            progress=progress,
        )

    def ingest_sql(self, url: str, query: str, *, progress: bool = False) -> IngestReport:
        """Ingest the rows of a SQL query against any SQLAlchemy URL."""
        return self.ingest(SqlReader(url, query), progress=progress)

    # -- reading -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counts per state, per final label (and who decided it), and quarantine reasons."""
        with self.db.engine.connect() as conn:
            states = counts_by_state(conn, self.id)
            fl = FinalLabelRow.__table__
            label_rows = conn.execute(
                select(fl.c.labels, fl.c.source_kind).where(fl.c.project_id == self.id)
            ).all()
            q = QuarantineRow.__table__
            quarantine = (
                conn.execute(select(q.c.reason).where(q.c.project_id == self.id)).scalars().all()
            )
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
        }

    def labeler_usage(self) -> dict[str, dict[str, float]]:
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
            .where(t.c.project_id == self.id)
            .group_by(s.c.labeler)
        )
        with self.db.engine.connect() as conn:
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

    def items(self, state: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Items as a DataFrame (id, content, content_hash, state, priority, source, position, meta)."""
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
            .where(t.c.project_id == self.id)
            .order_by(t.c.id)
        )
        if state is not None:
            stmt = stmt.where(t.c.state == state)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._frame(stmt)

    def _frame(self, stmt: Any) -> pd.DataFrame:
        """The rows of a SELECT as a DataFrame, with its columns even when there are no rows."""
        with self.db.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(stmt).mappings().all(), columns=list(stmt.selected_columns.keys())
            )

    def quarantine(self) -> pd.DataFrame:
        """Rows that could not become items: source, position, reason, raw text."""
        t = QuarantineRow.__table__
        stmt = select(t.c.source, t.c.position, t.c.reason, t.c.raw).where(
            t.c.project_id == self.id
        )
        with self.db.engine.connect() as conn:
            return pd.DataFrame(
                conn.execute(stmt.order_by(t.c.id)).mappings().all(),
                columns=["source", "position", "reason", "raw"],
            )

    def next_for_review(self, limit: int = 50) -> pd.DataFrame:
        with self.db.engine.connect() as conn:
            return pd.DataFrame(next_for_review(conn, self.id, limit))

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(ItemRow).where(ItemRow.project_id == self.id)
            ).scalar_one()

    # -- labels --------------------------------------------------------------------------
    def check_labels(self, labels: Sequence[str]) -> list[str]:
        """Refuse labels outside the taxonomy (and several labels on a single-label task)."""
        allowed = set(self.config.label_names)
        unknown = [label for label in labels if label not in allowed]
        if unknown:
            raise LabelError(
                f"label {unknown[0]!r} is not in the taxonomy of project {self.config.name!r} "
                f"(labels: {', '.join(self.config.label_names)})"
            )
        if not labels:
            raise LabelError("no label given")
        if self.config.task == "single_label" and len(labels) != 1:
            raise LabelError(
                f"project {self.config.name!r} is single-label; got {len(labels)} labels"
            )
        return list(dict.fromkeys(labels))

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
    def suggest(self, *, limit: int | None = None, llm: Any = None, progress: bool = False) -> Any:
        """Run the machine labelers over items without suggestions (a ``SuggestReport``).

        ``llm`` is an optional expensive labeler (any ``Labeler``) asked only where the cascade
        policy says it pays; by default the one configured under ``labelers.llm``, if enabled.
        """
        from labelloop.pipeline.annotate import suggest

        if llm is None and self.config.labelers.llm.enabled:
            from labelloop.pipeline.llm import project_llm_labeler

            llm = project_llm_labeler(self)
        return suggest(self, limit=limit, expensive=llm, progress=progress)

    def route(self) -> Any:
        """Auto-label what meets the precision target; queue the rest (a ``RouteReport``)."""
        from labelloop.pipeline.annotate import route

        return route(self)

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
        """A reviewer's answer on a leased item (labels checked against the taxonomy)."""
        return self.queue.submit(
            item_id, annotator, self.check_labels(labels), time_spent_ms=time_spent_ms
        )

    def skip(self, item_id: int, *, annotator: str) -> None:
        self.queue.skip(item_id, annotator)

    def undo(self, *, annotator: str) -> dict[str, Any] | None:
        """Take back the reviewer's last answer; the item is leased to them again."""
        return self.queue.undo(annotator)

    # -- moving labels in and out ------------------------------------------------------------
    def export(self, path: str | Path, fmt: str | None = None, **options: Any) -> Any:
        """Final labels with provenance to CSV, JSONL or Parquet, or Label Studio JSON
        (``fmt="label-studio"``). Returns a summary (rows, columns, per source kind)."""
        from labelloop.export import export_label_studio, export_labels

        if fmt == "label-studio":
            return export_label_studio(self, path, **options)
        return export_labels(self, path, fmt, **options)

    def import_label_studio(self, path: str | Path, **options: Any) -> Any:
        """Tasks, annotations and predictions from Label Studio's JSON (or JSONL) export."""
        from labelloop.export import import_label_studio

        return import_label_studio(self, path, **options)

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
        e, h = EventRow.__table__, HumanLabelRow.__table__
        with self.db.engine.connect() as conn:
            audits = conn.execute(
                select(e.c.item_id, e.c.payload).where(
                    e.c.project_id == self.id, e.c.kind == "audit"
                )
            ).all()
            ids = [a[0] for a in audits]
            answers: dict[int, list[str]] = {}
            for start in range(0, len(ids), 900):
                rows = conn.execute(
                    select(h.c.item_id, h.c.labels)
                    .where(h.c.item_id.in_(ids[start : start + 900]), h.c.action == "label")
                    .order_by(h.c.id)
                )
                for item_id, labels in rows:
                    answers.setdefault(item_id, list(labels))  # the first person's answer
        multi = self.config.task == "multi_label"
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

    def gold_answers(self) -> dict[int, str]:
        """Items with a known answer: imported labels, and the input's label field when
        ``review.gold_from_label_field`` is on (single-label tasks)."""
        out: dict[int, str] = {}
        fl = self.final_labels()
        if not fl.empty:
            imported = fl[fl["source_kind"] == "import"]
            out.update(
                {
                    int(i): ls[0]
                    for i, ls in zip(imported["item_id"], imported["labels"], strict=True)
                }
            )
        field = self.config.label_field
        if self.config.review.gold_from_label_field and field:
            allowed = set(self.config.label_names)
            items = self.items()
            for i, meta in zip(items["id"], items["meta"], strict=True):
                value = (meta or {}).get(field)
                if value in allowed:
                    out.setdefault(int(i), value)
        return out

    def gold_scores(self) -> pd.DataFrame:
        """Each reviewer's accuracy on the gold items they answered, with a Wilson interval."""
        from labelloop.quality.gold import score_against_gold

        h, t = HumanLabelRow.__table__, ItemRow.__table__
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(h.c.item_id, h.c.annotator, h.c.labels)
                .join(t, t.c.id == h.c.item_id)
                .where(t.c.project_id == self.id, h.c.action == "gold")
            ).all()
        df = pd.DataFrame(
            [{"item_id": r[0], "annotator_id": r[1], "label": r[2][0]} for r in rows if r[2]],
            columns=["item_id", "annotator_id", "label"],
        )
        scores = score_against_gold(df, self.gold_answers())
        return scores.reset_index().rename(columns={"annotator_id": "annotator"})

    def labeler_bias(self) -> pd.DataFrame:
        """Each machine labeler's spread over the labels next to people's (skew, one-label answers)."""
        from labelloop.pipeline.checks import labeler_bias

        return labeler_bias(self)

    def label_issues(self) -> pd.DataFrame:
        """Labels flagged as probably wrong (sent to a second reviewer), with the reason."""
        e, t = EventRow.__table__, ItemRow.__table__
        stmt = (
            select(e.c.item_id, e.c.payload, e.c.created_at, t.c.content, t.c.state)
            .join(t, t.c.id == e.c.item_id)
            .where(e.c.project_id == self.id, e.c.kind == "label_issue")
            .order_by(e.c.id.desc())
        )
        with self.db.engine.connect() as conn:
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

    def suggestions(self, labeler: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Machine suggestions, one row each, oldest first: optionally of one labeler only and
        at most ``limit`` rows. ``probs`` holds every label's probability."""
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
            .where(it.c.project_id == self.id)
            .order_by(s.c.id)
        )
        if labeler is not None:
            stmt = stmt.where(s.c.labeler == labeler)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._frame(stmt)

    def final_labels(self) -> pd.DataFrame:
        """Every final label with its provenance: one row per item."""
        fl = FinalLabelRow.__table__
        it = ItemRow.__table__
        stmt = (
            select(
                it.c.id.label("item_id"),
                it.c.content,
                it.c.content_hash,
                it.c.source,
                it.c.position,
                it.c.media_path,
                it.c.meta,
                fl.c.labels,
                fl.c.source_kind,
                fl.c.source_name,
                fl.c.source_version,
                fl.c.confidence,
                fl.c.decided_at,
            )
            .join(fl, fl.c.item_id == it.c.id)
            .where(fl.c.project_id == self.id)
            .order_by(it.c.id)
        )
        return self._frame(stmt)
