"""Defining jobs and enqueuing them from Python: catalog, JSON-only arguments, delays, dependencies."""

import json
import os
import signal
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq.job import Dependency

import jobs as jobs_api
from jobs import InvalidArguments, UnknownJob, admin, catalog, enqueue, inspect, job, timeline
from jobs.connection import Context, _command, current
from jobs.dequeue import JobQueue, Taker, taking_for
from jobs.enqueue import BULK_CHUNK, queue_for, queue_names
from jobs.errors import ConfigError
from jobs.execution import Worker
from jobs.rqjob import Job
from tests import sample_jobs
from tests.conftest import ORPHAN_TIMEOUT, events, jobctl, make_settings, move_due, ran, wait_for
from tests.proxy import Proxy


def test_decorated_job_is_catalogued_and_still_callable(context):
    assert sample_jobs.add.name == "tests.sample_jobs.add"
    assert sample_jobs.add(2, 3) == 5


def test_enqueue_puts_job_on_its_queue_as_json_with_a_timeline(context):
    job = sample_jobs.add.enqueue(1, 2)
    assert queue_for(context, "default").get_job_ids() == [job.id]
    raw = context.redis.hget(Job.key_for(job.id), "data")
    assert json.loads(raw)[0] == "tests.sample_jobs.add"  # JSON, no pickle (small: not compressed)
    fetched = Job.fetch(job.id, connection=context.redis)
    assert (fetched.args, fetched.retries_left) == ([1, 2], 5)
    assert fetched.to_dict() == job.to_dict()  # the job returned is the job stored
    big = sample_jobs.record.enqueue("x" * 1000)
    data = zlib.decompress(context.redis.hget(Job.key_for(big.id), "data"))  # compressed, as RQ does
    assert json.loads(data)[2] == ["x" * 1000]
    assert Job.fetch(big.id, connection=context.redis).to_dict() == big.to_dict()
    job.meta["mine"] = True  # each job returned is a job of its own, not a shared one
    assert sample_jobs.add.enqueue(3, 4).meta == {}
    [entry] = timeline.history(context.redis, context.keys, job.id)
    assert entry["event"] == "enqueued" and entry["source"] == "code" and entry["queue"] == "default"


def test_enqueue_by_name_with_queue_and_job_id_overrides(context):
    job = enqueue("tests.sample_jobs.record", ["x"], queue="low", job_id="my-id")
    assert job.id == "my-id"
    assert queue_for(context, "low").get_job_ids() == ["my-id"]


def test_an_id_of_ones_own_that_names_an_ended_job_runs_it_again_with_the_new_arguments(context, redis_url):
    sample_jobs.record.enqueue("first", job_id="again")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    again = sample_jobs.record.enqueue("second", job_id="again")  # RQ's path writes over the ended job
    assert again.args == ["second"] and again.get_status() == "queued"
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["first", "second"]
    assert inspect.job_detail(context, "again").state == "finished"
    later = sample_jobs.record.enqueue_in(timedelta(minutes=1), "third", job_id="again")
    assert later.args == ["third"] and later.get_status() == "scheduled"
    assert queue_for(context, "default").scheduled_job_registry.get_job_ids() == ["again"]


def test_an_id_of_ones_own_that_names_a_failed_job_makes_a_new_job_no_longer_failed(context, redis_url):
    sample_jobs.fails_without_retry.enqueue("first", job_id="again")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    queue = queue_for(context, "default")
    assert queue.failed_job_registry.get_job_ids() == ["again"]
    sample_jobs.fails_without_retry.enqueue("second", job_id="again")
    assert queue.failed_job_registry.get_job_ids(cleanup=False) == [] and queue.get_job_ids() == ["again"]
    assert (
        inspect.list_jobs(
            context, "failed", where=inspect.Filter(name="tests.sample_jobs.fails_without_retry")
        ).total
        == 0
    )
    detail = inspect.job_detail(context, "again")
    assert (detail.state, detail.error, detail.worker, detail.attempts) == ("queued", None, None, 0)
    assert events(context, "again") == ["enqueued"]  # a job of its own: the old run's timeline is gone
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0  # failed again
    parent = sample_jobs.record.enqueue("parent")
    deferred = sample_jobs.fails_without_retry.enqueue("third", job_id="again", depends_on=parent)
    assert deferred.get_status() == "deferred" and Job.fetch("again", connection=context.redis).args == [
        "third"
    ]


def test_an_id_of_ones_own_that_names_an_ended_job_waits_only_for_its_own_dependencies(context, redis_url):
    failed = sample_jobs.fails_without_retry.enqueue("parent")
    sample_jobs.record.enqueue("first", job_id="again", depends_on=failed)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    admin.cancel_job(context, "again")  # its dependency failed: it would never run
    parent = sample_jobs.record.enqueue("new parent")
    sample_jobs.record.enqueue("second", job_id="again", depends_on=parent)
    assert context.redis.smembers(Job.fetch("again", connection=context.redis).dependencies_key) == {
        parent.id.encode()
    }
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["new parent", "second"]


def test_an_id_of_ones_own_that_names_a_job_not_done_yet_is_refused_and_nothing_is_written(context):
    queue = queue_for(context, "default")
    running = sample_jobs.record.enqueue("running", job_id="busy")
    with taking_for(Taker("worker", ORPHAN_TIMEOUT, lambda: False)):
        JobQueue.dequeue_any([queue], None, connection=context.redis, job_class=Job)
    queued = sample_jobs.record.enqueue("queued", job_id="waiting")
    later = sample_jobs.record.enqueue_in(timedelta(minutes=1), "later", job_id="due")
    written = {job.id: context.redis.hgetall(job.key) for job in (running, queued, later)}
    for job_id, state in (("busy", "started"), ("waiting", "queued"), ("due", "scheduled")):
        with pytest.raises(InvalidArguments, match=f"job {job_id} is {state}: enqueue it under that id once"):
            sample_jobs.record.enqueue("again", job_id=job_id)
        with pytest.raises(InvalidArguments, match=f"job {job_id} is {state}"):
            sample_jobs.record.enqueue_in(timedelta(minutes=5), "again, later", job_id=job_id)
    with pytest.raises(InvalidArguments, match="job waiting is queued"):  # the same with a unique key
        sample_jobs.unique_job.enqueue("a key of its own", job_id="waiting")
    with pytest.raises(InvalidArguments, match="job waiting is queued"):  # or after a job not done yet
        sample_jobs.record.enqueue("after", job_id="waiting", depends_on="busy")
    assert {job_id: context.redis.hgetall(Job.key_for(job_id)) for job_id in written} == written
    assert queue.get_job_ids() == ["waiting"] and queue.scheduled_job_registry.get_job_ids() == ["due"]


def test_an_id_rq_would_refuse_is_refused_and_nothing_is_written(context):
    with pytest.raises(InvalidArguments, match="job id 'not mine!'"):
        sample_jobs.record.enqueue("x", job_id="not mine!")
    assert context.redis.dbsize() == 0


def test_non_json_argument_is_refused_by_name_and_nothing_is_written(context):
    with pytest.raises(InvalidArguments, match="argument 2 is not JSON-serializable \\(datetime\\)"):
        sample_jobs.add.enqueue(1, datetime.now(UTC))
    with pytest.raises(InvalidArguments, match="keyword argument 'b'"):
        sample_jobs.add.enqueue(1, b={1, 2})
    assert context.redis.dbsize() == 0


def test_unknown_job_name_lists_the_known_ones(context):
    with pytest.raises(UnknownJob, match="unknown job 'nope'; known jobs: .*tests.sample_jobs.add"):
        enqueue("nope")
    assert context.redis.dbsize() == 0


def test_arguments_must_fit_the_function(context):
    with pytest.raises(InvalidArguments, match="missing a required argument: 'b'"):
        sample_jobs.add.enqueue(1)
    assert context.redis.dbsize() == 0


def test_enqueue_in_and_at_schedule_the_job(context):
    later = sample_jobs.add.enqueue_in(timedelta(minutes=10), 1, 2)
    at = sample_jobs.add.enqueue_at(datetime.now(UTC) + timedelta(hours=1), 3, 4)
    scheduled = queue_for(context, "default").scheduled_job_registry
    assert set(scheduled.get_job_ids(cleanup=False)) == {later.id, at.id}
    assert queue_for(context, "default").count == 0
    entry = timeline.history(context.redis, context.keys, later.id)[0]
    assert entry["event"] == "scheduled" and entry["due"] > datetime.now(UTC).timestamp() + 590


@pytest.mark.parametrize("delay", [timedelta(seconds=-3600), -1, float("nan"), float("inf")])
def test_a_negative_or_meaningless_delay_is_refused_and_nothing_is_written(context, delay):
    with pytest.raises(jobs_api.JobsError):
        sample_jobs.record.enqueue_in(delay, "x")
    assert context.redis.keys("rq:job:*") == []


def test_naive_datetime_is_refused(context):
    with pytest.raises(InvalidArguments, match="no time zone"):
        sample_jobs.add.enqueue_at(datetime.now() + timedelta(hours=1), 1, 2)


def test_depends_on_defers_until_the_dependency_succeeds(context):
    first = sample_jobs.add.enqueue(1, 2)
    second = sample_jobs.add.enqueue(3, 4, depends_on=first)
    assert queue_for(context, "default").get_job_ids() == [first.id]
    assert timeline.history(context.redis, context.keys, second.id)[0]["event"] == "deferred"


def test_a_dependent_added_while_its_dependency_runs_is_enqueued_when_it_succeeds(
    context, processes, redis_url
):
    parent = sample_jobs.sleep_then_record.enqueue("parent", 1.0)
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: parent.get_status(refresh=True) == "started", what="the parent to start")
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    assert child.get_status(refresh=True) in ("deferred", "queued")  # queued if the parent just ended
    wait_for(lambda: child.get_status(refresh=True) == "finished", what="the child to run after it")
    assert ran(context) == ["parent", "child"]


def test_a_dependent_allowed_to_follow_a_failure_runs_once_its_dependency_failed(context, redis_url):
    parent = sample_jobs.fails_without_retry.enqueue("parent")
    child = sample_jobs.record.enqueue("child", depends_on=Dependency(jobs=[parent], allow_failure=True))
    sample_jobs.fails_without_retry.enqueue("alone")  # no dependents to look for
    assert child.get_status(refresh=True) == "deferred"
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["child"] and parent.get_status(refresh=True) == "failed"


def test_a_dependent_of_jobs_that_have_all_finished_is_queued_at_once(context, redis_url):
    parent = sample_jobs.record.enqueue("parent")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    assert child.get_status(refresh=True) == "queued" and queue_for(context, "default").get_job_ids() == [
        child.id
    ]
    assert events(context, child.id) == ["enqueued"]
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert ran(context) == ["parent", "child"]


@job(retries=0)
def fails_its_first_run(tag: str) -> str:
    if current().redis.incr(f"test:attempts:{tag}") == 1:
        raise ValueError(f"{tag}: first run")
    current().redis.rpush("test:ran", tag)
    return tag


def drain(context: Context) -> None:
    """Run the jobs of `critical` and `default` in this process until both are empty (due jobs stay)."""
    queues = [queue_for(context, name) for name in ("critical", "default")]
    Worker(queues, context).work(burst=True, with_scheduler=False)


def test_a_dependent_of_a_job_that_fails_and_then_succeeds_on_its_retry_runs_once_after_it(
    context, worker_tally
):
    parent = sample_jobs.fails_once.enqueue("parent")
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    drain(context)
    assert parent.get_status(refresh=True) == "scheduled" and child.get_status(refresh=True) == "deferred"
    move_due(context, [parent.id])
    drain(context)
    assert ran(context) == ["parent", "child"]


def test_a_dependent_of_a_failed_job_requeued_by_an_operator_runs_once_it_succeeds(context, worker_tally):
    parent = fails_its_first_run.enqueue("parent")
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    drain(context)
    assert parent.get_status(refresh=True) == "failed" and child.get_status(refresh=True) == "deferred"
    assert admin.requeue_failed(context, [parent.id], actor="op").count == 1
    drain(context)
    assert ran(context) == ["parent", "child"]


def test_a_dependent_on_another_queue_runs_after_its_dependency(context, worker_tally):
    parent = sample_jobs.record.enqueue("parent")
    child = sample_jobs.record_critical.enqueue("child", depends_on=parent)
    drain(context)
    assert ran(context) == ["parent", "child"] and events(context, child.id)[-1] == "succeeded"


def test_a_dependent_of_two_jobs_runs_once_after_both(context, worker_tally):
    first = sample_jobs.record.enqueue("first")
    second = sample_jobs.record.enqueue("second")
    sample_jobs.record.enqueue("child", depends_on=[first, second])
    drain(context)
    assert ran(context) == ["first", "second", "child"]


def test_a_dependent_allowed_to_follow_a_failure_of_a_retried_job_runs_once_after_its_last(
    context, worker_tally
):
    parent = sample_jobs.always_fails.enqueue("parent")  # 2 retries, at once
    sample_jobs.record.enqueue("child", depends_on=Dependency(jobs=[parent], allow_failure=True))
    drain(context)
    assert parent.get_status(refresh=True) == "failed" and ran(context) == ["child"]


def test_a_dependent_and_its_timeline_are_written_in_one_transaction(context):
    parent = sample_jobs.record.enqueue("parent")
    context.redis.config_resetstat()
    child = sample_jobs.record.enqueue("child", depends_on=parent)
    # the job, its registration as a dependent and its timeline are written in one transaction (they
    # were two: a crash between left a job with no timeline)
    assert context.redis.info("commandstats")["cmdstat_exec"]["calls"] == 1
    assert child.get_status(refresh=True) == "deferred" and events(context, child.id) == ["deferred"]
    assert queue_for(context, "default").deferred_job_registry.get_job_ids() == [child.id]


def test_a_job_cannot_both_wait_for_others_and_be_delayed(context):
    parent = sample_jobs.record.enqueue("parent")
    written = context.redis.dbsize()
    with pytest.raises(InvalidArguments, match="a job with dependencies runs once they have finished"):
        enqueue(sample_jobs.record, ["child"], depends_on=parent, delay=60)
    with pytest.raises(InvalidArguments, match="a job with dependencies runs once they have finished"):
        enqueue(sample_jobs.record, ["child"], depends_on=parent, at=datetime.now(UTC) + timedelta(hours=1))
    assert context.redis.dbsize() == written


def test_a_depends_on_that_names_no_job_is_refused_and_nothing_is_written(context):
    for wrong in (123, [None]):
        with pytest.raises(InvalidArguments, match="depends_on: depends_on items must be Job objects"):
            sample_jobs.add.enqueue(1, 2, depends_on=wrong)
    assert context.redis.dbsize() == 0


def test_a_dependent_whose_unique_key_a_pending_job_holds_is_not_written(context):
    parent = sample_jobs.record.enqueue("parent")
    holder = sample_jobs.unique_job.enqueue("k")
    keys = context.redis.dbsize()
    again = sample_jobs.unique_job.enqueue("k", depends_on=parent)
    assert again.id == holder.id and context.redis.dbsize() == keys
    assert queue_for(context, "default").deferred_job_registry.get_job_ids() == []
    assert context.redis.smembers(parent.dependents_key) == set()
    free = sample_jobs.unique_job.enqueue("other", depends_on=parent)  # a key nobody holds: deferred
    assert free.get_status(refresh=True) == "deferred"
    assert sample_jobs.unique_job.enqueue("other").id == free.id  # and it holds its key


def test_enqueue_many_writes_jobs_rq_reads_like_any_other_and_they_run(context, redis_url):
    ids = jobs_api.enqueue_many([sample_jobs.record.call(f"bulk-{i}") for i in range(2500)])
    assert len(ids) == len(set(ids)) == 2500
    assert queue_for(context, "default").get_job_ids() == ids
    single = sample_jobs.record.enqueue("single")
    bulk = Job.fetch(ids[0], connection=context.redis)
    alike = Job.fetch(single.id, connection=context.redis)
    for attribute in (
        "func_name",
        "origin",
        "timeout",
        "result_ttl",
        "failure_ttl",
        "retries_left",
        "description",
    ):
        assert getattr(bulk, attribute) == getattr(alike, attribute), attribute
    assert bulk.args == ["bulk-0"] and bulk.get_status() == "queued" and bulk.enqueued_at
    assert [e["event"] for e in timeline.history(context.redis, context.keys, ids[0])] == ["enqueued"]
    assert jobctl("worker", "--burst", "-c", "2", url=redis_url).returncode == 0
    assert context.redis.llen("test:ran") == 2501


def test_every_path_writes_the_hash_rq_writes_whatever_the_description_holds(context, redis_url):
    per_run = {b"data", b"created_at", b"enqueued_at"}

    def common_fields(job_id: str) -> dict[bytes, bytes]:
        fields = context.redis.hgetall(Job.key_for(job_id))
        return {k: v for k, v in fields.items() if k not in per_run and v != b""}  # RQ reads "" as absent

    def by_rq(**options) -> Job:  # RQ's own path, which a caller's transaction takes
        with context.redis.pipeline() as pipe:
            pipe.multi()
            job = enqueue(sample_jobs.described, ["rq"], queue="low", pipeline=pipe, **options)
            pipe.execute()
        return job

    expected = common_fields(by_rq().id)
    one = enqueue(sample_jobs.described, ["one"], queue="low")
    (bulk,) = jobs_api.enqueue_many([sample_jobs.described.call("bulk")], queue="low")
    named = enqueue(sample_jobs.described, ["named"], queue="low", job_id="named")
    assert expected[b"description"] == sample_jobs.described.spec.description.encode()
    assert common_fields(one.id) == common_fields(bulk) == common_fields(named.id) == expected
    elsewhere = enqueue(sample_jobs.described, ["elsewhere"])  # the same job's script, another queue
    assert common_fields(elsewhere.id) == expected | {b"origin": b"default"}
    assert Job.fetch(one.id, connection=context.redis).description == sample_jobs.described.spec.description
    later_by_rq = by_rq(delay=60)
    later = enqueue(sample_jobs.described, ["later"], queue="low", delay=60)
    later_named = enqueue(sample_jobs.described, ["later"], queue="low", delay=60, job_id="later-named")
    assert common_fields(later.id) == common_fields(later_named.id) == common_fields(later_by_rq.id)
    assert common_fields(later.id)[b"status"] == b"scheduled" and later.enqueued_at is None
    scheduled = [timeline.history(context.redis, context.keys, job.id)[0] for job in (later, later_by_rq)]
    assert [{k: v for k, v in entry.items() if k not in ("at", "due")} for entry in scheduled] == [
        {"event": "scheduled", "source": "code", "queue": "low"}
    ] * 2
    assert context.redis.ttl(context.keys.timeline(later.id)) > context.settings.failed_ttl
    assert jobctl("worker", "--burst", "--queues", "low,default", url=redis_url).returncode == 0
    assert sorted(ran(context)) == ["bulk", "elsewhere", "named", "one", "rq"]


def test_more_queues_for_a_job_add_no_script_to_the_server(context):
    def enqueue_on(queue: str) -> int:
        enqueue(sample_jobs.described, [queue], queue=queue)
        jobs_api.enqueue_many([sample_jobs.described.call(queue)], queue=queue)
        return context.redis.info("memory")["number_of_cached_scripts"]

    scripts = enqueue_on("tenant-0")
    assert [enqueue_on(f"tenant-{n}") for n in range(1, 5)] == [scripts] * 4
    assert queue_for(context, "tenant-4").count == 2


def test_enqueue_loads_its_scripts_again_when_the_server_has_lost_them(context):
    sample_jobs.record.enqueue("before")
    jobs_api.enqueue_many([sample_jobs.record.call("before, bulk")])
    context.redis.script_flush()  # as every restart of the server does: it keeps no scripts
    one = sample_jobs.record.enqueue("after")
    (bulk,) = jobs_api.enqueue_many([sample_jobs.record.call("after, bulk")])
    assert queue_for(context, "default").get_job_ids()[-2:] == [one.id, bulk]
    assert Job.fetch(bulk, connection=context.redis).args == ["after, bulk"]


def _connection_id(context: Context) -> int:
    """The server's id of the connection this thread's enqueues use (jobs.connection._Holding)."""
    connection = context.redis.connection_pool.held()
    connection.send_command("CLIENT", "ID")
    return connection.read_response()


def test_an_enqueue_on_a_connection_the_server_closed_goes_through_on_a_new_one(context, redis_url):
    # scripts skip redis-py's execute_command (jobs.connection._command) but keep its pool's checks
    first = sample_jobs.record.enqueue("first")
    held = _connection_id(context)
    other = redis.Redis.from_url(redis_url)
    assert other.client_kill_filter(_id=held) == 1
    other.close()
    second = sample_jobs.record.enqueue("second")
    assert queue_for(context, "default").get_job_ids() == [first.id, second.id]
    assert _connection_id(context) != held


def test_a_command_interrupted_before_reading_its_reply_leaves_it_to_no_other(context, monkeypatch):
    connection = context.redis.connection_pool.held()  # the one this thread's scripts go by

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # a signal handled between sending and reading

    monkeypatch.setattr(connection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _command(context.redis, "BLPOP", "nothing-comes", 0.2)  # its nil comes later, on that socket
    monkeypatch.undo()
    assert _command(context.redis, "ECHO", "mine") == b"mine"


def test_threads_that_enqueued_give_their_connection_back_when_they_end(context):
    sample_jobs.record.enqueue("warm")
    before = context.redis.info("clients")["connected_clients"]
    for n in range(20):
        thread = threading.Thread(target=sample_jobs.record.enqueue, args=[f"thread {n}"])
        thread.start()
        thread.join()
    assert context.redis.info("clients")["connected_clients"] <= before + 1
    assert len(queue_for(context, "default").get_job_ids()) == 21


def test_a_child_forked_while_another_thread_takes_a_connection_starts(context):
    # the child drops the other threads' held connections as it starts; the parent's pool lock, held at the
    # fork by a thread taking a connection, stays held in the child forever
    def enqueue_and_stay():
        sample_jobs.record.enqueue("from a thread")
        holding.set()
        hold.wait(10)

    def take_the_pool_lock():  # as a thread inside get_connection at the fork
        with context.redis.connection_pool._lock:
            locked.set()
            hold.wait(10)

    hold, holding, locked = threading.Event(), threading.Event(), threading.Event()
    threads = [threading.Thread(target=enqueue_and_stay), threading.Thread(target=take_the_pool_lock)]
    threads[0].start()
    holding.wait(10)
    threads[1].start()
    locked.wait(10)
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's exit status says how it went)
        os._exit(0)
    hold.set()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 10
    while (status := os.waitpid(child, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    if status == (0, 0):
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert status != (0, 0), "the forked child hung as it started"
    assert os.waitstatus_to_exitcode(status[1]) == 0


def test_a_forked_child_enqueues_on_its_own_connection_and_leaves_the_parent_s_alone(context):
    parent = sample_jobs.record.enqueue("parent, before")
    held = _connection_id(context)
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's exit status says how it went)
        try:
            sample_jobs.record.enqueue("child")
            os._exit(0 if _connection_id(context) != held else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    after = sample_jobs.record.enqueue("parent, after")
    assert _connection_id(context) == held
    assert [
        Job.fetch(i, connection=context.redis).args[0] for i in queue_for(context, "default").get_job_ids()
    ] == [
        "parent, before",
        "child",
        "parent, after",
    ]
    assert after.id != parent.id


def plant_ended(context: Context, job_id: str) -> None:
    """A job of id `job_id` that has run and finished."""
    sample_jobs.record.enqueue("ended", job_id=job_id)
    context.redis.lrem(queue_for(context, "default").key, 0, job_id)
    context.redis.hset(Job.key_for(job_id), "status", "finished")


def test_an_enqueue_whose_reply_is_lost_is_sent_again_without_queueing_the_job_twice(context, redis_url):
    # a resilient client (a worker's, say, for jobs that enqueue jobs) sends a command again when its
    # connection fails before the reply: the job must not be queued (and so run) twice
    proxy = Proxy.to(redis_url)
    try:
        resilient = Context.connect(make_settings(proxy.proxied(redis_url)), resilient=True)
        first = enqueue(sample_jobs.record, ["first"], context=resilient)  # the server has the scripts now
        soon = enqueue(sample_jobs.record, ["soon"], delay=60, context=resilient)
        held = enqueue(sample_jobs.unique_job, ["held"], context=resilient)
        proxy.lose_reply_to(b"EVALSHA")
        one = enqueue(sample_jobs.record, ["once"], context=resilient)
        proxy.lose_reply_to(b"EVALSHA")
        (bulk,) = jobs_api.enqueue_many([sample_jobs.record.call("once, bulk")], context=resilient)
        proxy.lose_reply_to(b"EVALSHA")
        later = enqueue(sample_jobs.record, ["later"], delay=60, context=resilient)
        proxy.lose_reply_to(b"EVALSHA")
        unique = enqueue(sample_jobs.unique_job, ["once"], context=resilient)  # finds it holds its key
        proxy.lose_reply_to(b"EVALSHA")
        named = enqueue(sample_jobs.record, ["named"], job_id="named", context=resilient)
        proxy.lose_reply_to(b"EVALSHA")
        named_later = enqueue(
            sample_jobs.record, ["named"], job_id="named-later", delay=60, context=resilient
        )
        plant_ended(context, "reused")
        plant_ended(context, "reused-before")
        proxy.lose_reply_to(b"EXEC")  # RQ's transaction: an id of one's own that names an ended job
        reused = enqueue(sample_jobs.record, ["reused"], job_id="reused", context=resilient)
        proxy.lose_reply_to(b":dependents")  # the transaction that defers a job (not RQ's read before it)
        deferred = enqueue(sample_jobs.record, ["deferred"], depends_on=first, context=resilient)
        proxy.lose_reply_to(b"rq:queues")  # the one that queues a job whose dependency has finished
        ready = enqueue(sample_jobs.record, ["ready"], depends_on="reused-before", context=resilient)
        assert proxy.replies_lost == 9
        queued = [first.id, held.id, one.id, bulk, unique.id, named.id, reused.id, ready.id]
        assert queue_for(context, "default").get_job_ids() == queued
        assert unique.get_status(refresh=False) == "queued" and unique.args == ["once"]
        scheduled = {soon.id, later.id, named_later.id}
        assert set(queue_for(context, "default").scheduled_job_registry.get_job_ids()) == scheduled
        assert events(context, later.id) == ["scheduled"] and events(context, named.id) == ["enqueued"]
        assert events(context, named_later.id) == ["scheduled"]
        assert events(context, deferred.id) == ["deferred"] and events(context, ready.id) == ["enqueued"]
        assert queue_for(context, "default").deferred_job_registry.get_job_ids() == [deferred.id]
        assert context.redis.smembers(first.dependents_key) == {deferred.id.encode()}
        resilient.redis.close()
    finally:
        proxy.close()


def test_a_job_enqueued_through_a_second_store_reads_that_store(context, private_server):
    first = sample_jobs.record.enqueue("first store")
    other = Context.connect(make_settings(private_server.url))
    job = enqueue(sample_jobs.record, ["second store"], context=other)
    assert job.connection is other.redis
    assert job.get_status(refresh=True) == "queued"
    assert first.get_status(refresh=True) == "queued"
    assert queue_for(other, "default").get_job_ids() == [job.id]
    other.redis.close()


@pytest.mark.parametrize("queue", ["", " default", "a,b", 7])  # workers read JOBS_QUEUES stripped, by commas
def test_a_queue_no_worker_could_serve_is_refused(context, queue):
    with pytest.raises(ConfigError, match="a queue name is text, not empty, without a comma"):
        jobs_api.job(queue=queue)(lambda: None)
    with pytest.raises(InvalidArguments, match="a queue name is text"):
        sample_jobs.record.enqueue("x", queue=queue)
    with pytest.raises(InvalidArguments, match="a queue name is text"):
        jobs_api.enqueue_many([sample_jobs.record.call("x")], queue=queue)
    assert queue_names(context) == []


def test_two_functions_cannot_share_a_job_name(monkeypatch):
    monkeypatch.setattr(catalog, "_catalog", dict(catalog._catalog))  # the registrations end with the test

    def first():
        pass

    def second():
        pass

    jobs_api.job(name="tests.shared")(first)
    with pytest.raises(ConfigError, match="job name 'tests.shared' is taken by tests.test_enqueue.*first"):
        jobs_api.job(name="tests.shared")(second)  # enqueued by name, which would run depended on imports
    assert catalog.get("tests.shared").func is first


def test_a_job_registered_again_under_its_name_is_enqueued_with_its_new_options(context, monkeypatch):
    monkeypatch.setattr(catalog, "_catalog", dict(catalog._catalog))  # the registrations end with the test

    def register(timeout: int, description: str):
        return jobs_api.job(name="tests.redefined", timeout=timeout, description=description)(lambda: None)

    register(10, "first").enqueue()
    second = register(20, "second")
    one = second.enqueue()
    jobs_api.enqueue_many([second.call()])
    written = [
        context.redis.hmget(Job.key_for(job_id), "timeout", "description")
        for job_id in queue_for(context, "default").get_job_ids()
    ]
    assert written == [[b"10", b"first"], [b"20", b"second"], [b"20", b"second"]]
    assert (one.timeout, one.description) == (20, "second")


def test_enqueue_many_checks_every_call_before_writing_anything(context):
    calls = [sample_jobs.record.call("fine"), sample_jobs.record.call(object())]
    with pytest.raises(InvalidArguments, match="argument 1"):
        jobs_api.enqueue_many(calls)
    assert context.redis.keys("rq:job:*") == []


def test_enqueue_many_checks_unique_keys_before_writing_anything(context):
    calls = [sample_jobs.numbered.call(number) for number in range(BULK_CHUNK)]
    calls.append(sample_jobs.numbered.call("seven"))  # does not fit numbered:{number:05d}, past one chunk
    with pytest.raises(InvalidArguments, match="cannot be filled"):
        jobs_api.enqueue_many(calls)
    assert context.redis.keys("rq:job:*") == []


def test_enqueue_many_keeps_call_order_across_job_kinds_and_queues(context):
    calls = [
        sample_jobs.record.call("a"),
        sample_jobs.record_low.call("b"),
        sample_jobs.record.call("c"),
        sample_jobs.add.call(1, b=2),
        sample_jobs.record.call("d"),
    ]
    ids = jobs_api.enqueue_many(calls)
    assert queue_for(context, "default").get_job_ids() == [ids[0], ids[2], ids[3], ids[4]]
    assert queue_for(context, "low").get_job_ids() == [ids[1]]
    fetched = Job.fetch_many(ids, connection=context.redis)
    assert [(j.func_name.rsplit(".", 1)[1], j.args, j.kwargs) for j in fetched] == [
        ("record", ["a"], {}),
        ("record_low", ["b"], {}),
        ("record", ["c"], {}),
        ("add", [1], {"b": 2}),
        ("record", ["d"], {}),
    ]
    assert jobs_api.enqueue_many([sample_jobs.record.call("x")], queue="critical") and (
        queue_for(context, "critical").count == 1
    )
