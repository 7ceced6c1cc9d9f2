"""What the pages and the JSON API show: one function per view, returning plain data, so that a page
and its API twin can never disagree. Reads go through the platform's read API (jobs.inspect, recurring,
locks); nothing here touches a key by hand except Redis' own INFO and the audit stream."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
from cron_descriptor import Options, get_description

from jobs import billing, catalog, inspect, locks, recurring, rq_scheduler_import, timeline
from jobs.connection import Context, redacted
from jobs.durations import format_duration
from jobs.errors import JobsError

PER_PAGE = 25


def overview(context: Context) -> dict:
    """Counts by state, queues, and succeeded/failed series for the graphs."""
    queues = [inspect.queue_stats(context, name) for name in inspect.queue_names(context)]
    totals = {state: sum(q.counts[state] for q in queues) for state in inspect.STATES}
    redis, keys = context.redis, context.keys

    def series(unit: str, buckets: int) -> dict:
        return {
            status: [
                (moment.isoformat(), count)
                for moment, count in timeline.series(redis, keys, status, unit, buckets)
            ]
            for status in ("succeeded", "failed")
        }

    return {
        "totals": totals,
        "queues": [{"name": q.name, "counts": q.counts, "oldest_age": q.oldest_age} for q in queues],
        "last_hour": series("minute", 60),
        "last_day": series("hour", 24),
        "last_week": series("hour", 168),
        "workers": len([w for w in inspect.workers(context) if w.kind == "worker" and not w.dead]),
    }


def job_page(context: Context, state: str, queue: str | None, page: int, where: inspect.Filter) -> dict:
    """One page of jobs in `state` (with `where` applied)."""
    result = inspect.list_jobs(context, state, queue=queue, page=page, per_page=PER_PAGE, where=where)
    return {"state": state, "queue": queue, **result.to_dict()}


def job(context: Context, job_id: str) -> dict:
    """Everything about one job, with the schedule that made it, if any."""
    detail = inspect.job_detail(context, job_id)
    return detail.to_dict() | {"schedule": _schedule_of(job_id), "lock": _lock_of(detail)}


def _lock_of(detail: inspect.JobDetail) -> str | None:
    """The name of the lock the job runs under (its `lock=` option), if any."""
    try:
        spec = catalog.get(detail.name)
        return spec.render(spec.lock, detail.args, detail.kwargs) if spec.lock else None
    except (
        JobsError,
        TypeError,
        KeyError,
        IndexError,
        ValueError,
    ):  # unknown job or arguments that no longer fit
        return None


def _schedule_of(job_id: str) -> str | None:
    if not job_id.startswith("schedule-"):
        return None
    return job_id[len("schedule-") :].rsplit("-", 1)[0].removesuffix("-manual")


def cron_in_words(schedule: recurring.Schedule) -> str:
    """The schedule's timing as a sentence ("At 00:00, on day 1 of the month")."""
    if schedule.timing.every:
        return f"Every {format_duration(schedule.timing.every)}"
    options = Options()
    options.use_24hour_time_format = True
    return get_description(schedule.timing.cron, options)


def schedules(context: Context) -> dict:
    """Every schedule with its next fires, and rq-scheduler's legacy ones."""
    now = time.time()
    return {
        "schedules": [_schedule_row(s, now) for s in recurring.all_schedules(context)],
        "legacy": [entry.to_dict() for entry in rq_scheduler_import.read(context)],
    }


def schedule(context: Context, schedule_id: str) -> dict:
    """One schedule with its next 5 fires and last 50 runs."""
    row = _schedule_row(recurring.get(context, schedule_id), time.time())
    row["runs"] = [run.to_dict() for run in recurring.history(context, schedule_id, 50)]
    return row


def _schedule_row(schedule: recurring.Schedule, now: float) -> dict:
    zone = schedule.timing.zone
    return schedule.to_dict() | {
        "in_words": cron_in_words(schedule),
        "paused": schedule.paused_at(now),
        "next_fires": [
            {
                "local": datetime.fromtimestamp(f, zone).isoformat(sep=" "),
                "utc": datetime.fromtimestamp(f, UTC).isoformat(sep=" "),
            }
            for f in schedule.timing.upcoming(now, 5)
        ],
    }


def workers(context: Context) -> list[dict]:
    """Workers and schedulers with their heartbeats."""
    return [view.to_dict() for view in inspect.workers(context)]


def held_locks(context: Context) -> list[dict]:
    """Locks held now."""
    return [view.to_dict() for view in locks.held_locks(context)]


def redis_health(context: Context) -> dict:
    """Server version, memory and eviction policy, keys per DB, hit rate, load, persistence, slowlog."""
    info = context.redis.info()
    try:
        policy = context.redis.config_get("maxmemory-policy").get("maxmemory-policy", "?")
    except redis.ResponseError:  # managed servers may refuse CONFIG
        policy = "unknown (CONFIG GET refused)"
    hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
    return {
        "url": redacted(context.settings.redis_url or ""),
        "version": info.get("redis_version") or info.get("valkey_version"),
        "memory_used": info.get("used_memory_human"),
        "memory_peak": info.get("used_memory_peak_human"),
        "memory_max": info.get("maxmemory_human") or "no limit",
        "maxmemory_policy": policy,
        "evicts": policy not in ("noeviction",) and not policy.startswith("unknown"),
        "keys_per_db": {db: values.get("keys") for db, values in info.items() if db.startswith("db")},
        "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
        "ops_per_sec": info.get("instantaneous_ops_per_sec"),
        "clients": info.get("connected_clients"),
        "aof_enabled": bool(info.get("aof_enabled")),
        "aof_last_write_status": info.get("aof_last_write_status"),
        "rdb_last_save": datetime.fromtimestamp(info.get("rdb_last_save_time", 0), UTC).isoformat(),
        "rdb_last_status": info.get("rdb_last_bgsave_status"),
        "uptime": format_duration(info.get("uptime_in_seconds", 0)),
        "slowlog": [
            {
                "id": entry["id"],
                "at": entry["start_time"],
                "micros": entry["duration"],
                "command": _text(entry["command"])[:200],
            }
            for entry in context.redis.slowlog_get(10)
        ],
    }


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def audit_log(context: Context, count: int = 200) -> list[dict]:
    """The newest operator actions."""
    return [
        {key.decode(): value.decode(errors="replace") for key, value in fields.items()}
        | {"id": entry_id.decode()}
        for entry_id, fields in context.redis.xrevrange(context.keys.audit, count=count)
    ]


def invoices(context: Context, month: str | None) -> list[dict]:
    """Invoices of the reference billing job."""
    return [invoice.to_dict() for invoice in billing.invoices(month, data_dir=context.settings.data_dir)]
