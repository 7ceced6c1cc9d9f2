"""The benchmark jobs for our worker and RQ's workers: catalogued (ours runs only catalogued jobs), and
plain callables for RQ, which imports them by name (`peer_tasks.rq_tasks.noop`)."""

from __future__ import annotations

import peer_tasks
from jobs import job


@job(retries=0, description="Benchmark no-op: count it done.")
def noop() -> None:
    """Count one finished job."""
    peer_tasks.count_done()


@job(retries=0, description="Benchmark job: sleep 1 ms, count it done.")
def sleep1ms() -> None:
    """Sleep 1 ms, then count one finished job."""
    peer_tasks.sleep1ms()
