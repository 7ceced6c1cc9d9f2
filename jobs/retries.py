"""Retry policy: exponential backoff with jitter, and which exceptions retry. Pure maths, no I/O."""

from __future__ import annotations

import random
from collections.abc import Sequence

from rq.job import Retry

from .timeouts import JobTimeoutIgnored


def backoff_intervals(
    retries: int, backoff: float | Sequence[float], rng: random.Random | None = None
) -> list[int]:
    """Seconds to wait before each retry.

    A number is the first delay of an exponential series (base, 2*base, 4*base, ...), each with +/-25 %
    jitter so that jobs failing together do not retry together; a sequence is used as given, made
    `retries` long (cut, or its last delay repeated): RQ counts the delays from the end of its list.
    """
    if isinstance(backoff, Sequence) and not isinstance(backoff, str):
        delays = [max(0, round(delay)) for delay in backoff] or [0]
        return delays[:retries] + delays[-1:] * (retries - len(delays))
    if backoff <= 0:
        return [0] * max(retries, 1)
    rng = rng or random
    return [max(1, round(backoff * 2**attempt * rng.uniform(0.75, 1.25))) for attempt in range(retries)]


def rq_retry(retries: int, backoff: float | Sequence[float]) -> Retry | None:
    """RQ's Retry for the policy, or None when the job must not be retried."""
    if retries <= 0:
        return None
    return Retry(max=retries, interval=backoff_intervals(retries, backoff))


def is_retryable(
    exc: BaseException | None,
    retry_on: tuple[type[BaseException], ...],
    no_retry_on: tuple[type[BaseException], ...],
) -> bool:
    """True when an attempt that raised `exc` may be retried (`no_retry_on` wins over `retry_on`). A job
    stopped for going on after its timeout counts as timed out."""
    if exc is None:
        return True
    kind = exc.timeout if isinstance(exc, JobTimeoutIgnored) else type(exc)
    if no_retry_on and issubclass(kind, no_retry_on):
        return False
    return issubclass(kind, retry_on)
