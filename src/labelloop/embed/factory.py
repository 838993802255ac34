"""The embedder a project's config asks for, wrapped in the store's embedding cache."""

from __future__ import annotations

from typing import Any

from labelloop.embed.base import Embedder
from labelloop.embed.cached import CachedEmbedder
from labelloop.embed.image import ImageEmbedder
from labelloop.store.context import ProjectContext
from labelloop.store.embeddings import StoreEmbeddingCache


def project_embedder(ctx: ProjectContext) -> Embedder:
    """The configured embedder, wrapped in the store's embedding cache."""
    cfg = ctx.config.embedding
    inner: Embedder
    if ctx.config.modality == "image":
        inner = ImageEmbedder(cfg.model)
    elif cfg.backend == "minilm":
        from labelloop.embed.onnx_minilm import MiniLMEmbedder

        inner = MiniLMEmbedder(
            intra_op_num_threads=cfg.threads,
            batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
        )
    elif cfg.backend == "openai":
        from labelloop.embed.openai_compat import OpenAIEmbedder

        options: dict[str, Any] = {"batch_size": cfg.batch_size}
        if cfg.base_url:
            options["base_url"] = cfg.base_url
        if cfg.api_key_env:
            options["api_key_env"] = cfg.api_key_env
        inner = OpenAIEmbedder(cfg.model or "text-embedding-3-small", **options)
    else:
        from labelloop.embed.sentence_transformers import SentenceTransformerEmbedder

        inner = SentenceTransformerEmbedder(
            cfg.model or "all-MiniLM-L6-v2", batch_size=cfg.batch_size
        )
    return CachedEmbedder(inner, StoreEmbeddingCache(ctx.db))
