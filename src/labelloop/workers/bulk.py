"""Bulk annotation of a file: labelers over every row, decisions to Parquet, resumable.

``annotate_file(ctx, INPUT, OUTPUT)`` reads a Parquet, CSV or JSONL file (a local path or any
URI pyarrow's filesystems open: ``s3://``, ``gs://``, ``hdfs://``), cuts it into blocks of
``block_rows`` rows by position, and runs the project's labelers over each block, in a process
pool (``engine="local"``) or a Ray actor pool (``engine="ray"``): the labelers are loaded once
per process or actor. Each finished block is written by the driver as
``OUTPUT/blocks/block-NNNNN.parquet`` and recorded in ``OUTPUT/manifest.json``; a rerun into
the same folder skips the recorded blocks (resume after an interruption).

One rule decides every block: the labelers (the stored model version), the fitted calibrator,
the thresholds and the audit rate are frozen at the first start into ``OUTPUT/rule.joblib``
and reused by a resumed run, so all blocks and both engines decide alike even when the
project's labels change in between. The output carries the rule's model version id.

Workers never write to the store: they embed with the project's embedder without its cache
and return rows to the driver. ``write_store=True`` then ingests the input into the project
and stores each item's suggestions and, for ``auto`` decisions, the machine label.
Not pooled in: the LLM's stored answers (items of a file have none) and the calibration
sample (routing's, for items of the project).

Image projects: a row's path may name a video file; it gives one output row per sampled frame
(``video:`` settings), all with the video's row number (``BlockLabeler._units``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelloop.core.config import ALL_COLUMNS, Modality, parse_project_config
from labelloop.core.errors import IngestError, LabelloopError
from labelloop.core.hashing import content_hash
from labelloop.core.progress import Progress
from labelloop.sources.records import RawRecord
from labelloop.sources.validate import ItemBuilder, RowRejected
from labelloop.store.context import ProjectContext

BLOCK_ROWS = 1000
MANIFEST = "manifest.json"
RULE_FILE = "rule.joblib"
BLOCKS_DIR = "blocks"
IMAGE_PATH_COLUMNS = ("path", "image", "image_path", "file", "filename")
BLOCK_COLUMN = "__labelloop_block"
OUTPUT_ROWS_COLUMN = "__labelloop_output_rows"  # Ray: how many rows a block's output has


# -- the frozen rule ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BulkRule:
    """Everything a worker needs to decide rows alike: the labelers as bytes, the calibrator
    and thresholds fitted at the start, and how to rebuild the embedder."""

    model_version_id: int | None
    model_version: str | None
    label_names: list[str]
    task: str
    labelers: bytes  # labelers.factory.dump_labelers
    calibrator: Any  # routing.calibration.Calibrator, or None (too few human labels)
    thresholds: list[float] | None  # single-label: one per label (None: auto-accept nothing)
    set_threshold: Any  # multi-label: routing.thresholds.SetThreshold, or None
    audit_rate: float
    config: dict[str, Any]  # the project's config, as JSON
    storage_url: str
    project_id: int
    folder: str
    created: float = field(default_factory=time.time)

    def identity(self) -> dict[str, Any]:
        return {
            "model_version_id": self.model_version_id,
            "model_version": self.model_version,
            "calibration": type(self.calibrator).__name__ if self.calibrator else None,
            "thresholds": self.thresholds,
            "set_threshold": getattr(self.set_threshold, "threshold", None),
            "audit_rate": self.audit_rate,
        }


def freeze_rule(ctx: ProjectContext, *, min_support: int = 30) -> BulkRule:
    """The project's current routing rule, fitted once: labelers for the current human labels
    (trained and stored as a model version if they changed), the calibrator and thresholds
    routing would fit now (``annotate.route``), the audit rate."""
    from labelloop.annotate.route import CalibrationSample, _label_thresholds, _set_threshold
    from labelloop.embed.factory import project_embedder
    from labelloop.labelers.factory import current_labelers, dump_labelers

    embedder = project_embedder(ctx)
    labelers, _ = current_labelers(ctx, embedder)
    held_out = labelers.held_out_probs
    calibrator = None
    thresholds: list[float] | None = None
    set_threshold = None
    if len(held_out) >= min_support:
        if ctx.config.task == "multi_label":
            set_threshold = _set_threshold(ctx, labelers, held_out, min_support)
        else:
            sample = CalibrationSample.draw(ctx, len(labelers.humans))
            calibrator, fitted, _ = _label_thresholds(ctx, labelers, held_out, min_support, sample)
            thresholds = [float(v) for v in fitted.values]
    stored = labelers.stored
    return BulkRule(
        model_version_id=stored.id if stored else None,
        model_version=stored.version if stored else None,
        label_names=list(labelers.label_names),
        task=str(labelers.task),
        labelers=dump_labelers(labelers),
        calibrator=calibrator,
        thresholds=thresholds,
        set_threshold=set_threshold,
        audit_rate=float(ctx.config.metrics.audit_rate),
        config=ctx.config.model_dump(mode="json"),
        storage_url=ctx.db.url,
        project_id=ctx.id,
        folder=str(ctx.folder.resolve()),
    )


# -- one block ---------------------------------------------------------------------------------
class BlockLabeler:
    """The labelers loaded once (a process of the pool, a Ray actor), applied block by block."""

    def __init__(self, rule: BulkRule) -> None:
        from labelloop.embed.factory import project_embedder
        from labelloop.labelers.factory import load_labelers
        from labelloop.store.db import Database

        self.rule = rule
        config = parse_project_config(rule.config, f"{rule.folder} (bulk rule)")
        self.config = config
        # Read-only: the store is only consulted by a tabular featurizer for its spec.
        db = Database(rule.storage_url, migrate=False)
        ctx = ProjectContext(Path(rule.folder), config, db, rule.project_id)
        cached = project_embedder(ctx)
        self.embedder = getattr(cached, "embedder", cached)  # no cache writes from workers
        self.labelers = load_labelers(rule.labelers, self.embedder)
        self.builder = ItemBuilder(config)
        self.image = config.modality == Modality.image
        own = [f for f in config.content_fields if f not in ("text", *ALL_COLUMNS)]
        self.path_columns = [*own, *IMAGE_PATH_COLUMNS]

    def _item(self, position: int, row: dict[str, Any]) -> tuple[str, str, str | None]:
        """(content, content hash, external id) of a row, or RowRejected."""
        if not self.image:
            content, digest, _, external = self.builder(RawRecord(position, fields=row))
            return content, digest, external
        column = next((c for c in self.path_columns if c in row), None)
        value = row.get(column) if column else None
        if not value:
            raise RowRejected("missing content: no image path")
        path = Path(str(value)).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RowRejected(f"unreadable image: {exc.strerror}") from None
        external = row.get(self.config.id_field) if self.config.id_field else None
        return str(path.resolve()), content_hash(data), None if external is None else str(external)

    def _units(
        self, position: int, row: dict[str, Any]
    ) -> Iterator[tuple[str, str | None, str | None, dict[str, Any], str]]:
        """The items of one input row: (content, content hash, external id, video fields,
        rejection reason). One item, or for a video file one per sampled frame (``video:``
        settings; the frames' PNGs under the project's ``media`` folder, as ingest writes
        them, so a frame is the same item either way)."""
        from labelloop.sources.video import VIDEO_SUFFIXES, frame_records

        column = next((c for c in self.path_columns if c in row), None) if self.image else None
        value = row.get(column) if column else None
        if value and Path(str(value)).suffix.lower() in VIDEO_SUFFIXES:
            video = Path(str(value)).expanduser()
            external = row.get(self.config.id_field) if self.config.id_field else None
            if not video.is_file():
                yield "", None, None, {"video": str(video)}, f"unreadable video: no file {video}"
                return
            media = Path(self.rule.folder) / "media"
            for rec in frame_records(video, str(video.resolve()), media, self.config.video):
                where = {"video": str(video.resolve()), **{k: rec.fields.get(k) for k in _FRAME}}
                if rec.error is not None:
                    yield "", None, None, where, rec.error
                    continue
                _, digest, _, _ = self.builder(rec)
                ext = None if external is None else f"{external}#frame={rec.fields['frame']}"
                yield str(rec.media_path), digest, ext, where, ""
            return
        try:
            content, digest, external = self._item(position, row)
        except RowRejected as exc:
            yield "", None, None, {}, str(exc)
        else:
            yield content, digest, external, {}, ""

    def __call__(self, frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
        """Decide every row of ``frame`` (rows ``first_row``, ``first_row + 1``, ...); a
        video row gives one output row per sampled frame, all with the video's row number."""
        row_of: list[int] = []
        contents: list[str] = []
        hashes: list[str | None] = []
        externals: list[str | None] = []
        rejected: list[str] = []
        videos: list[dict[str, Any]] = []
        for k, row in enumerate(frame.to_dict("records")):
            row = {c: v for c, v in row.items() if c != BLOCK_COLUMN and not _missing(v)}
            for content, digest, external, video, reason in self._units(first_row + k + 1, row):
                row_of.append(first_row + k)
                contents.append(content)
                hashes.append(digest)
                externals.append(external)
                videos.append(video)
                rejected.append(reason)
        n = len(row_of)
        ok = np.array([not r for r in rejected], dtype=bool)
        names = self.rule.label_names
        probs = np.full((n, len(names)), np.nan)
        if ok.any():
            vectors = self.embedder.embed([c for c, good in zip(contents, ok, strict=True) if good])
            _, pooled, _ = self.labelers.probs(vectors)
            probs[ok] = pooled
        decided = decide(self.rule, probs[ok], [h for h in hashes if h is not None])
        columns: dict[str, Any] = {
            "row": np.asarray(row_of, dtype=np.int64),
            "external_id": pd.array(externals, dtype="string"),
            "content_hash": pd.array(hashes, dtype="string"),
        }
        if self.image:  # a video's frames: the video, frame number and time
            columns["video"] = pd.array([v.get("video") for v in videos], dtype="string")
            columns["frame"] = pd.array([v.get("frame") for v in videos], dtype="Int64")
            columns["seconds"] = pd.array([v.get("seconds") for v in videos], dtype="Float64")
        dtypes = {"label": "string", "confidence": "float64", "decision": "string"}
        for column in ("label", "confidence", "decision", "audit", "reason"):
            filler: Any = {"label": None, "confidence": np.nan, "audit": False}.get(column, None)
            values = np.full(n, filler, dtype=object)
            values[ok] = decided[column]
            values[~ok] = filler if column != "decision" else "review"
            if column == "reason":
                values[~ok] = [f"rejected: {r}" for r in rejected if r]
            columns[column] = (
                values.astype(bool)
                if column == "audit"
                else pd.array(values, dtype=dtypes.get(column, "string"))
            )
        for j, name in enumerate(names):
            columns[f"p_{name}"] = probs[:, j]
        columns["model_version_id"] = pd.array([self.rule.model_version_id] * n, dtype="Int64")
        # One construction: a column set one by one cost ~0.3 ms each, most of a 1-row block.
        out = pd.DataFrame(columns)
        return out


_FRAME = ("frame", "seconds")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def decide(rule: BulkRule, probs: np.ndarray, keys: list[str]) -> dict[str, np.ndarray]:
    """The rule's decisions for pooled probabilities: top label (for multi-label, the set
    joined by ``|``), confidence, decision, audit flag and reason, per row. ``keys`` (content
    hashes) make the audit draw a function of the item, whatever block it is in."""
    from labelloop.routing.router import route, route_sets

    n, names = len(probs), rule.label_names
    if n == 0:
        empty = np.zeros(0, dtype=object)
        return {k: empty for k in ("label", "confidence", "decision", "audit", "reason")}
    if rule.task == "multi_label":
        threshold = rule.set_threshold if rule.set_threshold is not None else np.inf
        sets = route_sets(probs, threshold, audit_rate=rule.audit_rate, keys=keys)
        labels = ["|".join(names[j] for j in np.flatnonzero(r)) for r in sets.labels]
        limit = np.full(n, getattr(rule.set_threshold, "threshold", np.inf))
        confidence, auto, audit = sets.confidence, sets.auto, sets.audit
    else:
        calibrated = rule.calibrator.transform(probs) if rule.calibrator is not None else probs
        values = np.array(rule.thresholds if rule.thresholds else [np.inf] * len(names))
        d = route(calibrated, values, audit_rate=rule.audit_rate, keys=keys)
        labels = [names[int(j)] for j in d.label]
        limit = values[d.label]
        confidence, auto, audit = d.confidence, d.auto, d.audit
    reasons = []
    for k in range(n):
        if not np.isfinite(limit[k]):
            reasons.append("no threshold: too few human labels to measure precision")
        elif audit[k]:
            reasons.append(f"audit: confidence {confidence[k]:.3f} >= {limit[k]:.3f}, sampled")
        elif auto[k]:
            reasons.append(f"confidence {confidence[k]:.3f} >= threshold {limit[k]:.3f}")
        else:
            reasons.append(f"confidence {confidence[k]:.3f} < threshold {limit[k]:.3f}")
    return {
        "label": np.array(labels, dtype=object),
        "confidence": np.asarray(confidence, dtype=object),
        "decision": np.where(auto, "auto", "review").astype(object),
        "audit": np.asarray(audit, dtype=object),
        "reason": np.array(reasons, dtype=object),
    }


# -- reading -----------------------------------------------------------------------------------
def _filesystem(path: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path on it (local paths stay local)."""
    from pyarrow import fs

    if "://" in path and not path.startswith("file://"):
        return fs.FileSystem.from_uri(path)
    return fs.LocalFileSystem(), str(Path(path.removeprefix("file://")).expanduser().resolve())


def read_input(path: str | Path) -> pd.DataFrame:
    """A Parquet, CSV/TSV or JSONL file as a frame (CSV cells as text, as ingest reads them)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    text = str(path)
    filesystem, where = _filesystem(text)
    suffix = Path(where).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(where, filesystem=filesystem).to_pandas()
        if suffix in (".csv", ".tsv"):
            with filesystem.open_input_stream(where) as stream:
                sep = "\t" if suffix == ".tsv" else ","
                return pd.read_csv(stream, dtype=str, keep_default_na=False, sep=sep)
        if suffix in (".jsonl", ".ndjson", ".json"):
            with filesystem.open_input_stream(where) as stream:
                return pj.read_json(stream).to_pandas()
    except FileNotFoundError:
        raise IngestError(f"{text}: no such file") from None
    except (OSError, ValueError) as exc:
        raise IngestError(f"{text}: cannot read it: {exc}") from None
    raise IngestError(
        f"{text}: unknown file type {suffix or '(none)'}; use .parquet, .csv or .jsonl"
    )


def check_columns(config_json: dict[str, Any], columns: list[str], source: str) -> None:
    """The content columns the project reads must be there (named with the file)."""
    config = parse_project_config(config_json, source)
    if config.modality == Modality.image:
        own = [f for f in config.content_fields if f not in ("text", *ALL_COLUMNS)]
        wanted = [*own, *IMAGE_PATH_COLUMNS]
        if not any(c in columns for c in wanted):
            raise IngestError(
                f"{source}: no image path column (one of {', '.join(wanted)}); "
                f"the columns are {', '.join(columns)}"
            )
        return
    if config.content_fields == ALL_COLUMNS:
        return
    missing = [f for f in config.content_fields if f not in columns]
    if missing:
        raise IngestError(
            f"{source}: no column {', '.join(repr(m) for m in missing)} (the project's "
            f"content_fields); the columns are {', '.join(columns)}"
        )


# -- the run -----------------------------------------------------------------------------------
@dataclass
class BulkReport:
    rows: int = 0
    blocks: int = 0
    done_now: int = 0  # blocks labeled by this call
    skipped: int = 0  # blocks a previous run had finished (resume)
    auto: int = 0
    review: int = 0
    rejected: int = 0
    model_version_id: int | None = None
    engine: str = ""
    workers: int = 0
    output: str = ""
    stored: int = 0  # items whose suggestions went into the store (write_store)
    seconds: float = 0.0
    rule: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_path(output: Path, block: int) -> Path:
    return output / BLOCKS_DIR / f"block-{block:05d}.parquet"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class _Manifest:
    """OUTPUT/manifest.json: what the run is and which blocks are finished."""

    def __init__(self, output: Path, header: dict[str, Any]) -> None:
        self.path = output / MANIFEST
        self.header = header
        self.done: set[int] = set()
        if self.path.exists():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            for key in ("input", "rows", "block_rows"):
                if old.get(key) != header[key]:
                    raise LabelloopError(
                        f"{output}: holds a run with {key}={old.get(key)!r}, not "
                        f"{header[key]!r}; use another output folder (or delete this one)"
                    )
            self.done = {int(b) for b in old.get("done", [])}
            self.done = {b for b in self.done if block_path(output, b).exists()}

    def mark(self, block: int) -> None:
        self.done.add(block)
        self.save()

    def save(self) -> None:
        data = {**self.header, "done": sorted(self.done)}
        text = json.dumps(data, indent=1)
        _write_atomic(self.path, lambda p: p.write_text(text, encoding="utf-8"))


def _rule_for(ctx: ProjectContext, output: Path) -> BulkRule:
    """The frozen rule of this output folder: the saved one on a resume, else fitted now."""
    import joblib

    path = output / RULE_FILE
    if path.exists():
        rule = joblib.load(path)
        if rule.project_id != ctx.id or rule.storage_url != ctx.db.url:
            raise LabelloopError(f"{output}: was written for another project; use another folder")
        return rule
    rule = freeze_rule(ctx)
    _write_atomic(path, lambda p: joblib.dump(rule, p))
    return rule


def annotate_file(
    ctx: ProjectContext,
    input: str | Path,
    output: str | Path,
    *,
    engine: str = "local",
    block_rows: int = BLOCK_ROWS,
    workers: int | None = None,
    address: str | None = None,
    write_store: bool = False,
    id_column: str | None = None,
    progress: Progress | None = None,
) -> BulkReport:
    """Label every row of ``input`` with the project's labelers and frozen routing rule;
    write one Parquet file per block under ``output`` (resumable, see the module doc).

    ``engine``: "local" (a process pool of ``workers`` processes; 0 runs in this process) or
    "ray" (an actor pool of ``workers`` actors on a local Ray with ``workers`` CPUs, or on the
    cluster at ``address``). ``id_column``: the input's id column for ``external_id``
    (default: the project's ``id_field``, else a column ``id`` if there is one).
    ``progress(rows_done, rows_total)`` after each block."""
    started = time.perf_counter()
    if engine not in ("local", "ray"):
        raise LabelloopError(f"engine {engine!r}: expected 'local' or 'ray'")
    if block_rows < 1:
        raise LabelloopError(f"block_rows={block_rows}: expected at least 1")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0 or (engine == "ray" and workers < 1):
        raise LabelloopError(f"workers={workers}: expected at least {1 if engine == 'ray' else 0}")
    frame = read_input(input)
    check_columns(ctx.config.model_dump(mode="json"), [str(c) for c in frame.columns], str(input))
    id_column = id_column or ctx.config.id_field or ("id" if "id" in frame.columns else None)
    if id_column is not None and id_column not in frame.columns:
        raise IngestError(
            f"{input}: no id column {id_column!r}; the columns are "
            f"{', '.join(str(c) for c in frame.columns)}"
        )
    out = Path(output)
    (out / BLOCKS_DIR).mkdir(parents=True, exist_ok=True)
    n_blocks = max(1, math.ceil(len(frame) / block_rows)) if len(frame) else 0
    header = {"input": str(input), "rows": len(frame), "block_rows": block_rows, "blocks": n_blocks}
    manifest = _Manifest(out, header)
    rule = _rule_for(ctx, out)
    manifest.header["rule"] = rule.identity()
    manifest.save()
    report = BulkReport(
        rows=len(frame),
        blocks=n_blocks,
        skipped=len(manifest.done),
        model_version_id=rule.model_version_id,
        engine=engine,
        workers=workers,
        output=str(out),
        rule=rule.identity(),
    )
    todo = [b for b in range(n_blocks) if b not in manifest.done]
    rows_done = sum(min(block_rows, len(frame) - b * block_rows) for b in manifest.done)

    def finished(block: int, result: pd.DataFrame) -> None:
        nonlocal rows_done
        result = _normalise(result)
        if id_column is not None:
            ids = frame[id_column].iloc[result["row"].to_numpy()]
            at = result["frame"] if "frame" in result else pd.Series(pd.NA, index=result.index)
            result["external_id"] = pd.array(
                [
                    None if _missing(v) else str(v) if pd.isna(f) else f"{v}#frame={f}"
                    for v, f in zip(ids, at, strict=True)
                ],
                dtype="string",
            )
        _write_atomic(block_path(out, block), lambda p: result.to_parquet(p, index=False))
        manifest.mark(block)
        report.done_now += 1
        rows_done += int(result["row"].nunique())  # input rows (a video gives many)
        if progress is not None:
            progress(rows_done, len(frame))

    if progress is not None:
        progress(rows_done, len(frame))
    parts = ((b, frame.iloc[b * block_rows : (b + 1) * block_rows]) for b in todo)
    if engine == "ray":
        _run_ray(rule, parts, finished, workers=workers, block_rows=block_rows, address=address)
    else:
        _run_local(rule, parts, finished, workers=workers, block_rows=block_rows)
    results = read_output(out)
    report.auto = int((results["decision"] == "auto").sum())
    report.review = int((results["decision"] == "review").sum())
    report.rejected = int(results["content_hash"].isna().sum())
    if write_store:
        report.stored = store_results(ctx, input, results, rule)
    report.seconds = time.perf_counter() - started
    return report


def _normalise(result: pd.DataFrame) -> pd.DataFrame:
    """One schema whatever the engine (Ray hands frames back with Arrow-backed dtypes)."""
    types: dict[str, str] = {
        "row": "int64",
        "external_id": "string",
        "content_hash": "string",
        "label": "string",
        "confidence": "float64",
        "decision": "string",
        "audit": "bool",
        "reason": "string",
        "model_version_id": "Int64",
    }
    types |= {c: "float64" for c in result.columns if c.startswith("p_")}
    if "frame" in result:  # image projects: a video's frames
        types |= {"video": "string", "frame": "Int64", "seconds": "Float64"}
    out = result.reset_index(drop=True)
    for column, dtype in types.items():
        if dtype == "string":
            out[column] = pd.array(
                [None if _missing(v) or v is pd.NA else str(v) for v in out[column]],
                dtype="string",
            )
        else:
            out[column] = out[column].astype(dtype)
    return out


def read_output(output: str | Path) -> pd.DataFrame:
    """Every finished block of a bulk run, in row order."""
    out = Path(output)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    blocks = [pd.read_parquet(block_path(out, b)) for b in sorted(manifest["done"])]
    if not blocks:
        return pd.DataFrame(columns=["row", "content_hash", "decision"])
    return pd.concat(blocks, ignore_index=True).sort_values("row", ignore_index=True)


# -- the local engine: a process pool ----------------------------------------------------------
_WORKER: BlockLabeler | None = None


def _init_worker(rule: BulkRule) -> None:
    global _WORKER
    _WORKER = BlockLabeler(rule)


def _label_in_worker(frame: pd.DataFrame, first_row: int) -> pd.DataFrame:
    assert _WORKER is not None, "the pool's initializer did not run"
    return _WORKER(frame, first_row)


def _run_local(
    rule: BulkRule,
    parts: Iterator[tuple[int, pd.DataFrame]],
    finished: Callable[[int, pd.DataFrame], None],
    *,
    workers: int,
    block_rows: int,
) -> None:
    """Blocks through a process pool (spawned: onnxruntime's threads do not survive a fork),
    at most two blocks in flight per process so an interruption loses little work."""
    if workers == 0:
        labeler = BlockLabeler(rule)
        for block, part in parts:
            finished(block, labeler(part, block * block_rows))
        return
    pool = ProcessPoolExecutor(workers, get_context("spawn"), _init_worker, (rule,))
    pending: dict[Future, int] = {}
    try:
        for block, part in parts:
            while len(pending) >= 2 * workers:
                _drain(pending, finished)
            pending[pool.submit(_label_in_worker, part, block * block_rows)] = block
        while pending:
            _drain(pending, finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _drain(pending: dict[Future, int], finished: Callable[[int, pd.DataFrame], None]) -> None:
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for future in sorted(done, key=lambda f: pending[f]):
        block = pending.pop(future)
        finished(block, future.result())


# -- into the store ----------------------------------------------------------------------------
def store_results(
    ctx: ProjectContext, input: str | Path, results: pd.DataFrame, rule: BulkRule
) -> int:
    """Ingest ``input`` into the project, then store the run's suggestions (state
    ``suggested``) for items still ``new``, and the machine label of each ``auto`` decision
    that was not sampled for an audit (routing's next pass queues the rest). Returns how many
    items got suggestions."""
    from labelloop.core.types import Item
    from labelloop.embed.factory import project_embedder
    from labelloop.labelers.factory import load_labelers
    from labelloop.sources.ingest import ingest
    from labelloop.sources.readers import reader_for
    from labelloop.store.item_lookup import item_ids_by_hash
    from labelloop.store.labels import add_suggestions, set_final_labels
    from labelloop.store.models import ItemState
    from labelloop.store.reads import set_state

    ingest(ctx.db, ctx.id, ctx.config, reader_for(input), quarantine_dir=ctx.quarantine_dir)
    if "frame" in results:  # a table lists videos; ingest reads each, frame by frame
        from labelloop.sources.video import VideoReader

        framed = results[results["frame"].notna() & results["content_hash"].notna()]
        for video in framed["video"].dropna().unique():
            reader = VideoReader(Path(str(video)), ctx.folder / "media", ctx.config.video)
            ingest(ctx.db, ctx.id, ctx.config, reader, quarantine_dir=ctx.quarantine_dir)
    good = results[results["content_hash"].notna()].drop_duplicates("content_hash")
    with ctx.db.engine.connect() as conn:
        found = item_ids_by_hash(conn, ctx.id, good["content_hash"], state=ItemState.new)
    good = good[good["content_hash"].isin(found)]
    if good.empty:
        return 0
    labelers = load_labelers(rule.labelers, project_embedder(ctx))
    names = rule.label_names
    probs = good[[f"p_{n}" for n in names]].to_numpy(dtype=float)
    ids = [found[h] for h in good["content_hash"]]
    hashes = list(good["content_hash"])
    chunk = 100
    for start in range(0, len(ids), chunk):
        part = slice(start, start + chunk)
        items = [
            Item(content="", content_hash=h, id=i)
            for i, h in zip(ids[part], hashes[part], strict=True)
        ]
        # The ensemble's suggestions (the output keeps pooled probabilities, not each member's).
        rows = labelers.ensemble.suggestions_from_proba(items, probs[part], 0.0)
        sub = good.iloc[part]
        machine = [
            {
                "project_id": ctx.id,
                "item_id": int(i),
                "labels": str(lab).split("|"),
                "source_kind": "machine",
                "source_name": "ensemble",
                "source_version": labelers.ensemble.version,
                "confidence": float(c),
            }
            for i, lab, c, d, a in zip(
                ids[part],
                sub["label"],
                sub["confidence"],
                sub["decision"],
                sub["audit"],
                strict=True,
            )
            if d == "auto" and not a
        ]
        with ctx.db.short_write() as conn:
            add_suggestions(conn, rows)
            set_state(conn, ids[part], ItemState.suggested)
            set_final_labels(conn, machine)
    return len(ids)


# -- the Ray engine: an actor pool -------------------------------------------------------------
class _RayBlocks:
    """A Ray Data actor: loads the labelers once, labels each block of a batch on its own (a
    batch may hold several blocks), so the output is the local engine's block for block."""

    def __init__(self, rule: BulkRule, block_rows: int) -> None:
        self.labeler = BlockLabeler(rule)
        self.block_rows = block_rows

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = []
        for block, part in batch.groupby(BLOCK_COLUMN, sort=True):
            result = self.labeler(part.drop(columns=[BLOCK_COLUMN]), int(block) * self.block_rows)
            result[BLOCK_COLUMN] = int(block)
            result[OUTPUT_ROWS_COLUMN] = len(result)  # a video row gives many output rows
            out.append(result)
        return pd.concat(out, ignore_index=True)


def _run_ray(
    rule: BulkRule,
    parts: Iterator[tuple[int, pd.DataFrame]],
    finished: Callable[[int, pd.DataFrame], None],
    *,
    workers: int,
    block_rows: int,
    address: str | None,
) -> None:
    """Blocks through a Ray Data actor pool of ``workers`` actors. Local Ray (started here,
    with ``workers`` CPUs) unless ``address`` names a cluster. One pandas frame per block
    (``from_pandas`` makes each its own Ray block), no repartition; each actor asks for less
    than a whole CPU, so on 2 CPUs the pool never starves Ray's own tasks (FIELD-NOTES)."""
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError:
        raise LabelloopError(
            "the Ray engine needs Ray: pip install 'labelloop[ray]' (or use --engine local)"
        ) from None
    frames = [part.assign(**{BLOCK_COLUMN: block}) for block, part in parts]
    if not frames:
        return
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            options["num_cpus"] = workers
        ray.init(address=address, **options)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_pandas(frames).map_batches(
            _RayBlocks,
            fn_constructor_args=(rule, block_rows),
            batch_size=None,
            batch_format="pandas",
            compute=ActorPoolStrategy(size=min(workers, len(frames))),
            num_cpus=0.9,
        )
        seen: dict[int, list[pd.DataFrame]] = {}
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for block, part in batch.groupby(BLOCK_COLUMN, sort=True):
                seen.setdefault(int(block), []).append(part.drop(columns=[BLOCK_COLUMN]))
                got = pd.concat(seen[int(block)], ignore_index=True)
                if len(got) == int(got[OUTPUT_ROWS_COLUMN].iloc[0]):
                    got = got.drop(columns=[OUTPUT_ROWS_COLUMN])
                    finished(int(block), got.sort_values("row", kind="stable", ignore_index=True))
                    del seen[int(block)]
    finally:
        if started_here:
            ray.shutdown()
