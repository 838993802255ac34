"""Features for table rows: scaled numbers, one-hot categories and missing-value flags.

A row of a tabular project is stored as the JSON object of its columns. Embedding that JSON
with a text model made every row look like every other (cosine >= 0.99, issue 12): one human
label was copied to a hundred rows and the student learned little. These features are what a
scikit-learn user would build by hand:

- a *number* column (90% or more of its present values parse as numbers) becomes its value
  centred on the median and divided by the interquartile range (robust to outliers), clipped
  to [-CLIP, CLIP]; a missing value becomes 0 (the median) and sets the column's missing flag;
- a *category* column becomes one-hot over its most frequent values (at most
  ``max_categories``) plus an "other" slot; a missing value sets the missing flag;
- a constant slot makes rows that differ only by scale differ in direction too.

The vector is L2-normalised like every embedder's (the protocol), so the student and the
ensemble see the same kind of input for every modality. Column kinds and statistics
(:class:`TableSpec`) are fitted once on the pool (no labels involved) and kept in the store, so
vectors do not shift as items arrive; the spec's digest is part of ``model_id``, which keys the
embedding cache and the stored models.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

CLIP = 5.0
NUMBER_SHARE = 0.9  # share of present values that must parse as numbers for a number column


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its kind and the statistics its features are made with."""

    name: str
    kind: str  # "number" or "category"
    center: float = 0.0
    scale: float = 1.0
    categories: tuple[str, ...] = field(default=())

    @property
    def width(self) -> int:
        """Slots in the vector: the value (or one per category plus "other"), then missing."""
        return (1 if self.kind == "number" else len(self.categories) + 1) + 1


@dataclass(frozen=True)
class TableSpec:
    """Every column's spec, in a fixed order."""

    columns: tuple[ColumnSpec, ...]

    @property
    def dim(self) -> int:
        return sum(c.width for c in self.columns) + 1

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps([asdict(c) for c in self.columns], sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TableSpec:
        cols = []
        for c in json.loads(text):
            c["categories"] = tuple(c.get("categories", ()))
            cols.append(ColumnSpec(**c))
        return cls(tuple(cols))

    def describe(self) -> list[dict[str, Any]]:
        """One row per column for people: name, kind, centre and scale or categories."""
        return [
            {"column": c.name, "kind": c.kind}
            | (
                {"median": c.center, "iqr": c.scale}
                if c.kind == "number"
                else {"categories": list(c.categories)}
            )
            for c in self.columns
        ]


def as_number(value: Any) -> float | None:
    """A finite float, or None for a missing or non-numeric value."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            return None
    return x if math.isfinite(x) else None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def parse_row(content: str) -> dict[str, Any]:
    """A stored row (the JSON object of its columns) as a dict; a clear error otherwise."""
    try:
        row = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValueError(f"a table row must be a JSON object of its columns: {exc}") from None
    if not isinstance(row, dict):
        raise ValueError(f"a table row must be a JSON object, got {type(row).__name__}")
    return row


def fit_table_spec(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    max_categories: int = 20,
    kinds: Mapping[str, str] | None = None,
) -> TableSpec:
    """Column kinds (inferred unless ``kinds`` says) and statistics from ``rows`` (a sample of
    the pool). ``columns``: which and in what order (default: every key seen, first seen first)."""
    rows = list(rows)
    if not rows:
        raise ValueError("need at least one row to fit table features")
    names = (
        list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    )
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(names))
    if unknown:
        raise ValueError(f"column kinds given for unknown columns: {unknown}")
    specs = []
    for name in names:
        present = [r.get(name) for r in rows if not _is_missing(r.get(name))]
        numbers = [x for x in (as_number(v) for v in present) if x is not None]
        kind = kinds.get(name) or (
            "number" if present and len(numbers) >= NUMBER_SHARE * len(present) else "category"
        )
        if kind not in ("number", "category"):
            raise ValueError(f"column {name!r}: kind must be 'number' or 'category', not {kind!r}")
        if kind == "number":
            if numbers:
                q1, med, q3 = np.percentile(numbers, [25, 50, 75])
                spread = float(q3 - q1) or float(np.std(numbers)) or 1.0
            else:
                med, spread = 0.0, 1.0
            specs.append(ColumnSpec(name, "number", float(med), spread))
        else:
            top = Counter(str(v) for v in present).most_common(max_categories)
            specs.append(ColumnSpec(name, "category", categories=tuple(sorted(v for v, _ in top))))
    return TableSpec(tuple(specs))


def row_features(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The raw (not normalised) feature matrix of ``rows``, shape (len(rows), spec.dim)."""
    out = np.zeros((len(rows), spec.dim), dtype=np.float32)
    offset = 0
    for col in spec.columns:
        index = {v: i for i, v in enumerate(col.categories)}
        for i, row in enumerate(rows):
            value = row.get(col.name)
            if col.kind == "number":
                x = None if _is_missing(value) else as_number(value)
                if x is None:
                    out[i, offset + 1] = 1.0
                else:
                    out[i, offset] = np.clip((x - col.center) / col.scale, -CLIP, CLIP)
            elif _is_missing(value):
                out[i, offset + col.width - 1] = 1.0
            else:
                out[i, offset + index.get(str(value), len(col.categories))] = 1.0
        offset += col.width
    out[:, -1] = 1.0
    return out


class TableFeaturizer:
    """An Embedder for table rows (stored as JSON objects) under a fitted :class:`TableSpec`."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.dim = spec.dim
        self.model_id = f"table-features/{spec.digest}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raw = row_features(self.spec, [parse_row(t) for t in texts])
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)


def column_importance(
    spec: TableSpec, rows: Sequence[Mapping[str, Any]], labels: Sequence[Any]
) -> list[tuple[str, float]]:
    """Columns ranked by how well each one alone separates the labels, most first: a column's
    score is the largest ANOVA F statistic (``sklearn.feature_selection.f_classif``) among its
    feature slots (its value, categories and missing flag). Ties, and every column when fewer
    than two labels or rows exist, keep the spec's order. For showing a reviewer the columns
    that matter first; it is not what the student learns from."""
    from sklearn.feature_selection import f_classif

    y = np.asarray([str(v) for v in labels])
    if len(rows) != len(y):
        raise ValueError(f"rows, labels: {len(rows)} rows for {len(y)} labels")
    names = [c.name for c in spec.columns]
    if len(y) < 3 or len(np.unique(y)) < 2:
        return [(n, 0.0) for n in names]
    X = row_features(spec, rows)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Features .* are constant")  # missing flags
        f, _ = f_classif(X, y)
    f = np.nan_to_num(f, nan=0.0, posinf=1e12)
    scores, offset = [], 0
    for col in spec.columns:
        scores.append(float(f[offset : offset + col.width].max()))
        offset += col.width
    order = sorted(range(len(names)), key=lambda i: (-scores[i], i))
    return [(names[i], scores[i]) for i in order]
