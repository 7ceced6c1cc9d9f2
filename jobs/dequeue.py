"""Taking a job off the queues without a window in which a dying worker loses it.

RQ pops from several queues with BLPOP, and only later adds the job to the started registry: a worker
killed in between loses the job. Here one script pops from the first non-empty queue (strict priority)
and, in the same step, records a claim in `{p}claims` ("queue key|job id" -> claim time) and reads the
job's hash (no second round trip to fetch it). Starting the job removes the claim in the pipeline that
adds it to the started registry, so at every instant the job is in a queue, a claim or a registry. A
claim older than the orphan timeout whose job is still `queued` belonged to a worker that died in
between; `recover_stale_claims` puts that job back at the front of its queue.

A script cannot block, so an idle worker waits in BLPOP on its queues' wake lists instead: whatever
queues a job through `JobQueue` (jobs.enqueue, enqueue_many, requeues) also pushes a token there, and a
worker that pops one claims at once. Jobs queued by other means (RQ's own scheduler and tools) are
found within IDLE_WAIT.
"""

from __future__ import annotations

import functools
import logging
import time

from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from rq.utils import as_text, now, utcformat

from .connection import Context, current
from .errors import RedisFull
from .keys import Keys

log = logging.getLogger("jobs.worker")
IDLE_WAIT = 1.0  # longest an idle worker waits for a wake token before looking at its queues again
WAKE_TOKENS = 8  # tokens kept per queue: how many idle workers one burst of enqueues wakes at once

# allow-oom: claiming is bookkeeping of a job already accepted, which a full Redis must not stop (see
# bookkeeping.py)
_CLAIM = """#!lua flags=allow-oom
for i = 2, #KEYS do
  local job_id = redis.call('LPOP', KEYS[i])
  if job_id then
    redis.call('ZADD', KEYS[1], ARGV[1], KEYS[i] .. '|' .. job_id)
    return {KEYS[i], job_id, redis.call('HGETALL', ARGV[2] .. job_id)}
  end
end
return false
"""

_RECOVER = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
local requeued = {}
for _, member in ipairs(stale) do
  local split = string.find(member, '|', 1, true)
  local queue_key, job_id = string.sub(member, 1, split - 1), string.sub(member, split + 1)
  if redis.call('HGET', ARGV[2] .. job_id, 'status') == 'queued' then
    redis.call('LPUSH', queue_key, job_id)
    local timeline = ARGV[3] .. job_id
    redis.call('RPUSH', timeline, cjson.encode({at = tonumber(ARGV[4]), event = 'orphaned', stage = 'dequeued'}))
    redis.call('EXPIRE', timeline, ARGV[5])
    table.insert(requeued, job_id)
  end
  redis.call('ZREM', KEYS[1], member)
end
return requeued
"""


def wake(pipe, keys: Keys, queue_name: str) -> None:
    """Queue a token that wakes an idle worker of `queue_name`, in the enqueuer's pipeline."""
    key = keys.wake(queue_name)
    pipe.lpush(key, 1)
    pipe.ltrim(key, 0, WAKE_TOKENS - 1)


def claim_member(queue_key: str, job_id: str) -> str:
    """The claims-set member of `job_id` taken from the queue `queue_key`."""
    return f"{queue_key}|{job_id}"


@functools.cache
def _claim_script(connection):
    """The claim script, registered once per client (a worker dequeues through one client)."""
    return connection.register_script(_CLAIM)


class JobQueue(Queue):
    """RQ's queue, dequeuing through the claim script and waking an idle worker for every job queued."""

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
        """The first job of the first non-empty queue, claimed; None when all are empty and `timeout` is
        None, DequeueTimeout when they stay empty for `timeout` seconds."""
        context = current()
        claim = _claim_script(connection)
        keys = [context.keys.claims, *(queue.key for queue in queues)]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = claim(keys=keys, args=[time.time(), RQJob.redis_job_namespace_prefix])
            if result:
                found = _restore(context, queues, result, job_class, serializer)
                if found:
                    return found
                continue
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, keys[1:])
            wake_keys = [context.keys.wake(queue.name) for queue in queues]
            connection.blpop(wake_keys, timeout=max(0.01, min(IDLE_WAIT, left)))


def _restore(context: Context, queues, claimed, job_class, serializer):
    """The (job, queue) of a claim script's answer: queue key, job id and the job hash's fields (none
    when the job was deleted while queued: then the claim is dropped and None returned). The queue is
    one of `queues`, the worker's own."""
    queue_key, job_id, fields = as_text(claimed[0]), as_text(claimed[1]), claimed[2]
    if not fields:
        context.redis.zrem(context.keys.claims, claim_member(queue_key, job_id))
        return None
    queue = next(queue for queue in queues if queue.key == queue_key)
    job = (job_class or RQJob)(job_id, connection=context.redis, serializer=serializer)
    try:
        job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
    except (NoSuchJobError, ValueError, TypeError) as exc:  # a hash written by hand, not by RQ
        _quarantine(context, queue, job_id, f"the job's hash is not an RQ job: {exc}")
        return None
    return job, queue


def _quarantine(context: Context, queue: Queue, job_id: str, reason: str) -> None:
    """File a job that cannot even be read as failed, with `reason`, and drop its claim."""
    ttl = int(context.settings.failed_ttl)
    with queue.connection.pipeline() as pipe:  # the worker's: bookkeeping, written even when Redis is full
        pipe.zrem(context.keys.claims, claim_member(queue.key, job_id))
        pipe.hset(
            RQJob.key_for(job_id),
            mapping={
                "status": "failed",
                "error": reason[:500],
                "ended_at": utcformat(now()),
                "origin": queue.name,
            },
        )
        # without `data` RQ cannot read the hash at all; a job of no name can be shown and fails again
        pipe.hsetnx(RQJob.key_for(job_id), "data", JSONSerializer.dumps(["?", None, [], {}]))
        pipe.expire(RQJob.key_for(job_id), ttl)
        pipe.zadd(queue.failed_job_registry.key, {job_id: int(time.time()) + ttl})
        pipe.execute()
    log.warning("job %s failed: %s", job_id, reason)


def recover_stale_claims(context: Context, now: float | None = None) -> list[str]:
    """Put back at the front of their queue the jobs claimed more than the orphan timeout ago by a worker
    that died before starting them; return their ids."""
    now = time.time() if now is None else now
    recover = context.redis.register_script(_RECOVER)
    requeued = recover(
        keys=[context.keys.claims],
        args=[
            now - context.settings.orphan_timeout,
            RQJob.redis_job_namespace_prefix,
            context.keys.timeline(""),
            round(now, 3),
            max(context.settings.succeeded_ttl, context.settings.failed_ttl),
        ],
    )
    return [as_text(job_id) for job_id in requeued]
