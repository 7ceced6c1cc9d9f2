"""Redis Sentinel: `redis+sentinel://` URLs reach the master of a monitored group, and workers follow
a failover without a restart. The tests start a master, a replica and three sentinels of their own."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from jobs.connection import Context, SentinelURL, client_for
from jobs.embedded import answers, free_port, server_binary
from jobs.enqueue import enqueue
from jobs.errors import ConfigError
from tests import sample_jobs
from tests.conftest import Output, make_settings, wait_for

SERVICE = "mymaster"


class SentinelGroup:
    """A master, a replica and three sentinels on free ports, each in a directory of its own."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: dict[str, subprocess.Popen] = {}
        self.master_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/1"

    def start(self) -> None:
        self._server("master", self.master_port)
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for number, port in enumerate(self.sentinel_ports):
            self._sentinel(f"sentinel-{number}", port)
        replica = redis.Redis(port=self.replica_port)
        wait_for(lambda: replica.info("replication").get("master_link_status") == "up", what="replication")
        sentinel = redis.Redis(port=self.sentinel_ports[0])
        wait_for(
            lambda: (
                sentinel.sentinel_slaves(SERVICE)
                and sentinel.sentinel_master(SERVICE)["num-other-sentinels"] == 2
            ),
            timeout=30,
            what="the sentinels to know the replica and each other",
        )

    def _start(self, name: str, command: list[str]) -> None:
        self.processes[name] = subprocess.Popen(
            command, cwd=self.root / name, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def _server(self, name: str, port: int, *extra: str) -> None:
        (self.root / name).mkdir()
        self._start(
            name,
            [server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.root / name),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "server.log", *extra],
        )  # fmt: skip
        wait_for(lambda: answers(port), what=f"the {name} to answer")

    def _sentinel(self, name: str, port: int) -> None:
        (self.root / name).mkdir()
        config = self.root / name / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.root / name}\nlogfile sentinel.log\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self._start(name, [server_binary(), str(config), "--sentinel"])
        wait_for(lambda: answers(port), what=f"{name} to answer")

    def kill_master(self) -> None:
        self.processes["master"].send_signal(signal.SIGKILL)
        self.processes["master"].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def group(tmp_path):
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


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


def test_workers_follow_a_failover(group, processes):
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
