"""Scenario 3, Redis restarts: the job server is SIGKILLed mid-run (jobs being enqueued, run and scheduled)
and restarted on its append-only file after a few seconds, once under `appendfsync always` and once under
`everysec`. Every process comes back by itself. With `always` no acknowledged job is lost; with
`everysec` the jobs acknowledged in the last second before the crash may be, and the figures say how many."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from tests.chaos.conftest import Ledger
from tests.chaos.load import BEAT, fire_of, settle, start_platform

CONCURRENCY = 2
DOWN_FOR = 5.0  # seconds the server stays dead
RESTARTS = int(os.environ.get("JOBS_CHAOS_RESTARTS", 1))  # crashes per policy (bench/soak.py asks for more)


@pytest.mark.parametrize("private_server", ["always", "everysec"], indirect=True)
def test_redis_restart_under_load(store, private_server, processes, ledger: Ledger, report):
    policy = private_server.appendfsync
    platform = start_platform(processes, private_server.url, ledger, CONCURRENCY)
    producer = platform.producer

    recoveries = []
    for _ in range(RESTARTS):
        private_server.kill()
        time.sleep(DOWN_FOR)  # the length of the outage, not a wait for a state
        private_server.start()
        restarted = time.time()
        recoveries.append(platform.wait_back(restarted))
    producer.stop()
    ran = settle(store, ledger, producer.acknowledged)

    lost = sorted(set(producer.acknowledged) - ran, key=lambda tag: int(tag.split("-")[1]))
    runs = Counter(run.tag for run in ledger.runs() if run.tag != BEAT)
    twice = sorted(tag for tag, count in runs.items() if count > 1)
    fires = Counter(fire_of(run.job_id) for run in ledger.runs() if run.tag == BEAT)
    fired_twice = [fire for fire, count in fires.items() if count > 1]
    report(
        f"Redis restart, appendfsync {policy}: {len(producer.acknowledged)} jobs acknowledged, Redis killed "
        f"{RESTARTS}x and down {DOWN_FOR:.0f} s each time; lost {len(lost)}, run twice {len(twice)}, schedule "
        f"fires run twice {len(fired_twice)}; every worker and the scheduler back {max(recoveries):.1f} s "
        "after a restart at worst"
    )

    platform.check_unbroken()
    if policy == "always":
        assert lost == [], f"acknowledged jobs lost: {lost[:10]}"
        assert len(twice) <= CONCURRENCY * RESTARTS, twice  # only the jobs running at a crash
        assert fired_twice == []
