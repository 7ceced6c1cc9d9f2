"""No-op jobs for `bench/scheduler.py`.

`tick` is a catalogued job for our scheduler (`JOBS_IMPORTS=bench_jobs`, with `bench/` on PYTHONPATH).
`plain_tick` is the same no-op as a plain function, for rq-scheduler and RQ's `rq cron`, which enqueue
callables (and pickle them).
"""

from __future__ import annotations

from jobs import job


@job(retries=0, description="Do nothing: one run of a benchmark schedule.")
def tick() -> None:
    """Do nothing."""


def plain_tick() -> None:
    """Do nothing (a plain function, for rq-scheduler and `rq cron`)."""
