"""Scenario 1, worker massacre: 20,000 jobs while a random worker is SIGKILLed at ten random points of
the run (now and then a whole pool, supervisor included, as when a host is lost) and restarted. Every
job completes: none is lost. Execution is at least once: a job may run twice only if it was running in
a killed worker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from jobs import enqueue_many
from jobs.enqueue import queue_for
from tests.chaos import effects
from tests.chaos.conftest import Fleet, Ledger
from tests.conftest import children, descendants, wait_for

JOBS = int(os.environ.get("JOBS_CHAOS_JOBS", 20_000))
POOLS = 2
CONCURRENCY = 2
KILLS = 10  # at random points of the run's progress: as many kills on a fast machine as on a slow one
WHOLE_POOL_EVERY = 4  # every 4th kill takes a whole pool (supervisor and workers) instead of one worker
DEADLINE = max(300.0, JOBS / 50)  # seconds; the platform runs several hundred jobs a second


class Massacre:
    """Worker pools under fire: kills a random worker (or pool) and keeps `POOLS` pools running."""

    def __init__(self, fleet: Fleet, seed: int) -> None:
        self.fleet = fleet
        self.random = random.Random(seed)
        self.pools = [self._start() for _ in range(POOLS)]
        self.killed: set[int] = set()  # pids of every process killed, workers and supervisors
        self.kills = self.pool_kills = 0

    def _start(self) -> subprocess.Popen:
        return self.fleet.start("worker", "-c", str(CONCURRENCY))

    def strike(self) -> None:
        """Kill one worker process, or (sometimes) a whole pool and start a new one in its place."""
        pool = self.random.choice(self.pools)
        if self.kills % WHOLE_POOL_EVERY == WHOLE_POOL_EVERY - 1:
            self.killed |= {pool.pid} | descendants(pool.pid)
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()
            self.pools[self.pools.index(pool)] = self._start()
            self.pool_kills += 1
        else:
            workers = sorted(children(pool.pid))
            if not workers:  # the pool is between a death and its restart
                return
            victim = self.random.choice(workers)
            self.killed |= {victim} | descendants(victim)
            os.kill(victim, signal.SIGKILL)
        self.kills += 1


def test_no_job_is_lost_when_workers_are_killed_at_random(
    context, redis_url, processes, ledger: Ledger, report
):
    began = time.monotonic()
    ids = enqueue_many(effects.effect.call(str(n)) for n in range(JOBS))
    assert len(ids) == JOBS
    massacre = Massacre(Fleet(processes, redis_url), seed=JOBS)

    def left() -> float:
        return max(1.0, DEADLINE - (time.monotonic() - began))

    for mark in sorted(massacre.random.sample(range(JOBS // 20, JOBS - JOBS // 20), KILLS)):
        wait_for(lambda mark=mark: len(ledger.runs()) >= mark, timeout=left(), what=f"{mark} runs")
        massacre.strike()
    wait_for(lambda: len(ledger.counts()) == JOBS, timeout=left(), what=f"all {JOBS} jobs to run")
    ran_in = time.monotonic() - began

    queue = queue_for(context, "default")
    wait_for(
        lambda: queue.finished_job_registry.count == JOBS,
        timeout=60,
        what="every job to be recorded finished",
    )
    assert queue.count == 0 and queue.failed_job_registry.count == 0

    runs = ledger.runs()
    counts = ledger.counts()
    lost = JOBS - len(counts)
    twice = {tag for tag, count in counts.items() if count > 1}
    assert lost == 0
    # At least once: every earlier run of a job that ran again was cut short by a kill.
    seen: set[str] = set()
    for run in runs:
        if run.tag in twice and run.tag not in seen:
            assert run.pid in massacre.killed, f"job {run.tag} ran twice, first in {run.pid}, never killed"
        seen.add(run.tag)
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "orphaned")
        recovered = sum(1 for orphaned in pipe.execute() if orphaned)
    report(
        f"worker massacre: {JOBS} jobs, {POOLS} pools x {CONCURRENCY} workers, {massacre.kills} kills "
        f"({massacre.pool_kills} whole pools) in {ran_in:.0f} s: {recovered} jobs recovered from dead "
        f"workers, lost {lost}, "
        f"duplicated {len(twice)} (each first ran in a killed worker)"
    )
