"""Redis Sentinel: `redis+sentinel://` URLs reach the master of a monitored group, and workers follow
a failover without a restart. The tests start a master, a replica and three sentinels of their own."""

from __future__ import annotations

import signal
import time

import pytest
import redis

from jobs.connection import Context, SentinelURL, client_for
from jobs.enqueue import enqueue
from jobs.errors import ConfigError
from tests import sample_jobs
from tests.conftest import Output, make_settings, wait_for


def test_sentinel_urls_are_parsed_and_bad_ones_refused():
    parsed = SentinelURL.parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26380/mymaster/1")
    assert parsed.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (parsed.service, parsed.db, parsed.password) == ("mymaster", 1, "s3cret")
    assert SentinelURL.parse("redis+sentinel://h:1/jobs").db == 0
    for bad, reason in (
        ("redis+sentinel:///mymaster/1", "no sentinel host:port"),
        ("redis+sentinel://h:1", "/service or /service/db"),
        ("redis+sentinel://h:1/mymaster/one", "must be a number"),
        ("redis+sentinel://h/mymaster", "is not host:port"),
    ):
        with pytest.raises(ConfigError, match=reason) as error:
            client_for(bad, resilient=False)
        assert "\n" not in str(error.value)


class Interrupted(Exception):
    """Raised by a signal handler in the middle of a read, as a worker's stop signal does."""


def test_a_read_interrupted_by_a_signal_leaves_no_reply_behind(sentinel_group):
    """A stop signal that interrupts a blocked BLPOP must not leave its reply on the connection, for the
    next command to read as its own (redis-py's Sentinel connection keeps it: redis/redis-py#4292)."""
    client = client_for(sentinel_group.url, resilient=True)

    def interrupt(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            client.blpop(["nothing-comes"], timeout=1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert client.echo("mine") == b"mine"
    client.close()


def test_workers_follow_a_failover(sentinel_group, processes):
    group = sentinel_group
    context = Context.connect(make_settings(group.url))
    ran = lambda: context.redis.lrange("test:ran", 0, -1)  # noqa: E731
    pool = processes.start("worker", "-c", "1", url=group.url)
    output = Output(pool)
    before = [enqueue(sample_jobs.record, [f"before-{i}"], context=context).id for i in range(5)]
    wait_for(lambda: len(ran()) == len(before), timeout=30, what="the jobs before the failover")

    group.kill_master()
    killed = time.monotonic()

    def enqueued_on_the_new_master():
        try:
            return enqueue(sample_jobs.record, ["after"], context=context)
        except redis.RedisError:
            return None

    wait_for(enqueued_on_the_new_master, timeout=60, interval=0.2, what="a master to take jobs again")
    writable = time.monotonic() - killed
    wait_for(lambda: b"after" in ran(), timeout=60, what="the worker to run a job on the new master")
    recovered = time.monotonic() - killed
    assert pool.poll() is None, "the pool exited:\n" + output.trouble()  # it rode it out, no restart
    assert redis.Redis(port=group.replica_port).info("replication")["role"] == "master"
    print(
        f"failover: enqueue works again after {writable:.1f} s, the worker runs jobs after {recovered:.1f} s"
    )

    enqueue(sample_jobs.record, ["delayed"], delay=1, context=context)  # RQ's scheduler follows it too
    wait_for(lambda: b"delayed" in ran(), timeout=30, what="a delayed job on the new master")
    processes.stop_all()
    assert pool.returncode == 0
    assert "Traceback" not in output.finish()
