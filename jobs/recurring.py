"""Recurring schedules: their store, and firing them exactly once per fire time.

A schedule lives in `{p}schedule:{id}` (a hash) and in `{p}schedules:due` (id -> next fire time), so a
scheduler tick reads only what is due. A tick reads every due schedule in one round trip (and, for
those whose overlap policy asks, whether their last run is still pending, in one more), prepares each
fire (a new job per fire time, with an id derived from schedule id and fire time, its record in the run
history, the next fire time) and sends them all in one more round trip: each fire is one script that
writes it only if the schedule is still exactly as read. A scheduler that loses a race, or finds the
schedule edited, paused or triggered meanwhile, changes nothing (the schedule stays due while it is);
one that crashes before the script leaves nothing behind, and after it everything is done. So any
number of schedulers may run, and a crash neither loses nor duplicates a fire. A schedule that cannot
fire (damaged, or its job unknown to this scheduler) keeps its next fire time and is looked at again a
few seconds later, so that it holds up no other.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis
from rq.utils import utcparse

from . import catalog
from .bookkeeping import RUN_FLATTENED_LUA, flattened
from .catalog import JobFunction
from .config import queue_name_problem
from .connection import Context, current
from .enqueue import check_json, check_signature, enqueue
from .errors import InvalidArguments, InvalidSchedule, JobsError, UnknownSchedule
from .firetimes import Timing
from .keys import storable
from .rqjob import PENDING_STATES, Job

log = logging.getLogger("jobs.scheduler")

MISFIRE_POLICIES = ("once", "all", "skip")
OVERLAP_POLICIES = ("allow", "skip")
MISFIRE_GRACE = 60  # seconds: a fire later than this counts as missed (downtime), not merely late
MAX_CATCH_UP = 1000  # fires computed per step after a long downtime; the rest follow on the next tick
HISTORY_LENGTH = 100  # runs kept per schedule
RETRY_FAILED = 5  # seconds before a schedule that could not fire is looked at again
FOREVER = math.inf
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # part of job ids, which RQ limits to these


@dataclass(frozen=True)
class Schedule:
    """A recurring schedule's definition and runtime state."""

    id: str
    job: str
    timing: Timing
    queue: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    misfire: str = "once"
    overlap: str = "allow"
    description: str = ""
    managed: bool = False  # created by `schedules sync`, so removed by it when gone from the file
    paused_until: float | None = None  # epoch seconds, FOREVER, or None when active
    created: float = 0.0
    updated: float = 0.0
    next_fire: int | None = None
    last_fire: int | None = None
    last_job_id: str | None = None

    def paused_at(self, moment: float) -> bool:
        """Whether the schedule is paused at `moment`."""
        return self.paused_until is not None and moment < self.paused_until

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(timing=None, cron=self.timing.cron, every=self.timing.every, tz=self.timing.tz)
        del data["timing"]
        if self.paused_until == FOREVER:
            data["paused_until"] = "forever"
        return data


def define(
    schedule_id: str,
    job: str | JobFunction,
    *,
    cron: str | None = None,
    every: str | float | None = None,
    tz: str | None = None,
    queue: str | None = None,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    misfire: str = "once",
    overlap: str = "allow",
    description: str = "",
    managed: bool = False,
) -> Schedule:
    """A validated schedule definition (no I/O). Raises InvalidSchedule, UnknownJob or InvalidArguments.

    The arguments are kept as the job will receive them, through JSON (a tuple becomes a list)."""
    if not isinstance(schedule_id, str) or not _ID.fullmatch(schedule_id):
        raise InvalidSchedule(
            f"schedule id {schedule_id!r} must be 1-128 letters, digits, '-' or '_', starting with a letter or digit"
        )
    if misfire not in MISFIRE_POLICIES:
        raise InvalidSchedule(f"misfire policy {misfire!r} is not one of {', '.join(MISFIRE_POLICIES)}")
    if overlap not in OVERLAP_POLICIES:
        raise InvalidSchedule(f"overlap policy {overlap!r} is not one of {', '.join(OVERLAP_POLICIES)}")
    timing = Timing.parse(cron=cron, every=every, tz=tz)
    if not isinstance(job, str | JobFunction):
        raise InvalidSchedule(f"job {job!r} is neither a job name nor a @job function")
    spec = job.spec if isinstance(job, JobFunction) else catalog.get(job)
    queue = None if queue is None else _text("queue", queue) or None  # "": the job's own queue
    if queue is not None and (problem := queue_name_problem(queue)):
        raise InvalidSchedule(f"queue {queue!r}: {problem}")  # each fire would be refused
    description = _text("description", description)
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict | None):
        raise InvalidArguments("args must be a list and kwargs a dict (of JSON values)")
    args, kwargs = list(args), dict(kwargs or {})
    check_json(args, kwargs)
    check_signature(spec, args, kwargs)
    args, kwargs = json.loads(json.dumps([args, kwargs]))
    return Schedule(
        schedule_id, spec.name, timing, queue, args, kwargs, misfire, overlap, description, managed
    )


def _text(option: str, value: Any) -> str:
    """`value`, if it is text that Redis can store (UTF-8); InvalidSchedule naming `option` otherwise."""
    if isinstance(value, str) and storable(value):
        return value
    raise InvalidSchedule(f"{option} must be text (UTF-8), not {value!r}")


def save(context: Context, schedule: Schedule, now: float | None = None) -> Schedule:
    """Create or update a schedule (upsert). Runtime state (paused, history, last run) is kept, and so is
    the next fire time unless the timing changed: an update never loses a fire that is due."""
    now = time.time() if now is None else now
    key = context.keys.schedule(schedule.id)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                old = _decoded_or_none(pipe.hgetall(key))
                if old is not None:
                    keep = dict(
                        paused_until=old.paused_until,
                        created=old.created,
                        last_fire=old.last_fire,
                        last_job_id=old.last_job_id,
                        next_fire=old.next_fire if old.timing == schedule.timing else None,
                    )
                    schedule = replace(schedule, **keep)
                schedule = replace(
                    schedule,
                    created=schedule.created or now,
                    updated=now,
                    # after the last fire even if this host's clock is behind: a fire time never runs twice
                    next_fire=schedule.next_fire
                    or schedule.timing.next_after(max(now, schedule.last_fire or 0)),
                )
                pipe.multi()
                pipe.delete(key)
                pipe.hset(key, mapping=_encode(schedule))
                pipe.zadd(context.keys.schedules_due, {schedule.id: schedule.next_fire})
                pipe.execute()
                return schedule
            except redis.WatchError:
                continue


def _decoded_or_none(raw: dict) -> Schedule | None:
    """The schedule stored in `raw`, None for none or a damaged one (logged: lists leave it out, a save
    replaces it)."""
    try:
        return _decode(raw)
    except InvalidSchedule as exc:
        log.warning("%s", exc)
        return None


def get(context: Context, schedule_id: str) -> Schedule:
    """The schedule `schedule_id`; UnknownSchedule if there is none."""
    schedule = _decode(context.redis.hgetall(context.keys.schedule(schedule_id)))
    if schedule is None:
        raise _unknown(schedule_id)
    return schedule


def _unknown(schedule_id: str) -> UnknownSchedule:
    return UnknownSchedule(f"no schedule {schedule_id!r} (see `jobctl schedules list`)")


def all_schedules(context: Context) -> list[Schedule]:
    """Every schedule, by id; a damaged one is left out (logged)."""
    ids = [raw.decode() for raw in context.redis.zrange(context.keys.schedules_due, 0, -1)]
    with context.redis.pipeline(transaction=False) as pipe:
        for schedule_id in ids:
            pipe.hgetall(context.keys.schedule(schedule_id))
        found = [_decoded_or_none(raw) for raw in pipe.execute()]
    return sorted((s for s in found if s is not None), key=lambda s: s.id)


def remove(context: Context, schedule_id: str) -> None:
    """Delete a schedule and its run history (runs already enqueued are left alone), a damaged one too;
    UnknownSchedule if there is none."""
    with context.redis.pipeline() as pipe:
        pipe.zrem(context.keys.schedules_due, schedule_id)
        pipe.delete(context.keys.schedule(schedule_id), context.keys.schedule_runs(schedule_id))
        unindexed, deleted = pipe.execute()
    if not unindexed and not deleted:
        raise _unknown(schedule_id)


def set_paused(context: Context, schedule_id: str, until: float | None) -> Schedule:
    """Pause until the epoch time `until` (FOREVER for indefinitely), or resume with None."""
    value = "" if until is None else ("forever" if until == FOREVER else repr(until))
    key = context.keys.schedule(schedule_id)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # a schedule removed meanwhile must not come back as a bare hash
                if not pipe.exists(key):
                    raise _unknown(schedule_id)
                pipe.multi()
                pipe.hset(key, "paused_until", value)
                pipe.execute()
                return get(context, schedule_id)
            except redis.WatchError:
                continue


def trigger(context: Context, schedule_id: str, now: float | None = None):
    """Enqueue one run now, outside the schedule's timing (its next fire time does not move)."""
    now = time.time() if now is None else now
    key = context.keys.schedule(schedule_id)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # a schedule removed meanwhile must not come back as a bare hash
                schedule = _decode(pipe.hgetall(key))
                if schedule is None:
                    raise _unknown(schedule_id)
                job_id = f"schedule-{schedule.id}-manual-{uuid.uuid4().hex[:12]}"
                pipe.multi()
                job = _enqueue_run(context, schedule, job_id, pipe)
                pipe.zadd(context.keys.schedule_runs(schedule.id), {job.id: now})
                pipe.hset(key, mapping={"last_job_id": job.id})
                pipe.execute()
                return job
            except redis.WatchError:
                continue


def run_id(schedule_id: str, fire: int) -> str:
    """The id of the job that runs `schedule_id` for the fire time `fire`: the same in every scheduler."""
    return f"schedule-{schedule_id}-{fire}"


def fire_of(job_id: str, schedule_id: str) -> int | None:
    """The fire time of `schedule_id` that the job `job_id` runs for; None for any other job (a manual
    trigger among them)."""
    fire = job_id.removeprefix(f"schedule-{schedule_id}-")
    return int(fire) if fire != job_id and fire.isdigit() else None


@dataclass(frozen=True)
class Plan:
    """What firing a schedule at `now` does: runs to enqueue, fires skipped, and the next fire time."""

    runs: list[int]
    skipped: list[int]
    next_fire: int


def plan(schedule: Schedule, now: float, last_run_busy: bool = False) -> Plan:
    """Apply the misfire, pause and overlap policies to the fires due at `now` (pure)."""
    fires, next_fire = _due_fires(schedule, now)
    fires = [fire for fire in fires if not schedule.paused_at(fire)]
    on_time = [fire for fire in fires if now - fire <= MISFIRE_GRACE]
    missed = [fire for fire in fires if now - fire > MISFIRE_GRACE]
    if schedule.misfire == "all":
        runs = fires
    elif schedule.misfire == "once":
        runs = missed[-1:] + on_time
    else:
        runs = on_time
    if schedule.overlap == "skip" and runs:
        allowed = [] if last_run_busy else runs[:1]
        return Plan(allowed, [fire for fire in runs if fire not in allowed], next_fire)
    return Plan(runs, [], next_fire)


def _due_fires(schedule: Schedule, now: float) -> tuple[list[int], int]:
    """The fires due at `now` that the misfire policy needs, and the next fire time after them. Only `all`
    needs every missed fire (MAX_CATCH_UP per tick, the rest on the next ones). When more are due than
    that, the others jump to the last missed fire (`once`'s catch-up run) and the fires within the grace."""
    fires, moment = _walk(schedule.timing, schedule.next_fire, now)
    if moment > now or schedule.misfire == "all":
        return fires, moment
    grace = math.ceil(now - MISFIRE_GRACE)  # the first second whose fires are not missed
    last_missed = schedule.timing.last_before(grace, since=schedule.next_fire)
    recent, moment = _walk(schedule.timing, schedule.timing.next_after(grace - 1), now)
    return [last_missed, *recent], moment


def _walk(timing: Timing, start: int, now: float) -> tuple[list[int], int]:
    """The fire times from `start` (one of them) to `now`, at most MAX_CATCH_UP, and the fire time after."""
    fires, moment = [], start
    while moment <= now and len(fires) < MAX_CATCH_UP:
        fires.append(moment)
        moment = timing.next_after(moment)
    return fires, moment


def fire_due(
    context: Context, now: float | None = None, limit: int = 500
) -> dict[str, list[str] | JobsError]:
    """Fire every schedule due at `now` (default: the clock). Returns, per schedule that was due, the
    ids of the jobs enqueued (none when another scheduler fired it first), or the error that kept it
    from firing: it keeps its next fire time, so nothing is lost, and it is tried again RETRY_FAILED
    seconds later (schedules that cannot fire, due first, would otherwise take every tick's `limit`).
    A full Redis stops them all: RedisFull is raised, and every schedule stays due."""
    now = time.time() if now is None else now
    due = context.redis.zrangebyscore(
        context.keys.schedules_due, "-inf", now, start=0, num=limit, withscores=True
    )
    expected = {raw_id.decode(): int(score) for raw_id, score in due}
    with context.redis.pipeline(transaction=False) as pipe:
        for schedule_id in expected:
            pipe.hgetall(context.keys.schedule(schedule_id))
        read = dict(zip(expected, pipe.execute(), strict=True))
    outcome: dict[str, list[str] | JobsError] = {}
    schedules: dict[str, Schedule | None] = {}  # None: removed
    for schedule_id, raw in read.items():
        try:
            schedules[schedule_id] = _decode(raw)
        except JobsError as exc:  # damaged: it stops only itself
            outcome[schedule_id] = exc
    busy = _busy(context, schedules)
    fires: dict[str, _Fire] = {}
    for schedule_id, schedule in schedules.items():
        try:
            fire = _prepare(
                context, schedule_id, schedule, read[schedule_id], expected[schedule_id], busy, now
            )
        except JobsError as exc:
            outcome[schedule_id] = exc
            continue
        if fire is None:
            outcome[schedule_id] = []
        else:
            fires[schedule_id] = fire
    retries = {
        schedule_id: _retry_later(context, schedule_id, read[schedule_id], now)
        for schedule_id, result in outcome.items()
        if isinstance(result, JobsError)
    }
    for schedule_id, fired in _commit(context, {**fires, **retries}).items():
        if schedule_id in fires:
            outcome[schedule_id] = fires[schedule_id].job_ids if fired else []
    return outcome


@dataclass(frozen=True)
class _Fire:
    """A schedule's fire as prepared from what was read: its writes, to apply only if nothing read has
    changed since."""

    schedule_key: str
    read: dict[bytes, bytes]  # the schedule's hash
    last_run: tuple[str, bool] | None  # its last run's job key and whether it was pending, if read
    writes: list  # bookkeeping.flattened
    job_ids: list[str]


def _busy(context: Context, schedules: dict[str, Schedule | None]) -> dict[str, bool]:
    """Whether the last run is still pending, for each schedule whose overlap policy asks."""
    last_runs = {
        schedule_id: schedule.last_job_id
        for schedule_id, schedule in schedules.items()
        if schedule is not None and schedule.overlap == "skip" and schedule.last_job_id
    }
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in last_runs.values():
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
    return {
        schedule_id: status in PENDING_STATES for schedule_id, status in zip(last_runs, statuses, strict=True)
    }


def _prepare(
    context: Context,
    schedule_id: str,
    schedule: Schedule | None,
    raw: dict,
    expected: int,
    busy: dict[str, bool],
    now: float,
) -> _Fire | None:
    """The fire at `now` of `schedule_id` (`schedule`, read as `raw`, due at `expected`; its last run
    pending if `busy` says so); None when another scheduler fired it since it was found due."""
    key = context.keys.schedule(schedule_id)
    if schedule is None:  # removed: drop its index entry, unless it comes back meanwhile
        writes = _recorded(context, lambda pipe: pipe.zrem(context.keys.schedules_due, schedule_id))
        return _Fire(key, {}, None, writes, [])
    if schedule.next_fire > expected:  # not `!=`: one retried after a failure is due after its next fire
        return None
    steps = plan(schedule, now, busy.get(schedule_id, False))
    job_ids = [run_id(schedule.id, fire) for fire in steps.runs]

    def write(pipe) -> None:
        for job_id in job_ids:
            _enqueue_run(context, schedule, job_id, pipe)
        _record(context, pipe, schedule, steps, job_ids)

    last_run = (Job.key_for(schedule.last_job_id), busy[schedule_id]) if schedule_id in busy else None
    return _Fire(key, raw, last_run, _recorded(context, write), job_ids)


def _retry_later(context: Context, schedule_id: str, raw: dict, now: float) -> _Fire:
    """A fire of `schedule_id`, which could not fire, that only moves its due entry RETRY_FAILED
    seconds on, if it is still as read (`raw`): one fixed meanwhile is not held back. Its next fire
    time stays, so it fires what has come due when it can."""
    due = {schedule_id: int(now) + RETRY_FAILED}
    writes = _recorded(context, lambda pipe: pipe.zadd(context.keys.schedules_due, due))
    return _Fire(context.keys.schedule(schedule_id), raw, None, writes, [])


def _recorded(context: Context, write) -> list:
    """The commands that `write(pipeline)` stacks, flattened as the fire script runs them (nothing is
    sent)."""
    with context.redis.pipeline() as pipe:
        write(pipe)
        return flattened(pipe.command_stack)


# Fires a schedule unless something it was prepared from has changed: its hash must hold exactly the
# fields and values read (a scheduler that fired it first moved its next fire time; an edit, a pause or a
# trigger changed it too), and its last run, when the overlap policy read it, must be as busy as read.
# Then the writes run, going on past a failing one as EXEC does. A full Redis refuses the whole script.
# KEYS: the schedule, then its last run's job if read. ARGV: the number n of values read, the n values
# (field, value, ...), '1' or '0' (busy, if the last run was read), then the writes (count, parts, ...).
# Answers 1 (fired), 0 (changed: nothing written), or the first error of a write.
_FIRE = """#!lua
RUN_FLATTENED
local n = tonumber(ARGV[1])
local stored = redis.call('HGETALL', KEYS[1])
if #stored ~= n then return 0 end
local read = {}
for i = 2, n, 2 do read[ARGV[i]] = ARGV[i + 1] end
for i = 1, n, 2 do
  if read[stored[i]] ~= stored[i + 1] then return 0 end
end
local a = n + 2
if #KEYS == 2 then
  local pending = {PENDING}
  local status = redis.call('HGET', KEYS[2], 'status')
  if (status and pending[status] and '1' or '0') ~= ARGV[a] then return 0 end
  a = a + 1
end
run_flattened(a, #ARGV)
if failure then return redis.error_reply(failure) end
return 1
"""
_FIRE = _FIRE.replace("RUN_FLATTENED", RUN_FLATTENED_LUA).replace(
    "PENDING", ", ".join(f"['{status.decode()}'] = true" for status in sorted(PENDING_STATES))
)


@functools.cache
def _fire_script(connection: redis.Redis):
    return connection.register_script(_FIRE)


def _commit(context: Context, fires: dict[str, _Fire]) -> dict[str, bool]:
    """Send every prepared fire, each written only if what it was prepared from is unchanged; whether
    each was written. One that was not (another scheduler's came first, or the schedule changed) stays
    due while it still is."""
    script = _fire_script(context.redis)
    with context.redis.pipeline(transaction=False) as pipe:
        for fire in fires.values():
            read = [part for pair in fire.read.items() for part in pair]
            keys, checks = [fire.schedule_key], [len(read), *read]
            if fire.last_run is not None:
                last_run_key, busy = fire.last_run
                keys.append(last_run_key)
                checks.append("1" if busy else "0")
            script(keys=keys, args=[*checks, *fire.writes], client=pipe)
        replies = pipe.execute() if fires else []
    return {schedule_id: reply == 1 for schedule_id, reply in zip(fires, replies, strict=True)}


def _enqueue_run(context: Context, schedule: Schedule, job_id: str, pipe):
    return enqueue(
        schedule.job,
        schedule.args,
        schedule.kwargs,
        queue=schedule.queue,
        job_id=job_id,
        source="schedule",
        context=context,
        pipeline=pipe,
    )


def _record(context: Context, pipe, schedule: Schedule, steps: Plan, job_ids: list[str]) -> None:
    runs_key = context.keys.schedule_runs(schedule.id)
    history = {job_id: fire for job_id, fire in zip(job_ids, steps.runs, strict=True)}
    history.update({f"skipped-{fire}": fire for fire in steps.skipped})
    if history:
        pipe.zadd(runs_key, history)
        pipe.zremrangebyrank(runs_key, 0, -HISTORY_LENGTH - 1)
    state = {"next_fire": steps.next_fire}
    if steps.runs or steps.skipped:
        state["last_fire"] = max(steps.runs + steps.skipped)
    if job_ids:
        state["last_job_id"] = job_ids[-1]
    pipe.hset(context.keys.schedule(schedule.id), mapping=state)
    pipe.zadd(context.keys.schedules_due, {schedule.id: steps.next_fire})


def _encode(schedule: Schedule) -> dict[str, str]:
    data = schedule.to_dict()
    data["args"], data["kwargs"] = json.dumps(schedule.args), json.dumps(schedule.kwargs)
    data["managed"] = "1" if schedule.managed else ""
    return {key: "" if value is None else str(value) for key, value in data.items()}


def _decode(raw: dict) -> Schedule | None:
    """The schedule stored in `raw` (a hash), None for none; InvalidSchedule when it is damaged, so
    one bad entry stops only itself."""
    if not raw:
        return None
    data = {key.decode(): value.decode() for key, value in raw.items()}
    try:
        return _from_fields(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidSchedule(
            f"schedule {data.get('id', '?')} is damaged in Redis ({type(exc).__name__}: {exc}); remove it and add it again"
        ) from None


def _from_fields(data: dict[str, str]) -> Schedule:
    if not data.get("next_fire"):
        raise ValueError("it has no next fire time")

    def number(name: str, kind=int):
        return kind(data[name]) if data.get(name) else None

    paused = data.get("paused_until") or None
    return Schedule(
        id=data["id"],
        job=data["job"],
        timing=Timing(cron=data.get("cron") or None, every=number("every"), tz=data.get("tz") or "UTC"),
        queue=data.get("queue") or None,
        args=json.loads(data.get("args") or "[]"),
        kwargs=json.loads(data.get("kwargs") or "{}"),
        misfire=data.get("misfire") or "once",
        overlap=data.get("overlap") or "allow",
        description=data.get("description", ""),
        managed=data.get("managed") == "1",
        paused_until=None if paused is None else FOREVER if paused == "forever" else float(paused),
        created=number("created", float) or 0.0,
        updated=number("updated", float) or 0.0,
        next_fire=number("next_fire"),
        last_fire=number("last_fire"),
        last_job_id=data.get("last_job_id") or None,
    )


@dataclass(frozen=True)
class Run:
    """One entry of a schedule's run history."""

    fire: int  # the fire time (epoch seconds); for a manual trigger, when it was triggered
    job_id: str | None  # None for a skipped fire
    state: str  # the job's state, "skipped" (overlap policy) or "expired" (the job is gone)
    late: float | None  # seconds between the fire time and the enqueue
    duration: float | None  # seconds the job ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def history(context: Context, schedule_id: str, limit: int = 20) -> list[Run]:
    """The schedule's last `limit` runs, newest first (read-only)."""
    entries = context.redis.zrevrange(context.keys.schedule_runs(schedule_id), 0, limit - 1, withscores=True)
    members = [(raw.decode(), int(score)) for raw, score in entries]
    with context.redis.pipeline(transaction=False) as pipe:
        for member, _ in members:
            pipe.hmget(Job.key_for(member), "status", "enqueued_at", "started_at", "ended_at")
        fields = pipe.execute()
    return [_run(member, fire, values) for (member, fire), values in zip(members, fields, strict=True)]


def _run(member: str, fire: int, values: list) -> Run:
    if member.startswith("skipped-"):
        return Run(fire, None, "skipped", None, None)
    status, enqueued, started, ended = (
        utcparse(v.decode()).timestamp() if i and v else v for i, v in enumerate(values)
    )
    if status is None:
        return Run(fire, member, "expired", None, None)
    late = round(enqueued - fire, 3) if enqueued else None
    duration = round(ended - started, 3) if started and ended else None
    return Run(fire, member, status.decode(), late, duration)


def schedule(
    schedule_id: str, job: str | JobFunction, *, context: Context | None = None, **options: Any
) -> Schedule:
    """Register (create or update) a recurring schedule, e.g. at start-up:
    `schedule("nightly-report", report, cron="0 2 * * *", tz="Europe/Berlin")`. Options as `define`."""
    return save(context or current(), define(schedule_id, job, **options))


def sync(context: Context, definitions: Sequence[Schedule], now: float | None = None) -> dict[str, list[str]]:
    """Make the managed schedules exactly `definitions` (validated by `define`): create or update each
    (runtime state kept), remove managed ones not among them; schedules added by hand are left alone."""
    wanted = {definition.id for definition in definitions}
    existing = {schedule.id: schedule for schedule in all_schedules(context)}
    changes: dict[str, list[str]] = {"created": [], "updated": [], "removed": []}
    for definition in definitions:
        save(context, replace(definition, managed=True), now)
        changes["updated" if definition.id in existing else "created"].append(definition.id)
    for schedule_id, schedule in existing.items():
        if schedule.managed and schedule_id not in wanted:
            remove(context, schedule_id)
            changes["removed"].append(schedule_id)
    return changes
