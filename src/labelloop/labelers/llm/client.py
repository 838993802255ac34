"""The ChatClient protocol every LLM backend implements, and the errors it may raise.

A client sends one chat request and returns the answer's text, the top log-probabilities of each
generated token where the backend gives them, and the token usage. Retries, caching and rate
limits live in the labeler, not here: a client makes exactly one attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from labelloop.core.errors import LabelloopError

Message = dict[str, Any]


class LLMError(LabelloopError):
    """A request to an LLM failed."""


class TransientLLMError(LLMError):
    """Worth retrying: connection refused or reset, timeout, HTTP 429 or 5xx."""


class PermanentLLMError(LLMError):
    """Not worth retrying: bad request, wrong model name, missing key (HTTP 4xx other than 429)."""


@dataclass(slots=True)
class TokenLogprob:
    """One generated token, its log-probability and the most likely alternatives at its place."""

    token: str
    logprob: float
    top: dict[str, float]


@dataclass(slots=True)
class ChatResult:
    text: str
    logprobs: list[TokenLogprob] | None = None
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class ChatRequest:
    """What the labeler asks for. ``schema`` is a JSON schema the answer must follow."""

    messages: list[Message]
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    logprobs: bool = False
    top_logprobs: int = 10
    seed: int | None = None
    timeout_s: float | None = None


@runtime_checkable
class ChatClient(Protocol):
    """One attempt at one chat completion; raises TransientLLMError or PermanentLLMError."""

    model: str
    supports_logprobs: bool

    def chat(self, request: ChatRequest) -> ChatResult: ...


@runtime_checkable
class LabelScorer(Protocol):
    """A client that can score candidate answers directly (in-process models).

    ``score_labels`` returns the log-probability of each candidate following the prompt plus
    ``answer_prefix`` (as constrained decoding would choose it) and the prompt's token count, or
    None when it cannot (no chat template, a label with no tokens).
    """

    def score_labels(
        self, messages: list[Message], answer_prefix: str, candidates: Sequence[str]
    ) -> tuple[dict[str, float], int] | None: ...
