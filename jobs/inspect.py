"""The read-only monitoring API: page-sized views of jobs, queues, workers and counters. Never writes
(RQ registry reads are made with cleanup=False for that reason)."""

from __future__ import annotations

import contextlib
import functools
import time
import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker as RQWorker

from . import index, timeline
from .connection import Context
from .enqueue import queue_for, queue_names
from .errors import ConfigError, JobNotFound
from .rqjob import ERROR_FIELD, Job
from .rqtimes import parse_time

SCHEDULER_SILENCE = 60  # seconds without a heartbeat after which a scheduler is shown dead
FILTER_SCAN_LIMIT = 10_000  # jobs a text search looks at, newest first
SCAN_BATCH = 1_000
OLDEST_LOOKED_AT = 100  # queued jobs read for the age of a queue's oldest one
# What a job of an index state may say it is (RQ files a stopped job under failed); a job saying anything
# else left the state through a tool that does not update the index, and is left out of the list.
_SHOWN_AS = {"finished": {"finished"}, "failed": {"failed", "stopped"}}
STATES = ("queued", "scheduled", "started", "finished", "failed", "canceled", "deferred")


@dataclass
class JobSummary:
    """One row of a job list."""

    id: str
    name: str
    queue: str
    state: str
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str | None = None

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass
class JobDetail(JobSummary):
    """Everything known about one job."""

    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    started_at: datetime | None = None
    worker: str | None = None
    attempts: int = 0
    retries_left: int | None = None
    orphaned: int = 0
    result: object = None
    traceback: str | None = None
    depends_on: list[str] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)


@dataclass
class Page:
    """A page of a job list, newest first."""

    items: list[JobSummary]
    total: int
    page: int
    per_page: int
    scanned: int | None = None  # with a filter: how many of the newest jobs were looked at
    complete: bool = True  # False when a filter stopped at FILTER_SCAN_LIMIT

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict:
        return {
            "items": [i.to_dict() for i in self.items],
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "scanned": self.scanned,
            "complete": self.complete,
        }


def _jsonable(data: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


def _state(job: Job) -> str:
    status = job.get_status(refresh=False)
    return status.value if isinstance(status, JobStatus) else str(status or "unknown")


def _traceback(job: Job) -> str | None:
    result = job.latest_result()
    return result.exc_string if result is not None else None


def _unless_unreadable(read):
    """What `read()` gives, or why the job's stored data cannot be read (say, pickled by RQ's own
    tools): one field that cannot be decoded must not fail the whole view."""
    try:
        return read()
    except Exception as exc:
        return f"<unreadable: {exc}>"


def job_detail(context: Context, job_id: str) -> JobDetail:
    """The job `job_id` with its arguments, result or traceback and timeline; JobNotFound if gone."""
    raw = context.redis.hgetall(Job.key_for(job_id))
    job = Job.read_or_none(job_id, raw, context.redis)
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r} (it may have expired)")
    summary = _summary(job, raw.get(ERROR_FIELD.encode()))
    history = timeline.history(context.redis, context.keys, job_id)
    payload = _unless_unreadable(lambda: (list(job.args), dict(job.kwargs)))
    args, kwargs = payload if isinstance(payload, tuple) else ([payload], {})
    return JobDetail(
        **asdict(summary),
        args=args,
        kwargs=kwargs,
        description=job.description or "",
        started_at=job.started_at,
        worker=job.worker_name,
        attempts=sum(1 for entry in history if entry["event"] == "started"),
        retries_left=job.retries_left,
        orphaned=int(raw.get(b"orphaned") or 0),
        result=_unless_unreadable(job.return_value) if summary.state == "finished" else None,
        traceback=_unless_unreadable(functools.partial(_traceback, job))
        if summary.state == "failed"
        else None,
        depends_on=list(job._dependency_ids),
        timeline=history,
    )


@dataclass(frozen=True)
class _StateList:
    """The jobs of one state in one queue: the queue's list (queued) or one of its registries."""

    key: str
    state: str
    # registries scored by expiry (ended jobs): entries scored up to this epoch second have expired and
    # wait for retention, and are left out; None for the others
    expired_up_to: int | None = None

    def count(self, pipe) -> None:
        """Queue the number of jobs in `pipe`."""
        if self.state == "queued":
            pipe.llen(self.key)
        elif self.expired_up_to is not None:
            pipe.zcount(self.key, f"({self.expired_up_to}", "+inf")
        else:
            pipe.zcard(self.key)

    def ids(self, redis, start: int, stop: int) -> list[str]:
        """Ids number `start`..`stop` (exclusive), newest first: O(stop - start)."""
        if self.state == "queued":
            raw = list(reversed(redis.lrange(self.key, -stop, -start - 1)))
        elif self.expired_up_to is not None:
            raw = redis.zrevrangebyscore(self.key, "+inf", f"({self.expired_up_to}", start, stop - start)
        else:
            raw = redis.zrevrange(self.key, start, stop - 1)
        ids = [member.decode() for member in raw]
        return [member.split(":", 1)[0] for member in ids] if self.state == "started" else ids


def _state_list(context: Context, state: str, queue_name: str) -> _StateList:
    queue = queue_for(context, queue_name)
    key = queue.key if state == "queued" else getattr(queue, f"{state}_job_registry").key
    return _StateList(key, state, int(time.time()) if state in _SCORED_BY_EXPIRY else None)


_SCORED_BY_EXPIRY = ("finished", "failed", "canceled")  # as RQ's cleanup reads them (and ours, canceled)


def _count(context: Context, state: str, queue_name: str) -> int:
    with context.redis.pipeline(transaction=False) as pipe:
        _state_list(context, state, queue_name).count(pipe)
        return pipe.execute()[0]


def _window(context: Context, sources: list, start: int, stop: int) -> tuple[list[str], int]:
    """Ids `start`..`stop` over `sources` (source by source, newest first in each) and the total."""
    with context.redis.pipeline(transaction=False) as pipe:
        for source in sources:
            source.count(pipe)
        counts = pipe.execute()
    ids, offset = [], 0
    for source, count in zip(sources, counts, strict=True):
        low, high = max(start - offset, 0), min(stop - offset, count)
        if low < high:
            ids.extend(source.ids(context.redis, low, high))
        offset += count
    return ids, sum(counts)


def _sources(context: Context, state: str, queue: str | None, where: Filter) -> tuple[list, Filter]:
    """Where the jobs of `state` (in `queue`, or all) matching `where` are read from, and the part of
    `where` left to check job by job. Ended jobs filtered by name or time come from the index, exactly;
    everything else from the queues and registries."""
    queues = [queue] if queue else queue_names(context)
    if state in index.STATES and (where.name is not None or where.timed):
        ranges = [
            index.range_of(context.keys, state, q, where.name, where.since, where.until) for q in queues
        ]
        return ranges, Filter(error=where.error, failed_before=where.failed_before)
    return [_state_list(context, state, q) for q in queues], where


def _summaries(context: Context, ids: list[str], state: str | None = None) -> list[JobSummary]:
    """Summaries of `ids` (gone ones left out, and with `state`, those no longer in it) in two round trips."""
    jobs = Job.fetch_many(ids, connection=context.redis)
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), ERROR_FIELD)
        errors = pipe.execute()
    summaries = [_summary(job, error) for job, error in zip(jobs, errors, strict=True) if job is not None]
    return [summary for summary in summaries if state is None or summary.state in _SHOWN_AS[state]]


def _summary(job: Job, error: bytes | None) -> JobSummary:
    return JobSummary(
        job.id,
        job.job_name,
        job.origin,
        _state(job),
        job.enqueued_at,
        job.ended_at,
        error and error.decode(),
    )


@dataclass(frozen=True)
class Filter:
    """What a job list may be narrowed to; None matches everything."""

    name: str | None = None
    error: str | None = None  # substring of the failure summary ("Type: message"), case-insensitive
    since: datetime | None = None  # ended (or enqueued) at or after
    until: datetime | None = None  # ended (or enqueued) before
    failed_before: bool = False  # only jobs with a failed attempt (a scheduled one: a retry)

    def __bool__(self) -> bool:
        return any((self.name, self.error, self.since, self.until, self.failed_before))

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def matches(self, job: JobSummary) -> bool:
        return self.accepts(job.name, job.error, job.ended_at or job.enqueued_at)

    def accepts(self, name: str | None, error: str | None, moment: datetime | None) -> bool:
        """Whether a job of `name`, failure summary `error`, ended (or enqueued) at `moment` matches."""
        return (
            (self.name is None or name == self.name)
            and (self.error is None or self.error.lower() in (error or "").lower())
            and (self.since is None or (moment is not None and moment >= self.since))
            and (self.until is None or (moment is not None and moment < self.until))
            and (not self.failed_before or error is not None)
        )


# Matches failure summaries server-side, so that only matching ids come back. Lua lowers ASCII letters
# only: the error filter is case-insensitive for those.
_ERRORS_MATCHING = """
local found = {}
for i = 4, #ARGV do
  local error = redis.call('HGET', ARGV[1] .. ARGV[i], ARGV[2])
  if error and string.find(string.lower(error), ARGV[3], 1, true) then
    found[#found + 1] = ARGV[i]
  end
end
return found
"""


@functools.cache
def _errors_script(connection):
    """The error-matching script, registered once per client."""
    return connection.register_script(_ERRORS_MATCHING)


def _matching(context: Context, ids: list[str], where: Filter) -> list[str]:
    """The ids of `ids` that `where` matches, in order; gone ones never match."""
    if where.name is None and not where.timed:
        return _matching_errors(context, ids, where.error)
    return _matching_fields(context, ids, where)


def _matching_errors(context: Context, ids: list[str], text: str | None) -> list[str]:
    """The ids of jobs with a failure summary (containing `text`, if given), matched by the server."""
    script = _errors_script(context.redis)
    found = script(args=[Job.redis_job_namespace_prefix, ERROR_FIELD, (text or "").lower(), *ids])
    return [job_id.decode() for job_id in found]


def _matching_fields(context: Context, ids: list[str], where: Filter) -> list[str]:
    """`_matching` for a name or time filter: reads only the fields the filter needs (HMGET, not
    HGETALL) and builds no Job, 5 to 10 times cheaper per job than a summary."""
    fields = [ERROR_FIELD] + (["data"] if where.name is not None else [])
    fields += ["ended_at", "enqueued_at"] if where.timed else []
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), fields)
        rows = pipe.execute()
    found = []
    for job_id, values in zip(ids, rows, strict=True):
        row = dict(zip(fields, values, strict=True))
        if where.name is not None and row["data"] is None:  # expired or deleted since its id was read
            continue
        name = _func_name(row["data"]) if where.name is not None else None
        moment = row.get("ended_at") or row.get("enqueued_at")
        error = row[ERROR_FIELD]
        if where.accepts(name, error and error.decode(), parse_time(moment.decode()) if moment else None):
            found.append(job_id)
    return found


def _func_name(data: bytes) -> str:
    """The name in a job's raw `data` field, read as RQ's Job.restore reads it: the serialized (func_name,
    instance, args, kwargs), zlib-compressed (plain in jobs of old RQ versions); "?" when unreadable."""
    with contextlib.suppress(zlib.error):
        data = zlib.decompress(data)
    try:
        return JSONSerializer.loads(data)[0] or "?"
    except (ValueError, TypeError, IndexError, KeyError):
        return "?"


def _indexed(state: str, sources: list) -> str | None:
    """`state` when the sources are index ranges, whose entries may outlive a move made by RQ's tools."""
    return state if sources and isinstance(sources[0], index.Range) else None


def list_jobs(
    context: Context,
    state: str,
    queue: str | None = None,
    name: str | None = None,
    page: int = 1,
    per_page: int = 20,
    where: Filter | None = None,
) -> Page:
    """One page of the jobs in `state`, newest first (queue by queue when no queue is given).

    The cost is O(per_page) whatever the number of jobs, also for finished and failed jobs filtered by
    name and time range. Any other filter is applied to the newest FILTER_SCAN_LIMIT candidates;
    `Page.scanned` says how many were looked at.
    """
    if state not in STATES:
        raise ConfigError(f"unknown state {state!r}; use one of {', '.join(STATES)}")
    if per_page < 1:
        raise ConfigError(f"--per-page must be at least 1, not {per_page}")
    page = max(1, page)
    sources, rest = _sources(context, state, queue, where or Filter(name=name))
    start = (page - 1) * per_page
    if not rest:
        ids, total = _window(context, sources, start, start + per_page)
        return Page(_summaries(context, ids, _indexed(state, sources)), total, page, per_page)
    matching, scanned, total = [], 0, None
    while scanned < FILTER_SCAN_LIMIT:
        ids, total = _window(context, sources, scanned, min(scanned + SCAN_BATCH, FILTER_SCAN_LIMIT))
        if not ids:
            break
        matching.extend(_matching(context, ids, rest))
        scanned += len(ids)
    return Page(
        _summaries(context, matching[start : start + per_page], _indexed(state, sources)),
        len(matching),
        page,
        per_page,
        scanned=scanned,
        complete=scanned >= (total or 0),
    )


def matching_ids(context: Context, state: str, queue: str | None, where: Filter) -> list[str]:
    """Every id of `state` (in `queue`, or all) that `where` matches, for bulk actions."""
    sources, rest = _sources(context, state, queue, where)
    found, offset = [], 0
    while True:
        ids, _ = _window(context, sources, offset, offset + SCAN_BATCH)
        if not ids:
            return found
        found.extend(_matching(context, ids, rest) if rest else ids)
        offset += len(ids)


@dataclass
class QueueStats:
    """Depth of one queue by state, and the age of its oldest queued job."""

    name: str
    counts: dict[str, int]
    oldest_age: float | None


@dataclass
class Stats:
    """The job store at a glance."""

    queues: list[QueueStats]
    succeeded_last_hour: int
    failed_last_hour: int
    succeeded_last_day: int
    failed_last_day: int
    by_name_last_day: dict[str, dict[str, int]]
    workers: int

    def to_dict(self) -> dict:
        return asdict(self)


def queue_stats(context: Context, queue_name: str) -> QueueStats:
    """Counts per state for one queue."""
    queue = queue_for(context, queue_name)
    counts = {state: _count(context, state, queue_name) for state in STATES}
    return QueueStats(queue_name, counts, _oldest_age(context, queue))


def _oldest_age(context: Context, queue) -> float | None:
    """Seconds since the oldest of the first OLDEST_LOOKED_AT queued jobs was queued. Not just the head:
    jobs put back at the front (shutdown, orphan sweep) are queued anew and hide older ones behind them."""
    ids = context.redis.lrange(queue.key, 0, OLDEST_LOOKED_AT - 1)
    with context.redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id.decode()), "enqueued_at")
        texts = pipe.execute()
    moments = []
    for text in texts:
        with contextlib.suppress(AttributeError, ValueError):  # gone since LRANGE, or not written by RQ
            moments.append(parse_time(text.decode()))
    return time.time() - min(moments).timestamp() if moments else None


def stats(context: Context) -> Stats:
    """Counts per queue and state, and succeeded/failed totals for the last hour and day."""
    redis, keys = context.redis, context.keys

    def total(status: str, unit: str, buckets: int) -> int:
        return sum(count for _, count in timeline.series(redis, keys, status, unit, buckets))

    succeeded = timeline.by_name(redis, keys, "succeeded", "hour", 24)
    failed = timeline.by_name(redis, keys, "failed", "hour", 24)
    by_name = {
        n: {"succeeded": succeeded.get(n, 0), "failed": failed.get(n, 0)}
        for n in sorted({*succeeded, *failed})
    }
    return Stats(
        queues=[queue_stats(context, name) for name in queue_names(context)],
        succeeded_last_hour=total("succeeded", "minute", 60),
        failed_last_hour=total("failed", "minute", 60),
        succeeded_last_day=sum(succeeded.values()),
        failed_last_day=sum(failed.values()),
        by_name_last_day=by_name,
        workers=len(workers(context)),
    )


@dataclass
class WorkerView:
    """A worker process as its heartbeat last reported it."""

    name: str
    host: str
    pid: int
    queues: list[str]
    state: str
    current_job: str | None
    since: datetime | None
    last_heartbeat: datetime | None
    dead: bool
    kind: str = "worker"  # or "scheduler"

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def workers(context: Context) -> list[WorkerView]:
    """Every registered worker; `dead` when its heartbeat is older than the orphan timeout."""
    views = []
    for key, fields in _worker_hashes(context):
        beat, pid = _time_or_none(fields.get("last_heartbeat")), fields.get("pid", "")
        views.append(
            WorkerView(
                key.removeprefix(RQWorker.redis_worker_namespace_prefix),
                fields.get("hostname") or "?",
                int(pid) if pid.isdigit() else 0,
                [name for name in fields.get("queues", "").split(",") if name],
                fields.get("state", "?"),
                fields.get("current_job") or None,
                _time_or_none(fields.get("birth")),
                beat,
                beat is None or time.time() - beat.timestamp() > context.settings.orphan_timeout,
            )
        )
    return sorted(views + schedulers(context), key=lambda view: (view.kind, view.host, view.pid))


def _worker_hashes(context: Context) -> list[tuple[str, dict[str, str]]]:
    """The key and fields of every registered worker whose hash is there. Read, not RQ's `Worker.all`:
    that one also takes the workers whose hash has expired out of the registration sets, a write."""
    keys = sorted(member.decode() for member in context.redis.smembers(RQWorker.redis_workers_keys))
    with context.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        hashes = pipe.execute()
    return [
        (key, {name.decode(): value.decode(errors="replace") for name, value in raw.items()})
        for key, raw in zip(keys, hashes, strict=True)
        if raw
    ]


def _time_or_none(text: str | None) -> datetime | None:
    """A time as RQ writes it, or None (absent, or not written by RQ)."""
    try:
        return parse_time(text) if text else None
    except ValueError:
        return None


def schedulers(context: Context) -> list[WorkerView]:
    """Scheduler processes seen in the last day; `dead` when silent for over a minute."""
    views = []
    for raw, beat in context.redis.zrange(context.keys.schedulers, 0, -1, withscores=True):
        name = raw.decode()
        host, _, pid = name.removeprefix("scheduler-").rpartition("-")
        last = datetime.fromtimestamp(beat, UTC)
        dead = time.time() - beat > SCHEDULER_SILENCE
        views.append(
            WorkerView(
                name,
                host,
                int(pid or 0),
                [],
                "dead" if dead else "scheduling",
                None,
                None,
                last,
                dead,
                "scheduler",
            )
        )
    return views
