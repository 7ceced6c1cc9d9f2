"""Reading job hashes as a worker takes them (Job.read): a job copied from the template of its shape reads
exactly as RQ's own restore reads it, shares nothing mutable with other jobs, and a hash that is not a
job is refused however familiar its shape. Times are written and read as RQ writes and reads them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import str_to_date, utcformat

from jobs.enqueue import enqueue
from jobs.rqjob import Job, _shapes
from jobs.rqtimes import format_time, parse_time
from tests import sample_jobs


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)))
def test_times_are_written_as_rq_writes_them_and_read_back_exactly(moment):
    aware = moment.replace(tzinfo=UTC)
    assert format_time(moment) == format_time(aware) == utcformat(moment)
    assert parse_time(format_time(aware)) == aware == str_to_date(format_time(aware))
    assert format_time(aware.astimezone(timezone(timedelta(hours=-5)))) == utcformat(moment)


def test_a_time_not_written_as_rq_writes_times_is_refused():
    with pytest.raises(ValueError):
        parse_time("2026-11-27T01:02:03.456789+00:00")


def raw_hash(context, job_id: str) -> dict:
    return context.redis.hgetall(Job.key_for(job_id))


def test_jobs_of_one_shape_read_as_rq_reads_each_of_them(context):
    jobs = [
        sample_jobs.record.enqueue("first"),
        sample_jobs.record.enqueue("second, a longer argument"),
        enqueue(sample_jobs.add, [1, 2], source="cli"),
        enqueue(sample_jobs.add, [3, 4], source="dashboard"),
        sample_jobs.record.enqueue_in(60, "delayed"),
    ]
    context.redis.hset(Job.key_for(jobs[1].id), mapping={"status": "started", "worker_name": "w.1.abc"})
    context.redis.hset(Job.key_for(jobs[1].id), "started_at", "2026-11-27T01:02:03.456789Z")
    for job in jobs * 2:  # the second time round every shape is known
        raw = raw_hash(context, job.id)
        read = Job.read(job.id, raw, context.redis)
        by_rq = RQJob.fetch(job.id, connection=context.redis, serializer=JSONSerializer)
        assert read.source == (raw[b"source"].decode() if b"source" in raw else None)
        assert {k: v for k, v in read.to_dict().items() if k != "source"} == by_rq.to_dict()
        assert (read.id, read.args, read.get_status(refresh=False)) == (
            job.id,
            by_rq.args,
            by_rq.get_status(),
        )


def test_jobs_copied_from_one_template_share_nothing_mutable(context):
    first, second = sample_jobs.record.enqueue("a"), sample_jobs.record.enqueue("b")
    for job in (first, second):
        context.redis.hset(Job.key_for(job.id), "meta", JSONSerializer.dumps({"tags": ["x"]}))
    one = Job.read(first.id, raw_hash(context, first.id), context.redis)
    other = Job.read(second.id, raw_hash(context, second.id), context.redis)
    one.meta["tags"].append("changed")
    one.meta["new"] = 1
    again = Job.read(second.id, raw_hash(context, second.id), context.redis)
    assert other.meta == again.meta == {"tags": ["x"]}


def test_a_hash_without_data_is_refused_even_in_a_known_shape(context):
    job = sample_jobs.record.enqueue("known")
    raw = raw_hash(context, job.id)
    Job.read(job.id, raw, context.redis)
    without_data = {name: value for name, value in raw.items() if name != b"data"}
    with pytest.raises(NoSuchJobError):
        Job.read(job.id, without_data, context.redis)


def test_templates_keep_no_job_data(context):
    """A template per shape is kept for the worker's life: it must not hold the first job's arguments."""
    job = enqueue(sample_jobs.record, ["x" * 100_000])
    read = Job.read(job.id, raw_hash(context, job.id), context.redis)
    assert read.args == ["x" * 100_000]
    assert all(template.copy().data == b"" for template in _shapes.values())
