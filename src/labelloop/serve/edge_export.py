"""Export a trained model as an edge bundle: ONNX files a device runs with ``labelloop.edge``.

The bundle (format in ``labelloop.edge.bundle``) holds the int8 MiniLM embedding model and its
tokenizer (text projects; a model trained with ``embedding.char_ngrams`` has its n-grams
hashed on the device by ``labelloop.edge.char_ngrams``), ``head.onnx`` (the preparation +
estimator pipeline), the labels in probability order, the confidence thresholds below which an
answer needs a person, and ``manifest.json`` with every file's size and SHA-256.

How the head is made: skl2onnx converts the estimator; the preparation in front of it is
written here as a small ONNX graph (column picks, median imputation with missing indicators,
Tukey clipping, standard scaling) from the fitted transformers' learned numbers. skl2onnx
cannot convert the preparation itself: its custom steps (``AddFeatures``, the
``_to_numbers`` function transformer, ``OutlierClipper``) have no converters, and its
ColumnTransformer selects by column name, which skl2onnx maps to one ONNX input per column
(384 inputs for a text model). The two graphs are merged into one ``head.onnx``, so the device
feeds one float tensor. Table projects with number columns only are exported head only;
category, date or text columns (one-hot, tf-idf) are refused for now, as are image projects.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from labelloop.core.errors import LabelloopError
from labelloop.edge.bundle import (
    EMBEDDER_FILE,
    FORMAT,
    FORMAT_VERSION,
    HEAD_FILE,
    LABELS_FILE,
    MANIFEST,
    THRESHOLDS_FILE,
    TOKENIZER_FILE,
    file_entry,
)
from labelloop.mlops.predictor import Predictor

NOTICE_FILE = "NOTICE.md"
HEAD_INPUT = "features"
HEAD_PROBABILITIES = "probabilities"
EDGE_EXTRA = "pip install 'labelloop[edge]'"
# The only embedder a device runs: the default, local, int8 MiniLM (models of other
# embedders would need that embedder on the device).
EDGE_EMBEDDER = "minilm-l6-v2-int8"

Progress = Callable[[int, int], None]


class EdgeExportError(LabelloopError):
    """The model cannot be exported as an edge bundle (and why)."""


def export_edge(
    model: str | Path | Predictor,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    min_confidence: float = 0.9,
    thresholds: Mapping[str, float] | None = None,
    version: str | int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the edge bundle of ``model`` (a ``model.joblib``, its folder, or a
    :class:`Predictor`) into ``out_dir``; returns the manifest.

    ``labels``: the project's labels; every class of the model must be one (a model trained
    on an older taxonomy is refused). ``min_confidence``: below it an answer needs review;
    ``thresholds`` overrides it per label. ``version``: the model version the manifest names
    (default: the model's dataset version). A non-empty ``out_dir`` is refused unless
    ``overwrite``; nothing is written outside it.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")
    predictor = model if isinstance(model, Predictor) else Predictor.load(model)
    kind = _bundle_kind(predictor)
    classes = predictor.classes
    if labels is not None:
        unknown = [c for c in classes if c not in set(labels)]
        if unknown:
            raise EdgeExportError(
                f"the model answers {unknown}, which are not the project's labels: retrain it"
            )
    per_label = _thresholds(classes, min_confidence, thresholds)
    _check_out_dir(Path(out_dir), overwrite)
    head = convert_head(predictor.pipeline, n_features=len(predictor.columns))  # may refuse
    out = _prepare_out_dir(Path(out_dir), overwrite)
    steps = 6 if kind == "text" else 4
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, steps)

    _write_bytes(out, HEAD_FILE, head.SerializeToString())
    step()
    _write_json(out, LABELS_FILE, classes)
    _write_json(
        out,
        THRESHOLDS_FILE,
        {"min_confidence": float(min_confidence), "per_label": per_label},
    )
    step()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_version": str(
            version if version is not None else predictor.bundle.get("dataset", "")
        ),
        "created_at": datetime.now(UTC).isoformat(),
        "task": predictor.task,
        "featurizer": predictor.featurizer,
        "labels": classes,
        "min_confidence": float(min_confidence),
        "columns": list(predictor.columns) if kind == "table" else [],
        "head": {"input": HEAD_INPUT, "probabilities": HEAD_PROBABILITIES},
    }
    if kind == "text":
        from labelloop.embed.onnx_minilm import MAX_TOKENS, TOKENIZER_PATH, default_model_path

        settings = dict(predictor.bundle.get("embedding") or {})
        _copy(default_model_path(), out, EMBEDDER_FILE)
        step()
        _copy(TOKENIZER_PATH, out, TOKENIZER_FILE)
        notice = TOKENIZER_PATH.parent / NOTICE_FILE
        if notice.is_file():
            _copy(notice, out, NOTICE_FILE)
        step()
        manifest["embedding"] = {
            "model_id": EDGE_EMBEDDER,
            "dim": len(predictor.columns),
            "max_tokens": MAX_TOKENS,
            "batch_size": int(settings.get("batch_size", 64)),
            "max_batch_tokens": int(settings.get("max_batch_tokens", 512)),
            "char_ngrams": edge_char_ngrams(predictor),
        }
    manifest["files"] = {p.name: file_entry(p) for p in sorted(out.iterdir()) if p.name != MANIFEST}
    step()
    _write_json(out, MANIFEST, manifest)
    step()
    return manifest


def _bundle_kind(predictor: Predictor) -> str:
    if predictor.task != "classification":
        raise EdgeExportError(f"edge bundles hold classifiers; this is a {predictor.task} model")
    modality = predictor.bundle.get("modality", "text")
    if modality == "image":
        raise EdgeExportError("image models cannot be exported as edge bundles yet (not supported)")
    if predictor.featurizer == "table":
        return "table"
    edge_char_ngrams(predictor)
    return "text"


def edge_char_ngrams(predictor: Predictor) -> int:
    """The hashed character n-gram features the model reads beside MiniLM (0: none); an
    error for vectors a bundle cannot compute."""
    from labelloop.embed.char_ngrams import char_ngrams_in

    embedder = predictor.featurizer.removeprefix("embedder:")
    inner, n_features = char_ngrams_in(embedder)
    if inner != EDGE_EMBEDDER:
        raise EdgeExportError(
            f"the model was trained on {embedder!r} vectors; edge bundles embed with the "
            f"default {EDGE_EMBEDDER!r} only, with or without character n-grams "
            "(embedding.backend: minilm)"
        )
    return n_features


def _thresholds(
    classes: Sequence[str], default: float, given: Mapping[str, float] | None
) -> dict[str, float]:
    out = dict.fromkeys(classes, float(default))
    for label, value in (given or {}).items():
        if label not in out:
            raise EdgeExportError(f"a threshold for {label!r}, which the model never answers")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"threshold of {label!r} must be within [0, 1], got {value}")
        out[label] = float(value)
    return out


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse ``out`` when its path climbs with ``..``, or it is a file, a link, or holds
    files and ``overwrite`` is off (checked before any work, and again before writing)."""
    if ".." in out.parts:
        raise EdgeExportError(f"{out}: the bundle folder's path must not contain '..'")
    if out.is_symlink():
        raise EdgeExportError(f"{out} is a symbolic link; give a real folder")
    if out.exists() and not out.is_dir():
        raise EdgeExportError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise EdgeExportError(f"{out} is not empty; pass overwrite=True (--overwrite)")
        if (out / ".git").exists() or out.resolve() in (Path.home().resolve(), Path("/")):
            raise EdgeExportError(f"refusing to empty {out}")


def _prepare_out_dir(out: Path, overwrite: bool) -> Path:
    """``out`` made, or emptied (``overwrite``), after :func:`_check_out_dir`."""
    _check_out_dir(out, overwrite)
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _target(out: Path, name: str) -> Path:
    """``out / name``, refused unless it lands directly inside ``out``."""
    target = out / name
    if target.resolve().parent != out.resolve():
        raise EdgeExportError(f"{name!r} would be written outside {out}")
    return target


def _write_bytes(out: Path, name: str, data: bytes) -> None:
    _target(out, name).write_bytes(data)


def _write_json(out: Path, name: str, value: Any) -> None:
    _target(out, name).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", "utf-8")


def _copy(source: Path, out: Path, name: str) -> None:
    shutil.copyfile(source, _target(out, name))


# -- the head: preparation graph + skl2onnx estimator -------------------------------------


def convert_head(pipeline: Any, n_features: int) -> Any:
    """One ONNX model: ``features`` (float, n x ``n_features``) -> ``probabilities``."""
    try:
        import onnx
        from onnx import compose, helper
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise EdgeExportError(f"exporting an edge bundle needs skl2onnx: {EDGE_EXTRA}") from None
    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) != 2:
        raise EdgeExportError("not a labelloop model pipeline (prepare, model)")
    prepare, estimator = steps[0][1], steps[1][1]
    graph = _PrepGraph()
    prepared, width = graph.emit(prepare, HEAD_INPUT, n_features)
    try:
        head = convert_sklearn(
            estimator,
            initial_types=[("prepared", FloatTensorType([None, width]))],
            options={id(estimator): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises many kinds for what it cannot convert
        raise EdgeExportError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {exc}"
        ) from None
    outputs = [o.name for o in head.graph.output]
    if "probabilities" not in outputs:
        raise EdgeExportError(f"the converted model has no probabilities output ({outputs})")
    prep = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "labelloop_prepare",
            [helper.make_tensor_value_info(HEAD_INPUT, onnx.TensorProto.FLOAT, [None, n_features])],
            [helper.make_tensor_value_info(prepared, onnx.TensorProto.FLOAT, [None, width])],
            initializer=graph.constants,
        ),
        opset_imports=[o for o in head.opset_import if o.domain in ("", "ai.onnx")],
        ir_version=head.ir_version,
    )
    # The preparation's names all start with "prep_" and skl2onnx's never do: no prefixes
    # needed, and the output keeps its name.
    merged = compose.merge_models(
        prep, head, io_map=[(prepared, "prepared")], outputs=[HEAD_PROBABILITIES]
    )
    onnx.checker.check_model(merged)
    return merged


class _PrepGraph:
    """ONNX nodes equivalent to a fitted preparation pipeline over number columns."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"prep_{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name(base)
        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def pick(self, x: str, indices: Sequence[int], width: int) -> str:
        if list(indices) == list(range(width)):
            return x
        return self.node("Gather", [x, self.const("idx", np.asarray(indices, np.int64))], axis=1)

    def emit(self, step: Any, x: str, width: int) -> tuple[str, int]:
        """The output name and width of ``step`` applied to ``x`` (``width`` columns)."""
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        from labelloop.mlops.prepare import AddFeatures, OutlierClipper

        if step is None or (isinstance(step, str) and step == "passthrough"):
            return x, width
        if isinstance(step, Pipeline):
            for _, sub in step.steps:
                x, width = self.emit(sub, x, width)
            return x, width
        if isinstance(step, AddFeatures):
            if step.functions:
                raise EdgeExportError("models with feature functions cannot be exported yet")
            return x, width
        if isinstance(step, FunctionTransformer):
            func = step.func
            if func is None or getattr(func, "__name__", "") == "_to_numbers":
                return x, width  # numbers already: the device sends a float tensor
            raise EdgeExportError(
                f"the preparation step {getattr(func, '__name__', func)!r} cannot be exported "
                "yet: edge bundles take number columns only (no category, date or text columns)"
            )
        if isinstance(step, ColumnTransformer):
            return self._columns(step, x, width)
        if isinstance(step, SimpleImputer):
            return self._impute(step, x, width)
        if isinstance(step, OutlierClipper):
            low = self.const("low", np.asarray(step.low_, np.float32))
            high = self.const("high", np.asarray(step.high_, np.float32))
            return self.node("Min", [self.node("Max", [x, low]), high]), width
        if isinstance(step, StandardScaler):
            if step.with_mean:
                x = self.node("Sub", [x, self.const("mean", np.asarray(step.mean_, np.float32))])
            if step.with_std:
                x = self.node("Div", [x, self.const("scale", np.asarray(step.scale_, np.float32))])
            return x, width
        raise EdgeExportError(
            f"the preparation step {type(step).__name__} cannot be exported yet: edge "
            "bundles take number columns only (no category, date or text columns)"
        )

    def _columns(self, ct: Any, x: str, width: int) -> tuple[str, int]:
        names = [str(c) for c in getattr(ct, "feature_names_in_", range(width))]
        position = {n: i for i, n in enumerate(names)}
        parts: list[tuple[str, int]] = []
        for _, transformer, columns in ct.transformers_:
            if isinstance(transformer, str) and transformer == "drop":
                continue
            indices = [
                position[str(c)] if not isinstance(c, int | np.integer) else int(c)
                for c in (columns if isinstance(columns, list | tuple | np.ndarray) else [columns])
            ]
            if not indices:
                continue
            picked = self.pick(x, indices, width)
            parts.append(self.emit(transformer, picked, len(indices)))
        if not parts:
            raise EdgeExportError("the preparation keeps no columns")
        if len(parts) == 1:
            return parts[0]
        return self.node("Concat", [p for p, _ in parts], axis=1), sum(w for _, w in parts)

    def _impute(self, imputer: Any, x: str, width: int) -> tuple[str, int]:
        from onnx import TensorProto

        missing = imputer.missing_values
        if not (isinstance(missing, float) and np.isnan(missing)):
            raise EdgeExportError(f"an imputer of {missing!r} values cannot be exported")
        stats = np.asarray(imputer.statistics_, dtype=np.float64)
        keep = ~np.isnan(stats)  # sklearn drops columns it learned no value for
        isnan_x = self.node("IsNaN", [x])
        kept = self.pick(x, np.flatnonzero(keep).tolist(), width)
        kept_nan = self.pick(isnan_x, np.flatnonzero(keep).tolist(), width)
        fill = self.const("fill", stats[keep].astype(np.float32))
        filled = self.node("Where", [kept_nan, fill, kept])
        out_width = int(keep.sum())
        indicator = getattr(imputer, "indicator_", None)
        features = list(getattr(indicator, "features_", []) if indicator is not None else [])
        if not features:
            return filled, out_width
        flags = self.node("Cast", [self.pick(isnan_x, features, width)], to=TensorProto.FLOAT)
        return self.node("Concat", [filled, flags], axis=1), out_width + len(features)


# -- which model: the registry's champion, a named version, or the latest trained ---------


def resolve_model(ctx: Any, version: int | None = None) -> tuple[Path, str, str | None]:
    """(model folder, version for the manifest, a note) for the project ``ctx``: registered
    ``version`` if given, else the ``champion``, else the latest trained model (with a note
    saying so)."""
    from labelloop.mlops.train import latest_model
    from labelloop.registry import CHAMPION, open_registry

    if version is not None:
        mv = open_registry(ctx).get(int(version))
        return Path(mv.path), str(mv.version), None
    try:
        champion = open_registry(ctx).by_alias(CHAMPION)
    except LabelloopError as exc:
        champion, why = None, f"the registry did not answer ({exc})"
    else:
        why = "no registered champion"
    if champion is not None:
        return Path(champion.path), str(champion.version), None
    path = latest_model(Path(ctx.folder))
    note = f"{why}: exported the latest trained model, {path.parent.name}"
    return path.parent, path.parent.name, note


def export_project_edge(
    ctx: Any,
    out_dir: str | Path,
    *,
    version: int | None = None,
    min_confidence: float = 0.9,
    thresholds: Mapping[str, float] | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The project's champion (or registered ``version``) as an edge bundle; the manifest,
    with ``note`` when the latest trained model stood in for a missing champion."""
    if ctx.config.modality == "image":
        raise EdgeExportError(
            "image projects cannot be exported as edge bundles yet (not supported)"
        )
    folder, model_version, note = resolve_model(ctx, version)
    manifest = export_edge(
        folder,
        out_dir,
        labels=[label.name for label in ctx.config.labels],
        min_confidence=min_confidence,
        thresholds=thresholds,
        version=model_version,
        overwrite=overwrite,
        progress=progress,
    )
    return {**manifest, "note": note} if note else manifest
