"""`jobctl schedules import-rq-scheduler`: real rq-scheduler jobs (made with the rq_scheduler library on
the test server) become our schedules; dry run writes nothing, --apply upserts, jobs stored with pickle
are refused without being loaded (only JSON is read), and rq-scheduler's own data is never touched."""

import json
import os
import pickle
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq_scheduler import Scheduler

from jobs import recurring
from jobs import rq_scheduler_import as rqs
from jobs.enqueue import queue_for
from tests.conftest import ROOT, jobctl

RECORD = "tests.sample_jobs.record"
pytestmark = pytest.mark.filterwarnings("ignore:Version 0.22.0. of crontab:FutureWarning")  # rq-scheduler's


class JSONJob(RQJob):
    """How services make rq-scheduler store JSON instead of pickle: a job class with a JSON serializer."""

    def __init__(self, *args, serializer=None, **kwargs):
        super().__init__(*args, serializer=JSONSerializer, **kwargs)


class RunsACommand:
    """A pickle payload that would run a shell command when unpickled with plain pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def rq_scheduler_state(context) -> dict:
    """Everything rq-scheduler keeps, to show that importing leaves it as it was."""
    members = context.redis.zrange(rqs.SCHEDULED_JOBS_KEY, 0, -1, withscores=True)
    return {
        "zset": members,
        "jobs": {raw: context.redis.hgetall(b"rq:job:" + raw) for raw, _ in members},
    }


@pytest.fixture
def legacy(context):
    """A typical rq-scheduler setup of a service that stores JSON: cron and interval jobs, a one-off, and
    jobs that cannot be imported (a function that is not catalogued, a job of a service that pickles)."""
    scheduler = json_scheduler(context)
    scheduler.cron("0 2 * * *", RECORD, args=["nightly"], queue_name="default", id="nightly-report")
    scheduler.cron("30 6 * * 1-5", "tests.sample_jobs.add", kwargs={"a": 1, "b": 2}, id="weekday-sum")
    scheduler.schedule(
        datetime.now(UTC),
        "tests.sample_jobs.record_low",
        args=["tick"],
        interval=300,
        repeat=5,
        queue_name="low",
        id="every-5m",
    )
    scheduler.enqueue_at(datetime(2030, 1, 1, tzinfo=UTC), RECORD, "once", job_id="one-off")
    scheduler.cron("*/10 * * * *", "legacy.tasks.cleanup", args=[1], id="not-catalogued")
    Scheduler(connection=context.redis).cron("0 * * * *", RECORD, args=["p"], id="pickled")  # its default
    scheduler.cron(
        "15 * * * *", "tests.sample_jobs.record_critical", args=["json"], queue_name="critical", id="json-job"
    )
    return scheduler


def json_scheduler(context) -> Scheduler:
    """rq-scheduler as a service that stores JSON uses it."""
    return Scheduler(connection=context.redis, job_class=JSONJob)


def entries_by_id(context, **options):
    return {entry.rq_id: entry for entry in rqs.read(context, **options)}


def test_reading_maps_every_rq_scheduler_job_and_writes_nothing(context, legacy):
    before = rq_scheduler_state(context)
    entries = entries_by_id(context)
    assert context.redis.keys("jobs:schedule*") == []
    assert rq_scheduler_state(context) == before

    nightly = entries["nightly-report"].schedule
    assert entries["nightly-report"].status == rqs.IMPORTABLE and nightly.id == "rqs-nightly-report"
    assert (nightly.job, nightly.timing.cron, nightly.timing.tz) == (RECORD, "0 2 * * *", "UTC")
    assert (nightly.queue, nightly.args, nightly.kwargs) == ("default", ["nightly"], {})

    weekday = entries["weekday-sum"].schedule
    assert weekday.id == "rqs-weekday-sum" and weekday.kwargs == {"a": 1, "b": 2}

    interval = entries["every-5m"]
    assert interval.schedule.timing.every == 300 and interval.schedule.queue == "low"
    assert interval.schedule.args == ["tick"]
    assert any("repeat=5" in warning and "imported anyway" in warning for warning in interval.warnings)

    assert entries["json-job"].schedule.queue == "critical" and entries["json-job"].schedule.args == ["json"]

    assert entries["one-off"].status == rqs.ONE_OFF and "2030-01-01 00:00:00" in entries["one-off"].reason
    assert entries["not-catalogued"].status == rqs.REFUSED
    assert "'legacy.tasks.cleanup' is not in the catalog" in entries["not-catalogued"].reason
    pickled = entries["pickled"]
    assert pickled.status == rqs.REFUSED and "is not JSON" in pickled.reason
    assert "pickle is never loaded" in pickled.reason


def test_apply_creates_the_schedules_and_a_second_apply_changes_nothing(context, legacy):
    before = rq_scheduler_state(context)
    changes = rqs.apply(context, rqs.read(context))
    created = sorted(changes["created"])
    assert changes["updated"] == [] and len(created) == 4
    assert "rqs-nightly-report" in created and "rqs-every-5m" in created and "rqs-json-job" in created
    first = {s.id: s for s in recurring.all_schedules(context)}
    assert sorted(first) == created

    again = rqs.apply(context, rqs.read(context))
    assert again["created"] == [] and sorted(again["updated"]) == created  # in next-run order
    second = {s.id: s for s in recurring.all_schedules(context)}
    assert {i: (s.timing, s.queue, s.args, s.kwargs, s.next_fire) for i, s in second.items()} == {
        i: (s.timing, s.queue, s.args, s.kwargs, s.next_fire) for i, s in first.items()
    }
    assert rq_scheduler_state(context) == before  # rq-scheduler's jobs are left alone


def test_an_imported_schedule_fires_the_catalogued_job(context, legacy):
    rqs.apply(context, rqs.read(context))
    schedule = recurring.get(context, "rqs-every-5m")
    fired = recurring.fire_due(context, now=schedule.next_fire + 0.1)
    assert fired["rqs-every-5m"] == [recurring.run_id("rqs-every-5m", schedule.next_fire)]
    assert queue_for(context, "low").get_job_ids() == fired["rqs-every-5m"]


def test_pickles_that_would_run_code_are_refused_without_running_it(context, tmp_path):
    marker = tmp_path / "pwned"
    payload = RunsACommand(f"touch {marker}")
    evil_data = zlib.compress(pickle.dumps((RECORD, None, (payload,), {})))
    plain_meta = pickle.dumps({"cron_string": "* * * * *"})
    context.redis.hset(
        "rq:job:evil-data", mapping={"data": evil_data, "meta": plain_meta, "origin": "default"}
    )
    good_data = zlib.compress(pickle.dumps((RECORD, None, ("x",), {})))
    evil_meta = pickle.dumps({"cron_string": "* * * * *", "x": payload})
    context.redis.hset(
        "rq:job:evil-meta", mapping={"data": good_data, "meta": evil_meta, "origin": "default"}
    )
    context.redis.zadd(rqs.SCHEDULED_JOBS_KEY, {"evil-data": 1, "evil-meta": 2, "gone": 3})

    entries = entries_by_id(context)
    rqs.apply(context, list(entries.values()))
    assert not marker.exists()
    assert entries["evil-data"].status == rqs.REFUSED
    assert "is not JSON" in entries["evil-data"].reason
    assert entries["evil-meta"].status == rqs.REFUSED and entries["evil-meta"].reason.startswith("its meta")
    assert entries["gone"].status == rqs.REFUSED and "is gone" in entries["gone"].reason
    assert context.redis.keys("jobs:schedule*") == []


def test_odd_data_is_reported_never_a_traceback(context):
    good_data = zlib.compress(json.dumps([RECORD, None, ["x"], {}]).encode())
    odd = {
        b"nan-interval": {"data": good_data, "meta": json.dumps({"interval": float("nan")})},
        b"bad-cron": {"data": good_data, "meta": json.dumps({"cron_string": "61 * * * *"})},
        b"meta-list": {"data": good_data, "meta": json.dumps(["cron_string"])},
        b"method": {
            "data": zlib.compress(json.dumps([RECORD, {"an": "instance"}, [], {}]).encode()),
            "meta": json.dumps({"interval": 60}),
        },
        b"not-a-tuple": {"data": zlib.compress(b'"just a string"'), "meta": b'{"interval": 60}'},
        b"uncompressed-json": {
            "data": b'["tests.sample_jobs.record", null, ["u"], {}]',
            "meta": b'{"interval": 60}',
        },
        b"\xff\xfe": {"data": good_data, "meta": json.dumps({"interval": 60}), "origin": b"q\xff"},
    }
    for rq_id, mapping in odd.items():
        context.redis.hset(b"rq:job:" + rq_id, mapping=mapping)
        context.redis.zadd(rqs.SCHEDULED_JOBS_KEY, {rq_id: 1})
    entries = entries_by_id(context)
    assert "not a number of seconds" in entries["nan-interval"].reason
    assert "not a valid cron expression" in entries["bad-cron"].reason
    assert "not a dict" in entries["meta-list"].reason
    assert "on an object instance" in entries["method"].reason
    assert "not (function, instance, args, kwargs)" in entries["not-a-tuple"].reason
    assert entries["uncompressed-json"].schedule.args == ["u"]  # RQ reads data stored uncompressed too
    odd_id = entries["\\xff\\xfe"]
    assert odd_id.status == rqs.IMPORTABLE and odd_id.schedule.id.startswith("rqs-_xff_xfe-")
    assert [entry.status for entry in entries.values()].count(rqs.REFUSED) == 5


def test_loads_reads_json():
    assert rqs.loads(json.dumps(["m.f", None, [1], {"k": {"n": -1}}]).encode()) == [
        "m.f",
        None,
        [1],
        {"k": {"n": -1}},
    ]


@pytest.mark.parametrize(
    "raw",
    [
        *(pickle.dumps(("m.f", None, ("a", 1), {}), protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
        pickle.dumps(RunsACommand("true"), protocol=0),
        b"\x80\x05garbage",
        b"",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_loads_refuses_everything_but_json_with_a_reason(raw):
    with pytest.raises(rqs.Unreadable):
        rqs.loads(raw)


def test_schedule_ids_are_sanitized_stable_and_distinct():
    assert rqs.schedule_id_for("nightly-report") == "rqs-nightly-report"
    assert rqs.schedule_id_for("a.b") != rqs.schedule_id_for("a:b")
    assert rqs.schedule_id_for("a.b") == rqs.schedule_id_for("a.b")
    for rq_id in ("a.b", "ünïcode id", "x" * 300, "0f2c" * 8):
        schedule_id = rqs.schedule_id_for(rq_id)
        recurring.define(schedule_id, RECORD, every="1m", args=["x"])  # a valid id


def test_job_ids_of_older_rq_versions_are_sanitized(context, legacy):
    # RQ 2 only accepts [A-Za-z0-9_-] ids; older versions took anything, such as "report:daily".
    context.redis.rename("rq:job:nightly-report", "rq:job:report:daily")
    context.redis.zadd(rqs.SCHEDULED_JOBS_KEY, {"report:daily": 1})
    context.redis.zrem(rqs.SCHEDULED_JOBS_KEY, "nightly-report")
    rqs.apply(context, rqs.read(context))
    imported = recurring.get(context, rqs.schedule_id_for("report:daily"))
    assert imported.id.startswith("rqs-report_daily-") and imported.args == ["nightly"]


def test_use_local_timezone_and_unserved_queues_are_reported_and_tz_sets_the_zone(context):
    json_scheduler(context).cron("0 9 * * *", RECORD, args=["l"], id="local", use_local_timezone=True)
    json_scheduler(context).cron("0 9 * * *", RECORD, args=["e"], id="mail", queue_name="emails")
    entries = entries_by_id(context, tz="Europe/Berlin")
    assert entries["local"].schedule.timing.tz == "Europe/Berlin"
    assert any("use_local_timezone" in warning for warning in entries["local"].warnings)
    assert entries["mail"].schedule.queue == "emails"  # imported, with a warning that no worker serves it
    assert any("'emails' is not among the queues" in warning for warning in entries["mail"].warnings)


def test_a_cron_restricting_both_days_is_refused_where_rq_scheduler_reads_it_otherwise(context):
    # rq-scheduler (the crontab package) fires when the day of the month and the weekday both match
    # ("0 9 1-7 * 1": the first Monday of a month); cron, and croniter, when either does
    json_scheduler(context).cron("0 9 1-7 * 1", RECORD, args=["m"], id="first-monday")
    json_scheduler(context).cron("0 9 1 * *", RECORD, args=["d"], id="first-day")
    entries = entries_by_id(context)
    assert entries["first-monday"].status == rqs.REFUSED
    assert "restricts both the day of the month and the weekday" in entries["first-monday"].reason
    assert entries["first-day"].status != rqs.REFUSED


@pytest.mark.parametrize(("seconds", "shown"), [(3930, "1h 5m 30s"), (90061, "1d 1h 1m 1s"), (30, "30s")])
def test_an_imported_interval_is_shown_exactly(context, seconds, shown):
    json_scheduler(context).schedule(datetime.now(UTC), RECORD, args=["t"], interval=seconds, id="tick")
    timing = entries_by_id(context)["tick"].schedule.timing
    assert timing.every == seconds and timing.describe() == f"every {shown}"  # what the dry run prints


def test_cli_dry_run_prints_one_line_per_job_and_writes_nothing(context, legacy, redis_url):
    result = jobctl("schedules", "import-rq-scheduler", url=redis_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    per_job = {line.split(":", 1)[0]: line for line in lines if ": " in line and not line.startswith("dry")}
    assert "would create schedule rqs-nightly-report" in per_job["nightly-report"]
    assert "cron 0 2 * * * (UTC)" in per_job["nightly-report"] and '["nightly"]' in per_job["nightly-report"]
    assert "repeat=5" in per_job["every-5m"] and "every 5m" in per_job["every-5m"]
    assert "one-off" in per_job["one-off"] and "not imported" in per_job["one-off"]
    assert per_job["not-catalogued"].startswith("not-catalogued: not importable: ")
    assert any(line.startswith("dry run, nothing written: 4 schedule(s)") for line in lines)
    assert "stop every rq-scheduler process" in result.stdout
    assert context.redis.keys("jobs:schedule*") == []


def test_cli_apply_creates_then_updates_and_json_says_so(context, legacy, redis_url):
    first = jobctl("schedules", "import-rq-scheduler", "--apply", url=redis_url)
    assert first.returncode == 0, first.stderr
    assert "created schedule rqs-nightly-report" in first.stdout and "created 4, updated 0" in first.stdout
    assert recurring.get(context, "rqs-nightly-report").timing.cron == "0 2 * * *"
    second = jobctl("schedules", "import-rq-scheduler", "--apply", "--json", url=redis_url)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["applied"] and report["created"] == [] and len(report["updated"]) == 4
    by_id = {job["rq_id"]: job for job in report["jobs"]}
    assert by_id["every-5m"]["schedule"] == {
        "id": "rqs-every-5m",
        "job": "tests.sample_jobs.record_low",
        "cron": None,
        "every": 300,
        "tz": "UTC",
        "queue": "low",
        "args": ["tick"],
        "kwargs": {},
        "description": "imported from rq-scheduler job every-5m",
    }
    assert by_id["every-5m"]["action"] == "update" and by_id["one-off"]["status"] == "one-off"
    assert len(recurring.all_schedules(context)) == 4


def test_cli_user_errors_are_one_line_and_exit_2(context, redis_url):
    unreachable = "redis://127.0.0.1:1/1"
    result = jobctl(
        "schedules", "import-rq-scheduler", "--redis-url", unreachable, url=unreachable, timeout=15
    )
    assert result.returncode == 2 and result.stderr.startswith("error: cannot reach Redis")
    assert len(result.stderr.strip().splitlines()) == 1
    result = jobctl("schedules", "import-rq-scheduler", "--tz", "Mars/Base", url=redis_url)
    assert (
        result.returncode == 2 and "unknown time zone" in result.stderr and "Traceback" not in result.stderr
    )


def test_cli_with_nothing_to_import(context, redis_url):
    result = jobctl("schedules", "import-rq-scheduler", "--apply", url=redis_url)
    assert result.returncode == 0 and "created 0, updated 0" in result.stdout


def test_the_platform_never_imports_rq_scheduler():
    code = "import sys, jobs.cli, jobs.rq_scheduler_import; assert 'rq_scheduler' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_one_off_jobs_due_soon_are_listed_too(context):
    json_scheduler(context).enqueue_in(timedelta(minutes=5), RECORD, "soon", job_id="soon")
    entry = entries_by_id(context)["soon"]
    assert entry.status == rqs.ONE_OFF and entry.function == RECORD
