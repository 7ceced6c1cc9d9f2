"""Load and measures shared by the chaos scenarios: the platform under a steady load of jobs and a
schedule, the wait until every acknowledged job has run, and the time until every process is back after
a fault."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
import redis

from jobs import recurring
from jobs.connection import Context
from jobs.enqueue import queue_for
from jobs.errors import RedisUnavailable
from tests.chaos import effects
from tests.chaos.conftest import Fleet, Ledger
from tests.conftest import ORPHAN_TIMEOUT, Processes, alive, children, wait_for

PACE = 0.005  # seconds between two enqueues: about 200 jobs/s, well within what a pool runs
SETTLED_FOR = 3 * ORPHAN_TIMEOUT  # nothing left to run for this long: whatever has not run never will
BEAT = "beat"  # tag of the schedule that every scenario with a scheduler runs every second


class Producer(threading.Thread):
    """Enqueues a job at a steady pace, as a service would; remembers which enqueues Redis acknowledged
    and when."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.acknowledged: dict[str, float] = {}  # tag -> time of the acknowledgement
        self.longest_wait = 0.0  # seconds: the longest time between two acknowledgements
        self.stopped = threading.Event()

    def run(self) -> None:
        number, last = 0, time.monotonic()
        while not self.stopped.is_set():
            number += 1
            try:
                effects.effect.enqueue(f"job-{number}")
            except (redis.RedisError, RedisUnavailable):  # the caller knows: an error, not an acknowledgement
                self.stopped.wait(0.1)
            else:
                self.acknowledged[f"job-{number}"] = time.time()
                self.longest_wait = max(self.longest_wait, time.monotonic() - last)
                last = time.monotonic()
                self.stopped.wait(PACE)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


@dataclass
class Platform:
    """A worker pool, a scheduler firing the beat schedule every second, and a producer, all at work."""

    fleet: Fleet
    pool: subprocess.Popen
    scheduler: subprocess.Popen
    producer: Producer
    workers: set[int]  # pids of the pool's worker processes
    ledger: Ledger

    def wait_back(self, since: float) -> float:
        """Wait until every worker has run a job and the beat schedule has fired again after `since` (an
        epoch time); return how many seconds that took."""
        return wait_for(
            lambda: back_after(self.ledger, self.workers, since),
            timeout=60,
            what="every worker and the scheduler to be back",
        )

    def check_unbroken(self) -> None:
        """Fail unless the pool, its worker processes and the scheduler are the ones started: nothing
        died, nothing had to be restarted."""
        assert self.pool.poll() is None and children(self.pool.pid) == self.workers, self.fleet.trouble()
        assert alive(self.scheduler.pid), self.fleet.trouble()


def start_platform(processes: Processes, url: str, ledger: Ledger, concurrency: int = 2) -> Platform:
    """Start the platform's processes on `url` and the producer on the active context (which need not go
    through `url`), and return once jobs run."""
    recurring.schedule(BEAT, effects.effect, every="1s", args=[BEAT])
    fleet = Fleet(processes, url)
    pool = fleet.start("worker", "-c", str(concurrency))
    scheduler = fleet.start("scheduler")
    producer = Producer()
    producer.start()
    wait_for(lambda: len(ledger.runs()) >= 300, timeout=30, what="the platform to run jobs")
    workers = children(pool.pid)
    assert len(workers) == concurrency
    return Platform(fleet, pool, scheduler, producer, workers, ledger)


def settle(store: Context, ledger: Ledger, acknowledged) -> set[str]:
    """Wait until every acknowledged job has run, or until the queues have stayed empty long enough that
    nothing more will run; return the tags that ran."""
    queue = queue_for(store, "default")
    quiet_since = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ran = {run.tag for run in ledger.runs()}
        if ran >= set(acknowledged):
            return ran
        busy = queue.count or queue.started_job_registry.count or store.redis.zcard(store.keys.orphans)
        quiet_since = None if busy else quiet_since or time.monotonic()
        if quiet_since and time.monotonic() - quiet_since > SETTLED_FOR:
            return ran
        time.sleep(0.2)
    pytest.fail("the queues never settled after the fault")


def fire_of(job_id: str) -> tuple[str, int]:
    """(schedule id, fire time) of a scheduled run's job id, as `recurring.run_id` makes it."""
    schedule_id, fire = job_id.removeprefix("schedule-").rsplit("-", 1)
    return schedule_id, int(fire)


def back_after(ledger: Ledger, workers: set[int], since: float) -> float | None:
    """Seconds from `since` until every worker in `workers` had run a job and the beat schedule had fired
    again; None until then."""
    after = [run for run in ledger.runs() if run.at > since]
    firsts = [min((run.at for run in after if run.pid == pid), default=None) for pid in workers]
    fired = [run.at for run in after if run.tag == BEAT and fire_of(run.job_id)[1] > since]
    if None in firsts or not fired:
        return None
    return max(*firsts, min(fired)) - since
