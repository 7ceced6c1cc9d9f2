"""`jobctl schedules ...`: register, inspect, pause and trigger recurring schedules."""

from __future__ import annotations

import json
import re
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import click

from . import admin, recurring, rq_scheduler_import
from .cli_common import common, connect, emit, parse_json
from .errors import InvalidSchedule

MAX_FIRES = 1000  # `next -n`: fire times are computed one by one, so a huge count never ends


def _when(epoch: float, zone) -> str:
    return datetime.fromtimestamp(epoch, zone).isoformat(sep=" ")


_MOMENTS = (
    "paused_until",
    "created",
    "updated",
    "next_fire",
    "last_fire",
)  # a schedule's times, shown as such


def _print_fires(schedule: recurring.Schedule, fires: list[int]) -> None:
    click.echo(f"next fire times ({schedule.timing.tz} / UTC):")
    for fire in fires:
        click.echo(f"  {_when(fire, schedule.timing.zone)}   {_when(fire, UTC)}")


def _fires_dict(schedule: recurring.Schedule, fires: list[int]) -> list[dict]:
    return [
        {"at": fire, "local": _when(fire, schedule.timing.zone), "utc": _when(fire, UTC)} for fire in fires
    ]


def _parse_time(option: str, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule(f"{option} {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidSchedule(f"{option} {text!r} has no UTC offset (e.g. 2026-12-01T00:00:00+01:00)")
    return moment.timestamp()


@click.group("schedules")
def schedules_group() -> None:
    """Recurring schedules (cron or interval, in a time zone)."""


@schedules_group.command("add")
@click.argument("schedule_id")
@click.argument("job_name")
@click.option("--cron", help="Cron expression, 5 fields (e.g. '0 0 1 * *').")
@click.option("--every", help="Interval instead of cron: 30s, 5m, 1h.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the cron expression.")
@click.option("--queue", help="Queue instead of the job's own.")
@click.option("--args", "args_json", default="[]", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--misfire", type=click.Choice(recurring.MISFIRE_POLICIES), default="once", show_default=True)
@click.option("--overlap", type=click.Choice(recurring.OVERLAP_POLICIES), default="allow", show_default=True)
@click.option("--description", default="")
@common
def add_command(
    settings,
    as_json,
    schedule_id,
    job_name,
    cron,
    every,
    tz,
    queue,
    args_json,
    kwargs_json,
    misfire,
    overlap,
    description,
):
    """Create or update schedule SCHEDULE_ID running JOB_NAME; prints its next fire times."""
    definition = recurring.define(
        schedule_id,
        job_name,
        cron=cron,
        every=every,
        tz=tz,
        queue=queue,
        args=parse_json("--args", args_json, list),
        kwargs=parse_json("--kwargs", kwargs_json, dict),
        misfire=misfire,
        overlap=overlap,
        description=description,
    )
    schedule = recurring.save(connect(settings), definition)
    fires = schedule.timing.upcoming(time.time(), 5)

    def human():
        click.echo(f"schedule {schedule.id}: {schedule.job}, {schedule.timing.describe()}")
        _print_fires(schedule, fires)

    emit(as_json, {**schedule.to_dict(), "next_fires": _fires_dict(schedule, fires)}, human)


@schedules_group.command("list")
@common
def list_command(settings, as_json):
    """Every schedule with its timing, next fire and state."""
    schedules = recurring.all_schedules(connect(settings))

    def human():
        for s in schedules:
            state = "paused" if s.paused_at(time.time()) else "active"
            nxt = _when(s.next_fire, s.timing.zone) if s.next_fire else "-"
            click.echo(f"{s.id:<28} {state:<7} {s.timing.describe():<36} next {nxt}  {s.job}")
        click.echo(f"{len(schedules)} schedule(s)")

    emit(as_json, [s.to_dict() for s in schedules], human)


@schedules_group.command("show")
@click.argument("schedule_id")
@click.option(
    "--runs",
    "limit",
    type=click.IntRange(1, recurring.HISTORY_LENGTH),
    default=10,
    show_default=True,
    help="How many past runs to show.",
)
@common
def show_command(settings, as_json, schedule_id, limit):
    """A schedule's definition, next fire times and last runs."""
    context = connect(settings)
    schedule = recurring.get(context, schedule_id)
    fires = schedule.timing.upcoming(time.time(), 5)
    runs = recurring.history(context, schedule_id, limit)

    def human():
        for label, value in schedule.to_dict().items():
            if label in _MOMENTS and isinstance(value, int | float) and value:  # epoch seconds
                value = _when(value, schedule.timing.zone)
            if value not in (None, "", [], {}):
                click.echo(f"{label:>13}: {value}")
        _print_fires(schedule, fires)
        click.echo("last runs:")
        for run in runs:
            late = f"late {run.late:.3f}s" if run.late is not None else ""
            took = f"took {run.duration:.3f}s" if run.duration is not None else ""
            click.echo(
                f"  {_when(run.fire, schedule.timing.zone)}  {run.state:<9} {run.job_id or '-'}  {late}  {took}".rstrip()
            )

    data = {
        **schedule.to_dict(),
        "next_fires": _fires_dict(schedule, fires),
        "runs": [r.to_dict() for r in runs],
    }
    emit(as_json, data, human)


@schedules_group.command("next")
@click.argument("schedule_id")
@click.option("-n", "count", type=click.IntRange(1, MAX_FIRES), default=10, show_default=True)
@common
def next_command(settings, as_json, schedule_id, count):
    """The next N fire times of a schedule."""
    schedule = recurring.get(connect(settings), schedule_id)
    fires = schedule.timing.upcoming(time.time(), count)

    def human():
        _print_fires(schedule, fires)
        if len(fires) < count:
            click.echo("(no later fire times: the calendar ends in the year 9999)")

    emit(as_json, _fires_dict(schedule, fires), human)


@schedules_group.command("remove")
@click.argument("schedule_id")
@common
def remove_command(settings, as_json, schedule_id):
    """Delete a schedule and its run history."""
    admin.remove_schedule(connect(settings), schedule_id)
    emit(as_json, {"removed": schedule_id}, lambda: click.echo(f"removed {schedule_id}"))


@schedules_group.command("trigger")
@click.argument("schedule_id")
@common
def trigger_command(settings, as_json, schedule_id):
    """Run a schedule now (its next fire time does not move); prints the job id."""
    job = admin.trigger_schedule(connect(settings), schedule_id)
    emit(as_json, {"id": job.id}, lambda: click.echo(job.id))


@schedules_group.command("pause")
@click.argument("schedule_id")
@click.option("--until", help="Resume by itself at this ISO 8601 time (with offset).")
@common
def pause_command(settings, as_json, schedule_id, until):
    """Pause a schedule: its fires are skipped until resumed (or --until)."""
    moment = None if until is None else _parse_time("--until", until)
    schedule = admin.pause_schedule(connect(settings), schedule_id, moment)
    emit(as_json, schedule.to_dict(), lambda: click.echo(f"paused {schedule_id} until {until or 'resumed'}"))


@schedules_group.command("resume")
@click.argument("schedule_id")
@common
def resume_command(settings, as_json, schedule_id):
    """Resume a paused schedule from its next fire time."""
    schedule = admin.resume_schedule(connect(settings), schedule_id)
    emit(as_json, schedule.to_dict(), lambda: click.echo(f"resumed {schedule_id}"))


@schedules_group.command("sync")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@common
def sync_command(settings, as_json, path):
    """Reconcile schedules with a TOML file: create and update those in it, remove the ones an earlier
    sync created that are gone from it. Paused state and history are kept."""
    definitions = _read_schedule_file(path)
    changes = recurring.sync(connect(settings), definitions)
    emit(as_json, changes, lambda: click.echo(", ".join(f"{k} {len(v)}" for k, v in changes.items())))


@schedules_group.command("import-rq-scheduler")
@click.option(
    "--apply", "apply_", is_flag=True, help="Create or update the schedules (default: only show them)."
)
@click.option(
    "--tz",
    default="UTC",
    show_default=True,
    help="Zone of the rq-scheduler host: its cron strings ran in that zone's local time.",
)
@common
def import_rq_scheduler_command(settings, as_json, apply_, tz):
    """Show the schedules equivalent to rq-scheduler's cron and interval jobs in this Redis DB, one line
    per rq-scheduler job; --apply creates or updates them (idempotent). rq-scheduler's jobs are not
    touched: stop rq-scheduler and delete them afterwards."""
    context = connect(settings)
    entries = rq_scheduler_import.read(context, tz=tz)
    changes = rq_scheduler_import.apply(context, entries) if apply_ else {"created": [], "updated": []}
    advice = rq_scheduler_import.advice(entries, tz)

    def human():
        for entry in entries:
            click.echo(_import_line(entry, apply_))
        importable = sum(entry.status == rq_scheduler_import.IMPORTABLE for entry in entries)
        if apply_:
            click.echo(f"created {len(changes['created'])}, updated {len(changes['updated'])} schedule(s)")
        else:
            click.echo(
                f"dry run, nothing written: {importable} schedule(s) to import; run again with --apply"
            )
        for line in advice:
            click.echo(line)

    data = {
        "applied": apply_,
        "tz": tz,
        "jobs": [entry.to_dict() for entry in entries],
        **changes,
        "advice": advice,
    }
    emit(as_json, data, human)


def _import_line(entry: rq_scheduler_import.Entry, applied: bool) -> str:
    head = f"{entry.rq_id}:"
    if entry.status == rq_scheduler_import.ONE_OFF:
        return f"{head} one-off ({entry.function or 'unreadable function'}, {entry.reason}), not imported"
    if entry.status == rq_scheduler_import.REFUSED:
        return f"{head} not importable: {entry.reason}"
    s = entry.schedule
    verb = "update" if entry.exists else "create"
    verb = f"{verb}d" if applied else f"would {verb}"
    call = f"args {json.dumps(s.args)}" + (f" kwargs {json.dumps(s.kwargs)}" if s.kwargs else "")
    queue = f"queue {s.queue}" if s.queue else "the job's own queue"
    line = f"{head} {verb} schedule {s.id}: {s.job} {s.timing.describe()} on {queue}, {call}"
    return "; ".join([line, *(f"warning: {warning}" for warning in entry.warnings)])


def _table(schedule_id: str) -> str:
    """The header of a schedule's table in a schedules file; the id quoted unless it is a bare key."""
    key = schedule_id if re.fullmatch(r"[A-Za-z0-9_-]+", schedule_id) else json.dumps(schedule_id)
    return f"[schedules.{key}]"


_KEYS = ("job", "cron", "every", "tz", "queue", "args", "kwargs", "misfire", "overlap", "description")


def _read_schedule_file(path: Path) -> list[recurring.Schedule]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidSchedule(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidSchedule(f"{path} is not UTF-8 text, so not TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSchedule(f"{path} is not valid TOML: {exc}") from None
    stray = sorted(set(document) - {"schedules"})
    if stray:  # a misspelled [schedules.ID] would otherwise read as no schedules: every one removed
        raise InvalidSchedule(f"{path}: unknown tables or keys {json.dumps(stray)}; write [schedules.ID]")
    schedules = document.get("schedules", {})
    if not isinstance(schedules, dict):
        raise InvalidSchedule(f"{path}: schedules must be tables, [schedules.ID]")
    definitions = []
    for schedule_id, entry in schedules.items():
        table = _table(schedule_id)
        if not isinstance(entry, dict) or "job" not in entry:
            raise InvalidSchedule(f'{path}: {table} needs at least job = "module.function"')
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise InvalidSchedule(
                f"{path}: {table} has unknown keys {json.dumps(unknown)} (known: {', '.join(_KEYS)})"
            )
        options = {key: value for key, value in entry.items() if key != "job"}
        definitions.append(recurring.define(schedule_id, entry["job"], managed=True, **options))
    return definitions
