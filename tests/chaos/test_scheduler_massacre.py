"""Scenario 2, scheduler massacre: 3 schedulers and 50 schedules firing every second for 2 minutes, while a
random scheduler is SIGKILLed and restarted every few seconds. Every schedule runs exactly once per fire
time: no fire is lost to a dead scheduler, none is run twice by two live ones."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from jobs import recurring
from jobs.enqueue import queue_for
from tests.chaos import effects
from tests.chaos.conftest import Fleet, Ledger
from tests.chaos.load import fire_of
from tests.conftest import wait_for

SCHEDULES = 50
SCHEDULERS = 3
RUN_FOR = float(os.environ.get("JOBS_CHAOS_SECONDS", 120))
KILL_EVERY = (1.0, 4.0)  # seconds between two kills, drawn at random


def test_every_fire_runs_exactly_once_while_schedulers_are_killed(
    context, redis_url, processes, ledger: Ledger, report
):
    ids = [f"tick-{n:02d}" for n in range(SCHEDULES)]
    first = {sid: recurring.schedule(sid, effects.effect, every="1s", args=[sid]).next_fire for sid in ids}
    fleet = Fleet(processes, redis_url)
    fleet.start("worker", "-c", "2")
    schedulers = [fleet.start("scheduler") for _ in range(SCHEDULERS)]
    chance = random.Random(SCHEDULES)
    kills, began = 0, time.time()
    while time.time() - began < RUN_FOR:
        time.sleep(chance.uniform(*KILL_EVERY))  # the pace of the faults, not a wait for a state
        victim = chance.randrange(SCHEDULERS)
        os.killpg(schedulers[victim].pid, signal.SIGKILL)
        schedulers[victim].wait()
        schedulers[victim] = fleet.start("scheduler")
        kills += 1
    last = int(time.time())

    def caught_up() -> bool:
        return all(recurring.get(context, sid).next_fire > last for sid in ids)

    wait_for(caught_up, timeout=30, what="the schedulers to fire every schedule up to the end of the run")
    queue = queue_for(context, "default")
    wait_for(
        lambda: queue.count == 0 and queue.started_job_registry.count == 0,
        timeout=30,
        what="the workers to run every fired job",
    )

    runs = Counter(fire_of(run.job_id) for run in ledger.runs())
    expected = {(sid, fire) for sid in ids for fire in range(first[sid], last + 1)}
    fired = {key for key in runs if key[1] <= last}
    lost = expected - fired
    unexpected = fired - expected
    duplicated = {key: count for key, count in runs.items() if count > 1}
    report(
        f"scheduler massacre: {SCHEDULES} schedules every 1s, {SCHEDULERS} schedulers, {kills} kills in "
        f"{RUN_FOR:.0f} s: fires expected {len(expected)}, fired {len(fired)}, duplicated {len(duplicated)}, "
        f"lost {len(lost)}"
    )
    assert not lost, f"{len(lost)} fires lost, e.g. {sorted(lost)[:5]}\n{fleet.trouble()}"
    assert not duplicated, f"fires run more than once: {sorted(duplicated.items())[:5]}"
    assert not unexpected, f"runs for fire times that were not due: {sorted(unexpected)[:5]}"
    assert queue.failed_job_registry.count == 0
