"""The read-only monitoring API: page-sized views of jobs, queues, workers and counters. Never writes
(RQ registry reads are made with cleanup=False for that reason)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker import Worker as RQWorker

from . import timeline
from .connection import Context
from .enqueue import queue_for
from .errors import ConfigError, JobNotFound
from .execution import Job
from .maintenance import queue_names

SCHEDULER_SILENCE = 60  # seconds without a heartbeat after which a scheduler is shown dead
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

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def to_dict(self) -> dict:
        return {
            "items": [i.to_dict() for i in self.items],
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
        }


def _jsonable(data: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


def _state(job: Job) -> str:
    status = job.get_status(refresh=False)
    return status.value if isinstance(status, JobStatus) else str(status or "unknown")


def _traceback(job: Job) -> str | None:
    result = job.latest_result()
    return result.exc_string if result is not None else None


def _summary(job: Job) -> JobSummary:
    error = None
    if _state(job) == "failed":
        lines = (_traceback(job) or "").strip().splitlines()
        error = lines[-1] if lines else None
    return JobSummary(
        job.id, job.func_name or "?", job.origin, _state(job), job.enqueued_at, job.ended_at, error
    )


def job_detail(context: Context, job_id: str) -> JobDetail:
    """The job `job_id` with its arguments, result or traceback and timeline; JobNotFound if gone."""
    jobs = Job.fetch_many([job_id], connection=context.redis)
    job = jobs[0] if jobs else None
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r} (it may have expired)")
    history = timeline.history(context.redis, context.keys, job_id)
    summary = _summary(job)
    try:
        args, kwargs = list(job.args), dict(job.kwargs)
    except Exception as exc:  # undecodable payload: show why instead of failing the whole view
        args, kwargs = [f"<unreadable: {exc}>"], {}
    return JobDetail(
        **asdict(summary),
        args=args,
        kwargs=kwargs,
        description=job.description or "",
        started_at=job.started_at,
        worker=job.worker_name,
        attempts=sum(1 for entry in history if entry["event"] == "started"),
        retries_left=job.retries_left,
        orphaned=int(context.redis.hget(job.key, "orphaned") or 0),
        result=job.return_value() if summary.state == "finished" else None,
        traceback=_traceback(job) if summary.state == "failed" else None,
        depends_on=list(job._dependency_ids),
        timeline=history,
    )


def _ids(context: Context, state: str, queue_name: str) -> list[str]:
    """Every job id of `state` in `queue_name`, newest first."""
    queue = queue_for(context, queue_name)
    if state == "queued":
        return list(reversed(queue.get_job_ids()))
    if state == "started":
        return [
            job_id
            for job_id, _ in queue.started_job_registry.get_job_and_execution_ids(desc=True, cleanup=False)
        ]
    registry = getattr(queue, f"{state}_job_registry")
    return registry.get_job_ids(desc=True, cleanup=False)


def list_jobs(
    context: Context,
    state: str,
    queue: str | None = None,
    name: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> Page:
    """One page of the jobs in `state`, optionally of one queue and one job name, newest first."""
    if state not in STATES:
        raise ConfigError(f"unknown state {state!r}; use one of {', '.join(STATES)}")
    if per_page < 1:
        raise ConfigError(f"--per-page must be at least 1, not {per_page}")
    page = max(1, page)
    ids = [job_id for q in ([queue] if queue else queue_names(context)) for job_id in _ids(context, state, q)]
    start = (page - 1) * per_page
    if name is None:
        jobs = [j for j in Job.fetch_many(ids[start : start + per_page], connection=context.redis) if j]
        return Page([_summary(j) for j in jobs], len(ids), page, per_page)
    matching = []
    for offset in range(0, len(ids), 500):
        batch = Job.fetch_many(ids[offset : offset + 500], connection=context.redis)
        matching.extend(j for j in batch if j and j.func_name == name)
    return Page([_summary(j) for j in matching[start : start + per_page]], len(matching), page, per_page)


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
    counts = {"queued": queue.count}
    for state in STATES[1:]:
        counts[state] = getattr(queue, f"{state}_job_registry").count
    oldest = queue.get_job_ids(0, 1)
    oldest_job = Job.fetch_many(oldest, connection=context.redis)[0] if oldest else None
    age = time.time() - oldest_job.enqueued_at.timestamp() if oldest_job and oldest_job.enqueued_at else None
    return QueueStats(queue_name, counts, age)


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
    for worker in RQWorker.all(connection=context.redis, serializer=JSONSerializer):
        beat = worker.last_heartbeat
        dead = beat is None or time.time() - beat.timestamp() > context.settings.orphan_timeout
        views.append(
            WorkerView(
                worker.name,
                worker.hostname or "?",
                worker.pid or 0,
                worker.queue_names(),
                worker.get_state(),
                worker.get_current_job_id(),
                worker.birth_date,
                beat,
                dead,
            )
        )
    return sorted(views + schedulers(context), key=lambda view: (view.kind, view.host, view.pid))


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
