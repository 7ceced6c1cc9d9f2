"""A job as the platform runs it: RQ's Job, serialized as JSON, resolved through the catalog, run under
its lock, recording its timeline, its counts and its one-line error; read from its hash cheaply (templates
of the shapes jobs share) and written by RQ's own paths with every write in the caller's pipeline."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import zlib

from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus, _job_stack, parse_job_id, validate_job_id
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now

from . import bodies, catalog, index, locks, timeline
from .connection import Context, current
from .errors import LockUnavailable, UnreadableJob, WorkerInterrupted
from .rqtimes import format_time, parse_time
from .timeouts import JobTimeoutIgnored


def error_summary(exc: BaseException | None, exc_string: str = "") -> str:
    """One line naming the exception type and message."""
    if exc is not None:
        return f"{type(exc).__name__}: {exc}".rstrip(": ")
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


class _Result(Result):
    """RQ's result of a run, made with its job's serializer as it is: RQ checks the serializer it is
    given against a runtime-checkable Protocol, 12 µs per result on Python 3.11 (a tenth of what a short
    job costs its worker); a job's serializer was checked when the job was made."""

    def __init__(self, *args, serializer=None, **kwargs):
        super().__init__(*args, **kwargs)
        if serializer is not None:
            self.serializer = serializer


def schedule(queue, job: RQJob, due: float, pipeline) -> None:
    """Save `job` as scheduled on `queue` for epoch time `due` (rounded up to RQ's whole seconds), every
    write in `pipeline`: RQ's own `schedule_job` adds the registry entry outside the pipeline it is given."""
    pipeline.sadd(queue.redis_queues_keys, queue.key)
    queue._persist_job(job, pipeline, status=JobStatus.SCHEDULED)
    pipeline.zadd(queue.scheduled_job_registry.key, {job.id: math.ceil(due)})


ERROR_FIELD = "error"  # job hash field: one-line summary of the last failure ("Type: message")
PENDING_STATES = {b"queued", b"scheduled", b"started", b"deferred"}  # raw `status` of a job not yet done


def pending_owner(pipe, unique_key: str) -> str | None:
    """The id of the job not done yet that holds `unique_key`, if any; both keys watched in `pipe` (a
    pipeline before its MULTI)."""
    pipe.watch(unique_key)
    owner = pipe.get(unique_key)
    if owner is None:
        return None
    owner_key = Job.key_for(owner.decode())
    pipe.watch(owner_key)
    return owner.decode() if pipe.hget(owner_key, "status") in PENDING_STATES else None


def pending_ttl(context: Context, delay: float = 0) -> int:
    """How long a timeline must live while its job is not finished yet."""
    return int(max(context.settings.succeeded_ttl, context.settings.failed_ttl) + delay)


def put_back(pipe, context: Context, job: RQJob, queue) -> None:
    """Queue `job` again at the front of `queue`, in `pipe`, without counting the attempt it was in (no
    retry used): that attempt's start is written out to its timeline."""
    timeline.close_attempt(pipe, context.keys, job, pending_ttl(context))
    queue._enqueue_job(job, pipeline=pipe, at_front=True)


def success_count(job: RQJob) -> tuple[str, str, float | None]:
    """The count of `job`'s success, as timeline.count takes it: the status, the job's name and the
    seconds its run took (None if it never started)."""
    took = (job.ended_at - job.started_at).total_seconds() if job.started_at else None
    return "succeeded", job.job_name, took


_TIMES = ("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")  # job hash fields


class Template:
    """A snapshot of a job to copy many times, cheaply: a copy shares no list or dict with the snapshot or
    with another copy. Building a job costs much more (RQ checks its serializer), and so does restoring
    one from its hash."""

    def __init__(self, job: RQJob):
        self._type = type(job)
        self._state = job.__dict__.copy()
        self._copies = {
            name: copy.copy if _flat(value) else copy.deepcopy
            for name, value in self._state.items()
            if isinstance(value, list | dict)
        }
        for name, copier in self._copies.items():
            self._state[name] = copier(self._state[name])

    def copy(self):
        """A job equal to the snapshot, independent of it."""
        job = object.__new__(self._type)
        state = self._state.copy()
        for name, copier in self._copies.items():
            state[name] = copier(state[name])
        job.__dict__ = state
        return job


def _flat(container: list | dict) -> bool:
    """Whether `container` holds only immutable scalars (a shallow copy of it is a full copy)."""
    items = [*container.keys(), *container.values()] if isinstance(container, dict) else container
    return all(isinstance(item, str | bytes | int | float | None) for item in items)


@functools.cache
def _blank_template(cls, connection) -> Template:
    return Template(cls(connection=connection))


@functools.lru_cache(maxsize=256)
def _registry(kind, queue_name: str, connection, job_class):
    """RQ's registry `kind` of a queue, made once per process (registries hold no state of their own)."""
    return kind(queue_name, connection=connection, job_class=job_class, serializer=JSONSerializer)


_RAW_TIMES = tuple((name, name.encode()) for name in _TIMES)
# fields read per job, named as Redis gives them
_PER_JOB = frozenset(
    name.encode() for name in ("data", "status", "worker_name", "source", "orphaned", *_TIMES)
)
SHAPES = 256  # job shapes Job.read keeps a template of
_shapes: dict[tuple, Template] = {}
_ZLIB = b"x"  # how a zlib stream made as RQ makes it starts (JSON never does)


def _shape(raw: dict) -> tuple:
    """A job hash's fields but the per-job ones: what its template is restored from."""
    return tuple(item for item in raw.items() if item[0] not in _PER_JOB)


class Job(RQJob):
    """RQ's job, serialized as JSON, resolved through the catalog, and recording its timeline."""

    source: str | None = None  # who enqueued the job, kept in its hash when it was queued at once
    orphaned: int = 0  # how many times a worker died holding the job (jobs.maintenance)

    def __init__(self, id=None, connection=None, serializer=None):
        super().__init__(id, connection=connection, serializer=serializer or JSONSerializer)

    @classmethod
    def blank(cls, job_id: str, connection) -> Job:
        """`Job(job_id, connection)`, nothing read yet, made by copying a template: RQ checks the
        serializer on every construction, which costs more than the rest of it."""
        validate_job_id(job_id)
        job = _blank_template(cls, connection).copy()
        job._id = job_id
        return job

    @classmethod
    def read(cls, job_id: str, raw: dict, connection) -> Job:
        """The job `job_id` whose hash holds `raw` (as Redis gives it, names in bytes), as `Job.fetch`
        would read it (NoSuchJobError when it has no `data`, ValueError when a field is not RQ's). Most
        jobs share a shape (the same fields and values but for the per-job ones): each job is copied from
        a template of its shape, restored once, and given its own per-job fields, which costs less than
        a restore."""
        validate_job_id(job_id)
        shape = (cls, connection, _shape(raw))
        template = _shapes.get(shape)
        if template is None:
            model = _blank_template(cls, connection).copy()
            model.restore(dict(shape[2]) | {b"data": b""})  # no job's id or data: templates stay small
            template = Template(model)
            if len(_shapes) >= SHAPES:
                _shapes.clear()
            _shapes[shape] = template
        job = template.copy()
        job._id = job_id
        job._read_per_job(raw)
        return job

    @classmethod
    def fetch_many(cls, job_ids, connection, serializer=None) -> list[Job | None]:
        """RQ's, each job read as `read` does, where a hash that holds no job (no `data`, or a field that
        is not RQ's) is None: RQ's `fetch` finds no job there either, and one such hash (say one that a
        job's end wrote into a key deleted meanwhile) must not break a list of jobs."""
        ids = [parse_job_id(job_id) for job_id in job_ids]
        with connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(cls.key_for(job_id))
            found = pipe.execute()
        return [cls.read_or_none(job_id, raw, connection) for job_id, raw in zip(ids, found, strict=True)]

    @classmethod
    def read_or_none(cls, job_id: str, raw: dict, connection) -> Job | None:
        """The job `job_id` whose hash holds `raw` (`read`), None for no hash or one that holds no job."""
        if not raw:
            return None
        try:
            return cls.read(job_id, raw, connection)
        except (NoSuchJobError, ValueError):
            return None

    def restore(self, raw_data):
        """RQ's, but for the per-job fields, which `_read_per_job` reads (times with
        `rqtimes.parse_time`: RQ's strptime of them costs as much as the rest of a restore)."""
        raw = {name.encode() if isinstance(name, str) else name: value for name, value in raw_data.items()}
        super().restore(dict(_shape(raw)) | {b"data": b""})
        self._read_per_job(raw)

    def _read_per_job(self, raw: dict) -> None:
        """Read the fields that differ from job to job (_PER_JOB, named as Redis gives them, in bytes) as
        RQ's restore does."""
        data = raw.get(b"data")
        if data is None:
            raise NoSuchJobError(f"Unexpected job format: {raw}")
        if data[:1] == _ZLIB:  # RQ reads any data it cannot decompress as it is
            with contextlib.suppress(zlib.error):
                data = zlib.decompress(data)
        self.data = data
        for name, key in _RAW_TIMES:
            setattr(self, name, parse_time(as_text(value)) if (value := raw.get(key)) else None)
        self.created_at = self.created_at or now()
        self.worker_name = as_text(value) if (value := raw.get(b"worker_name")) else None
        self._status = JobStatus(as_text(value)) if (value := raw.get(b"status")) else JobStatus.CREATED
        self.source = as_text(value) if (value := raw.get(b"source")) else None
        self.orphaned = int(raw.get(b"orphaned") or 0)

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict:
        """RQ's, with the job's `source` when it has one."""
        data = super().to_dict(include_meta, include_result)
        if self.source:
            data["source"] = self.source
        return data

    @property
    def func(self):
        return catalog.get(self.func_name).func

    @property
    def job_name(self) -> str:
        """The job's name, "?" when its data cannot be read (for counters, indexes and logs)."""
        try:
            return self.func_name or "?"
        except DeserializationError:
            return "?"

    # RQ builds a registry object (and checks its serializer, which is slow) on every use of these.
    @property
    def started_job_registry(self):
        return _registry(StartedJobRegistry, self.origin, self.connection, type(self))

    @property
    def finished_job_registry(self):
        return _registry(FinishedJobRegistry, self.origin, self.connection, type(self))

    @property
    def failed_job_registry(self):
        return _registry(FailedJobRegistry, self.origin, self.connection, type(self))

    def _execute(self):
        """Run the job's function (under its lock, if it has one) as bodies.running() marks it. An interrupt
        or a timeout that lands as the function returns, too late to stop it, is ignored: the job has done
        its work, and requeued or failed it would run again."""
        try:
            name, _, _ = self.func_name, self.args, self.kwargs
        except DeserializationError as exc:  # never loads anything but JSON: a pickle ends up here too
            raise UnreadableJob(f"the job's data cannot be read as JSON: {exc.__cause__}") from None
        spec = catalog.get(name)
        returned: list = []  # what the function returned, once it has
        try:
            with bodies.running():
                if spec.lock is None:
                    self._call(returned)
                else:
                    self._execute_locked(spec, returned)
        except (WorkerInterrupted, JobTimeoutException, JobTimeoutIgnored):
            if not returned:
                raise
        return returned[0]

    def _call(self, returned: list) -> None:
        """RQ's run of the job's function, its result appended to `returned` the moment it has returned."""
        returned.append(super()._execute())

    def _execute_locked(self, spec, returned: list) -> None:
        """`_call` under the job's lock; when it is held, skip (recorded on the timeline, `returned` told
        so) or raise LockUnavailable for the retry policy."""
        guard = locks.lock(
            spec.render(spec.lock, self.args, self.kwargs), ttl=spec.lock_ttl, wait=spec.lock_wait
        )
        try:  # one try: a timeout raised into the job right after the lock is taken must release it too
            try:
                guard.acquire()
            except LockUnavailable as exc:
                if spec.on_locked != "skip":
                    raise
                holder = exc.holder.job if exc.holder else None
                self._note("skipped", reason=str(exc), holder=holder)
                returned.append({"skipped": str(exc)})
                return
            self._call(returned)
        finally:
            if guard.held is not None:  # taken (and renewed)
                guard.release()
                if guard.held.lost:
                    self._note("lock-lost", lock=guard.held.name, fence=guard.held.fence)

    def _note(self, event: str, **details) -> None:
        """Record an event of the running job on its timeline (its own round trip: events are rare)."""
        context = current()
        with context.redis.pipeline() as pipe:
            timeline.record(pipe, context.keys, self.id, event, pending_ttl(context), **details)
            pipe.execute()

    def perform(self):
        """RQ's, minus its PERSIST of the job hash: that rides in the start pipeline instead."""
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result

    def _handle_success(
        self,
        result_ttl,
        pipeline,
        worker_name="",
        execution_id=None,
        execution_started_at=None,
        execution_ended_at=None,
    ):
        """RQ's, except that only the fields a run changes are written (RQ saves the whole hash again; the
        job's `last_heartbeat`, which nothing reads, is not written at all). A worker finishes most jobs
        by a `Finish` instead, which writes the same. (RQ's `execution_ended_at` is the job's `ended_at`.)"""
        self._status = JobStatus.FINISHED
        ended = format_time(self.ended_at)
        pipeline.hset(self.key, mapping={"status": self._status, "ended_at": ended})
        self._record_success(result_ttl, pipeline, worker_name, execution_id, execution_started_at)
        if result_ttl != 0:
            self.finished_job_registry.add(self, result_ttl, pipeline)
            index.add(
                pipeline,
                current().keys,
                "finished",
                self.origin,
                self.job_name,
                self.ended_at,
                result_ttl,
                self.id,
            )

    def _record_success(self, result_ttl, pipeline, worker_name, execution_id, execution_started_at) -> None:
        """Write a success's result, and count it. A job returning None keeps no result stream: RQ reads
        a missing result as None, and a stream of one entry costs over 4 KB (Redis preallocates its
        first node), two thirds of what a finished job keeps."""
        if self._result is not None:
            _Result.create(
                self,
                Result.Type.SUCCESSFUL,
                return_value=self._result,
                ttl=result_ttl,
                worker_name=worker_name,
                pipeline=pipeline,
                execution_id=execution_id,
                execution_started_at=execution_started_at,
                execution_ended_at=self.ended_at,
            )
        timeline.count(pipeline, current().keys, *success_count(self))

    def _handle_failure(self, exc_string, pipeline, *args, **kwargs):
        super()._handle_failure(exc_string, pipeline, *args, **kwargs)
        context = current()
        error = getattr(self, "error", None) or error_summary(None, exc_string)
        ttl = self.failure_ttl or context.settings.failed_ttl
        self.ended_at = self.ended_at or now()
        # The one-line error serves job lists without reading the results stream; RQ saves no end time
        # for a failed job, and the index needs the one it can read back.
        pipeline.hset(self.key, mapping={ERROR_FIELD: error, "ended_at": format_time(self.ended_at)})
        index.add(pipeline, context.keys, "failed", self.origin, self.job_name, self.ended_at, ttl, self.id)
        timeline.close_attempt(pipeline, context.keys, self, ttl)
        timeline.record(pipeline, context.keys, self.id, "failed", ttl, error=error)
        timeline.count(pipeline, context.keys, "failed", self.job_name)

    def retry(self, queue, pipeline):
        """RQ's retry, with every write inside `pipeline` (RQ's delayed path writes part of it outside)."""
        delay = self.get_retry_interval()
        if delay:
            self.retries_left -= 1
            schedule(queue, self, time.time() + delay, pipeline)
        else:
            super().retry(queue, pipeline)
        context = current()
        error = getattr(self, "error", None)
        if error:
            pipeline.hset(self.key, ERROR_FIELD, error)
        timeline.close_attempt(pipeline, context.keys, self, pending_ttl(context, delay))
        timeline.record(
            pipeline,
            context.keys,
            self.id,
            "retry",
            pending_ttl(context, delay),
            error=error,
            due=round(time.time() + delay, 3),
            retries_left=self.retries_left,
        )
        timeline.count(pipeline, context.keys, "failed", self.job_name)
