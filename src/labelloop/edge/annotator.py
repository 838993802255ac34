"""``EdgeAnnotator``: a bundle's model answering on the device, every answer kept for sync."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from labelloop.edge.buffer import ResultBuffer
from labelloop.edge.bundle import (
    EMBEDDER_FILE,
    HEAD_FILE,
    LABELS_FILE,
    THRESHOLDS_FILE,
    TOKENIZER_FILE,
    BundleError,
    read_manifest,
)
from labelloop.edge.char_ngrams import with_char_ngrams
from labelloop.edge.sync import sync_buffer
from labelloop.edge.text import TextEmbedder, session_options

DEFAULT_DB = "edge-results.sqlite"


class EdgeAnnotator:
    """Label texts (or, for a table bundle, rows: mappings of column -> number) offline.

    The bundle is checked against its manifest first (``BundleError`` names the bad file).
    ``annotate`` answers and buffers each answer in a SQLite file (default: next to the
    bundle folder, ``<bundle>/../edge-results.sqlite``, so replacing the bundle keeps the
    answers); ``sync`` sends them to the server.
    """

    def __init__(
        self, bundle_dir: str | Path, db_path: str | Path | None = None, *, threads: int = 1
    ) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest = read_manifest(self.bundle_dir)
        self.kind: str = self.manifest["kind"]
        self.model_version = str(self.manifest.get("model_version", ""))
        self.labels: list[str] = self._json(LABELS_FILE)
        thresholds = self._json(THRESHOLDS_FILE)
        self.min_confidence = float(thresholds.get("min_confidence", 0.0))
        self.thresholds: dict[str, float] = {
            label: float(thresholds.get("per_label", {}).get(label, self.min_confidence))
            for label in self.labels
        }
        self.columns: list[str] = list(self.manifest.get("columns") or [])
        self.embedder: TextEmbedder | None = None
        self.char_ngrams = 0  # hashed character n-gram features after the sentence vector
        if self.kind == "text":
            emb = self.manifest.get("embedding", {})
            self.char_ngrams = int(emb.get("char_ngrams", 0))
            self.embedder = TextEmbedder(
                self.bundle_dir / EMBEDDER_FILE,
                self.bundle_dir / TOKENIZER_FILE,
                max_tokens=int(emb.get("max_tokens", 256)),
                batch_size=int(emb.get("batch_size", 64)),
                max_batch_tokens=int(emb.get("max_batch_tokens", 512)),
                threads=threads,
            )
        self.head = ort.InferenceSession(
            str(self.bundle_dir / HEAD_FILE),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self._head_input = self.head.get_inputs()[0].name
        outputs = [o.name for o in self.head.get_outputs()]
        self._head_output = self.manifest.get("head", {}).get("probabilities", outputs[-1])
        if self._head_output not in outputs:
            raise BundleError(f"{self.bundle_dir / HEAD_FILE}: no output {self._head_output!r}")
        self._db_path = (
            Path(db_path) if db_path is not None else self.bundle_dir.parent / DEFAULT_DB
        )
        self._buffer: ResultBuffer | None = None

    def _json(self, name: str) -> Any:
        try:
            return json.loads((self.bundle_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"{self.bundle_dir / name}: not readable JSON ({exc})") from None

    @property
    def buffer(self) -> ResultBuffer:
        """The local SQLite buffer, opened on first use."""
        if self._buffer is None:
            self._buffer = ResultBuffer(self._db_path)
        return self._buffer

    @property
    def device_id(self) -> str:
        return self.buffer.device_id

    # -- answering -----------------------------------------------------------------------

    def features(self, inputs: Sequence[Any]) -> np.ndarray:
        """The head's input: sentence vectors for texts, or a table row's numbers."""
        if self.embedder is not None:
            if isinstance(inputs, str):
                raise TypeError("annotate() takes a list of texts, not one string")
            texts = []
            for i, t in enumerate(inputs):
                if not isinstance(t, str):
                    raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
                texts.append(t)
            vectors = self.embedder.embed(texts)
            if self.char_ngrams:
                return with_char_ngrams(vectors, texts, self.char_ngrams)
            return vectors
        rows = np.empty((len(inputs), len(self.columns)), dtype=np.float32)
        for i, row in enumerate(inputs):
            if not isinstance(row, Mapping):
                raise TypeError(f"rows[{i}] is {type(row).__name__}, expected a mapping")
            rows[i] = [_number(row.get(c)) for c in self.columns]
        return rows

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """Probabilities per label (columns in ``self.labels`` order), shape (n, labels)."""
        if len(inputs) == 0:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        X = self.features(inputs)
        (proba,) = self.head.run([self._head_output], {self._head_input: X})
        return np.asarray(proba, dtype=np.float64)

    def annotate(
        self, texts: Sequence[Any], ids: Sequence[Any] | None = None, *, buffer: bool = True
    ) -> list[dict[str, Any]]:
        """One answer per input: ``label``, ``confidence``, ``probabilities`` (label -> p),
        ``needs_review`` (confidence below the label's threshold) and ``result_id`` (the local
        id; ``buffer=False`` keeps nothing and gives None). Low-confidence answers keep their
        input, so the server can queue it for people."""
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} inputs but {len(ids)} ids")
        proba = self.predict_proba(texts)
        out = []
        for i, p in enumerate(proba):
            best = int(p.argmax())
            label = self.labels[best]
            confidence = float(p[best])
            row: dict[str, Any] = {
                "id": None if ids is None else ids[i],
                "label": label,
                "confidence": confidence,
                "probabilities": {lab: float(v) for lab, v in zip(self.labels, p, strict=True)},
                "needs_review": confidence < self.thresholds[label],
            }
            if row["needs_review"]:
                item = texts[i]
                row["text"] = item if isinstance(item, str) else json.dumps(dict(item))
            out.append(row)
        if buffer:
            result_ids = self.buffer.add(out, self.model_version)
        for i, row in enumerate(out):
            row.pop("text", None)
            row["result_id"] = result_ids[i] if buffer else None
        return out

    def sync(self, url: str, token: str, batch: int = 500, timeout: float = 10) -> dict[str, int]:
        """Send the unsynced answers to ``{url}/api/edge/sync``; counts sent and new."""
        return sync_buffer(self.buffer, url, token, batch=batch, timeout=timeout)

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None

    def __enter__(self) -> EdgeAnnotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{value!r} is not a number") from None
