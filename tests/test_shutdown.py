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
from tests.conftest import Output, children, events, ran, wait_for


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


class _NotingLock:
    """bodies' lock, noting when `thread` asks for it."""

    def __init__(self, thread_name: str):
        self._lock, self.asked, self._thread_name = threading.RLock(), threading.Event(), thread_name

    def __enter__(self):
        if threading.current_thread().name == self._thread_name:
            self.asked.set()
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)


def test_the_deadline_s_interrupt_landing_as_a_job_s_function_returns_does_not_run_it_again(
    context, monkeypatch
):
    # a worker thread (--threads) whose job's function returns as the deadline's interrupt runs in the
    # main thread (jobs.threads.run's `interrupt`), which holds bodies' lock while it raises into the
    # threads it lists
    sample_jobs.returning.clear()
    sample_jobs.let_return.clear()
    job = sample_jobs.returns_when_let.enqueue("done")
    worker = Worker([queue_for(context, "default")], context)
    thread = threading.Thread(target=worker.work, kwargs={"burst": True}, name="job-thread", daemon=True)
    thread.start()
    assert sample_jobs.returning.wait(10)
    lock = _NotingLock("job-thread")
    monkeypatch.setattr(bodies, "_lock", lock)
    with lock:
        sample_jobs.let_return.set()
        assert lock.asked.wait(5)  # the function has returned; bodies.running() waits to unlist the thread
        worker.stop_after_job()
        bodies.interrupt_all(WorkerInterrupted)
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert ran(context) == ["done"]
    assert events(context, job.id) == ["enqueued", "started", "succeeded"]


def restarting(output: Output) -> int:
    """How many times the pool has said it restarts a worker."""
    return sum("restarting" in line for line in output.lines)


def test_a_stop_signal_during_a_restart_delay_starts_no_worker(context, processes, redis_url):
    pool = processes.start("worker", "-c", "1", "--shutdown-timeout", "20s", url=redis_url)
    output = Output(pool)
    killed: set[int] = set()
    for deaths in range(1, 4):  # quick deaths in a row: the restart delays grow 0.2, 0.4, 0.8 s
        worker = wait_for(lambda known=set(killed): children(pool.pid) - known, what="a worker process")
        killed |= worker
        for pid in worker:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=deaths: restarting(output) == n, what="the pool to restart the worker")
    pool.send_signal(signal.SIGTERM)  # during the restart delay
    late = sample_jobs.record.enqueue("after the stop signal")
    assert pool.wait(timeout=10) == 0
    assert ran(context) == [] and inspect.job_detail(context, late.id).state == "queued"
