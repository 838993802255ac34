"""The project's LLM labeler, built from ``labelers.llm`` in the project file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.core.errors import LabelloopError
from labelloop.core.types import Item, Suggestion
from labelloop.embed.base import Embedder
from labelloop.embed.factory import project_embedder
from labelloop.labelers.llm import (
    FewShotPool,
    LlamaCppClient,
    LLMLabeler,
    OpenAICompatClient,
    Pricing,
    SQLiteCache,
)
from labelloop.store.context import ProjectContext


class ProjectLLM:
    """An ``LLMLabeler`` with an optional call budget and a few-shot pool the loop refreshes.

    The cascade reads ``remaining_calls`` and sends at most that many items (the least certain
    first), with the ``candidate_labels`` the cheap labelers rank highest when the taxonomy is
    larger than that; ``set_few_shot_pool`` replaces the examples after each retrain, so every human
    correction sharpens the prompt.
    """

    def __init__(
        self,
        inner: LLMLabeler,
        max_calls: int | None = None,
        min_examples: int = 0,
        candidate_labels: int = 0,
    ) -> None:
        self.inner = inner
        self.candidate_labels = candidate_labels
        self.labeler_id = inner.labeler_id
        self.max_calls = max_calls
        self.min_examples = min_examples
        self.calls = 0

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def remaining_calls(self) -> int | None:
        """None when unlimited; 0 also while the few-shot pool holds too few examples (a small
        local model answers near chance without them: measured 0.22 vs 0.94 on SMS spam)."""
        pool = getattr(self.inner, "fewshot", None)
        if self.min_examples and (pool is None or len(pool) < self.min_examples):
            return 0
        return None if self.max_calls is None else max(self.max_calls - self.calls, 0)

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        self.calls += len(items)
        return self.inner.suggest(items)

    def suggest_among(
        self, items: Sequence[Item], candidates: Sequence[Sequence[str] | None]
    ) -> list[Suggestion]:
        """Like ``suggest``, showing each item only its candidate labels (see LLMLabeler)."""
        self.calls += len(items)
        return [r.suggestion for r in self.inner.suggest_detailed(items, candidates)]

    def set_few_shot_pool(
        self,
        texts: list[str],
        labels: list[Any],
        vectors: np.ndarray,
        embedder: Embedder | None = None,
    ) -> None:
        """Few-shot examples for later calls. ``embedder``: what ``vectors`` were made with,
        when it may have changed (``embedding.char_ngrams: auto``), so items are embedded
        alike to find their nearest examples."""
        if embedder is not None:
            self.inner.embedder = embedder
        pool = FewShotPool()
        if len(texts):
            pool.add(texts, labels, vectors)
        self.inner.fewshot = pool

    def usage(self) -> Any:
        return self.inner.usage()


def project_llm_labeler(
    ctx: ProjectContext, max_calls: int | None = None, min_examples: int = 0
) -> ProjectLLM:
    """The LLM labeler the project file configures (local SmolLM2 or an OpenAI-compatible API)."""
    cfg = ctx.config.labelers.llm
    if cfg.backend == "openai":
        if not cfg.base_url or not cfg.model:
            raise LabelloopError("labelers.llm: the openai backend needs base_url and model")
        client: Any = OpenAICompatClient(
            cfg.base_url,
            cfg.model,
            api_key_env=cfg.api_key_env,
            structured_output=cfg.structured_output,
            timeout_s=cfg.timeout_s,
        )
    else:
        from labelloop.labelers.llm.local import REBUILD_HINT, llama_crash_reason

        reason = llama_crash_reason()  # a crash in this process would end it without a word
        if reason is not None:
            raise LabelloopError(f"labelers.llm: {reason}; {REBUILD_HINT}")
        client = LlamaCppClient()
    inner = LLMLabeler(
        client,
        ctx.config.labels,
        ctx.config.task,
        embedder=project_embedder(ctx),
        n_shots=cfg.few_shot,
        # The in-process model answers one request at a time (a lock): more threads would only
        # queue, and each answer's recorded latency would include the wait.
        concurrency=cfg.concurrency if cfg.backend == "openai" else 1,
        max_retries=cfg.max_retries,
        timeout_s=cfg.timeout_s,
        cache=SQLiteCache(ctx.folder / "llm-cache.sqlite"),
        pricing=Pricing(cfg.price_in_per_1k, cfg.price_out_per_1k),
    )
    return ProjectLLM(inner, max_calls, min_examples, cfg.candidate_labels)
