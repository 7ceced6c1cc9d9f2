"""Several workers in one process, one per thread (`--threads`), for jobs that spend their time waiting.

While one thread waits on a socket or a sleep, another runs: a process with 8 threads runs 8 waiting jobs
at once, for the memory of one process. Jobs that compute gain nothing (Python runs one thread at a
time); run more processes for them. Every thread is a worker of its own (registered, heartbeating, shown
in `jobctl workers`); the main thread supervises them: SIGTERM or SIGINT asks each to stop after its job,
and the pool's interrupt at the shutdown deadline interrupts every running job, which is requeued.

A job's timeout in a thread is raised by one watchdog thread per process: it stops Python code, but a
blocking call (a `time.sleep`, a socket read) ends first. Jobs that must be cut off inside a blocking
call belong in a process of their own (`--threads 1`, where the timeout is a signal).
"""

from __future__ import annotations

import functools
import signal
import threading
import time

from rq.timeouts import BaseDeathPenalty

from . import bodies
from .connection import Context
from .errors import WorkerInterrupted
from .execution import INTERRUPT_SIGNAL, Worker


class _Watchdog:
    """Raises a timeout in the threads whose job runs past its deadline; one thread for the process."""

    def __init__(self):
        self._deadlines: dict[object, tuple[float, int, type[BaseException]]] = {}
        self._changed = threading.Condition()
        self._wakes_at = float("inf")  # when the watchdog thread looks again
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, exception: type[BaseException]) -> object:
        """Raise `exception` in the calling thread in `seconds` unless `release`d first; returns the token
        to release."""
        token, deadline = object(), time.monotonic() + seconds
        with self._changed:
            self._deadlines[token] = (deadline, threading.get_ident(), exception)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="timeouts", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:  # most jobs share one timeout: later deadlines wake nobody
                self._changed.notify()
        return token

    def release(self, token: object) -> None:
        """The job ended: its timeout will not be raised."""
        with self._changed:
            self._deadlines.pop(token, None)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for token, (deadline, ident, exception) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[token]
                        bodies.raise_in(ident, exception)
                self._wakes_at = min(
                    (deadline for deadline, _, _ in self._deadlines.values()), default=float("inf")
                )
                self._changed.wait(None if self._wakes_at == float("inf") else self._wakes_at - now)


_watchdog = _Watchdog()


@functools.cache
def _timeout(exception: type[BaseException], seconds: float) -> type[BaseException]:
    """`exception` carrying RQ's timeout message when raised without arguments (as CPython raises an
    exception in another thread)."""

    def __init__(self):
        exception.__init__(self, f"Task exceeded maximum timeout value ({seconds} seconds)")

    return type(exception.__name__, (exception,), {"__init__": __init__, "__module__": exception.__module__})


class ThreadTimeout(BaseDeathPenalty):
    """RQ's job timeout for a job run in a worker thread (RQ's own, SIGALRM, works in the main thread
    only, and its TimerDeathPenalty starts a thread per job)."""

    def setup_death_penalty(self):
        self._token = (
            _watchdog.watch(self._timeout, _timeout(self._exception, self._timeout))
            if self._timeout > 0
            else None
        )

    def cancel_death_penalty(self):
        if self._token is not None:
            _watchdog.release(self._token)


def run(context: Context, queues: list[str], burst: bool) -> None:
    """Run `context.settings.threads` workers on `queues` in threads of this process until they have all
    stopped (with `burst`, when the queues are empty). Call it from the main thread."""
    settings = context.settings
    workers = [Worker(queues, context) for _ in range(settings.threads)]
    for worker in workers:
        worker.death_penalty_class = ThreadTimeout  # RQ's default is a signal: the main thread's only

    def stop(signum, frame) -> None:
        for worker in workers:
            worker.stop_after_job()

    def interrupt(signum, frame) -> None:
        stop(signum, frame)
        bodies.interrupt_all(WorkerInterrupted)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(INTERRUPT_SIGNAL, interrupt)
    threads = [
        threading.Thread(
            target=worker.work,
            kwargs={"burst": burst, "with_scheduler": number == 0, "logging_level": settings.log_level},
            name=f"worker-{number}",
        )
        for number, worker in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # wakes the main thread, where signal handlers run
