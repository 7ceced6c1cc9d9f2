"""The JSON API: the same views and actions as the pages (see the README for the routes)."""

from __future__ import annotations

import json

from flask import Blueprint, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from jobs import admin, inspect
from jobs.keys import storable

from . import actions, bulk, data
from .views import _actor, context, job_filter, start_bulk

api = Blueprint("api", __name__, url_prefix="/api")


def _body():
    """The JSON object a request carries, or its form (the form itself, not form.to_dict(): a form may
    repeat a field, ids=a&ids=b); 400 for a JSON body that is not an object of valid text."""
    if not request.is_json or not request.get_data():
        return request.form
    try:
        body = json.loads(request.get_data())
    except ValueError as exc:  # not JSON, not UTF-8, or a number of over 4300 digits
        abort(400, f"the body is not JSON: {exc}")
    except RecursionError:
        abort(400, "the JSON body is nested too deeply")
    if not isinstance(body, dict):
        abort(400, "the JSON body must be an object")
    if not storable(json.dumps(body, ensure_ascii=False)):
        abort(400, "the JSON body has a string that is not valid Unicode (a lone surrogate)")
    return body


@api.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """Errors under /api/ (a bad `since`, 401, 403, a missing CSRF token, an unknown path) as JSON, like
    its other errors; the pages' errors as they are."""
    if not request.path.startswith("/api/"):
        return error
    return {"error": error.description}, error.code or 500


@api.get("/overview")
def overview():
    return jsonify(data.overview(context()))


@api.get("/jobs/<state>")
def jobs(state: str):
    if state not in inspect.STATES:
        return {"error": f"unknown state {state!r}; use one of {', '.join(inspect.STATES)}"}, 404
    page = request.args.get("page", 1, type=int)
    return jsonify(data.job_page(context(), state, request.args.get("queue") or None, page, job_filter()))


@api.get("/retries")
def retries():
    page = request.args.get("page", 1, type=int)
    return jsonify(data.job_page(context(), "scheduled", None, page, inspect.Filter(failed_before=True)))


@api.get("/job/<job_id>")
def job(job_id: str):
    return jsonify(data.job(context(), job_id))


@api.post("/job/<job_id>/<action>")
def job_action(job_id: str, action: str):
    return jsonify(actions.on_job(context(), job_id, action, *_actor()))


@api.post("/jobs/failed/bulk")
def bulk_action():
    return jsonify({"task": start_bulk(_body())}), 202


@api.get("/bulk/<task_id>")
def bulk_progress(task_id: str):
    return jsonify(bulk.progress(context(), task_id))


@api.get("/schedules")
def schedules():
    return jsonify(data.schedules(context()))


@api.get("/schedules/<schedule_id>")
def schedule(schedule_id: str):
    return jsonify(data.schedule(context(), schedule_id))


@api.post("/schedules/<schedule_id>/<action>")
def schedule_action(schedule_id: str, action: str):
    return jsonify(actions.on_schedule(context(), schedule_id, action, *_actor(), until=_body().get("until")))


@api.get("/workers")
def workers():
    return jsonify(data.workers(context()))


@api.get("/locks")
def locks():
    return jsonify(data.held_locks(context()))


@api.post("/locks/<path:name>/release")
def release_lock(name: str):
    return jsonify(actions.release_lock(context(), name, *_actor()))


@api.get("/redis")
def redis_health():
    return jsonify(data.redis_health(context()))


@api.get("/audit")
def audit():
    count = min(max(request.args.get("count", 200, type=int), 1), admin.AUDIT_LENGTH)
    return jsonify(data.audit_log(context(), count))


@api.get("/invoices")
def invoices():
    return jsonify(data.invoices(context(), request.args.get("month") or None))
