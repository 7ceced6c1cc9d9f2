"""The `jobctl` command line: enqueue, show, list, failed requeue/delete, stats and workers against a real
server, human and --json output, and user errors as one `error:` line with exit code 2."""

import json
import socket
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from jobs import admin, inspect, timeline
from jobs.enqueue import queue_for
from jobs.rqjob import Job
from tests import sample_jobs
from tests.conftest import events, jobctl, wait_for

UNREACHABLE = "redis://127.0.0.1:1/1"


def ok(*args: str, url: str, **env: str):
    """Run jobctl and require success."""
    result = jobctl(*args, url=url, **env)
    assert result.returncode == 0, result.stderr
    return result


def user_error(result) -> str:
    """Check that `result` is a user error (exit 2, one `error:` line, no traceback); return the line."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert result.stdout == ""
    return lines[0]


def failed_ids(context, queue="default"):
    return set(queue_for(context, queue).failed_job_registry.get_job_ids(cleanup=False))


def make_failed(context, redis_url, count):
    """`count` failed jobs (one attempt each), failed by a burst worker; returns their ids."""
    jobs = [sample_jobs.fails_without_retry.enqueue(f"k{i}") for i in range(count)]
    ok("worker", "--burst", "-c", "1", url=redis_url)
    ids = [job.id for job in jobs]
    assert failed_ids(context) == set(ids)
    return ids


def nothing_written(context):
    return context.redis.keys("rq:job:*") == [] and context.redis.dbsize() == 0


# --- unreachable Redis and bad configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("enqueue", "jobs.builtin.noop"),
        ("show", "some-id"),
        ("list", "--state", "failed"),
        ("failed", "requeue", "--all"),
        ("failed", "delete", "some-id"),
        ("stats",),
        ("workers", "--json"),
    ],
)
def test_unreachable_redis_is_one_line_and_exit_2(command):
    result = jobctl(*command, "--redis-url", UNREACHABLE, url=UNREACHABLE, timeout=15)
    assert user_error(result) == f"error: cannot reach Redis at {UNREACHABLE}: connection refused"


def test_worker_with_unreachable_redis_gives_up_with_one_line():
    result = jobctl("worker", "--redis-url", UNREACHABLE, url=UNREACHABLE, timeout=30)
    assert user_error(result) == f"error: cannot reach Redis at {UNREACHABLE}: connection refused"


def test_redis_url_option_wins_over_the_environment(context, redis_url):
    sample_jobs.record.enqueue("x")
    result = jobctl("stats", "--json", "--redis-url", redis_url, url=UNREACHABLE)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["queues"][0]["counts"]["queued"] == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBS_CONCURRENCY", "abc"),
        ("JOBS_FAILED_TTL", "forever"),
        ("JOBS_ORPHAN_TIMEOUT", "-1"),
        ("JOBS_LOG_LEVEL", "verbose"),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(context, redis_url, variable, value):
    line = user_error(jobctl("stats", url=redis_url, **{variable: value}))
    assert line.startswith(f"error: {variable}={value!r} is not valid: ")


# --- enqueue -----------------------------------------------------------------------------------------


def test_enqueue_prints_the_id_and_queues_the_job_with_its_arguments(context, redis_url):
    result = ok("enqueue", "tests.sample_jobs.add", "--args", "[1, 2]", url=redis_url)
    job_id = result.stdout.strip()
    assert result.stdout == job_id + "\n"
    assert queue_for(context, "default").get_job_ids() == [job_id]
    job = Job.fetch(job_id, connection=context.redis)
    assert (job.func_name, job.args, job.kwargs) == ("tests.sample_jobs.add", [1, 2], {})
    assert job.get_status() == "queued"
    [entry] = timeline.history(context.redis, context.keys, job_id)
    assert (entry["event"], entry["source"], entry["queue"]) == ("enqueued", "cli", "default")


def test_enqueue_json_prints_id_and_queue(context, redis_url):
    result = ok(
        "enqueue",
        "tests.sample_jobs.add",
        "--args",
        "[1]",
        "--kwargs",
        '{"b": 41}',
        "--queue",
        "low",
        "--json",
        url=redis_url,
    )
    data = json.loads(result.stdout)
    assert set(data) == {"id", "queue"} and data["queue"] == "low"
    assert queue_for(context, "low").get_job_ids() == [data["id"]]
    assert queue_for(context, "default").get_job_ids() == []
    job = Job.fetch(data["id"], connection=context.redis)
    assert (job.args, job.kwargs) == ([1], {"b": 41})


def test_enqueue_in_makes_a_scheduled_job(context, redis_url):
    before = time.time()
    result = ok("enqueue", "tests.sample_jobs.record", "--args", '["later"]', "--in", "10m", url=redis_url)
    job_id = result.stdout.strip()
    queue = queue_for(context, "default")
    assert queue.get_job_ids() == []
    assert queue.scheduled_job_registry.get_job_ids(cleanup=False) == [job_id]
    assert Job.fetch(job_id, connection=context.redis).get_status() == "scheduled"
    [entry] = timeline.history(context.redis, context.keys, job_id)
    assert entry["event"] == "scheduled" and entry["source"] == "cli"
    assert before + 600 <= entry["due"] <= time.time() + 601


def test_enqueue_at_a_time_with_an_offset(context, redis_url):
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    local = when.astimezone(timezone(timedelta(hours=1)))
    assert local.isoformat().endswith("+01:00")
    result = ok(
        "enqueue", "tests.sample_jobs.add", "--args", "[1, 2]", "--at", local.isoformat(), url=redis_url
    )
    job_id = result.stdout.strip()
    scheduled = queue_for(context, "default").scheduled_job_registry
    assert scheduled.get_job_ids(cleanup=False) == [job_id]
    assert context.redis.zscore(scheduled.key, job_id) == when.timestamp()
    assert timeline.history(context.redis, context.keys, job_id)[0]["due"] == when.timestamp()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--at", "2030-01-01T09:00:00"), "the time 2030-01-01T09:00:00 has no time zone"),
        (("--at", "tomorrow at nine"), "--at 'tomorrow at nine' is not an ISO 8601 time"),
        (("--at", "2030-13-45T00:00:00+00:00"), "is not an ISO 8601 time"),
        (("--in", "soon"), "not a duration: 'soon'"),
        (("--in", "5m", "--at", "2030-01-01T00:00:00+00:00"), "either a time (at) or a delay, not both"),
    ],
)
def test_bad_times_are_refused_and_nothing_is_written(context, redis_url, options, message):
    line = user_error(jobctl("enqueue", "tests.sample_jobs.add", "--args", "[1, 2]", *options, url=redis_url))
    assert message in line
    assert nothing_written(context)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("tests.sample_jobs.add", ("--args", "[1,"), "error: --args is not valid JSON: "),
        ("tests.sample_jobs.add", ("--args", "1, 2"), "error: --args is not valid JSON: "),
        ("tests.sample_jobs.add", ("--args", "{}"), "error: --args must be a JSON array"),
        ("tests.sample_jobs.add", ("--args", '"1, 2"'), "error: --args must be a JSON array"),
        ("tests.sample_jobs.add", ("--kwargs", "[1, 2]"), "error: --kwargs must be a JSON object"),
        (
            "tests.sample_jobs.add",
            ("--args", "[1]"),
            "error: tests.sample_jobs.add: missing a required argument: 'b'",
        ),
        (
            "tests.sample_jobs.add",
            ("--args", "[1, 2, 3]"),
            "error: tests.sample_jobs.add: too many positional arguments",
        ),
        (
            "tests.sample_jobs.add",
            ("--args", "[1, 2]", "--kwargs", '{"c": 3}'),
            "error: tests.sample_jobs.add: got an unexpected keyword argument 'c'",
        ),
        ("tests.sample_jobs.nope", (), "error: unknown job 'tests.sample_jobs.nope'; known jobs: "),
    ],
)
def test_refused_enqueue_is_one_line_and_writes_nothing(context, redis_url, name, options, message):
    line = user_error(jobctl("enqueue", name, *options, url=redis_url))
    assert line.startswith(message), line
    assert nothing_written(context)


def test_unknown_job_error_lists_the_known_names(context, redis_url):
    line = user_error(jobctl("enqueue", "send_invoice", url=redis_url))
    known = line.split("known jobs: ", 1)[1].split(", ")
    assert "tests.sample_jobs.add" in known and "jobs.builtin.noop" in known
    assert known == sorted(known)
    assert nothing_written(context)


# --- show --------------------------------------------------------------------------------------------


def test_show_a_finished_job(context, redis_url):
    job = sample_jobs.record.enqueue("hello")
    ok("worker", "--burst", "-c", "1", url=redis_url)
    lines = ok("show", job.id, url=redis_url).stdout.splitlines()
    cut = lines.index("     timeline:")
    fields = dict(line.strip().split(": ", 1) for line in lines[:cut])
    assert fields["id"] == job.id
    assert fields["name"] == "tests.sample_jobs.record"
    assert fields["queue"] == "default"
    assert fields["state"] == "finished"
    assert fields["args"] == '["hello"]'
    assert fields["kwargs"] == "{}"
    assert fields["attempts"] == "1"
    assert fields["result"] == '"hello"'
    assert fields["worker"]
    assert "traceback" not in fields
    assert [line.split()[2] for line in lines[cut + 1 :]] == ["enqueued", "started", "succeeded"]
    assert "source=code" in lines[cut + 1]


def test_show_json_has_the_detail_and_the_timeline(context, redis_url):
    job = sample_jobs.record.enqueue("hello")
    ok("worker", "--burst", "-c", "1", url=redis_url)
    data = json.loads(ok("show", job.id, "--json", url=redis_url).stdout)
    assert data["id"] == job.id
    assert data["name"] == "tests.sample_jobs.record"
    assert (data["queue"], data["state"]) == ("default", "finished")
    assert (data["args"], data["kwargs"]) == (["hello"], {})
    assert (data["result"], data["attempts"], data["traceback"]) == ("hello", 1, None)
    assert data["worker"]
    ended = datetime.fromisoformat(data["ended_at"])
    assert datetime.fromisoformat(data["enqueued_at"]) <= ended <= datetime.now(UTC)
    assert [entry["event"] for entry in data["timeline"]] == ["enqueued", "started", "succeeded"]
    assert data["timeline"] == timeline.history(context.redis, context.keys, job.id)
    assert data["timeline"][1]["worker"] == data["worker"] and data["timeline"][1]["pid"] > 0


def test_show_a_failed_job_includes_its_traceback(context, redis_url):
    [job_id] = make_failed(context, redis_url, 1)
    output = ok("show", job_id, url=redis_url).stdout
    assert "        state: failed" in output
    traceback = output.split("    traceback:\n", 1)[1].split("     timeline:", 1)[0]
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("KeyError: 'k0'")
    data = json.loads(ok("show", job_id, "--json", url=redis_url).stdout)
    assert data["error"] == "KeyError: 'k0'" and data["result"] is None
    assert [entry["event"] for entry in data["timeline"]] == ["enqueued", "started", "failed"]


def test_show_an_unknown_id_is_a_user_error(context, redis_url):
    line = user_error(jobctl("show", "no-such-job", url=redis_url))
    assert line == "error: no job with id 'no-such-job' (it may have expired)"


# --- list --------------------------------------------------------------------------------------------


def test_list_failed_json_pages(context, redis_url):
    ids = make_failed(context, redis_url, 3)

    def page(number):
        result = ok(
            "list", "--state", "failed", "--json", "--per-page", "2", "--page", str(number), url=redis_url
        )
        return json.loads(result.stdout)

    first, second, beyond = page(1), page(2), page(3)
    assert (first["total"], first["page"], first["pages"]) == (3, 1, 2)
    assert (second["total"], second["page"], second["pages"]) == (3, 2, 2)
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    listed = [item["id"] for item in first["items"] + second["items"]]
    assert sorted(listed) == sorted(ids)
    assert beyond["items"] == [] and beyond["total"] == 3
    for item in first["items"] + second["items"]:
        assert item["state"] == "failed" and item["queue"] == "default"
        assert item["name"] == "tests.sample_jobs.fails_without_retry"
        assert item["error"].startswith("KeyError: 'k")
        assert item["ended_at"] and item["enqueued_at"]


def test_list_human_output_and_filters(context, redis_url):
    make_failed(context, redis_url, 3)
    queued = sample_jobs.record.enqueue("waiting")
    lines = ok("list", "--state", "failed", "--per-page", "2", url=redis_url).stdout.splitlines()
    assert lines[-1] == "page 1/2, 3 failed job(s)"
    assert len(lines) == 3 and all("tests.sample_jobs.fails_without_retry" in line for line in lines[:2])
    assert all("KeyError: 'k" in line for line in lines[:2])
    lines = ok("list", url=redis_url).stdout.splitlines()  # --state queued is the default
    assert lines[0].startswith(f"{queued.id}  default") and lines[-1] == "page 1/1, 1 queued job(s)"
    by_name = json.loads(
        ok("list", "--state", "failed", "--name", "tests.sample_jobs.record", "--json", url=redis_url).stdout
    )
    assert (by_name["items"], by_name["total"]) == ([], 0)
    by_queue = json.loads(ok("list", "--state", "failed", "--queue", "low", "--json", url=redis_url).stdout)
    assert by_queue["total"] == 0


@pytest.mark.parametrize("per_page", ["0", "-1"])
def test_list_refuses_a_page_size_below_one(context, redis_url, per_page):
    make_failed(context, redis_url, 2)
    # 0 dies with ZeroDivisionError in Page.pages; -1 silently shows a wrong page ("page 1/1", 1 of 2 jobs)
    line = user_error(jobctl("list", "--state", "failed", "--per-page", per_page, url=redis_url))
    assert "per-page" in line or "per_page" in line


# --- failed requeue / delete -------------------------------------------------------------------------


def test_failed_requeue_by_id(context, redis_url):
    first, second = make_failed(context, redis_url, 2)
    result = ok("failed", "requeue", first, first, url=redis_url)  # an id given twice is requeued once
    assert result.stdout == "requeued 1 job(s)\n"
    assert failed_ids(context) == {second}
    assert queue_for(context, "default").get_job_ids() == [first]
    assert Job.fetch(first, connection=context.redis).get_status() == "queued"
    history = timeline.history(context.redis, context.keys, first)
    assert [e["event"] for e in history] == ["enqueued", "started", "failed", "requeued"]
    assert "@" in history[-1]["by"]
    [(_, audit)] = context.redis.xrevrange(context.keys.audit, count=1)
    assert audit[b"action"] == b"requeue-failed" and audit[b"target"] == first.encode()


def test_requeued_job_runs_again(context, redis_url):
    [job_id] = make_failed(context, redis_url, 1)
    ok("failed", "requeue", job_id, url=redis_url)
    ok("worker", "--burst", "-c", "1", url=redis_url)
    assert events(context, job_id) == ["enqueued", "started", "failed", "requeued", "started", "failed"]
    assert failed_ids(context) == {job_id}


def test_failed_requeue_all(context, redis_url):
    ids = make_failed(context, redis_url, 3)
    result = ok("failed", "requeue", "--all", "--json", url=redis_url)
    assert json.loads(result.stdout) == {"requeued": 3, "left": {}}
    assert failed_ids(context) == set()
    assert sorted(queue_for(context, "default").get_job_ids()) == sorted(ids)
    assert all(events(context, job_id)[-1] == "requeued" for job_id in ids)
    [(_, audit)] = context.redis.xrevrange(context.keys.audit, count=1)
    assert audit[b"action"] == b"requeue-failed" and audit[b"target"] == b"all"
    assert json.loads(audit[b"details"]) == {"count": 3}


def test_failed_requeue_of_an_id_that_is_not_failed_changes_nothing_and_says_why(context, redis_url):
    queued = sample_jobs.record.enqueue("queued")
    result = jobctl("failed", "requeue", queued.id, "missing-id", "--json", url=redis_url)
    assert result.returncode == 0  # reported, not refused
    assert json.loads(result.stdout) == {
        "requeued": 0,
        "left": {queued.id: admin.NOT_FAILED, "missing-id": admin.UNKNOWN},
    }
    human = jobctl("failed", "delete", "missing-id", url=redis_url)
    assert human.returncode == 0 and human.stdout == "deleted 0 job(s)\n"
    assert human.stderr == f"not deleted: job missing-id: {admin.UNKNOWN}\n"
    assert queue_for(context, "default").get_job_ids() == [queued.id]
    assert events(context, queued.id) == ["enqueued"]


def test_failed_delete_all(context, redis_url):
    ids = make_failed(context, redis_url, 3)
    kept = sample_jobs.record.enqueue("not failed")
    result = ok("failed", "delete", "--all", url=redis_url)
    assert result.stdout == "deleted 3 job(s)\n"
    assert failed_ids(context) == set()
    assert context.redis.keys("rq:job:*") == [f"rq:job:{kept.id}".encode()]
    for job_id in ids:
        assert not context.redis.exists(context.keys.timeline(job_id))
    assert queue_for(context, "default").get_job_ids() == [kept.id]
    [(_, audit)] = context.redis.xrevrange(context.keys.audit, count=1)
    assert audit[b"action"] == b"delete-failed" and audit[b"target"] == b"all"


def test_failed_delete_by_id(context, redis_url):
    first, second = make_failed(context, redis_url, 2)
    assert json.loads(ok("failed", "delete", second, "--json", url=redis_url).stdout) == {
        "deleted": 1,
        "left": {},
    }
    assert failed_ids(context) == {first}
    assert not context.redis.exists(Job.key_for(second))
    assert context.redis.exists(Job.key_for(first))


@pytest.mark.parametrize("action", ["requeue", "delete"])
@pytest.mark.parametrize("targets", [(), ("some-id", "--all")])
def test_failed_needs_ids_or_all_but_not_both(context, redis_url, action, targets):
    [job_id] = make_failed(context, redis_url, 1)
    line = user_error(jobctl("failed", action, *targets, url=redis_url))
    assert line == "error: give job ids or --all (not both)"
    assert failed_ids(context) == {job_id}
    assert not context.redis.exists(context.keys.audit)


# --- stats and workers -------------------------------------------------------------------------------


def test_stats_json_counts(context, redis_url):
    sample_jobs.record.enqueue("done")
    sample_jobs.fails_without_retry.enqueue("k")
    ok("worker", "--burst", "-c", "1", url=redis_url)
    sample_jobs.record.enqueue("a")
    sample_jobs.record.enqueue("b")
    sample_jobs.record_low.enqueue("c")
    sample_jobs.record.enqueue_in(timedelta(minutes=10), "later")
    data = json.loads(ok("stats", "--json", url=redis_url).stdout)
    queues = {q["name"]: q for q in data["queues"]}
    assert set(queues) == {"default", "low"}
    assert queues["default"]["counts"] == {
        "queued": 2,
        "scheduled": 1,
        "started": 0,
        "finished": 1,
        "failed": 1,
        "canceled": 0,
        "deferred": 0,
    }
    assert queues["low"]["counts"]["queued"] == 1 and sum(queues["low"]["counts"].values()) == 1
    assert 0 <= queues["default"]["oldest_age"] < 60
    assert (data["succeeded_last_hour"], data["failed_last_hour"]) == (1, 1)
    assert (data["succeeded_last_day"], data["failed_last_day"]) == (1, 1)
    assert data["by_name_last_day"] == {
        "tests.sample_jobs.fails_without_retry": {"succeeded": 0, "failed": 1},
        "tests.sample_jobs.record": {"succeeded": 1, "failed": 0},
    }
    assert data["workers"] == 0


def test_stats_human_output(context, redis_url):
    sample_jobs.record.enqueue("a")
    lines = ok("stats", url=redis_url).stdout.splitlines()
    assert lines[0].split() == ["queue", *inspect.STATES, "oldest"]
    assert lines[1].split()[:8] == ["default", "1", "0", "0", "0", "0", "0", "0"]
    assert "last hour: 0 succeeded, 0 failed" in lines
    assert lines[-1] == "workers: 0"


def test_listing_workers_writes_nothing(context, redis_url):
    context.redis.sadd("rq:workers", "rq:worker:gone")  # registered, its hash expired (a lost host)
    before = context.redis.dbsize(), context.redis.smembers("rq:workers")
    assert json.loads(ok("workers", "--json", url=redis_url).stdout) == []
    assert ok("stats", url=redis_url).stdout
    assert (context.redis.dbsize(), context.redis.smembers("rq:workers")) == before


def test_workers_json_shows_a_running_worker_and_its_job(context, processes, redis_url):
    assert json.loads(ok("workers", "--json", url=redis_url).stdout) == []
    job = sample_jobs.sleep_then_record.enqueue("busy", 30)
    processes.start("worker", "-c", "1", "--shutdown-timeout", "1s", url=redis_url)
    running = wait_for(
        lambda: context.redis.lrange("test:running", 0, -1), timeout=20, what="the job to start"
    )
    pid = int(running[0].decode().rsplit(":", 1)[1])

    def busy_worker():
        views = json.loads(ok("workers", "--json", url=redis_url).stdout)
        return views if views and views[0]["current_job"] == job.id else None

    [view] = wait_for(busy_worker, timeout=20, what="jobctl workers to show the running job")
    assert view["pid"] == pid
    assert view["host"] == socket.gethostname()
    assert view["queues"] == ["critical", "default", "low"]
    assert view["state"] == "busy"
    assert view["dead"] is False
    beat = datetime.fromisoformat(view["last_heartbeat"])
    assert abs((datetime.now(UTC) - beat.astimezone(UTC)).total_seconds()) < 30
    started = timeline.history(context.redis, context.keys, job.id)[1]
    assert started["event"] == "started" and started["worker"] == view["name"]
    assert json.loads(ok("stats", "--json", url=redis_url).stdout)["workers"] == 1
    human = ok("workers", url=redis_url).stdout.splitlines()
    assert human[-1].startswith("1 worker(s)")
    [line] = [line for line in human if view["name"] in line]
    assert f"{view['host']}:{pid}" in line and job.id in line and not line.startswith("DEAD")


@pytest.mark.parametrize("database", ["one", "1/2"])
def test_a_redis_url_whose_database_is_not_a_number_is_one_line(context, database):
    # redis-py would take "one" for DB 0, the services' cache, and "1/2" for DB 12
    url = f"redis://127.0.0.1:1/{database}"
    result = jobctl("enqueue", "tests.sample_jobs.add", "--args", "[1, 2]", "--redis-url", url, url=url)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {url} is not a Redis URL")
    assert (
        f"its database '{database}' is not a number" in result.stderr and len(result.stderr.splitlines()) == 1
    )


def test_a_redis_url_that_is_not_a_url_is_one_line(context):
    result = jobctl("stats", "--redis-url", "notaurl", url="redis://127.0.0.1:1/1")
    assert result.returncode == 2 and result.stderr.startswith("error: notaurl is not a Redis URL")
    assert "Traceback" not in result.stderr
