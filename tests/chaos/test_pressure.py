"""Scenario 7, pressure: Redis at its `maxmemory` with `noeviction`.

Jobs are enqueued until Redis refuses one. Every other way in (enqueue_many, a delayed job, a unique job,
`jobctl enqueue`, a schedule triggered through the dashboard's API) is then refused with RedisFull, a
one-line "Redis is full" error, and leaves nothing behind: the jobs in Redis are exactly the accepted
ones, each in exactly one place, with no stray timeline or index entry. A worker pool and a scheduler
started on the full Redis go on: the pool finishes every queued job (its bookkeeping is written past
maxmemory), the scheduler keeps its due schedule due instead of failing it, and once the finished jobs
have expired and retention has swept their index entries, memory is below maxmemory, enqueueing works
again and the schedule fires. Each process says "Redis is full" at most once, with no traceback and no
restart."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

import jobs
from dashboard import create_app
from jobs import recurring, timeline
from jobs.connection import Context
from jobs.enqueue import queue_for
from jobs.errors import RedisFull
from jobs.maintenance import clean_registries, queue_names
from tests import sample_jobs
from tests.conftest import Output, jobctl, make_settings, per_process, wait_for

HEADROOM = 2_000_000  # bytes of maxmemory above what the empty server uses: about 1,800 queued jobs
JOB = sample_jobs.fleeting  # does nothing; its finished record expires after 2 s
SCHEDULE = "pressure"
TOKEN = "pressure-token-0123456789"
FULL_LINE = re.compile(r"Redis is full")


def used_memory(ctx: Context) -> int:
    return int(ctx.redis.info("memory")["used_memory"])


def fill(ctx: Context, limit: int = 20_000) -> list[str]:
    """Enqueue runs of JOB one by one until Redis refuses one; return the ids it accepted."""
    accepted: list[str] = []
    while len(accepted) < limit:
        try:
            accepted.append(JOB.enqueue(len(accepted)).id)
        except RedisFull:
            return accepted
    pytest.fail(
        f"Redis accepted {limit} jobs without filling up (maxmemory {ctx.redis.config_get('maxmemory')})"
    )


def places(ctx: Context) -> Counter:
    """How many places (queues, registries, orphans) hold each job id."""
    redis, held = ctx.redis, Counter()
    for name in queue_names(ctx):
        queue = queue_for(ctx, name)
        held.update(raw.decode() for raw in redis.lrange(queue.key, 0, -1))
        for registry in (
            queue.scheduled_job_registry,
            queue.deferred_job_registry,
            queue.started_job_registry,
            queue.finished_job_registry,
            queue.failed_job_registry,
            queue.canceled_job_registry,
        ):
            held.update(raw.decode().split(":")[0] for raw in redis.zrange(registry.key, 0, -1))
    held.update(
        raw.decode().rsplit("|", 1)[-1].split(":")[0] for raw in redis.zrange(ctx.keys.orphans, 0, -1)
    )
    return held


def job_ids(ctx: Context) -> set[str]:
    """Ids of every job hash (rq:job:<id>, not its dependents' or dependencies' sets)."""
    return {key.decode()[len("rq:job:") :] for key in ctx.redis.scan_iter("rq:job:*") if key.count(b":") == 2}


def assert_nothing_half_written(ctx: Context, accepted: list[str]) -> None:
    """The jobs in Redis are exactly the accepted ones, each in exactly one place, and nothing else a
    refused enqueue could write (a timeline, an index entry, a unique key, a schedule run) is there."""
    held = places(ctx)
    assert job_ids(ctx) == set(accepted)
    assert set(held) == set(accepted) and set(held.values()) == {1}
    timeline_prefix = ctx.keys.timeline("")
    timelines = {key.decode()[len(timeline_prefix) :] for key in ctx.redis.scan_iter(timeline_prefix + "*")}
    assert timelines <= set(accepted)
    assert list(ctx.redis.scan_iter(ctx.keys.index("*", "*"))) == []
    assert list(ctx.redis.scan_iter(ctx.keys.unique("*"))) == []
    assert ctx.redis.zcard(ctx.keys.schedule_runs(SCHEDULE)) == 0


def succeeded(ctx: Context) -> int:
    """Runs of JOB counted as succeeded in the last two minutes."""
    return timeline.by_name(ctx.redis, ctx.keys, "succeeded", "minute", 2).get(JOB.spec.name, 0)


def assert_refused(attempt) -> None:
    with pytest.raises(RedisFull) as refused:
        attempt()
    assert str(refused.value).startswith("Redis is full: it has reached its maxmemory")


def test_a_full_redis_refuses_new_jobs_and_drains_the_queued_ones(store, processes, tmp_path, report):
    redis, url = store.redis, store.url
    jobs.schedule(SCHEDULE, JOB, every="2s", args=[-1])  # due from now on; no scheduler runs yet
    empty = used_memory(store)
    maxmemory = empty + HEADROOM
    redis.config_set("maxmemory", maxmemory)
    assert redis.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}

    # 1. Fill it, then try every other way in.
    accepted = fill(store)
    full = used_memory(store)
    assert full > maxmemory - 1000
    assert_refused(lambda: jobs.enqueue_many([JOB.call(n) for n in range(200)]))
    assert_refused(lambda: JOB.enqueue_in(60, -1))
    assert_refused(lambda: sample_jobs.unique_job.enqueue("pressure"))
    cli = jobctl("enqueue", JOB.spec.name, "--args", "[-1]", url=url)
    [line] = cli.stderr.splitlines()
    assert cli.returncode == 2 and cli.stdout == "" and line.startswith("error: Redis is full"), cli.stderr
    dashboard = create_app(make_settings(url, data_dir=tmp_path, dashboard_token=TOKEN), testing=True)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    triggered = dashboard.test_client().post(f"/api/schedules/{SCHEDULE}/trigger", headers=bearer)
    dashboard.extensions["jobs.context"].redis.close()
    assert triggered.status_code == 503 and triggered.json["error"].startswith("Redis is full")

    # 2. Nothing half-written.
    assert_nothing_half_written(store, accepted)

    # 3. Workers and a scheduler on the full Redis: the queued jobs are done, the schedule stays due.
    pool, scheduler = processes.start("worker", "-c", "2", url=url), processes.start("scheduler", url=url)
    pool_output, scheduler_output = Output(pool), Output(scheduler)
    began = time.monotonic()
    finished_key = queue_for(store, JOB.spec.queue).finished_job_registry.key

    def all_finished() -> bool:
        return set(accepted) <= {raw.decode() for raw in redis.zrange(finished_key, 0, -1)}

    wait_for(all_finished, timeout=60, interval=0.2, what=f"{len(accepted)} queued jobs to finish")
    drained_in = time.monotonic() - began
    held = places(store)
    assert {held[job_id] for job_id in accepted} == {1}  # finished, nowhere else
    assert redis.zcard(queue_for(store, JOB.spec.queue).failed_job_registry.key) == 0
    assert recurring.history(store, SCHEDULE) == [], "the schedule fired while Redis was full"
    wait_for(lambda: succeeded(store) == len(accepted), what="the workers to count every job once")
    peak = int(redis.info("memory")["used_memory_peak"])

    # ... and memory comes back as the finished jobs expire and retention (which a scheduler runs every
    # minute) sweeps what is left of them: enqueueing works again, and the schedule fires.
    wait_for(lambda: not job_ids(store) & set(accepted), timeout=30, what="the finished jobs to expire")
    clean_registries(store)
    wait_for(lambda: used_memory(store) < maxmemory, timeout=30, interval=0.2, what="memory below maxmemory")
    after = used_memory(store)
    again = JOB.enqueue(-2)
    wait_for(
        lambda: again.id in {raw.decode() for raw in redis.zrange(finished_key, 0, -1)},
        what="a job enqueued after the episode to finish",
    )
    wait_for(lambda: recurring.history(store, SCHEDULE), what="the schedule to fire once Redis has room")

    # 4. Logs: at most one "Redis is full" per process, no traceback, no restart.
    processes.stop_all()
    pool_log, scheduler_log = pool_output.finish(), scheduler_output.finish()
    for log in (pool_log, scheduler_log):
        assert "Traceback" not in log and "restarting" not in log, log
        assert max(per_process(filter(FULL_LINE.search, log.splitlines())).values(), default=0) <= 1, log
    [warning] = [line for line in scheduler_log.splitlines() if FULL_LINE.search(line)]
    assert " WARNING " in warning, warning
    assert re.search(r" INFO .*Redis has room again", scheduler_log), scheduler_log
    report(
        f"pressure: {len(accepted)} jobs filled {HEADROOM:,} bytes of headroom; 6 ways in refused; "
        f"drained in {drained_in:.1f} s; used_memory empty {empty:,}, full {full:,}, peak {peak:,}, "
        f"after expiry and retention {after:,} (maxmemory {maxmemory:,})"
    )
