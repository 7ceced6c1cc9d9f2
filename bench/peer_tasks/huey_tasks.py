"""The benchmark jobs as huey tasks on RedisHuey (default options: results kept, None results not)."""

from __future__ import annotations

from huey import RedisHuey

import peer_tasks

huey = RedisHuey("peers-bench", url=peer_tasks.redis_url())


@huey.task()
def noop() -> None:
    """Count one finished job."""
    peer_tasks.count_done()


@huey.task()
def sleep1ms() -> None:
    """Sleep 1 ms, then count one finished job."""
    peer_tasks.sleep1ms()


TASKS = {"noop": noop, "sleep1ms": sleep1ms}
