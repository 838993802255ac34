"""LLMLabeler: asks a chat model for labels within the taxonomy, with provenance and a confidence.

Per item: look the answer up in the cache; build the prompt (taxonomy in a per-item shuffled
order, or only the candidate labels the caller names plus those of the examples, for large
taxonomies; the most similar human-labeled examples as few-shot turns); ask for a JSON answer the
schema or grammar confines to the taxonomy; validate it and ask once more if it is invalid;
derive probabilities from token log-probabilities or, where the endpoint gives none, from the
agreement of k sampled answers. An answer that stays invalid, or an endpoint that cannot be
reached, yields a Suggestion with ``status="invalid"``: the item goes to a person.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from labelloop.core.config import LabelSpec, ProjectConfig, TaskType
from labelloop.core.types import Item, Suggestion
from labelloop.labelers.llm.answers import (
    Answer,
    InvalidAnswer,
    parse_answer,
    probs_from_logprobs,
    probs_from_votes,
    softmax_over,
)
from labelloop.labelers.llm.cache import MemoryCache, ResponseCache, cache_key
from labelloop.labelers.llm.client import (
    ChatClient,
    ChatRequest,
    ChatResult,
    LabelScorer,
    LLMError,
    Message,
    PermanentLLMError,
    TransientLLMError,
)
from labelloop.labelers.llm.fewshot import FewShotPool
from labelloop.labelers.llm.prompts import (
    PROMPT_VERSION,
    answer_schema,
    build_messages,
    single_answer_prefix,
    template,
)
from labelloop.labelers.llm.throttle import (
    CircuitBreaker,
    Pricing,
    RateLimiter,
    RetryPolicy,
    UsageMeter,
    UsageSummary,
    call_with_retries,
)

# Contextual calibration (Zhao et al., 2021): divide by the probabilities the model gives an item
# with no content, which removes its bias towards one label (SmolLM2 says "spam" to nearly all).
CONTENT_FREE = "N/A"

ConfidenceMode = Literal["auto", "label_scores", "logprobs", "self_consistency"]


Shot = tuple[str, tuple[str, ...]]  # a few-shot example: its text and its label(s)


@dataclass(slots=True)
class LLMResult:
    """A Suggestion with what produced it: label order shown, raw answers, requests made."""

    suggestion: Suggestion
    label_order: list[str]
    raw_answers: list[str] = field(default_factory=list)
    requests: int = 0
    cache_hit: bool = False


@dataclass(slots=True)
class _Spend:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    raw: list[str] = field(default_factory=list)


class LLMLabeler:
    """A Labeler backed by any ChatClient. See the module docstring for what one item goes through.

    ``confidence``: "auto" uses the in-process label scores when the client offers them
    (single-label), else the endpoint's token log-probabilities, else ``k_samples`` sampled
    answers. Multi-label tasks get an independent probability per label.
    ``calibrate=True`` divides log-probability-based answers by the model's answer to a
    content-free item under the same prompt (one extra request per label order and shot set).
    """

    def __init__(
        self,
        client: ChatClient,
        labels: Sequence[LabelSpec | str],
        task: TaskType | str = TaskType.single_label,
        *,
        labeler_id: str | None = None,
        prompt_version: str = PROMPT_VERSION,
        instructions: str = "",
        fewshot: FewShotPool | None = None,
        embedder: Any = None,
        n_shots: int = 4,
        confidence: ConfidenceMode = "auto",
        k_samples: int = 5,
        sample_temperature: float = 0.8,
        top_logprobs: int = 20,
        concurrency: int = 4,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        requests_per_second: float | None = None,
        cache: ResponseCache | None = None,
        pricing: Pricing | None = None,
        seed: int = 0,
        shuffle_labels: bool = True,
        max_item_chars: int = 2000,
        max_tokens: int | None = None,
        calibrate: bool = False,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
    ) -> None:
        self.client = client
        self.specs = [LabelSpec(name=x) if isinstance(x, str) else x for x in labels]
        self.label_names = [spec.name for spec in self.specs]
        if len(self.label_names) < 2 or len(set(self.label_names)) != len(self.label_names):
            raise ValueError(
                f"LLMLabeler needs two or more distinct labels, got {self.label_names}"
            )
        self.multi_label = TaskType(task) == TaskType.multi_label
        self.template = template(prompt_version)
        self.prompt_version = prompt_version
        self.instructions = instructions
        if fewshot is not None and embedder is None:
            raise ValueError("LLMLabeler: a few-shot pool needs an embedder to find similar items")
        self.fewshot = fewshot
        self.embedder = embedder
        self.n_shots = n_shots
        if confidence not in ("auto", "label_scores", "logprobs", "self_consistency"):
            raise ValueError(f"unknown confidence method {confidence!r}")
        self.confidence = confidence
        if k_samples < 2:
            raise ValueError(f"k_samples must be 2 or more, got {k_samples}")
        self.k_samples = k_samples
        self.sample_temperature = sample_temperature
        self.top_logprobs = top_logprobs
        if concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, got {concurrency}")
        self.concurrency = concurrency
        self.retry = RetryPolicy(max_retries=max_retries, backoff_s=backoff_s)
        self.timeout_s = timeout_s
        self.limiter = RateLimiter(requests_per_second)
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s)
        self.cache: ResponseCache = cache if cache is not None else MemoryCache()
        self.meter = UsageMeter(pricing)
        self.seed = seed
        self.shuffle_labels = shuffle_labels
        self.max_item_chars = max_item_chars
        longest = max(len(name) for name in self.label_names)
        self.max_tokens = max_tokens or (
            16 + 8 * len(self.label_names) + longest if self.multi_label else 16 + longest
        )
        self.calibrate = calibrate
        self._content_free_probs: dict[tuple, tuple[dict[str, float], str]] = {}
        self._content_free_lock = threading.Lock()
        self.labeler_id = labeler_id or f"llm:{client.model}"
        self.version = f"{client.model}/{prompt_version}"
        self._fingerprint = hashlib.sha256(
            json.dumps(
                [
                    [spec.model_dump() for spec in self.specs],
                    self.multi_label,
                    instructions,
                    confidence,
                    k_samples,
                    n_shots if fewshot is not None else 0,
                    calibrate,
                ],
                sort_keys=True,
            ).encode("utf-8")
        ).hexdigest()

    @classmethod
    def from_config(cls, config: ProjectConfig, client: ChatClient, **kwargs: Any) -> LLMLabeler:
        return cls(client, config.labels, config.task, **kwargs)

    # ----------------------------------------------------------------- public API
    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        return [result.suggestion for result in self.suggest_detailed(items)]

    def suggest_detailed(
        self, items: Sequence[Item], candidates: Sequence[Sequence[str] | None] | None = None
    ) -> list[LLMResult]:
        """One LLMResult per item, in order. Duplicate content is asked once.

        ``candidates`` (single-label only; one entry per item, None for the whole taxonomy)
        narrows the labels shown for an item to those names plus the labels of its few-shot
        examples: with 77 labels a small model reads a prompt a fraction as long and chooses
        among labels the cheap labelers already rank high. Labels not shown get probability 0.
        """
        if candidates is not None and len(candidates) != len(items):
            raise ValueError(f"{len(candidates)} candidate lists for {len(items)} items")
        shots = self._shots(items)
        shown = [
            self._shown(None if candidates is None else candidates[i], shots[i])
            for i in range(len(items))
        ]
        keys = [
            self._key(item, item_shots, item_shown)
            for item, item_shots, item_shown in zip(items, shots, shown, strict=True)
        ]
        unique: dict[str, int] = {}
        for i, key in enumerate(keys):
            unique.setdefault(key, i)
        todo: list[tuple[str, int]] = []
        done: dict[str, LLMResult] = {}
        for key, i in unique.items():
            cached = self.cache.get(key)
            if cached is not None:
                done[key] = self._from_cache(items[i], cached)
            else:
                todo.append((key, i))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(todo)))) as pool:
            results = pool.map(
                lambda job: self._label_one(items[job[1]], shots[job[1]], shown[job[1]]), todo
            )
            for (key, _), result in zip(todo, results, strict=True):
                done[key] = result
                if result.suggestion.status == "ok":
                    self.cache.put(key, _cache_value(result))
        out, seen = [], set()
        for key, item in zip(keys, items, strict=True):
            if key in seen:
                out.append(self._duplicate(item, done[key]))
            else:
                seen.add(key)
                out.append(_for_item(done[key], item))
        return out

    def usage(self) -> UsageSummary:
        return self.meter.summary()

    def label_order(self, content_hash: str, shown: Sequence[str] | None = None) -> list[str]:
        """The order the labels are shown in for this content: shuffled, seeded, reproducible."""
        order = list(self.label_names if shown is None else shown)
        if self.shuffle_labels:
            random.Random(f"{self.seed}:{content_hash}").shuffle(order)
        return order

    # ----------------------------------------------------------------- one item
    def _shown(self, candidates: Sequence[str] | None, shots: list[Shot]) -> list[str]:
        """The labels one item's prompt shows, in taxonomy order."""
        if candidates is None or self.multi_label:
            return self.label_names
        unknown = sorted(set(candidates) - set(self.label_names))
        if unknown:
            raise ValueError(f"candidate labels not in the taxonomy: {unknown}")
        wanted = set(candidates) | {label for _, labels in shots for label in labels}
        if len(wanted) < 2:
            return self.label_names
        return [name for name in self.label_names if name in wanted]

    def _key(self, item: Item, shots: list[Shot], shown: list[str]) -> str:
        """The cache key covers what the model was shown: the examples and the labels too."""
        context = hashlib.sha256(
            json.dumps([shots, shown if shown != self.label_names else None]).encode("utf-8")
        ).hexdigest()
        return cache_key(
            self.client.model,
            self.prompt_version,
            item.content_hash,
            f"{self._fingerprint}:{context}",
        )

    def _shots(self, items: Sequence[Item]) -> list[list[Shot]]:
        """The few-shot examples for each item (none for images or without a pool)."""
        out: list[list[Shot]] = [[] for _ in items]
        if self.fewshot is None or not len(self.fewshot):
            return out
        texted = [i for i, item in enumerate(items) if not item.media_path]
        if not texted:
            return out
        vectors = np.asarray(self.embedder.embed([items[i].content for i in texted]))
        for i, vec in zip(texted, vectors, strict=True):
            out[i] = self.fewshot.nearest(vec, self.n_shots, exclude_text=items[i].content)
        return out

    def _label_one(self, item: Item, shots: list[Shot], shown: list[str]) -> LLMResult:
        start = time.perf_counter()
        order = self.label_order(item.content_hash, shown)
        spend = _Spend()
        try:
            messages = self._messages(item.content, item.media_path, order, shots)
            probs, method = self._probs(messages, order, spend)
            if self.calibrate and method in ("label_logprobs", "logprobs"):
                baseline, baseline_method = self._content_free(order, shots, spend)
                if baseline_method == method:  # a prior from votes would not be comparable
                    probs = calibrate(probs, baseline, self.multi_label)
                    method += "+calibrated"
            error, status = None, "ok"
        except (LLMError, InvalidAnswer, OSError, ValueError) as exc:
            probs, method, error, status = {}, None, f"{type(exc).__name__}: {exc}", "invalid"
            if isinstance(exc, InvalidAnswer):
                self.meter.add(invalid_answers=1)
        suggestion = Suggestion(
            item_id=item.id,
            content_hash=item.content_hash,
            labeler=self.labeler_id,
            labeler_version=self.version,
            probs={name: probs.get(name, 0.0) for name in self.label_names} if probs else {},
            confidence=_confidence(probs, self.multi_label) if probs else None,
            confidence_method=method,
            status=status,
            latency_ms=(time.perf_counter() - start) * 1000.0,
            cost_usd=spend.cost_usd,
            tokens=spend.input_tokens + spend.output_tokens,
            prompt_version=self.prompt_version,
            error=error,
        )
        return LLMResult(suggestion, order, spend.raw, spend.requests)

    def _messages(
        self,
        text: str,
        media_path: str | None,
        order: list[str],
        shots: list[Shot],
    ) -> list[Message]:
        return build_messages(
            self.template,
            self.specs,
            order,
            self.multi_label,
            text,
            media_path=media_path,
            instructions=self.instructions,
            shots=shots,
            max_chars=self.max_item_chars,
        )

    def _content_free(
        self, order: list[str], shots: list[Shot], spend: _Spend
    ) -> tuple[dict[str, float], str]:
        """The model's answer to a content-free item under the same prompt (its prior)."""
        key = (tuple(order), tuple(text for text, _ in shots))
        with self._content_free_lock:
            cached = self._content_free_probs.get(key)
        if cached is None:
            cached = self._probs(self._messages(CONTENT_FREE, None, order, shots), order, spend)
            with self._content_free_lock:
                if len(self._content_free_probs) > 4096:
                    self._content_free_probs.clear()
                self._content_free_probs[key] = cached
        return cached

    def _probs(
        self, messages: list[Message], order: list[str], spend: _Spend
    ) -> tuple[dict[str, float], str]:
        mode = self.confidence
        scorer_ok = isinstance(self.client, LabelScorer) and not self.multi_label
        if mode == "label_scores" and not scorer_ok:
            raise ValueError("confidence='label_scores' needs an in-process single-label client")
        if mode in ("auto", "label_scores") and scorer_ok:
            scored = self._call(
                lambda: self.client.score_labels(  # type: ignore[attr-defined]
                    messages, single_answer_prefix(), order
                )
            )
            if scored is not None:
                logprobs, input_tokens = scored
                self._account(spend, input_tokens, 0)
                return softmax_over(logprobs), "label_logprobs"
            if mode == "label_scores":
                raise ValueError(f"{self.client.model} cannot score the labels {order}")
        if mode == "self_consistency" or (mode == "auto" and not self.client.supports_logprobs):
            return self._vote(messages, order, spend)
        answer, result = self._ask_valid(messages, order, spend)
        probs = (
            probs_from_logprobs(result.logprobs, order, self.multi_label)
            if result.logprobs
            else None
        )
        if probs is None:
            if mode == "logprobs":
                raise ValueError("the endpoint returned no usable token log-probabilities")
            return self._vote(messages, order, spend)
        return probs, "logprobs"

    def _vote(
        self, messages: list[Message], order: list[str], spend: _Spend
    ) -> tuple[dict[str, float], str]:
        answers: list[Answer] = []
        reasons: list[str] = []
        schema = answer_schema(order, self.multi_label)
        for i in range(self.k_samples):
            request = self._request(messages, schema, self.sample_temperature, seed=self.seed + i)
            result = self._send(request, spend)
            try:
                answers.append(parse_answer(result.text, order, self.multi_label))
            except InvalidAnswer as exc:
                reasons.append(str(exc))
        if not answers:
            raise InvalidAnswer(f"all {self.k_samples} sampled answers were invalid: {reasons[0]}")
        return probs_from_votes(answers, order, self.multi_label), (
            f"self_consistency_k={self.k_samples}"
        )

    def _ask_valid(
        self, messages: list[Message], order: list[str], spend: _Spend
    ) -> tuple[Answer, ChatResult]:
        """Greedy answer; if invalid, say why and ask once more."""
        schema = answer_schema(order, self.multi_label)
        request = self._request(messages, schema, 0.0, logprobs=True)
        result = self._send(request, spend)
        try:
            return parse_answer(result.text, order, self.multi_label), result
        except InvalidAnswer as exc:
            retry_messages = [
                *messages,
                {"role": "assistant", "content": result.text},
                {"role": "user", "content": self.template.retry_note.format(reason=exc)},
            ]
        request = self._request(retry_messages, schema, 0.0, logprobs=True)
        result = self._send(request, spend)
        try:
            return parse_answer(result.text, order, self.multi_label), result
        except InvalidAnswer as exc:
            raise InvalidAnswer(f"still invalid after one retry: {exc}") from None

    def _request(
        self,
        messages: list[Message],
        schema: dict[str, Any],
        temperature: float,
        *,
        logprobs: bool = False,
        seed: int | None = None,
    ) -> ChatRequest:
        return ChatRequest(
            messages=messages,
            schema=schema,
            temperature=temperature,
            max_tokens=self.max_tokens,
            logprobs=logprobs and self.client.supports_logprobs,
            top_logprobs=self.top_logprobs,
            seed=seed,
            timeout_s=self.timeout_s,
        )

    def _send(self, request: ChatRequest, spend: _Spend) -> ChatResult:
        result = self._call(lambda: self.client.chat(request))
        spend.raw.append(result.text)
        self._account(spend, result.input_tokens, result.output_tokens)
        return result

    def _call(self, fn):
        def attempt():
            self.limiter.acquire()
            self.meter.add(requests=1)
            return fn()

        self.breaker.check()
        try:
            result = call_with_retries(attempt, self.retry, lambda _: self.meter.add(retries=1))
        except TransientLLMError:
            self.meter.add(failed_requests=1)
            self.breaker.failure()
            raise
        except LLMError:
            self.meter.add(failed_requests=1)
            raise
        self.breaker.success()
        return result

    def _account(self, spend: _Spend, input_tokens: int, output_tokens: int) -> None:
        spend.requests += 1
        spend.input_tokens += input_tokens
        spend.output_tokens += output_tokens
        spend.cost_usd += self.meter.tokens(input_tokens, output_tokens)

    # ----------------------------------------------------------------- reuse
    def _from_cache(self, item: Item, cached: dict[str, Any]) -> LLMResult:
        self.meter.add(cache_hits=1)
        suggestion = Suggestion(
            item_id=item.id,
            content_hash=item.content_hash,
            labeler=self.labeler_id,
            labeler_version=self.version,
            probs=dict(cached["probs"]),
            confidence=cached["confidence"],
            confidence_method=cached["confidence_method"],
            prompt_version=self.prompt_version,
        )
        return LLMResult(suggestion, list(cached["label_order"]), cache_hit=True)

    def _duplicate(self, item: Item, first: LLMResult) -> LLMResult:
        """A later item with the same content as one asked in this batch: no request, no cost."""
        if first.suggestion.status == "ok":
            self.meter.add(cache_hits=1)
        result = _for_item(first, item)
        result.suggestion.cost_usd = 0.0
        result.suggestion.tokens = 0
        result.suggestion.latency_ms = 0.0
        result.requests = 0
        result.cache_hit = True
        return result


def _for_item(result: LLMResult, item: Item) -> LLMResult:
    s = result.suggestion
    copy = Suggestion(
        item_id=item.id,
        content_hash=s.content_hash,
        labeler=s.labeler,
        labeler_version=s.labeler_version,
        probs=dict(s.probs),
        confidence=s.confidence,
        confidence_method=s.confidence_method,
        status=s.status,
        latency_ms=s.latency_ms,
        cost_usd=s.cost_usd,
        tokens=s.tokens,
        prompt_version=s.prompt_version,
        error=s.error,
    )
    return LLMResult(
        copy, list(result.label_order), list(result.raw_answers), result.requests, result.cache_hit
    )


def _cache_value(result: LLMResult) -> dict[str, Any]:
    s = result.suggestion
    return {
        "probs": s.probs,
        "confidence": s.confidence,
        "confidence_method": s.confidence_method,
        "label_order": result.label_order,
    }


def calibrate(
    probs: dict[str, float], baseline: dict[str, float], multi_label: bool
) -> dict[str, float]:
    """Divide out the content-free prior: per label for single-label, per yes/no for multi."""
    eps = 1e-6
    if multi_label:
        out = {}
        for name, p in probs.items():
            yes = p / max(baseline[name], eps)
            no = (1.0 - p) / max(1.0 - baseline[name], eps)
            out[name] = yes / (yes + no)
        return out
    scaled = {name: p / max(baseline[name], eps) for name, p in probs.items()}
    total = sum(scaled.values())
    return {name: v / total for name, v in scaled.items()}


def _confidence(probs: dict[str, float], multi_label: bool) -> float:
    """Single-label: the top probability. Multi-label: the least certain yes/no decision."""
    if multi_label:
        return min(max(p, 1.0 - p) for p in probs.values())
    value = max(probs.values())
    return value if math.isfinite(value) else 0.0


def endpoint_refusal(suggestions: Sequence[Suggestion]) -> str | None:
    """The endpoint's own error when it refused every one of these requests (a bad URL, model,
    key or format: a setup error to report as such, not a count of invalid answers); else None.
    Invalid answers and timeouts do not count: the endpoint answered or may answer later."""
    prefix = f"{PermanentLLMError.__name__}: "
    errors = [s.error or "" for s in suggestions if s.status != "ok"]
    if not suggestions or len(errors) < len(suggestions):
        return None
    if not all(e.startswith(prefix) for e in errors):
        return None
    return f"the LLM endpoint refused all {len(errors)} requests: {errors[0].removeprefix(prefix)}"
