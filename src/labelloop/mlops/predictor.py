"""A trained model ready to answer: its saved bundle plus what turns raw inputs into features.

``labelloop train`` saves ``model.joblib``: the preparation + estimator pipeline and how its
features were made (``featurizer``: ``"table"`` for table rows, ``"embedder:<id>"`` for text or
image items embedded first). A :class:`Predictor` rebuilds that featurizer with no store (the
embedder the bundle's settings name, without the project's cache), so the same object serves
the prediction app (``serve``), batch prediction, the MLflow pyfunc (``registry``) and
tests. Pandas in, pandas out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from labelloop.core.config import EmbeddingSettings
from labelloop.core.errors import LabelloopError
from labelloop.embed.base import Embedder

MODEL_FILE = "model.joblib"
TEXT_COLUMNS = ("text", "content")  # where a text input frame's text may be


class Predictor:
    """``predict_frame(rows)`` -> one row per input: ``label`` (or ``value`` for regression),
    ``confidence`` and ``p_<label>`` per class."""

    def __init__(self, bundle: Mapping[str, Any], embedder: Embedder | None = None) -> None:
        missing = {"pipeline", "featurizer", "task"} - set(bundle)
        if missing:
            raise LabelloopError(f"not a labelloop model bundle: it lacks {sorted(missing)}")
        self.bundle = dict(bundle)
        self.pipeline = bundle["pipeline"]
        self.task: str = bundle["task"]
        self.featurizer: str = bundle["featurizer"]
        self.columns: list[str] = list(bundle.get("columns") or [])
        self._embedder = embedder

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder | None = None) -> Predictor:
        """From a ``model.joblib`` file or the folder holding one."""
        p = Path(path)
        if p.is_dir():
            p = p / MODEL_FILE
        if not p.is_file():
            raise LabelloopError(f"no model file at {p}")
        return cls(joblib.load(p), embedder)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in getattr(self.pipeline, "classes_", [])]

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from labelloop.embed.factory import settings_embedder

            settings = EmbeddingSettings(**(self.bundle.get("embedding") or {}))
            self._embedder = settings_embedder(settings, self.bundle.get("modality", "text"))
        return self._embedder

    def features(self, rows: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
        """The pipeline's input for raw rows: a frame (or list of dicts) of table columns, or
        texts (a list of strings, or a frame with a ``text`` or ``content`` column)."""
        if self.featurizer == "table":
            frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
            absent = [c for c in self.columns if c not in frame.columns]
            if absent:
                raise LabelloopError(
                    f"the input lacks column(s) {absent}; the model was trained on {self.columns}"
                )
            return frame[self.columns].reset_index(drop=True)
        texts = _texts(rows)
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if self.columns and vectors.shape[1] != len(self.columns):
            raise LabelloopError(
                f"the embedder gives {vectors.shape[1]} numbers per item, the model expects "
                f"{len(self.columns)}: it was trained with another embedder"
            )
        return pd.DataFrame(vectors, columns=self.columns or None)

    def predict_proba(self, rows: pd.DataFrame | Sequence[Any]) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(self.features(rows)), dtype=float)

    def predict_frame(self, rows: pd.DataFrame | Sequence[Any]) -> pd.DataFrame:
        X = self.features(rows)
        if self.task != "classification":
            return pd.DataFrame({"value": np.asarray(self.pipeline.predict(X), dtype=float)})
        proba = np.asarray(self.pipeline.predict_proba(X), dtype=float)
        classes = self.classes
        best = proba.argmax(axis=1)
        out = pd.DataFrame({"label": [classes[i] for i in best], "confidence": proba.max(axis=1)})
        for j, c in enumerate(classes):
            out[f"p_{c}"] = proba[:, j]
        return out


def _texts(rows: pd.DataFrame | Sequence[Any]) -> list[str]:
    if isinstance(rows, pd.DataFrame):
        for col in TEXT_COLUMNS:
            if col in rows.columns:
                return [str(v) for v in rows[col].tolist()]
        if rows.shape[1] == 1:
            return [str(v) for v in rows.iloc[:, 0].tolist()]
        raise LabelloopError(
            f"a text model needs a 'text' column; the input has {list(rows.columns)}"
        )
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, str):
            out.append(r)
        elif isinstance(r, Mapping) and any(c in r for c in TEXT_COLUMNS):
            out.append(str(next(r[c] for c in TEXT_COLUMNS if c in r)))
        else:
            raise LabelloopError(f"input {i}: a text model takes a string or {{'text': ...}}")
    return out
