"""Short jobs taken several at a time: each is started (in RQ's started registry) from its take to its end,
runs once, and goes back to the front of its queue, as a queued job, when its worker stops first or when
it waits too long behind a slow job."""

import time

import redis

from jobs import inspect, prefetch
from jobs.enqueue import queue_for
from jobs.execution import Worker
from jobs.maintenance import sweep_orphans
from tests import sample_jobs
from tests.conftest import events, jobctl, ran, wait_for


def take_ahead(context) -> tuple[Worker, list]:
    """A worker whose last job was short, after one take: the job it returned and those it holds."""
    worker = Worker([queue_for(context, "default")], context)
    worker._prefetched.ran(0.0)
    first, _ = worker.dequeue_job_and_maintain_ttl(timeout=None)
    held = [job for job, _ in worker._prefetched.release()]
    worker._prefetched.fill([(job, queue_for(context, "default")) for job in held])
    return worker, [first, *held]


def test_after_short_jobs_a_take_starts_several_jobs_of_the_queue_in_order(context):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(prefetch.PREFETCH + 2)]
    taken_at = time.time()
    worker, taken = take_ahead(context)
    assert [job.id for job in taken] == [job.id for job in jobs[: prefetch.PREFETCH]]
    queue = queue_for(context, "default")
    assert sorted(queue.started_job_registry.get_job_ids()) == sorted(job.id for job in taken)
    assert queue.get_job_ids() == [job.id for job in jobs[prefetch.PREFETCH :]]
    assert {inspect.job_detail(context, job.id).worker for job in taken} == {worker.name}
    assert all(inspect.job_detail(context, job.id).state == "started" for job in taken)
    # heartbeat deadlines in whole seconds, as RQ scores its registries, never before the timeout
    deadlines = [
        score for _, score in context.redis.zrange(queue.started_job_registry.key, 0, -1, withscores=True)
    ]
    assert all(score == int(score) >= taken_at + context.settings.orphan_timeout for score in deadlines)


def test_jobs_taken_ahead_go_back_to_the_front_of_their_queue_when_the_worker_stops(context):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(prefetch.PREFETCH + 2)]
    worker, taken = take_ahead(context)
    worker._let_go()  # as its teardown does: the first job is the one it ran
    queue = queue_for(context, "default")
    assert queue.get_job_ids() == [job.id for job in jobs[1:]]
    assert queue.started_job_registry.get_job_ids() == [taken[0].id]
    back = inspect.job_detail(context, taken[1].id)
    assert back.state == "queued" and back.worker is None
    assert events(context, taken[1].id) == ["enqueued"]


def test_jobs_taken_ahead_by_a_killed_worker_go_back_in_order_without_using_a_retry(context, worker_tally):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(prefetch.PREFETCH + 2)]  # no retries
    worker, (running, *held) = take_ahead(context)
    worker.prepare_execution(running)
    worker._tick(None)  # a heartbeat tick sees it run; the worker dies before the next one
    swept = sweep_orphans(context, now=time.time() + 3600)
    assert sorted(swept) == sorted(job.id for job in jobs[: prefetch.PREFETCH])
    assert inspect.job_detail(context, running.id).state == "failed"  # RQ's policy: no retry left
    # back at the front, in the order they were taken, before the jobs that were never taken
    assert queue_for(context, "default").get_job_ids() == [job.id for job in jobs[1:]]
    assert all(inspect.job_detail(context, job.id).orphaned == 1 for job in held)


def ids(jobs) -> list[str]:
    return [job.id for job in jobs]


def test_a_job_that_a_dead_worker_held_is_taken_alone(context):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(6)]
    for held in jobs[2:4]:
        context.redis.hset(held.key, "orphaned", 1)
    queue = queue_for(context, "default")
    assert ids(take_ahead(context)[1]) == ids(jobs[:2])  # the take ends before it...
    assert queue.get_job_ids() == ids(jobs[2:])  # ...which stays at the front, with those behind it
    assert ids(take_ahead(context)[1]) == ids(jobs[2:3])  # then it is a take of its own
    assert ids(take_ahead(context)[1]) == ids(jobs[3:4])
    assert ids(take_ahead(context)[1]) == ids(jobs[4:])
    assert sorted(queue.started_job_registry.get_job_ids()) == sorted(ids(jobs))


def test_a_job_that_a_dead_worker_held_runs_with_no_other_job_held_or_unrecorded(context, redis_url):
    before = [sample_jobs.record.enqueue(f"before-{i}") for i in range(5)]
    held = sample_jobs.records_started.enqueue("held")
    after = [sample_jobs.record.enqueue(f"after-{i}") for i in range(2 * prefetch.PREFETCH)]
    context.redis.hset(held.key, "orphaned", 1)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    # as it ran, no job was taken ahead and every job before it had its end recorded
    assert context.redis.lrange("test:started", 0, -1) == [held.id.encode()]
    assert ran(context) == [job.args[0] for job in (*before, held, *after)]


def unreachable(*_) -> None:
    raise redis.ConnectionError("Redis cannot be reached")


def test_a_lone_job_runs_when_the_ends_before_it_cannot_be_written_yet(context, monkeypatch):
    first = sample_jobs.record.enqueue("first")
    lone = sample_jobs.record.enqueue("lone")
    context.redis.hset(lone.key, "orphaned", 1)
    queue = queue_for(context, "default")
    worker, (taken,) = take_ahead(context)
    worker.execute_job(taken, queue)  # its end waits for the next take
    worker._prefetched.fill([(take_ahead(context)[1][0], queue)])
    monkeypatch.setattr("jobs.execution.send", unreachable)
    held, _ = worker.dequeue_job_and_maintain_ttl(timeout=None)
    assert held.id == lone.id and inspect.job_detail(context, first.id).state == "started"
    monkeypatch.undo()
    worker._let_go()
    assert inspect.job_detail(context, first.id).state == "finished"


def test_a_worker_runs_many_short_jobs_each_once_in_order(context, redis_url):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(60)]
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == [f"job-{i}" for i in range(60)]
    assert all(events(context, job.id) == ["enqueued", "started", "succeeded"] for job in jobs)
    assert queue_for(context, "default").started_job_registry.get_job_ids() == []


def test_jobs_waiting_behind_a_slow_one_are_given_back_to_another_worker(context, processes, redis_url):
    # takes of 1 (nothing ran yet), then of 8: the fourth takes the last 3 warm-ups, the slow one and 4 more
    for i in range(20):
        sample_jobs.record.enqueue(f"warm-{i}")
    slow = sample_jobs.sleep_then_record.enqueue("slow", 5)
    behind = [sample_jobs.record.enqueue(f"behind-{i}") for i in range(prefetch.PREFETCH)]
    processes.start("worker", "-c", "1", url=redis_url)

    def state(job) -> str:
        return inspect.job_detail(context, job.id).state

    wait_for(lambda: state(slow) == "started", what="the slow job to start")
    assert [state(job) for job in behind[:4]] == ["started"] * 4  # taken with it, waiting behind it
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: all(state(job) == "finished" for job in behind), what="the jobs behind it to run")
    assert state(slow) == "started"  # they did not wait for it
    wait_for(lambda: state(slow) == "finished", what="the slow job")
    assert sorted(ran(context)) == sorted(
        [*(f"warm-{i}" for i in range(20)), "slow", *(j.args[0] for j in behind)]
    )
    # the ends of the warm-ups run before the slow job waited for the next take: their heartbeats went on
    assert queue_for(context, "default").failed_job_registry.count == 0


def test_while_jobs_are_short_the_next_take_is_in_flight_as_the_worker_runs_those_it_holds(context):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(3 * prefetch.PREFETCH)]
    worker, taken = take_ahead(context)
    second, _ = worker.dequeue_job_and_maintain_ttl(timeout=None)  # sends the next take ahead
    assert second.id == taken[1].id and worker._ahead is not None
    worker._ahead.read(context, worker.job_class, worker._hold)  # as the heartbeat thread would
    held = [job.id for job, _ in worker._prefetched.release()]
    assert held == [job.id for job in jobs[2 : 2 * prefetch.PREFETCH]]  # in queue order, none twice
    queue = queue_for(context, "default")
    assert len(queue.started_job_registry.get_job_ids()) == 2 * prefetch.PREFETCH
    assert queue.get_job_ids() == [job.id for job in jobs[2 * prefetch.PREFETCH :]]
    assert {inspect.job_detail(context, job_id).worker for job_id in held} == {worker.name}


def test_jobs_of_a_take_in_flight_go_back_to_the_front_of_their_queue_when_the_worker_stops(context):
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(3 * prefetch.PREFETCH)]
    worker, taken = take_ahead(context)
    worker.dequeue_job_and_maintain_ttl(timeout=None)  # the second job: the next take goes ahead
    worker._let_go()
    queue = queue_for(context, "default")
    assert queue.get_job_ids() == [job.id for job in jobs[2:]]
    assert sorted(queue.started_job_registry.get_job_ids()) == sorted(job.id for job in taken[:2])
    assert all(events(context, job.id) == ["enqueued"] for job in jobs[2:])


def test_a_redis_that_forgets_its_scripts_mid_stream_still_runs_every_job_once(context, processes, redis_url):
    # SCRIPT FLUSH (as a restart does) makes takes in flight fail (NOSCRIPT): their finishes go again
    jobs = [sample_jobs.record.enqueue(f"job-{i}") for i in range(600)]
    processes.start("worker", "-c", "1", url=redis_url, JOBS_LOG_LEVEL="WARNING")  # no pipe to fill
    for done in (100, 300):
        wait_for(lambda done=done: len(ran(context)) >= done, what=f"{done} jobs to run")
        context.redis.script_flush()
    wait_for(lambda: len(ran(context)) == len(jobs), what="every job to run")
    wait_for(lambda: all(inspect.job_detail(context, job.id).state == "finished" for job in jobs[-20:]))
    assert ran(context) == [f"job-{i}" for i in range(600)]
    finished = queue_for(context, "default").finished_job_registry.get_job_ids()
    assert sorted(finished) == sorted(job.id for job in jobs)


def test_the_finishes_of_jobs_of_two_queues_sent_together_land_in_each_queues_registries(
    context, worker_tally
):
    # as when a failed take's finishes go again with the next ones (the script writes each sorted set once)
    jobs = [sample_jobs.record_critical.enqueue("critical"), sample_jobs.record_low.enqueue("low")]
    worker = Worker([queue_for(context, name) for name in ("critical", "low")], context)
    held_back = []
    for _ in jobs:
        worker._finishing, held_back = [], held_back + worker._finishing  # none goes with the next take
        worker.execute_job(*worker.dequeue_job_and_maintain_ttl(timeout=None))
    worker._finishing = held_back + worker._finishing
    assert {finishing.queue.name for finishing in worker._finishing} == {"critical", "low"}
    worker._let_go()  # sends both ends in one script
    for job in jobs:
        queue = queue_for(context, job.origin)
        assert queue.finished_job_registry.get_job_ids() == [job.id]
        assert queue.started_job_registry.get_job_ids() == []
        index = context.redis.zrangebylex(context.keys.index("finished", job.origin), "[t|", "(t}")
        assert [member.decode().rsplit("|", 1)[1] for member in index] == [job.id]
        assert job.get_status(refresh=True) == "finished" and job.return_value() == job.args[0]
        assert events(context, job.id) == ["enqueued", "started", "succeeded"]
