"""Embeddings from any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, llama.cpp).

It speaks plain HTTP through httpx rather than the ``openai`` client so that every malformed
answer (missing vectors, wrong count, ragged or non-numeric vectors) becomes one clear error
that names the endpoint and the batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from labelloop.core.errors import LabelloopError
from labelloop.embed.onnx_minilm import check_texts, l2_normalise

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class EndpointError(LabelloopError):
    """The embeddings endpoint failed or answered something that is not a set of vectors."""


class OpenAIEmbedder:
    """Vectors from ``POST {base_url}/embeddings``, L2-normalised here whatever the server sends.

    The API key is read from the environment variable named ``api_key_env`` at call time (a local
    server needs none: an unset variable sends no ``Authorization`` header). ``dim`` may be given;
    otherwise it is learnt from the first answer (reading it before any call sends one probe).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        dim: int | None = None,
        model_id: str | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.extra_body = dict(extra_body or {})
        self.model_id = model_id or f"openai-compat:{model}"
        self._dim = dim
        self._client = httpx.Client(timeout=timeout)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in the same order, shape (len(texts), dim)."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        parts = [
            self._embed_batch(texts[start : start + self.batch_size], start)
            for start in range(0, len(texts), self.batch_size)
        ]
        return l2_normalise(np.vstack(parts))

    def close(self) -> None:
        self._client.close()

    def _embed_batch(self, batch: list[str], start: int) -> np.ndarray:
        where = f"{self.url} (items {start}..{start + len(batch) - 1})"
        answer = self._post({"model": self.model, "input": batch, **self.extra_body}, where)
        vectors = parse_embeddings(answer, len(batch), where)
        if self._dim is None:
            self._dim = vectors.shape[1]
        elif vectors.shape[1] != self._dim:
            raise EndpointError(
                f"{where}: vectors have {vectors.shape[1]} dims, expected {self._dim}"
            )
        return vectors

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _post(self, body: dict[str, Any], where: str) -> Any:
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.post(self.url, json=body, headers=self._headers())
            except httpx.TransportError as exc:
                if last:
                    raise EndpointError(f"{where}: request failed: {exc!r}") from exc
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        snippet = response.text[:200]
                        raise EndpointError(f"{where}: answer is not JSON: {snippet!r}") from exc
                if last or response.status_code not in RETRY_STATUS:
                    raise EndpointError(
                        f"{where}: HTTP {response.status_code}: {response.text[:200]!r}"
                    )
            time.sleep(self.retry_backoff * 2**attempt)
        raise AssertionError("unreachable")


def parse_embeddings(answer: Any, expected: int, where: str) -> np.ndarray:
    """The (expected, dim) float32 array in an OpenAI embeddings answer, ordered by ``index``."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list):
        raise EndpointError(f"{where}: answer has no 'data' list: {str(answer)[:200]!r}")
    if len(data) != expected:
        raise EndpointError(f"{where}: answer has {len(data)} vectors for {expected} inputs")
    rows: list[tuple[int, list[float]]] = []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("embedding"), list):
            raise EndpointError(f"{where}: data[{position}] has no 'embedding' list")
        index = entry.get("index", position)
        if not isinstance(index, int) or not 0 <= index < expected:
            raise EndpointError(f"{where}: data[{position}] has invalid index {index!r}")
        rows.append((index, entry["embedding"]))
    rows.sort(key=lambda row: row[0])
    if [index for index, _ in rows] != list(range(expected)):
        raise EndpointError(f"{where}: answer indices are not 0..{expected - 1} exactly once")
    dims = {len(vector) for _, vector in rows}
    if len(dims) != 1 or 0 in dims:
        raise EndpointError(f"{where}: vectors have differing or zero lengths {sorted(dims)}")
    values = np.asarray([vector for _, vector in rows])
    if values.dtype.kind not in "iuf":
        raise EndpointError(f"{where}: vectors hold non-numeric values ({values.dtype})")
    vectors = values.astype(np.float32)
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise EndpointError(f"{where}: vector {bad} holds NaN or infinity")
    return vectors
