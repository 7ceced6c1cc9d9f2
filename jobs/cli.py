"""`jobctl`: run workers and the scheduler, enqueue jobs, inspect and act on them.

Every command takes --redis-url and --json; user errors print one line and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from . import admin, catalog, inspect
from .cli_common import common, connect, emit, fail, parse_json
from .cli_dashboard import dashboard_command, hash_password_command
from .cli_locks import invoices_group, locks_group
from .cli_schedules import schedules_group
from .durations import format_duration
from .enqueue import enqueue
from .errors import ConfigError, InvalidArguments


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """TechBirdsFly Jobs: background jobs on Redis."""


@cli.command("enqueue")
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("--queue", help="Queue to use instead of the job's own.")
@click.option("--in", "delay", help="Run after this delay (e.g. 10m).")
@click.option(
    "--at", "at", help="Run at this ISO 8601 time (with an offset, e.g. 2026-12-01T00:00:00+01:00)."
)
@common
def enqueue_command(settings, as_json, name, args_json, kwargs_json, queue, delay, at):
    """Enqueue a catalogued job by NAME; prints the job id."""
    args = parse_json("--args", args_json, list)
    kwargs = parse_json("--kwargs", kwargs_json, dict)
    when = None
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidArguments(f"--at {at!r} is not an ISO 8601 time") from None
    spec = catalog.get(name)
    context = connect(settings)
    job = enqueue(spec, args, kwargs, queue=queue, at=when, delay=delay, source="cli", context=context)
    emit(as_json, {"id": job.id, "queue": job.origin}, lambda: click.echo(job.id))


@cli.command("worker")
@click.option("--queues", help="Comma-separated queues in priority order (default: critical,default,low).")
@click.option("--concurrency", "-c", type=int, help="Worker processes (default: $JOBS_CONCURRENCY or 2).")
@click.option(
    "--threads", "-t", type=int, help="Workers per process, one per thread, for jobs that wait (default 1)."
)
@click.option("--burst", is_flag=True, help="Drain the queues, then exit.")
@click.option("--shutdown-timeout", help="How long running jobs may finish after SIGTERM (default 25s).")
@common
def worker_command(settings, as_json, queues, concurrency, threads, burst, shutdown_timeout):
    """Run a pool of worker processes."""
    from .durations import parse_duration
    from .pool import Pool

    settings = settings.with_(
        queues=tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None,
        concurrency=concurrency,
        threads=threads,
        shutdown_timeout=parse_duration(shutdown_timeout) if shutdown_timeout else None,
    )
    settings.validate()
    context = connect(settings, resilient=True)
    context.check_eviction()
    sys.exit(Pool(context, burst=burst).run())


@cli.command("scheduler")
@common
def scheduler_command(settings, as_json):
    """Run the scheduler process: orphan recovery and retention (recurring schedules join it later)."""
    from .scheduling import run_scheduler

    context = connect(settings, resilient=True)
    context.check_eviction()
    sys.exit(run_scheduler(context))


@cli.command("show")
@click.argument("job_id")
@common
def show_command(settings, as_json, job_id):
    """Show one job: arguments, state, attempts, result or traceback, and its timeline."""
    detail = inspect.job_detail(connect(settings), job_id)

    def human():
        for label, value in (
            ("id", detail.id),
            ("name", detail.name),
            ("queue", detail.queue),
            ("state", detail.state),
            ("args", json.dumps(detail.args)),
            ("kwargs", json.dumps(detail.kwargs)),
            ("attempts", detail.attempts),
            ("retries left", detail.retries_left),
            ("worker", detail.worker),
            ("result", json.dumps(detail.result, default=str) if detail.state == "finished" else None),
        ):
            if value is not None:
                click.echo(f"{label:>13}: {value}")
        if detail.traceback:
            click.echo("    traceback:\n" + detail.traceback.rstrip())
        click.echo("     timeline:")
        for entry in detail.timeline:
            extra = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("at", "event"))
            click.echo(
                f"  {datetime.fromtimestamp(entry['at']).isoformat(sep=' ', timespec='milliseconds')}  {entry['event']:<12} {extra}"
            )

    emit(as_json, {**detail.to_dict(), "timeline": detail.timeline}, human)


@cli.command("list")
@click.option("--state", type=click.Choice(inspect.STATES), default="queued", show_default=True)
@click.option("--queue", help="Only this queue.")
@click.option("--name", help="Only jobs of this name.")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--per-page", type=int, default=20, show_default=True)
@common
def list_command(settings, as_json, state, queue, name, page, per_page):
    """List jobs in a state, newest first, a page at a time."""
    result = inspect.list_jobs(connect(settings), state, queue=queue, name=name, page=page, per_page=per_page)

    def human():
        for item in result.items:
            when = (
                (item.ended_at or item.enqueued_at).isoformat(sep=" ", timespec="seconds")
                if (item.ended_at or item.enqueued_at)
                else "-"
            )
            click.echo(f"{item.id}  {item.queue:<10} {item.name:<40} {when}  {item.error or ''}".rstrip())
        click.echo(f"page {result.page}/{result.pages}, {result.total} {state} job(s)")

    emit(as_json, result.to_dict(), human)


@cli.group("failed")
def failed_group() -> None:
    """Act on failed jobs."""


def _bulk(action, verb: str):
    @click.argument("ids", nargs=-1)
    @click.option("--all", "everything", is_flag=True, help=f"{verb.capitalize()} every failed job.")
    @common
    def command(settings, as_json, ids, everything):
        if bool(ids) == everything:
            raise ConfigError("give job ids or --all (not both)")
        context = connect(settings)
        targets = None if everything else list(ids)
        total = len(admin.failed_ids(context)) if everything else len(ids)
        if as_json or total <= admin.BATCH:
            changed = action(context, targets)
        else:
            with click.progressbar(length=total, label=f"{verb} failed jobs", file=sys.stderr) as bar:
                changed = action(context, targets, progress=bar.update)

        def human():
            click.echo(f"{verb} {changed.count} job(s)")
            for job_id, reason in changed.left.items():
                click.echo(f"not {verb}: job {job_id}: {reason}", err=True)

        # exit code 0 all the same: a job left as it was is reported, not an error (what was asked of the
        # others is done); exit codes other than 0 are for refused commands, which change nothing
        emit(as_json, {verb: changed.count, "left": changed.left}, human)

    return command


failed_group.command("requeue", help="Requeue failed jobs (ids or --all).")(
    _bulk(admin.requeue_failed, "requeued")
)
failed_group.command("delete", help="Delete failed jobs (ids or --all).")(
    _bulk(admin.delete_failed, "deleted")
)


@cli.command("stats")
@common
def stats_command(settings, as_json):
    """Queue depths by state, and succeeded/failed counts of the last hour and day."""
    result = inspect.stats(connect(settings))

    def human():
        click.echo(f"{'queue':<12}" + "".join(f"{s:>11}" for s in inspect.STATES) + "  oldest")
        for q in result.queues:
            oldest = format_duration(q.oldest_age) if q.oldest_age is not None else "-"
            click.echo(
                f"{q.name:<12}" + "".join(f"{q.counts[s]:>11}" for s in inspect.STATES) + f"  {oldest}"
            )
        click.echo(f"last hour: {result.succeeded_last_hour} succeeded, {result.failed_last_hour} failed")
        click.echo(f"last day:  {result.succeeded_last_day} succeeded, {result.failed_last_day} failed")
        for name, counts in result.by_name_last_day.items():
            click.echo(f"  {name:<40} {counts['succeeded']:>8} ok {counts['failed']:>8} failed")
        click.echo(f"workers: {result.workers}")

    emit(as_json, result.to_dict(), human)


@cli.command("workers")
@common
def workers_command(settings, as_json):
    """Workers (host, pid, queues, state, current job, last heartbeat) and schedulers."""
    views = inspect.workers(connect(settings))

    def human():
        for w in views:
            flag = "DEAD " if w.dead else ""
            beat = w.last_heartbeat.isoformat(sep=" ", timespec="seconds") if w.last_heartbeat else "-"
            click.echo(
                f"{flag}{w.name}  {w.host}:{w.pid}  {','.join(w.queues)}  {w.state}  {w.current_job or '-'}  beat {beat}"
            )
        kinds = [w.kind for w in views]
        click.echo(f"{kinds.count('worker')} worker(s), {kinds.count('scheduler')} scheduler(s)")

    emit(as_json, [w.to_dict() for w in views], human)


@cli.command("up")
@click.option("--embedded", is_flag=True, help="Always use the embedded server, even if a Redis answers.")
@common
def up_command(settings, as_json, embedded):
    """Run everything on this machine: Redis (embedded when none is configured), workers, scheduler,
    dashboard."""
    from .up import run_platform

    sys.exit(run_platform(settings, embedded=embedded))


cli.add_command(schedules_group)
cli.add_command(locks_group)
cli.add_command(invoices_group)
cli.add_command(dashboard_command)
cli.add_command(hash_password_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `jobctl` console script: usage errors too are one line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="jobctl", standalone_mode=False)
    except click.ClickException as exc:
        where = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
        fail(exc.format_message() + where)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
