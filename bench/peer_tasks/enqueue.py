"""Fill a peer's queue: `python -m peer_tasks.enqueue FRAMEWORK JOB COUNT` (in bench/.venv-peers).

Each framework enqueues its own way, as fast as its API allows (none of them has a bulk enqueue): Celery
through one producer, Dramatiq and huey one call per job, arq with up to `ARQ_CONCURRENCY` enqueues in
flight on one connection pool.
"""

from __future__ import annotations

import asyncio
import sys

ARQ_CONCURRENCY = 200


def enqueue_celery(job: str, count: int) -> None:
    """`count` Celery tasks, published through one producer."""
    from peer_tasks.celery_tasks import TASKS, app

    task = TASKS[job]
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            task.apply_async(producer=producer)


def enqueue_dramatiq(job: str, count: int) -> None:
    """`count` Dramatiq messages."""
    from peer_tasks.dramatiq_tasks import ACTORS

    actor = ACTORS[job]
    for _ in range(count):
        actor.send()


def enqueue_huey(job: str, count: int) -> None:
    """`count` huey tasks."""
    from peer_tasks.huey_tasks import TASKS

    task = TASKS[job]
    for _ in range(count):
        task()


def enqueue_arq(job: str, count: int) -> None:
    """`count` arq jobs."""
    from arq import create_pool

    from peer_tasks.arq_tasks import server_settings

    async def fill() -> None:
        pool = await create_pool(server_settings())
        try:
            for start in range(0, count, ARQ_CONCURRENCY):
                batch = min(ARQ_CONCURRENCY, count - start)
                await asyncio.gather(*(pool.enqueue_job(job) for _ in range(batch)))
        finally:
            await pool.aclose()

    asyncio.run(fill())


ENQUEUERS = {"celery": enqueue_celery, "dramatiq": enqueue_dramatiq, "huey": enqueue_huey, "arq": enqueue_arq}


def main(argv: list[str]) -> int:
    """Enqueue; exit code 2 on bad arguments."""
    if len(argv) != 3 or argv[0] not in ENQUEUERS or argv[1] not in ("noop", "sleep1ms"):
        print(f"usage: python -m peer_tasks.enqueue {{{','.join(ENQUEUERS)}}} {{noop,sleep1ms}} COUNT")
        return 2
    ENQUEUERS[argv[0]](argv[1], int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
