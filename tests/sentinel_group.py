"""A Redis Sentinel group of a test's own: a master, a replica and three sentinels on free ports."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import redis

from jobs.embedded import answers, free_port, server_binary
from tests.conftest import wait_for

SERVICE = "mymaster"


def _free_ports(count: int) -> list[int]:
    """`count` different free ports: nothing binds them before all are chosen, so `free_port` alone may
    give one port twice (two sentinels once got the same, and one of them could not start)."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


class SentinelGroup:
    """A master, a replica and three sentinels on free ports, each in a directory of its own."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: dict[str, subprocess.Popen] = {}
        self.master_port, self.replica_port, *self.sentinel_ports = _free_ports(5)

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
