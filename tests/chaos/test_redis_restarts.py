"""Scenario 3, Redis restarts: the job server is SIGKILLed mid-run (jobs being enqueued, run and scheduled)
and restarted on its append-only file after a few seconds, once under `appendfsync always` and once under
`everysec`. Every process comes back by itself. With `always` no acknowledged job is lost; with
`everysec` the jobs acknowledged in the last second before the crash may be, and the figures say how many."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis

from jobs import recurring
from jobs.connection import Context
from jobs.enqueue import queue_for
from jobs.errors import RedisUnavailable
from tests.chaos import effects
from tests.chaos.conftest import Fleet, Ledger
from tests.chaos.test_scheduler_massacre import fire_of
from tests.conftest import ORPHAN_TIMEOUT, alive, children, wait_for

CONCURRENCY = 2
PACE = 0.005  # seconds between two enqueues: about 200 jobs/s, well within what the pool runs
DOWN_FOR = 5.0  # seconds the server stays dead
SETTLED_FOR = 3 * ORPHAN_TIMEOUT  # nothing left to run for this long: whatever has not run never will


class Producer(threading.Thread):
    """Enqueues a job at a steady pace, as a service would; remembers which enqueues Redis acknowledged."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopped.is_set():
            number += 1
            try:
                effects.effect.enqueue(f"job-{number}")
            except (redis.RedisError, RedisUnavailable):
                self.refused += 1  # the caller knows: an error, not an acknowledgement
                self.stopped.wait(0.1)
            else:
                self.acknowledged.append(f"job-{number}")
                self.stopped.wait(PACE)

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def settle(store: Context, ledger: Ledger, acknowledged: list[str]) -> set[str]:
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
    pytest.fail("the queues never settled after the restart")


@pytest.mark.parametrize("private_server", ["always", "everysec"], indirect=True)
def test_redis_restart_under_load(store, private_server, processes, ledger: Ledger, report):
    policy = private_server.appendfsync
    recurring.schedule("beat", effects.effect, every="1s", args=["beat"])
    fleet = Fleet(processes, private_server.url)
    pool = fleet.start("worker", "-c", str(CONCURRENCY))
    scheduler = fleet.start("scheduler")
    producer = Producer()
    producer.start()
    wait_for(lambda: len(ledger.runs()) >= 300, timeout=30, what="the platform to run jobs")
    workers = children(pool.pid)
    assert len(workers) == CONCURRENCY

    private_server.kill()
    time.sleep(DOWN_FOR)  # the length of the outage, not a wait for a state
    private_server.start()
    restarted = time.time()

    def back() -> float | None:
        """Seconds from the restart until every worker ran a job and the scheduler fired again."""
        after = [run for run in ledger.runs() if run.at > restarted]
        firsts = [min((run.at for run in after if run.pid == pid), default=None) for pid in workers]
        fired = [run.at for run in after if run.tag == "beat" and fire_of(run.job_id)[1] > restarted]
        if None in firsts or not fired:
            return None
        return max(*firsts, min(fired)) - restarted

    recovery = wait_for(back, timeout=60, what="every worker and the scheduler to be back")
    producer.stop()
    ran = settle(store, ledger, producer.acknowledged)

    lost = sorted(set(producer.acknowledged) - ran, key=lambda tag: int(tag.split("-")[1]))
    runs = Counter(run.tag for run in ledger.runs() if run.tag != "beat")
    twice = sorted(tag for tag, count in runs.items() if count > 1)
    fires = Counter(fire_of(run.job_id) for run in ledger.runs() if run.tag == "beat")
    fired_twice = [fire for fire, count in fires.items() if count > 1]
    report(
        f"Redis restart, appendfsync {policy}: {len(producer.acknowledged)} jobs acknowledged, Redis down "
        f"{DOWN_FOR:.0f} s; lost {len(lost)}, run twice {len(twice)}, schedule fires run twice "
        f"{len(fired_twice)}; every worker and the scheduler back {recovery:.1f} s after the restart"
    )

    # Nobody restarted anything: same pool, same worker processes, same scheduler.
    assert pool.poll() is None and children(pool.pid) == workers, fleet.trouble()
    assert alive(scheduler.pid), fleet.trouble()
    if policy == "always":
        assert lost == [], f"acknowledged jobs lost: {lost[:10]}"
        assert len(twice) <= CONCURRENCY, twice  # only the jobs running at the crash
        assert fired_twice == []
