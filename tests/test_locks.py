"""Locks: exclusive, renewed while held, fenced, lost detectably; job options lock/on_locked and unique;
the reference invoices job races from many processes and writes each invoice exactly once."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from rq.timeouts import JobTimeoutException

import jobs as jobs_api
from jobs import admin, billing, inspect, locks, timeline
from jobs.catalog import job
from jobs.connection import Context
from jobs.enqueue import queue_for
from jobs.errors import ConfigError, InvalidArguments, LockUnavailable
from jobs.rqjob import Job
from tests import sample_jobs
from tests.conftest import events, jobctl, make_settings, process_env, ran, wait_for
from tests.proxy import Proxy


def test_a_lock_is_exclusive_names_its_holder_and_fences_grow(context):
    with locks.lock("report") as first:
        with pytest.raises(LockUnavailable, match=f"lock report is held by pid {os.getpid()}"):
            locks.lock("report").acquire()
        assert [view.name for view in locks.held_locks(context)] == ["report"]
    with locks.lock("report") as second:
        assert second.fence > first.fence
    assert locks.held_locks(context) == [] and context.redis.scard(context.keys.locks) == 0


def test_a_lock_is_renewed_while_held_and_released_when_the_body_fails(context):
    with pytest.raises(RuntimeError), locks.lock("long", ttl=0.5) as held:
        wait_for(lambda: context.redis.pttl(context.keys.lock("long")) > 0, what="the lock")
        deadline = time.monotonic() + 1.5  # three TTLs
        while time.monotonic() < deadline:
            assert context.redis.get(context.keys.lock("long")) is not None
            with pytest.raises(LockUnavailable):
                locks.lock("long").acquire()
        raise RuntimeError("the body fails")
    assert not held.lost and context.redis.get(context.keys.lock("long")) is None


def test_a_lock_is_renewed_and_taken_after_the_server_has_lost_its_scripts(context):
    renew_sha = context.redis.register_script(locks._RENEW).sha
    with locks.lock("restarted", ttl=0.6) as before:
        context.redis.script_flush()  # as every restart of the server does: it keeps no scripts
        wait_for(
            lambda: context.redis.script_exists(renew_sha) == [True], what="a renewal loading its script"
        )
        assert context.redis.pttl(context.keys.lock("restarted")) > 0 and not before.lost
    context.redis.script_flush()
    with locks.lock("restarted") as after:
        assert after.fence > before.fence


def test_a_lock_whose_reply_is_lost_is_taken_and_released_when_the_call_is_sent_again(context, redis_url):
    proxy = Proxy.to(redis_url)
    try:
        resilient = Context.connect(make_settings(proxy.proxied(redis_url)), resilient=True)
        with locks.lock("lost-reply", context=resilient):
            pass  # the server has the scripts now: the replies lost are the lock's, not NOSCRIPT errors
        proxy.lose_reply_to(b"EVALSHA")
        with locks.lock("lost-reply", context=resilient) as held:
            assert proxy.replies_lost == 1
            assert context.redis.get(context.keys.fence("lost-reply")) == str(held.fence).encode()
            proxy.lose_reply_to(b"EVALSHA")  # the release's
        assert proxy.replies_lost == 2
        assert not held.lost  # released by the call sent first: held to the end
        assert locks.held_locks(context) == []
        resilient.redis.close()
    finally:
        proxy.close()


def test_waiting_for_a_lock_gets_it_when_it_is_released(context):
    guard = locks.lock("queue-head", ttl=5)
    guard.acquire()
    start = time.monotonic()
    import threading

    threading.Timer(0.3, guard.release).start()
    with locks.lock("queue-head", wait=5) as held:
        assert held.fence and time.monotonic() - start >= 0.3


def test_a_lock_lost_while_held_is_detected_and_does_not_hide_the_body_error(context):
    with pytest.raises(KeyError), locks.lock("fragile", ttl=5) as held:
        locks.force_release(context, "fragile")
        raise KeyError("the body's own error")
    assert held.lost


def test_a_lock_redis_cannot_be_told_to_release_is_logged_not_raised(context, redis_url, caplog):
    proxy = Proxy.to(redis_url)
    try:
        guard = locks.lock(
            "unreachable", ttl=1, context=Context.connect(make_settings(proxy.proxied(redis_url)))
        )
        guard.acquire()
        proxy.close()  # this client cannot reach Redis any more
        guard.release()  # raised, it would replace what the body returned or raised
    finally:
        proxy.close()
    assert "lock unreachable: not released" in caplog.text and not guard.held.lost
    wait_for(lambda: context.redis.get(context.keys.lock("unreachable")) is None, timeout=5, what="expiry")


def test_a_timeout_raised_into_a_job_just_as_it_takes_its_lock_releases_the_lock(context, monkeypatch):
    take = locks.lock.acquire

    def timed_out_once_taken(guard):
        take(guard)
        raise JobTimeoutException("the job's timeout, landing between two of its steps")

    monkeypatch.setattr(locks.lock, "acquire", timed_out_once_taken)
    job_ = sample_jobs.exclusive.enqueue("late", 0)
    with pytest.raises(JobTimeoutException):
        Job.fetch(job_.id, connection=context.redis).perform()
    assert context.redis.get(context.keys.lock("exclusive:late")) is None  # not held, nor renewed


HOLDER = """
import sys
from jobs import billing, locks
from jobs.config import Settings
from jobs.connection import Context, activate
activate(Context.connect(Settings.from_env()))
guard = locks.lock("invoices:stale", ttl=1)
held = guard.acquire()
print(held.fence, flush=True)
sys.stdin.readline()
try:
    with billing.connect() as db, billing.fenced(db, "invoices:stale", held.fence):
        db.execute("INSERT INTO fences VALUES ('written-by-stale', 1)")
    print("written", flush=True)
except billing.StaleFence as exc:
    print("refused", flush=True)
guard.release()
print("lost" if held.lost else "kept", flush=True)
"""


def test_a_stalled_holder_loses_its_lock_and_its_stale_write_is_refused(context, redis_url, tmp_path):
    env = process_env(redis_url, JOBS_DATA_DIR=str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        old_fence = int(holder.stdout.readline())
        os.kill(holder.pid, signal.SIGSTOP)  # stalls: no more renewals
        wait_for(
            lambda: context.redis.get(context.keys.lock("invoices:stale")) is None, timeout=10, what="expiry"
        )
        with locks.lock("invoices:stale") as held:
            assert held.fence > old_fence
            with billing.connect(tmp_path) as db, billing.fenced(db, "invoices:stale", held.fence):
                pass
            os.kill(holder.pid, signal.SIGCONT)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "refused"
            assert holder.stdout.readline().strip() == "lost"
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()
    with billing.connect(tmp_path) as db:
        assert db.execute("SELECT count(*) FROM fences WHERE name = 'written-by-stale'").fetchone() == (0,)


def test_a_locked_job_keeps_its_lock_for_three_ttls_and_a_second_run_is_skipped(
    context, processes, redis_url
):
    first = sample_jobs.exclusive.enqueue("inv", 3)  # lock ttl 1 s
    processes.start("worker", "-c", "2", url=redis_url)
    wait_for(lambda: context.redis.lrange("test:running", 0, -1), what="the first run to start")
    second = sample_jobs.exclusive.enqueue("inv", 0)
    wait_for(lambda: inspect.job_detail(context, second.id).state == "finished", what="the second run")
    assert "skipped" in events(context, second.id)
    skipped = [
        e for e in timeline.history(context.redis, context.keys, second.id) if e["event"] == "skipped"
    ][0]
    assert skipped["holder"] == first.id and "exclusive:inv" in skipped["reason"]
    wait_for(lambda: inspect.job_detail(context, first.id).state == "finished", what="the first run")
    assert ran(context) == ["inv"]
    assert context.redis.get(context.keys.lock("exclusive:inv")) is None  # released when the job ended


def test_the_lock_is_released_when_the_job_fails(context, redis_url):
    job_ = sample_jobs.exclusive_failing.enqueue("f")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert inspect.job_detail(context, job_.id).state == "failed"
    assert context.redis.get(context.keys.lock("exclusive:f")) is None


def test_the_lock_of_a_sigkilled_worker_expires_within_its_ttl(context, processes, redis_url):
    sample_jobs.exclusive.enqueue("killed", 60)
    pool = processes.start("worker", "-c", "1", url=redis_url)
    raw = wait_for(lambda: context.redis.lindex("test:running", 0), what="the job to start")
    os.kill(int(raw.decode().rsplit(":", 1)[1]), signal.SIGKILL)
    os.killpg(pool.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(
        lambda: context.redis.get(context.keys.lock("exclusive:killed")) is None, timeout=5, what="expiry"
    )
    assert time.monotonic() - killed_at < 1.5  # ttl 1 s (+ polling)
    assert locks.held_locks(context) == []
    assert context.redis.sismember(context.keys.locks, "exclusive:killed")  # never released...
    assert locks.prune_index(context) == 1  # ...so maintenance forgets it
    assert context.redis.scard(context.keys.locks) == 0


def test_a_job_whose_earlier_run_died_holding_its_lock_waits_for_that_lock_and_runs(context, redis_url):
    job_ = sample_jobs.exclusive.enqueue("again", 0)  # lock ttl 1 s; a run that finds it held skips
    # as a run of the same job left it when its worker was SIGKILLed: held, renewed no more
    dead_run = {"job": job_.id, "worker": "dead", "host": "elsewhere", "pid": 1, "since": time.time()}
    context.redis.set(context.keys.lock("exclusive:again"), f"0|{json.dumps(dead_run)}", px=1000)
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert "skipped" not in events(context, job_.id)
    assert inspect.job_detail(context, job_.id).state == "finished" and ran(context) == ["again"]


def test_on_locked_retry_runs_the_job_once_the_lock_is_free(context, redis_url):
    guard = locks.lock("exclusive:busy", ttl=30)
    guard.acquire()
    job_ = sample_jobs.exclusive_retrying.enqueue("busy")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert inspect.job_detail(context, job_.id).state == "failed"  # held through all retries
    assert "LockUnavailable" in inspect.job_detail(context, job_.id).traceback
    guard.release()
    again = sample_jobs.exclusive_retrying.enqueue("busy")
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert inspect.job_detail(context, again.id).state == "finished"


def test_lock_and_unique_templates_are_checked_when_the_job_is_defined():
    with pytest.raises(ConfigError, match="names month"):
        job(lock="invoices:{month}")(lambda customer: None)
    with pytest.raises(ConfigError, match="on_locked"):
        job(lock="x", on_locked="sometimes")(lambda: None)
    with pytest.raises(ConfigError, match="lock_ttl=0"):  # each run would fail
        job(lock="x", lock_ttl=0)(lambda: None)
    with pytest.raises(ConfigError, match="names width"):  # a field in a format spec: a KeyError each time
        job(unique="invoice:{tag:{width}}")(lambda tag: None)
    with pytest.raises(ConfigError, match="!z is not a conversion"):
        job(lock="invoice:{tag!z}")(lambda tag: None)
    job(unique="invoice:{tag:>{width}}:{tag!r}")(lambda tag, width: None)  # both fillable


def test_arguments_that_do_not_fit_the_unique_templates_format_are_one_error_line(context, redis_url):
    assert sample_jobs.numbered.enqueue(7).id == sample_jobs.numbered.enqueue(7).id  # numbered:00007
    with pytest.raises(InvalidArguments, match="cannot be filled"):
        sample_jobs.numbered.enqueue("7")
    refused = jobctl("enqueue", "tests.sample_jobs.numbered", "--args", '["7"]', url=redis_url)
    assert refused.returncode == 2 and refused.stderr.startswith("error: 'numbered:{number:05d}' cannot be")
    assert len(refused.stderr.splitlines()) == 1
    assert len(queue_for(context, "default").get_job_ids()) == 1


def test_a_unique_job_delayed_holds_its_key_until_it_is_due_on_either_path(context):
    delay = 10 * 86400  # beyond how long jobs are kept (7 days by default)
    jobs_api.enqueue(sample_jobs.unique_job, ["plain"], delay=delay)  # one script call
    jobs_api.enqueue(sample_jobs.unique_job, ["own"], delay=delay, job_id="own-id")  # RQ's path
    for key in ("plain", "own"):
        assert context.redis.ttl(context.keys.unique(f"unique:{key}")) > delay


def test_unique_returns_the_pending_job_until_it_is_done(context, redis_url):
    first = sample_jobs.unique_job.enqueue("k")
    assert sample_jobs.unique_job.enqueue("k", attempt=1).id == first.id
    assert sample_jobs.unique_job.enqueue("other").id != first.id
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert sample_jobs.unique_job.enqueue("k").id != first.id  # done: a new one may be enqueued


def test_unique_holds_across_enqueue_many_delays_and_the_one_by_one_path(context, redis_url):
    by_id = jobs_api.enqueue(sample_jobs.unique_job, ["k"], job_id="own-id")  # RQ's path (an id of its own)
    bulk = jobs_api.enqueue_many(
        [sample_jobs.unique_job.call(key) for key in ("k", "a", "b", "a")] + [sample_jobs.record.call("x")]
    )
    assert bulk[0] == by_id.id and bulk[1] == bulk[3] and len(set(bulk)) == 4
    assert sample_jobs.unique_job.enqueue("b").id == bulk[2]
    later = sample_jobs.unique_job.enqueue_in(60, "c")
    assert sample_jobs.unique_job.enqueue_in(60, "c").id == later.id
    assert sample_jobs.unique_job.enqueue("c").id == later.id  # scheduled is pending too
    assert queue_for(context, "default").get_job_ids() == [by_id.id, bulk[1], bulk[2], bulk[4]]
    jobctl("worker", "--burst", "-c", "1", url=redis_url)
    assert sorted(ran(context)) == ["a", "b", "k", "x"]
    assert jobs_api.enqueue_many([sample_jobs.unique_job.call("a")])[0] != bulk[1]  # done: a new one


RACER = """
import json, sys
from jobs import catalog, {module}
from jobs.config import Settings
from jobs.connection import Context, activate
settings = Settings.from_env()
catalog.load(settings.imports)
activate(Context.connect(settings))
results = [{call} for attempt in range(50)]
print(json.dumps(results))
"""


def race(redis_url, tmp_path, module: str, call: str) -> list:
    env = process_env(redis_url, JOBS_DATA_DIR=str(tmp_path))
    code = RACER.format(module=module, call=call)
    racers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    return [result for output in outputs for result in json.loads(output)]


def test_eight_processes_racing_for_the_monthly_invoices_write_each_invoice_once(
    context, redis_url, tmp_path
):
    results = race(redis_url, tmp_path, "billing", 'billing.generate_monthly_invoices("2026-11")')
    assert len(results) == 400
    workers = [r for r in results if r.get("created")]
    assert len(workers) == 1 and workers[0]["created"] == len(billing.DEMO_CUSTOMERS)
    invoices = billing.invoices("2026-11", data_dir=tmp_path)
    assert Counter(invoice.customer for invoice in invoices) == Counter(c[1] for c in billing.DEMO_CUSTOMERS)
    email_jobs = [
        j for j in queue_for(context, "default").get_jobs() if j.func_name.endswith("send_invoice_email")
    ]
    assert sorted(j.args[0] for j in email_jobs) == sorted(invoice.id for invoice in invoices)  # one each


def test_a_failed_job_is_requeued_only_while_no_other_job_not_done_yet_holds_its_unique_key(
    context, redis_url
):
    first = sample_jobs.unique_failing.enqueue("k")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    second = sample_jobs.unique_failing.enqueue("k")  # the first has ended: the key is free again
    assert second.id != first.id
    refused = admin.requeue_failed(context, [first.id])  # both would run
    key = context.keys.unique("unique-failing:k")
    assert refused == admin.Changed(
        0, {first.id: f"job {second.id}, not done yet, holds its unique key {key}"}
    )
    assert inspect.job_detail(context, first.id).state == "failed"
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    assert admin.requeue_failed(context, [first.id]) == admin.Changed(1)  # the second has ended too
    assert inspect.job_detail(context, first.id).state == "queued"
    assert sample_jobs.unique_failing.enqueue("k").id == first.id  # requeued, it holds its key


def test_of_failed_jobs_sharing_a_unique_key_one_is_requeued_and_the_cli_says_which_stay(context, redis_url):
    first = sample_jobs.unique_failing.enqueue("k")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    second = sample_jobs.unique_failing.enqueue("k")
    assert jobctl("worker", "--burst", "-c", "1", url=redis_url).returncode == 0
    result = jobctl("failed", "requeue", "--all", url=redis_url)  # in one transaction: both would run
    assert result.returncode == 0 and result.stdout == "requeued 1 job(s)\n"
    [requeued] = queue_for(context, "default").get_job_ids()
    [left] = {first.id, second.id} - {requeued}
    key = context.keys.unique("unique-failing:k")
    assert f"not requeued: job {left}: job {requeued}, not done yet, holds its unique key {key}" in (
        result.stderr.splitlines()
    )
    assert inspect.job_detail(context, left).state == "failed"
    assert sample_jobs.unique_failing.enqueue("k").id == requeued


def test_unique_enqueue_from_eight_processes_adds_one_job(context, redis_url, tmp_path):
    results = race(redis_url, tmp_path, "enqueue", 'enqueue("tests.sample_jobs.unique_job", ["same"]).id')
    assert len(set(results)) == 1
    assert queue_for(context, "default").get_job_ids() == [results[0]]


def test_the_reference_job_runs_end_to_end_and_is_listed(context, redis_url, tmp_path):
    env = {"JOBS_DATA_DIR": str(tmp_path)}
    assert (
        jobctl(
            "enqueue", "jobs.billing.generate_monthly_invoices", "--args", '["2026-10"]', url=redis_url, **env
        ).returncode
        == 0
    )
    assert jobctl("worker", "--burst", "-c", "2", url=redis_url, **env).returncode == 0
    listed = json.loads(
        jobctl("invoices", "list", "--month", "2026-10", "--json", url=redis_url, **env).stdout
    )
    assert len(listed) == len(billing.DEMO_CUSTOMERS) and all(invoice["emailed"] for invoice in listed)
    bad = jobctl("invoices", "list", "--month", "October", url=redis_url, **env)
    assert bad.returncode == 2 and "not YYYY-MM" in bad.stderr


def test_jobctl_locks_list_and_release(context, redis_url):
    guard = locks.lock("stuck", ttl=30)
    held = guard.acquire()
    listed = json.loads(jobctl("locks", "list", "--json", url=redis_url).stdout)
    assert [(view["name"], view["fence"], view["holder"]["pid"]) for view in listed] == [
        ("stuck", held.fence, os.getpid())
    ]
    refused = jobctl("locks", "release", "stuck", url=redis_url)  # no terminal to confirm on
    assert refused.returncode != 0 and context.redis.exists(context.keys.lock("stuck"))
    assert jobctl("locks", "release", "stuck", "--yes", url=redis_url).returncode == 0
    assert not context.redis.exists(context.keys.lock("stuck"))
    actions = [entry[b"action"] for _, entry in context.redis.xrange(context.keys.audit)]
    assert actions == [b"release-lock"]
    guard.release()
    assert held.lost
