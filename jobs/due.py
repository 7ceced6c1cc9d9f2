"""The RQ scheduler each worker process runs: it moves due delayed jobs and retries to their queues,
waking idle workers of those queues."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import redis
from rq.job import JobStatus
from rq.queue import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.utils import current_timestamp

from .connection import OutageLog, current
from .dequeue import wake
from .errors import RedisFull
from .firetimes import until_next_multiple
from .rqjob import Job

log = logging.getLogger("jobs.worker")


class _DueJobs(ScheduledJobRegistry):
    """A queue's scheduled registry as RQ's scheduler moves its due jobs to the queue: each job moved
    also wakes an idle worker of the queue, in the same transaction. RQ queues them through its plain
    Queue, which does not, so an idle worker would find them only within dequeue.IDLE_WAIT."""

    more_due = False  # whether the last look found a full chunk of due jobs: more may be due

    def get_jobs_to_schedule(self, timestamp=None, chunk_size=1000):
        """RQ's due jobs, at most `chunk_size`, noting whether there may be more."""
        due = super().get_jobs_to_schedule(timestamp, chunk_size)
        self.more_due = len(due) == chunk_size
        return due

    def remove(self, job, pipeline=None, delete_job=False):
        removed = super().remove(job, pipeline, delete_job)
        if pipeline is not None:
            wake(pipeline, current().keys, self.name)
        return removed


MOVE_BUDGET = 10.0  # seconds one look may spend moving due jobs: the next renews its locks (60 s leases)
LOCK_RETRY = 5  # seconds between tries for the locks of queues whose due jobs this process's mover lacks


class Scheduler(RQScheduler):
    """RQ's scheduler (moves due delayed jobs and retries to their queues, waking idle workers), riding
    out Redis outages with one log line per outage instead of dying with a traceback (RQ would restart it
    only after 10 minutes), and ending when its worker process dies (RQ's would run on forever as an
    orphan). It looks just after each whole second, when jobs are due (RQ's due times are whole seconds),
    where RQ's looks at a random phase of its interval. While Redis is full it cannot take or renew its
    locks, and pauses until Redis has room. It tries for the locks of the queues it lacks every
    LOCK_RETRY (RQ's, every 2 minutes), so it takes over the queues of a mover that stopped within
    seconds."""

    def prepare_registries(self, queue_names=None):
        """RQ's, with registries whose moved jobs wake idle workers."""
        super().prepare_registries(queue_names)
        self._scheduled_job_registries = [
            _DueJobs(registry.name, connection=self.connection, serializer=self.serializer)
            for registry in self._scheduled_job_registries
        ]

    @property
    def should_reacquire_locks(self) -> bool:
        """Whether to try again for the locks of the queues this mover lacks: LOCK_RETRY after its last."""
        if self._queue_names == self.acquired_locks:
            return False
        last = self.lock_acquisition_time
        return last is None or (datetime.now() - last).total_seconds() >= LOCK_RETRY

    def acquire_locks(self, auto_start=False):
        """RQ's; a lock that a full Redis refuses to write is not acquired (tried again later)."""
        try:
            return super().acquire_locks(auto_start)
        except RedisFull:
            return set()

    def enqueue_scheduled_jobs(self):
        """RQ's, repeated while a queue has due jobs left (RQ's moves at most 1,000 per queue per look,
        so a burst due at once would run up to a second per thousand late), for at most MOVE_BUDGET; and
        a job canceled or deleted while it is moved stays so."""
        self._status = self.Status.WORKING
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        deadline = time.monotonic() + MOVE_BUDGET
        while True:
            for registry in self._scheduled_job_registries:
                self._move_due(registry)
            more = any(registry.more_due for registry in self._scheduled_job_registries)
            if not more or time.monotonic() > deadline:
                break
        self._status = self.Status.STARTED

    def _move_due(self, registry: _DueJobs) -> None:
        """Queue the registry's due jobs not canceled, as RQ's scheduler does, in a transaction that a
        change to any of them (a cancel, a delete) aborts: RQ's writes each whole job hash back, queued,
        whatever happened to it since it read it. A job no longer due once watched (deleted and enqueued
        again under its id, due later) stays scheduled; an entry whose hash holds no job is dropped, as
        a deleted job's is."""
        queue = Queue(registry.name, connection=self.connection, serializer=self.serializer)
        with self.connection.pipeline() as pipe:
            while True:
                try:
                    now = current_timestamp()
                    job_ids = registry.get_jobs_to_schedule(now)
                    if not job_ids:
                        return
                    pipe.watch(*(Job.key_for(job_id) for job_id in job_ids))
                    # their scores again, now that their hashes are watched: a job rescheduled since the
                    # ids were read is due later (a WATCH of the registry would abort on any job
                    # scheduled to the queue meanwhile)
                    scores = pipe.zmscore(registry.key, job_ids)
                    due = [
                        job_id
                        for job_id, score in zip(job_ids, scores, strict=True)
                        if score is not None and score <= now
                    ]
                    jobs = Job.fetch_many(due, connection=self.connection, serializer=self.serializer)
                    pipe.multi()
                    for job in jobs:
                        if job is not None and job.get_status(refresh=False) != JobStatus.CANCELED:
                            queue._enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                    for job_id in due:
                        registry.remove(job_id, pipeline=pipe)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def work(self):
        """Look for due jobs once a second until stopped or its worker is gone; an error that is not an
        outage is logged (once while it repeats) and the next look goes on."""
        self._install_signal_handlers()
        outage, born, last_error = OutageLog(log, "RQ scheduler"), False, None
        worker_pid = os.getppid()
        while (
            not self._stop_requested and os.getppid() == worker_pid
        ):  # ends with its worker, even a killed one
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                outage.succeeded()
                last_error = None
            except (redis.ConnectionError, redis.TimeoutError, RedisFull) as exc:
                outage.failed(exc)
            except Exception as exc:  # a bug must not stop the moving of every due job of its queues
                if str(exc) != last_error:
                    log.exception("RQ scheduler: a look for due jobs failed")
                last_error = str(exc)
            time.sleep(until_next_multiple(time.time(), self.interval))
        self.stop()
