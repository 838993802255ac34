"""The embedder a project's config asks for, wrapped in the store's embedding cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.core.config import ALL_COLUMNS, EmbeddingSettings
from labelloop.core.errors import LabelloopError
from labelloop.embed.base import Embedder
from labelloop.embed.cached import CachedEmbedder
from labelloop.embed.image import ImageEmbedder
from labelloop.embed.tabular import (
    TableFeaturizer,
    TableSpec,
    column_importance,
    fit_table_spec,
    parse_row,
)
from labelloop.store.context import ProjectContext
from labelloop.store.embeddings import StoreEmbeddingCache
from labelloop.store.loop_state import last_event, latest_model_version, save_model_version
from labelloop.store.reads import final_labels_frame, first_contents

TABLE_SPEC_KIND = "table_features"
VIEW_EVENT = "embedding_view"  # the loop chose the project's vectors (char_ngrams: auto)
TABLE_SPEC_SAMPLE = 20_000  # rows the column kinds and statistics are fitted on


def project_embedder(ctx: ProjectContext) -> Embedder:
    """The configured embedder, wrapped in the store's embedding cache.

    With character n-grams, the sentence vectors are cached on their own too, so a project
    that switches views (``embedding.char_ngrams: auto``) only hashes n-grams, not re-embeds."""
    cache = StoreEmbeddingCache(ctx.db)
    if ctx.config.modality == "tabular":
        return CachedEmbedder(StoredTableFeaturizer(ctx), cache)
    cfg = project_embedding_settings(ctx)
    if ctx.config.modality == "text" and cfg.char_ngrams:
        from labelloop.embed.char_ngrams import WithCharNgrams

        assert isinstance(cfg.char_ngrams, int)
        text = CachedEmbedder(_text_embedder(cfg), cache)
        return CachedEmbedder(WithCharNgrams(text, cfg.char_ngrams), cache)
    return CachedEmbedder(settings_embedder(cfg, ctx.config.modality), cache)


def project_embedding_settings(ctx: ProjectContext) -> EmbeddingSettings:
    """The project's embedding settings with ``char_ngrams: auto`` resolved to the view the
    loop last chose (the newest ``embedding_view`` event; 0 until one is chosen)."""
    cfg = ctx.config.embedding
    if cfg.char_ngrams != "auto":
        return cfg
    return cfg.model_copy(update={"char_ngrams": chosen_char_ngrams(ctx)})


def chosen_char_ngrams(ctx: ProjectContext) -> int:
    """The n-gram features of the view ``embedding.char_ngrams: auto`` chose last (0: none)."""
    row = last_event(ctx.db, ctx.id, (VIEW_EVENT,))
    return int((row[2] or {}).get("char_ngrams", 0)) if row is not None else 0


def settings_embedder(cfg: EmbeddingSettings, modality: str = "text") -> Embedder:
    """The embedder ``cfg`` names for text or image items, with no store and no cache: what a
    deployed model (``labelloop.serve``) embeds its inputs with."""
    if modality == "image":
        return ImageEmbedder(cfg.model)
    if modality == "tabular":
        raise LabelloopError("table rows are featurized by the project's table spec, not here")
    text = _text_embedder(cfg)
    # ``auto`` is resolved per project (``project_embedding_settings``); unresolved, it means
    # what a project starts with: no n-grams (a deployed model records the resolved number).
    if cfg.char_ngrams and cfg.char_ngrams != "auto":
        from labelloop.embed.char_ngrams import WithCharNgrams

        return WithCharNgrams(text, cfg.char_ngrams)
    return text


def _text_embedder(cfg: EmbeddingSettings) -> Embedder:
    if cfg.backend == "minilm":
        from labelloop.embed.onnx_minilm import MiniLMEmbedder

        return MiniLMEmbedder(
            intra_op_num_threads=cfg.threads,
            batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
        )
    if cfg.backend == "openai":
        from labelloop.embed.openai_compat import OpenAIEmbedder

        options: dict[str, Any] = {"batch_size": cfg.batch_size}
        if cfg.base_url:
            options["base_url"] = cfg.base_url
        if cfg.api_key_env:
            options["api_key_env"] = cfg.api_key_env
        return OpenAIEmbedder(cfg.model or "text-embedding-3-small", **options)
    from labelloop.embed.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(cfg.model or "all-MiniLM-L6-v2", batch_size=cfg.batch_size)


class StoredTableFeaturizer:
    """The project's :class:`TableFeaturizer`, its spec read (or fitted) on first use: a
    worker may start before the first table is ingested."""

    def __init__(self, ctx: ProjectContext) -> None:
        self._ctx = ctx
        self._inner: TableFeaturizer | None = None

    @property
    def featurizer(self) -> TableFeaturizer:
        if self._inner is None:
            self._inner = TableFeaturizer(project_table_spec(self._ctx))
        return self._inner

    @property
    def model_id(self) -> str:
        return self.featurizer.model_id

    @property
    def dim(self) -> int:
        return self.featurizer.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.featurizer.embed(texts)


def project_table_spec(ctx: ProjectContext) -> TableSpec:
    """The project's table features: fitted once on the first rows (no labels involved) and
    kept in the store, so every process and every later call embeds rows the same way."""
    stored = latest_model_version(ctx.db, ctx.id, TABLE_SPEC_KIND, with_model=True)
    if stored is not None and stored.model is not None:
        return TableSpec.from_json(stored.model.decode("utf-8"))
    contents = first_contents(ctx.db, ctx.id, TABLE_SPEC_SAMPLE)
    if not contents:
        raise LabelloopError(
            "a tabular project needs its rows before its features: ingest a table first"
        )
    cfg = ctx.config
    columns = None if cfg.content_fields == ALL_COLUMNS else cfg.content_fields
    spec = fit_table_spec((parse_row(c) for c in contents), columns, kinds=cfg.column_kinds or None)
    save_model_version(
        ctx.db,
        ctx.id,
        kind=TABLE_SPEC_KIND,
        version=spec.digest,
        algorithm="median/IQR scaling + one-hot",
        metrics={"columns": spec.describe(), "rows": len(contents)},
        trained_on=[],
        model=spec.to_json().encode("utf-8"),
        training_key=spec.digest,
    )
    return spec


def project_column_order(ctx: ProjectContext, max_rows: int = 5000) -> list[str]:
    """A tabular project's columns, those that best separate people's labels first
    (``column_importance`` over up to ``max_rows`` human labels; the file's order before any)."""
    spec = project_table_spec(ctx)
    humans = final_labels_frame(ctx.db, ctx.id, ("human",)).tail(max_rows)
    rows = [parse_row(c) for c in humans["content"]]
    labels = [ls[0] if len(ls) else "" for ls in humans["labels"]]
    return [name for name, _ in column_importance(spec, rows, labels)]
