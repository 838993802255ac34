"""Optional backend: any sentence-transformers model.

Install it with ``pip install 'labelloop[sentence-transformers]'``.

``sentence_transformers`` is imported only when this embedder is built, so labelloop works
without it. A model given by name is fetched from the Hugging Face hub by sentence-transformers
itself; pass a local folder to stay offline.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.embed.onnx_minilm import check_texts, l2_normalise

INSTALL_HINT = "pip install 'labelloop[sentence-transformers]'"


def _import_sentence_transformers() -> Any:
    try:
        return importlib.import_module("sentence_transformers")
    except ImportError as exc:
        raise ImportError(
            f"SentenceTransformerEmbedder needs the sentence-transformers package: {INSTALL_HINT}"
        ) from exc


class SentenceTransformerEmbedder:
    """Vectors from a ``sentence_transformers.SentenceTransformer``, L2-normalised float32."""

    def __init__(
        self,
        model_name_or_path: str,
        device: str | None = None,
        batch_size: int = 32,
        model_id: str | None = None,
        **model_kwargs: Any,
    ) -> None:
        module = _import_sentence_transformers()
        self.model = module.SentenceTransformer(model_name_or_path, device=device, **model_kwargs)
        self.batch_size = batch_size
        self.model_id = model_id or f"st:{model_name_or_path}"
        # renamed get_embedding_dimension in newer sentence-transformers releases
        get_dim = getattr(self.model, "get_sentence_embedding_dimension", None)
        self.dim = int(get_dim() if get_dim else self.model.get_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True
        )
        return l2_normalise(np.asarray(vectors, dtype=np.float32))
