"""Job timeouts, RQ's death penalties made cheap enough to arm for every job: by SIGALRM in a worker
process's main thread (it stops a job even inside a blocking call), and by one watchdog thread per
process for jobs run in worker threads (it stops Python code; a blocking call ends first).

A job that goes on after its timeout (it caught it: an `except Exception` that logs and goes on) gets
JobTimeoutIgnored REPEAT seconds later, and again every REPEAT seconds until it ends."""

from __future__ import annotations

import _signal
import functools
import signal
import threading
import time

from rq.timeouts import BaseDeathPenalty

from . import bodies

ALARM_SLACK = 0.001  # seconds: an alarm armed again for what is left of a deadline is never set to zero
REPEAT = 1.0  # seconds between a timeout raised into a job and the next, while the job goes on
OUTSIDE_LOOK = 0.05  # seconds between looks while a job past its deadline is outside its function


class JobTimeoutIgnored(BaseException):
    """Raised into a job still running REPEAT seconds after its timeout was raised into it. A
    BaseException, as KeyboardInterrupt is, so that code catching Exception lets it through. It counts
    as the timeout it follows (`timeout`) for the retry policy."""

    timeout: type[BaseException]


class _Alarm:
    """Raises a timeout in the main thread when its job runs past its deadline, by SIGALRM, without RQ's
    four system calls per job: the handler is installed once, and an alarm that rings before the running
    job's deadline is armed again for the rest, so one alarm serves every job that starts while it is
    pending. An alarm that rings with no job running does nothing; one that rings past the deadline while
    the job is outside its function (bodies.running) looks again every OUTSIDE_LOOK."""

    def __init__(self):
        # (when to raise, what to raise then, what to raise every REPEAT seconds after)
        self._running: tuple[float, type[BaseException], type[BaseException]] | None = None

    def watch(self, seconds: float, exception: type[BaseException], then: type[BaseException]) -> None:
        """Raise `exception` in the main thread (the caller) in `seconds`, then `then` every REPEAT
        seconds, until `release`d. The exceptions are classes, raised without arguments."""
        # _signal's getsignal: signal's tries to turn a handler into an enum member first, and a method
        # fails (an exception raised and caught for every job)
        if _signal.getsignal(signal.SIGALRM) != self._ring:  # first use, or someone else's handler since
            signal.signal(signal.SIGALRM, self._ring)
        self._running = (time.monotonic() + seconds, exception, then)
        # Asked, not remembered: a job's own use of the alarm (signal.alarm(n) ... signal.alarm(0)) may
        # have cancelled the one pending.
        if not 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= seconds:
            signal.setitimer(signal.ITIMER_REAL, seconds)

    def release(self) -> None:
        """The job ended: its timeout will not be raised."""
        self._running = None

    def _ring(self, signum, frame) -> None:
        if self._running is None:
            return
        deadline, exception, then = self._running
        left = deadline - time.monotonic()
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(left, ALARM_SLACK))
            return
        if not bodies.is_running(threading.get_ident()):  # in the worker's code around the function
            signal.setitimer(signal.ITIMER_REAL, OUTSIDE_LOOK)
            return
        self._running = (time.monotonic() + REPEAT, then, then)
        signal.setitimer(signal.ITIMER_REAL, REPEAT)
        raise exception()


class _Watchdog:
    """Raises a timeout in the threads whose job runs past its deadline; one thread for the process. It
    raises only into a thread running its job's function (bodies.interrupt), so never into one in `watch`
    or `release`, which a job's thread calls before and after: an exception landing there could leave
    the lock of this watchdog held."""

    def __init__(self):
        # token -> (when to raise, thread, what to raise then, what to raise every REPEAT seconds after)
        self._deadlines: dict[object, tuple[float, int, type[BaseException], type[BaseException]]] = {}
        self._changed = threading.Condition()
        self._wakes_at = float("inf")  # when the watchdog thread looks again
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, exception: type[BaseException], then: type[BaseException]) -> object:
        """Raise `exception` in the calling thread in `seconds`, then `then` every REPEAT seconds, until
        `release`d, whenever the thread runs its job's function; returns the token to release."""
        token, deadline = object(), time.monotonic() + seconds
        with self._changed:
            self._deadlines[token] = (deadline, threading.get_ident(), exception, then)
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
                for token, (deadline, ident, exception, then) in list(self._deadlines.items()):
                    if deadline <= now:  # raised unless outside the function, or the last one is pending
                        raised = bodies.interrupt(ident, exception)
                        self._deadlines[token] = (now + REPEAT, ident, then if raised else exception, then)
                self._wakes_at = min(
                    (deadline for deadline, _, _, _ in self._deadlines.values()), default=float("inf")
                )
                self._changed.wait(None if self._wakes_at == float("inf") else self._wakes_at - now)


_watchdog = _Watchdog()
_alarm = _Alarm()


@functools.cache
def _timeouts(
    exception: type[BaseException], seconds: float
) -> tuple[type[BaseException], type[BaseException]]:
    """What a job running past its timeout of `seconds` gets, as classes raised without arguments (as
    CPython raises an exception in another thread): `exception` carrying RQ's message, then
    JobTimeoutIgnored."""
    message = f"Task exceeded maximum timeout value ({seconds} seconds)"

    def first(self):
        exception.__init__(self, message)

    def then(self):
        JobTimeoutIgnored.__init__(self, f"{message} and went on after it")

    return (
        type(exception.__name__, (exception,), {"__init__": first, "__module__": exception.__module__}),
        type(
            JobTimeoutIgnored.__name__,
            (JobTimeoutIgnored,),
            {"__init__": then, "__module__": __name__, "timeout": exception},
        ),
    )


class JobTimeout(BaseDeathPenalty):
    """RQ's death penalty for our workers: in a process's main thread by the alarm (which stops a job even
    in a blocking call), in other threads by the watchdog (RQ's own signal works in the main thread only,
    and its TimerDeathPenalty starts a thread per job)."""

    def setup_death_penalty(self):
        self._watcher = None
        if self._timeout <= 0:
            return
        raised = _timeouts(self._exception, self._timeout)
        if threading.current_thread() is threading.main_thread():
            self._watcher = _alarm
            _alarm.watch(self._timeout, *raised)
        else:
            self._watcher = _watchdog
            self._token = _watchdog.watch(self._timeout, *raised)

    def cancel_death_penalty(self):
        if self._watcher is _alarm:
            _alarm.release()
        elif self._watcher is _watchdog:
            _watchdog.release(self._token)
