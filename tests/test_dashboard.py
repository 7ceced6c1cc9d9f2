"""The dashboard through Flask's test client, against the real test server (no mocks): every page and
API route renders with jobs in every state, a schedule, a held lock, audit entries and invoices; access
control (local-only mode, users with roles, a bearer token), CSRF and rq-dashboard's guard; escaping of
job data; pagination and filters; operator actions (one by one and in bulk) with their audit trail;
/metrics; and the error pages."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import pickle
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import rq
from markupsafe import escape
from werkzeug.security import generate_password_hash

import jobs
from dashboard import create_app
from jobs import admin, billing, inspect, locks, recurring
from jobs.enqueue import queue_for
from tests import sample_jobs
from tests.conftest import jobctl, make_settings, wait_for

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
OPERATOR_ADDRESS = {"REMOTE_ADDR": "127.0.0.9"}  # loopback too, but recognisable in the audit log
ELSEWHERE = {"REMOTE_ADDR": "203.0.113.7"}
PASSWORDS = {"alice": "alice-pass-1", "bob": "bob-pass-2"}
USERS = (
    f"alice:operator:{generate_password_hash(PASSWORDS['alice'])};"
    f"bob:viewer:{generate_password_hash(PASSWORDS['bob'])}"
)
TOKEN = "token-for-scripts-0123456789"
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
RECORD = "tests.sample_jobs.record"
ALWAYS_FAILS = "tests.sample_jobs.always_fails"
FAILS_WITHOUT_RETRY = "tests.sample_jobs.fails_without_retry"


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def make_app(context, redis_url, tmp_path):
    """Build a dashboard app on the emptied test DB (data dir: the test's tmp dir) with these settings."""
    apps = []

    def make(**overrides):
        app = create_app(make_settings(redis_url, data_dir=tmp_path, **overrides), testing=True)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["jobs.context"].redis.close()


@pytest.fixture
def local(make_app):
    """A browser on the dashboard's own machine, in local-only mode (no users, no token): operator."""
    return client_at(make_app(), OPERATOR_ADDRESS)


def client_at(app, environ_base: dict):
    """A test client whose requests come from the address in `environ_base`."""
    client = app.test_client()
    client.environ_base.update(environ_base)
    return client


def run_jobs(redis_url: str) -> None:
    """Drain the queues with a real worker pool."""
    result = jobctl("worker", "--burst", "-c", "2", url=redis_url)
    assert result.returncode == 0, result.stdout + result.stderr


def page_csrf(client, path: str = "/jobs/failed") -> str:
    """The CSRF token a page embeds in its forms (and the session keeps)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF token in {path}"
    return match.group(1)


def listed_ids(page_text: str) -> list[str]:
    """Job ids in the order a job list page shows them."""
    return re.findall(r'<td><a href="/job/([^"]+)">', page_text)


def api_ids(client, state: str, **query) -> list[str]:
    response = client.get(f"/api/jobs/{state}", query_string=query)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json["items"]]


def state_of(context, job_id: str) -> str:
    return inspect.job_detail(context, job_id).state


def audit_entries(client, action: str) -> list[dict]:
    return [entry for entry in client.get("/api/audit").json if entry["action"] == action]


def log_in(client, name: str, next_path: str | None = None, password: str | None = None):
    query = {"next": next_path} if next_path else {}
    form = {"user": name, "password": PASSWORDS.get(name, "") if password is None else password}
    return client.post("/login", query_string=query, data={"csrf_token": page_csrf(client, "/login"), **form})


def finished_bulk(client, task: str) -> dict:
    """Poll a bulk task's progress, as its page does, until it has finished; return the progress."""

    def finished():
        progress = client.get(f"/api/bulk/{task}").json
        assert progress["state"] != "failed", progress
        return progress if progress["state"] == "finished" else None

    return wait_for(finished, what=f"bulk task {task}")


def task_of(response) -> str:
    """The task id a bulk form's redirect to its progress page names."""
    assert response.status_code == 302, response.text
    return urlsplit(response.headers["Location"]).path.removeprefix("/bulk/")


def hidden_inputs(page_text: str) -> dict[str, str]:
    """The hidden fields of a page's forms (the bulk form carries the list's filter in them)."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page_text)
    }


@pytest.fixture
def populated(make_app, context, processes, redis_url):
    """Jobs in every state, a schedule with a run, a held lock, audit entries and invoices; returns the
    app and a dict of job ids by state."""
    app = make_app()
    finished = sample_jobs.record.enqueue(SCRIPT)
    failed = sample_jobs.always_fails.enqueue(IMG)
    retrying = sample_jobs.fails_once.enqueue("retry")  # fails once; its retry waits ~1 s, scheduled
    run_jobs(redis_url)
    started = sample_jobs.sleep_then_record.enqueue("running", 60, queue="low")
    pool = processes.start("worker", "--queues", "low", "-c", "1", url=redis_url)
    queued = sample_jobs.record.enqueue("waiting")
    deferred = sample_jobs.record.enqueue("after", depends_on=queued)
    scheduled = sample_jobs.record.enqueue_in(timedelta(hours=1), "later")
    canceled = sample_jobs.record.enqueue("never")
    admin.cancel_job(context, canceled.id, actor="carol@ops", address="10.1.2.3")
    jobs.schedule(
        "nightly-report", sample_jobs.record, cron="0 2 * * *", tz="Europe/Berlin", args=["nightly"]
    )
    run = admin.trigger_schedule(context, "nightly-report", actor="carol@ops")
    guard = locks.lock("reports:weekly", ttl=30)
    guard.acquire()
    billing.generate_monthly_invoices("2026-10")  # five demo customers, in tmp_path's SQLite file
    wait_for(lambda: state_of(context, started.id) == "started", what="the job on the low queue to start")
    wait_for(  # a worker's current job is written by its heartbeat thread, within a second
        lambda: started.id in [w.current_job for w in inspect.workers(context)],
        what="its worker's current job",
    )
    ids = {
        "queued": queued.id,
        "scheduled": scheduled.id,
        "started": started.id,
        "finished": finished.id,
        "failed": failed.id,
        "canceled": canceled.id,
        "deferred": deferred.id,
    }
    assert {state: state_of(context, job_id) for state, job_id in ids.items()} == {s: s for s in ids}
    assert state_of(context, retrying.id) == "scheduled"
    yield app, ids | {"retrying": retrying.id, "run": run.id}
    guard.release()
    os.killpg(pool.pid, signal.SIGKILL)  # its job sleeps for a minute; the next test empties the DB
    pool.wait(timeout=20)


# --- every route renders with data present ----------------------------------------------------------


def test_every_page_renders_with_jobs_in_every_state_and_the_rest_of_the_data(populated):
    app, ids = populated
    client = client_at(app, LOOPBACK)

    overview = client.get("/")
    assert overview.status_code == 200
    assert "local (operator)" in overview.text and '<svg class="chart"' in overview.text
    for queue in ("default", "low"):  # the queues that have had jobs
        assert f'href="/jobs/queued?queue={queue}"' in overview.text

    for state in inspect.STATES:
        listing = client.get(f"/jobs/{state}")
        assert listing.status_code == 200, state
        assert ids[state] in listed_ids(listing.text), state
        detail = client.get(f"/job/{ids[state]}")
        assert detail.status_code == 200, state
        assert f'<p class="state state-{state}">{state}</p>' in detail.text
    assert f"/job/{ids['queued']}" in client.get(f"/job/{ids['deferred']}").text  # depends on
    buttons = {  # an operator sees the actions each state allows
        "failed": ["requeue", "delete"],
        "queued": ["cancel", "delete"],
        "scheduled": ["cancel", "delete"],
        "deferred": ["cancel", "delete"],
        "canceled": ["delete"],
        "finished": ["delete"],
        "started": [],
    }
    for state, actions in buttons.items():
        shown = re.findall(
            r'<form method="post" action="/job/[^/]+/(\w+)"', client.get(f"/job/{ids[state]}").text
        )
        assert shown == actions, state
    assert "Traceback" in client.get(f"/job/{ids['failed']}").text
    assert "nightly-report" in client.get(f"/job/{ids['run']}").text  # the schedule that made it

    retries = client.get("/retries")
    assert retries.status_code == 200 and listed_ids(retries.text) == [ids["retrying"]]

    schedules = client.get("/schedules")
    assert schedules.status_code == 200
    assert 'href="/schedules/nightly-report"' in schedules.text and "At 02:00" in schedules.text
    schedule = client.get("/schedules/nightly-report")
    assert schedule.status_code == 200
    assert "Europe/Berlin" in schedule.text and f"/job/{ids['run']}" in schedule.text
    assert schedule.text.count("<tr><td>20") >= 5  # next fires, local and UTC
    assert re.findall(r'action="/schedules/nightly-report/(\w+)"', schedule.text) == [
        "trigger",
        "pause",
        "delete",
    ]
    assert '<input type="datetime-local" name="until">' in schedule.text

    workers = client.get("/workers")
    assert workers.status_code == 200 and f"/job/{ids['started']}" in workers.text

    held = client.get("/locks")
    assert held.status_code == 200 and "reports:weekly" in held.text and "no locks held" not in held.text
    assert 'action="/locks/reports:weekly/release"' in held.text

    redis_page = client.get("/redis")
    assert redis_page.status_code == 200 and "maxmemory-policy" in redis_page.text

    audit = client.get("/audit")
    assert audit.status_code == 200
    assert "carol@ops" in audit.text and "cancel-job" in audit.text and "10.1.2.3" in audit.text

    invoices = client.get("/invoices", query_string={"month": "2026-10"})
    assert invoices.status_code == 200
    assert all(name in invoices.text for name in ("Acme GmbH", "Hooli Inc", "49.00", "199.00"))
    assert "Acme GmbH" in client.get("/invoices").text

    assert client.get("/login").status_code == 200
    assert client.get("/rq/").status_code == 200


def test_every_api_route_returns_the_same_data_as_json(populated, context):
    app, ids = populated
    client = client_at(app, LOOPBACK)

    overview = client.get("/api/overview").json
    assert all(overview["totals"][state] >= 1 for state in inspect.STATES)
    assert [queue["name"] for queue in overview["queues"]] == ["default", "low"]
    assert overview["workers"] == 1 and len(overview["last_hour"]["failed"]) == 60
    assert sum(count for _, count in overview["last_hour"]["failed"]) >= 1

    for state in inspect.STATES:
        assert ids[state] in api_ids(client, state), state
        detail = client.get(f"/api/job/{ids[state]}").json
        assert detail["id"] == ids[state] and detail["state"] == state
    finished = client.get(f"/api/job/{ids['finished']}").json
    assert finished["args"] == [SCRIPT] and finished["result"] == SCRIPT
    failed = client.get(f"/api/job/{ids['failed']}").json
    assert failed["error"] == f"ValueError: {IMG}" and "ValueError" in failed["traceback"]
    assert [entry["event"] for entry in failed["timeline"]][-1] == "failed"
    assert client.get(f"/api/job/{ids['run']}").json["schedule"] == "nightly-report"
    assert [item["id"] for item in client.get("/api/retries").json["items"]] == [ids["retrying"]]

    schedules = client.get("/api/schedules").json
    assert [s["id"] for s in schedules["schedules"]] == ["nightly-report"] and schedules["legacy"] == []
    schedule = client.get("/api/schedules/nightly-report").json
    assert schedule["cron"] == "0 2 * * *" and schedule["tz"] == "Europe/Berlin"
    assert schedule["paused"] is False and len(schedule["next_fires"]) == 5
    assert [run["job_id"] for run in schedule["runs"]] == [ids["run"]]

    workers = client.get("/api/workers").json
    assert [(w["queues"], w["current_job"]) for w in workers if w["kind"] == "worker"] == [
        (["low"], ids["started"])
    ]
    [held] = client.get("/api/locks").json
    assert held["name"] == "reports:weekly" and held["fence"] >= 1 and 0 < held["ttl_left"] <= 30
    health = client.get("/api/redis").json
    test_db = f"db{context.redis.connection_pool.connection_kwargs['db']}"  # 1, or JOBS_TEST_REDIS_URL's
    assert health["version"] and test_db in health["keys_per_db"] and "password" not in health["url"]
    assert [entry["action"] for entry in client.get("/api/audit").json] == [
        "trigger-schedule",
        "cancel-job",
    ]
    assert len(client.get("/api/audit", query_string={"count": 1}).json) == 1
    invoices = client.get("/api/invoices", query_string={"month": "2026-10"}).json
    assert sorted(i["customer"] for i in invoices) == sorted(c[1] for c in billing.DEMO_CUSTOMERS)
    assert client.get("/api/invoices", query_string={"month": "2026-09"}).json == []


def test_metrics_count_jobs_per_queue_and_state(populated):
    app, ids = populated
    response = client_at(app, LOOPBACK).get("/metrics")
    assert response.status_code == 200
    assert response.content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#")
    )
    for queue in ("default", "low"):
        for state in inspect.STATES:
            assert f'jobs_queue_jobs{{queue="{queue}",state="{state}"}}' in samples
    expected = {
        # the queued job, five invoice e-mails and the schedule's run
        'jobs_queue_jobs{queue="default",state="queued"}': "7",
        'jobs_queue_jobs{queue="default",state="scheduled"}': "2",  # the delayed job and the retry
        'jobs_queue_jobs{queue="default",state="failed"}': "1",
        'jobs_queue_jobs{queue="default",state="finished"}': "1",
        'jobs_queue_jobs{queue="default",state="deferred"}': "1",
        'jobs_queue_jobs{queue="default",state="canceled"}': "1",
        'jobs_queue_jobs{queue="low",state="started"}': "1",
        'jobs_queue_jobs{queue="low",state="queued"}': "0",
        f'jobs_finished_last_day{{job="{RECORD}",status="succeeded"}}': "1",
        f'jobs_finished_last_day{{job="{ALWAYS_FAILS}",status="failed"}}': "3",  # every attempt
        'jobs_processes{kind="worker"}': "1",
        'jobs_processes{kind="scheduler"}': "0",
        f'jobs_duration_seconds_count{{job="{RECORD}"}}': "1",
        f'jobs_duration_seconds_bucket{{job="{RECORD}",le="+Inf"}}': "1",
    }
    assert {key: samples.get(key) for key in expected} == expected
    buckets = [
        int(v) for k, v in samples.items() if k.startswith(f'jobs_duration_seconds_bucket{{job="{RECORD}"')
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 1  # cumulative
    assert float(samples['jobs_queue_oldest_age_seconds{queue="default"}']) >= 0
    assert "# TYPE jobs_queue_jobs gauge" in response.text


# --- who may see and do what ------------------------------------------------------------------------


@pytest.fixture
def one_failed(context, redis_url) -> str:
    """The id of one failed job."""
    job = sample_jobs.fails_without_retry.enqueue("missing")
    run_jobs(redis_url)
    assert state_of(context, job.id) == "failed"
    return job.id


def test_local_only_mode_serves_loopback_as_operator_and_refuses_other_addresses(
    make_app, context, one_failed
):
    app = make_app()
    for address in ("127.0.0.1", "::1"):
        client = client_at(app, {"REMOTE_ADDR": address})
        assert client.get("/").status_code == 200
        assert "local (operator)" in client.get("/").text
        assert client.get("/api/overview").status_code == 200
        assert client.get("/metrics").status_code == 200

    stranger = client_at(app, ELSEWHERE)
    for path in ("/", "/jobs/failed", f"/job/{one_failed}", "/api/overview", "/metrics", "/rq/"):
        assert stranger.get(path).status_code == 403, path
    spoofed = stranger.get("/api/overview", headers={"X-Forwarded-For": "127.0.0.1"})
    assert spoofed.status_code == 403  # no proxy is trusted
    assert stranger.post(f"/api/job/{one_failed}/requeue").status_code == 403
    assert stranger.get("/api/overview", headers={"Authorization": "Bearer anything"}).status_code == 403
    assert state_of(context, one_failed) == "failed"


def test_with_users_configured_everything_needs_a_login(make_app, one_failed):
    client = client_at(make_app(dashboard_users=USERS), LOOPBACK)  # even from this machine
    page = client.get("/jobs/failed", query_string={"page": 1})
    assert page.status_code == 302
    location = urlsplit(page.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/jobs/failed?page=1"]}
    assert client.get(f"/job/{one_failed}").status_code == 302
    assert client.get("/rq/").status_code == 302
    assert client.get("/api/overview").status_code == 401
    assert client.get(f"/api/job/{one_failed}").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.post(f"/api/job/{one_failed}/requeue").status_code == 401
    assert client.get("/login").status_code == 200


def test_the_login_form_checks_the_password_and_returns_to_the_page_asked_for(make_app):
    client = client_at(make_app(dashboard_users=USERS), LOOPBACK)
    for name, password in (("alice", "wrong"), ("bob", PASSWORDS["alice"]), ("mallory", "x"), ("", "")):
        refused = log_in(client, name, password=password)
        assert refused.status_code == 401 and "wrong name or password" in refused.text
        with client.session_transaction() as session:
            assert "user" not in session
        assert client.get("/").status_code == 302

    forged = client.post("/login", data={"user": "alice", "password": PASSWORDS["alice"]})  # login CSRF
    assert forged.status_code == 400
    welcomed = log_in(client, "alice", next_path="/jobs/failed?page=1")
    assert welcomed.status_code == 302 and welcomed.headers["Location"] == "/jobs/failed?page=1"
    overview = client.get("/")
    assert overview.status_code == 200 and "alice (operator)" in overview.text
    assert client.get("/api/overview").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
        "/%5Cevil",
        "/\t/evil.example/",
        "/\r/x",
    ],
)
def test_the_login_form_never_sends_the_browser_to_another_site(make_app, target):
    client = client_at(make_app(dashboard_users=USERS), LOOPBACK)
    location = log_in(client, "bob", next_path=target).headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert urlsplit(location).netloc == ""


def test_a_viewer_reads_everything_but_every_post_is_refused(make_app, context, one_failed):
    client = client_at(make_app(dashboard_users=USERS), LOOPBACK)
    log_in(client, "bob")
    jobs.schedule("hourly", sample_jobs.record, every="1h", args=["x"])
    guard = locks.lock("viewer-test", ttl=30)
    guard.acquire()
    try:
        for path in ("/", "/jobs/failed", f"/job/{one_failed}", "/schedules/hourly", "/locks", "/audit"):
            page = client.get(path)
            assert page.status_code == 200 and "bob (viewer)" in page.text, path
        for path in ("/api/overview", f"/api/job/{one_failed}", "/metrics", "/rq/"):
            assert client.get(path).status_code == 200, path
        failed_page = client.get("/jobs/failed").text
        assert 'name="ids"' not in failed_page and 'value="requeue"' not in failed_page
        assert '<form method="post" action="/job/' not in client.get(f"/job/{one_failed}").text
        assert '<form method="post" action="/schedules/' not in client.get("/schedules/hourly").text
        assert '<form method="post" action="/locks/' not in client.get("/locks").text
        token = page_csrf(client)
        posts = [
            (f"/job/{one_failed}/requeue", {}),
            (f"/job/{one_failed}/delete", {}),
            (f"/api/job/{one_failed}/requeue", {}),
            ("/jobs/failed/bulk", {"action": "requeue", "everything": "1"}),
            ("/api/jobs/failed/bulk", {"action": "delete", "ids": one_failed}),
            ("/schedules/hourly/pause", {}),
            ("/api/schedules/hourly/delete", {}),
            ("/locks/viewer-test/release", {}),
            ("/api/locks/viewer-test/release", {}),
            ("/rq/requeue/default", {}),
        ]
        for path, form in posts:
            response = client.post(
                path, data={"csrf_token": token, **form}, headers={"Origin": "http://localhost"}
            )
            assert response.status_code == 403, path
        assert state_of(context, one_failed) == "failed"
        assert not recurring.get(context, "hourly").paused_at(datetime.now(UTC).timestamp())
        assert [view.name for view in locks.held_locks(context)] == ["viewer-test"]
        assert client.get("/api/audit").json == []
    finally:
        guard.release()

    logged_out = client.post("/logout", data={"csrf_token": token})  # a viewer may still log out
    assert logged_out.status_code == 302 and urlsplit(logged_out.headers["Location"]).path == "/login"
    assert client.get("/").status_code == 302


def test_an_operator_acts_only_with_the_sessions_csrf_token(make_app, context, one_failed):
    client = client_at(make_app(dashboard_users=USERS), {"REMOTE_ADDR": "198.51.100.4"})
    log_in(client, "alice")
    for path in (f"/job/{one_failed}/requeue", f"/api/job/{one_failed}/requeue"):
        assert client.post(path).status_code == 400, path
        assert client.post(path, data={"csrf_token": "forged"}).status_code == 400, path
        assert client.post(path, headers={"X-CSRF-Token": "forged"}).status_code == 400, path
    assert state_of(context, one_failed) == "failed"
    other = client_at(make_app(dashboard_users=USERS), LOOPBACK)
    log_in(other, "alice")
    another_sessions = {"X-CSRF-Token": page_csrf(other)}
    assert client.post(f"/api/job/{one_failed}/requeue", headers=another_sessions).status_code == 400
    assert state_of(context, one_failed) == "failed" and client.get("/api/audit").json == []

    done = client.post(f"/job/{one_failed}/requeue", data={"csrf_token": page_csrf(client)})
    assert done.status_code == 302 and done.headers["Location"] == f"/job/{one_failed}"
    assert state_of(context, one_failed) == "queued"
    [entry] = audit_entries(client, "requeue-failed")
    assert (entry["actor"], entry["address"], entry["target"]) == ("alice", "198.51.100.4", one_failed)


def test_a_bearer_token_is_an_operator_on_the_api_without_csrf(make_app, context, one_failed):
    app = make_app(dashboard_users=USERS, dashboard_token=TOKEN)
    script = client_at(app, ELSEWHERE)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert script.get("/api/overview", headers=bearer).status_code == 200
    assert script.get("/metrics", headers=bearer).status_code == 200
    for wrong in ("Bearer " + TOKEN[:-1], "Bearer", "Basic " + TOKEN, TOKEN):
        assert script.get("/api/overview", headers={"Authorization": wrong}).status_code == 401, wrong
        refused = script.post(f"/api/job/{one_failed}/requeue", headers={"Authorization": wrong})
        assert refused.status_code == 401, wrong
    assert state_of(context, one_failed) == "failed"

    done = script.post(f"/api/job/{one_failed}/requeue", headers=bearer)
    assert done.status_code == 200 and done.json == {"job": one_failed, "done": "requeue"}
    assert state_of(context, one_failed) == "queued"
    [entry] = [e for e in script.get("/api/audit", headers=bearer).json if e["action"] == "requeue-failed"]
    assert (entry["actor"], entry["address"]) == ("token", ELSEWHERE["REMOTE_ADDR"])


def test_rq_dashboard_is_mounted_but_only_changes_state_by_a_same_origin_post(local, context, one_failed):
    assert local.get("/rq/").status_code == 200
    assert local.get("/rq/0/data/queues.json").status_code == 200
    assert local.get("/rq/requeue/default").status_code == 405
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/rq/"}, {}):
        assert local.post("/rq/requeue/default", headers=headers).status_code == 400, headers
        assert local.post(f"/rq/job/{one_failed}/delete", headers=headers).status_code == 400, headers
    assert state_of(context, one_failed) == "failed"
    same_site = local.post("/rq/requeue/default", headers={"Origin": "http://localhost"})
    assert same_site.status_code == 200 and same_site.json == {"status": "OK", "count": 1, "left": {}}
    assert state_of(context, one_failed) == "queued"
    [entry] = audit_entries(local, "requeue-failed")  # its actions are the platform's, audited
    assert entry["target"] == one_failed and entry["actor"] == "local"


def test_rq_dashboard_actions_are_the_platforms_and_keep_its_lists_exact(local, context, redis_url):
    failing = [sample_jobs.fails_without_retry.enqueue(f"k{i}").id for i in range(4)]
    run_jobs(redis_url)
    same_site = {"Origin": "http://localhost"}
    by_name = {"name": FAILS_WITHOUT_RETRY}

    def listed() -> tuple[int, list[str]]:
        page = local.get("/api/jobs/failed", query_string=by_name).json
        return page["total"], sorted(item["id"] for item in page["items"])

    deleted = local.post(f"/rq/job/{failing[0]}/delete", headers=same_site)
    assert deleted.json["status"] == "OK" and deleted.headers["Cache-Control"] == "no-store"
    assert listed() == (3, sorted(failing[1:]))  # gone from the index too, not only from RQ's registry
    assert local.post(f"/rq/job/{failing[1]}/requeue", headers=same_site).json["status"] == "OK"
    run_jobs(redis_url)  # it fails again
    assert listed() == (3, sorted(failing[1:]))  # listed once, not twice
    assert [e["target"] for e in audit_entries(local, "delete-job")] == [failing[0]]

    running = sample_jobs.sleep_then_record.enqueue("busy", 30)
    started = queue_for(context, "default").started_job_registry.key
    context.redis.zadd(started, {f"{running.id}:execution": time.time() + 60})  # as a take starts it
    context.redis.hset(running.key, "status", "started")
    emptied = local.post("/rq/queue/default/started/empty", headers=same_site).json
    assert (
        emptied["status"] == "ERROR" and "it can be deleted once it has ended" in emptied["left"][running.id]
    )
    assert state_of(context, running.id) == "started"  # a running job is not deleted under its worker
    emptied = local.post("/rq/queue/default/failed/empty", headers=same_site).json
    assert (emptied["status"], emptied["count"]) == ("OK", 3)
    assert listed() == (0, [])
    assert local.post("/rq/queue/default/nonsense/empty", headers=same_site).json["count"] == 0
    assert local.post("/rq/queue/default/compact", headers=same_site).json["status"] == "OK"
    assert [e["target"] for e in audit_entries(local, "compact-queue")] == ["default"]


unpickled: list[str] = []


def unpickling(what: str) -> dict:
    unpickled.append(what)
    return {}


class Payload:
    """What, pickled into Redis, records that the dashboard unpickled it."""

    def __reduce__(self):
        return (unpickling, ("read with pickle",))


def test_rq_dashboard_reads_no_pickle_from_redis(local, context, one_failed, processes, redis_url):
    context.redis.hset(f"rq:job:{one_failed}", "meta", pickle.dumps(Payload()))
    assert local.get(f"/rq/0/view/job/{one_failed}").status_code == 200  # RQ's default was pickle
    running = sample_jobs.sleep_then_record.enqueue("busy", 30)
    processes.start("worker", "-c", "1", url=redis_url)
    wait_for(lambda: state_of(context, running.id) == "started", what="the job to start")
    context.redis.hset(running.key, "meta", pickle.dumps(Payload()))
    wait_for(
        lambda: local.get("/rq/0/data/workers.json").json["workers"][0]["current_job"],
        what="rq-dashboard to show the running job",
    )
    assert unpickled == []


def test_pages_of_jobs_that_rqs_own_tools_wrote_are_not_errors(local, context, redis_url):
    queue = rq.Queue("default", connection=context.redis)  # RQ's defaults, as `rq enqueue` and `rq worker`
    by_rq = queue.enqueue("tests.sample_jobs.record", "x")
    rq.SimpleWorker([queue], connection=context.redis).work(burst=True)  # its result: pickled
    detail = local.get(f"/api/job/{by_rq.id}")
    assert detail.status_code == 200 and detail.json["result"].startswith("<unreadable:")
    # what a job's end writes into a key deleted meanwhile (by rq-dashboard's delete of a running job)
    context.redis.hset(
        "rq:job:leftover", mapping={"status": "finished", "ended_at": "2026-11-29T00:00:00.000000Z"}
    )
    context.redis.zadd("rq:finished:default", {"leftover": 2e9})
    for path in ("/jobs/finished", "/api/jobs/finished", "/job/leftover", "/api/job/leftover"):
        assert local.get(path).status_code in (200, 404), path


def test_metrics_keep_each_family_in_one_group_under_its_type(local, context):
    sample_jobs.record.enqueue("a")
    sample_jobs.record_low.enqueue("b")  # two queues with an oldest job each
    families, typed = [], set()
    for line in local.get("/metrics").text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line and not line.startswith("#"):
            name = re.sub(r"_(bucket|sum|count)$", "", re.match(r"[a-z_]+", line).group(0))
            if not families or families[-1] != name:
                families.append(name)
    assert len(families) == len(set(families)) and set(families) <= typed, families


# --- escaping -------------------------------------------------------------------------------------


def test_job_data_is_escaped_on_every_page(local, context, redis_url):
    shown = sample_jobs.record.enqueue(SCRIPT)
    failing = sample_jobs.always_fails.enqueue(IMG)
    run_jobs(redis_url)
    queued = sample_jobs.record.enqueue(SCRIPT)
    jobs.schedule("xss", sample_jobs.record, every="1h", args=[SCRIPT], description=IMG)
    admin.trigger_schedule(context, "xss", actor=SCRIPT, address=IMG)
    guard = locks.lock(IMG, ttl=30)
    guard.acquire()
    try:
        pages = [
            "/",
            "/jobs/finished",
            "/jobs/failed",
            "/jobs/queued",
            f"/job/{shown.id}",
            f"/job/{failing.id}",
            f"/job/{queued.id}",
            "/schedules",
            "/schedules/xss",
            "/locks",
            "/audit",
            "/jobs/failed?" + "&".join(f"{key}={IMG}" for key in ("name", "error")),
            "/jobs/failed?error=" + '"><script>alert(1)</script>',
            f"/job/{IMG}",  # an unknown id, echoed by the error page
            f"/schedules/{IMG}",
        ]
        texts = {path: local.get(path).text for path in pages}
        texts["release flash"] = local.post(
            f"/locks/{IMG}/release", data={"csrf_token": page_csrf(local)}, follow_redirects=True
        ).text
    finally:
        guard.release()
    for path, text in texts.items():
        assert SCRIPT not in text and IMG not in text and "<script>alert" not in text, path
    escaped_img = str(escape(IMG))  # as Jinja writes it
    json_script = r"\u003cscript\u003ealert(1)\u003c/script\u003e"  # Flask's tojson, safe inside HTML
    assert json_script in texts[f"/job/{shown.id}"]  # args and result
    assert json_script in texts[f"/job/{queued.id}"]
    assert escaped_img in texts[f"/job/{failing.id}"]  # error, traceback and timeline
    assert texts[f"/job/{failing.id}"].count(escaped_img) >= 3
    assert escaped_img in texts["/jobs/failed"]
    assert json_script in texts["/schedules/xss"] and escaped_img in texts["/schedules/xss"]
    assert escape(SCRIPT) in texts["/audit"] and escaped_img in texts["/audit"]
    assert escaped_img in texts["/locks"] and f"released {escaped_img}" in texts["release flash"]
    assert (
        'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"'
        in texts["/jobs/failed?error=" + '"><script>alert(1)</script>']
    )
    assert escaped_img in texts[f"/job/{IMG}"] and escaped_img in texts[f"/schedules/{IMG}"]


# --- job lists: pagination and filters --------------------------------------------------------------


@pytest.fixture
def server_zone_far_from_utc():
    """The dashboard's process in the zone UTC+05:45, for the times given without a zone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kathmandu"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def sixty_failed(context, redis_url):
    """60 failed jobs: 30 KeyErrors, then (after `boundary`) 15 KeyErrors and 15 ValueErrors."""
    early = [sample_jobs.fails_without_retry.enqueue(f"early-{i}").id for i in range(30)]
    run_jobs(redis_url)
    boundary = datetime.now(UTC)
    late_keys = [sample_jobs.fails_without_retry.enqueue(f"late-{i}").id for i in range(15)]
    late_values = [sample_jobs.always_fails.enqueue(f"Boom {i}").id for i in range(15)]
    run_jobs(redis_url)
    assert inspect.list_jobs(context, "failed").total == 60
    return {"early": early, "late_keys": late_keys, "late_values": late_values, "boundary": boundary}


def test_failed_jobs_are_paged_without_overlap(local, sixty_failed):
    everything = set().union(*(ids for key, ids in sixty_failed.items() if key != "boundary"))
    pages = []
    for number in (1, 2, 3):
        page = local.get("/jobs/failed", query_string={"page": number})
        assert page.status_code == 200 and f"page {number} of 3" in page.text
        assert "60 job(s)" in page.text
        ids = listed_ids(page.text)
        assert ids == api_ids(local, "failed", page=number)  # the page and its API twin agree
        pages.append(ids)
    assert [len(ids) for ids in pages] == [25, 25, 10]
    assert set(pages[0]).isdisjoint(pages[1]) and set(pages[1]).isdisjoint(pages[2])
    assert set(pages[0]) | set(pages[1]) | set(pages[2]) == everything
    assert api_ids(local, "failed", page=4) == []
    api = local.get("/api/jobs/failed", query_string={"page": 2}).json
    assert (api["total"], api["page"], api["pages"], api["state"]) == (60, 2, 3, "failed")
    assert 'href="/jobs/failed?page=3">next</a>' in local.get("/jobs/failed?page=2").text
    odd = local.get("/jobs/failed", query_string={"state": "x", "_external": "1", "_anchor": "top"})
    assert odd.status_code == 200 and 'href="/jobs/failed?page=2">next</a>' in odd.text


def test_failed_jobs_are_filtered_by_name_error_and_time(local, sixty_failed, server_zone_far_from_utc):
    early, late_keys, late_values = (
        sixty_failed["early"],
        sixty_failed["late_keys"],
        sixty_failed["late_values"],
    )
    boundary = sixty_failed["boundary"]

    def ids(**query) -> set[str]:
        found = []
        for number in (1, 2, 3):
            found += api_ids(local, "failed", page=number, **query)
        assert len(found) == len(set(found))
        return set(found)

    assert ids(name=ALWAYS_FAILS) == set(late_values)
    assert ids(name=FAILS_WITHOUT_RETRY) == set(early + late_keys)
    assert ids(name="tests.sample_jobs.record") == set()
    assert ids(error="valueerror: boom") == set(late_values)  # substring, any case
    assert ids(error="KEYERROR") == set(early + late_keys)
    assert ids(error="'early-1") == {early[1]} | set(early[10:20])
    assert ids(since=boundary.isoformat()) == set(late_keys + late_values)
    assert ids(until=boundary.isoformat()) == set(early)
    # a time without a zone (as a datetime-local input sends) is UTC, the zone the pages show times in
    assert ids(since=boundary.astimezone(UTC).replace(tzinfo=None).isoformat()) == set(
        late_keys + late_values
    )
    assert ids(since=boundary.isoformat(), name=FAILS_WITHOUT_RETRY) == set(late_keys)
    assert ids(until=(boundary - timedelta(days=1)).isoformat()) == set()

    page = local.get("/jobs/failed", query_string={"name": FAILS_WITHOUT_RETRY, "page": 2})
    assert "45 job(s)</p>" in page.text and "page 2 of 2" in page.text  # from the index: no search
    assert len(listed_ids(page.text)) == 20
    assert f'href="/jobs/failed?name={FAILS_WITHOUT_RETRY}&amp;page=1">first</a>' in page.text
    api = local.get("/api/jobs/failed", query_string={"error": "boom"}).json
    assert (api["total"], api["scanned"], api["complete"]) == (15, 60, True)
    narrowed = {"error": "boom", "since": boundary.isoformat()}  # the text search reads only the index range
    api = local.get("/api/jobs/failed", query_string=narrowed).json
    assert (api["total"], api["scanned"], api["complete"]) == (15, 30, True)


# --- operator actions and their audit trail ---------------------------------------------------------


def test_job_actions_on_pages_and_api_change_the_job_and_are_audited(local, context, redis_url):
    failed = [sample_jobs.fails_without_retry.enqueue(f"k{i}").id for i in range(2)]
    done = sample_jobs.record.enqueue("done").id
    run_jobs(redis_url)
    queued = [sample_jobs.record.enqueue(f"q{i}").id for i in range(2)]
    deferred = sample_jobs.record.enqueue("after", depends_on=queued[0]).id
    token = page_csrf(local)
    csrf = {"csrf_token": token}
    header = {"X-CSRF-Token": token}

    page = local.post(f"/job/{failed[0]}/requeue", data=csrf)
    assert page.status_code == 302 and page.headers["Location"] == f"/job/{failed[0]}"
    shown = local.get(page.headers["Location"]).text
    assert "requeue: done" in shown and '<p class="state state-queued">queued</p>' in shown
    assert local.post(f"/api/job/{failed[1]}/requeue", headers=header).json == {
        "job": failed[1],
        "done": "requeue",
    }
    assert [state_of(context, job_id) for job_id in failed] == ["queued", "queued"]
    assert "requeued" in [e["event"] for e in local.get(f"/api/job/{failed[1]}").json["timeline"]]

    assert local.post(f"/job/{queued[0]}/cancel", data=csrf).status_code == 302
    assert local.post(f"/api/job/{deferred}/cancel", headers=header).json["done"] == "cancel"
    assert [state_of(context, queued[0]), state_of(context, deferred)] == ["canceled", "canceled"]

    deleted = local.post(f"/job/{queued[1]}/delete", data=csrf)
    assert deleted.status_code == 302 and deleted.headers["Location"] == "/"
    assert local.post(f"/api/job/{done}/delete", headers=header).json == {"job": done, "done": "delete"}
    for job_id in (queued[1], done):
        assert local.get(f"/api/job/{job_id}").status_code == 404
    assert queued[1] not in api_ids(local, "queued")

    refused = local.post(f"/job/{queued[0]}/requeue", data=csrf)  # canceled, not failed
    assert refused.status_code == 400 and "only failed jobs can be requeued" in refused.text
    again = local.post(f"/api/job/{queued[0]}/cancel", headers=header)
    assert again.status_code == 400 and "only a job that has not started" in again.json["error"]
    assert local.post(f"/api/job/{failed[0]}/explode", headers=header).status_code == 404

    trail = {(e["action"], e["target"]): e for e in local.get("/api/audit").json}
    expected = [
        ("requeue-failed", failed[0]),
        ("requeue-failed", failed[1]),
        ("cancel-job", queued[0]),
        ("cancel-job", deferred),
        ("delete-job", queued[1]),
        ("delete-job", done),
    ]
    for key in expected:
        assert (trail[key]["actor"], trail[key]["address"]) == ("local", "127.0.0.9"), key
    assert "cancel-job" in local.get("/audit").text


def test_a_requeue_refused_for_a_unique_key_held_by_another_job_says_why(local, context, redis_url):
    first = sample_jobs.unique_failing.enqueue("k").id
    run_jobs(redis_url)
    sample_jobs.unique_failing.enqueue("k")  # queued: it holds the key now
    refused = local.post(f"/api/job/{first}/requeue", headers={"X-CSRF-Token": page_csrf(local)})
    assert refused.status_code == 400 and "holds its unique key" in refused.json["error"]
    assert state_of(context, first) == "failed"
    assert audit_entries(local, "requeue-failed") == []  # refused, it wrote nothing


def test_a_bulk_requeue_says_how_many_jobs_it_left_failed_and_why(local, context, redis_url):
    first = sample_jobs.unique_failing.enqueue("k").id
    run_jobs(redis_url)
    holder = sample_jobs.unique_failing.enqueue("k").id  # queued: it holds the key now
    form = {"csrf_token": page_csrf(local), "action": "requeue", "ids": [first]}
    task = task_of(local.post("/jobs/failed/bulk", data=form))
    progress = finished_bulk(local, task)
    assert (progress["changed"], progress["left"]) == ("0", "1")
    page = local.get(f"/bulk/{task}").text
    assert (
        f"1 left as they were, such as job {first}: job {holder}, not done yet, holds its unique key" in page
    )
    assert state_of(context, first) == "failed"


def test_bulk_requeue_of_selected_jobs_and_of_everything_matching_the_filter(local, context, sixty_failed):
    token = page_csrf(local)
    chosen = sixty_failed["early"][:3]
    task = task_of(
        local.post("/jobs/failed/bulk", data={"csrf_token": token, "action": "requeue", "ids": chosen})
    )
    progress = finished_bulk(local, task)
    assert (progress["action"], progress["done"], progress["total"], progress["changed"]) == (
        "requeue",
        "3",
        "3",
        "3",
    )
    assert "finished: 3 of 3 (3 changed)" in local.get(f"/bulk/{task}").text
    assert [state_of(context, job_id) for job_id in chosen] == ["queued"] * 3

    # what the list shows after filtering: the bulk form carries the filter in hidden fields
    query = {"since": sixty_failed["boundary"].isoformat(), "name": FAILS_WITHOUT_RETRY}
    listing = local.get("/jobs/failed", query_string=query)
    assert "15 job(s)" in listing.text
    form = hidden_inputs(listing.text) | {"everything": "1", "action": "requeue"}
    assert finished_bulk(local, task_of(local.post("/jobs/failed/bulk", data=form)))["changed"] == "15"
    assert {state_of(context, job_id) for job_id in sixty_failed["late_keys"]} == {"queued"}
    assert {state_of(context, job_id) for job_id in sixty_failed["early"][3:]} == {"failed"}
    assert {state_of(context, job_id) for job_id in sixty_failed["late_values"]} == {"failed"}

    # the API: JSON or a form, ids or everything matching
    header = {"X-CSRF-Token": token}
    answer = local.post(
        "/api/jobs/failed/bulk",
        json={"action": "requeue", "everything": True, "error": "VALUEERROR"},
        headers=header,
    )
    assert answer.status_code == 202
    assert finished_bulk(local, answer.json["task"])["changed"] == "15"
    assert {state_of(context, job_id) for job_id in sixty_failed["late_values"]} == {"queued"}
    pair = sixty_failed["early"][3:5]
    answer = local.post("/api/jobs/failed/bulk", data={"action": "delete", "ids": pair}, headers=header)
    assert finished_bulk(local, answer.json["task"])["changed"] == "2"  # a form may repeat ids
    assert all(local.get(f"/api/job/{job_id}").status_code == 404 for job_id in pair)
    assert inspect.list_jobs(context, "failed").total == 60 - 3 - 15 - 15 - 2

    refused = local.post("/jobs/failed/bulk", data={"csrf_token": token, "action": "requeue"})
    assert refused.status_code == 400 and "select jobs" in refused.text
    unknown = local.post(
        "/api/jobs/failed/bulk", json={"action": "explode", "everything": True}, headers=header
    )
    assert unknown.status_code == 400 and "requeue and delete" in unknown.json["error"]
    assert local.get("/api/bulk/no-such-task").json == {"state": "unknown"}

    trail = [e for e in local.get("/api/audit").json if e["action"] in ("requeue-failed", "delete-failed")]
    assert [(e["action"], e["actor"], e["address"]) for e in trail] == [
        ("delete-failed", "local", "127.0.0.9"),
        *[("requeue-failed", "local", "127.0.0.9")] * 3,
    ]


def test_schedule_actions_on_pages_and_api(local, context, server_zone_far_from_utc):
    jobs.schedule("report", sample_jobs.record, cron="30 6 * * 1", tz="America/New_York", args=["r"])
    token = page_csrf(local)
    csrf = {"csrf_token": token}
    header = {"X-CSRF-Token": token}

    triggered = local.post("/schedules/report/trigger", data=csrf)
    assert triggered.status_code == 302 and triggered.headers["Location"] == "/schedules/report"
    shown = local.get("/schedules/report").text
    run = re.search(r"\(job (schedule-report-manual-\w+)\)", shown).group(1)
    assert f'href="/job/{run}"' in shown and state_of(context, run) == "queued"
    via_api = local.post("/api/schedules/report/trigger", headers=header).json
    assert via_api["done"] == "trigger" and via_api["job"].startswith("schedule-report-manual-")
    assert len(local.get("/api/schedules/report").json["runs"]) == 2

    assert local.post("/schedules/report/pause", data=csrf).status_code == 302
    view = local.get("/api/schedules/report").json
    assert view["paused"] is True and view["paused_until"] == "forever"
    assert '<p class="state">paused until forever</p>' in local.get("/schedules/report").text
    assert local.post("/schedules/report/resume", data=csrf).status_code == 302
    view = local.get("/api/schedules/report").json
    assert view["paused"] is False and view["paused_until"] is None

    # the page's datetime-local field is UTC, as the page shows times; the API takes any ISO 8601 time
    assert local.post("/schedules/report/pause", data=csrf | {"until": "2031-02-03T04:05"}).status_code == 302
    expected = datetime(2031, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert local.get("/api/schedules/report").json["paused_until"] == expected
    assert "paused until 2031-02-03" in local.get("/schedules/report").text
    answer = local.post(
        "/api/schedules/report/pause", json={"until": "2032-01-01T00:00:00+00:00"}, headers=header
    )
    assert answer.json == {"schedule": "report", "done": "pause"}
    assert (
        local.get("/api/schedules/report").json["paused_until"]
        == datetime(2032, 1, 1, tzinfo=UTC).timestamp()
    )
    assert local.post("/api/schedules/report/resume", headers=header).json["done"] == "resume"
    bad = local.post("/api/schedules/report/pause", json={"until": "next tuesday"}, headers=header)
    assert bad.status_code == 400 and "ISO 8601" in bad.json["error"]
    assert local.get("/api/schedules/report").json["paused"] is False

    deleted = local.post("/schedules/report/delete", data=csrf)
    assert deleted.status_code == 302 and deleted.headers["Location"] == "/schedules"
    assert local.get("/schedules/report").status_code == 404
    assert local.post("/api/schedules/report/delete", headers=header).status_code == 404
    jobs.schedule("other", sample_jobs.record, every="5m", args=["o"])
    assert local.post("/api/schedules/other/delete", headers=header).json["done"] == "delete"
    assert local.get("/api/schedules").json["schedules"] == []

    trail = [(e["action"], e["target"], e["actor"], e["address"]) for e in local.get("/api/audit").json]
    assert [entry[:2] for entry in reversed(trail)] == [
        ("trigger-schedule", "report"),
        ("trigger-schedule", "report"),
        ("pause-schedule", "report"),
        ("resume-schedule", "report"),
        ("pause-schedule", "report"),
        ("pause-schedule", "report"),
        ("resume-schedule", "report"),
        ("remove-schedule", "report"),
        ("remove-schedule", "other"),
    ]
    assert {entry[2:] for entry in trail} == {("local", "127.0.0.9")}


def test_a_held_lock_is_released_from_the_page_and_the_api(local, context):
    first, second = locks.lock("invoices:2026-11", ttl=30), locks.lock("reports/weekly", ttl=30)
    first_held, second_held = first.acquire(), second.acquire()
    token = page_csrf(local)
    try:
        assert "invoices:2026-11" in local.get("/locks").text
        released = local.post("/locks/invoices:2026-11/release", data={"csrf_token": token})
        assert released.status_code == 302 and released.headers["Location"] == "/locks"
        assert "released invoices:2026-11" in local.get("/locks").text
        answer = local.post("/api/locks/reports/weekly/release", headers={"X-CSRF-Token": token})
        assert answer.json == {"lock": "reports/weekly", "released": True}
        assert local.get("/api/locks").json == []
        again = local.post("/api/locks/reports/weekly/release", headers={"X-CSRF-Token": token})
        assert again.json == {"lock": "reports/weekly", "released": False}
    finally:
        first.release()
        second.release()
    assert first_held.lost and second_held.lost  # the holders find out
    trail = [e for e in local.get("/api/audit").json if e["action"] == "release-lock"]
    assert [e["target"] for e in trail] == ["reports/weekly", "reports/weekly", "invoices:2026-11"]
    assert {(e["actor"], e["address"]) for e in trail} == {("local", "127.0.0.9")}
    assert f"pid {os.getpid()}" in trail[-1]["details"]  # who held it


# --- errors -----------------------------------------------------------------------------------------


def test_unknown_things_are_404_and_bad_input_is_400(local, context):
    for path in ("/job/no-such-job", "/schedules/no-such-schedule", "/jobs/exploded"):
        page = local.get(path)
        assert page.status_code == 404, path
    assert "no job with id &#39;no-such-job&#39;" in local.get("/job/no-such-job").text
    for path in ("/api/job/no-such-job", "/api/schedules/no-such-schedule", "/api/jobs/exploded"):
        answer = local.get(path)
        assert answer.status_code == 404 and answer.is_json and answer.json["error"], path
    header = {"X-CSRF-Token": page_csrf(local)}
    for path in ("/api/job/no-such-job/delete", "/api/job/no-such-job/cancel", "/api/schedules/nope/pause"):
        answer = local.post(path, headers=header)
        assert answer.status_code == 404 and answer.json["error"], path
    for path in ("/jobs/failed", "/api/jobs/failed"):
        for key in ("since", "until"):
            assert local.get(path, query_string={key: "yesterday"}).status_code == 400, (path, key)
    answer = local.get("/api/jobs/failed", query_string={"since": "yesterday"})
    assert answer.is_json and "since must be an ISO 8601 time" in answer.json["error"]
    assert local.get("/invoices", query_string={"month": "November"}).status_code == 400
    assert local.get("/api/invoices", query_string={"month": "2026-13"}).json["error"]
    assert local.get("/job/no-such-job/requeue").status_code == 405  # changes are POST only


def test_rq_dashboard_may_run_its_own_script_but_no_script_from_job_data(local, context):
    page = local.get("/rq/")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    sources = policy["script-src"].split()
    assert "'unsafe-inline'" not in sources  # job data it writes unescaped must not run
    assert "'unsafe-eval'" in sources  # its templates are compiled with underscore's _.template
    inline = re.findall(r'<script type="text/javascript">(.*?)</script>', page.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in sources
    ours = local.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self';" in ours and "unsafe" not in ours.split("script-src")[1].split(";")[0]


def test_a_locked_job_links_to_its_lock(make_app, context):
    job_ = sample_jobs.exclusive.enqueue("linked", 0)
    page = client_at(make_app(), LOOPBACK).get(f"/job/{job_.id}")
    assert page.status_code == 200 and "exclusive:linked" in page.text
