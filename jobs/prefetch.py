"""Jobs a worker took ahead of running them, so that short jobs cost a fraction of a round trip each.

While a worker's jobs run quickly (under FAST_JOB), it takes up to PREFETCH jobs per take from the first
non-empty queue, all started at once (in the started registry, with their heartbeat deadline), and runs
them one after the other; their finishes ride together in the next take, which it sends as soon as it
runs the first of them (dequeue.Ahead), so that the server runs it while the worker runs the rest. A
job taken ahead keeps every guarantee of a job taken alone: it is in the started registry from its take
to its finish, its worker's heartbeats keep it there, and a killed worker's jobs are recovered by the
orphan sweep. The price is bounded: a job queued meanwhile on a higher-priority queue, or an idle
worker elsewhere, waits for at most 2 x PREFETCH short jobs (those held and those in flight); and jobs
left waiting behind one that turned out slow are given back to the front of their queue within about
HOLD seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque

PREFETCH = 8  # jobs taken at once while jobs are short
FAST_JOB = 0.005  # seconds: a job that ran at most this long makes the next take take PREFETCH jobs
HOLD = 1.0  # seconds a taken job may wait for its worker before it is given back


class Prefetched:
    """A worker's jobs taken ahead, shared by its work loop (which runs them) and its heartbeat thread
    (which keeps them started, or gives them back)."""

    def __init__(self) -> None:
        self._jobs: deque = deque()  # (job, queue), started by this worker, in the order taken
        self._lock = threading.Lock()
        self._touched = time.monotonic()
        self._fast = False

    def wanted(self) -> int:
        """How many jobs the next take should take at most."""
        return PREFETCH if self._fast else 1

    def ran(self, seconds: float) -> None:
        """Note how long the last job ran."""
        self._fast = seconds <= FAST_JOB

    def fill(self, jobs: list) -> None:
        """Keep `jobs` ((job, queue) pairs, taken and started) to run next."""
        with self._lock:
            self._jobs.extend(jobs)
            self._touched = time.monotonic()

    def next(self):
        """The next job to run, (job, queue), or None."""
        with self._lock:
            if not self._jobs:
                return None
            self._touched = time.monotonic()
            return self._jobs.popleft()

    def entries(self) -> list[tuple[str, str]]:
        """(queue name, started-registry entry) of every job held, for its heartbeat."""
        with self._lock:
            return [(job.origin, job.execution.composite_key) for job, _ in self._jobs]

    def release(self, waited: float = 0.0) -> list:
        """Take every job held out, if the work loop has not come for one for `waited` seconds (at once
        with 0); they are to be given back or left to the orphan sweep, never run by this worker."""
        with self._lock:
            if not self._jobs or time.monotonic() - self._touched < waited:
                return []
            jobs = list(self._jobs)
            self._jobs.clear()
            return jobs
