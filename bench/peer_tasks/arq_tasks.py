"""The benchmark jobs as arq coroutines (run them with `arq peer_tasks.arq_tasks.WorkerSettings`).

arq only runs coroutines. Counting uses arq's own async connection (`ctx["redis"]`, same server and DB),
the natural way in arq; the sleep is the same blocking `time.sleep(0.001)` as every other framework's
(an `asyncio.sleep` would let one process overlap up to `max_jobs` sleeps: another workload).
"""

from __future__ import annotations

import time
from typing import Any

from arq.connections import RedisSettings

import peer_tasks


async def noop(ctx: dict[str, Any]) -> None:
    """Count one finished job."""
    await ctx["redis"].incr(peer_tasks.COUNTER_KEY)


async def sleep1ms(ctx: dict[str, Any]) -> None:
    """Sleep 1 ms (blocking), then count one finished job."""
    time.sleep(peer_tasks.SLEEP_SECONDS)
    await ctx["redis"].incr(peer_tasks.COUNTER_KEY)


def server_settings() -> RedisSettings:
    """The benchmark server, as arq settings."""
    return RedisSettings.from_dsn(peer_tasks.redis_url())


class WorkerSettings:
    """arq's defaults, but polling the queue every 10 ms (default: 500 ms)."""

    functions = [noop, sleep1ms]
    redis_settings = server_settings()
    poll_delay = 0.01


# arq's CLI logs every job at INFO; like every other worker here, it logs warnings only
# (`--custom-log-dict peer_tasks.arq_tasks.LOG_CONFIG`).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}
