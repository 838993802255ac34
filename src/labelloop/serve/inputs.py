"""Turning a request's payload into rows a :class:`~labelloop.mlops.predictor.Predictor` takes,
and refusing bad ones with a message that says what to fix (the app answers 422).

Two shapes come in: labelloop's own (``{"input": row}`` or ``{"inputs": [rows]}``) and MLflow's
scoring-server payloads (``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``; or a CSV body), so a client written for ``mlflow models serve`` works unchanged.
A row is a dict of table columns for a table model, a string (or ``{"text": ...}``) for a text
model.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from labelloop.core.errors import LabelloopError, quoted
from labelloop.mlops.predictor import TEXT_COLUMNS, Predictor

MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_SCALARS = (str, int, float, bool, type(None))


class InputError(LabelloopError):
    """The request's rows are not what the model takes (the app answers 422)."""


Rows = list[Any] | pd.DataFrame


def predict_rows(payload: Mapping[str, Any]) -> list[Any]:
    """The rows of a ``/predict`` body: exactly one of ``input`` (one row) or ``inputs``."""
    has_one, has_many = "input" in payload, "inputs" in payload
    if has_one == has_many:
        raise InputError('send either "input" (one row) or "inputs" (a list of rows)')
    if has_one:
        return [payload["input"]]
    rows = payload["inputs"]
    if not isinstance(rows, list):
        raise InputError(f'"inputs" is a list of rows, not {type(rows).__name__}')
    return rows


def mlflow_rows(payload: Any, columns: Sequence[str] = ()) -> Rows:
    """The rows of an MLflow scoring payload. ``columns``: the model's table columns, used to
    name the values of ``instances`` / ``inputs`` sent as plain lists (tensor style)."""
    if not isinstance(payload, Mapping):
        raise InputError(f"the body is a JSON object with one of {', '.join(MLFLOW_KEYS)}")
    keys = [k for k in MLFLOW_KEYS if k in payload]
    if len(keys) != 1:
        raise InputError(
            f"the body has exactly one of {', '.join(MLFLOW_KEYS)}; it has "
            f"{keys or sorted(payload)[:5]}"
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        if not isinstance(value, Mapping) or not isinstance(value.get("data"), list):
            raise InputError('"dataframe_split" is {"columns": [...], "data": [[...], ...]}')
        data = value["data"]
        cols = value.get("columns")
        if any(not isinstance(r, list) for r in data):
            raise InputError('every row of "dataframe_split.data" is a list of values')
        if cols is not None and any(len(r) != len(cols) for r in data):
            raise InputError(
                f'every row of "dataframe_split.data" has {len(cols)} values, one per column'
            )
        return pd.DataFrame(data, columns=cols)
    if key == "dataframe_records":
        if not isinstance(value, list):
            raise InputError('"dataframe_records" is a list of {column: value} objects')
        return value
    # instances / inputs: a list of rows, or columns as {name: [values]}.
    if isinstance(value, Mapping):
        lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise InputError(f'"{key}" as columns is {{name: [values]}}, all lists of one length')
        return pd.DataFrame(dict(value))
    if not isinstance(value, list):
        raise InputError(f'"{key}" is a list of rows or an object of columns')
    if value and all(isinstance(r, list) for r in value) and columns:
        if any(len(r) != len(columns) for r in value):
            raise InputError(
                f'each row of "{key}" given as a list has {len(columns)} values, in the '
                f"model's column order {list(columns)}"
            )
        return pd.DataFrame(value, columns=list(columns))
    return value


def csv_rows(body: bytes) -> pd.DataFrame:
    """The rows of a ``text/csv`` body (a header line, then one line per row)."""
    try:
        return pd.read_csv(io.BytesIO(body))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"the CSV body cannot be read: {exc}") from None


def check_rows(rows: Rows, predictor: Predictor, max_rows: int) -> None:
    """Refuse too many rows, and rows of the wrong shape for this model, before it runs."""
    n = len(rows)
    if n == 0:
        raise InputError("no rows to predict")
    if n > max_rows:
        raise InputError(f"{n:,} rows; at most {max_rows:,} per request (model.serving.max_rows)")
    if isinstance(rows, pd.DataFrame):
        if predictor.featurizer == "table":
            absent = [c for c in predictor.columns if c not in rows.columns]
            if absent:
                raise InputError(
                    f"the rows lack column(s) {absent}; the model takes {predictor.columns}"
                )
        return
    if predictor.featurizer == "table":
        _check_table_rows(rows, predictor.columns)
    else:
        _check_text_rows(rows)


def _check_table_rows(rows: Sequence[Any], columns: Sequence[str]) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InputError(
                f"row {i}: a table model takes an object of column values, not "
                f"{type(row).__name__} {quoted(row)}"
            )
        absent = [c for c in columns if c not in row]
        if absent:
            raise InputError(f"row {i} lacks column(s) {absent}; the model takes {list(columns)}")
        for c in columns:
            if not isinstance(row[c], _SCALARS):
                raise InputError(
                    f"row {i}, column {c!r}: a value is a number, string, boolean or null, "
                    f"not {type(row[c]).__name__}"
                )


def _check_text_rows(rows: Sequence[Any]) -> None:
    for i, row in enumerate(rows):
        text = row
        if isinstance(row, Mapping):
            found = [c for c in TEXT_COLUMNS if c in row]
            if not found:
                raise InputError(f"row {i}: a text model takes a string or {{'text': string}}")
            text = row[found[0]]
        if not isinstance(text, str):
            raise InputError(
                f"row {i}: a text model takes a string, not {type(text).__name__} {quoted(text)}"
            )
