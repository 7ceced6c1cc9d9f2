"""Taking a job off the queues and starting it in one step, so no dying worker can lose it in between.

RQ pops from several queues with BLPOP and only later adds the job to the started registry: a worker
killed in between loses the job. Here one script pops from the first non-empty queue (strict priority),
reads the job's hash (no second round trip to fetch it) and starts the job: its state (which is the
"started" event of its timeline) and RQ's started registry (entry "job id:execution id", scored with the
heartbeat deadline). At every instant the job is in a queue or in the started registry; a worker that
dies after the script is found by the orphan sweep when its heartbeats stop. The same script carries, in front,
the worker's record of the end of its previous job (a `Rider`): one round trip per job.

A script cannot block, so an idle worker waits in BLPOP on its queues' wake lists instead: whatever
queues a job through `JobQueue` (jobs.enqueue, enqueue_many, requeues) also pushes a token there, and a
worker that pops one takes a job at once. Jobs queued by other means (RQ's own scheduler and tools) are
found within IDLE_WAIT.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import as_text, now, utcformat

from .connection import Context, current
from .errors import RedisFull
from .keys import Keys

log = logging.getLogger("jobs.worker")
IDLE_WAIT = 1.0  # longest an idle worker waits for a wake token before looking at its queues again
WAKE_TOKENS = 8  # tokens kept per queue: how many idle workers one burst of enqueues wakes at once

# KEYS: the rider's key (when it has commands), then the queue and started registry of each queue in
# priority order. ARGV: the rider's length n and its commands (bookkeeping.flattened), then the job key
# prefix, start time (RQ's format), worker name, execution id, heartbeat deadline. Answers {rider committed (1|0), its first error or false, [queue key, job id, job hash]}.
# allow-oom: finishing and starting are bookkeeping of jobs already accepted, which a full Redis must not
# stop (see bookkeeping.py).
_TAKE = """#!lua flags=allow-oom
local riding, first, committed, failure = tonumber(ARGV[1]), 1, 0, false
if riding > 0 then
  first = 2
  if redis.call('EXISTS', KEYS[1]) == 0 then
    local i = 2
    while i <= riding + 1 do
      local count = tonumber(ARGV[i])
      local reply = redis.pcall(unpack(ARGV, i + 1, i + count))  -- on past a failing command, as EXEC goes
      if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
      i = i + count + 1
    end
    committed = 1
  end
end
local a = riding + 1
for i = first, #KEYS, 2 do
  local job_id = redis.call('LPOP', KEYS[i])
  while job_id do
    local job_key = ARGV[a + 1] .. job_id
    local fields = redis.call('HGETALL', job_key)
    if #fields > 0 then
      redis.call('HSET', job_key, 'status', 'started', 'started_at', ARGV[a + 2], 'last_heartbeat', ARGV[a + 2],
        'worker_name', ARGV[a + 3])
      for f = 1, #fields, 2 do
        if fields[f] == 'ttl' then redis.call('PERSIST', job_key) end
      end
      redis.call('ZADD', KEYS[i + 1], ARGV[a + 5], job_id .. ':' .. ARGV[a + 4])
      return {committed, failure, KEYS[i], job_id, fields}
    end
    job_id = redis.call('LPOP', KEYS[i])  -- deleted while queued: nothing to start
  end
end
return {committed, failure}
"""


@dataclass(frozen=True)
class Taker:
    """The worker that jobs are taken for, as the take script records it on every job it starts."""

    worker_name: str
    heartbeat_ttl: int  # seconds a started job stays in the started registry without a heartbeat
    stop_requested: Callable[[], bool]  # whether an idle wait should end with StopRequested


@dataclass
class Rider:
    """Commands that ride in the next take's script, before the take: a worker's finish of the job it ran
    last, one round trip saved per job. They run (atomically, like a MULTI/EXEC) unless `unless_key`
    exists; `committed` says whether they ran, once sent."""

    commands: list  # bookkeeping.flattened
    unless_key: str
    committed: bool | None = None


_taking = threading.local()


@contextmanager
def taking_for(taker: Taker, rider: Rider | None = None):
    """Within the block, this thread's `JobQueue.dequeue_any` starts every job it takes as `taker`'s, and
    sends `rider` with its first take."""
    _taking.taker, _taking.rider = taker, rider
    try:
        yield
    finally:
        del _taking.taker, _taking.rider


def send(connection, rider: Rider) -> None:
    """Send `rider` on its own (its worker takes no more jobs)."""
    _ride(connection, [], [], rider)


def _ride(connection, keys: list[str], take_args: list, rider: Rider | None) -> list:
    """Call the take script with `rider` (if any) in front; return the take's answer (empty: none)."""
    riding = [] if rider is None else [rider.unless_key]
    commands = [] if rider is None else rider.commands
    answer = _take_script(connection)(keys=riding + keys, args=[len(commands), *commands, *take_args])
    if rider is not None:
        rider.committed = bool(answer[0])
        if answer[1]:
            log.warning("a command of a job's finish failed: %s", as_text(answer[1]))
    return answer[2:]


def wake(pipe, keys: Keys, queue_name: str) -> None:
    """Queue a token that wakes an idle worker of `queue_name`, in the enqueuer's pipeline."""
    key = keys.wake(queue_name)
    pipe.lpush(key, 1)
    pipe.ltrim(key, 0, WAKE_TOKENS - 1)


@functools.cache
def _take_script(connection):
    """The take script, registered once per client (a worker dequeues through one client)."""
    return connection.register_script(_TAKE)


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
        """The first job of the first non-empty queue, started for the taker of `taking_for`; None when all
        are empty and `timeout` is None, DequeueTimeout when they stay empty for `timeout` seconds."""
        context, taker = current(), _taking.taker
        keys = [key for queue in queues for key in (queue.key, started_key(queue.name))]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            started, execution_id = now(), uuid.uuid4().hex
            take_args = [
                RQJob.redis_job_namespace_prefix,
                utcformat(started),
                taker.worker_name,
                execution_id,
                time.time() + taker.heartbeat_ttl,
            ]
            result = _ride(connection, keys, take_args, _taking.rider)
            _taking.rider = None  # sent
            if result:
                execution = Execution(execution_id, as_text(result[1]), connection, taker.worker_name)
                execution.created_at = execution.last_heartbeat = started
                found = _restore(context, queues, result, execution, job_class)
                if found:
                    return found
                continue
            if deadline is None:
                return None
            if taker.stop_requested():  # asked from another thread: no signal handler raises it here
                raise StopRequested()
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [queue.key for queue in queues])
            wake_keys = [context.keys.wake(queue.name) for queue in queues]
            connection.blpop(wake_keys, timeout=max(0.01, min(IDLE_WAIT, left)))


def _restore(context: Context, queues, taken, execution: Execution, job_class):
    """The (job, queue) of a take script's answer: queue key, job id and the job hash's fields as they
    were before the start, read as a `job_class` (jobs.execution.Job) carrying its `execution`. None when
    the hash is not an RQ job: it is filed as failed."""
    queue_key, job_id, fields = as_text(taken[0]), execution.job_id, taken[2]
    queue = next(queue for queue in queues if queue.key == queue_key)
    try:
        job = job_class.blank(job_id, context.redis)
        job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
    except (NoSuchJobError, ValueError, TypeError) as exc:  # a hash written by hand, not by RQ
        _quarantine(context, queue, execution, f"the job's hash is not an RQ job: {exc}")
        return None
    job._status = JobStatus.STARTED
    job.started_at = job.last_heartbeat = execution.created_at
    job.worker_name = execution.worker_name
    job.execution = execution
    return job, queue


def _quarantine(context: Context, queue: Queue, execution: Execution, reason: str) -> None:
    """File a started job that cannot even be read as failed, with `reason`."""
    job_key, ttl = RQJob.key_for(execution.job_id), int(context.settings.failed_ttl)
    with queue.connection.pipeline() as pipe:  # the worker's: bookkeeping, written even when Redis is full
        pipe.zrem(started_key(queue.name), execution.composite_key)
        pipe.hset(
            job_key,
            mapping={
                "status": "failed",
                "error": reason[:500],
                "ended_at": utcformat(now()),
                "origin": queue.name,
            },
        )
        # without `data` RQ cannot read the hash at all; a job of no name can be shown and fails again
        pipe.hsetnx(job_key, "data", JSONSerializer.dumps(["?", None, [], {}]))
        pipe.expire(job_key, ttl)
        pipe.zadd(queue.failed_job_registry.key, {execution.job_id: int(time.time()) + ttl})
        pipe.execute()
    log.warning("job %s failed: %s", execution.job_id, reason)
