"""The HTML pages and their POST actions. Reads come from `data`, changes from `jobs.admin`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from jobs import inspect
from jobs.errors import InvalidArguments, JobNotFound, JobsError, RedisFull, UnknownSchedule

from . import actions, bulk, data
from .charts import bars
from .security import check_csrf, login_user

pages = Blueprint("pages", __name__)


def context():
    return current_app.extensions["jobs.context"]


def job_filter(args=None) -> inspect.Filter:
    """The job-list filter given in the query string, or in `args` (name, error, since, until)."""
    args = request.args if args is None else args

    def moment(key: str) -> datetime | None:
        text = _text(args, key)
        if not text:
            return None
        try:
            return actions.parse_time(text, key)
        except InvalidArguments:
            abort(400, f"{key} must be an ISO 8601 time")

    return inspect.Filter(
        name=_text(args, "name") or None,
        error=_text(args, "error") or None,
        since=moment("since"),
        until=moment("until"),
        failed_before=args.get("retrying") == "1",
    )


def _text(args, key: str) -> str | None:
    """The text of field `key` of a query string, form or JSON body; 400 when JSON gave another type."""
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        abort(400, f"{key} must be text")
    return value


@pages.route("/")
def overview():
    view = data.overview(context())
    charts = {
        key: bars(view[key], every) for key, every in (("last_hour", 10), ("last_day", 4), ("last_week", 24))
    }
    return render_template("overview.html", view=view, charts=charts)


@pages.route("/jobs/<state>")
def jobs(state: str):
    if state not in inspect.STATES:
        abort(404)
    page = request.args.get("page", 1, type=int)
    view = data.job_page(context(), state, request.args.get("queue") or None, page, job_filter())
    return render_template("jobs.html", view=view, state=state, title=f"{state.capitalize()} jobs")


@pages.route("/retries")
def retries():
    page = request.args.get("page", 1, type=int)
    view = data.job_page(context(), "scheduled", None, page, inspect.Filter(failed_before=True))
    return render_template("jobs.html", view=view, state="scheduled", title="Retries", retries=True)


@pages.route("/job/<job_id>")
def job(job_id: str):
    return render_template("job.html", job=data.job(context(), job_id))


@pages.route("/schedules")
def schedules():
    return render_template("schedules.html", view=data.schedules(context()))


@pages.route("/schedules/<schedule_id>")
def schedule(schedule_id: str):
    return render_template("schedule.html", schedule=data.schedule(context(), schedule_id))


@pages.route("/workers")
def workers():
    return render_template("workers.html", workers=data.workers(context()))


@pages.route("/locks")
def locks():
    return render_template("locks.html", locks=data.held_locks(context()))


@pages.route("/redis")
def redis_page():
    return render_template("redis.html", health=data.redis_health(context()))


@pages.route("/audit")
def audit():
    return render_template("audit.html", entries=data.audit_log(context()))


@pages.route("/invoices")
def invoices():
    month = request.args.get("month") or None
    return render_template("invoices.html", invoices=data.invoices(context(), month), month=month)


# a path of this site to go back to after logging in: not "//host" or "/\host" (another site), and no
# control character, which browsers and Werkzeug drop from a Location (so "/\t/host" is "//host")
_LOCAL_PATH = re.compile(r"/(?![/\\])[^\x00-\x1f\x7f\\]*")


@pages.route("/login", methods=["GET", "POST"])
def login():
    access = current_app.extensions["jobs.access"]
    error = None
    if request.method == "POST":
        check_csrf()  # login CSRF: a foreign site must not log a browser into its own account
        user = access.check_password(request.form.get("user", ""), request.form.get("password", ""))
        if user:
            login_user(user)
            target = request.args.get("next", "")
            return redirect(target if _LOCAL_PATH.fullmatch(target) else url_for("pages.overview"))
        error = "wrong name or password"
    return render_template("login.html", error=error), 401 if error else 200


@pages.route("/logout", methods=["POST"])
def logout():
    from flask import session

    session.clear()
    return redirect(url_for("pages.login"))


# --- actions (POST only; the security module checks role and CSRF) ------------------------------------


def _actor() -> tuple[str, str]:
    return g.actor, request.remote_addr or "?"


@pages.route("/job/<job_id>/<action>", methods=["POST"])
def job_action(job_id: str, action: str):
    actions.on_job(context(), job_id, action, *_actor())
    flash(f"{action}: done")
    return redirect(url_for("pages.overview") if action == "delete" else url_for("pages.job", job_id=job_id))


@pages.route("/jobs/failed/bulk", methods=["POST"])
def bulk_action():
    """Requeue or delete the selected failed jobs, or every failed job matching the filter."""
    task_id = start_bulk(request.form)
    return redirect(url_for("pages.bulk_progress", task_id=task_id))


def start_bulk(form) -> str:
    """Start the bulk action a form (or JSON body) asks for; returns its task id."""
    action = form.get("action")
    if not isinstance(action, str) or action not in bulk.ACTIONS:
        raise InvalidArguments("bulk actions are requeue and delete (of failed jobs)")
    if hasattr(form, "getlist"):
        ids = form.getlist("ids")
    else:  # JSON: a list of ids, or one id
        raw = form.get("ids") or []
        ids = [raw] if isinstance(raw, str) else raw
        if not isinstance(ids, list) or not all(isinstance(job_id, str) for job_id in ids):
            raise InvalidArguments("ids must be a job id or a list of job ids")
    if not ids and form.get("everything") not in ("1", True):
        raise InvalidArguments("select jobs, or choose everything matching the filter")
    where = job_filter(form)  # the whole filter of the list, since and until included
    return bulk.start(context(), action, ids or None, _text(form, "queue") or None, where, *_actor())


@pages.route("/bulk/<task_id>")
def bulk_progress(task_id: str):
    return render_template("bulk.html", task=bulk.progress(context(), task_id), task_id=task_id)


@pages.route("/schedules/<schedule_id>/<action>", methods=["POST"])
def schedule_action(schedule_id: str, action: str):
    result = actions.on_schedule(context(), schedule_id, action, *_actor(), until=request.form.get("until"))
    flash(f"{action}: done" + (f" (job {result['job']})" if "job" in result else ""))
    return redirect(
        url_for("pages.schedules")
        if action == "delete"
        else url_for("pages.schedule", schedule_id=schedule_id)
    )


@pages.route("/locks/<path:name>/release", methods=["POST"])
def release_lock(name: str):
    result = actions.release_lock(context(), name, *_actor())
    flash(f"released {name}" if result["released"] else f"{name} was not held")
    return redirect(url_for("pages.locks"))


NOT_FOUND = (JobNotFound, UnknownSchedule)


@pages.app_errorhandler(JobsError)
def jobs_error(error: JobsError):
    status = 404 if isinstance(error, NOT_FOUND) else 503 if isinstance(error, RedisFull) else 400
    if request.path.startswith("/api/"):
        return {"error": str(error)}, status
    return render_template("error.html", message=str(error)), status


@pages.app_context_processor
def helpers():
    def page_url(number: int) -> str:
        """This page's URL with another page number (filters kept)."""
        route = request.view_args or {}
        query = {  # not a route argument (?state=x) nor one of url_for's own (?_external=1)
            key: value for key, value in request.args.items() if key not in route and not key.startswith("_")
        }
        return url_for(request.endpoint, **route, **(query | {"page": number}))

    return {"page_url": page_url}


@pages.app_template_filter("timestamp")
def timestamp(epoch: float | str | None) -> str:
    """Epoch seconds as an ISO time in UTC (to the millisecond)."""
    if epoch in (None, ""):
        return "–"
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(sep=" ", timespec="milliseconds")
