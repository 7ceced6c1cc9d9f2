"""Turn the cron and interval jobs that services created with rq-scheduler into our recurring schedules.

What rq-scheduler 0.14 keeps (its scheduler.py, on RQ's job hashes):

    rq:scheduler:scheduled_jobs   zset   rq job id -> next run (epoch seconds)
    rq:job:{id}                   hash   an RQ job: `data` is the zlib-compressed, serialized tuple
                                         (func_name, instance, args, kwargs); `meta` the serialized dict
                                         where rq-scheduler keeps `cron_string` and `use_local_timezone`
                                         (cron jobs), `interval` (seconds) and `repeat` (runs left);
                                         `origin` the queue name

The serializer is pickle unless the services gave rq-scheduler a job class with a JSON serializer.
Everything is read here with redis-py: rq-scheduler is neither imported nor run, and nothing of it is
written or removed. Only JSON is read, as everywhere in the platform: a job stored with pickle is
reported (with how to make it importable) and skipped, never loaded. So is a job that does not map onto
a catalogued job with JSON arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import catalog, recurring
from .connection import Context
from .errors import JobsError, UnknownJob
from .firetimes import Timing

SCHEDULED_JOBS_KEY = "rq:scheduler:scheduled_jobs"  # rq_scheduler.Scheduler.scheduled_jobs_key
JOB_KEY = "rq:job:"  # rq.job.Job.redis_job_namespace_prefix
ID_PREFIX = "rqs-"
MAX_DATA = 16 * 1024 * 1024  # bytes of decompressed job data we are willing to read
BATCH = 500

IMPORTABLE = "importable"
ONE_OFF = "one-off"
REFUSED = "not importable"

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class Unreadable(ValueError):
    """Stored data that cannot be read safely (or is not shaped as rq-scheduler writes it)."""


def loads(raw: bytes) -> Any:
    """Decode stored JSON. Raises Unreadable (with the reason) for anything else: pickle is never loaded."""
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise Unreadable("refused: it is nested too deeply to read") from None
    except (UnicodeDecodeError, ValueError):
        raise Unreadable(
            "it is not JSON (rq-scheduler pickles unless given a job class with a JSON serializer), and "
            "pickle is never loaded here: schedule it with a JSON job class, or add it with "
            "`jobctl schedules add`"
        ) from None


def _decompress(raw: bytes) -> bytes:
    """RQ's `data`: zlib-compressed, or (older jobs) stored as it is."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, MAX_DATA)
    except zlib.error:
        return raw
    if inflater.unconsumed_tail:
        raise Unreadable(f"refused: its data is larger than {MAX_DATA} bytes")
    return data


def schedule_id_for(rq_job_id: str) -> str:
    """Our schedule id for the rq-scheduler job `rq_job_id`: `rqs-` and the id itself when it is made of
    letters, digits, '-' and '_' (and not too long); otherwise its safe characters and a short hash of it,
    so that two rq-scheduler ids never map to one schedule. The same id always maps to the same schedule."""
    clean = _UNSAFE_ID_CHARS.sub("_", rq_job_id)
    if clean != rq_job_id or len(clean) > 100:
        digest = hashlib.sha256(rq_job_id.encode()).hexdigest()[:10]
        clean = f"{clean[:100]}-{digest}"
    return ID_PREFIX + clean


@dataclass(frozen=True)
class Entry:
    """What one rq-scheduler job becomes: a schedule definition (IMPORTABLE), nothing because it runs only
    once (ONE_OFF), or nothing because it cannot be imported (REFUSED, with the reason)."""

    rq_id: str
    status: str
    schedule: recurring.Schedule | None = None
    reason: str = ""  # REFUSED: why; ONE_OFF: when it is due
    function: str | None = None
    warnings: tuple[str, ...] = ()
    exists: bool = False  # IMPORTABLE: a schedule of ours has that id already (so it is updated)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rq_id": self.rq_id,
            "status": self.status,
            "function": self.function,
            "reason": self.reason or None,
            "warnings": list(self.warnings),
            "schedule": None,
        }
        if self.schedule is not None:
            full = self.schedule.to_dict()
            keys = ("id", "job", "cron", "every", "tz", "queue", "args", "kwargs", "description")
            data["schedule"] = {key: full[key] for key in keys}
            data["action"] = "update" if self.exists else "create"
        return data


def read(context: Context, tz: str = "UTC") -> list[Entry]:
    """One Entry per job in rq-scheduler's sorted set, in the order of their next run. Reads only: writes
    nothing anywhere. A job that cannot be imported becomes a REFUSED entry, never an exception.

    `tz` is the zone the cron strings are read in: rq-scheduler evaluates them in its host's local time.
    Raises InvalidSchedule for an unknown zone, and redis errors when Redis cannot be read."""
    Timing(tz=tz).zone  # noqa: B018 (validates the zone even when there is no cron job)
    members = context.redis.zrange(SCHEDULED_JOBS_KEY, 0, -1, withscores=True)
    fields = (
        "data",
        "meta",
        "origin",
        "timeout",
        "success_callback_name",
        "failure_callback_name",
        "dependency_ids",
    )
    entries: list[Entry] = []
    taken: dict[str, str] = {}
    for start in range(0, len(members), BATCH):
        chunk = members[start : start + BATCH]
        with context.redis.pipeline(transaction=False) as pipe:
            for raw_id, _ in chunk:
                pipe.hmget(JOB_KEY.encode() + raw_id, fields)
                pipe.exists(context.keys.schedule(schedule_id_for(_text(raw_id))))
            replies = pipe.execute()
        for index, (raw_id, score) in enumerate(chunk):
            rq_id = _text(raw_id)
            values = dict(zip(fields, replies[2 * index], strict=True))
            entry = _entry(context, rq_id, score, values, tz)
            if entry.schedule is not None:
                other = taken.setdefault(entry.schedule.id, rq_id)
                if other != rq_id:
                    entry = Entry(
                        rq_id, REFUSED, reason=f"its schedule id {entry.schedule.id} is taken by {other}"
                    )
                else:
                    entry = replace(entry, exists=bool(replies[2 * index + 1]))
            entries.append(entry)
    return entries


def apply(context: Context, entries: list[Entry]) -> dict[str, list[str]]:
    """Create or update (upsert, keeping runtime state) the schedule of every IMPORTABLE entry, so that
    importing twice changes nothing more. Returns the schedule ids under "created" and "updated".
    rq-scheduler's own data is left as it is."""
    changes: dict[str, list[str]] = {"created": [], "updated": []}
    for entry in entries:
        if entry.status != IMPORTABLE or entry.schedule is None:
            continue
        existed = context.redis.exists(context.keys.schedule(entry.schedule.id))
        recurring.save(context, entry.schedule)
        changes["updated" if existed else "created"].append(entry.schedule.id)
    return changes


def advice(entries: list[Entry], tz: str) -> list[str]:
    """What the user must know or do after reading these entries (one line each)."""
    lines = []
    importable = [entry for entry in entries if entry.status == IMPORTABLE]
    if any(entry.schedule.timing.cron for entry in importable):
        lines.append(
            "rq-scheduler evaluates cron strings in its host's local time zone (use_local_timezone only "
            f"changes how times are shown); they are imported in {tz}. If its host ran in another zone, "
            "import again with --tz ZONE."
        )
    if any(entry.schedule.timing.every for entry in importable):
        lines.append(
            "Intervals are aligned to the epoch here (every 1h fires on the hour), not to when rq-scheduler "
            "last ran the job."
        )
    if importable:
        lines.append(
            "rq-scheduler's jobs are left as they are: stop every rq-scheduler process, then delete its "
            f"jobs (Scheduler.cancel, or ZREM {SCHEDULED_JOBS_KEY} and DEL rq:job:ID), or both will run them."
        )
    return lines


def _entry(context: Context, rq_id: str, score: float, values: dict[str, bytes | None], tz: str) -> Entry:
    if not values["data"]:
        return Entry(rq_id, REFUSED, reason=f"its job hash {JOB_KEY}{rq_id} is gone or has no data")
    try:
        meta = _meta(values["meta"])
    except Unreadable as exc:
        return Entry(rq_id, REFUSED, reason=f"its meta: {exc}")
    try:
        function, args, kwargs = _call(values["data"])
    except Unreadable as exc:
        function, args, kwargs, unreadable = None, [], {}, f"its data: {exc}"
    else:
        unreadable = None
    interval, cron = meta.get("interval"), meta.get("cron_string")
    if not interval and not cron:  # rq-scheduler re-schedules a job only for one of these two
        due = datetime.fromtimestamp(score, UTC).isoformat(sep=" ")
        return Entry(rq_id, ONE_OFF, reason=f"due {due}", function=function)
    if unreadable:
        return Entry(rq_id, REFUSED, reason=unreadable)
    try:
        spec = catalog.get(function)
    except UnknownJob:
        return Entry(
            rq_id,
            REFUSED,
            function=function,
            reason=f"function {function!r} is not in the catalog (mark it @job and load its module "
            "with --import or JOBS_IMPORTS)",
        )
    timing, problem = _timing(interval, cron, tz)
    if problem:
        return Entry(rq_id, REFUSED, function=function, reason=problem)
    queue = _text(values["origin"]) if values["origin"] else None
    try:
        schedule = recurring.define(
            schedule_id_for(rq_id),
            spec.name,
            queue=queue,
            args=args,
            kwargs=kwargs,
            description=f"imported from rq-scheduler job {rq_id}",
            **timing,
        )
    except JobsError as exc:
        return Entry(rq_id, REFUSED, function=function, reason=str(exc))
    local = bool(cron) and not interval and meta.get("use_local_timezone") is True
    warnings = _warnings(context, meta, values, spec, queue, tz, local)
    return Entry(rq_id, IMPORTABLE, schedule, function=function, warnings=warnings)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _meta(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    meta = loads(raw)
    if not isinstance(meta, dict):
        raise Unreadable(f"refused: it is a {type(meta).__name__}, not a dict")
    return meta


def _call(raw: bytes) -> tuple[str, list, dict]:
    data = loads(_decompress(raw))
    if not isinstance(data, list | tuple) or len(data) != 4:
        raise Unreadable("it is not (function, instance, args, kwargs)")
    function, instance, args, kwargs = data
    if not isinstance(function, str) or not function:
        raise Unreadable("its function name is not a string")
    if instance is not None:
        raise Unreadable(f"it calls {function} on an object instance")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise Unreadable("its args are not a list or its kwargs not a dict")
    if not all(isinstance(key, str) for key in kwargs):
        raise Unreadable("its kwargs have a key that is not a string")
    return function, list(args), dict(kwargs)


def _timing(interval: Any, cron: Any, tz: str) -> tuple[dict[str, Any], str | None]:
    if interval:  # rq-scheduler checks the interval first too
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval):
            return {}, f"its interval {interval!r} is not a number of seconds"
        return {"every": interval}, None
    if not isinstance(cron, str):
        return {}, f"its cron_string {cron!r} is not a string"
    fields = cron.split()
    if len(fields) == 5 and fields[2] not in _ANY and fields[4] not in _ANY:
        return {}, (
            f"its cron_string {cron!r} restricts both the day of the month and the weekday: rq-scheduler"
            " fires when both match, a schedule here (as cron) when either does"
        )
    return {"cron": cron, "tz": tz}, None


_ANY = ("*", "?")  # a cron field that matches every value


def _warnings(context, meta, values, spec, queue, tz, local) -> tuple[str, ...]:
    warnings = []
    repeat = meta.get("repeat")
    if repeat is not None:
        warnings.append(
            f"repeat={repeat}: rq-scheduler stops after {repeat} more run(s); a schedule cannot count runs, "
            "so it is imported anyway and runs until it is removed"
        )
    if local:
        warnings.append(
            f"use_local_timezone: ran in the rq-scheduler host's zone, imported in {tz} (see --tz)"
        )
    if queue and queue not in context.settings.queues:
        served = ",".join(context.settings.queues)
        warnings.append(f"queue {queue!r} is not among the queues workers serve (JOBS_QUEUES={served})")
    timeout = _text(values["timeout"] or b"")
    if timeout and timeout != str(spec.timeout):
        warnings.append(f"timeout {timeout}s is not carried over: the job's own ({spec.timeout}s) applies")
    if values["success_callback_name"] or values["failure_callback_name"]:
        warnings.append("its on_success/on_failure callbacks are not carried over")
    if values["dependency_ids"] and values["dependency_ids"] not in (b"[]", b""):
        warnings.append("its depends_on is not carried over")
    return tuple(warnings)
