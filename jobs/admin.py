"""Operator actions that change job state, each atomic per batch and written to the audit stream."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline
from rq.exceptions import DeserializationError
from rq.job import JobStatus

from . import catalog, index, locks, recurring, timeline
from .connection import Context
from .enqueue import queue_for, queue_names, unique_key
from .errors import InvalidArguments, JobNotFound, JobsError
from .rqjob import Job, pending_owner, pending_ttl

BATCH = 500
AUDIT_LENGTH = 10_000
Progress = Callable[[int], None]


def default_actor() -> str:
    """Who acts from this shell: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def audit(context: Context, actor: str, action: str, target: str, address: str = "cli", **details) -> None:
    """Append an operator action to the capped audit stream."""
    entry = {
        "at": str(round(time.time(), 3)),
        "actor": actor,
        "action": action,
        "target": target,
        "address": address,
    }
    if details:
        entry["details"] = json.dumps(details, default=str)
    context.redis.xadd(context.keys.audit, entry, maxlen=AUDIT_LENGTH, approximate=True)


def failed_ids(context: Context) -> list[tuple[str, str]]:
    """(queue, job id) of every failed job."""
    return [
        (name, job_id)
        for name in queue_names(context)
        for job_id in queue_for(context, name).failed_job_registry.get_job_ids(cleanup=False)
    ]


def _target(ids: Iterable[str] | None) -> str:
    if ids is None:
        return "all"
    ids = list(ids)
    return ",".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def _resolve(context: Context, ids: Iterable[str] | None) -> list[tuple[str, str]]:
    if ids is None:
        return failed_ids(context)
    jobs = Job.fetch_many(list(ids), connection=context.redis)
    return [(job.origin, job.id) for job in jobs if job is not None]


NOT_FAILED = "it is not failed (any more)"
UNKNOWN = "no job with this id (it may have expired)"


@dataclass(frozen=True)
class Changed:
    """What an action on failed jobs did: how many jobs it changed, and why it left each job it was
    given and did not change (by job id)."""

    count: int
    left: dict[str, str] = field(default_factory=dict)


Refusals = Callable[[Pipeline, list[Job]], dict[str, str]]


def _each_batch(
    context: Context,
    targets: list[tuple[str, str]],
    apply,
    progress: Progress | None,
    refusals: Refusals | None = None,
) -> Changed:
    """Run `apply(pipe, queue, job)` for the targets still in their failed registry, except those that
    `refusals(pipe, jobs)`, asked before the transaction starts, gives a reason to leave; a batch per
    transaction, retried when a failed registry, or a key `refusals` watched, changed under it. The
    others are left, NOT_FAILED."""
    count, left = 0, {}
    for offset in range(0, len(targets), BATCH):
        batch = targets[offset : offset + BATCH]
        registries = {name: queue_for(context, name).failed_job_registry.key for name, _ in batch}
        with context.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*registries.values())
                    present = [(n, i) for n, i in batch if pipe.zscore(registries[n], i) is not None]
                    jobs = Job.fetch_many([i for _, i in present], connection=context.redis)
                    found = [
                        (name, job) for (name, _), job in zip(present, jobs, strict=True) if job is not None
                    ]
                    refused = refusals(pipe, [job for _, job in found]) if refusals else {}
                    pipe.multi()
                    for name, job in found:
                        if job.id not in refused:
                            apply(pipe, queue_for(context, name), job)
                    pipe.execute()
                    changed = {job.id for _, job in found} - refused.keys()
                    count += len(changed)
                    left |= {i: NOT_FAILED for _, i in batch if i not in changed} | refused
                    break
                except redis.WatchError:
                    continue
        if progress:
            progress(len(batch))
    return Changed(count, left)


def _on_failed(
    context: Context,
    action: str,
    ids: Iterable[str] | None,
    actor: str,
    address: str,
    progress: Progress | None,
    apply,
    refusals: Refusals | None = None,
) -> Changed:
    """`_each_batch` on failed jobs (these ids, each once, or all when None), audited as `action` when it
    changed any."""
    ids = None if ids is None else list(dict.fromkeys(ids))
    targets = _resolve(context, ids)
    found = {job_id for _, job_id in targets}
    unknown = {job_id: UNKNOWN for job_id in ids or () if job_id not in found}
    changed = _each_batch(context, targets, apply, progress, refusals)
    changed = Changed(changed.count, unknown | changed.left)
    if changed.count:  # an action that changed nothing (all refused, or gone) writes nothing
        audit(context, actor, action, _target(ids), address, count=changed.count)
    return changed


def requeue_failed(
    context: Context,
    ids: Iterable[str] | None = None,
    actor: str | None = None,
    progress: Progress | None = None,
    address: str = "cli",
) -> Changed:
    """Put failed jobs (these ids, or all when None) back on their queues. A job with a `unique` key
    takes it, and stays failed while another job not done yet holds it, or another job requeued with it
    takes it: both would run."""
    actor = actor or default_actor()
    unique_keys: dict[str, str] = {}  # job id -> the unique key it takes, of the batch's jobs requeued

    def refusals(pipe: Pipeline, jobs: list[Job]) -> dict[str, str]:
        unique_keys.clear()
        holders: dict[str, str] = {}  # unique key -> the job that holds it: pending, or requeued here
        refused = {}
        for job in jobs:
            key = _unique_key(context, job)
            if key is None:
                continue
            if key not in holders:
                holders[key] = pending_owner(pipe, key) or job.id
            if holders[key] == job.id:
                unique_keys[job.id] = key
            else:
                refused[job.id] = f"job {holders[key]}, not done yet, holds its unique key {key}"
        return refused

    def requeue(pipe, queue, job: Job) -> None:
        pipe.zrem(queue.failed_job_registry.key, job.id)
        # kept while it waits and runs: its failure set it to expire with the failure's retention
        pipe.persist(job.key)
        pipe.persist(job.dependents_key)
        pipe.persist(job.dependencies_key)
        index.remove_job(pipe, context.keys, job)
        job.started_at = job.ended_at = None
        job.set_status(JobStatus.QUEUED, pipeline=pipe)
        queue._enqueue_job(job, pipeline=pipe)
        if job.id in unique_keys:
            pipe.set(unique_keys[job.id], job.id, ex=pending_ttl(context))
        timeline.record(pipe, context.keys, job.id, "requeued", pending_ttl(context), by=actor)

    return _on_failed(context, "requeue-failed", ids, actor, address, progress, requeue, refusals)


def _unique_key(context: Context, job: Job) -> str | None:
    """The key of `job`'s `unique` template, if its catalogued job has one and its arguments fill it."""
    try:
        return unique_key(context, catalog.get(job.job_name), job.args, job.kwargs)
    except (JobsError, DeserializationError, KeyError, IndexError, TypeError, ValueError):
        return None


def delete_failed(
    context: Context,
    ids: Iterable[str] | None = None,
    actor: str | None = None,
    progress: Progress | None = None,
    address: str = "cli",
) -> Changed:
    """Delete failed jobs (these ids, or all when None) with their timelines."""
    actor = actor or default_actor()

    def delete(pipe, queue, job: Job) -> None:
        job.delete(pipeline=pipe, remove_from_queue=False)
        pipe.delete(context.keys.timeline(job.id))
        index.remove_job(pipe, context.keys, job)

    return _on_failed(context, "delete-failed", ids, actor, address, progress, delete)


def trigger_schedule(context: Context, schedule_id: str, actor: str | None = None, address: str = "cli"):
    """Run a schedule now, outside its timing; return the job."""
    job = recurring.trigger(context, schedule_id)
    audit(context, actor or default_actor(), "trigger-schedule", schedule_id, address, job=job.id)
    return job


def pause_schedule(
    context: Context,
    schedule_id: str,
    until: float | None = None,
    actor: str | None = None,
    address: str = "cli",
) -> recurring.Schedule:
    """Pause a schedule until the epoch time `until`, or indefinitely; its fires meanwhile are skipped."""
    schedule = recurring.set_paused(context, schedule_id, recurring.FOREVER if until is None else until)
    audit(context, actor or default_actor(), "pause-schedule", schedule_id, address, until=until)
    return schedule


def resume_schedule(
    context: Context, schedule_id: str, actor: str | None = None, address: str = "cli"
) -> recurring.Schedule:
    """Resume a paused schedule from its next fire time (no catch-up of the paused fires)."""
    schedule = recurring.set_paused(context, schedule_id, None)
    audit(context, actor or default_actor(), "resume-schedule", schedule_id, address)
    return schedule


def remove_schedule(
    context: Context, schedule_id: str, actor: str | None = None, address: str = "cli"
) -> None:
    """Delete a schedule and its history; runs already enqueued stay."""
    recurring.remove(context, schedule_id)
    audit(context, actor or default_actor(), "remove-schedule", schedule_id, address)


def release_lock(context: Context, name: str, actor: str | None = None, address: str = "cli") -> bool:
    """Release a lock whoever holds it; True if it was held."""
    holder = locks.holder_of(context.redis.get(context.keys.lock(name)))
    released = locks.force_release(context, name)
    audit(
        context,
        actor or default_actor(),
        "release-lock",
        name,
        address,
        holder=holder.describe() if holder else None,
    )
    return released


def cancel_job(context: Context, job_id: str, actor: str | None = None, address: str = "cli") -> None:
    """Cancel a job that has not started (queued, scheduled or deferred): it will not run, and is kept
    as long as a failed one."""
    actor = actor or default_actor()
    waiting = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
    cancel = functools.partial(_cancel, context, by=actor)
    _change(context, job_id, waiting, "only a job that has not started can be canceled", cancel)
    audit(context, actor, "cancel-job", job_id, address)


def _cancel(context: Context, pipe, job: Job, **event) -> None:
    """Cancel `job` in `pipe` (a transaction), recording `event`'s details on its timeline."""
    job.cancel(pipeline=pipe)
    kept = job.failure_ttl if job.failure_ttl is not None else context.settings.failed_ttl
    queue_for(context, job.origin).canceled_job_registry.add(job, ttl=kept, pipeline=pipe)  # RQ's: now
    if kept > 0:  # RQ keeps a canceled job forever
        pipe.expire(job.key, kept)
    _leave_dependencies(pipe, job)
    timeline.record(pipe, context.keys, job.id, "canceled", pending_ttl(context), **event)


def cancel_stranded(context: Context) -> list[str]:
    """Cancel the deferred jobs that can never run, a job they wait for being gone (deleted, or expired
    with its retention) or canceled: RQ leaves them deferred, and kept, forever. Returns their ids."""
    canceled = []
    for name in queue_names(context):
        deferred = queue_for(context, name).deferred_job_registry.get_job_ids(cleanup=False)
        jobs = [job for job in Job.fetch_many(deferred, connection=context.redis) if job is not None]
        for job, why in _never_running(context, jobs).items():
            cancel = functools.partial(_cancel, context, by="maintenance", reason=why)
            with contextlib.suppress(InvalidArguments, JobNotFound):  # it has moved on meanwhile
                _change(context, job.id, (JobStatus.DEFERRED,), "it is no longer deferred", cancel)
                canceled.append(job.id)
    return canceled


def _never_running(context: Context, jobs: list[Job]) -> dict[Job, str]:
    """Of the deferred `jobs`, those that can never run, each with why (a job it waits for is gone or
    canceled); the states of the jobs they wait for read in one round trip."""
    parents = sorted({parent_id for job in jobs for parent_id in job._dependency_ids})
    with context.redis.pipeline(transaction=False) as pipe:
        for parent_id in parents:
            pipe.hget(Job.key_for(parent_id), "status")
        states = dict(zip(parents, pipe.execute(), strict=True))
    stranded = {}
    for job in jobs:
        for parent_id in job._dependency_ids:
            state = states[parent_id]
            if state is None or state == JobStatus.CANCELED.value.encode():
                stranded[job] = f"job {parent_id}, which it waits for, is {'canceled' if state else 'gone'}"
                break
    return stranded


def delete_job(context: Context, job_id: str, actor: str | None = None, address: str = "cli") -> None:
    """Delete a job in any state that is not running, with its timeline."""

    def delete(pipe, job: Job) -> None:
        job.delete(pipeline=pipe, remove_from_queue=True)
        _leave_dependencies(pipe, job)
        pipe.delete(context.keys.timeline(job.id))
        index.remove_job(pipe, context.keys, job)

    not_running = tuple(status for status in JobStatus if status != JobStatus.STARTED)
    _change(context, job_id, not_running, "it can be deleted once it has ended", delete)
    audit(context, actor or default_actor(), "delete-job", job_id, address)


def _leave_dependencies(pipe, job: Job) -> None:
    """Take `job` off its dependencies' lists of dependents: one that finishes as the transaction commits
    would queue it (RQ's path writes the dependent back, queued), and a change to the list aborts that."""
    for parent_id in job._dependency_ids:
        pipe.srem(Job.dependents_key_for(parent_id), job.id)


def _change(context: Context, job_id: str, allowed: tuple, refusal: str, change) -> None:
    """Apply `change(pipe, job)` in one transaction if the job's state is one of `allowed`; a state change
    racing with it (a worker starting the job) aborts the transaction, which is then tried again."""
    key = Job.key_for(job_id)
    with context.redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                job = _fetch(context, job_id)
                status = job.get_status(refresh=False)
                if status not in allowed:
                    raise InvalidArguments(f"job {job_id} is {status}; {refusal}")
                pipe.multi()
                change(pipe, job)
                pipe.execute()
                return
            except redis.WatchError:
                continue


def _fetch(context: Context, job_id: str) -> Job:
    job = Job.fetch_many([job_id], connection=context.redis)[0]
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r} (it may have expired)")
    return job
