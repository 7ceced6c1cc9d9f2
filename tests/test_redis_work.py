"""Redis work per job: what a no-op job costs the server through its whole life (enqueue, run,
finished) stays within a budget. Counted by the server itself (INFO commandstats) on a server of the
test's own; `bench/redis_cost.py` reports the same figure with a breakdown."""

from jobs.builtin import noop
from jobs.enqueue import enqueue
from tests.conftest import jobctl

JOBS = 300
# Commands per no-op job, enqueue to finished, worker start and stop included (8.5 measured). Plain RQ
# (Queue.enqueue and SimpleWorker) takes 60; lower this as the platform gets leaner, never raise it silently.
BUDGET = 10


def commands(redis) -> int:
    """Commands the server has run so far, less the INFO calls that read this."""
    stats = redis.info("commandstats")
    return sum(s["calls"] for name, s in stats.items() if name != "cmdstat_info")


def test_a_no_op_job_costs_no_more_commands_than_the_budget(store, private_server):
    before = commands(store.redis)
    for _ in range(JOBS):
        enqueue(noop, context=store)
    result = jobctl("worker", "--burst", "-c", "1", url=private_server.url)
    assert result.returncode == 0, result.stderr
    per_job = (commands(store.redis) - before) / JOBS
    assert store.redis.zcard("rq:finished:default") == JOBS
    assert per_job <= BUDGET, f"{per_job:.1f} commands per job (budget {BUDGET})"


def calls(redis) -> dict[str, int]:
    """How many times the server has run each command so far."""
    return {name: s["calls"] for name, s in redis.info("commandstats").items()}


def test_every_kind_of_enqueue_is_one_script_call(store):
    def script_calls(**options) -> dict[str, int]:
        before = calls(store.redis)
        enqueue(noop, context=store, **options)
        after = calls(store.redis)
        return {
            name: after.get(name, 0) - before.get(name, 0) for name in ("cmdstat_evalsha", "cmdstat_exec")
        }

    enqueue(noop, context=store)  # the server has the script now
    enqueue(noop, delay=60, context=store)
    for options in ({}, {"delay": 60}, {"job_id": "own"}, {"job_id": "own-later", "delay": 60}):
        assert script_calls(**options) == {"cmdstat_evalsha": 1, "cmdstat_exec": 0}, options
