"""Data preparation as a scikit-learn pipeline (saved with the model), and the data-quality
report read before training.

Column kinds: *number*, *category*, *date*, *text* (inferred from a DataFrame unless given).

- number: missing values imputed with the median (a flag column keeps that it was missing),
  outliers clipped to the Tukey fences [q1 - k*IQR, q3 + k*IQR] fitted on train, then scaled;
- category: missing values become the constant "(missing)", then one-hot (rare values ignored);
- date: year, month and day of week, then as numbers;
- text: TF-IDF of words (a text *column* of a table; a text project's items are embedded with
  the project's embedder before they get here, as number columns);
- feature functions: ``{name: f(frame) -> Series}`` added as number columns first (module-level
  functions, so the pipeline pickles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FunctionTransformer, Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

KINDS = ("number", "category", "date", "text")
NUMBER_SHARE = 0.9  # share of present values that parse for a number (or date) column
TEXT_MIN_WORDS = 4  # a category column whose values average more words than this is text
FENCE = 3.0  # Tukey's "far out" fence: clipped beyond q1 - 3 IQR and q3 + 3 IQR

FeatureFunctions = Mapping[str, Callable[[pd.DataFrame], pd.Series]]


def infer_kinds(df: pd.DataFrame, given: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each column's kind: ``given`` first, then number (90% parse), date (90% parse as dates
    and the values hold a '-' or '/'), text (long values), else category."""
    kinds: dict[str, str] = {}
    for name in df.columns:
        if given and name in given:
            kind = given[name]
            if kind not in KINDS:
                raise ValueError(f"column {name!r}: kind {kind!r} is not one of {KINDS}")
            kinds[name] = kind
            continue
        col = df[name]
        present = col.dropna()
        present = present[present.astype(str).str.strip() != ""]
        if present.empty:
            kinds[name] = "category"
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().mean() >= NUMBER_SHARE:
            kinds[name] = "number"
            continue
        text = present.astype(str)
        if text.str.contains(r"[-/]").mean() >= NUMBER_SHARE:
            dates = pd.to_datetime(text, errors="coerce", format="mixed")
            if dates.notna().mean() >= NUMBER_SHARE:
                kinds[name] = "date"
                continue
        words = text.str.split().map(len).mean()
        kinds[name] = "text" if words > TEXT_MIN_WORDS else "category"
    return kinds


class OutlierClipper(BaseEstimator, TransformerMixin):
    """Clip each column to its Tukey fences fitted on the training rows; ``clipped_`` counts
    the training values clipped per column (the preparation report)."""

    def __init__(self, k: float = FENCE) -> None:
        self.k = k

    def fit(self, X: Any, y: Any = None) -> OutlierClipper:
        X = np.asarray(X, dtype=float)
        q1, q3 = np.nanpercentile(X, [25, 75], axis=0)
        iqr = q3 - q1
        self.low_, self.high_ = q1 - self.k * iqr, q3 + self.k * iqr
        self.clipped_ = ((X < self.low_) | (X > self.high_)).sum(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.clip(np.asarray(X, dtype=float), self.low_, self.high_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


def _to_numbers(X: Any) -> np.ndarray:
    return pd.DataFrame(X).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)


def _date_parts(X: Any) -> np.ndarray:
    frame = pd.DataFrame(X)
    parts = []
    for name in frame.columns:
        d = pd.to_datetime(frame[name].astype("string"), errors="coerce", format="mixed")
        parts += [d.dt.year, d.dt.month, d.dt.day_of_week]
    return pd.concat(parts, axis=1).to_numpy(dtype=float)


def _as_text(X: Any) -> np.ndarray:
    return pd.Series(np.asarray(X).ravel()).fillna("").astype(str).to_numpy()


def _as_strings(X: Any) -> np.ndarray:
    frame = pd.DataFrame(X).astype(object)
    return frame.where(frame.notna(), np.nan).astype(object).to_numpy()


class AddFeatures(BaseEstimator, TransformerMixin):
    """User-defined feature functions: each ``name: f(frame) -> Series`` becomes a column."""

    def __init__(self, functions: FeatureFunctions | None = None) -> None:
        self.functions = functions

    def fit(self, X: pd.DataFrame, y: Any = None) -> AddFeatures:
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for name, fn in (self.functions or {}).items():
            out[name] = pd.to_numeric(pd.Series(fn(X), index=X.index), errors="coerce")
        return out


def number_pipeline(clip: bool = True) -> Pipeline:
    steps: list[tuple[str, Any]] = [
        ("to_numbers", FunctionTransformer(_to_numbers, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
    ]
    if clip:
        steps.append(("clip", OutlierClipper()))
    steps.append(("scale", StandardScaler()))
    return Pipeline(steps)


def build_preprocessor(
    kinds: Mapping[str, str], features: FeatureFunctions | None = None, *, clip: bool = True
) -> Pipeline:
    """The preparation pipeline for a frame with these column kinds (plus feature functions,
    which count as number columns)."""
    by_kind: dict[str, list[str]] = {k: [] for k in KINDS}
    for name, kind in kinds.items():
        by_kind[kind].append(name)
    by_kind["number"] += list(features or {})
    parts: list[tuple[str, Any, Any]] = []
    if by_kind["number"]:
        parts.append(("number", number_pipeline(clip), by_kind["number"]))
    if by_kind["category"]:
        category = Pipeline(
            [
                ("to_strings", FunctionTransformer(_as_strings, feature_names_out="one-to-one")),
                ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                (
                    "onehot",
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5),
                ),
            ]
        )
        parts.append(("category", category, by_kind["category"]))
    if by_kind["date"]:
        date = Pipeline(
            [
                ("parts", FunctionTransformer(_date_parts)),
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
            ]
        )
        parts.append(("date", date, by_kind["date"]))
    for name in by_kind["text"]:
        text = Pipeline(
            [
                ("as_text", FunctionTransformer(_as_text)),
                ("tfidf", TfidfVectorizer(min_df=2, max_features=5000, sublinear_tf=True)),
            ]
        )
        parts.append((f"text_{name}", text, [name]))
    if not parts:
        raise ValueError("no columns to prepare")
    columns = ColumnTransformer(parts, sparse_threshold=0.0)
    return Pipeline([("features", AddFeatures(features)), ("columns", columns)])


def preparation_report(pipeline: Pipeline) -> dict[str, Any]:
    """What a fitted preparation did to number columns: imputed medians and clipped counts."""
    columns: ColumnTransformer = pipeline.named_steps["columns"]
    if "number" not in columns.named_transformers_:
        return {"numbers": []}
    numbers: Pipeline = columns.named_transformers_["number"]
    names = list(columns.transformers_[0][2])
    imputer: SimpleImputer = numbers.named_steps["impute"]
    clipper = numbers.named_steps.get("clip")
    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"column": name, "missing_strategy": "median"}
        row["median"] = float(imputer.statistics_[i])
        if clipper is not None:
            row["clipped"] = int(clipper.clipped_[i])
            row["fences"] = [float(clipper.low_[i]), float(clipper.high_[i])]
        rows.append(row)
    return {"numbers": rows}


@dataclass
class QualityReport:
    """Before training: what is missing, odd, unbalanced, duplicated or leaking."""

    rows: int
    missing_share: dict[str, float] = field(default_factory=dict)
    outliers: dict[str, int] = field(default_factory=dict)
    class_balance: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0  # rows equal to an earlier row (features only)
    conflicting_duplicates: int = 0  # ... of them with a different label
    leakage: dict[str, int] = field(default_factory=dict)  # "train/test": rows in both

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing_share": self.missing_share,
            "outliers": self.outliers,
            "class_balance": self.class_balance,
            "duplicates": self.duplicates,
            "conflicting_duplicates": self.conflicting_duplicates,
            "leakage": self.leakage,
        }


def quality_report(
    df: pd.DataFrame,
    splits: pd.Series | None = None,
    labels: pd.Series | None = None,
    *,
    kinds: Mapping[str, str] | None = None,
    fence: float = FENCE,
) -> QualityReport:
    """Missing share per column, outliers per number column (beyond the Tukey fences), class
    balance, exact duplicate rows and leakage (the same row in two splits)."""
    kinds = dict(kinds) if kinds is not None else infer_kinds(df)
    report = QualityReport(rows=len(df))
    blank = df.apply(lambda c: c.isna() | (c.astype(str).str.strip() == ""))
    report.missing_share = {str(c): round(float(blank[c].mean()), 4) for c in df.columns}
    for name, kind in kinds.items():
        if kind != "number":
            continue
        x = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
        if np.isnan(x).all():
            continue
        q1, q3 = np.nanpercentile(x, [25, 75])
        iqr = q3 - q1
        report.outliers[str(name)] = int(((x < q1 - fence * iqr) | (x > q3 + fence * iqr)).sum())
    if labels is not None:
        share = labels.value_counts(normalize=True)
        report.class_balance = {str(k): round(float(v), 4) for k, v in share.items()}
    keys = pd.util.hash_pandas_object(df.astype(str), index=False)
    dup = keys.duplicated()
    report.duplicates = int(dup.sum())
    if labels is not None:
        per_key = pd.Series(np.asarray(labels), index=keys.index).groupby(keys.to_numpy())
        report.conflicting_duplicates = int((per_key.nunique() > 1).sum())
    if splits is not None:
        s = pd.Series(np.asarray(splits), index=keys.index)
        where = s.groupby(keys.to_numpy()).agg(lambda v: tuple(sorted(set(v))))
        for names in where[where.map(len) > 1]:
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    report.leakage[f"{a}/{b}"] = report.leakage.get(f"{a}/{b}", 0) + 1
    return report
