"""Delayed jobs and retries reach their queues when due: the mover each worker process runs (RQ's
scheduler, jobs.due), its lock handed over when the worker holding it stops or dies, and the entries it
must not move."""

import logging
import os
import signal
import time
from datetime import timedelta

from rq.scheduler import RQScheduler

from jobs import admin, timeline
from jobs.due import LOCK_RETRY, _DueJobs
from jobs.enqueue import queue_for
from tests import sample_jobs
from tests.conftest import children, mover, ran, wait_for


def lock_holder(context, queue: str = "default") -> str | None:
    """The name of the mover holding `queue`'s lock, if any."""
    holder = context.redis.get(RQScheduler.get_locking_key(queue))
    return holder.decode() if holder else None


def workers_idle(context, count: int) -> bool:
    """Whether `count` workers are registered, all idle: each has tried for the mover's locks as it started."""
    keys = context.redis.smembers("rq:workers")
    return len(keys) == count and all(context.redis.hget(key, "state") == b"idle" for key in keys)


def started_late(context, job_id: str) -> float:
    """Seconds from a delayed job's due time to its start."""
    history = timeline.history(context.redis, context.keys, job_id)
    return next(entry["at"] for entry in history if entry["event"] == "started") - history[0]["due"]


def test_delayed_jobs_move_within_seconds_once_the_worker_holding_the_mover_lock_stops(
    context, processes, redis_url
):
    """Two pools (two hosts): the first one's worker holds the mover's locks, the other's found them
    taken as it started. The first stops (a deploy, a scale-down); the other moves due jobs from then on
    (RQ's worker tries again every 10 minutes)."""
    first = processes.start("worker", "-c", "1", url=redis_url)
    holder = wait_for(lambda: lock_holder(context), what="the first pool's mover to take the lock")
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: workers_idle(context, 2), what="the second pool's worker to start")
    assert lock_holder(context) == holder
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=10)
    delayed = sample_jobs.record.enqueue_in(1, "delayed")
    wait_for(lambda: ran(context) == ["delayed"], timeout=LOCK_RETRY + 5, what="the delayed job to run")
    assert lock_holder(context) not in (None, holder)
    assert started_late(context, delayed.id) < LOCK_RETRY + 2


def test_delayed_jobs_move_within_seconds_once_the_worker_holding_the_mover_lock_is_killed(
    context, processes, redis_url
):
    """The worker whose mover holds the locks is killed (the OOM killer, a job that crashes it) just after
    the mover's look: the mover lets go of them at its next look, a second later, when the pool has
    restarted the worker already and its new mover has found them taken."""
    pool = processes.start("worker", "-c", "2", url=redis_url)
    holder = wait_for(lambda: lock_holder(context), what="a mover to take the lock")
    wait_for(lambda: workers_idle(context, 2), what="both workers to start")
    mover_pid = int(context.redis.hget(f"rq:scheduler:{holder}", "pid"))
    worker_pid = next(pid for pid in children(pool.pid) if mover_pid in children(pid))
    wait_for(lambda: 0.05 < time.time() % 1 < 0.15, timeout=2, interval=0.005, what="a mover's look to pass")
    os.kill(worker_pid, signal.SIGKILL)
    wait_for(lambda: len(children(pool.pid) - {worker_pid}) == 2, what="the pool to restart the worker")
    delayed = sample_jobs.record.enqueue_in(1, "delayed")
    wait_for(lambda: ran(context) == ["delayed"], timeout=LOCK_RETRY + 5, what="the delayed job to run")
    assert started_late(context, delayed.id) < LOCK_RETRY + 2


def test_a_scheduled_entry_whose_hash_holds_no_job_is_dropped_and_the_other_due_jobs_move(context):
    """A hash without `data` (written by hand, or by a late write into a deleted job's key) is no job, as
    the orphan sweep reads it too (test_orphans): RQ's read of it raised, and the mover died holding its
    lock, every delayed job of the queue stuck behind it."""
    delayed = sample_jobs.record.enqueue_in(600, "delayed")
    context.redis.hset("rq:job:garbage", mapping={"status": "scheduled", "origin": "default"})
    context.redis.zadd("rq:scheduled:default", {"garbage": 1, delayed.id: 2})  # both due
    with mover(context) as scheduler:
        scheduler.enqueue_scheduled_jobs()
    assert queue_for(context, "default").get_job_ids() == [delayed.id]
    assert context.redis.zcard("rq:scheduled:default") == 0


def test_the_mover_logs_an_unexpected_error_and_looks_again(context, monkeypatch, caplog):
    with mover(context) as scheduler:
        looks = []

        def enqueue_scheduled_jobs():
            looks.append(time.monotonic())
            if len(looks) == 1:
                raise ValueError("a bug")
            scheduler.request_stop()

        monkeypatch.setattr(scheduler, "enqueue_scheduled_jobs", enqueue_scheduled_jobs)
        monkeypatch.setattr(scheduler, "_install_signal_handlers", lambda: None)  # pytest's stay
        with caplog.at_level(logging.ERROR, logger="jobs.worker"):
            scheduler.work()
    assert len(looks) == 2
    assert "a look for due jobs failed" in caplog.text and "ValueError: a bug" in caplog.text


def test_a_due_job_rescheduled_later_as_the_mover_reads_the_due_ones_is_not_queued(context, monkeypatch):
    """An operator moves a due job to later (deletes it, enqueues it again under its id, due in an hour)
    between the mover's read of the due ids and its watch of their hashes."""
    delayed = sample_jobs.record.enqueue_in(600, "delayed", job_id="report-42")
    context.redis.zadd("rq:scheduled:default", {delayed.id: 1})  # due
    read = _DueJobs.get_jobs_to_schedule
    acted = []

    def get_jobs_to_schedule(registry, timestamp=None, chunk_size=1000):
        due = read(registry, timestamp, chunk_size)
        if delayed.id in due and not acted:
            acted.append(delayed.id)
            admin.delete_job(context, delayed.id, "op")
            sample_jobs.record.enqueue_in(timedelta(hours=1), "later", job_id="report-42")
        return due

    monkeypatch.setattr(_DueJobs, "get_jobs_to_schedule", get_jobs_to_schedule)
    with mover(context) as scheduler:
        scheduler.enqueue_scheduled_jobs()
    assert acted == [delayed.id]
    assert queue_for(context, "default").get_job_ids() == []
    assert context.redis.zscore("rq:scheduled:default", "report-42") > time.time() + 3500
