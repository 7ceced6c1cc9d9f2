"""Recurring schedules: upsert, firing exactly once per fire time (races and crashes included),
misfire, overlap and pause policies, triggers, history, and sync. Time is passed in."""

import threading

import pytest
import redis

from jobs import admin, inspect, recurring
from jobs.connection import Context
from jobs.enqueue import queue_for
from jobs.errors import InvalidArguments, InvalidSchedule, RedisFull, UnknownJob, UnknownSchedule
from tests import sample_jobs
from tests.conftest import make_settings

T0 = 1_800_000_000  # a whole minute (2027-01-15T08:00:00Z)


def every_second(context, schedule_id="tick", **options):
    definition = recurring.define(schedule_id, sample_jobs.record, every="1s", args=[schedule_id], **options)
    return recurring.save(context, definition, now=T0 - 0.5)


def queued(context, queue="default"):
    return queue_for(context, queue).get_job_ids()


def test_a_schedule_fires_one_job_per_fire_time_with_ids_derived_from_it(context):
    every_second(context)
    assert recurring.fire_due(context, now=T0 - 0.1) == {}
    assert recurring.fire_due(context, now=T0 + 0.2) == {"tick": ["schedule-tick-1800000000"]}
    assert recurring.fire_due(context, now=T0 + 0.5) == {}  # already fired; next is T0 + 1
    assert recurring.fire_due(context, now=T0 + 1.1) == {"tick": ["schedule-tick-1800000001"]}
    assert queued(context) == ["schedule-tick-1800000000", "schedule-tick-1800000001"]
    detail = inspect.job_detail(context, "schedule-tick-1800000000")
    assert detail.name == "tests.sample_jobs.record" and detail.args == ["tick"]
    assert detail.timeline[0]["source"] == "schedule"
    assert recurring.get(context, "tick").next_fire == T0 + 2


def test_racing_schedulers_fire_each_time_exactly_once(context, redis_url):
    every_second(context)
    results = []

    def scheduler():
        own = Context.connect(make_settings(redis_url))
        for step in range(30):
            results.append(recurring.fire_due(own, now=T0 + step + 0.1))

    threads = [threading.Thread(target=scheduler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fired = [job_id for outcome in results for ids in outcome.values() for job_id in ids]
    expected = [recurring.run_id("tick", T0 + step) for step in range(30)]
    assert sorted(fired) == sorted(expected)
    assert sorted(queued(context)) == sorted(expected)


def test_a_crash_before_the_transaction_commits_leaves_nothing_and_loses_nothing(context, monkeypatch):
    every_second(context)
    real_record = recurring._record

    def crash(*args):
        raise SystemExit("scheduler killed between enqueueing and recording")

    monkeypatch.setattr(recurring, "_record", crash)
    with pytest.raises(SystemExit):
        recurring.fire_due(context, now=T0 + 0.1)
    assert queued(context) == [] and not context.redis.exists("rq:job:schedule-tick-1800000000")
    assert recurring.get(context, "tick").next_fire == T0
    monkeypatch.setattr(recurring, "_record", real_record)
    assert recurring.fire_due(context, now=T0 + 0.2) == {"tick": ["schedule-tick-1800000000"]}
    assert queued(context) == ["schedule-tick-1800000000"]


def meanwhile(monkeypatch, action):
    """Run `action` once, between a tick's reading of the due schedules and its firing them."""
    prepare = recurring._prepare

    def prepare_then_act(*args):
        fire = prepare(*args)
        monkeypatch.setattr(recurring, "_prepare", prepare)
        action()
        return fire

    monkeypatch.setattr(recurring, "_prepare", prepare_then_act)


def test_a_fire_another_scheduler_made_meanwhile_is_not_made_again(context, redis_url, monkeypatch):
    every_second(context)
    other = Context.connect(make_settings(redis_url))
    meanwhile(monkeypatch, lambda: recurring.fire_due(other, now=T0 + 0.1))
    assert recurring.fire_due(context, now=T0 + 0.1) == {"tick": []}
    assert queued(context) == ["schedule-tick-1800000000"]
    assert [run.fire for run in recurring.history(context, "tick")] == [T0]


def edit(context):
    recurring.save(context, recurring.define("tick", sample_jobs.record, every="1s", args=["new"]), now=T0)


@pytest.mark.parametrize(
    ("change", "then"),
    [
        (edit, ["schedule-tick-1800000000"]),  # fires as edited
        (lambda context: admin.pause_schedule(context, "tick"), []),  # paused: skipped
        (lambda context: admin.trigger_schedule(context, "tick"), ["schedule-tick-1800000000"]),
    ],
)
def test_a_schedule_changed_meanwhile_fires_on_the_next_tick_as_changed(context, monkeypatch, change, then):
    every_second(context)
    meanwhile(monkeypatch, lambda: change(context))
    assert recurring.fire_due(context, now=T0 + 0.1) == {"tick": []}
    assert not context.redis.exists("rq:job:schedule-tick-1800000000")
    assert recurring.get(context, "tick").next_fire == T0
    assert recurring.fire_due(context, now=T0 + 0.2) == {"tick": then}
    if change is edit:
        assert inspect.job_detail(context, then[0]).args == ["new"]


def test_a_last_run_that_ends_meanwhile_lets_an_overlap_skip_schedule_fire(context, monkeypatch):
    every_second(context, overlap="skip")
    assert recurring.fire_due(context, now=T0 + 0.1)["tick"] == ["schedule-tick-1800000000"]
    meanwhile(
        monkeypatch, lambda: context.redis.hset("rq:job:schedule-tick-1800000000", "status", "finished")
    )
    assert recurring.fire_due(context, now=T0 + 1.1) == {"tick": []}  # planned as a skip: not written
    assert [run.fire for run in recurring.history(context, "tick")] == [T0]
    assert recurring.fire_due(context, now=T0 + 1.2)["tick"] == ["schedule-tick-1800000001"]


def test_the_due_entry_of_a_schedule_gone_from_redis_is_dropped_unless_it_comes_back(context, monkeypatch):
    every_second(context)
    context.redis.delete(context.keys.schedule("tick"))
    meanwhile(monkeypatch, lambda: every_second(context))  # added again meanwhile
    assert recurring.fire_due(context, now=T0 + 0.1) == {"tick": []}
    assert recurring.fire_due(context, now=T0 + 0.2) == {"tick": ["schedule-tick-1800000000"]}
    context.redis.delete(context.keys.schedule("tick"))
    assert recurring.fire_due(context, now=T0 + 1.1) == {"tick": []}
    assert context.redis.zscore(context.keys.schedules_due, "tick") is None


def test_a_full_redis_refuses_every_fire_and_every_schedule_stays_due(store):
    every_second(store, "a")
    every_second(store, "b")
    store.redis.config_set("maxmemory", 1)
    with pytest.raises(RedisFull):
        recurring.fire_due(store, now=T0 + 0.1)
    store.redis.config_set("maxmemory", 0)
    assert queued(store) == [] and recurring.get(store, "a").next_fire == T0
    assert recurring.fire_due(store, now=T0 + 0.2) == {
        "a": ["schedule-a-1800000000"],
        "b": ["schedule-b-1800000000"],
    }


def test_a_write_of_a_fire_that_fails_is_raised_after_the_others_as_exec_does(context):
    every_second(context)
    context.redis.set(context.keys.schedule_runs("tick"), "not a sorted set")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        recurring.fire_due(context, now=T0 + 0.1)
    assert queued(context) == ["schedule-tick-1800000000"]
    assert recurring.get(context, "tick").next_fire == T0 + 1


@pytest.mark.parametrize(
    ("misfire", "expected_fires"),
    [
        ("all", [T0 + step for step in range(0, 301)]),
        ("once", [T0 + 240, *range(T0 + 241, T0 + 301)]),  # one catch-up, then the fires within the grace
        ("skip", list(range(T0 + 241, T0 + 301))),
    ],
)
def test_misfire_policies_after_downtime(context, misfire, expected_fires):
    every_second(context, misfire=misfire)
    ids = recurring.fire_due(context, now=T0 + 300.5)["tick"]  # down for five minutes
    assert ids == [recurring.run_id("tick", fire) for fire in expected_fires]
    assert recurring.get(context, "tick").next_fire == T0 + 301


@pytest.mark.parametrize(("misfire", "catch_up"), [("once", [-60]), ("skip", [])])
def test_misfire_once_and_skip_after_more_missed_fires_than_one_tick_computes(context, misfire, catch_up):
    """Two days down: 2,880 missed fires of a per-minute schedule, more than MAX_CATCH_UP. The first tick
    makes `once`'s one catch-up run (the last missed fire) and the fires within the grace; none after."""
    definition = recurring.define(
        "minutely", sample_jobs.record, cron="* * * * *", args=["m"], misfire=misfire
    )
    recurring.save(context, definition, now=T0 - 0.5)
    back = T0 + 2 * 86400
    ids = recurring.fire_due(context, now=back + 0.5)["minutely"]
    assert ids == [recurring.run_id("minutely", back + offset) for offset in [*catch_up, 0]]
    assert recurring.get(context, "minutely").next_fire == back + 60
    assert recurring.fire_due(context, now=back + 1.5) == {}


def test_a_monthly_schedule_missed_during_downtime_runs_once_late(context):
    definition = recurring.define("invoices", sample_jobs.record, cron="0 0 1 * *", tz="UTC", args=["m"])
    recurring.save(context, definition, now=1796083200 - 10)  # 2026-12-01T00:00:00Z minus 10 s
    ids = recurring.fire_due(context, now=1796083200 + 2 * 3600)["invoices"]  # back two hours later
    assert ids == ["schedule-invoices-1796083200"]
    assert recurring.get(context, "invoices").next_fire == 1798761600  # 2027-01-01


def test_overlap_skip_records_skipped_fires_while_the_last_run_is_pending(context):
    every_second(context, overlap="skip")
    assert recurring.fire_due(context, now=T0 + 0.1)["tick"] == ["schedule-tick-1800000000"]
    assert recurring.fire_due(context, now=T0 + 1.1)["tick"] == []  # the first run is still queued
    runs = recurring.history(context, "tick")
    assert [(run.fire, run.state) for run in runs] == [(T0 + 1, "skipped"), (T0, "queued")]
    context.redis.hset("rq:job:schedule-tick-1800000000", "status", "finished")
    assert recurring.fire_due(context, now=T0 + 2.1)["tick"] == ["schedule-tick-1800000002"]


def test_paused_fires_are_skipped_and_resuming_does_not_catch_up(context):
    every_second(context)
    admin.pause_schedule(context, "tick", until=None)
    assert recurring.fire_due(context, now=T0 + 5.1) == {"tick": []}
    admin.resume_schedule(context, "tick")
    assert recurring.fire_due(context, now=T0 + 6.1)["tick"] == ["schedule-tick-1800000006"]


def test_pause_until_a_time_resumes_by_itself(context):
    every_second(context)
    admin.pause_schedule(context, "tick", until=T0 + 3)
    assert recurring.fire_due(context, now=T0 + 2.1) == {"tick": []}
    assert recurring.fire_due(context, now=T0 + 3.1)["tick"] == ["schedule-tick-1800000003"]


def test_trigger_runs_now_without_moving_the_next_fire(context):
    every_second(context)
    job = admin.trigger_schedule(context, "tick")
    assert job.id.startswith("schedule-tick-manual-") and queued(context) == [job.id]
    assert recurring.get(context, "tick").next_fire == T0
    assert recurring.history(context, "tick")[0].job_id == job.id
    actions = [entry[b"action"] for _, entry in context.redis.xrange(context.keys.audit)]
    assert actions == [b"trigger-schedule"]


def test_a_trigger_racing_with_remove_is_refused_and_leaves_nothing_behind(context, monkeypatch):
    every_second(context)
    enqueue_run = recurring._enqueue_run

    def removed_first(*args):
        monkeypatch.setattr(recurring, "_enqueue_run", enqueue_run)
        admin.remove_schedule(context, "tick")  # another operator, between the trigger's read and write
        return enqueue_run(*args)

    monkeypatch.setattr(recurring, "_enqueue_run", removed_first)
    with pytest.raises(UnknownSchedule):
        admin.trigger_schedule(context, "tick")
    assert context.redis.keys("jobs:schedule*") == [] and queued(context) == []


def test_updating_a_schedule_keeps_its_next_fire_and_pause_unless_the_timing_changes(context):
    every_second(context)
    admin.pause_schedule(context, "tick", until=None)
    updated = recurring.save(
        context, recurring.define("tick", sample_jobs.record, every="1s", args=["new"]), now=T0 + 0.5
    )
    assert updated.next_fire == T0 and updated.paused_until == recurring.FOREVER and updated.args == ["new"]
    retimed = recurring.save(
        context, recurring.define("tick", sample_jobs.record, every="1m", args=["x"]), now=T0 + 0.5
    )
    assert retimed.next_fire == T0 + 60


def test_a_schedule_retimed_from_a_host_whose_clock_is_behind_fires_no_fire_time_twice(context):
    every_second(context)
    assert recurring.fire_due(context, now=T0 + 0.5) == {"tick": [recurring.run_id("tick", T0)]}
    retimed = recurring.define("tick", sample_jobs.record, every="2s", args=["tick"])
    assert recurring.save(context, retimed, now=T0 - 30).next_fire == T0 + 2  # the host is 30 s behind
    assert recurring.fire_due(context, now=T0 + 2.5) == {"tick": [recurring.run_id("tick", T0 + 2)]}


def test_removed_schedules_stop_firing(context):
    every_second(context)
    admin.remove_schedule(context, "tick")
    assert recurring.fire_due(context, now=T0 + 10) == {}
    with pytest.raises(UnknownSchedule):
        recurring.get(context, "tick")


def test_schedules_that_cannot_fire_hold_up_no_other_and_are_tried_again_later(context):
    stuck = [f"stuck-{number}" for number in range(3)]
    for schedule_id in stuck:  # due at T0: first in the due set
        every_second(context, schedule_id)
        context.redis.hset(context.keys.schedule(schedule_id), "job", "gone.module.job")  # renamed
    healthy = recurring.define("healthy", sample_jobs.record, every="1s", args=["h"])
    recurring.save(context, healthy, now=T0 + 5)
    first = recurring.fire_due(context, now=T0 + 6.1, limit=len(stuck))
    assert sorted(first) == stuck and all(isinstance(error, UnknownJob) for error in first.values())
    assert recurring.fire_due(context, now=T0 + 6.2, limit=len(stuck)) == {
        "healthy": [recurring.run_id("healthy", T0 + 6)]
    }
    context.redis.hset(context.keys.schedule("stuck-0"), "job", "tests.sample_jobs.record")  # deployed
    again = recurring.fire_due(context, now=T0 + 6 + recurring.RETRY_FAILED + 0.1, limit=10)
    assert again["stuck-0"][0] == recurring.run_id("stuck-0", T0)  # what came due meanwhile is kept
    assert isinstance(again["stuck-1"], UnknownJob)


def test_a_schedule_fixed_while_its_failure_is_handled_is_not_held_back(context, monkeypatch):
    every_second(context)
    key = context.keys.schedule("tick")
    context.redis.hset(key, "job", "gone.module.job")
    retry_later = recurring._retry_later

    def fixed_meanwhile(*args):
        context.redis.hset(key, "job", "tests.sample_jobs.record")
        return retry_later(*args)

    monkeypatch.setattr(recurring, "_retry_later", fixed_meanwhile)
    assert isinstance(recurring.fire_due(context, now=T0 + 0.1)["tick"], UnknownJob)
    assert recurring.fire_due(context, now=T0 + 0.2) == {"tick": ["schedule-tick-1800000000"]}


def test_a_schedule_whose_job_is_unknown_to_the_scheduler_stays_due(context):
    every_second(context)
    context.redis.hset(context.keys.schedule("tick"), "job", "gone.module.job")
    outcome = recurring.fire_due(context, now=T0 + 0.1)
    assert isinstance(outcome["tick"], UnknownJob)
    assert recurring.get(context, "tick").next_fire == T0 and queued(context) == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"schedule_id": "bad id!", "every": "1s"}, InvalidSchedule),
        ({"every": "1s", "misfire": "sometimes"}, InvalidSchedule),
        ({"every": "1s", "overlap": "never"}, InvalidSchedule),
        ({"cron": "not cron"}, InvalidSchedule),
        ({"every": "1s", "job": "no.such.job"}, UnknownJob),
        ({"every": "1s", "args": [object()]}, InvalidArguments),
        ({"every": "1s", "args": [1, 2, 3]}, InvalidArguments),
        ({"every": "1s", "queue": "a,b"}, InvalidSchedule),  # every fire would be refused
        ({"every": "1s", "queue": " low"}, InvalidSchedule),
    ],
)
def test_bad_definitions_are_refused_before_anything_is_written(context, options, error):
    options = {"schedule_id": "s", "job": "tests.sample_jobs.record", "args": ["a"], **options}
    with pytest.raises(error):
        recurring.define(options.pop("schedule_id"), options.pop("job"), **options)
    assert context.redis.keys("jobs:schedule*") == []


def test_sync_creates_updates_and_removes_only_managed_schedules(context):
    by_hand = recurring.save(context, recurring.define("by-hand", sample_jobs.record, every="1h", args=["h"]))

    def managed(schedule_id, every):
        return recurring.define(
            schedule_id, sample_jobs.record, every=every, args=[schedule_id], managed=True
        )

    assert recurring.sync(context, [managed("a", "1m"), managed("b", "1m")]) == {
        "created": ["a", "b"],
        "updated": [],
        "removed": [],
    }
    admin.pause_schedule(context, "a")
    assert recurring.sync(context, [managed("a", "1m")]) == {
        "created": [],
        "updated": ["a"],
        "removed": ["b"],
    }
    assert [s.id for s in recurring.all_schedules(context)] == ["a", by_hand.id]
    assert recurring.get(context, "a").paused_until == recurring.FOREVER


def test_schedule_registers_from_python_at_start_up(context):
    import jobs

    jobs.schedule("nightly", sample_jobs.record, cron="0 2 * * *", tz="Europe/Berlin", args=["n"])
    jobs.schedule(
        "nightly", sample_jobs.record, cron="0 2 * * *", tz="Europe/Berlin", args=["n"]
    )  # idempotent
    assert [s.id for s in recurring.all_schedules(context)] == ["nightly"]


def test_a_damaged_schedule_stops_only_itself(context):
    every_second(context, "good")
    every_second(context, "bad")
    context.redis.hset(context.keys.schedule("bad"), "args", "{not json")
    outcome = recurring.fire_due(context, now=T0 + 0.1)
    assert outcome["good"] == ["schedule-good-1800000000"]
    assert isinstance(outcome["bad"], InvalidSchedule) and "damaged" in str(outcome["bad"])


def test_pausing_a_schedule_that_is_gone_writes_nothing(context):
    every_second(context)
    admin.remove_schedule(context, "tick")
    with pytest.raises(UnknownSchedule):
        recurring.set_paused(context, "tick", recurring.FOREVER)
    assert context.redis.keys("jobs:schedule*") == []


def bare(context):
    """What a trigger racing with remove used to leave: a hash with only the last run's id."""
    context.redis.delete(context.keys.schedule("tick"))
    context.redis.hset(context.keys.schedule("tick"), "last_job_id", "schedule-tick-manual-0")


@pytest.mark.parametrize(
    "damage",
    [lambda context: context.redis.hset(context.keys.schedule("tick"), "args", "{not json"), bare],
)
def test_a_damaged_schedule_can_be_added_again_and_removed_as_its_error_advises(context, damage):
    every_second(context)
    damage(context)
    with pytest.raises(InvalidSchedule, match="remove it and add it again"):
        recurring.get(context, "tick")
    assert every_second(context).args == ["tick"]
    damage(context)
    admin.remove_schedule(context, "tick")
    assert context.redis.keys("jobs:schedule*") == []
    with pytest.raises(UnknownSchedule):
        admin.remove_schedule(context, "tick")
