"""The benchmark jobs as Celery tasks on a Redis broker (no result backend: results are ignored)."""

from __future__ import annotations

from celery import Celery

import peer_tasks

app = Celery("peers_bench", broker=peer_tasks.redis_url())
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task
def noop() -> None:
    """Count one finished job."""
    peer_tasks.count_done()


@app.task
def sleep1ms() -> None:
    """Sleep 1 ms, then count one finished job."""
    peer_tasks.sleep1ms()


TASKS = {"noop": noop, "sleep1ms": sleep1ms}
