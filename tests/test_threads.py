"""Workers in threads (`--threads`): jobs that wait run side by side in one process, with timeouts, graceful
stops and the shutdown deadline working as they do in a process of one worker."""

import signal
import threading

import pytest

from jobs import inspect
from jobs.alone import Alone
from jobs.enqueue import queue_for
from tests import sample_jobs
from tests.conftest import events, jobctl, wait_for


def running(context):
    return [raw.decode() for raw in context.redis.lrange("test:running", 0, -1)]


def test_jobs_run_side_by_side_in_the_threads_of_one_process(context, redis_url):
    jobs = [sample_jobs.naps.enqueue(f"nap-{i}", 0.3) for i in range(8)]
    result = jobctl("worker", "--burst", "-c", "1", "--threads", "4", url=redis_url)
    assert result.returncode == 0, result.stderr
    assert all(inspect.job_detail(context, job.id).state == "finished" for job in jobs)
    assert {pid.rsplit(":", 1)[1] for pid in running(context)} == {running(context)[0].rsplit(":", 1)[1]}
    concurrency = [int(raw) for raw in context.redis.lrange("test:concurrency", 0, -1)]
    assert 1 < max(concurrency) <= 4
    assert events(context, jobs[0].id) == ["enqueued", "started", "succeeded"]


def test_a_job_over_its_timeout_in_a_thread_fails_and_the_others_go_on(context, redis_url):
    slow = sample_jobs.naps.enqueue("slow", 5)
    quick = [sample_jobs.naps.enqueue(f"quick-{i}", 0.1) for i in range(4)]
    result = jobctl("worker", "--burst", "-c", "1", "--threads", "2", url=redis_url)
    assert result.returncode == 0, result.stderr
    detail = inspect.job_detail(context, slow.id)
    assert detail.state == "failed"
    assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in detail.traceback
    assert all(inspect.job_detail(context, job.id).state == "finished" for job in quick)


def stop_while_all_run(context, processes, redis_url, jobs, shutdown_timeout: str) -> None:
    """Run `jobs` at once, one per thread of one worker process, and SIGTERM it; it must exit 0."""
    threads = str(len(jobs))
    pool = processes.start(
        "worker", "-c", "1", "--threads", threads, "--shutdown-timeout", shutdown_timeout, url=redis_url
    )
    wait_for(lambda: len(running(context)) == len(jobs), what="every job to run at once")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0


def test_sigterm_lets_the_jobs_running_in_threads_finish(context, processes, redis_url):
    jobs = [sample_jobs.naps.enqueue(f"finishing-{i}", 0.5) for i in range(3)]
    stop_while_all_run(context, processes, redis_url, jobs, "20s")
    assert all(inspect.job_detail(context, job.id).state == "finished" for job in jobs)


@pytest.mark.parametrize(
    "running",
    [
        [("long_naps", "long-0"), ("long_naps", "long-1")],
        # the interrupt waits for a blocking call to end: the process's main thread puts that job back,
        # and the process exits without it
        [("slow_then_ok", "blocked"), ("long_naps", "napping")],
    ],
    ids=["python-code", "a-blocking-call"],
)
def test_jobs_running_in_threads_at_the_deadline_are_requeued(context, processes, redis_url, running):
    jobs = [getattr(sample_jobs, name).enqueue(tag, 60) for name, tag in running]
    stop_while_all_run(context, processes, redis_url, jobs, "1s")
    assert sorted(queue_for(context, "default").get_job_ids()) == sorted(job.id for job in jobs)
    for job in jobs:
        assert events(context, job.id) == ["enqueued", "started", "interrupted"]
        assert inspect.job_detail(context, job.id).retries_left == 2
    assert queue_for(context, "default").started_job_registry.count == 0


def test_a_job_run_alone_runs_once_the_other_workers_hold_nothing_and_wait():
    alone, other, claimant = Alone(), "other", "claimant"
    alone.join(other)
    alone.join(claimant)
    assert alone.admit(other, alone=False)  # nobody has claimed the process: jobs run side by side
    assert not alone.admit(claimant, alone=True)  # it claims, but the other may hold or run jobs
    assert alone.claimed_by_another(other) and not alone.claimed_by_another(claimant)
    assert not alone.wait_turn(other, lambda: False, holding=True)  # give back first, then wait
    waiting = threading.Thread(target=alone.wait_turn, args=(other, lambda: False, False))
    waiting.start()
    assert alone.wait_turn(claimant, lambda: False, holding=False)  # back once the other waits
    assert alone.admit(claimant, alone=True)
    assert waiting.is_alive()
    alone.release(claimant)
    waiting.join(timeout=10)
    assert not waiting.is_alive() and alone.admit(other, alone=False)


def test_a_claimant_does_not_wait_for_a_worker_that_has_stopped_nor_after_a_stop_request():
    alone, gone, claimant = Alone(), "gone", "claimant"
    alone.join(gone)
    alone.join(claimant)
    assert not alone.admit(claimant, alone=True)
    assert not alone.wait_turn(claimant, lambda: True, holding=False)  # stopped: the claim ends
    assert alone.admit(gone, alone=False)
    assert not alone.admit(claimant, alone=True)
    alone.leave(gone)  # its thread ended
    assert alone.wait_turn(claimant, lambda: False, holding=False)
    assert alone.admit(claimant, alone=True)


def test_a_worker_abandoned_at_the_deadline_writes_the_ends_of_the_short_jobs_it_ran_first(
    context, processes, redis_url
):
    # short jobs are taken several at a time, their ends written with the next take: the worker of a
    # thread stuck in a blocking call after them has them, and its process exits without that thread
    short = [sample_jobs.record.enqueue(f"short-{i}") for i in range(6)]
    blocked = sample_jobs.slow_then_ok.enqueue("blocked", 60)
    pool = processes.start("worker", "-c", "1", "--threads", "2", "--shutdown-timeout", "1s", url=redis_url)
    wait_for(lambda: running(context), what="the blocking job to run")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=30) == 0
    assert [inspect.job_detail(context, job.id).state for job in short] == ["finished"] * len(short)
    assert events(context, blocked.id) == ["enqueued", "started", "interrupted"]
    assert queue_for(context, "default").started_job_registry.count == 0
