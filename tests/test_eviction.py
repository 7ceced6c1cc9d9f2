"""A Redis that may evict keys would silently delete jobs: every process (workers, the scheduler, the
dashboard, `jobctl up`) warns loudly when `maxmemory-policy` is not `noeviction` (and still runs), and
with JOBS_STRICT=1 refuses to start with one line and exit code 2, leaving the queues untouched."""

from __future__ import annotations

import pytest

from jobs import inspect
from jobs.connection import Context
from jobs.embedded import free_port
from tests import sample_jobs
from tests.conftest import Output, jobctl, per_process, wait_for


@pytest.fixture
def evicting(store) -> Context:
    store.redis.config_set("maxmemory-policy", "allkeys-lru")
    assert store.redis.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    return store


def warnings_about_eviction(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "maxmemory-policy" in line]


def test_no_warning_with_noeviction(store):
    job = sample_jobs.record.enqueue("calm")
    result = jobctl("worker", "--burst", "-c", "1", url=store.url)
    assert result.returncode == 0, result.stderr
    assert warnings_about_eviction(result.stderr) == []
    assert inspect.job_detail(store, job.id).state == "finished"


def test_worker_warns_loudly_when_redis_may_evict_and_still_runs(evicting):
    job = sample_jobs.record.enqueue("despite-the-warning")
    result = jobctl("worker", "--burst", "-c", "2", url=evicting.url)
    assert result.returncode == 0, result.stderr
    [warning] = warnings_about_eviction(result.stderr)  # once per pool, not once per worker process
    assert " WARNING " in warning and "WARNING: Redis maxmemory-policy is 'allkeys-lru'" in warning
    assert "evict" in warning and "noeviction" in warning
    assert inspect.job_detail(evicting, job.id).state == "finished"


def test_every_process_of_jobctl_up_warns_once_at_start(evicting, processes, tmp_path):
    """`up` itself, the worker pool, the scheduler and the dashboard: four processes, one warning each."""
    up = processes.start(
        "up", url=evicting.url, JOBS_DATA_DIR=str(tmp_path), JOBS_DASHBOARD_PORT=str(free_port())
    )
    output = Output(up)

    def warned():
        return per_process(warnings_about_eviction("\n".join(output.lines)))

    wait_for(lambda: len(warned()) == 4, timeout=30, what="four processes to warn about eviction")
    processes.stop_all()
    output.finish()
    assert up.pid in warned() and set(warned().values()) == {1}, output.lines


@pytest.mark.parametrize(
    "command",
    [["worker", "--burst"], ["scheduler"], ["dashboard", "--port", "0"], ["up"]],
    ids=["worker", "scheduler", "dashboard", "up"],
)
def test_strict_mode_refuses_to_start_on_an_evicting_redis(evicting, command):
    job = sample_jobs.record.enqueue("must-stay-queued")
    result = jobctl(*command, url=evicting.url, JOBS_STRICT="1", timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "allkeys-lru" in lines[0] and "JOBS_STRICT" in lines[0]
    assert inspect.job_detail(evicting, job.id).state == "queued"
    assert evicting.redis.llen("test:ran") == 0


def test_a_user_refused_config_and_info_is_warned_and_runs(store):
    """A common hardened ACL (all commands but @dangerous) refuses both ways of reading the policy."""
    store.redis.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-@dangerous")
    url = store.url.replace("redis://", "redis://app:pw@")
    job = sample_jobs.record.enqueue("guarded")
    result = jobctl("worker", "--burst", "-c", "1", url=url)
    assert result.returncode == 0, result.stderr
    [warning] = warnings_about_eviction(result.stderr)
    assert "cannot check Redis' maxmemory-policy" in warning
    assert inspect.job_detail(store, job.id).state == "finished"
