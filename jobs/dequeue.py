"""Taking a job off the queues and starting it in one step, so no dying worker can lose it in between.

RQ pops from several queues with BLPOP and only later adds the job to the started registry: a worker
killed in between loses the job. Here one script pops from the first non-empty queue (strict priority),
reads the job's hash (no second round trip to fetch it) and starts the job: its state (which is the
"started" event of its timeline) and RQ's started registry (entry "job id:execution id", scored with the
heartbeat deadline). At every instant the job is in a queue or in the started registry; a worker that
dies after the script is found by the orphan sweep when its heartbeats stop. While jobs are short, one
take starts several (jobs.prefetch), and the next take is sent before the worker needs it (`Ahead`);
a job that a dead worker held (its hash counts it `orphaned`) is taken alone (jobs.maintenance).
The same script carries, in front, the worker's records of the ends of the jobs it ran since its last
take (`Rider`s: a `Finish` for a success, a `Failure` for a failure or a retry): one round trip per
take.

A script cannot block, so an idle worker waits in BLPOP on its queues' wake lists instead: whatever
queues a job through `JobQueue` (jobs.enqueue, enqueue_many, requeues) also pushes a token there, and a
worker that pops one takes a job at once. Jobs queued by other means (RQ's own scheduler and tools) are
found within IDLE_WAIT.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import NamedTuple

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import as_text, now

from . import bookkeeping, index
from .connection import Context, current, run_script, send_command
from .errors import RedisFull
from .keys import Keys
from .rqtimes import format_time

log = logging.getLogger("jobs.worker")
IDLE_WAIT = 1.0  # longest an idle worker waits for a wake token before looking at its queues again
WAKE_TOKENS = 8  # tokens kept per queue: how many idle workers one burst of enqueues wakes at once


class Finish(NamedTuple):
    """A succeeded job's end as the take script writes it: what RQ's path writes (`Job._handle_success`,
    then the job's cleanup and its started entry's removal), sent as these values rather than as the
    commands, which cost the worker more to pack and send than the script takes to build them. Like a
    `Failure`, it is written only while the run's started entry is there: once the orphan sweep has
    recovered the run (failed it, or queued it again), a late success must not mark it finished too."""

    job_key: str
    job_id: str
    ended: str  # `ended_at` as RQ writes it
    ttl: int  # seconds the finished job is kept (negative: forever)
    score: int | str  # its finished-registry score: the epoch second it expires, or +inf
    expiry: str  # its index expiry (index.expiry)
    name: str  # its name as indexed (index.indexed_name)
    finished_key: str  # its queue's finished registry
    index_key: str  # its queue's index of finished jobs
    started_key: str  # its queue's started registry
    entry: str  # its entry there


class Failure(NamedTuple):
    """A failed run's end (its job failed, or queued or scheduled for a retry) as the take script writes
    it: its commands, written only while the run's entry in its queue's started registry is there, which
    the same step removes. A failure sent twice (again after a lost reply), or of a run that the orphan
    sweep has recovered meanwhile, writes nothing the second time: it would queue a retry twice."""

    started_key: str
    entry: str


class Sent(IntEnum):
    """What the take script did with a rider."""

    HELD = 0  # nothing written: a success whose job has dependents, which RQ's own path finishes instead
    WRITTEN = 1
    STALE = 2  # nothing written: an end whose run is no longer started (see Finish and Failure)
    DEPENDENTS = 3  # written: a failure whose job has dependents, for RQ's path to enqueue (it does so after)


# KEYS: each rider's job's dependents key, then the queue and started registry of each queue in priority
# order. ARGV: the number of riders, each rider's kind ('finish' or 'fail'), length n, commands (n values:
# bookkeeping.flattened) and end (a Finish: FINISH_FIELDS values; a Failure: 2), then the job key prefix,
# start time (RQ's format), worker name, execution id prefix, heartbeat deadline, and how many jobs to
# take at most. Jobs are taken from the first non-empty queue only (strict priority); the n-th gets the
# execution id prefix .. n. Answers {what was done with each rider (Sent), the first error of a rider's
# command or false, [queue key, {job id, job hash, ...}]}, the job hashes as they were before the start.
# A call from a script costs the server about as much again as the command it runs, so what the jobs of
# one take write to one sorted set (a registry, an index) goes in one call per set, as does the pop.
# allow-oom: finishing and starting are bookkeeping of jobs already accepted, which a full Redis must not
# stop (see bookkeeping.py).
_TAKE = """#!lua flags=allow-oom
RUN_FLATTENED
local already_taken = ALREADY_TAKEN
SENT
local riders, a, sent = tonumber(ARGV[1]), 2, {}
local batches, batched = {}, {}  -- per command and key, the arguments so far, sent in one call
local function batch(command, key)  -- the arguments so far of `command` on `key`, to append to
  local per_key = batches[command]
  if not per_key then
    per_key = {}
    batches[command] = per_key
  end
  local args = per_key[key]
  if not args then
    args = {command, key}
    per_key[key], batched[#batched + 1] = args, args
  end
  return args
end
INDEX_MEMBERS
local function finish(job_key, job_id, ended, ttl, score, expiry, name, finished, index, started, entry)
  note(redis.pcall('HSET', job_key, 'status', 'finished', 'ended_at', ended))
  if tonumber(ttl) > 0 then note(redis.pcall('EXPIRE', job_key, ttl)) end
  local args = batch('ZADD', finished)
  local n = #args
  args[n + 1], args[n + 2] = score, job_id
  add_index_members(batch('ZADD', index), name, ended, expiry, job_id)
  args = batch('ZREM', started)
  args[#args + 1] = entry
end
-- each rider's kind, where its commands start and where its end's values start
local kinds, starts, ends = {}, {}, {}
for r = 1, riders do
  kinds[r], starts[r], ends[r] = ARGV[a], a + 2, a + 2 + tonumber(ARGV[a + 1])
  a = ends[r] + (kinds[r] == 'finish' and FINISH_FIELDS or 2)
end
-- a Finish is written only while its run is still started: which are, one ZMSCORE per started registry
local live, asked = {}, {}  -- per started registry: {ZMSCORE, key, entries...} and the riders asked for
for r = 1, riders do
  if kinds[r] == 'finish' then
    local started = ARGV[ends[r] + FINISH_FIELDS - 2]
    local ask = asked[started]
    if not ask then
      ask = {{'ZMSCORE', started}, {}}
      asked[started] = ask
    end
    ask[1][#ask[1] + 1] = ARGV[ends[r] + FINISH_FIELDS - 1]
    ask[2][#ask[2] + 1] = r
  end
end
for _, ask in pairs(asked) do
  local scores = redis.call(unpack(ask[1]))
  for i = 1, #ask[2] do live[ask[2][i]] = scores[i] ~= false end
end
local any_dependents = riders > 0 and redis.call('EXISTS', unpack(KEYS, 1, riders)) > 0
for r = 1, riders do
  local kind, commands_at, end_at = kinds[r], starts[r], ends[r]
  local dependents = any_dependents and redis.call('EXISTS', KEYS[r]) == 1
  sent[r] = STALE
  if kind == 'finish' then
    if live[r] and dependents then
      sent[r] = HELD
    elseif live[r] then
      run_flattened(commands_at, end_at - 1)
      finish(unpack(ARGV, end_at, end_at + FINISH_FIELDS - 1))
      sent[r] = WRITTEN
    end
  elseif redis.call('ZREM', ARGV[end_at], ARGV[end_at + 1]) == 1 then
    run_flattened(commands_at, end_at - 1)
    sent[r] = dependents and DEPENDENTS or WRITTEN
  end
end
for _, args in ipairs(batched) do note(redis.pcall(unpack(args))) end
local prefix, started, worker, execution = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
local deadline, wanted = ARGV[a + 4], tonumber(ARGV[a + 5])
for i = riders + 1, #KEYS, 2 do
  local taken, entries, alone = {}, {}, false
  while #taken < 2 * wanted and not alone do
    local popped = redis.call('LPOP', KEYS[i], wanted - #taken / 2)
    if not popped then break end
    for p, job_id in ipairs(popped) do
      local job_key = prefix .. job_id
      local fields = redis.call('HGETALL', job_key)
      local status, expires, orphaned = nil, false, false
      for f = 1, #fields, 2 do
        local name = fields[f]
        if name == 'status' then status = fields[f + 1]
        elseif name == 'ttl' then expires = true
        elseif name == 'orphaned' then orphaned = true end
      end
      -- not started: deleted while queued (no fields), or a second entry of a job that is running or has
      -- ended (every path that queues a job marks it queued in the same step; a retried write can queue it
      -- twice)
      if #fields > 0 and not already_taken[status] then
        -- a job that a dead worker held is taken alone: it starts a take of its own, or ends this one
        -- before it; the jobs popped after it go back to the front of the queue, in order
        alone = orphaned
        if alone then
          local back_from = #taken == 0 and p + 1 or p
          for q = #popped, back_from, -1 do redis.call('LPUSH', KEYS[i], popped[q]) end
          if back_from == p then break end
        end
        redis.call('HSET', job_key, 'status', 'started', 'started_at', started, 'worker_name', worker)
        if expires then redis.call('PERSIST', job_key) end
        entries[#entries + 1] = deadline
        entries[#entries + 1] = job_id .. ':' .. execution .. (#taken / 2 + 1)
        taken[#taken + 1] = job_id
        taken[#taken + 1] = fields
        if alone then break end
      end
    end
  end
  if #taken > 0 then
    redis.call('ZADD', KEYS[i + 1], unpack(entries))
    return {sent, failure, KEYS[i], taken}
  end
end
return {sent, failure}
"""
# states of a job whose run has begun: a queue entry of such a job is a second one, and is dropped
_ALREADY_TAKEN = (
    JobStatus.STARTED,
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.STOPPED,
    JobStatus.CANCELED,
)
_TAKE = (
    _TAKE.replace(
        "ALREADY_TAKEN", "{" + ", ".join(f"{status.value} = true" for status in _ALREADY_TAKEN) + "}"
    )
    .replace("RUN_FLATTENED", bookkeeping.RUN_FLATTENED_LUA)
    .replace("INDEX_MEMBERS", index.MEMBERS_LUA)
    .replace("FINISH_FIELDS", str(len(Finish._fields)))
    .replace(
        "SENT", "local " + ", ".join(s.name for s in Sent) + " = " + ", ".join(str(s.value) for s in Sent)
    )
)

# Jobs taken but not run yet, given back to the front of their queues, each only if it is still started
# by this worker. KEYS: per job its queue, started registry and wake list. ARGV: the job key prefix, then
# per job its id and started-registry entry, in the order they were taken.
_GIVE_BACK = """#!lua flags=allow-oom
for j = #KEYS / 3, 1, -1 do
  local job_id, entry = ARGV[2 * j], ARGV[2 * j + 1]
  if redis.call('ZREM', KEYS[3 * j - 1], entry) == 1 then
    redis.call('HSET', ARGV[1] .. job_id, 'status', 'queued')
    redis.call('HDEL', ARGV[1] .. job_id, 'started_at', 'worker_name')
    redis.call('LPUSH', KEYS[3 * j - 2], job_id)
    redis.call('LPUSH', KEYS[3 * j], 1)
    redis.call('LTRIM', KEYS[3 * j], 0, WAKE_TOKENS - 1)
  end
end
""".replace("WAKE_TOKENS", str(WAKE_TOKENS))


@dataclass(frozen=True)
class Taker:
    """The worker that jobs are taken for, as the take script records it on every job it starts."""

    worker_name: str
    heartbeat_ttl: int  # seconds a started job stays in the started registry without a heartbeat
    stop_requested: Callable[[], bool]  # whether an idle wait should end with StopRequested
    make_way: Callable[[], bool] = lambda: False  # whether an idle wait should end with MakeWay


class MakeWay(Exception):  # noqa: N818 (a signal, as RQ's StopRequested)
    """An idle wait for jobs ended: another worker of the process runs a job alone (jobs.alone)."""


@dataclass
class Rider:
    """A worker's end of a job it ran, riding in the next take's script before the take: one round trip
    saved per job. It is written atomically (like a MULTI/EXEC) while its run is still started, unless it
    is a `Finish` and the job has dependents (`dependents_key` exists); an end sent before, or of a run
    the orphan sweep has recovered meanwhile, writes nothing. `sent` says what was done, once sent."""

    end: Finish | Failure
    commands: list  # what else the end writes (bookkeeping.flattened), before a Finish
    dependents_key: str
    sent: Sent | None = None


@dataclass
class Taking:
    """What one thread's takes send and get: riders to send with the next take (and what to call once
    they are sent), how many jobs to take at most, and the jobs taken beyond the one `dequeue_any`
    returned (started, to be run next)."""

    taker: Taker
    riders: list[Rider]
    sent: Callable[[], None]
    wanted: int = 1
    extra: list = field(default_factory=list)


_taking = threading.local()


@contextmanager
def taking_for(
    taker: Taker, riders: list[Rider] | None = None, sent: Callable[[], None] = lambda: None, wanted: int = 1
):
    """Within the block, this thread's `JobQueue.dequeue_any` starts the jobs it takes (up to `wanted` at
    once) as `taker`'s, and sends `riders` with its first take, calling `sent` right after (before any
    wait for a job); the block gets the `Taking`."""
    _taking.current = Taking(taker, list(riders or ()), sent, wanted)
    try:
        yield _taking.current
    finally:
        del _taking.current


def send(connection, riders: list[Rider]) -> None:
    """Send `riders` on their own, with no take."""
    _call(connection, riders, None)


@dataclass(frozen=True)
class _Take:
    """One take's request: its keys and arguments, and the start its jobs get."""

    keys: list[str]
    args: list
    started: datetime
    execution_prefix: str


_PREFIX_LENGTH = 12  # hex digits of a take's execution id prefix; the job's place in the take follows


def _request(queues, taker: Taker, wanted: int) -> _Take:
    # an execution id only tells apart the runs of one job: 48 random bits are plenty
    started, execution_prefix = now(), uuid.uuid4().hex[:_PREFIX_LENGTH]
    keys = [key for queue in queues for key in (queue.key, started_key(queue.name))]
    args = [RQJob.redis_job_namespace_prefix, format_time(started), taker.worker_name, execution_prefix]
    return _Take(keys, [*args, heartbeat_deadline(taker.heartbeat_ttl), wanted], started, execution_prefix)


def _script_call(riders: list[Rider], take: _Take | None) -> tuple[list, list]:
    """The take script's keys and arguments for `riders` in front of `take` (None: no take)."""
    riding = [
        part for rider in riders for part in (_kind(rider), len(rider.commands), *rider.commands, *rider.end)
    ]
    keys = [rider.dependents_key for rider in riders] + (take.keys if take else [])
    return keys, [len(riders), *riding, *(take.args if take else ())]


def _kind(rider: Rider) -> str:
    return "finish" if isinstance(rider.end, Finish) else "fail"


def _call(connection, riders: list[Rider], take: _Take | None) -> list:
    """Run the take script with `riders` in front of `take`; return the take's answer (empty: none)."""
    keys, args = _script_call(riders, take)
    return _answered(riders, run_script(_take_script(connection), keys, args, connection))


def _answered(riders: list[Rider], answer: list) -> list:
    """Note in `riders` what was done with each; return the take's part of `answer` (empty: none)."""
    for rider, sent in zip(riders, answer[0], strict=True):
        rider.sent = Sent(sent)
    if answer[1]:
        log.warning("a command of a job's end failed: %s", as_text(answer[1]))
    return answer[2:]


def place_in_take(execution_id: str) -> tuple[str, int]:
    """Which take started a run (its execution id prefix) and where its job stood in it (1 for the first;
    0 for a run that no take started)."""
    prefix, place = execution_id[:_PREFIX_LENGTH], execution_id[_PREFIX_LENGTH:]
    return (prefix, int(place)) if place.isdigit() else (execution_id, 0)


def _taken(context: Context, queues, take: _Take, result: list, job_class, taker: Taker) -> list:
    """The jobs (job, queue) that `take` started, from its part of the script's answer."""
    if not result:
        return []
    queue = next(queue for queue in queues if queue.key == as_text(result[0]))
    taken, prefix = result[1], take.execution_prefix
    jobs = [
        _restore(
            context, queue, taken[n], taken[n + 1], job_class, taker, take.started, f"{prefix}{n // 2 + 1}"
        )
        for n in range(0, len(taken), 2)
    ]
    return [(job, queue) for job in jobs if job is not None]


class Ahead:
    """A take sent before its worker needs the jobs, read when it does: the server runs it while the
    worker runs the jobs it holds. Its riders and jobs are those of any take: the riders are written and
    the jobs started when the server runs it, atomically. Until its answer is read nothing beats for its
    jobs, so it is read by whoever comes first: the worker when it runs out of jobs, or its heartbeat
    thread at the next beat (which then holds the jobs for the worker, or gives them back)."""

    def __init__(self, connection, queues, taker: Taker, riders: list[Rider], wanted: int):
        self.riders = riders
        self._queues, self._taker = queues, taker
        self._take = _request(queues, taker, wanted)
        self._pool = connection.connection_pool
        self._connection = None
        self._lock = threading.Lock()
        self._read = False
        keys, args = _script_call(riders, self._take)
        try:
            self._connection = self._pool.get_connection()
            send_command(self._connection, "EVALSHA", _take_script(connection).sha, len(keys), *keys, *args)
        except redis.RedisError as exc:
            self._fail(exc)

    def read(self, context: Context, job_class, hold: Callable[[list], None]) -> None:
        """Read the answer, once whoever calls: note in the riders whether each was written, and pass
        the jobs taken to `hold`. On an error the riders stay unsent (so are sent again, as a retried
        take would send them) and any job the take started is left to the orphan sweep."""
        with self._lock:
            if self._read:
                return
            self._read = True
            try:
                answer = self._connection.read_response()
            except redis.RedisError as exc:
                self._fail(exc)
                return
            self._pool.release(self._connection)
            result = _answered(self.riders, answer)
            hold(_taken(context, self._queues, self._take, result, job_class, self._taker))

    def _fail(self, exc: redis.RedisError) -> None:
        self._read = True
        if self._connection is not None:
            self._connection.disconnect()
            self._pool.release(self._connection)
        if not isinstance(exc, redis.exceptions.NoScriptError):  # after a restart: the next take loads it
            log.warning("a take sent ahead failed: %s", exc)


def give_back(connection, jobs: list) -> None:
    """Put `jobs` ((job, queue) pairs taken and started by this worker but not run) back at the front of
    their queues, in the same order, as queued jobs; a job that is no longer started by this worker (the
    orphan sweep recovered it) is left alone."""
    if not jobs:
        return
    keys, args = [], [RQJob.redis_job_namespace_prefix]
    for job, queue in jobs:
        keys += [queue.key, started_key(queue.name), current().keys.wake(queue.name)]
        args += [job.id, job.execution.composite_key]
    _give_back_script(connection)(keys=keys, args=args)


def wake(pipe, keys: Keys, queue_name: str) -> None:
    """Queue a token that wakes an idle worker of `queue_name`, in the enqueuer's pipeline."""
    key = keys.wake(queue_name)
    pipe.lpush(key, 1)
    pipe.ltrim(key, 0, WAKE_TOKENS - 1)


@functools.cache
def _take_script(connection):
    """The take script, registered once per client (a worker dequeues through one client)."""
    return connection.register_script(_TAKE)


@functools.cache
def _give_back_script(connection):
    return connection.register_script(_GIVE_BACK)


def heartbeat_deadline(ttl: int) -> int:
    """The started-registry score of a job whose heartbeat holds for `ttl` seconds from now, never less.
    Whole seconds, as RQ scores its registries: a small sorted set stores an integer score as an integer,
    where a fractional one costs the server a float parse for every entry an insert walks past."""
    return math.ceil(time.time()) + ttl


def started_key(queue_name: str) -> str:
    """The key of RQ's started registry of `queue_name` (building RQ's registry object is slow)."""
    return StartedJobRegistry.key_template.format(queue_name)


class JobQueue(Queue):
    """RQ's queue, dequeuing through the take script and waking an idle worker for every job queued."""

    def acquire_maintenance_lock(self) -> bool:
        """RQ's lock that keeps two cleaners of the queue's registries apart. A full Redis refuses to write
        it; cleaning, which only deletes and so makes room, then goes ahead without it."""
        try:
            return super().acquire_maintenance_lock()
        except RedisFull:
            return True

    @functools.cached_property
    def started_job_registry(self) -> StartedJobRegistry:
        """RQ's, made once per queue: RQ builds it again (and checks its serializer) on every use, as a
        worker does for every job."""
        return super().started_job_registry

    def push_job_id(self, job_id, pipeline=None, at_front=False):
        """RQ's push of a job id on the queue, with a wake token in the same pipeline."""
        if pipeline is None:
            with self.connection.pipeline() as own:
                self.push_job_id(job_id, own, at_front)
                own.execute()
            return
        super().push_job_id(job_id, pipeline, at_front)
        wake(pipeline, current().keys, self.name)

    @classmethod
    def dequeue_any(
        cls, queues, timeout, connection, job_class=None, serializer=None, death_penalty_class=None
    ):
        """The first job of the first non-empty queue, started for the taker of `taking_for` (with up to
        `wanted - 1` more of the same queue, in its `extra`); None when all are empty and `timeout` is
        None, DequeueTimeout when they stay empty for `timeout` seconds."""
        context, taking = current(), _taking.current
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            take = _request(queues, taking.taker, taking.wanted)
            result = _call(connection, taking.riders, take)
            queued_by_rq = any(rider.sent in (Sent.HELD, Sent.DEPENDENTS) for rider in taking.riders)
            if taking.riders:
                taking.riders = []
                taking.sent()
            if not result and queued_by_rq:
                continue  # RQ's path may just have queued dependents, after this take looked
            if result:
                jobs = _taken(context, queues, take, result, job_class, taking.taker)
                if jobs:
                    taking.extra = jobs[1:]
                    return jobs[0]
                continue
            if deadline is None:
                return None
            if taking.taker.stop_requested():  # asked from another thread: no signal handler raises it here
                raise StopRequested()
            if taking.taker.make_way():
                raise MakeWay()
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [queue.key for queue in queues])
            wake_keys = [context.keys.wake(queue.name) for queue in queues]
            connection.blpop(wake_keys, timeout=max(0.01, min(IDLE_WAIT, left)))


def _restore(context: Context, queue, job_id, fields, job_class, taker: Taker, started, execution_id):
    """The job a take script started: its id and its hash's fields as they were before the start, read
    as a `job_class` (jobs.rqjob.Job) carrying its execution. None when the hash is not an RQ job:
    it is filed as failed."""
    execution = Execution(execution_id, as_text(job_id), queue.connection, taker.worker_name)
    execution.created_at = execution.last_heartbeat = started
    try:
        job = job_class.read(
            execution.job_id, dict(zip(fields[::2], fields[1::2], strict=True)), context.redis
        )
    except (NoSuchJobError, ValueError, TypeError) as exc:  # a hash written by hand, not by RQ
        quarantine(context, queue, execution, f"the job's hash is not an RQ job: {exc}")
        return None
    job._status = JobStatus.STARTED
    job.started_at = job.last_heartbeat = started
    job.worker_name = taker.worker_name
    job.execution = execution
    return job


def quarantine(context: Context, queue: Queue, execution: Execution, reason: str) -> None:
    """File a started job that cannot even be read as failed, with `reason`."""
    job_key, ttl = RQJob.key_for(execution.job_id), int(context.settings.failed_ttl)
    with queue.connection.pipeline() as pipe:  # the worker's: bookkeeping, written even when Redis is full
        pipe.zrem(started_key(queue.name), execution.composite_key)
        pipe.hset(
            job_key,
            mapping={
                "status": "failed",
                "error": reason[:500],
                "ended_at": format_time(now()),
                "origin": queue.name,
            },
        )
        # without `data` RQ cannot read the hash at all; a job of no name can be shown and fails again
        pipe.hsetnx(job_key, "data", JSONSerializer.dumps(["?", None, [], {}]))
        pipe.expire(job_key, ttl)
        pipe.zadd(queue.failed_job_registry.key, {execution.job_id: int(time.time()) + ttl})
        pipe.execute()
    log.warning("job %s failed: %s", execution.job_id, reason)
