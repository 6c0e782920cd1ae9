"""The shared retry policy: bounded attempts and deadline, only retryable errors retried."""

from __future__ import annotations

import random

import pytest

from drd.retry import RetryPolicy


class FlakyError(Exception):
    pass


def _policy(**kw: object) -> tuple[RetryPolicy, list[float]]:
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    policy = RetryPolicy(
        retryable=lambda exc: isinstance(exc, FlakyError),
        sleep=sleep,
        clock=lambda: clock[0],
        rng=random.Random(7),
        **kw,  # type: ignore[arg-type]
    )
    return policy, slept


def test_retries_until_success() -> None:
    """Retryable failures are retried; the result of the first success is returned."""
    policy, slept = _policy(attempts=5)
    calls = iter([FlakyError(), FlakyError(), "done"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert policy.call(fn) == "done"
    assert len(slept) == 2


def test_non_retryable_error_is_raised_at_once() -> None:
    """An error the predicate rejects is not retried."""
    policy, slept = _policy()
    with pytest.raises(ValueError, match="bad"):
        policy.call(lambda: (_ for _ in ()).throw(ValueError("bad")))
    assert slept == []


def test_attempts_bound() -> None:
    """After the last attempt the last error is raised."""
    policy, slept = _policy(attempts=3)
    with pytest.raises(FlakyError):
        policy.call(lambda: (_ for _ in ()).throw(FlakyError()))
    assert len(slept) == 2


def test_deadline_bound() -> None:
    """No attempt starts after the deadline, however many attempts remain."""
    policy, slept = _policy(attempts=100, deadline=10, base_delay=4, max_delay=4)
    with pytest.raises(FlakyError):
        policy.call(lambda: (_ for _ in ()).throw(FlakyError()))
    assert sum(slept) <= 10


def test_backoff_is_capped_full_jitter() -> None:
    """Delays stay within [0, min(max_delay, base * 2^(n-1))]."""
    policy, _ = _policy(base_delay=1, max_delay=5)
    for attempt in range(1, 10):
        assert 0 <= policy.delay(attempt) <= min(5, 2 ** (attempt - 1))
