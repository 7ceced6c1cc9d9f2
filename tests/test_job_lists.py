"""Job lists: paged and filtered reads of every state, and the index that makes finished and failed jobs
filtered by name or time exact and O(page) (jobs.index)."""

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rq.registry import FailedJobRegistry

from jobs import admin, index, inspect
from jobs.enqueue import queue_for
from jobs.rqtimes import format_time
from tests import sample_jobs
from tests.conftest import jobctl

RECORD, CRITICAL, FAILS = (
    "tests.sample_jobs.record",
    "tests.sample_jobs.record_critical",
    "tests.sample_jobs.fails_without_retry",
)


def run_jobs(redis_url: str) -> None:
    result = jobctl("worker", "--burst", "-c", "2", url=redis_url)
    assert result.returncode == 0, result.stdout + result.stderr


def every_page(context, state, queue=None, per_page=4, **where) -> list[str]:
    """The ids of every page of a list, checking that pages neither overlap nor come out short."""
    first = inspect.list_jobs(context, state, queue=queue, per_page=per_page, where=inspect.Filter(**where))
    ids = [item.id for item in first.items]
    for number in range(2, first.pages + 1):
        page = inspect.list_jobs(
            context, state, queue=queue, page=number, per_page=per_page, where=inspect.Filter(**where)
        )
        assert page.total == first.total
        ids += [item.id for item in page.items]
    assert len(ids) == len(set(ids)) == first.total
    return ids


@pytest.fixture
def ended(context, redis_url):
    """Finished and failed jobs on two queues, in two batches run on either side of `boundary`."""
    early = [sample_jobs.record.enqueue(f"e{i}").id for i in range(5)]
    early += [sample_jobs.record_critical.enqueue(f"e{i}").id for i in range(3)]
    early += [sample_jobs.fails_without_retry.enqueue(f"e{i}").id for i in range(4)]
    run_jobs(redis_url)
    boundary = datetime.now(UTC)
    late = [sample_jobs.record.enqueue(f"l{i}").id for i in range(6)]
    late += [sample_jobs.fails_without_retry.enqueue(f"l{i}").id for i in range(3)]
    run_jobs(redis_url)
    details = {job_id: inspect.job_detail(context, job_id) for job_id in early + late}
    return {"details": details, "boundary": boundary}


def expected(ended, state, queue=None, name=None, since=None, until=None) -> set[str]:
    """What a full scan of every job finds."""
    return {
        job_id
        for job_id, job in ended["details"].items()
        if job.state == state
        and queue in (None, job.queue)
        and name in (None, job.name)
        and (since is None or job.ended_at >= since)
        and (until is None or job.ended_at < until)
    }


def test_filters_by_name_and_time_match_a_full_scan(context, ended):
    boundary = ended["boundary"]
    for state in ("finished", "failed"):
        for queue in (None, "default", "critical"):
            for name in (None, RECORD, CRITICAL, FAILS):
                for since, until in ((None, None), (boundary, None), (None, boundary)):
                    found = every_page(context, state, queue, name=name, since=since, until=until)
                    assert set(found) == expected(ended, state, queue, name, since, until), (
                        state,
                        queue,
                        name,
                        since,
                        until,
                    )


def test_indexed_filters_are_exact_and_newest_first(context, ended):
    boundary = ended["boundary"]
    page = inspect.list_jobs(context, "finished", where=inspect.Filter(name=RECORD, since=boundary))
    assert (page.total, page.scanned, page.complete) == (6, None, True)  # read from the index, not a scan
    ends = [item.ended_at for item in page.items]
    assert ends == sorted(ends, reverse=True)
    in_new_york = boundary.astimezone(ZoneInfo("America/New_York"))  # any zone means the same instant
    assert every_page(context, "finished", name=RECORD, since=in_new_york) == [i.id for i in page.items]
    assert every_page(context, "failed", until=boundary - timedelta(days=1)) == []


def test_a_text_search_reads_only_the_index_range(context, ended):
    where = inspect.Filter(error="KeyError", since=ended["boundary"])
    page = inspect.list_jobs(context, "failed", where=where)
    assert (page.total, page.scanned) == (3, 3)
    assert set(inspect.matching_ids(context, "failed", None, where)) == expected(
        ended, "failed", since=ended["boundary"]
    )


def test_matching_ids_cross_batches_and_queues(context, ended, monkeypatch):
    monkeypatch.setattr(inspect, "SCAN_BATCH", 3)
    for name in (RECORD, CRITICAL):
        found = inspect.matching_ids(context, "finished", None, inspect.Filter(name=name))
        assert sorted(found) == sorted(expected(ended, "finished", name=name))
    found = inspect.matching_ids(context, "finished", None, inspect.Filter(since=ended["boundary"]))
    assert sorted(found) == sorted(expected(ended, "finished", since=ended["boundary"]))


def test_requeue_and_delete_take_jobs_out_of_the_index(context, ended):
    failed = sorted(expected(ended, "failed"))
    admin.requeue_failed(context, failed[:2], actor="test")
    admin.delete_failed(context, failed[2:3], actor="test")
    finished = sorted(expected(ended, "finished", name=RECORD))
    admin.delete_job(context, finished[0], actor="test")
    by_name = inspect.Filter(name=FAILS)
    assert inspect.list_jobs(context, "failed", where=by_name).total == len(failed) - 3
    assert set(every_page(context, "failed", name=FAILS)) == set(failed[3:])
    assert set(every_page(context, "finished", name=RECORD)) == set(finished[1:])


@pytest.mark.parametrize("action", ["delete", "requeue"])
def test_a_stopped_job_leaves_the_failed_index_when_deleted_or_requeued(context, ended, action):
    """RQ files a job stopped by its stop-job command as "stopped", indexed and listed as failed."""
    stopped = sorted(expected(ended, "failed"))[0]
    context.redis.hset(f"rq:job:{stopped}", "status", "stopped")  # as RQ's failure path leaves it
    if action == "delete":
        admin.delete_job(context, stopped, actor="test")
    else:
        assert admin.requeue_failed(context, [stopped], actor="test").count == 1
    members = context.redis.zrange(context.keys.index("failed", "default"), 0, -1)
    assert not [m for m in members if stopped.encode() in m and not m.startswith(b"x|")]  # x|: the sweep's
    assert inspect.list_jobs(context, "failed", where=inspect.Filter(name=FAILS)).total == 6


def test_a_job_moved_by_rqs_own_tools_is_left_out(context, ended):
    """RQ's requeue does not know the index: the entry stays until it expires, but the list shows only
    jobs that are still failed."""
    moved = sorted(expected(ended, "failed"))[0]
    FailedJobRegistry("default", connection=context.redis).requeue(moved)
    shown = inspect.list_jobs(context, "failed", per_page=50, where=inspect.Filter(name=FAILS))
    assert moved not in [item.id for item in shown.items]
    assert len(shown.items) == len(expected(ended, "failed")) - 1


def test_the_sweep_drops_exactly_the_expired_jobs(context, ended):
    key = context.keys.index("failed", "default")
    queues = inspect.queue_names(context)
    before = context.redis.zcard(key)
    assert before == 3 * len(expected(ended, "failed"))  # by time, by name, by expiry
    assert index.sweep(context.redis, context.keys, queues) == 0
    ttl = context.settings.failed_ttl
    later = datetime.now(UTC).timestamp() + ttl + 60
    assert index.sweep(context.redis, context.keys, queues, now=later) == before // 3 + len(
        expected(ended, "finished")
    )
    assert context.redis.zcard(key) == 0
    assert context.redis.zcard(context.keys.index("finished", "critical")) == 0
    assert queue_for(context, "default").failed_job_registry.count > 0  # the registries are RQ's to clean


def test_a_queues_oldest_job_is_found_behind_jobs_put_at_its_front(context):
    waiting = sample_jobs.record.enqueue("waiting")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    context.redis.hset(waiting.key, "enqueued_at", format_time(an_hour_ago))
    queue = queue_for(context, "default")
    for n in range(3):  # as a worker's shutdown or the orphan sweep puts jobs back, queued anew
        queue.enqueue_call("tests.sample_jobs.record", args=(n,), at_front=True)
    assert queue.get_job_ids(0, 1) != [waiting.id]
    age = inspect.queue_stats(context, "default").oldest_age
    assert 3600 <= age < 3600 + 60


@pytest.mark.parametrize("state", ["finished", "failed"])
def test_jobs_expired_and_not_swept_yet_are_neither_counted_nor_listed(context, ended, state):
    registry = getattr(queue_for(context, "default"), f"{state}_job_registry")
    ids = registry.get_job_ids(cleanup=False)
    expired = ids[: len(ids) // 2]
    context.redis.zadd(registry.key, {job_id: int(time.time()) - 5 for job_id in expired})  # retention is due
    listed = every_page(context, state, queue="default")
    assert sorted(listed) == sorted(set(ids) - set(expired))
