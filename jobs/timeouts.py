"""Job timeouts, RQ's death penalties made cheap enough to arm for every job: by SIGALRM in a worker
process's main thread (it stops a job even inside a blocking call), and by one watchdog thread per
process for jobs run in worker threads (it stops Python code; a blocking call ends first)."""

from __future__ import annotations

import _signal
import functools
import signal
import threading
import time

from rq.timeouts import BaseDeathPenalty

from . import bodies

ALARM_SLACK = 0.001  # seconds: an alarm armed again for what is left of a deadline is never set to zero


class _Alarm:
    """Raises a timeout in the main thread when its job runs past its deadline, by SIGALRM, without RQ's
    four system calls per job: the handler is installed once, and an alarm that rings before the running
    job's deadline is armed again for the rest, so one alarm serves every job that starts while it is
    pending. An alarm that rings with no job running does nothing."""

    def __init__(self):
        self._running: tuple[float, BaseException] | None = None  # (deadline, exception to raise)
        self._rings_at = 0.0  # monotonic time of the pending alarm (0: none)

    def watch(self, seconds: float, exception: BaseException) -> None:
        """Raise `exception` in the main thread (the caller) in `seconds` unless `release`d first."""
        deadline = time.monotonic() + seconds
        # _signal's getsignal: signal's tries to turn a handler into an enum member first, and a method
        # fails (an exception raised and caught for every job)
        if _signal.getsignal(signal.SIGALRM) != self._ring:  # first use, or someone else's handler since
            signal.signal(signal.SIGALRM, self._ring)
            self._rings_at = 0.0
        self._running = (deadline, exception)
        if not 0 < self._rings_at <= deadline:
            self._arm(seconds)

    def release(self) -> None:
        """The job ended: its timeout will not be raised."""
        self._running = None

    def _arm(self, seconds: float) -> None:
        self._rings_at = time.monotonic() + seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def _ring(self, signum, frame) -> None:
        self._rings_at = 0.0
        if self._running is None:
            return
        deadline, exception = self._running
        left = deadline - time.monotonic()
        if left > 0:
            self._arm(max(left, ALARM_SLACK))
            return
        self._running = None
        raise exception


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
_alarm = _Alarm()


@functools.cache
def _timeout(exception: type[BaseException], seconds: float) -> type[BaseException]:
    """`exception` carrying RQ's timeout message when raised without arguments (as CPython raises an
    exception in another thread)."""

    def __init__(self):
        exception.__init__(self, f"Task exceeded maximum timeout value ({seconds} seconds)")

    return type(exception.__name__, (exception,), {"__init__": __init__, "__module__": exception.__module__})


class JobTimeout(BaseDeathPenalty):
    """RQ's death penalty for our workers: in a process's main thread by the alarm (which stops a job even
    in a blocking call), in other threads by the watchdog (RQ's own signal works in the main thread only,
    and its TimerDeathPenalty starts a thread per job)."""

    def setup_death_penalty(self):
        self._watcher = None
        if self._timeout <= 0:
            return
        message = f"Task exceeded maximum timeout value ({self._timeout} seconds)"
        if threading.current_thread() is threading.main_thread():
            self._watcher = _alarm
            _alarm.watch(self._timeout, self._exception(message))
        else:
            self._watcher = _watchdog
            self._token = _watchdog.watch(self._timeout, _timeout(self._exception, self._timeout))

    def cancel_death_penalty(self):
        if self._watcher is _alarm:
            _alarm.release()
        elif self._watcher is _watchdog:
            _watchdog.release(self._token)
