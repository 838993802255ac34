"""Rate limits, retries with exponential backoff, and token/cost accounting, all thread-safe."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from labelloop.labelers.llm.client import TransientLLMError

T = TypeVar("T")


class RateLimiter:
    """At most ``per_second`` starts per second, spread evenly (None: no limit)."""

    def __init__(self, per_second: float | None) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError(f"requests per second must be positive, got {per_second}")
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


@dataclass(slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter before retry number ``attempt`` (1-based)."""
        cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    on_retry: Callable[[TransientLLMError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn``; on TransientLLMError wait and try again, up to ``policy.max_retries`` times."""
    attempt = 0
    while True:
        try:
            return fn()
        except TransientLLMError as exc:
            attempt += 1
            if attempt > policy.max_retries:
                raise TransientLLMError(f"{exc} (gave up after {attempt} attempts)") from exc
            if on_retry is not None:
                on_retry(exc)
            sleep(policy.delay(attempt))


@dataclass(slots=True)
class Pricing:
    """Price in USD per 1,000 input (prompt) and output (completion) tokens."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000.0


@dataclass(slots=True)
class UsageSummary:
    requests: int = 0
    retries: int = 0
    failed_requests: int = 0
    cache_hits: int = 0
    invalid_answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class UsageMeter:
    """Counts requests, retries, cache hits, tokens and cost across threads."""

    def __init__(self, pricing: Pricing | None = None) -> None:
        self.pricing = pricing or Pricing()
        self._summary = UsageSummary()
        self._lock = threading.Lock()

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self._summary, name, getattr(self._summary, name) + value)

    def tokens(self, input_tokens: int, output_tokens: int) -> float:
        """Record a request's tokens; return its cost."""
        cost = self.pricing.cost(input_tokens, output_tokens)
        self.add(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost)
        return cost

    def summary(self) -> UsageSummary:
        with self._lock:
            return UsageSummary(**asdict(self._summary))


class CircuitBreaker:
    """Stops calling an endpoint that keeps failing, so a dead server fails a batch fast.

    After ``threshold`` calls in a row that exhausted their retries, calls fail at once for
    ``cooldown_s`` seconds; then they are let through again (one success closes the circuit).
    """

    def __init__(self, threshold: int = 5, cooldown_s: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            wait = self._open_until - time.monotonic()
        if wait > 0:
            raise TransientLLMError(
                f"circuit open after {self._failures} failed calls in a row; "
                f"not calling the endpoint for another {wait:.0f} s"
            )

    def success(self) -> None:
        with self._lock:
            self._failures = 0

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self.threshold and self._failures >= self.threshold:
                self._open_until = time.monotonic() + self.cooldown_s
