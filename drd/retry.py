"""One retry policy for everything that talks over a network or to a busy program.

S3 calls, PostgreSQL connections and pgBackRest commands (lock held, TLS/5xx) all
retry the same way: bounded attempts *and* a deadline, exponential backoff with full
jitter, and a predicate that decides which errors are worth another try. ``sleep`` and
``clock`` are injectable so the policy itself is tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    deadline: float = 120.0  # seconds from the first attempt; no new attempt starts after it
    base_delay: float = 0.5
    max_delay: float = 20.0
    retryable: Callable[[BaseException], bool] = lambda exc: False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int) -> float:
        """Full-jitter backoff for the given 1-based attempt that just failed."""
        cap = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(0, cap)

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds, raises a non-retryable error, or the budget ends.

        The last error is re-raised unchanged so callers see what actually went wrong.
        """
        start = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:
                if not self.retryable(exc) or attempt >= self.attempts:
                    raise
                wait = self.delay(attempt)
                if self.clock() - start + wait > self.deadline:
                    raise
                if on_retry is not None:
                    on_retry(attempt, exc, wait)
                self.sleep(wait)
