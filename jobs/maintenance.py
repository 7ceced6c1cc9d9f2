"""Maintenance that any number of processes may run at once: recovery of jobs whose worker died
(orphans) and retention of RQ's registries.

Orphan recovery is two atomic steps, so a crash between them neither loses nor duplicates a job:
1. a Lua script moves started-registry entries whose heartbeat expired into `{p}orphans` (a zset that,
   like RQ's registries, always holds the job while it is neither running nor queued);
2. per entry, a WATCHed transaction removes it from `{p}orphans` and requeues the job, or fails it as
   poison; a concurrent sweeper's transaction aborts, and an entry left by a crashed sweeper is finished
   by the next sweep.

A job known to have been running (its worker's heartbeat thread marked its entry: execution.RUNNING_MARK)
is requeued under its retry policy, as RQ treats an abandoned job: with no retry left it fails. Any other
may never have started (a worker takes short jobs ahead, jobs.prefetch, and a job is marked within a
second of its start): it goes back to the front of its queue without using a retry.

A job a dead worker held is from then on taken alone, and its worker holds no other job while it runs
(jobs.dequeue), so that a job that kills its worker takes no other job down with it more than once. It
is failed as poison at its JOBS_MAX_ORPHANS-th death, if that death is surely its own: it was seen
running, or it was taken alone (any death after the first).
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import JobStatus
from rq.utils import now, parse_composite_key

from . import admin, index, locks, timeline
from .connection import Context, OutageLog
from .dequeue import place_in_take, quarantine
from .enqueue import queue_for, queue_names
from .execution import RUNNING_MARK, clean_registries_except_started
from .rqjob import Job, pending_ttl, put_back

log = logging.getLogger("jobs.maintenance")

# KEYS: a started registry, the orphans set. ARGV: now (whole seconds), the queue's name. An entry goes to
# the orphans set scored with now, plus RUNNING_MARK when its job was known to be running.
_CLAIM = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], 0, ARGV[1], 'WITHSCORES', 'LIMIT', 0, 500)
for i = 1, #expired, 2 do
  local member, mark = expired[i], tonumber(expired[i + 1]) % 1
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], ARGV[1] + mark, ARGV[2] .. '|' .. member)
end
return #expired / 2
"""


def sweep_orphans(context: Context, now: float | None = None) -> list[str]:
    """Recover every job whose worker died while running it (its heartbeats stopped); return their ids."""
    claim_orphans(context, now)
    return recover_claimed(context)


def claim_orphans(context: Context, now: float | None = None) -> int:
    """Step 1: move expired started-registry entries of every queue into the orphans set."""
    now = int(time.time() if now is None else now)
    claim = context.redis.register_script(_CLAIM)
    return sum(
        claim(
            keys=[queue_for(context, name).started_job_registry.key, context.keys.orphans], args=[now, name]
        )
        for name in queue_names(context)
    )


def recover_claimed(context: Context) -> list[str]:
    """Step 2: requeue or fail each claimed orphan exactly once, whoever else is sweeping. The jobs of one
    take that go back to the front of their queue go back in the order the take had them."""
    entries = sorted(
        (raw.decode() for raw in context.redis.zrange(context.keys.orphans, 0, -1)), key=_last_first
    )
    recovered = []
    for entry in entries:
        job_id = _recover(context, context.keys.orphans, entry)
        if job_id:
            recovered.append(job_id)
    return recovered


def _parsed(entry: str) -> tuple[str, str, str]:
    """An orphans-set entry's queue name, job id and execution id."""
    queue_name, member = entry.split("|", 1)
    return queue_name, *parse_composite_key(member)


def _last_first(entry: str) -> tuple[str, int]:
    """Orphans in the order to put them back, each at the front of its queue: a take's last job first."""
    prefix, place = place_in_take(_parsed(entry)[2])
    return prefix, -place


def _recover(context: Context, orphans_key: str, entry: str) -> str | None:
    queue_name, job_id, execution_id = _parsed(entry)
    queue = queue_for(context, queue_name)
    job_key = Job.key_for(job_id)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(orphans_key, job_key)
                found = pipe.zscore(orphans_key, entry)
                if found is None:
                    return None
                if not pipe.exists(job_key):
                    pipe.multi()
                    pipe.zrem(orphans_key, entry)
                    pipe.execute()
                    return None
                execution = Execution(execution_id, job_id, connection=context.redis)
                try:
                    job = Job.fetch(job_id, connection=context.redis)
                except (NoSuchJobError, ValueError, TypeError) as exc:  # a hash written by hand, not by RQ
                    pipe.reset()
                    quarantine(context, queue, execution, f"the job's hash is not an RQ job: {exc}")
                    context.redis.zrem(orphans_key, entry)  # once filed: a crash before sweeps it again
                    return None
                # the execution record may have expired with the dead worker's heartbeats; the job keeps the name
                raw_worker = pipe.hget(execution.key, "worker_name")
                worker_name = raw_worker.decode() if raw_worker else job.worker_name
                orphaned = job.orphaned + 1
                pipe.multi()
                pipe.zrem(orphans_key, entry)
                pipe.hset(job_key, "orphaned", orphaned)
                pipe.delete(execution.key)
                _requeue_or_fail(context, pipe, job, queue, orphaned, worker_name, found % 1 == RUNNING_MARK)
                pipe.execute()
                log.warning(
                    "job %s orphaned by worker %s (%d time(s)); recovered", job_id, worker_name, orphaned
                )
                if job.get_status(refresh=False) == JobStatus.FAILED:  # as RQ's recovery of an abandoned job
                    queue.enqueue_dependents(job)  # those that may follow a failure
                return job_id
            except redis.WatchError:
                continue


def _requeue_or_fail(
    context: Context, pipe, job: Job, queue, orphaned: int, worker_name: str | None, running: bool
) -> None:
    limit = context.settings.max_orphans
    timeline.record(
        pipe,
        context.keys,
        job.id,
        "orphaned",
        pending_ttl(context),
        worker=worker_name,
        count=orphaned,
        seen_running=running,
    )
    # a death is surely the job's own when it was seen running, or taken alone: as it is after a first death
    poison = orphaned >= limit and (running or orphaned > 1)
    if not (running or poison):  # it may never have started: no attempt to count
        put_back(pipe, context, job, queue)
        return
    if poison:
        job.error = f"poison job: a worker died holding it {orphaned} times"
    elif job.retries_left:
        job.error = "worker died while running the job"
        job.retry(queue, pipe)
        return
    else:
        job.error = "worker died while running the job, and no retries are left"
    job.ended_at = now()  # the hash holds an earlier attempt's end, if any
    job.set_status(JobStatus.FAILED, pipeline=pipe)
    job._handle_failure(job.error, pipe, worker_name=worker_name or "")


def clean_registries(context: Context) -> None:
    """Apply retention to RQ's registries of every queue (finished, failed, deferred, canceled) and to
    the index of ended jobs."""
    names = queue_names(context)
    index.sweep(context.redis, context.keys, names)
    for name in names:
        queue = queue_for(context, name)
        if queue.acquire_maintenance_lock():
            try:
                clean_registries_except_started(queue)
            finally:
                queue.release_maintenance_lock()


class Sweeper(threading.Thread):
    """A daemon thread that sweeps orphans every `interval` seconds (and, if asked, applies retention),
    logging once per outage rather than once per failed attempt."""

    def __init__(self, context: Context, interval: float, retention: bool = False):
        super().__init__(name="sweeper", daemon=True)
        self.context, self.interval, self.retention = context, interval, retention
        self.stopped = threading.Event()
        self._last_retention = 0.0

    def run(self) -> None:
        outage = OutageLog(log, "maintenance")
        while not self.stopped.wait(self.interval):
            try:
                self.tick()
                outage.succeeded()
            except redis.RedisError as exc:
                outage.failed(exc)
            except Exception:  # a bug must not end orphan recovery and retention in this process
                log.exception("maintenance round failed")

    def tick(self) -> None:
        """One round: orphans always, retention at most once a minute."""
        sweep_orphans(self.context)
        if self.retention and time.monotonic() - self._last_retention > 60:
            clean_registries(self.context)
            locks.prune_index(self.context)
            if stranded := admin.cancel_stranded(self.context):
                log.info(
                    "canceled %d deferred job(s) that can never run: %s", len(stranded), ", ".join(stranded)
                )
            self._last_retention = time.monotonic()

    def stop(self) -> None:
        self.stopped.set()
