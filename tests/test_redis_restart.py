"""Redis crashes mid-run: the server is SIGKILLed while a worker pool runs jobs, stays down for longer than
the clients' retry budget, and comes back on the same port with its append-only file. The pool's processes
reconnect instead of crashing, report the outage briefly rather than once per retry, and no job is lost.
Delivery is at least once: every job ends `finished`, and only the jobs that were running when Redis died
may run a second time. Delayed jobs keep running after the outage."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from jobs import inspect
from jobs.connection import Context
from tests import sample_jobs
from tests.conftest import Output, alive, children, per_process, ran, wait_for

JOBS = 30
CONCURRENCY = 2
JOB_SECONDS = 0.5  # long enough that the kill lands while jobs run, short enough for a quick test
DOWN_FOR = 15.0  # seconds: well past the clients' retry budget (about 5 s), like a restart on a busy host
OUTAGE_LINE = re.compile(r"could not connect to Redis|cannot reach Redis")


def started(ctx: Context) -> list[str]:
    """Jobs of slow_then_ok whose first attempt has started."""
    return [raw.decode() for raw in ctx.redis.lrange("test:running", 0, -1)]


def describe(ctx: Context, job_id: str) -> str:
    """Where a job is: its state, its timeline, and the lists and sets (queues, registries) holding it."""
    detail = inspect.job_detail(ctx, job_id)
    events = [entry["event"] for entry in detail.timeline]
    holders = [
        key.decode()
        for key in [*ctx.redis.keys("rq:*"), *ctx.redis.keys(ctx.settings.prefix + "*")]
        if (ctx.redis.type(key) == b"list" and job_id.encode() in ctx.redis.lrange(key, 0, -1))
        or (
            ctx.redis.type(key) == b"zset" and any(job_id.encode() in m for m in ctx.redis.zrange(key, 0, -1))
        )
    ]
    return f"{job_id}: state={detail.state} attempts={detail.attempts} timeline={events} held by {holders}"


def crash_for_a_while(server, output: Output, workers: set[int], also_watch: set[int] = frozenset()) -> None:
    """SIGKILL Redis and keep it down until every worker has noticed and DOWN_FOR seconds have passed (or,
    earlier, until a worker or a process in `also_watch` has died: the outage has then done its damage),
    then restart it on the same port and data dir, so clients reconnect to the same URL."""
    port, mark, down_since = server.port, len(output.lines), time.monotonic()
    watched = workers | also_watch
    server.kill()
    wait_for(
        lambda: outage_noticed_by(output, mark, workers) or not all(map(alive, watched)),
        timeout=30,
        what="the workers to notice that Redis is gone",
    )
    while time.monotonic() - down_since < DOWN_FOR and all(map(alive, watched)):
        time.sleep(0.1)
    server.start()
    assert server.port == port


def outage_noticed_by(output: Output, mark: int, pids: set[int]) -> bool:
    return pids <= set(per_process(filter(OUTAGE_LINE.search, output.since(mark))))


def test_no_job_is_lost_when_redis_crashes_mid_run(store, processes, private_server):
    url = private_server.url
    jobs = [sample_jobs.slow_then_ok.enqueue(f"job-{i}", JOB_SECONDS) for i in range(JOBS)]
    pool = processes.start("worker", "-c", str(CONCURRENCY), url=url)
    output = Output(pool)
    # Kill Redis while every worker is inside a job: started (recorded in test:running), not yet done.
    wait_for(
        lambda: len(started(store)) >= 6 and len(started(store)) - len(ran(store)) == CONCURRENCY,
        timeout=30,
        what="every worker to be running a job",
    )
    workers = children(pool.pid)
    assert len(workers) == CONCURRENCY

    crash_for_a_while(private_server, output, workers)
    wait_for(lambda: store.redis.ping(), what="Redis to answer again")
    assert len(ran(store)) < JOBS, "the crash came too late to land mid-run"

    def unfinished():
        return [job.id for job in jobs if inspect.job_detail(store, job.id).state != "finished"]

    try:
        wait_for(lambda: not unfinished(), timeout=60, what="every job to finish after the restart")
    except pytest.fail.Exception:
        lost = "\n".join(describe(store, job_id) for job_id in unfinished())
        pytest.fail(f"jobs lost after the restart:\n{lost}\n{output.trouble()}")

    # The pool reconnected: same supervisor, same worker processes, none restarted.
    assert pool.poll() is None, "the worker pool exited during the outage:\n" + output.trouble()
    assert children(pool.pid) == workers, (
        "worker processes were replaced instead of reconnecting:\n" + output.trouble()
    )

    # At least once: every job ran; only jobs in flight at the crash (one per worker) may have run twice.
    runs = Counter(ran(store))
    assert set(runs) == {f"job-{i}" for i in range(JOBS)}
    assert sum(count - 1 for count in runs.values()) <= CONCURRENCY, runs

    processes.stop_all()
    assert pool.returncode == 0
    log = output.finish()
    assert "restarting" not in log, log
    outage_lines = [line for line in log.splitlines() if OUTAGE_LINE.search(line)]
    said_by = per_process(outage_lines)
    assert workers <= set(said_by), outage_lines
    # Our own loops say it once per process; RQ's reconnect loops say it once per attempt, with a backoff.
    for own in ("heartbeat cannot reach Redis", "maintenance cannot reach Redis"):
        said = per_process(line for line in outage_lines if own in line)
        assert max(said.values(), default=0) <= 1, outage_lines
    assert max(said_by.values()) <= DOWN_FOR / 3, "the outage floods the log:\n" + "\n".join(outage_lines)
    for pid in per_process(line for line in outage_lines if "heartbeat cannot reach Redis" in line):
        assert re.search(rf" {pid} \S+ INFO .*heartbeat reaches Redis again", log), (
            f"{pid} never said it recovered"
        )


def test_delayed_jobs_still_run_after_a_redis_crash(store, processes, private_server):
    """Delayed jobs and retries with a backoff are moved to their queue by RQ's scheduler, which a worker
    runs in a child process: it must ride out the outage (or be replaced promptly), or they stall."""
    pool = processes.start("worker", "-c", str(CONCURRENCY), url=private_server.url)
    output = Output(pool)
    started = re.compile(r"Scheduler for .* started with PID (\d+)")
    scheduler = int(
        wait_for(
            lambda: next((m.group(1) for line in output.lines if (m := started.search(line))), None),
            what="RQ's scheduler process to start",
        )
    )
    before = sample_jobs.record.enqueue_in(1, "before")
    wait_for(lambda: inspect.job_detail(store, before.id).state == "finished", what="a delayed job to run")

    crash_for_a_while(private_server, output, children(pool.pid), also_watch={scheduler})
    survived = alive(scheduler)
    wait_for(lambda: store.redis.ping(), what="Redis to answer again")
    after = sample_jobs.record.enqueue_in(1, "after")
    wait_for(
        lambda: inspect.job_detail(store, after.id).state == "finished",
        timeout=30,
        what=f"a delayed job enqueued after the restart (RQ's scheduler {'survived' if survived else 'died'})",
    )
    assert ran(store) == ["before", "after"]

    processes.stop_all()
    log = output.finish()
    assert "Traceback" not in log, "a process crashed on the outage:\n" + log
