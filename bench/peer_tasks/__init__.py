"""The two benchmark jobs of `bench/peers.py`, once per framework, and what they share.

Every framework runs the same two job bodies: `noop` (count it done) and `sleep1ms` (`time.sleep(0.001)`,
then count it done). Counting is one INCR of `COUNTER_KEY` on the benchmark's server, so every job does
the same work and `bench/peers.py` sees completion the same way for every framework.

One module per framework, imported only by that framework's processes:

- `rq_tasks`: catalogued jobs for our worker and RQ's (imports `jobs`: the project's venv);
- `celery_tasks`, `dramatiq_tasks`, `huey_tasks`, `arq_tasks`: the peers (bench/.venv-peers);
- `enqueue`: `python -m peer_tasks.enqueue FRAMEWORK JOB COUNT` fills a peer's queue (peers' venv).

This module imports neither `jobs` nor any framework. The server's URL comes from `BENCH_REDIS_URL`.
"""

from __future__ import annotations

import os
import time

import redis

COUNTER_KEY = "bench:peers:done"
URL_VARIABLE = "BENCH_REDIS_URL"
JOB_NAMES = ("noop", "sleep1ms")
SLEEP_SECONDS = 0.001

_client: redis.Redis | None = None


def redis_url() -> str:
    """The benchmark server's URL (`BENCH_REDIS_URL`)."""
    return os.environ[URL_VARIABLE]


def count_done() -> None:
    """Count one finished job: INCR `COUNTER_KEY` (one round trip, with a client made once per process)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(redis_url())
    _client.incr(COUNTER_KEY)


def sleep1ms() -> None:
    """The body of the sleep job: sleep 1 ms (blocking, as a real job's I/O would), then count it done."""
    time.sleep(SLEEP_SECONDS)
    count_done()
