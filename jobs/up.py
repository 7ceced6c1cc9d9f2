"""`jobctl up`: the whole platform on one machine, for a laptop.

Uses JOBS_REDIS_URL when set, else the default Redis when it answers, else an embedded server in the data
directory (reused if an earlier run left one). Starts a worker pool, a scheduler and the dashboard as child processes;
Ctrl-C (or SIGTERM) stops them gracefully, then the embedded server, whenever it comes, even during start-up.
A child that exits is restarted, later and later while it keeps exiting soon after its start; a child that
refuses its configuration (exit code 2) stops everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from . import billing
from .cli_common import EXIT_USER_ERROR
from .cli_dashboard import check_address
from .config import DEFAULT_REDIS_URL, Settings
from .connection import Context, client_for, ping
from .embedded import EmbeddedServer, running_url
from .errors import ConfigError, RedisUnavailable
from .restarts import CrashLoop

log = logging.getLogger("jobs.up")
PROCESSES = {"worker": ["worker"], "scheduler": ["scheduler"], "dashboard": ["dashboard"]}
POLL_INTERVAL = 0.5  # seconds between two looks at the children
RESTART_DELAY = 0.5  # seconds before a child that exited after a healthy run is started again
MAX_RESTART_DELAY = 30.0
STOP_GRACE = 15.0  # seconds beyond the shutdown timeout that a child may take to stop before it is killed


class Child:
    """A platform process run by `up`, in a session of its own: the terminal's Ctrl-C reaches `up` alone,
    which stops the children in order. Restarted after it exits, later and later while it keeps exiting
    soon after its start (restarts.CrashLoop)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]):
        self.name, self.command, self.env = name, command, env
        self.crash_loop = CrashLoop(RESTART_DELAY, MAX_RESTART_DELAY)
        self.restart_at: float | None = None  # monotonic time of the pending restart, if it has exited
        self._start()

    def _start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    def tend(self, now: float) -> int | None:
        """Restart the process if its restart is due at `now` (monotonic); if it is seen to have exited,
        set the time of its restart and return its exit code (once per exit), else None."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self._start()
            return None
        code = self.process.poll()
        if code is not None:
            self.restart_at = now + self.crash_loop.delay(now - self.started_at)
        return code

    def stop(self, timeout: float) -> None:
        """Wait up to `timeout` for the process to exit (after SIGTERM), then SIGKILL its process group: the
        session holds its own processes (the pool's workers, gunicorn's), which would outlive it."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _choose_redis(settings: Settings, embedded: bool) -> tuple[str, EmbeddedServer | None]:
    if settings.redis_url and embedded:
        raise ConfigError("give JOBS_REDIS_URL / --redis-url or --embedded, not both")
    if settings.redis_url:
        ping(client_for(settings.redis_url, resilient=False), settings.redis_url)
        return settings.redis_url, None
    candidates = (
        (running_url(settings.data_dir),) if embedded else (running_url(settings.data_dir), DEFAULT_REDIS_URL)
    )
    for url in filter(None, candidates):
        try:
            ping(client_for(url, resilient=False), url)
            if url != DEFAULT_REDIS_URL:
                break  # an embedded server of an earlier run: adopt it below so it is stopped with us
            return url, None
        except RedisUnavailable:
            continue
    server = EmbeddedServer(settings.data_dir)
    url = server.start()
    log.info("started embedded Redis-compatible server at %s (data in %s)", url, server.data_dir)
    return url, server


def _stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set from now on, instead of interrupting whatever `up` is doing."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _prepare_store(settings: Settings, url: str) -> None:
    """Check the job store at `url` for eviction and register the billing schedule in it."""
    context = Context.connect(settings.with_(redis_url=url))
    try:
        context.check_eviction()
        log.info("job store: %s", url)
        billing.register_schedule(context)
    finally:
        context.redis.close()


def _start_children(settings: Settings, url: str, children: list[Child]) -> None:
    """Start one of each platform process on `url`, appending each to `children` as it starts."""
    env = {**os.environ, "JOBS_REDIS_URL": url}
    if settings.imports:
        env["JOBS_IMPORTS"] = ",".join(settings.imports)
    for name, args in PROCESSES.items():
        children.append(Child(name, [sys.executable, "-m", "jobs", *args], env))


def _supervise(children: list[Child], stop: threading.Event) -> int:
    """Keep the children running until `stop` is set (return 0), or until one refuses its configuration
    (return EXIT_USER_ERROR; its own error line says why)."""
    while not stop.wait(POLL_INTERVAL):
        for child in children:
            now = time.monotonic()
            code = child.tend(now)
            if code == EXIT_USER_ERROR:
                log.error(
                    "%s refused its configuration (exit code %s); stopping everything", child.name, code
                )
                return EXIT_USER_ERROR
            if code is not None:
                log.warning(
                    "%s exited with %s; restarting it in %.1fs", child.name, code, child.restart_at - now
                )
    return 0


def _stop_children(children: list[Child], timeout: float) -> None:
    """SIGTERM the children still running, then give each up to `timeout` to stop before killing it."""
    if children:
        log.info("stopping workers and scheduler")
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        child.stop(timeout)


def run_platform(settings: Settings, embedded: bool = False) -> int:
    """Run Redis (if needed; `embedded` insists on our own server), workers, the scheduler and the
    dashboard until interrupted, then stop what was started, whatever ended the run; return the exit code
    (EXIT_USER_ERROR if a child refused its configuration)."""
    check_address(settings)
    stop = _stop_on_signals()
    url, server = _choose_redis(settings, embedded)
    children: list[Child] = []
    try:
        _prepare_store(settings, url)
        _start_children(settings, url, children)
        return _supervise(children, stop)
    finally:
        _stop_children(children, settings.shutdown_timeout + STOP_GRACE)
        if server is not None:
            server.stop()
            log.info("embedded server stopped")
