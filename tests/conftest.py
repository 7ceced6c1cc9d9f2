"""Shared fixtures: a real Redis-compatible server (private, on a free port, or $JOBS_TEST_REDIS_URL),
a clean job-store context per test, and helpers to run platform processes and wait on conditions."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import redis
from rq.serializers import JSONSerializer

from jobs import catalog, timeline
from jobs.config import Settings
from jobs.connection import Context, activate
from jobs.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent
TEST_JOBS = "tests.sample_jobs"
ORPHAN_TIMEOUT = 2


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """URL of the server the suite runs against: $JOBS_TEST_REDIS_URL, or a private embedded one."""
    configured = os.environ.get("JOBS_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("redis"), db=1)
    yield server.start()
    server.stop()


def make_settings(url: str, **overrides) -> Settings:
    """Settings for tests: short orphan timeout and shutdown deadline, the test jobs imported."""
    values = dict(redis_url=url, imports=(TEST_JOBS,), orphan_timeout=ORPHAN_TIMEOUT, shutdown_timeout=5.0)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def context(redis_url) -> Context:
    """An active context on an emptied test DB, with the test jobs catalogued."""
    catalog.load([TEST_JOBS])
    ctx = activate(Context.connect(make_settings(redis_url)))
    ctx.redis.flushdb()
    yield ctx
    ctx.redis.close()


@pytest.fixture
def worker_tally(context, monkeypatch) -> timeline.Tally:
    """The counters of a worker in this process, as its bootstrap makes them, for tests that drive a
    worker's steps without running it; gone with the test."""
    tally = timeline.Tally(context.keys)
    monkeypatch.setattr(timeline, "_worker_tally", tally)
    return tally


@pytest.fixture
def private_server(request, tmp_path) -> EmbeddedServer:
    """A server of the test's own (for tests that kill it or change its configuration); its appendfsync
    policy is `always` unless the test parametrizes this fixture indirectly with another."""
    server = EmbeddedServer(tmp_path / "private-redis", appendfsync=getattr(request, "param", "always"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(private_server, monkeypatch) -> Context:
    """The active context on the private server; the previously active context is restored afterwards."""
    monkeypatch.setattr("jobs.connection._active", None)
    catalog.load([TEST_JOBS])
    ctx = activate(Context.connect(make_settings(private_server.url)))
    yield ctx
    ctx.redis.close()


@pytest.fixture
def sentinel_group(tmp_path):
    """A running master, replica and three sentinels of the test's own (tests/sentinel_group.py)."""
    from tests.sentinel_group import SentinelGroup  # here: that module imports this one

    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


class Output:
    """Collects a process's output lines in the background, so a test can wait on what it logs."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def since(self, mark: int) -> list[str]:
        """The lines after the first `mark` ones."""
        return self.lines[mark:]

    def trouble(self) -> str:
        """The warnings and errors logged so far, for failure messages."""
        return "\n".join(line for line in self.lines if re.search(r" (WARNING|ERROR) |quitting|exited", line))

    def finish(self, timeout: float = 30) -> str:
        """All output, once every process writing to the pipe has exited."""
        self._reader.join(timeout)
        assert not self._reader.is_alive(), "a process still holds the output open"
        return "\n".join(self.lines)


LOG_PID = re.compile(r"^\S+ \S+ (\d+) ")  # the platform's log format: date time pid logger level message


@contextlib.contextmanager
def mover(context: Context, queue: str = "default"):
    """A worker's mover of due jobs (jobs.due.Scheduler), in this process, holding `queue`'s lock."""
    from jobs.due import Scheduler  # here: conftest imports nothing of the worker at collection

    scheduler = Scheduler([queue], connection=context.redis, serializer=JSONSerializer)
    assert scheduler.acquire_locks() == {queue}
    try:
        yield scheduler
    finally:
        scheduler.release_locks()


def move_due(context: Context, job_ids: Iterable[str]) -> None:
    """Make the scheduled jobs `job_ids` of `default` (delayed, or waiting for a retry) due, and have a
    worker's mover move the due jobs to the queue."""
    context.redis.zadd("rq:scheduled:default", dict.fromkeys(job_ids, 1))  # due long ago
    with mover(context) as scheduler:
        scheduler.enqueue_scheduled_jobs()


def per_process(lines: Iterable[str]) -> Counter:
    """How many of `lines` (log lines of platform processes) each process wrote, by pid."""
    return Counter(int(m.group(1)) for line in lines if (m := LOG_PID.match(line)))


def events(context: Context, job_id: str) -> list[str]:
    """The events of a job's timeline, oldest first."""
    return [entry["event"] for entry in timeline.history(context.redis, context.keys, job_id)]


def ran(context: Context) -> list[str]:
    """The tags the sample jobs recorded (`test:ran`), in the order they ran."""
    return [raw.decode() for raw in context.redis.lrange("test:ran", 0, -1)]


def wait_for(
    condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except redis.ConnectionError:
            value = None
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def process_env(url: str, **extra: str) -> dict[str, str]:
    """Environment for a platform process under test."""
    env = {
        **os.environ,
        "JOBS_REDIS_URL": url,
        "JOBS_IMPORTS": TEST_JOBS,
        "JOBS_ORPHAN_TIMEOUT": str(ORPHAN_TIMEOUT),
        "JOBS_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.update(extra)
    return env


def jobctl(*args: str, url: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run `jobctl ARGS` to completion and return the result (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        env=process_env(url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Processes:
    """Platform processes started by a test; all are stopped when the test ends."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, url: str, **env: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs", *args],
            env=process_env(url, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # so a test can kill the whole pool with killpg
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)  # second signal: interrupt running jobs at once
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        for process in self.started:  # whatever a test orphaned in the group must not outlive it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def processes() -> Processes:
    procs = Processes()
    yield procs
    procs.stop_all()


def alive(pid: int) -> bool:
    """True while `pid` is a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """Pids of the direct children of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def descendants(root: int) -> set[int]:
    """Pids of every live process below `root` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def family_of(pid: int, at_least: int) -> set[int] | None:
    """The processes below `pid` once there are at least `at_least` of them."""
    found = descendants(pid)
    return found if len(found) >= at_least else None
