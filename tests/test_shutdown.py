"""Graceful shutdown: running jobs finish until the deadline, then are requeued without using an attempt."""

import os
import signal
import threading

import pytest

from jobs import bodies, inspect, timeline
from jobs.dequeue import Ahead
from jobs.enqueue import queue_for
from jobs.errors import WorkerInterrupted
from jobs.execution import INTERRUPT_SIGNAL, Worker
from jobs.prefetch import Prefetched
from tests import sample_jobs
from tests.conftest import events, wait_for


def running(context):
    return [raw.decode() for raw in context.redis.lrange("test:running", 0, -1)]


def shutdown_requested(context):
    return any(
        context.redis.hget(key, "shutdown_requested_date") for key in context.redis.smembers("rq:workers")
    )


def test_sigterm_lets_a_short_job_finish_then_exits_0(context, processes, redis_url):
    job = sample_jobs.sleep_then_record.enqueue("short", 1.0)
    pool = processes.start("worker", "-c", "1", "--shutdown-timeout", "20s", url=redis_url)
    wait_for(lambda: running(context), what="the job to start")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    assert inspect.job_detail(context, job.id).state == "finished"


def test_job_still_running_at_the_deadline_is_requeued_without_using_an_attempt(
    context, processes, redis_url
):
    job = sample_jobs.slow_then_ok.enqueue("long", 60)
    pool = processes.start("worker", "-c", "1", "--shutdown-timeout", "1s", url=redis_url)
    wait_for(lambda: running(context), what="the job to start")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    assert queue_for(context, "default").get_job_ids() == [job.id]
    detail = inspect.job_detail(context, job.id)
    assert detail.state == "queued" and detail.retries_left == 2
    events = [entry["event"] for entry in timeline.history(context.redis, context.keys, job.id)]
    assert events == ["enqueued", "started", "interrupted"]
    assert queue_for(context, "default").started_job_registry.count == 0


def test_second_signal_interrupts_at_once(context, processes, redis_url):
    job = sample_jobs.slow_then_ok.enqueue("impatient", 60)
    pool = processes.start("worker", "-c", "1", "--shutdown-timeout", "60s", url=redis_url)
    wait_for(lambda: running(context), what="the job to start")
    pool.send_signal(signal.SIGINT)
    wait_for(lambda: shutdown_requested(context), what="the worker to acknowledge the first signal")
    pool.send_signal(signal.SIGINT)
    assert pool.wait(timeout=30) == 0
    assert queue_for(context, "default").get_job_ids() == [job.id]


def stop_signal_once(monkeypatch, owner, method: str) -> list:
    """SIGTERM this process the first time `owner.method` has returned having done something (a job
    picked, a take sent ahead), as the pool's signal would land there; returns the list of times."""
    original, sent = getattr(owner, method), []

    def then_signal(self, *args, **kwargs):
        value = original(self, *args, **kwargs)
        if not sent and (value is not None or method == "__init__"):
            sent.append(method)
            os.kill(os.getpid(), signal.SIGTERM)
        return value

    monkeypatch.setattr(owner, method, then_signal)
    return sent


@pytest.mark.parametrize(
    ("owner", "method"), [(Prefetched, "next"), (Ahead, "__init__")], ids=["job-picked", "take-sent-ahead"]
)
def test_a_stop_signal_between_two_short_jobs_leaves_none_started(context, monkeypatch, owner, method):
    for number in range(20):
        sample_jobs.record.enqueue(f"j{number}")
    worker = Worker([queue_for(context, "default")], context)
    sent = stop_signal_once(monkeypatch, owner, method)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, INTERRUPT_SIGNAL)}
    try:
        worker.work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert sent == [method]
    queue = queue_for(context, "default")
    assert queue.started_job_registry.get_job_ids(cleanup=False) == []  # none left for the orphan sweep
    given_back = queue.get_job_ids()
    assert given_back and context.redis.llen("test:ran") + len(given_back) == 20
    assert all("orphaned" not in events(context, job_id) for job_id in given_back)


def test_the_deadline_s_interrupt_landing_as_a_job_starts_or_ends_does_not_hang_the_worker():
    def signal_handler_meanwhile():  # the main thread, in bodies.running(), holding its lock
        with bodies.running(), bodies._lock, pytest.raises(WorkerInterrupted):
            bodies.interrupt_all(WorkerInterrupted)  # what the handler of the deadline's signal does

    thread = threading.Thread(target=signal_handler_meanwhile, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the interrupt waited for a lock its own thread holds"
