"""Running jobs: burst draining, strict priority, timeouts, retries with backoff, timeline and counters."""

import json
import pickle
import re
import time
import zlib

import pytest
import redis
from rq import Queue
from rq.job import Job as RQJob
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

import jobs as jobs_api
from jobs import admin, index, inspect, timeline
from jobs.builtin import noop
from jobs.dequeue import Sent, send
from jobs.enqueue import enqueue, queue_for
from jobs.execution import Worker
from jobs.maintenance import sweep_orphans
from jobs.rqjob import Job
from tests import sample_jobs
from tests.conftest import events, jobctl, move_due, ran, wait_for
from tests.proxy import Proxy


def finished(context, job_id) -> bool:
    return inspect.job_detail(context, job_id).state == "finished"


def test_burst_worker_runs_every_job_and_exits(context, redis_url):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(20)]
    result = jobctl("worker", "--burst", "--concurrency", "2", url=redis_url)
    assert result.returncode == 0, result.stderr
    assert sorted(ran(context)) == sorted(f"job-{i}" for i in range(20))
    detail = inspect.job_detail(context, jobs[0].id)
    assert detail.state == "finished" and detail.result == "job-0" and detail.attempts == 1
    assert events(context, jobs[0].id) == ["enqueued", "started", "succeeded"]
    started = timeline.history(context.redis, context.keys, jobs[0].id)[1]
    assert started["pid"] > 0 and started["host"] and started["worker"]
    assert timeline.history(context.redis, context.keys, jobs[0].id)[2]["ms"] >= 0
    assert inspect.stats(context).by_name_last_day["tests.sample_jobs.record"] == {
        "succeeded": 20,
        "failed": 0,
    }


def test_the_worker_logs_one_line_per_job_that_succeeds(context, redis_url):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(20)]
    result = jobctl("worker", "--burst", "--concurrency", "1", url=redis_url)
    ok_lines = [line for line in result.stderr.splitlines() if "Job OK" in line]
    assert sorted(line.rsplit("(", 1)[1].rstrip(")") for line in ok_lines) == sorted(job.id for job in jobs)
    assert "result is kept" not in result.stderr  # RQ's line after every job, the same for every run


def test_the_worker_logs_each_failure_once_with_its_traceback(context, redis_url):
    failing = [sample_jobs.fails_without_retry.enqueue(f"key-{i}") for i in range(3)]
    result = jobctl("worker", "--burst", "--concurrency", "1", url=redis_url)
    assert result.returncode == 0, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "exception raised while executing" in line]
    assert sorted(line.split(": job ")[1].split(":")[0] for line in error_lines) == sorted(
        job.id for job in failing
    )
    assert all("(tests.sample_jobs.fails_without_retry)" in line for line in error_lines)
    assert result.stderr.count("Traceback (most recent call last)") == 3
    assert result.stderr.count("KeyError: 'key-") == 3


def test_queues_are_served_in_strict_priority_order(context, redis_url):
    sample_jobs.record_low.enqueue("low")
    sample_jobs.record.enqueue("default")
    sample_jobs.record_critical.enqueue("critical")
    result = jobctl("worker", "--burst", "--concurrency", "1", url=redis_url)
    assert result.returncode == 0, result.stderr
    assert ran(context) == ["critical", "default", "low"]


def test_a_job_over_its_timeout_fails_with_a_timeout(context, redis_url):
    job = sample_jobs.too_slow.enqueue()
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "failed"
    assert "JobTimeoutException" in detail.traceback
    assert events(context, job.id)[-1] == "failed"


THREE_FAILED_ATTEMPTS = ["started", "retry", "started", "retry", "started", "failed"]


def test_failing_job_is_retried_then_failed(context, redis_url):
    job = sample_jobs.always_fails.enqueue("boom")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert events(context, job.id) == ["enqueued", *THREE_FAILED_ATTEMPTS]
    history = timeline.history(context.redis, context.keys, job.id)
    assert history[2]["error"] == "ValueError: boom" and history[2]["retries_left"] == 1
    assert history[-1]["error"] == "ValueError: boom"
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "failed" and detail.attempts == 3
    assert inspect.stats(context).by_name_last_day["tests.sample_jobs.always_fails"]["failed"] == 3


def test_the_timeline_key_keeps_only_what_the_job_hash_cannot_tell(context, redis_url):
    """A job that succeeds at once keeps its whole timeline in its hash; an attempt that does not succeed
    writes its start out before the next attempt overwrites the hash's."""
    once = sample_jobs.record.enqueue("once")
    failing = sample_jobs.always_fails.enqueue("boom")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert not context.redis.exists(context.keys.timeline(once.id))
    stored = context.redis.lrange(context.keys.timeline(failing.id), 0, -1)
    assert [json.loads(raw)["event"] for raw in stored] == THREE_FAILED_ATTEMPTS
    starts = [e for e in timeline.history(context.redis, context.keys, failing.id) if e["event"] == "started"]
    assert len({start["at"] for start in starts}) == 3 and all(start["pid"] > 0 for start in starts)


def test_exceptions_listed_in_no_retry_on_fail_at_once(context, redis_url):
    job = sample_jobs.fails_without_retry.enqueue("k")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert events(context, job.id) == ["enqueued", "started", "failed"]


def test_delayed_job_is_run_by_the_worker_without_a_scheduler_process(context, processes, redis_url):
    delayed = sample_jobs.record.enqueue_in(1, "delayed")
    processes.start("worker", "-c", "1", url=redis_url)
    # its end is written right after it ran, with the worker's next take
    wait_for(lambda: finished(context, delayed.id), timeout=15, what="the delayed job to run")
    assert events(context, delayed.id) == ["scheduled", "started", "succeeded"]
    history = timeline.history(context.redis, context.keys, delayed.id)
    assert history[1]["at"] >= history[0]["due"]


def test_due_jobs_queued_by_the_worker_s_rq_scheduler_wake_an_idle_worker(context):
    delayed = [sample_jobs.record.enqueue_in(600, f"delayed-{i}") for i in range(2)]
    move_due(context, [job.id for job in delayed])
    assert sorted(queue_for(context, "default").get_job_ids()) == sorted(job.id for job in delayed)
    assert context.redis.llen(context.keys.wake("default")) == 2  # the enqueue_in woke none


def acting_on_first_read(monkeypatch, job_class, reading: str, act) -> list:
    """Make `act()` run once, right after the first `job_class.fetch_many` that reads job id `reading`
    (RQ's read of the jobs it is about to queue); returns the list of times it ran."""
    real = job_class.fetch_many.__func__
    acted = []

    def fetch_many(cls, job_ids, connection, serializer=None):
        jobs = real(cls, job_ids, connection=connection, serializer=serializer)
        if reading in job_ids and not acted:
            acted.append(reading)  # first: `act` may read jobs too
            act()
        return jobs

    monkeypatch.setattr(job_class, "fetch_many", classmethod(fetch_many))
    return acted


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_a_delayed_job_canceled_or_deleted_as_it_falls_due_does_not_run(context, monkeypatch, action):
    delayed = sample_jobs.record.enqueue_in(600, "delayed")
    act = admin.cancel_job if action == "cancel" else admin.delete_job
    acted = acting_on_first_read(monkeypatch, Job, delayed.id, lambda: act(context, delayed.id, "op"))
    move_due(context, [delayed.id])
    assert len(acted) == 1
    assert queue_for(context, "default").get_job_ids() == []
    assert context.redis.hget(delayed.key, "status") == (b"canceled" if action == "cancel" else None)


@pytest.mark.parametrize("action", ["cancel", "delete"])
def test_a_dependent_canceled_or_deleted_as_its_dependency_finishes_does_not_run(
    context, worker_tally, monkeypatch, action
):
    parent = sample_jobs.record.enqueue("parent")
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    act = admin.cancel_job if action == "cancel" else admin.delete_job
    acted = acting_on_first_read(monkeypatch, Job, child.id, lambda: act(context, child.id, "op"))
    _run_one(context, worker_tally)  # the parent: it finishes, and RQ's path queues its dependents
    assert len(acted) == 1 and ran(context) == ["parent"]
    assert queue_for(context, "default").get_job_ids() == []
    assert context.redis.hget(child.key, "status") == (b"canceled" if action == "cancel" else None)


def test_a_burst_of_due_jobs_is_queued_in_one_look(context):
    registry = queue_for(context, "default").scheduled_job_registry
    ids = jobs_api.enqueue_many([noop.call() for _ in range(2500)])
    context.redis.delete(queue_for(context, "default").key)  # as if enqueued with a delay that is over now
    move_due(context, ids)  # in one look: RQ's own moves 1,000 per look
    assert sorted(queue_for(context, "default").get_job_ids()) == sorted(ids)
    assert registry.count == 0


def test_retry_waits_for_its_backoff(context, processes, redis_url):
    job = sample_jobs.fails_once.enqueue("flaky")
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: finished(context, job.id), timeout=15, what="the retried job to succeed")
    assert events(context, job.id) == ["enqueued", "started", "retry", "started", "succeeded"]
    history = timeline.history(context.redis, context.keys, job.id)
    retry, second_start = history[2], history[3]
    assert retry["due"] - retry["at"] >= 0.75  # backoff 1 s with at most 25 % jitter
    assert second_start["at"] >= retry["due"] - 0.01


def test_a_running_worker_writes_its_counters_every_second(context, processes, redis_url):
    processes.start("worker", "-c", "1", url=redis_url)
    for i in range(5):
        sample_jobs.record.enqueue(f"counted-{i}")
    sample_jobs.fails_without_retry.enqueue("counted-failure")

    def counted():
        by_name = inspect.stats(context).by_name_last_day
        return by_name.get("tests.sample_jobs.record", {}).get("succeeded") == 5 and by_name.get(
            "tests.sample_jobs.fails_without_retry", {}
        ).get("failed")

    wait_for(counted, timeout=15, what="the counters of a worker that keeps running")
    runs = timeline.durations(context.redis, context.keys, 1)["tests.sample_jobs.record"]
    assert sum(count for bucket, count in runs.items() if bucket != "sum") == 5


def test_counts_survive_a_failed_write(context):
    tally = timeline.Tally(context.keys)
    tally.count("succeeded", "a.job", at=1_800_000_000)
    tally.duration("a.job", 0.02, at=1_800_000_000)
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.5, retry=None)
    with pytest.raises(redis.ConnectionError):
        tally.flush(unreachable)
    tally.count("succeeded", "a.job", at=1_800_000_000)
    tally.flush(context.redis)
    hour = timeline.by_name(context.redis, context.keys, "succeeded", "hour", 1, end=1_800_000_000)
    assert hour == {"a.job": 2}
    assert timeline.durations(context.redis, context.keys, 1, end=1_800_000_000)["a.job"]["0.025"] == 1
    tally.flush(context.redis)  # nothing left: writes nothing
    assert timeline.by_name(context.redis, context.keys, "succeeded", "minute", 1, end=1_800_000_000) == {
        "a.job": 2
    }


def succeeded_counts(context) -> tuple[dict, int]:
    """Successes counted this hour by job name, and the runs in the duration histograms."""
    runs = timeline.durations(context.redis, context.keys, 1)
    return (
        timeline.by_name(context.redis, context.keys, "succeeded", "hour", 1),
        sum(count for name in runs for bucket, count in runs[name].items() if bucket != "sum"),
    )


def test_a_success_with_dependents_is_counted_once(context, worker_tally):
    parent = sample_jobs.record.enqueue("parent")
    sample_jobs.record.enqueue("child", depends_on=parent)
    _run_one(context, worker_tally)  # its end finds dependents: RQ's own path finishes it
    assert parent.get_status(refresh=True) == "finished"
    assert succeeded_counts(context) == ({"tests.sample_jobs.record": 1}, 1)


def test_a_success_kept_for_no_time_is_counted(context, worker_tally):
    rq_queue = Queue("default", connection=context.redis, serializer=JSONSerializer)
    rq_queue.enqueue("tests.sample_jobs.record", "fleeting", result_ttl=0)  # RQ's own path finishes it
    _run_one(context, worker_tally)
    assert ran(context) == ["fleeting"]
    assert succeeded_counts(context) == ({"tests.sample_jobs.record": 1}, 1)


def test_the_worker_state_follows_its_job(context, processes, redis_url):
    processes.start("worker", "-c", "1", url=redis_url)

    def worker_state():
        views = [view for view in inspect.workers(context) if view.kind == "worker"]
        return views and (views[0].state, views[0].current_job)

    job = sample_jobs.sleep_then_record.enqueue("stateful", 2)
    wait_for(lambda: worker_state() == ("busy", job.id), timeout=15, what="the worker to show its job")
    wait_for(lambda: "stateful" in ran(context), timeout=15, what="the job to end")
    wait_for(lambda: worker_state() == ("idle", None), timeout=5, what="the worker to show it is idle")


def test_a_job_returning_none_keeps_no_result_stream(context, redis_url):
    quiet = enqueue(noop, context=context)
    loud = sample_jobs.record.enqueue("loud")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert inspect.job_detail(context, quiet.id).state == "finished"
    assert inspect.job_detail(context, quiet.id).result is None
    assert not list(context.redis.scan_iter(match=f"rq:results:{quiet.id}*"))
    assert inspect.job_detail(context, loud.id).result == "loud"
    assert list(context.redis.scan_iter(match=f"rq:results:{loud.id}*"))


def test_rq_reads_the_state_a_run_leaves_as_its_own_worker_would_leave_it(context, redis_url):
    kept = sample_jobs.record.enqueue("kept")
    failed = sample_jobs.always_fails.enqueue("boom")  # two retries, no backoff: three attempts
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    job = RQJob.fetch(kept.id, connection=context.redis, serializer=JSONSerializer)
    assert job.get_status() == "finished" and job.return_value() == "kept"
    assert job.enqueued_at <= job.started_at <= job.ended_at and job.worker_name
    result = job.latest_result()
    assert result.type == Result.Type.SUCCESSFUL and result.return_value == "kept"
    assert result.worker_name == job.worker_name and result.execution_id
    assert abs((result.execution_ended_at - job.ended_at).total_seconds()) < 1e-3
    queue = Queue("default", connection=context.redis, serializer=JSONSerializer)
    assert queue.finished_job_registry.get_job_ids() == [kept.id]
    assert queue.failed_job_registry.get_job_ids() == [failed.id]
    assert queue.started_job_registry.get_job_ids() == [] and queue.count == 0
    assert 0 < context.redis.ttl(job.key) <= context.settings.succeeded_ttl
    worker = context.redis.hgetall(f"rq:worker:{job.worker_name}")  # RQ's statistics, written at exit
    assert (worker[b"successful_job_count"], worker[b"failed_job_count"]) == (b"1", b"3")
    assert float(worker[b"total_working_time"]) > 0 and b"current_job" not in worker
    assert not list(context.redis.scan_iter(match="rq:execution*"))  # no records nobody reads


def _finished_state(context, job_id: str) -> tuple:
    """What a finished job left, with its id, end time and expiry second replaced by placeholders."""
    fields = context.redis.hgetall(f"rq:job:{job_id}")
    ended = fields[b"ended_at"].decode()
    score = context.redis.zscore("rq:finished:default", job_id)
    members = context.redis.zrangebylex(context.keys.index("finished", "default"), "-", "+")

    def expiry(match: re.Match) -> str:  # RQ's path reads the clock twice: score and expiry may be 1 s apart
        return "EXPIRY" if abs(int(match[0]) - score) <= 1 else match[0]

    mine = sorted(
        re.sub(r"(?<=^x\|)\d{12}", expiry, member.decode().replace(job_id, "ID").replace(ended, "ENDED"))
        for member in members
        if job_id.encode() in member
    )
    ttl = context.redis.ttl(f"rq:job:{job_id}")
    return sorted(fields), fields[b"status"], round(score - time.time(), -1), mine, round(ttl, -1)


def test_a_finish_sent_with_the_next_take_writes_what_rqs_own_path_writes(context, redis_url):
    # A job with dependents is finished RQ's way (its dependents are enqueued in the same transaction);
    # any other by the `Finish` that rides in the worker's next take.
    plain = sample_jobs.record.enqueue("plain")
    parent = sample_jobs.record.enqueue("parent")
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["plain", "parent", "child"]
    assert _finished_state(context, plain.id) == _finished_state(context, parent.id)
    fields, status, expires_in, members, ttl = _finished_state(context, plain.id)
    assert status == b"finished" and expires_in == ttl == round(context.settings.succeeded_ttl, -1)
    assert members == [
        "n|tests.sample_jobs.record|ENDED|ID",
        "t|ENDED|ID",
        "x|EXPIRY|n|tests.sample_jobs.record|ENDED|ID",
    ]
    assert context.redis.zcard("rq:wip:default") == 0 and child.get_status(refresh=True) == "finished"


def test_a_finish_of_a_job_kept_forever_writes_what_rqs_own_path_writes(context, redis_url):
    # result_ttl=-1 cannot be catalogued; RQ's own Queue.enqueue can ask for it
    queue = Queue("default", connection=context.redis, serializer=JSONSerializer)
    plain = queue.enqueue("tests.sample_jobs.record", "plain", result_ttl=-1)
    parent = queue.enqueue("tests.sample_jobs.record", "parent", result_ttl=-1)
    queue.enqueue("tests.sample_jobs.record", "child", depends_on=parent)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["plain", "parent", "child"]
    assert _finished_state(context, plain.id) == _finished_state(context, parent.id)
    _, status, expires_in, members, ttl = _finished_state(context, plain.id)
    assert (status, expires_in, ttl) == (b"finished", float("inf"), 0)  # -1 rounds to 0: no expiry
    assert f"x|{index.NEVER}|n|tests.sample_jobs.record|ENDED|ID" in members


class _Exploit:
    """Unpickling this would create `path`: the test checks that nothing ever unpickles a job."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _run_one(context, worker_tally, worker_class=Worker) -> None:
    """Take and run the next job of `default` in this process, then send its end on its own."""
    worker = worker_class([queue_for(context, "default")], context)
    worker.execute_job(*worker.dequeue_job_and_maintain_ttl(timeout=None))
    worker._let_go()
    worker_tally.flush(context.redis)  # as the worker's heartbeat thread does


class _FailingByRQ(Worker):
    """A worker whose failures take RQ's own path, written at once."""

    def _defer_failure(self, job, queue, started_job_registry, exc_string):
        SimpleWorker.handle_job_failure(self, job, queue, started_job_registry, exc_string)


def _failure_state(context, job_id: str) -> tuple:
    """What a failed or retried run left, its job's id, times and traceback line numbers left out."""
    key = f"rq:job:{job_id}"
    fields = context.redis.hgetall(key)
    registries = {}
    for name in ("failed", "scheduled", "started"):
        score = context.redis.zscore(f"rq:{name}:default", job_id)
        registries[name] = None if score is None else round(score - time.time(), -1)
    results = [
        {name: value for name, value in entry.items() if name in (b"type", b"worker_name")}
        for _, entry in context.redis.xrange(f"rq:results:{job_id}")
    ]
    index_members = [
        member.decode().split("|")[0]
        for member in context.redis.zrangebylex(context.keys.index("failed", "default"), "-", "+")
        if job_id.encode() in member
    ]
    return (
        sorted(fields),
        {name: fields.get(name) for name in (b"status", b"retries_left", b"origin")},
        fields.get(b"error", b"").split(b":")[0],  # the error's type (its message holds the job's tag)
        round(context.redis.ttl(key), -1),
        registries,
        job_id.encode() in context.redis.lrange("rq:queue:default", 0, -1),
        [len(results), *(sorted(result) for result in results)],
        sorted(index_members),
        events(context, job_id),
        round(context.redis.ttl(context.keys.timeline(job_id)), -1),
    )


@pytest.mark.parametrize(
    "enqueue_failing",
    [
        lambda tag: sample_jobs.fails_without_retry.enqueue(tag),  # failed at once
        lambda tag: sample_jobs.always_fails.enqueue(tag),  # queued again for its retry
        lambda tag: sample_jobs.fails_once.enqueue(tag),  # scheduled for its retry, a second away
    ],
    ids=["failed", "retried", "scheduled"],
)
def test_a_failure_sent_with_the_next_take_writes_what_rqs_own_path_writes(
    context, worker_tally, enqueue_failing
):
    by_rq = enqueue_failing("by-rq")
    _run_one(context, worker_tally, _FailingByRQ)
    context.redis.lrem("rq:queue:default", 0, by_rq.id)  # the retry, so the next take runs the other
    riding = enqueue_failing("riding")
    _run_one(context, worker_tally)
    if by_rq.get_status(refresh=True) == "queued":
        context.redis.rpush("rq:queue:default", by_rq.id)
    assert _failure_state(context, riding.id) == _failure_state(context, by_rq.id)
    counts = inspect.stats(context).by_name_last_day[by_rq.func_name]
    assert counts == {"succeeded": 0, "failed": 2}


def test_a_failure_sent_again_or_after_the_sweep_recovered_its_run_writes_nothing(context, worker_tally):
    queue = queue_for(context, "default")
    job = sample_jobs.always_fails.enqueue("boom")  # its retry is queued at once
    worker = Worker([queue], context)
    worker.execute_job(*worker.dequeue_job_and_maintain_ttl(timeout=None))
    [failing] = worker._finishing
    send(context.redis, [failing.rider])
    assert failing.rider.sent is Sent.WRITTEN and queue.get_job_ids() == [job.id]
    send(context.redis, [failing.rider])  # as redis-py sends a call again after a lost reply
    assert failing.rider.sent is Sent.STALE and queue.get_job_ids() == [job.id]
    assert events(context, job.id) == ["enqueued", "started", "retry"]

    worker = Worker([queue], context)  # its second run: the sweep finds it before its failure is sent
    worker.execute_job(*worker.dequeue_job_and_maintain_ttl(timeout=None))
    assert sweep_orphans(context, now=time.time() + 3600) == [job.id]
    worker._let_go()
    assert worker._finishing == [] and queue.get_job_ids() == [job.id]
    assert events(context, job.id) == ["enqueued", "started", "retry", "started", "orphaned"]
    assert context.redis.hget(job.key, "retries_left") == b"1"  # not seen running: the sweep used none


def test_a_second_queue_entry_of_a_job_does_not_run_it_again(context, redis_url):
    # as a write sent again after a lost reply (RQ's enqueue in a transaction, say) would leave it
    queue = queue_for(context, "default")
    once = sample_jobs.record.enqueue("once")
    context.redis.rpush(queue.key, once.id)  # a second entry, taken with the first
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    context.redis.rpush(queue.key, once.id)  # and one taken after the job ended
    after = sample_jobs.record.enqueue("after")
    result = jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert result.returncode == 0, result.stderr
    assert ran(context) == ["once", "after"] and queue.count == 0
    assert [finished(context, job.id) for job in (once, after)] == [True, True]
    assert inspect.job_detail(context, once.id).attempts == 1
    assert events(context, once.id) == ["enqueued", "started", "succeeded"]


def test_a_retry_whose_reply_is_lost_is_queued_once(context, processes, redis_url):
    # the failure, which queues the retry, rides in the worker's next take; the take's reply is lost and
    # redis-py sends it again: written twice, the failure would queue the retry again and mark it queued
    # while it runs. Written once, the retry is the job the lost take started, which the sweep recovers
    # (not seen running: at the front of its queue, no retry used).
    queue = queue_for(context, "default")
    proxy = Proxy.to(redis_url)
    try:
        proxy.lose_reply_to(b"retries_left")  # only a failure writes that field
        job = sample_jobs.fails_then_naps.enqueue("lost", 1.0)
        processes.start("worker", "-c", "2", url=proxy.proxied(redis_url))
        wait_for(lambda: finished(context, job.id), timeout=20, what="the retry")
        wait_for(lambda: queue.count + queue.started_job_registry.count == 0, what="the workers idle")
        assert proxy.replies_lost == 1
        assert context.redis.get("test:attempts:lost") == b"2" and ran(context) == ["lost"]
        once = ["enqueued", "started", "retry", "started", "orphaned", "started", "succeeded"]
        assert events(context, job.id) == once
    finally:
        processes.stop_all()  # while the proxy still carries their goodbyes
        proxy.close()


def test_garbage_in_redis_fails_that_job_with_a_reason_and_the_worker_carries_on(
    context, redis_url, tmp_path
):
    planted = {
        "truncated": {"data": b'["tests.sample_jobs.record", null, [', "origin": "default"},
        "pickled": {"data": zlib.compress(pickle.dumps(_Exploit(tmp_path / "pwned"))), "origin": "default"},
        "no-fields": {"status": "queued"},
        "not-catalogued": {"data": json.dumps(["os.system", None, ["true"], {}]), "origin": "default"},
    }
    sample_jobs.record.enqueue("first")
    for job_id, fields in planted.items():
        context.redis.hset(f"rq:job:{job_id}", mapping={"status": "queued", **fields})
        context.redis.rpush("rq:queue:default", job_id)
    sample_jobs.record.enqueue("last")
    result = jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert result.returncode == 0, result.stderr
    assert ran(context) == ["first", "last"]
    reasons = {job_id: inspect.job_detail(context, job_id) for job_id in planted}
    assert {job_id: detail.state for job_id, detail in reasons.items()} == dict.fromkeys(planted, "failed")
    assert reasons["truncated"].error.startswith("UnreadableJob: the job's data cannot be read as JSON")
    assert reasons["pickled"].error.startswith("UnreadableJob: the job's data cannot be read as JSON")
    assert reasons["no-fields"].error.startswith("the job's hash is not an RQ job")
    assert reasons["not-catalogued"].error.startswith("UnknownJob: unknown job 'os.system'")
    assert not (tmp_path / "pwned").exists()  # the pickle was never loaded
    assert inspect.list_jobs(context, "failed").total == len(planted)
    unreadable = inspect.list_jobs(context, "failed", where=inspect.Filter(error="cannot be read"))
    assert {item.id for item in unreadable.items} == {"truncated", "pickled"}
    assert {item.name for item in unreadable.items} == {"?"}
