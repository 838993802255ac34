"""The LLM labeler: taxonomy prompts to any OpenAI-compatible endpoint or an in-process model.

    client = OpenAICompatClient("https://api.openai.com/v1", "gpt-4o-mini", api_key_env="OPENAI_API_KEY")
    labeler = LLMLabeler(client, config.labels, config.task, concurrency=8, cache=SQLiteCache(path))
    suggestions = labeler.suggest(items); print(labeler.usage())

Offline: ``LLMLabeler(LlamaCppClient(), ...)`` runs the bundled SmolLM2-135M in this process.
"""

from labelloop.labelers.llm.cache import MemoryCache, ResponseCache, cache_key
from labelloop.labelers.llm.client import (
    ChatClient,
    ChatRequest,
    ChatResult,
    LabelScorer,
    LLMError,
    PermanentLLMError,
    TokenLogprob,
    TransientLLMError,
)
from labelloop.labelers.llm.fewshot import FewShotPool
from labelloop.labelers.llm.labeler import LLMLabeler, LLMResult, endpoint_refusal
from labelloop.labelers.llm.local import LlamaCppClient, default_model_path
from labelloop.labelers.llm.openai_compat import OpenAICompatClient
from labelloop.labelers.llm.prompts import PROMPT_VERSION, TEMPLATES
from labelloop.labelers.llm.throttle import (
    CircuitBreaker,
    Pricing,
    RateLimiter,
    RetryPolicy,
    UsageSummary,
)
from labelloop.store.llm_cache import SQLiteCache

__all__ = [
    "PROMPT_VERSION",
    "TEMPLATES",
    "ChatClient",
    "CircuitBreaker",
    "ChatRequest",
    "ChatResult",
    "FewShotPool",
    "LabelScorer",
    "LLMError",
    "LLMLabeler",
    "LLMResult",
    "LlamaCppClient",
    "MemoryCache",
    "OpenAICompatClient",
    "PermanentLLMError",
    "Pricing",
    "RateLimiter",
    "ResponseCache",
    "RetryPolicy",
    "SQLiteCache",
    "TokenLogprob",
    "TransientLLMError",
    "UsageSummary",
    "cache_key",
    "default_model_path",
    "endpoint_refusal",
]
