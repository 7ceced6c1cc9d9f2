"""Scenario 1, worker massacre: 20,000 jobs while a random worker is SIGKILLed at ten random points of
the run (now and then a whole pool, supervisor included, as when a host is lost) and restarted. Every
job completes: none is lost. Execution is at least once: a job may run twice only if it was running in
a killed worker. The same with 5,000 jobs whose first attempt fails: a killed worker may hold a failure
not written yet (it rides in the worker's next take), or jobs taken ahead and not run yet, and still
every job runs its failing attempt (unless that attempt was killed at its very start, once its worker
had seen it running: it counts, as RQ counts an abandoned job's) and completes, and none runs more
than twice unless a run of it was killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest

from jobs import enqueue_many, timeline
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
            doomed = {victim} | descendants(victim)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:  # it ended between the listing and the kill: no strike
                return
            self.killed |= doomed
        self.kills += 1


@pytest.mark.parametrize(
    ("function", "jobs", "runs_each"),
    [(effects.effect, JOBS, 1), (effects.effect_failing_first, JOBS // 4, 2)],
    ids=["succeeding", "failing-first"],
)
def test_no_job_is_lost_when_workers_are_killed_at_random(
    context, redis_url, processes, ledger: Ledger, report, function, jobs, runs_each
):
    began = time.monotonic()
    ids = enqueue_many(function.call(str(n)) for n in range(jobs))
    assert len(ids) == jobs
    massacre = Massacre(Fleet(processes, redis_url), seed=jobs)

    def left() -> float:
        return max(1.0, DEADLINE - (time.monotonic() - began))

    for mark in sorted(massacre.random.sample(range(jobs // 20, jobs - jobs // 20), KILLS)):
        wait_for(lambda mark=mark: len(ledger.runs()) >= mark, timeout=left(), what=f"{mark} runs")
        massacre.strike()
    wait_for(lambda: len(ledger.counts()) == jobs, timeout=left(), what=f"all {jobs} jobs to run")
    ran_in = time.monotonic() - began

    queue = queue_for(context, "default")
    wait_for(
        lambda: queue.finished_job_registry.count == jobs,
        timeout=60,
        what="every job to be recorded finished",
    )
    assert queue.count == 0 and queue.failed_job_registry.count == 0

    runs = ledger.runs()
    counts = ledger.counts()
    lost = jobs - len(counts)
    again = {tag for tag, count in counts.items() if count > runs_each}
    assert lost == 0
    # A job a killed worker had taken ahead goes back without using a retry: its first attempt still
    # runs. Only an attempt killed after its worker saw it running (before the job's side effect, at its
    # very start) counts without a run in the ledger, as RQ counts an abandoned job's.
    for tag in [tag for tag, count in counts.items() if count < runs_each]:
        job_id = next(run.job_id for run in runs if run.tag == tag)
        kills = [e for e in timeline.history(context.redis, context.keys, job_id) if e["event"] == "orphaned"]
        assert sum(e["seen_running"] for e in kills) >= runs_each - counts[tag], f"job {tag}: {kills}"
    # At least once: a job that ran more often than it should have had a run before its last cut short
    # by a kill.
    for tag in again:
        earlier = [run.pid for run in runs if run.tag == tag][:-1]
        assert set(earlier) & massacre.killed, f"job {tag} ran {counts[tag]} times, none killed: {earlier}"
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "orphaned")
        recovered = sum(1 for orphaned in pipe.execute() if orphaned)
    report(
        f"worker massacre ({function.spec.name}): {jobs} jobs ({len(runs)} runs), {POOLS} pools x {CONCURRENCY} workers, {massacre.kills} kills "
        f"({massacre.pool_kills} whole pools) in {ran_in:.0f} s: {recovered} jobs recovered from dead "
        f"workers, lost {lost}, "
        f"ran again {len(again)} (each had a run in a killed worker)"
    )
