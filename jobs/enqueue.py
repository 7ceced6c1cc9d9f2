"""The only caller of RQ's enqueue paths: checks that a job is catalogued and its arguments are JSON,
then enqueues (now, later, or after its dependencies) in one transaction, with who enqueued it: in the
job's hash when it is queued at once (the hash tells its `enqueued` event), else on its timeline."""

from __future__ import annotations

import functools
import itertools
import json
import math
import uuid
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from rq import Queue
from rq.job import JobStatus, validate_job_id
from rq.serializers import JSONSerializer
from rq.utils import now as rq_now

from . import catalog, index, timeline
from .catalog import Call, JobFunction, JobSpec
from .config import queue_name_problem
from .connection import Context, current, run_script
from .dequeue import WAKE_TOKENS, JobQueue
from .durations import parse_duration
from .errors import InvalidArguments
from .retries import rq_retry
from .rqjob import PENDING_STATES, Job, Template, pending_owner, pending_ttl, schedule
from .rqtimes import format_time


def check_json(args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise InvalidArguments naming the first argument that JSON cannot carry."""
    try:
        json.dumps([list(args), list(kwargs.values())], allow_nan=False)
        return
    except (TypeError, ValueError):
        pass  # find out which argument it was
    for label, value in [
        *((f"argument {i + 1}", v) for i, v in enumerate(args)),
        *((f"keyword argument {k!r}", v) for k, v in kwargs.items()),
    ]:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArguments(
                f"{label} is not JSON-serializable ({type(value).__name__}): {exc}"
            ) from None


def check_signature(spec: JobSpec, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise InvalidArguments when the arguments do not fit the job function."""
    try:
        spec.check_fit(args, kwargs)
    except TypeError as exc:
        raise InvalidArguments(f"{spec.name}: {exc}") from None


def queue_for(context: Context, name: str) -> Queue:
    """RQ's queue `name` on the job store, with our job class and JSON, waking idle workers."""
    return JobQueue(name, connection=context.redis, job_class=Job, serializer=JSONSerializer)


def queue_names(context: Context) -> list[str]:
    """Names of every RQ queue known to the job store."""
    prefix = "rq:queue:"
    return sorted(raw.decode()[len(prefix) :] for raw in context.redis.smembers("rq:queues"))


def _due_at(at: datetime | None, delay: timedelta | float | str | None) -> datetime | None:
    """When a delayed job becomes due, rounded up to a whole second: RQ's scheduled registry keeps whole
    seconds and would otherwise run the job up to a second early."""
    try:
        due = _requested_time(at, delay)
        if due is None or due.microsecond == 0:
            return due
        return due.replace(microsecond=0) + timedelta(seconds=1)
    except OverflowError:
        given = f"the time {at.isoformat()}" if at is not None else f"the delay {delay!r}"
        raise InvalidArguments(f"{given} is too far ahead: a job must be due before the year 10000") from None


def _requested_time(at: datetime | None, delay: timedelta | float | str | None) -> datetime | None:
    if at is not None and delay is not None:
        raise InvalidArguments("give either a time (at) or a delay, not both")
    if delay is not None:
        seconds = parse_duration(delay.total_seconds() if isinstance(delay, timedelta) else delay)
        return datetime.now(UTC) + timedelta(seconds=seconds)
    if at is not None and at.tzinfo is None:
        raise InvalidArguments(f"the time {at.isoformat()} has no time zone; give an aware datetime")
    return at


def enqueue(
    target: str | JobSpec | JobFunction,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    job_id: str | None = None,
    depends_on=None,
    at: datetime | None = None,
    delay: timedelta | float | str | None = None,
    source: str = "code",
    context: Context | None = None,
    pipeline: Pipeline | None = None,
) -> Job:
    """Enqueue a run of a catalogued job and return it.

    Refuses (InvalidArguments / UnknownJob) before writing anything when the job is unknown, an argument
    is not JSON or the arguments do not fit the function. `at`/`delay` make it a delayed job;
    `depends_on` (job ids or jobs) defers it until those have succeeded (queued at once if they have);
    it cannot be delayed too. With `pipeline` (a transaction in MULTI state) every write joins it and
    the caller executes it; dependencies need their own. A `job_id` that names a job that has ended runs
    it again, with these arguments; one that names a job not done yet (queued, scheduled, deferred,
    running) is refused.
    """
    spec = (
        target.spec
        if isinstance(target, JobFunction)
        else target
        if isinstance(target, JobSpec)
        else catalog.get(target)
    )
    args, kwargs = list(args), dict(kwargs or {})
    call = Call(spec, tuple(args), kwargs)
    data = _data(call)
    check_signature(spec, args, kwargs)
    if job_id is not None:
        _check_job_id(job_id)
    _check_queue(queue)
    due = _due_at(at, delay)
    if depends_on is not None and due is not None:
        # RQ's scheduler would queue it when due whatever its dependencies, and they would queue it again
        raise InvalidArguments(
            "a job with dependencies runs once they have finished: it cannot also be delayed"
        )
    if depends_on is not None and pipeline is not None:
        raise InvalidArguments("a job with dependencies cannot join another transaction")
    context = context or current()
    if depends_on is None and pipeline is None and (job_id is None or spec.unique is None):
        job = _enqueue_one(context, call, data, queue or spec.queue, due, source, job_id)
        if job is not None:
            return job
    rq_queue = queue_for(context, queue or spec.queue)
    try:
        job = _create(context, rq_queue, spec, args, kwargs, job_id, depends_on)
    except ValueError as exc:  # what RQ refuses once the rest is checked: a depends_on it cannot read
        raise InvalidArguments(f"depends_on: {exc}") from None
    if pipeline is not None:  # the caller's transaction (schedules: their runs are unique per fire time)
        _write(context, rq_queue, job, due, source, pipeline)
        return job
    write = functools.partial(_write, context, rq_queue, job, due, source)
    unique = unique_key(context, spec, args, kwargs)
    return _write_once(context, rq_queue, job, write, unique, _pending_ttl_until(context, due))


def _check_job_id(job_id: str) -> None:
    """Raise InvalidArguments when RQ would refuse `job_id`."""
    try:
        validate_job_id(job_id)
    except (TypeError, ValueError) as exc:
        raise InvalidArguments(f"job id {job_id!r}: {exc}") from None


def _write_once(
    context: Context, rq_queue: Queue, job: Job, write, unique_key: str | None, unique_ttl: int
) -> Job:
    """Write `job` with `write(pipe)` in a transaction of its own, once, and return it; or, when a pending
    job holds its `unique_key`, write nothing and return that job (else `job` holds it `unique_ttl`
    seconds). A job with dependencies is written deferred in the same transaction unless they have all
    finished (RQ's `setup_dependencies`).
    Refuses an id that names a job not done yet (`_check_id_free`).

    Optimistic: a change to anything read (the unique key and its owner, the job's key, its
    dependencies) aborts and the whole look is taken again. Sent again after a lost reply, a transaction
    would queue the job twice, and could mark it queued while it runs: with the job's key watched,
    redis-py does not send it again but raises WatchError, and the next look finds the job as this call
    wrote it (its creation time, to the microsecond), or holding its unique key, and stops."""
    created = format_time(job.created_at).encode()
    status = job.get_status(refresh=False)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                if unique_key is not None and (owner := pending_owner(pipe, unique_key)) is not None:
                    return Job.fetch(owner, connection=context.redis)
                pipe.watch(job.key)
                found = pipe.hgetall(job.key)
                if found.get(b"created_at") == created:
                    return job
                _check_id_free(job.id, found.get(b"status"))
                rq_queue.setup_dependencies(job, pipeline=pipe)  # watches them; starts the transaction
                if found:
                    _write_over_ended(context, pipe, job, Job.read_or_none(job.id, found, context.redis))
                if unique_key is not None:
                    pipe.set(unique_key, job.id, ex=unique_ttl)
                write(pipe)
                pipe.execute()
                return job
            except redis.WatchError:
                job._status = status  # deferred, or not, by the next look (as RQ's own loop resets it)


def _write_over_ended(context: Context, pipe: Pipeline, job: Job, ended: Job | None) -> None:
    """In `pipe`, write `job` afresh over the ended job of its id (`ended`, None if unreadable): none of
    its fields, dependencies, timeline, registry or index entries are left. The new run is a job of its
    own, which would otherwise be listed as failed, say, and queued again by a requeue of the failed
    jobs."""
    pipe.delete(job.key, context.keys.timeline(job.id), job.dependencies_key)
    job.save(pipeline=pipe)  # as RQ's path may have saved it already (deferred), before the delete
    if job.get_status(refresh=False) == JobStatus.DEFERRED:  # and registered its dependencies
        pipe.sadd(job.dependencies_key, *job._dependency_ids)
    if ended is not None and ended.origin:
        queue = queue_for(context, ended.origin)
        for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.canceled_job_registry):
            pipe.zrem(registry.key, job.id)
        index.remove_job(pipe, context.keys, ended)


def _check_queue(queue: str | None) -> None:
    """InvalidArguments for a queue given at enqueue time that no worker could serve."""
    if queue is not None and (problem := queue_name_problem(queue)):
        raise InvalidArguments(f"queue {queue!r}: {problem}")


def _check_id_free(job_id: str, status: bytes | None) -> None:
    """Raise InvalidArguments when the job that `job_id` (the caller's own) names, of `status`, is not
    done yet: written over, a running job would run again beside itself, and a queued or scheduled one
    would keep its old queue entry or due time and run twice."""
    if status in PENDING_STATES:
        raise InvalidArguments(
            f"job {job_id} is {status.decode()}: enqueue it under that id once it has ended"
        )


def _create(context: Context, rq_queue: Queue, spec: JobSpec, args, kwargs, job_id, depends_on) -> Job:
    """An RQ job (not yet saved) for a run of `spec` with the platform's options."""
    settings = context.settings
    return rq_queue.create_job(
        spec.name,
        args=args,
        kwargs=kwargs,
        timeout=spec.timeout,
        result_ttl=spec.result_ttl if spec.result_ttl is not None else settings.succeeded_ttl,
        failure_ttl=spec.failure_ttl if spec.failure_ttl is not None else settings.failed_ttl,
        description=spec.description or spec.name,
        depends_on=depends_on,
        job_id=job_id,
        retry=rq_retry(spec.retries, spec.backoff),
    )


def _write(
    context: Context, rq_queue: Queue, job: Job, due: datetime | None, source: str, pipe: Pipeline
) -> None:
    """Queue, schedule or defer `job` and record the matching event on its timeline, all in `pipe`."""
    if due is not None:
        schedule(rq_queue, job, due.timestamp(), pipe)
        timeline.append(pipe, context.keys, job.id, *_scheduled_event(context, rq_queue.name, due, source))
    elif job.get_status(refresh=False) == JobStatus.DEFERRED:
        ttl, after = pending_ttl(context), job._dependency_ids
        timeline.record(
            pipe, context.keys, job.id, "deferred", ttl, source=source, queue=rq_queue.name, after=after
        )
    else:
        job.source = source  # the hash tells the `enqueued` event: nothing to store
        # RQ's enqueue_job without its look at dependencies: taken already, in this transaction's watch
        pipe.sadd(rq_queue.redis_queues_keys, rq_queue.key)
        rq_queue._enqueue_job(job, pipeline=pipe)


def _scheduled_event(context: Context, queue_name: str, due: datetime, source: str) -> tuple[str, int]:
    """The timeline entry of a job scheduled for `due`, and how long its timeline must live."""
    entry = timeline.entry("scheduled", source=source, queue=queue_name, due=round(due.timestamp(), 3))
    return entry, _pending_ttl_until(context, due)


def _pending_ttl_until(context: Context, due: datetime | None) -> int:
    """How long what a job due at `due` (None: now) holds while it is not done must live."""
    if due is None:
        return pending_ttl(context)
    return max(1, pending_ttl(context, (due - datetime.now(UTC)).total_seconds()))


BULK_CHUNK = 1000  # jobs per transaction in enqueue_many
COMPRESS_ABOVE = 256  # bytes of job data above which enqueue_many compresses it as RQ does


def enqueue_many(
    calls: Iterable[Call], *, queue: str | None = None, source: str = "code", context: Context | None = None
) -> list[str]:
    """Enqueue many runs at once (`[send_invoice.call(42, "2026-11"), ...]`) and return their ids, in order.

    Every call is checked first, so a bad one writes nothing. Jobs are written a transaction of
    BULK_CHUNK at a time: a chunk is either wholly enqueued or not at all. A run of a job with a `unique`
    key that a pending job (or an earlier call of the list) holds is not enqueued: its id is that job's.
    """
    calls = list(calls)
    _check_queue(queue)
    data = [_data(call) for call in calls]
    for call in calls:
        check_signature(call.spec, call.args, call.kwargs)
    context = context or current()
    # every key rendered before anything is sent: rendering checks the arguments against its formats
    unique = [unique_key(context, call.spec, call.args, call.kwargs) for call in calls]
    ids: list[str] = []
    # A thread sends each chunk while this one prepares the next; a chunk goes only once the one before
    # it has been written, so a failure leaves the chunks before it written and the rest not.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="enqueue_many") as sender:
        sending = None
        for offset in range(0, len(calls), BULK_CHUNK):
            stamp = format_time(rq_now()).encode()  # created and enqueued in the same transaction
            pipe = context.redis.pipeline()
            end = offset + BULK_CHUNK
            chunk = zip(calls[offset:end], data[offset:end], unique[offset:end], strict=True)
            runs = []
            for (spec, queue_name), run in itertools.groupby(
                chunk, key=lambda triple: (triple[0].spec, queue or triple[0].spec.queue)
            ):
                prototype = _prototype(context, spec, queue_name)
                jobs = [_run(call_data, key) for _, call_data, key in run]
                _write_run(context, pipe, prototype, jobs, stamp, source)
                runs.append((prototype, jobs))
            if sending is not None:
                ids.extend(sending.result())
            sending = sender.submit(_send_chunk, pipe, runs)
        if sending is not None:
            ids.extend(sending.result())
    return ids


def _send_chunk(pipe: Pipeline, runs: list) -> list[str]:
    """Execute `pipe`, which writes `runs` ((prototype, jobs) pairs); return the ids its calls became."""
    answers = pipe.execute()
    return [
        job_id
        for (prototype, jobs), answer in zip(runs, answers, strict=True)
        for job_id in prototype.ids(jobs, answer)
    ]


def _run(data: bytes, unique: str | None, job_id: str | None = None) -> tuple:
    """A run of a checked call (its `_data`) as the enqueue scripts take it: its id (`job_id`, else a new
    one), its stored data, and its `unique` key when its job has one."""
    return (job_id or str(uuid.uuid4()), _stored(data), *([] if unique is None else [unique]))


def unique_key(context: Context, spec: JobSpec, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The key a run of `spec` with these arguments holds while it is not done, if `spec` is `unique`;
    TypeError when the arguments do not fit the function, InvalidArguments when they do not fit the
    template's formats."""
    return None if spec.unique is None else context.keys.unique(spec.render(spec.unique, args, kwargs))


def _enqueue_one(
    context: Context,
    call: Call,
    data: bytes,
    queue_name: str,
    due: datetime | None,
    source: str,
    own_id: str | None = None,
) -> Job | None:
    """Enqueue one checked call (its `_data`) now, or scheduled for `due`, in one round trip, and return
    its job as RQ would read it; with `own_id` (the caller's id for it, never with a unique key), None
    when a job of that id exists, for RQ's path to write over it."""
    prototype = _prototype(context, call.spec, queue_name, scheduled=due is not None)
    run = _run(data, unique_key(context, call.spec, call.args, call.kwargs), own_id)
    created = rq_now()
    stamp = format_time(created).encode()
    if due is None:
        answer = _write_run(context, context.redis, prototype, [run], stamp, source)
        id_taken = answer == _ID_TAKEN
    else:
        answer = [_write_scheduled(context, prototype, run, stamp, due, source)]
        id_taken = answer == [None]
    if id_taken:
        return None
    (job_id,) = prototype.ids([run], answer)
    if job_id != run[0]:  # the pending job that holds its unique key
        return Job.fetch(job_id, connection=context.redis)
    return prototype.job(context.redis, job_id, data, created, source)


@dataclass(frozen=True)
class _Prototype:
    """Where runs of one job on one queue go (queued, or scheduled), the script that writes them, and
    RQ's reading of such a job."""

    queue: str
    queue_key: str
    queues_key: str
    registry_key: str | None  # the scheduled registry, for scheduled runs
    unique: bool  # whether each run has a unique key (jobs.catalog's `unique`)
    script: Script  # `_BULK` (or `_SCHEDULE`) with the job's fields that no run changes as literals
    template: Template  # RQ's reading of such a hash: copying it is much cheaper than parsing the hash

    def ids(self, jobs: list, answer) -> list[str]:
        """The ids that `jobs`, written by this prototype's script, became: their own, or, for a unique
        key held by a pending job, that job's (the script's `answer` then lists them)."""
        if not self.unique:
            return [job[0] for job in jobs]
        return [job_id.decode() for job_id in answer]

    def job(self, connection: redis.Redis, job_id: str, data: bytes, created: datetime, source: str) -> Job:
        """The job RQ would read back through `connection` from a run written with these per-job fields
        (prototypes are shared by every connection of the process)."""
        job = self.template.copy()
        job.connection, job._id, job.data = connection, job_id, data
        job.created_at = created
        if self.registry_key is None:  # queued: its hash tells when and by whom (a scheduled job's timeline)
            job.enqueued_at, job.source = created, source
        return job


_prototypes: dict[tuple, _Prototype] = {}


def _prototype(context: Context, spec: JobSpec, queue_name: str, scheduled: bool = False) -> _Prototype:
    """The prototype of `spec` on `queue_name`, queued or `scheduled`, made once per process and settings
    (no I/O): RQ's own `Job.to_dict` of such a job, its empty fields left out as RQ reads them as absent."""
    settings = context.settings
    # the spec itself, not its name: a job registered again under its name gets a prototype of its own
    key = (spec, queue_name, scheduled, settings.succeeded_ttl, settings.failed_ttl)
    if key not in _prototypes:
        rq_queue = queue_for(context, queue_name)
        job = _create(context, rq_queue, spec, [], {}, None, None)
        rq_queue._prepare_for_queue(job)
        if scheduled:  # as RQ's schedule_job leaves it: not enqueued yet
            job._status, job.enqueued_at = JobStatus.SCHEDULED, None
        per_run = ("data", "created_at", "enqueued_at", "origin")  # origin: the script's argument
        fields = {k: v for k, v in job.to_dict().items() if v != "" and k not in per_run}
        encode = context.redis.get_encoder().encode
        encoded = {encode(k): encode(v) for k, v in fields.items()}
        template = Job(job.id, connection=context.redis)
        per_job_fields = {b"data": b"", b"created_at": format_time(rq_now()).encode()}
        template.restore(encoded | {b"origin": encode(rq_queue.name)} | per_job_fields)
        _prototypes[key] = _Prototype(
            rq_queue.name,
            rq_queue.key,
            rq_queue.redis_queues_keys,
            rq_queue.scheduled_job_registry.key if scheduled else None,
            spec.unique is not None,
            _script(context, _SCHEDULE if scheduled else _BULK, encoded, spec.unique is not None),
            Template(template),
        )
    return _prototypes[key]


def _write_run(context: Context, client, prototype: _Prototype, jobs: list, stamp: bytes, source: str) -> Any:
    """Write `jobs` (`_run`s) as queued runs of `prototype` enqueued by `source`, in one script call on
    `client` (a pipeline, which answers when executed, or the client itself, which answers here)."""
    return run_script(
        prototype.script,
        [prototype.queue_key, prototype.queues_key, context.keys.wake(prototype.queue)],
        [source, stamp, prototype.queue, *(v for job in jobs for v in job)],
        client,
    )


def _write_scheduled(
    context: Context, prototype: _Prototype, run: tuple, stamp: bytes, due: datetime, source: str
) -> bytes:
    """Write one run (a `_run`) of `prototype` (a scheduled one), due at `due`, in one script call; return
    the id it became."""
    job_id, data, *unique = run
    entry, ttl = _scheduled_event(context, prototype.queue, due, source)
    keys = [prototype.registry_key, prototype.queues_key, prototype.queue_key, context.keys.timeline(job_id)]
    args = [job_id, data, stamp, prototype.queue, math.ceil(due.timestamp()), entry, ttl, *unique]
    return run_script(prototype.script, keys, args, context.redis)


def _script(context: Context, template: str, fields: dict[bytes, bytes], unique: bool) -> Script:
    """The script `template` (`_BULK` or `_SCHEDULE`) for jobs with `fields` (besides their own), with a
    unique key each if `unique`, registered on the context's client. The fields are literals in its
    source: arguments would cost the server a conversion each, per run. One script per catalogued job and
    settings, whatever the queue (its name is an argument)."""
    literals = ", ".join(_lua_string(item) for pair in fields.items() for item in pair)
    source = (_OWNER_OF if unique else "") + template
    for name, value in (
        ("JOB_PREFIX", _lua_string(Job.redis_job_namespace_prefix.encode())),
        ("FIELDS", literals),
        ("UNIQUE_TTL", str(pending_ttl(context))),
        ("UNIQUE", "true" if unique else "false"),
    ):
        source = source.replace(name, value)
    return context.redis.register_script(source)


_LUA_PLAIN = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.,:;/()[]{}=+*!?@#%&"
)


def _lua_string(value: bytes) -> str:
    """A Lua literal of the string `value`, any byte that is not plain ASCII as a decimal escape."""
    return "'" + "".join(chr(b) if b in _LUA_PLAIN else f"\\{b:03d}" for b in value) + "'"


_ID_TAKEN = -1  # what the enqueue script answers for a job whose id, the caller's own, names another job

# Jobs queued: KEYS the queue, RQ's set of queues, the queue's wake list; ARGV the source, creation time
# and queue name, then per job its id and data (and its unique key, with UNIQUE). Answers how many were
# queued, or with UNIQUE the id each job became; ID_TAKEN when the first job's id (one job, of an id of
# the caller's own) names another job.
_BULK = """
-- a call sent again (a client retrying after its connection failed before the reply) finds its first job
-- as it wrote it, to its creation time: it ran already, all of it, and must not queue its jobs twice
-- (with UNIQUE, each finds it owns its key)
if not UNIQUE and redis.call('EXISTS', JOB_PREFIX .. ARGV[4]) == 1 then
  return redis.call('HGET', JOB_PREFIX .. ARGV[4], 'created_at') == ARGV[2] and 0 or ID_TAKEN
end
local source, stamp, origin = ARGV[1], ARGV[2], ARGV[3]
local ids, became = {}, {}
for i = 4, #ARGV, UNIQUE and 3 or 2 do
  local id = ARGV[i]
  local owner = UNIQUE and owner_of(ARGV[i + 2], id)
  if owner then
    became[#became + 1] = owner
  else
    redis.call('HSET', JOB_PREFIX .. id, 'data', ARGV[i + 1], 'created_at', stamp, 'enqueued_at', stamp,
      'source', source, 'origin', origin, FIELDS)
    if UNIQUE then redis.call('SET', ARGV[i + 2], id, 'EX', UNIQUE_TTL) end
    ids[#ids + 1] = id
    if UNIQUE then became[#became + 1] = id end
  end
end
if #ids > 0 then
  local before = redis.call('RPUSH', KEYS[1], unpack(ids)) - #ids
  -- a queue that was empty may have been dropped from RQ's set of queues; a longer one is in it already
  if before == 0 then redis.call('SADD', KEYS[2], KEYS[1]) end
  -- idle workers wait only while the queue is short; with a backlog every worker is busy or there is none
  local tokens = 0
  for i = 1, math.min(#ids, WAKE_TOKENS - before) do tokens = redis.call('LPUSH', KEYS[3], 1) end
  if tokens > WAKE_TOKENS then redis.call('LTRIM', KEYS[3], 0, WAKE_TOKENS - 1) end
end
if UNIQUE then return became end
return #ids
""".replace("WAKE_TOKENS", str(WAKE_TOKENS)).replace("ID_TAKEN", str(_ID_TAKEN))


# One job scheduled: KEYS the scheduled registry, RQ's set of queues, the queue, the job's timeline; ARGV
# the job id, data, creation time, queue name, due time (epoch second), timeline entry and its ttl (and,
# with UNIQUE, its unique key, held as long). Answers the id the job became, or nil when its id (the
# caller's own) names another job.
_SCHEDULE = """
local job_id = ARGV[1]
local job_key = JOB_PREFIX .. job_id
if redis.call('EXISTS', job_key) == 1 then  -- sent again after a lost reply (done), or another job's id
  return redis.call('HGET', job_key, 'created_at') == ARGV[3] and job_id or false
end
local owner = UNIQUE and owner_of(ARGV[8], job_id)
if owner then return owner end
redis.call('HSET', job_key, 'data', ARGV[2], 'created_at', ARGV[3], 'origin', ARGV[4], FIELDS)
redis.call('ZADD', KEYS[1], ARGV[5], job_id)
redis.call('SADD', KEYS[2], KEYS[3])
redis.call('RPUSH', KEYS[4], ARGV[6])
redis.call('EXPIRE', KEYS[4], ARGV[7])
if UNIQUE then redis.call('SET', ARGV[8], job_id, 'EX', ARGV[7]) end
return job_id
"""

# For jobs with a unique key: who holds `key` for job `job_id`: that very job (an earlier send of this call
# wrote it) or another job not done yet; else nobody (false).
_OWNER_OF = """
local pending = PENDING
local function owner_of(key, job_id)
  local owner = redis.call('GET', key)
  if owner and (owner == job_id or pending[redis.call('HGET', JOB_PREFIX .. owner, 'status')]) then
    return owner
  end
  return false
end
""".replace("PENDING", "{" + ", ".join(f"{state.decode()} = true" for state in sorted(PENDING_STATES)) + "}")


def _data(call: Call) -> bytes:
    """The job's data as RQ's JSONSerializer writes it (function name, instance, args and kwargs), or
    InvalidArguments naming the first argument that JSON cannot carry."""
    try:
        return json.dumps(
            (call.spec.name, None, list(call.args), dict(call.kwargs)), allow_nan=False
        ).encode()
    except (TypeError, ValueError):
        check_json(call.args, call.kwargs)  # raises, naming the argument
        raise


def _stored(data: bytes) -> bytes:
    """`data` as written to the job's hash: compressed only when that pays off (RQ reads both)."""
    return zlib.compress(data) if len(data) > COMPRESS_ABOVE else data
