"""The scheduler process: several at once fire each time exactly once; one killed again and again loses
and duplicates nothing; it also recovers orphans and shows its heartbeat."""

import json
import os
import signal
import time
from collections import Counter

from jobs import inspect, recurring
from jobs.enqueue import queue_for
from jobs.execution import RUNNING_MARK
from jobs.scheduling import FIRE_BATCH, STOP_GRACE, Scheduler
from tests import sample_jobs
from tests.conftest import Output, jobctl, wait_for
from tests.proxy import Proxy


def fired(context) -> Counter:
    """Fire time -> number of jobs enqueued for it (runs of the `tick` schedule)."""
    ids = queue_for(context, "default").get_job_ids()
    return Counter(int(job_id.rsplit("-", 1)[1]) for job_id in ids if job_id.startswith("schedule-tick-"))


def add_every_second(context):
    recurring.schedule("tick", sample_jobs.record, every="1s", args=["tick"], context=context)


def assert_exactly_once_without_gaps(counts: Counter, at_least: int) -> None:
    assert len(counts) >= at_least
    assert set(counts.values()) == {1}, {fire: n for fire, n in counts.items() if n != 1}
    assert sorted(counts) == list(range(min(counts), max(counts) + 1))


def test_three_schedulers_fire_each_second_exactly_once(context, processes, redis_url):
    add_every_second(context)
    for _ in range(3):
        processes.start("scheduler", url=redis_url)
    start = time.time()
    wait_for(
        lambda: time.time() - start > 30 and len(fired(context)) >= 28,
        timeout=45,
        interval=0.5,
        what="30 s of fires",
    )
    processes.stop_all()
    assert_exactly_once_without_gaps(fired(context), at_least=28)
    late = [run.late for run in recurring.history(context, "tick", 100) if run.late is not None]
    assert sorted(late)[len(late) // 2] < 1.0  # median lateness well under a second


def test_a_scheduler_killed_again_and_again_neither_loses_nor_duplicates_a_fire(
    context, processes, redis_url
):
    add_every_second(context)
    steady = processes.start("scheduler", url=redis_url)
    for _ in range(6):
        victim = processes.start("scheduler", url=redis_url)
        before = len(fired(context))
        wait_for(lambda before=before: len(fired(context)) >= before + 2, timeout=15, what="more fires")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    os.kill(steady.pid, signal.SIGKILL)  # now every scheduler is dead for a while...
    steady.wait()
    gap_start = time.time()
    wait_for(lambda: time.time() - gap_start > 3, timeout=10, what="a few seconds of downtime")
    processes.start("scheduler", url=redis_url)  # ...and one comes back: the missed fires are caught up
    wait_for(lambda: max(fired(context)) >= time.time() - 1, timeout=15, what="catching up")
    processes.stop_all()
    assert_exactly_once_without_gaps(fired(context), at_least=15)


def test_the_scheduler_recovers_orphans_without_any_worker(context, processes, redis_url):
    job = sample_jobs.add.enqueue(1, 2)
    queue = queue_for(context, "default")
    context.redis.lrem(queue.key, 0, job.id)
    seen_running = int(time.time()) - 5 + RUNNING_MARK  # its worker's heartbeat had seen it run
    context.redis.zadd(queue.started_job_registry.key, {f"{job.id}:dead-worker": seen_running})
    processes.start("scheduler", url=redis_url)
    wait_for(lambda: inspect.job_detail(context, job.id).orphaned == 1, timeout=20, what="orphan recovery")
    assert inspect.job_detail(context, job.id).state == "scheduled"  # its retry, after the backoff


def test_jobctl_workers_lists_running_schedulers(context, processes, redis_url):
    scheduler = processes.start("scheduler", url=redis_url)
    wait_for(lambda: inspect.schedulers(context), what="the scheduler's heartbeat")
    result = jobctl("workers", "--json", url=redis_url)
    views = [view for view in json.loads(result.stdout) if view["kind"] == "scheduler"]
    assert [view["pid"] for view in views] == [scheduler.pid] and not views[0]["dead"]


def test_a_scheduler_stops_within_seconds_while_redis_is_unreachable(context, processes, redis_url):
    """Stopped mid-outage, with its tick waiting on a dead link (its retries take over half a minute to
    fail): it exits without waiting for it, nor for the removal of its heartbeat entry (minutes of
    retries); the entry ages out."""
    proxy = Proxy.to(redis_url)
    try:
        process = processes.start("scheduler", url=proxy.proxied(redis_url))
        output = Output(process)
        wait_for(lambda: inspect.schedulers(context), what="the scheduler's heartbeat")
        proxy.cut()
        wait_for(lambda: "cannot reach Redis" in "\n".join(output.lines), timeout=15, what="the outage")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_GRACE + 3) == 0
    finally:
        proxy.close()


def test_a_scheduler_whose_due_schedules_cannot_fire_waits_for_its_next_tick(context, monkeypatch):
    """A full batch of schedules that cannot fire (their job renamed in a deploy) is one batch: the
    scheduler then waits for its next tick instead of reading them again and again without a pause."""
    for number in range(FIRE_BATCH):
        schedule_id = f"stuck-{number}"
        definition = recurring.define(schedule_id, sample_jobs.record, every="1s", args=["s"])
        recurring.save(context, definition, now=time.time() - 10)
        context.redis.hset(context.keys.schedule(schedule_id), "job", "gone.module.job")
    scheduler = Scheduler(context)
    ticks, waited_after = [], []
    tick = scheduler.tick

    def counted_tick(now=None):
        ticks.append(now)
        if len(ticks) == 10:  # a scheduler that never waits: end the test
            scheduler.stop()
        return tick(now)

    def wait(timeout):
        waited_after.append(len(ticks))
        scheduler.stop()

    monkeypatch.setattr(scheduler, "tick", counted_tick)
    monkeypatch.setattr(scheduler.stopped, "wait", wait)
    scheduler.run()
    assert waited_after == [2]  # the batch that failed, then one that found nothing due
