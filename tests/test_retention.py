"""Retention: finished jobs live JOBS_SUCCEEDED_TTL, failed ones JOBS_FAILED_TTL; timelines, results and
counters expire with them, and every key that has no TTL is a bounded structure."""

import re

from jobs import admin, inspect, timeline
from jobs.connection import Context, activate
from jobs.enqueue import queue_for
from jobs.maintenance import Sweeper, clean_registries
from tests import sample_jobs
from tests.conftest import jobctl, make_settings, wait_for

SUCCEEDED_TTL, FAILED_TTL = 3600, 2 * 3600

# Keys that legitimately have no TTL: queues, registries and indexes whose entries are removed by
# the workers and by clean_registries, and our capped audit stream / transient orphans set.
PERMANENT = [
    r"rq:queues",
    r"rq:queue:[\w-]+",
    r"rq:(wip|finished|failed|deferred|canceled|scheduled):[\w-]+",
    r"rq:workers(:[\w-]+)?",
    r"rq:clean_registries:[\w-]+",
    r"jobs:locks",  # names of held locks; pruned by maintenance
    r"jobs:index:(finished|failed):[\w-]+",  # ended jobs by name and time; swept by clean_registries
    r"jobs:wake:[\w-]+",  # wake tokens of idle workers, trimmed to a few
    r"jobs:audit",  # operator actions, a capped stream
    r"test:.*",
]


def short_lived(redis_url):
    return activate(
        Context.connect(make_settings(redis_url, succeeded_ttl=SUCCEEDED_TTL, failed_ttl=FAILED_TTL))
    )


def run_burst(redis_url):
    env = {"JOBS_SUCCEEDED_TTL": str(SUCCEEDED_TTL), "JOBS_FAILED_TTL": str(FAILED_TTL)}
    result = jobctl("worker", "--burst", "-c", "1", url=redis_url, **env)
    assert result.returncode == 0, result.stderr


def ttl(context, key):
    return context.redis.ttl(key)


def test_finished_and_failed_jobs_expire_with_their_timelines(context, redis_url):
    context = short_lived(redis_url)
    ok = sample_jobs.record.enqueue("kept an hour")
    bad = sample_jobs.fails_without_retry.enqueue("kept two hours")
    run_burst(redis_url)
    assert inspect.job_detail(context, ok.id).state == "finished"
    assert inspect.job_detail(context, bad.id).state == "failed"
    assert SUCCEEDED_TTL - 60 < ttl(context, ok.key) <= SUCCEEDED_TTL
    # a job that ran once and succeeded keeps its whole timeline in its hash
    assert not context.redis.exists(context.keys.timeline(ok.id))
    assert [e["event"] for e in timeline.history(context.redis, context.keys, ok.id)][-1] == "succeeded"
    assert FAILED_TTL - 60 < ttl(context, bad.key) <= FAILED_TTL
    assert FAILED_TTL - 60 < ttl(context, context.keys.timeline(bad.id)) <= FAILED_TTL
    for key in context.redis.scan_iter(match=f"rq:results:{ok.id}*"):
        assert 0 < ttl(context, key.decode()) <= SUCCEEDED_TTL


def test_a_requeued_failed_job_is_kept_until_it_ends_again(context, redis_url):
    context = short_lived(redis_url)
    bad = sample_jobs.fails_without_retry.enqueue("requeued")
    run_burst(redis_url)
    assert FAILED_TTL - 60 < ttl(context, bad.key) <= FAILED_TTL
    assert admin.requeue_failed(context, [bad.id]).count == 1
    # however long it waits in its queue and runs, it is not done: its failure's retention is over
    assert ttl(context, bad.key) == -1
    run_burst(redis_url)
    assert inspect.job_detail(context, bad.id).state == "failed"
    assert FAILED_TTL - 60 < ttl(context, bad.key) <= FAILED_TTL


def test_every_key_without_a_ttl_is_a_bounded_structure(context, redis_url):
    context = short_lived(redis_url)
    for i in range(5):
        sample_jobs.record.enqueue(f"ok-{i}")
        sample_jobs.always_fails.enqueue(f"bad-{i}")
    later = sample_jobs.record.enqueue_in(3600, "later")
    canceled = sample_jobs.record.enqueue_in(3600, "canceled")
    admin.cancel_job(context, canceled.id, "test")
    run_burst(redis_url)
    unbounded = []
    for raw in context.redis.scan_iter():
        key = raw.decode()
        if ttl(context, key) == -1 and not any(re.fullmatch(pattern, key) for pattern in PERMANENT):
            unbounded.append(key)
    assert unbounded == [later.key]  # a job still waiting to run never expires
    assert inspect.job_detail(context, later.id).state == "scheduled"
    assert FAILED_TTL - 60 < ttl(context, canceled.key) <= FAILED_TTL  # kept as long as a failed job
    clean_registries(context)
    assert inspect.list_jobs(context, "canceled").total == 1  # and listed as long
    assert all(ttl(context, key.decode()) > 0 for key in context.redis.scan_iter(match="jobs:stats:*"))


def test_expired_entries_leave_the_registries(context, redis_url):
    context = activate(Context.connect(make_settings(redis_url, succeeded_ttl=1, failed_ttl=1)))
    sample_jobs.record.enqueue("short")
    sample_jobs.fails_without_retry.enqueue("short")
    delayed = sample_jobs.record.enqueue_in(60, "canceled")
    jobctl("worker", "--burst", "-c", "1", url=redis_url, JOBS_SUCCEEDED_TTL="1", JOBS_FAILED_TTL="1")
    admin.cancel_job(context, delayed.id, "test")  # after the worker, whose maintenance applies retention
    queue = queue_for(context, "default")
    registries = [
        queue.finished_job_registry.key,
        queue.failed_job_registry.key,
        queue.canceled_job_registry.key,
    ]
    indexes = [context.keys.index(state, "default") for state in ("finished", "failed")]
    assert sum(context.redis.zcard(key) for key in registries) == 3  # raw: `count` would clean first
    assert [context.redis.zcard(key) for key in indexes] == [3, 3]  # by time, by name, by expiry

    def registries_empty():
        clean_registries(context)
        return all(context.redis.zcard(key) == 0 for key in registries + indexes)

    wait_for(registries_empty, timeout=15, interval=0.5, what="expired entries to be cleaned")


def test_a_job_waiting_for_one_that_is_gone_or_canceled_is_canceled_by_retention(context, redis_url):
    parents = [sample_jobs.record.enqueue(name) for name in ("deleted", "canceled", "failing", "expired")]
    children = {parent.args[0]: sample_jobs.record.enqueue("child", depends_on=parent) for parent in parents}
    admin.delete_job(context, parents[0].id, "test")
    admin.cancel_job(context, parents[1].id, "test")
    context.redis.hset(parents[2].key, "status", "failed")  # may be requeued: its dependent waits on
    context.redis.delete(parents[3].key)  # as when its retention ends
    Sweeper(context, interval=60, retention=True).tick()
    states = {name: inspect.job_detail(context, child.id).state for name, child in children.items()}
    assert states == {
        "deleted": "canceled",
        "canceled": "canceled",
        "failing": "deferred",
        "expired": "canceled",
    }
    [event] = [
        e
        for e in timeline.history(context.redis, context.keys, children["expired"].id)
        if e["event"] == "canceled"
    ]
    assert (
        event["by"] == "maintenance"
        and event["reason"] == f"job {parents[3].id}, which it waits for, is gone"
    )
    assert (
        0 < ttl(context, children["deleted"].key) <= context.settings.failed_ttl
    )  # kept as canceled jobs are
