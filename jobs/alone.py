"""Running a job alone in a process of several workers (`--threads`).

A job that a dead worker held may be what killed it (maintenance.py). Its worker runs it holding no
other job; with threads, the process's other workers must hold none either, nor run one, nor be taking
one, or they die with it at each of its runs, and the jobs they held, taken alone in turn beside it,
are counted as dying of their own accord until they are failed as poison.

The worker that takes such a job claims the process (`admit`) and gives back what it holds, that job
included; the others, at their next take or when their wait for jobs ends, give back what they hold and
wait (`wait_turn`), until they all do; the claimant then takes again and runs what it takes (that job,
unless another process's worker took it meanwhile) before it lets go (`release`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

WAIT_SLICE = 0.5  # seconds between looks at a stop request while waiting


class Alone:
    """The workers of one process, and which of them, if any, runs a job alone."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._active: set[object] = set()  # workers that may hold, take or run jobs
        self._claimant: object | None = None

    def join(self, worker: object) -> None:
        """`worker` is one of the process's, active from now on."""
        with self._changed:
            self._active.add(worker)

    def leave(self, worker: object) -> None:
        """`worker` has stopped for good (its thread ends): it holds and takes nothing more."""
        with self._changed:
            self._active.discard(worker)
            if self._claimant is worker:
                self._claimant = None
            self._changed.notify_all()

    def claimed_by_another(self, worker: object) -> bool:
        """Whether another worker runs a job alone, or is about to: `worker` must make way."""
        claimant = self._claimant
        return claimant is not None and claimant is not worker

    def admit(self, worker: object, alone: bool) -> bool:
        """Whether `worker` may run the job it has just taken now (one that must run `alone`, or not).
        Taking one that must, it claims the process if no other worker has; it may run it once the
        others all wait. Otherwise it gives back what it holds and waits its turn (`wait_turn`)."""
        with self._changed:
            if self._claimant is None and alone:
                self._claimant = worker
                self._changed.notify_all()
            if self._claimant is None:
                return True
            return self._claimant is worker and self._active == {worker}

    def wait_turn(self, worker: object, stop: Callable[[], bool], holding: bool) -> bool:
        """Return True once `worker` may take jobs: at once unless a worker has claimed the process. One
        that has waits for the others, which wait until it lets go. False when `worker` must first give
        back what it is `holding` (jobs taken, or run and not recorded: it must hold nothing while it
        waits), or when `stop()` ended the wait (and a claim of its own)."""
        with self._changed:
            if self._claimant is None:
                return True
            if holding:
                return False
            self._active.discard(worker)
            self._changed.notify_all()
            try:
                while not stop():
                    if self._claimant is None or (self._claimant is worker and not self._active):
                        return True
                    self._changed.wait(WAIT_SLICE)
                if self._claimant is worker:
                    self._claimant = None
                    self._changed.notify_all()
                return False
            finally:
                self._active.add(worker)

    def release(self, worker: object) -> None:
        """`worker`'s job run alone has ended (or it took none): the others may take jobs again."""
        with self._changed:
            if self._claimant is worker:
                self._claimant = None
                self._changed.notify_all()
