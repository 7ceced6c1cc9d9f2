"""Jobs whose worker died are found by heartbeat and requeued exactly once: under their retry policy when
they were seen running, at the front of their queue without using a retry when they may never have
started; a job that keeps killing its worker is failed as poison."""

import os
import signal
import threading
import time

import pytest
from rq.job import Dependency

from jobs import inspect, timeline
from jobs.connection import Context
from jobs.dequeue import JobQueue, Taker, taking_for
from jobs.enqueue import queue_for
from jobs.execution import RUNNING_MARK, Worker
from jobs.maintenance import claim_orphans, sweep_orphans
from jobs.rqjob import Job
from jobs.rqtimes import parse_time
from tests import sample_jobs
from tests.conftest import (
    ORPHAN_TIMEOUT,
    alive,
    descendants,
    events,
    family_of,
    jobctl,
    make_settings,
    ran,
    wait_for,
)


def running_pid(context):
    raw = context.redis.lindex("test:running", 0)
    return int(raw.decode().rsplit(":", 1)[1]) if raw else None


def seen_running(context, job) -> bool:
    """Whether the worker's heartbeat thread has marked `job`'s started entry as running."""
    entries = context.redis.zrange(
        queue_for(context, job.origin).started_job_registry.key, 0, -1, withscores=True
    )
    return any(member.startswith(job.id.encode()) and score % 1 == RUNNING_MARK for member, score in entries)


def test_sigkilled_worker_job_is_requeued_and_succeeds(context, processes, redis_url):
    job = sample_jobs.slow_then_ok.enqueue("victim", 60)
    processes.start("worker", "-c", "1", url=redis_url)
    pid = wait_for(lambda: running_pid(context), what="the job to start")
    wait_for(lambda: seen_running(context, job), what="a heartbeat tick to see the job run")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: inspect.job_detail(context, job.id).state == "finished", timeout=30, what="recovery")
    assert events(context, job.id) == ["enqueued", "started", "orphaned", "retry", "started", "succeeded"]
    orphaned = timeline.history(context.redis, context.keys, job.id)[2]
    assert orphaned["count"] == 1 and orphaned["worker"]


def test_job_of_a_killed_pool_is_recovered_by_another_pool(context, processes, redis_url):
    job = sample_jobs.slow_then_ok.enqueue("whole-pool", 60)
    first = processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: running_pid(context), what="the job to start")
    os.killpg(first.pid, signal.SIGKILL)  # supervisor and worker die together, as when a host is lost
    first.wait()
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: inspect.job_detail(context, job.id).state == "finished", timeout=30, what="recovery")
    assert "orphaned" in events(context, job.id)


def plant_started(context, job, execution: str, age: int = 5, seen: bool = True) -> None:
    """Make `job` look as if a worker started it (and, with `seen`, its heartbeat saw it run), then died
    `age` seconds ago."""
    queue = queue_for(context, job.origin)
    context.redis.lrem(queue.key, 0, job.id)
    context.redis.hset(job.key, "status", "started")
    deadline = int(time.time()) - age + (RUNNING_MARK if seen else 0)
    context.redis.zadd(queue.started_job_registry.key, {f"{job.id}:{execution}": deadline})


@pytest.mark.parametrize("seen", [True, False], ids=["seen-running", "not-seen-running"])
def test_a_job_orphaned_three_times_is_failed_as_poison(context, seen):
    job = sample_jobs.add.enqueue(1, 2)  # 5 retries: poison detection must win over them
    for attempt in range(1, 4):
        plant_started(context, job, f"exec{attempt}", seen=seen)
        assert sweep_orphans(context) == [job.id]
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "failed" and detail.orphaned == 3
    assert "poison job" in detail.traceback
    assert events(context, job.id)[-2:] == ["orphaned", "failed"]


def test_a_job_not_seen_running_is_poison_only_once_a_death_is_surely_its_own(context, redis_url):
    strict = Context.connect(make_settings(redis_url, max_orphans=1))
    job = sample_jobs.record.enqueue("held")
    plant_started(context, job, "first", seen=False)  # held by a dying worker, maybe behind another job
    assert sweep_orphans(strict) == [job.id]
    assert inspect.job_detail(context, job.id).state == "queued"
    plant_started(context, job, "alone", seen=False)  # taken alone since: the death is its own
    assert sweep_orphans(strict) == [job.id]
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "failed" and detail.orphaned == 2
    assert "poison job" in detail.traceback


def test_a_job_that_kills_its_worker_takes_no_other_job_down_more_than_once(context, processes, redis_url):
    before = [sample_jobs.record.enqueue(f"before-{i}") for i in range(3)]
    killer = sample_jobs.kills_its_worker.enqueue("killer")
    after = [sample_jobs.record.enqueue(f"after-{i}") for i in range(12)]  # taken with it, or ahead
    first = processes.start("worker", "-c", "1", url=redis_url, JOBS_MAX_ORPHANS="2")
    wait_for(lambda: "killer" in ran(context), what="the killer to run")
    os.killpg(first.pid, signal.SIGKILL)  # its pool too: every job it held goes back before any is taken
    first.wait()
    assert killer.id in sweep_orphans(context, now=time.time() + 3600)
    processes.start("worker", "-c", "1", url=redis_url, JOBS_MAX_ORPHANS="2")
    wait_for(
        lambda: inspect.job_detail(context, killer.id).state == "failed", timeout=60, what="the poison job"
    )
    detail = inspect.job_detail(context, killer.id)
    assert detail.orphaned == 2 and "poison job" in detail.traceback
    others = [*before, *after]
    wait_for(lambda: all(inspect.job_detail(context, job.id).state == "finished" for job in others))
    assert all(inspect.job_detail(context, job.id).orphaned <= 1 for job in others)
    tags = ran(context)
    assert tags.count("killer") == 2
    assert all(tags.count(job.args[0]) == 1 for job in after)  # none had started when it first ran


def test_with_threads_a_job_that_kills_its_process_takes_no_other_job_down_twice(
    context, processes, redis_url
):
    # 4 threads, 4 jobs: each thread runs one of them when the killer first kills the process
    slow = [sample_jobs.sleep_then_record.enqueue(f"slow-{i}", 1.5) for i in range(3)]
    killer = sample_jobs.kills_its_worker.enqueue("killer")
    processes.start("worker", "-c", "1", "--threads", "4", url=redis_url, JOBS_MAX_ORPHANS="3")
    jobs = [killer, *slow]
    wait_for(
        lambda: all(inspect.job_detail(context, job.id).state in ("finished", "failed") for job in jobs),
        timeout=60,
        what="every job to end",
    )
    detail = inspect.job_detail(context, killer.id)
    assert detail.state == "failed" and detail.orphaned == 3 and "poison job" in detail.traceback
    for job in slow:  # each ran alone, or beside jobs that held nothing: it died with the killer once
        assert (inspect.job_detail(context, job.id).state, inspect.job_detail(context, job.id).orphaned) in (
            ("finished", 0),
            ("finished", 1),
        )


def test_a_job_seen_running_is_recovered_under_its_retry_policy(context):
    job = sample_jobs.record.enqueue("seen")  # no retries: RQ fails an abandoned job that has none left
    plant_started(context, job, "seen")
    assert sweep_orphans(context) == [job.id]
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "failed" and detail.orphaned == 1
    assert "no retries are left" in detail.traceback


def test_a_job_not_seen_running_goes_back_to_the_front_of_its_queue_without_using_a_retry(context):
    # a job taken ahead and not run yet, or killed within its first second: it may never have started
    job = sample_jobs.record.enqueue("unseen")  # no retries: counted as an attempt, it would fail
    waiting = sample_jobs.record.enqueue("waiting")
    plant_started(context, job, "unseen", seen=False)
    assert sweep_orphans(context) == [job.id]
    assert queue_for(context, "default").get_job_ids() == [job.id, waiting.id]
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "queued" and detail.orphaned == 1
    orphaned = timeline.history(context.redis, context.keys, job.id)[-1]
    assert orphaned["event"] == "orphaned" and orphaned["seen_running"] is False


def test_a_live_job_is_not_touched(context):
    job = sample_jobs.add.enqueue(1, 2)
    plant_started(context, job, "alive", age=-30)  # heartbeat still valid for 30 s
    assert sweep_orphans(context) == []
    assert inspect.job_detail(context, job.id).state == "started"


def test_crash_between_claim_and_requeue_loses_nothing(context):
    job = sample_jobs.add.enqueue(1, 2)
    plant_started(context, job, "crashy")
    assert claim_orphans(context) == 1  # the sweeper dies right after its first step
    queue = queue_for(context, "default")
    assert queue.count == 0 and queue.started_job_registry.count == 0
    assert context.redis.zcard(context.keys.orphans) == 1  # ...but the job is held in the orphans set
    assert sweep_orphans(context) == [job.id]  # the next sweep finishes the recovery, once
    assert queue.scheduled_job_registry.get_job_ids() == [job.id]  # its retry, after the backoff
    assert sweep_orphans(context) == []


def test_concurrent_sweepers_requeue_each_orphan_exactly_once(context, redis_url):
    jobs = [sample_jobs.add.enqueue(i, i) for i in range(60)]
    for job in jobs:
        plant_started(context, job, "gone")
    results: list[list[str]] = []

    def sweep():
        own = Context.connect(make_settings(redis_url))
        results.append(sweep_orphans(own))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recovered = [job_id for result in results for job_id in result]
    assert sorted(recovered) == sorted(job.id for job in jobs)
    retries = queue_for(context, "default").scheduled_job_registry.get_job_ids()
    assert sorted(retries) == sorted(job.id for job in jobs)


def test_a_worker_killed_right_after_taking_a_job_loses_nothing(context, redis_url):
    first = sample_jobs.slow_then_ok.enqueue("taken", 0)
    second = sample_jobs.record.enqueue("behind")
    queue = queue_for(context, "default")
    with taking_for(Taker("gone", ORPHAN_TIMEOUT, lambda: False)):
        job, _ = JobQueue.dequeue_any([queue], None, connection=context.redis, job_class=Job)
    assert job.id == first.id  # ...and here the worker dies, before running the job
    assert queue.get_job_ids() == [second.id]  # taking a job starts it: it is in a queue or started
    assert queue.started_job_registry.get_job_ids() == [first.id]
    assert inspect.job_detail(context, first.id).state == "started"
    assert sweep_orphans(context) == []  # its heartbeat deadline has not passed yet
    assert sweep_orphans(context, now=time.time() + ORPHAN_TIMEOUT + 1) == [first.id]
    assert queue.get_job_ids() == [first.id, second.id]  # never run: back in front, no retry used
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert inspect.job_detail(context, first.id).state == "finished"
    assert events(context, first.id) == ["enqueued", "started", "orphaned", "started", "succeeded"]


def test_a_sigkilled_worker_leaves_no_process_behind(context, processes, redis_url):
    """The OOM killer's case: a worker process dies; its RQ scheduler child must not live on as an orphan."""
    pool = processes.start("worker", "-c", "1", url=redis_url)
    family = wait_for(lambda: family_of(pool.pid, at_least=2), what="the worker and its RQ scheduler")
    worker = next(pid for pid in family if descendants(pid))
    os.kill(worker, signal.SIGKILL)
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    wait_for(lambda: not [pid for pid in family if alive(pid)], timeout=30, what="every process to end")


def take_one(context) -> tuple[Worker, Job]:
    """A worker of this process that has taken the next job of `default`, and the job."""
    worker = Worker([queue_for(context, "default")], context)
    job, _ = worker.dequeue_job_and_maintain_ttl(timeout=None)
    return worker, job


def seen_then_dead(context) -> tuple[Worker, Job]:
    """A worker that took the next job and was seen running it (its heartbeat thread's first tick)."""
    worker, job = take_one(context)
    worker.prepare_execution(job)
    worker._tick(None)
    return worker, job


def an_hour_later(context) -> list[str]:
    return sweep_orphans(context, now=time.time() + 3600)


def test_an_end_sent_after_the_sweep_recovered_its_run_writes_nothing(context, worker_tally):
    queue = queue_for(context, "default")
    job = sample_jobs.record.enqueue("once")  # no retries
    worker, taken = seen_then_dead(context)
    worker._running = None
    worker.execute_job(taken, queue)  # it succeeds; its end waits for the next take
    # the worker's link to Redis is down past the orphan timeout: the sweep recovers the run
    assert an_hour_later(context) == [job.id]
    worker._let_go()  # Redis answers again: the end is sent, and found stale
    assert inspect.job_detail(context, job.id).state == "failed"  # seen running, no retry left
    assert queue.finished_job_registry.get_job_ids() == []
    assert (
        inspect.list_jobs(context, "finished", where=inspect.Filter(name="tests.sample_jobs.record")).total
        == 0
    )
    worker_tally.flush(context.redis)
    assert timeline.by_name(context.redis, context.keys, "succeeded", "hour", 1) == {}


def test_an_ended_job_whose_end_waits_stays_known_to_have_run(context, worker_tally):
    queue = queue_for(context, "default")
    job = sample_jobs.record.enqueue("once")  # no retries
    worker, taken = seen_then_dead(context)
    worker.execute_job(taken, queue)  # it ends; its end waits for the next take
    worker._tick(context.settings.orphan_timeout)  # a heartbeat while it waits; then the worker dies
    assert an_hour_later(context) == [job.id]
    orphaned = [e for e in timeline.history(context.redis, context.keys, job.id) if e["event"] == "orphaned"]
    assert orphaned[0]["seen_running"] is True
    assert (
        inspect.job_detail(context, job.id).state == "failed"
    )  # as RQ fails an abandoned job, no retry left
    assert ran(context) == ["once"]


def test_a_job_failed_by_the_sweep_ends_after_its_last_run_began(context, worker_tally):
    queue = queue_for(context, "default")
    job = sample_jobs.always_fails.enqueue("boom")  # two retries, no backoff
    for _ in range(2):  # two attempts fail, each queueing the retry at once
        worker, taken = take_one(context)
        worker.execute_job(taken, queue)
        worker._let_go()
    seen_then_dead(context)  # its last attempt: its worker dies
    assert an_hour_later(context) == [job.id]
    fields = context.redis.hgetall(job.key)
    assert fields[b"status"] == b"failed"
    assert parse_time(fields[b"ended_at"].decode()) >= parse_time(fields[b"started_at"].decode())


def test_a_started_hash_that_is_not_a_job_is_filed_as_failed_and_the_sweep_goes_on(context):
    # the take starts any hash with fields; a worker dying before filing one that is not a job leaves it
    queue = queue_for(context, "default")
    context.redis.hset("rq:job:garbage", mapping={"status": "started", "origin": "default"})
    victim = sample_jobs.record.enqueue("victim")
    context.redis.lrem(queue.key, 0, victim.id)
    context.redis.hset(victim.key, "status", "started")
    dead = int(time.time()) - 5
    context.redis.zadd(
        queue.started_job_registry.key, {"garbage:aaaaaaaaaaaa1": dead, f"{victim.id}:bbbbbbbbbbbb1": dead}
    )
    assert sweep_orphans(context) == [victim.id]
    assert victim.get_status(refresh=True) == "queued"
    assert context.redis.hget("rq:job:garbage", "status") == b"failed"
    assert queue.failed_job_registry.get_job_ids() == ["garbage"]
    assert context.redis.zcard(context.keys.orphans) == 0


def test_dependents_allowed_to_follow_a_failure_are_queued_when_the_sweep_fails_their_dependency(
    context, worker_tally
):
    parent = sample_jobs.record.enqueue("parent")  # no retries
    child = sample_jobs.record.enqueue("child", depends_on=Dependency(jobs=[parent], allow_failure=True))
    seen_then_dead(context)
    assert an_hour_later(context) == [parent.id]
    assert parent.get_status(refresh=True) == "failed"
    assert child.get_status(refresh=True) == "queued"  # as RQ's recovery of an abandoned job queues it
    assert queue_for(context, "default").get_job_ids() == [child.id]
