"""The scheduler process: fires due recurring schedules, runs maintenance (orphans, retention) so it
happens even when workers are idle, and announces itself with a heartbeat. Any number may run."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time

import redis

from . import bookkeeping, recurring
from .connection import Context, OutageLog
from .firetimes import until_next_multiple
from .maintenance import Sweeper

log = logging.getLogger("jobs.scheduler")
TICK = 0.2  # seconds between looks at the due set, on its multiples: just after each whole second
HEARTBEAT_EVERY = 5.0
FIRE_BATCH = 100  # schedules read per tick, their jobs written together (about 25 ms of preparing)
STOP_GRACE = 2.0  # seconds a stopped process waits for its tick to end; one waiting on Redis is left behind


class Scheduler:
    """One scheduler: `tick()` does one round; `run()` ticks until stopped."""

    def __init__(self, context: Context):
        self.context = context
        self.name = f"scheduler-{socket.gethostname()}-{os.getpid()}"
        self.stopped = threading.Event()
        self._complaints: dict[str, str] = {}  # schedule id -> last error logged, to log each error once
        self._last_beat = 0.0
        self._bookkeeping = bookkeeping.client(context.redis)

    def tick(self, now: float | None = None) -> int:
        """Fire what is due at `now` (at most FIRE_BATCH schedules); return how many were due."""
        if time.monotonic() - self._last_beat > HEARTBEAT_EVERY:
            self.beat()
        outcome = recurring.fire_due(self.context, now, limit=FIRE_BATCH)
        for schedule_id, result in outcome.items():
            if isinstance(result, Exception):
                if self._complaints.get(schedule_id) != str(result):
                    log.error("schedule %s cannot fire (it stays due): %s", schedule_id, result)
                self._complaints[schedule_id] = str(result)
                continue
            self._complaints.pop(schedule_id, None)
            for job_id in result:
                log.info("schedule %s fired: job %s", schedule_id, job_id)
        return len(outcome)

    def beat(self) -> None:
        """Record this scheduler as alive (shown by `jobctl workers`); forget long-dead ones. Bookkeeping:
        written even when Redis is full."""
        key, now = self.context.keys.schedulers, time.time()
        with self._bookkeeping.pipeline() as pipe:
            pipe.zadd(key, {self.name: now})
            pipe.zremrangebyscore(key, "-inf", now - 86400)
            pipe.execute()
        self._last_beat = time.monotonic()

    def run(self) -> None:
        """Tick until `stop()`, riding out Redis outages with one log line per outage."""
        outage = OutageLog(log, "scheduler")
        while not self.stopped.is_set():
            try:
                backlog = self.tick() >= FIRE_BATCH  # more may be due: go on at once
                outage.succeeded()
            except redis.RedisError as exc:
                outage.failed(exc)
                backlog = False
            if not backlog:
                self.stopped.wait(until_next_multiple(time.time(), TICK))
        if outage.trouble is None:  # else Redis is gone (its retries would take minutes): the entry ages out
            with contextlib.suppress(redis.RedisError):
                self.context.redis.zrem(self.context.keys.schedulers, self.name)

    def stop(self) -> None:
        self.stopped.set()


def run_scheduler(context: Context) -> int:
    """The scheduler process: schedules and maintenance until SIGTERM/SIGINT; returns exit code 0 (1 when
    its loop ended on an error). It exits within STOP_GRACE of the signal even while its tick waits on
    an unreachable Redis (its retries take over half a minute to fail): the tick is left behind, in a
    thread of its own, and its fires are single scripts, which Redis runs whole or not at all."""
    scheduler = Scheduler(context)
    sweeper = Sweeper(context, interval=max(0.5, context.settings.orphan_timeout / 4), retention=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop())
    sweeper.start()
    log.info(
        "%s running (schedules every %.1fs, orphan recovery every %.1fs)",
        scheduler.name,
        TICK,
        sweeper.interval,
    )
    loop = threading.Thread(target=scheduler.run, name="schedules", daemon=True)
    loop.start()
    while loop.is_alive() and not scheduler.stopped.is_set():
        loop.join(0.5)  # wakes the main thread, where the stop signal's handler runs
    loop.join(STOP_GRACE)
    sweeper.stop()
    log.info("%s stopped", scheduler.name)
    return 0 if scheduler.stopped.is_set() else 1
