"""The worker pool: N long-lived worker processes under one supervisor.

The supervisor restarts a worker that dies, sweeps orphaned jobs, and shuts down gracefully: on SIGTERM
or SIGINT the workers stop taking jobs and finish the running ones until the shutdown deadline; then
running jobs are interrupted and requeued (a second signal brings the deadline forward).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import wait

from . import threads
from .config import Settings
from .connection import Context, activate
from .execution import INTERRUPT_SIGNAL, Worker
from .maintenance import Sweeper
from .restarts import CrashLoop

log = logging.getLogger("jobs.pool")
KILL_GRACE = 10.0  # seconds after the interrupt before a worker that still runs is killed
_fork = multiprocessing.get_context("fork")


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its supervisor dies (no effect elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_main(settings: Settings, queues: list[str], burst: bool) -> None:
    _die_with_parent()
    # The supervisor's handlers were inherited by the fork; until RQ installs its own, stop plainly on
    # SIGTERM and leave Ctrl-C to the supervisor.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    context = activate(Context.connect(settings, resilient=True, check=False))
    if settings.threads > 1:
        threads.run(context, queues, burst)
        return
    worker = Worker(queues, context)
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)


class Pool:
    """Supervises `settings.concurrency` worker processes on `settings.queues` (strict priority order),
    each running `settings.threads` workers."""

    def __init__(self, context: Context, burst: bool = False):
        self.context = context
        self.settings = context.settings
        self.burst = burst
        self.workers: list[multiprocessing.Process] = []
        self.deadline: float | None = None
        self.interrupted = False
        self.started_at: dict[int, float] = {}  # pid -> monotonic start time

    def run(self) -> int:
        """Run until stopped (or, with burst, until the queues are drained); return the exit code."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        sweeper = Sweeper(self.context, interval=max(0.5, self.settings.orphan_timeout / 4))
        sweeper.start()
        self.workers = [self._start() for _ in range(self.settings.concurrency)]
        crash_loop = CrashLoop(first=0.1, ceiling=5.0)
        try:
            while self.workers:
                wait([w.sentinel for w in self.workers], timeout=0.2)
                for worker in [w for w in self.workers if not w.is_alive()]:
                    self.workers.remove(worker)
                    worker.join()
                    lived = time.monotonic() - self.started_at.pop(worker.pid)
                    if self._should_restart(worker):
                        log.warning("worker %s exited with %s; restarting", worker.pid, worker.exitcode)
                        time.sleep(crash_loop.delay(lived))
                        if self._should_restart(worker):  # a stop signal may have come meanwhile
                            self.workers.append(self._start())
                self._enforce_deadline()
        finally:
            sweeper.stop()
        return 0

    def _start(self) -> multiprocessing.Process:
        process = _fork.Process(
            target=_worker_main,
            args=(self.settings, list(self.settings.queues), self.burst),
            name="jobs-worker",
        )
        process.start()
        self.started_at[process.pid] = time.monotonic()
        return process

    def _should_restart(self, worker: multiprocessing.Process) -> bool:
        if self.deadline is not None:
            return False
        return not (self.burst and worker.exitcode == 0)

    def _request_stop(self, signum, frame) -> None:
        if self.deadline is None:
            log.info("stopping: workers finish their jobs for up to %ss", self.settings.shutdown_timeout)
            self.deadline = time.monotonic() + self.settings.shutdown_timeout
            self._signal_all(signal.SIGTERM)
        else:
            log.info("second stop signal: interrupting running jobs now")
            self.deadline = time.monotonic()

    def _enforce_deadline(self) -> None:
        if self.deadline is None:
            return
        overdue = time.monotonic() - self.deadline
        if overdue >= 0 and not self.interrupted:
            self.interrupted = True
            self._signal_all(INTERRUPT_SIGNAL)
        elif overdue >= KILL_GRACE:
            self._signal_all(signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.pid and worker.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signum)
