"""Operator actions shared by the pages and the API: each validates its input, calls `jobs.admin`
(which audits it), and returns a small result."""

from __future__ import annotations

from datetime import UTC, datetime

from jobs import admin, inspect
from jobs.connection import Context
from jobs.errors import InvalidArguments, JobNotFound, UnknownSchedule

JOB_ACTIONS = ("requeue", "cancel", "delete")
SCHEDULE_ACTIONS = ("trigger", "pause", "resume", "delete")


def on_job(context: Context, job_id: str, action: str, actor: str, address: str) -> dict:
    """Requeue (a failed job), cancel (one not started) or delete a job."""
    if action == "requeue":
        state = inspect.job_detail(context, job_id).state  # refused before anything is written or audited
        if state not in ("failed", "stopped"):
            raise InvalidArguments(f"job {job_id} is {state}, not failed; only failed jobs can be requeued")
        changed = admin.requeue_failed(context, [job_id], actor=actor, address=address)
        if not changed.count:
            why = changed.left.get(job_id, "it has just been requeued or deleted")
            raise InvalidArguments(f"job {job_id} was not requeued: {why}")
    elif action == "cancel":
        admin.cancel_job(context, job_id, actor, address)
    elif action == "delete":
        admin.delete_job(context, job_id, actor, address)
    else:
        raise JobNotFound(f"no action {action!r} on jobs (use {', '.join(JOB_ACTIONS)})")
    return {"job": job_id, "done": action}


def on_schedule(
    context: Context, schedule_id: str, action: str, actor: str, address: str, until: str | None = None
) -> dict:
    """Trigger, pause (optionally until an ISO 8601 time), resume or delete a schedule."""
    if action == "trigger":
        return {
            "schedule": schedule_id,
            "done": action,
            "job": admin.trigger_schedule(context, schedule_id, actor, address).id,
        }
    if action == "pause":
        admin.pause_schedule(context, schedule_id, _until(until), actor, address)
    elif action == "resume":
        admin.resume_schedule(context, schedule_id, actor, address)
    elif action == "delete":
        admin.remove_schedule(context, schedule_id, actor, address)
    else:
        raise UnknownSchedule(f"no action {action!r} on schedules (use {', '.join(SCHEDULE_ACTIONS)})")
    return {"schedule": schedule_id, "done": action}


def _until(text: str | None) -> float | None:
    return parse_time(text, "until").timestamp() if text else None


def parse_time(text, name: str) -> datetime:
    """`text`, an ISO 8601 time, as an aware datetime; one without a zone is UTC, the zone every time
    in the dashboard is shown in (the server's own zone is nobody's). InvalidArguments otherwise."""
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (TypeError, ValueError, OverflowError):  # not text, not a time, or a year out of range
        raise InvalidArguments(f"{name} {text!r} is not an ISO 8601 time") from None


def release_lock(context: Context, name: str, actor: str, address: str) -> dict:
    """Release a lock whoever holds it."""
    return {"lock": name, "released": admin.release_lock(context, name, actor, address)}
