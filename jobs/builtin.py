"""Jobs the platform ships: handy for smoke tests, health checks and benchmarks."""

from __future__ import annotations

import time

from .catalog import job


@job(retries=0, description="Do nothing; measures the platform's own cost per job.")
def noop() -> None:
    """Do nothing."""


@job(retries=0, description="Sleep for the given number of seconds, then return them.")
def sleep(seconds: float) -> float:
    """Sleep `seconds`, then return them."""
    time.sleep(seconds)
    return seconds


@job(retries=0, description="Raise an error with the given message; measures what a failure costs.")
def fail(message: str) -> None:
    """Raise RuntimeError(`message`): for trying failure handling (the failed list, alerts, requeues)."""
    raise RuntimeError(message)
