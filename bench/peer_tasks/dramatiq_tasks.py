"""The benchmark jobs as Dramatiq actors on a Redis broker (default middleware)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

import peer_tasks

dramatiq.set_broker(RedisBroker(url=peer_tasks.redis_url()))


@dramatiq.actor(max_retries=0)
def noop() -> None:
    """Count one finished job."""
    peer_tasks.count_done()


@dramatiq.actor(max_retries=0)
def sleep1ms() -> None:
    """Sleep 1 ms, then count one finished job."""
    peer_tasks.sleep1ms()


ACTORS = {"noop": noop, "sleep1ms": sleep1ms}
