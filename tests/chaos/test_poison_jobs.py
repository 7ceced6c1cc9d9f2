"""Scenario: jobs that kill their worker (a crash, the OOM killer) among many that do not, on 2 pools of
2 worker processes, or of 1 process of 4 threads, taking short jobs several at a time. Each such job is
failed as poison at its JOBS_MAX_ORPHANS-th run, and takes other jobs down with it once at most (with
threads, those of the whole process): no other job fails, is lost, or runs twice unless a run of it was
in a process that such a job killed."""

from __future__ import annotations

import os
import random

import pytest

from jobs import enqueue_many, inspect
from jobs.enqueue import queue_for
from tests.chaos import effects
from tests.chaos.conftest import Fleet, Ledger
from tests.conftest import wait_for

JOBS = int(os.environ.get("JOBS_CHAOS_JOBS", 20_000)) // 4
KILLERS = 5
MAX_ORPHANS = 3  # the default
POOLS = 2
DEADLINE = max(120.0, JOBS / 50)


@pytest.mark.parametrize(
    "workers", [("-c", "2"), ("-c", "1", "--threads", "4")], ids=["processes", "threads"]
)
def test_jobs_that_kill_their_worker_are_failed_as_poison_alone(
    context, redis_url, processes, ledger: Ledger, report, workers
):
    calls = [effects.effect.call(str(n)) for n in range(JOBS)]
    for n, at in enumerate(sorted(random.Random(JOBS).sample(range(JOBS // 10, JOBS), KILLERS))):
        calls.insert(at + n, effects.effect_then_die.call(f"killer-{n}"))
    ids = enqueue_many(calls)
    killers = {job_id for job_id, call in zip(ids, calls, strict=True) if call.spec.name.endswith("die")}
    fleet = Fleet(processes, redis_url)
    for _ in range(POOLS):
        fleet.start("worker", *workers, JOBS_MAX_ORPHANS=str(MAX_ORPHANS))
    queue = queue_for(context, "default")
    wait_for(
        lambda: queue.failed_job_registry.count + queue.finished_job_registry.count == len(ids),
        timeout=DEADLINE,
        what="every job to end",
    )

    assert set(queue.failed_job_registry.get_job_ids()) == killers  # innocent jobs taken down: not poison
    assert all("poison job" in inspect.job_detail(context, job_id).traceback for job_id in killers)
    runs, counts = ledger.runs(), ledger.counts()
    killed = {run.pid for run in runs if run.tag.startswith("killer")}
    assert [counts[f"killer-{n}"] for n in range(KILLERS)] == [MAX_ORPHANS] * KILLERS
    others = [str(n) for n in range(JOBS)]
    assert all(counts[tag] >= 1 for tag in others)  # none lost
    again = [tag for tag in others if counts[tag] > 1]
    for tag in again:  # at least once: an earlier run of it ended in a worker that a killer took down
        assert {run.pid for run in runs if run.tag == tag} & killed, f"job {tag} ran twice, none killed"
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in set(ids) - killers:
            pipe.hget(f"rq:job:{job_id}", "orphaned")
        taken_down = [int(orphaned) for orphaned in pipe.execute() if orphaned]
    assert max(taken_down, default=0) <= 1  # once at most
    report(
        f"poison jobs: {JOBS} jobs and {KILLERS} that kill their worker, {POOLS} pools of "
        f"`worker {' '.join(workers)}`: {len(killed)} processes killed, each killer failed as poison at its {MAX_ORPHANS}rd run; "
        f"{len(taken_down)} other jobs taken down with one (once each), {len(again)} ran again, 0 lost, "
        f"0 failed"
    )
