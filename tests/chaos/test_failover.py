"""Scenario 5, Sentinel failover under load: a master, a replica and three sentinels; workers, a scheduler
and a service enqueueing all reach the master through `redis+sentinel://`. The master is SIGKILLed while
jobs flow; the sentinels promote the replica and every process follows it without a restart.
Replication is asynchronous, so the jobs acknowledged by the old master in the moment before it died
may never have reached the replica: the test counts them, and checks that only those are lost."""

from __future__ import annotations

import time
from collections import Counter

import redis

from jobs.connection import Context, activate
from tests.chaos.conftest import Ledger
from tests.chaos.load import BEAT, settle, start_platform
from tests.conftest import make_settings, wait_for

CONCURRENCY = 2
REPLICATION_WINDOW = 1.0  # seconds before the kill within which an acknowledged job may be lost


def test_a_failover_loses_at_most_the_replication_window(
    sentinel_group, processes, ledger: Ledger, report, monkeypatch
):
    monkeypatch.setattr("jobs.connection._active", None)
    store = activate(Context.connect(make_settings(sentinel_group.url), resilient=True))
    platform = start_platform(processes, sentinel_group.url, ledger, CONCURRENCY)
    producer = platform.producer

    sentinel_group.kill_master()
    killed = time.time()
    replica = redis.Redis(port=sentinel_group.replica_port)
    wait_for(lambda: replica.info("replication")["role"] == "master", timeout=60, what="the promotion")
    promoted = time.time() - killed
    recovery = platform.wait_back(killed)
    producer.stop()
    ran = settle(store, ledger, producer.acknowledged)

    lost = {tag: at for tag, at in producer.acknowledged.items() if tag not in ran}
    runs = Counter(run.tag for run in ledger.runs() if run.tag != BEAT)
    twice = [tag for tag, count in runs.items() if count > 1]
    report(
        f"Sentinel failover: master SIGKILLed under {len(producer.acknowledged)} enqueues; replica promoted "
        f"after {promoted:.1f} s, no enqueue went through for {producer.longest_wait:.1f} s, every worker and the "
        f"scheduler back after {recovery:.1f} s; lost {len(lost)} "
        f"(all acknowledged within {REPLICATION_WINDOW:.0f} s before the kill), run twice {len(twice)}"
    )
    assert all(killed - at < REPLICATION_WINDOW for at in lost.values()), sorted(lost.values())
    platform.check_unbroken()
