"""Fill a framework's queue: `python -m peer_tasks.enqueue FRAMEWORK JOB COUNT [--one-by-one]`, in
bench/.venv-peers for the peers, in the project's venv for ours and RQ's.

Each framework enqueues its own way, as fast as its API allows (`bench/peers.py` fills ours and RQ's
pipelined, without this module; the peers have no bulk enqueue): Celery through one producer, Dramatiq and
huey one call per job, arq with up to `ARQ_CONCURRENCY` enqueues in flight on one connection pool. With
`--one-by-one` every enqueue waits for the one before (arq's too), the clock runs around the COUNT
enqueues only (after one more, which imports and connects), and the last line printed is the rate in
jobs per second: so `bench/peers.py` times every framework's one-by-one enqueue the same way, ours
(`noop.enqueue()`) and RQ's (`Queue.enqueue`, JSON) included.
"""

from __future__ import annotations

import asyncio
import sys
import time

import peer_tasks

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


def enqueue_arq(job: str, count: int, in_flight: int = ARQ_CONCURRENCY) -> None:
    """`count` arq jobs, up to `in_flight` enqueues at a time."""
    from arq import create_pool

    from peer_tasks.arq_tasks import server_settings

    async def fill() -> None:
        pool = await create_pool(server_settings())
        try:
            for start in range(0, count, in_flight):
                batch = min(in_flight, count - start)
                await asyncio.gather(*(pool.enqueue_job(job) for _ in range(batch)))
        finally:
            await pool.aclose()

    asyncio.run(fill())


def enqueue_ours(job: str, count: int) -> None:
    """`count` runs of our catalogued job, on the job store that JOBS_REDIS_URL names."""
    from peer_tasks import rq_tasks

    task = getattr(rq_tasks, job)
    for _ in range(count):
        task.enqueue()


def enqueue_rq(job: str, count: int) -> None:
    """`count` RQ jobs on the queue "default", JSON-serialized, through `Queue.enqueue`."""
    from redis import Redis
    from rq import Queue
    from rq.serializers import JSONSerializer

    queue = Queue(connection=Redis.from_url(peer_tasks.redis_url()), serializer=JSONSerializer)
    for _ in range(count):
        queue.enqueue(f"peer_tasks.rq_tasks.{job}")


ENQUEUERS = {
    "ours": enqueue_ours,
    "rq": enqueue_rq,
    "celery": enqueue_celery,
    "dramatiq": enqueue_dramatiq,
    "huey": enqueue_huey,
    "arq": enqueue_arq,
}


def one_by_one_rate(framework: str, job: str, count: int) -> float:
    """Jobs per second enqueueing `count` jobs one at a time, after one that imports and connects."""
    enqueue = ENQUEUERS[framework]
    options = {"in_flight": 1} if framework == "arq" else {}
    enqueue(job, 1, **options)
    started = time.perf_counter()
    enqueue(job, count, **options)
    return count / (time.perf_counter() - started)


def main(argv: list[str]) -> int:
    """Enqueue; exit code 2 on bad arguments."""
    one_by_one = "--one-by-one" in argv
    argv = [arg for arg in argv if arg != "--one-by-one"]
    if len(argv) != 3 or argv[0] not in ENQUEUERS or argv[1] not in ("noop", "sleep1ms"):
        print(
            f"usage: python -m peer_tasks.enqueue {{{','.join(ENQUEUERS)}}} {{noop,sleep1ms}} COUNT [--one-by-one]"
        )
        return 2
    if one_by_one:
        print(f"{one_by_one_rate(argv[0], argv[1], int(argv[2])):.1f}")
    else:
        ENQUEUERS[argv[0]](argv[1], int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
