"""A client for any OpenAI-compatible chat endpoint: OpenAI, Gemini, vLLM, Ollama, llama.cpp."""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import openai

from labelloop.labelers.llm.client import (
    ChatRequest,
    ChatResult,
    PermanentLLMError,
    TokenLogprob,
    TransientLLMError,
)

# How the JSON schema travels. OpenAI, Gemini and vLLM take the standard "json_schema";
# llama.cpp's Python server answered HTTP 500 to it but honours {"type": "json_object", "schema"};
# some servers take only a bare "json_object"; "none" sends plain chat and our validator judges
# the answer. "auto" tries them in that order and keeps the first the server accepts.
StructuredOutput = Literal["auto", "json_schema", "json_object_schema", "json_object", "none"]
FALLBACK_ORDER: tuple[StructuredOutput, ...] = (
    "json_schema",
    "json_object_schema",
    "json_object",
    "none",
)
# Statuses with which servers refuse a response_format they do not know (llama.cpp's Python
# server: 500 "Input should be 'text' or 'json_object'"; others 400 or 422).
REFUSAL_STATUSES = frozenset({400, 422, 500, 501})


class OpenAICompatClient:
    """One chat completion per call through the ``openai`` library (its own retries switched off).

    The API key is read from the environment variable named by ``api_key_env`` when the client is
    made; it is never written anywhere. Local servers need no key: leave ``api_key_env`` as None.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        structured_output: StructuredOutput = "auto",
        supports_logprobs: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise PermanentLLMError(
                    f"environment variable {api_key_env!r} (the API key for {base_url}) is not set"
                )
        else:
            key = "not-needed"
        if structured_output not in (*FALLBACK_ORDER, "auto"):
            raise ValueError(
                f"structured_output={structured_output!r}: expected auto or one of "
                f"{', '.join(FALLBACK_ORDER)}"
            )
        self.base_url = base_url
        self.model = model
        # The mode in use; "auto" until a request with some mode is accepted (then that mode).
        self.structured_output: StructuredOutput = structured_output
        self._auto = structured_output == "auto"
        self._lock = threading.Lock()
        self.supports_logprobs = supports_logprobs
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key, max_retries=0, timeout=timeout_s
        )

    @classmethod
    def for_llama_cpp_server(cls, base_url: str, model: str = "local", **kwargs: Any):
        """A client set up for ``python -m llama_cpp.server`` (schema inside json_object)."""
        kwargs.setdefault("structured_output", "json_object_schema")
        return cls(base_url, model, **kwargs)

    @staticmethod
    def _response_format(
        mode: StructuredOutput, schema: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if schema is None or mode == "none":
            return None
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        if mode == "json_object_schema":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_object"}

    def chat(self, request: ChatRequest) -> ChatResult:
        """One answer. In ``auto`` mode, a refusal of the structured-output format moves on to
        the next (``FALLBACK_ORDER``) at once; the first mode accepted is kept for later calls."""
        if request.schema is None or not self._auto:
            mode = "none" if request.schema is None else self.structured_output
            return self._chat(request, mode)
        refusals: list[str] = []
        for mode in FALLBACK_ORDER:
            try:
                result = self._chat(request, mode)
            except _FormatRefused as exc:
                refusals.append(f"{mode}: {exc}")
                continue
            with self._lock:
                if self._auto:
                    self.structured_output, self._auto = mode, False
            return result
        raise PermanentLLMError(
            f"{self.base_url}: the server refused every structured-output mode "
            f"({'; '.join(refusals)}); check base_url and model, or set "
            "labelers.llm.structured_output"
        )

    def _chat(self, request: ChatRequest, mode: StructuredOutput) -> ChatResult:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        fmt = self._response_format(mode, request.schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if request.logprobs and self.supports_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.timeout_s is not None:
            kwargs["timeout"] = request.timeout_s
        try:
            resp = self._client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise TransientLLMError(f"{self.base_url}: no answer within the timeout") from exc
        except openai.APIConnectionError as exc:
            raise TransientLLMError(f"{self.base_url}: connection failed ({exc})") from exc
        except openai.APIStatusError as exc:
            message = f"{self.base_url}: HTTP {exc.status_code}: {_short(exc.message)}"
            if self._auto and exc.status_code in REFUSAL_STATUSES:
                raise _FormatRefused(f"HTTP {exc.status_code}: {_short(exc.message, 120)}") from exc
            if exc.status_code == 429 or exc.status_code >= 500:
                raise TransientLLMError(message) from exc
            raise PermanentLLMError(message) from exc
        if not resp.choices:
            raise TransientLLMError(f"{self.base_url}: the answer held no choices")
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        return ChatResult(
            text=text,
            logprobs=_logprobs_of(choice),
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )


class _FormatRefused(Exception):
    """While the mode is still being found: the server refused this request's format."""


def _logprobs_of(choice: Any) -> list[TokenLogprob] | None:
    lp = getattr(choice, "logprobs", None)
    content = getattr(lp, "content", None) if lp is not None else None
    if not content:
        return None
    out: list[TokenLogprob] = []
    for entry in content:
        top = {alt.token: float(alt.logprob) for alt in (entry.top_logprobs or [])}
        top.setdefault(entry.token, float(entry.logprob))
        out.append(TokenLogprob(entry.token, float(entry.logprob), top))
    return out


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
