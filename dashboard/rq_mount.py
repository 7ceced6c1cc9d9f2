"""rq-dashboard, mounted at /rq: reading with JSON only, and changing state only through `jobs.admin`.

rq-dashboard's own actions write with RQ's calls, which know nothing of the platform's index of ended
jobs, unique keys, timelines or audit log: a job it deleted stayed in the filtered lists, one it
requeued kept its old index entries and was listed twice when it failed again. Its action routes
therefore run the platform's admin actions, which audit themselves, and answer as rq-dashboard's do.
"""

from __future__ import annotations

import functools

import rq
import rq_dashboard
from flask import Flask, current_app, g, request
from rq.serializers import JSONSerializer

from jobs import admin
from jobs.enqueue import queue_for
from jobs.errors import JobsError
from jobs.rqjob import Job


class _JSONWorker(rq.Worker):
    """RQ's worker record, read with JSON: rq-dashboard lists workers (and fetches their current jobs)
    with RQ's default serializer, pickle."""

    @classmethod
    def all(cls, connection=None, job_class=None, queue_class=None, queue=None, serializer=None):
        return super().all(connection, job_class or Job, queue_class, queue, serializer or JSONSerializer)


def mount(app: Flask) -> None:
    """Mount rq-dashboard at /rq of `app`, behind `app`'s authentication and CSRF guard."""
    # No pickle from Redis, ever: its config's serializer serves only some of rq-dashboard's reads; the
    # others (a job's page, delete and requeue, the workers list) use RQ's default unless given one.
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.Job = Job  # reads with JSON unless given a serializer
    rq_dashboard.web.Worker = _JSONWorker
    rq_dashboard.web.requeue_job = functools.partial(rq.requeue_job, serializer=JSONSerializer)
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")
    for endpoint, view in _ACTIONS.items():
        app.view_functions[f"rq_dashboard.{endpoint}"] = view

    @app.before_request
    def block_unsafe_rq_routes():
        # rq-dashboard changes state on GET here ("requeue all"): only POST, which our CSRF guard checks
        if request.path.startswith("/rq/requeue/") and request.method != "POST":
            return "rq-dashboard's GET requeue is disabled; use the button (POST)", 405
        return None


def _context():
    return current_app.extensions["jobs.context"]


def _who() -> dict:
    return {"actor": g.get("actor") or "?", "address": request.remote_addr or "?"}


def _answer(changed: admin.Changed) -> dict:
    return {"status": "OK" if not changed.left else "ERROR", "count": changed.count, "left": changed.left}


@rq_dashboard.web.jsonify  # rq-dashboard's: JSON, not cached
def _delete_job(job_id: str):
    return _answer(_delete(_context(), [job_id]))


@rq_dashboard.web.jsonify
def _requeue_job(job_id: str):
    return _answer(admin.requeue_failed(_context(), [job_id], **_who()))


@rq_dashboard.web.jsonify
def _requeue_all(queue_name: str):
    registry = queue_for(_context(), queue_name).failed_job_registry
    return _answer(admin.requeue_failed(_context(), registry.get_job_ids(cleanup=False), **_who()))


@rq_dashboard.web.jsonify
def _empty(queue_name: str, registry_name: str):
    queue = queue_for(_context(), queue_name)
    if registry_name == "queued":
        ids = queue.get_job_ids()
    elif registry_name in _REGISTRIES:
        ids = getattr(queue, f"{registry_name}_job_registry").get_job_ids(cleanup=False)
    else:
        ids = []
    return _answer(_delete(_context(), ids))


def _compact(queue_name: str):
    """rq-dashboard's own (it drops the ids of jobs that are gone from the queue), audited."""
    answer = rq_dashboard.web.compact_queue(queue_name)
    admin.audit(_context(), action="compact-queue", target=queue_name, **_who())
    return answer


_REGISTRIES = ("failed", "deferred", "started", "finished", "canceled", "scheduled")


def _delete(context, ids: list[str]) -> admin.Changed:
    """Delete each job through admin (a running one is refused); what was left, and why."""
    count, left = 0, {}
    for job_id in ids:
        try:
            admin.delete_job(context, job_id, **_who())
            count += 1
        except JobsError as exc:
            left[job_id] = str(exc)
    return admin.Changed(count, left)


_ACTIONS = {
    "delete_job_view": _delete_job,
    "requeue_job_view": _requeue_job,
    "requeue_all": _requeue_all,
    "empty_queue": _empty,
    "compact_queue": _compact,
}
