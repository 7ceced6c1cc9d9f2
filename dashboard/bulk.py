"""Bulk requeue/delete of failed jobs in the background, with progress readable by any dashboard
process (kept in Redis for a day)."""

from __future__ import annotations

import threading
import uuid

from jobs import admin, inspect
from jobs.connection import Context

TASK_TTL = 86400
ACTIONS = {"requeue": admin.requeue_failed, "delete": admin.delete_failed}


def start(
    context: Context,
    action: str,
    ids: list[str] | None,
    queue: str | None,
    where: inspect.Filter,
    actor: str,
    address: str,
) -> str:
    """Start requeueing or deleting `ids`, or every failed job matching `where`; returns the task id."""
    task_id = uuid.uuid4().hex[:16]
    key = context.keys.bulk(task_id)
    context.redis.hset(key, mapping={"action": action, "state": "counting", "done": 0, "total": 0})
    context.redis.expire(key, TASK_TTL)

    def run() -> None:
        try:
            targets = ids if ids is not None else inspect.matching_ids(context, "failed", queue, where)
            context.redis.hset(key, mapping={"state": "running", "total": len(targets)})
            changed = ACTIONS[action](
                context,
                targets,
                actor=actor,
                address=address,
                progress=lambda n: context.redis.hincrby(key, "done", n),
            )
            finished = {"state": "finished", "changed": changed.count, "left": len(changed.left)}
            for job_id, reason in list(changed.left.items())[:1]:  # the page shows one as an example
                finished["left_example"] = f"job {job_id}: {reason}"
            context.redis.hset(key, mapping=finished)
        except Exception as exc:  # reported on the progress page, never lost in a thread
            context.redis.hset(key, mapping={"state": "failed", "error": f"{type(exc).__name__}: {exc}"})

    threading.Thread(target=run, name=f"bulk-{task_id}", daemon=True).start()
    return task_id


def progress(context: Context, task_id: str) -> dict:
    """The task's state (counting, running, finished, failed), done and total; once finished, how many
    jobs it changed and how many it left as they were (admin.Changed), with one of those and why."""
    raw = context.redis.hgetall(context.keys.bulk(task_id))
    return {key.decode(): value.decode() for key, value in raw.items()} or {"state": "unknown"}
