"""Scenario 4, cut connections: a proxy sits between the platform's processes and Redis and drops every
packet for 10 s, then lets new connections through again. Workers and the scheduler find out by their own
timeouts, reconnect, and carry on: no job lost (a service kept enqueueing directly), no schedule fire lost
or run twice, and each process says so in a line or two per outage rather than a flood. Jobs whose
heartbeats the cut stopped for longer than the orphan timeout (say, those of a take whose reply it lost:
started for a worker that never heard of them) are the orphan sweep's, which says so for each job: not
outage noise."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.chaos.conftest import Ledger
from tests.chaos.load import BEAT, fire_of, settle, start_platform
from tests.conftest import per_process
from tests.proxy import Proxy

CONCURRENCY = 2
CUT_FOR = 10.0
MAX_LINES_PER_OUTAGE = 2  # per process: what went wrong, and that it is back
RECOVERED = "); recovered"  # the orphan sweep's line for each job it recovers


@pytest.fixture
def proxy(private_server) -> Proxy:
    proxy = Proxy(private_server.port)
    yield proxy
    proxy.close()


def test_processes_ride_out_a_network_cut(store, private_server, proxy, processes, ledger: Ledger, report):
    # the processes go through the proxy; the producer, a service enqueueing, goes straight to Redis
    platform = start_platform(processes, proxy.url(private_server.db), ledger, CONCURRENCY)
    fleet, producer, workers = platform.fleet, platform.producer, platform.workers
    marks = [len(output.lines) for output in fleet.outputs]

    proxy.cut()
    time.sleep(CUT_FOR)  # the length of the outage, not a wait for a state
    proxy.restore()
    restored = time.time()

    recovery = platform.wait_back(restored)
    producer.stop()
    ran = settle(store, ledger, producer.acknowledged)
    last = int(time.time()) - 2

    lost = set(producer.acknowledged) - ran
    fires = Counter(fire_of(run.job_id)[1] for run in ledger.runs() if run.tag == BEAT)
    first = min(fires)
    missed = [fire for fire in range(first, last + 1) if fire not in fires]
    fired_twice = [fire for fire, count in fires.items() if count > 1]
    lines = [line for output, mark in zip(fleet.outputs, marks, strict=True) for line in output.since(mark)]
    recovered = [line for line in lines if RECOVERED in line]
    outage_lines = [line for line in lines if RECOVERED not in line]
    said_by = per_process(outage_lines)
    report(
        f"network cut: {CUT_FOR:.0f} s without a packet between the processes and Redis; "
        f"{len(producer.acknowledged)} jobs enqueued meanwhile, lost {len(lost)}; schedule fires lost "
        f"{len(missed)}, run twice {len(fired_twice)}; all back {recovery:.1f} s after the link; "
        f"at most {max(said_by.values(), default=0)} log lines per process about the outage; "
        f"{len(recovered)} jobs recovered by the orphan sweep"
    )
    assert not lost and not missed and not fired_twice
    platform.check_unbroken()
    assert workers <= set(said_by), "a worker said nothing of the outage:\n" + "\n".join(outage_lines)
    assert max(said_by.values()) <= MAX_LINES_PER_OUTAGE, "\n".join(outage_lines)
