"""Per-job state history and succeeded/failed counters.

A job's history is read from two places. Its hash (RQ's) tells the ordinary events of its latest
attempt: enqueued (when it was queued at once), started, succeeded. The timeline key holds the rest
(scheduled, failed, retry, orphaned, ...) and the start of every attempt that did not succeed, written out
(`close_attempt`) before the next attempt overwrites the hash's. A job that runs once and succeeds, the
common case, thus writes no timeline at all.

Timeline writers add commands to a pipeline the caller already sends (RQ's own lifecycle pipelines), so
recording costs no extra round trip; counters are summed in a Tally and written in batches. Timelines
and counters expire on their own: nothing here grows without bound.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from redis import exceptions as redis_errors
from redis.client import Pipeline
from rq.job import Job
from rq.utils import as_text

from .keys import Keys
from .rqtimes import parse_time

MINUTE_BUCKETS_TTL = 2 * 86400
HOUR_BUCKETS_TTL = 8 * 86400
STATUSES = ("succeeded", "failed")  # the outcomes a Tally counts
UNITS = {"minute": ("%Y%m%d%H%M", 60, MINUTE_BUCKETS_TTL), "hour": ("%Y%m%d%H", 3600, HOUR_BUCKETS_TTL)}


def record(pipe: Pipeline, keys: Keys, job_id: str, event: str, ttl: int, **details) -> None:
    """Append `event` (with `details`) to the job's timeline and let the timeline live `ttl` more seconds."""
    append(pipe, keys, job_id, entry(event, **details), ttl)


def entry(event: str, **details) -> str:
    """A timeline entry: `event` now, with `details` (None values left out), as JSON."""
    return json.dumps(_event(event, time.time(), **details), default=str)


def _event(event: str, at: float, **details) -> dict:
    """`event` at epoch time `at` (to the microsecond, as the job hash keeps times), with `details`."""
    data = {"at": round(at, 6), "event": event}
    data.update({key: value for key, value in details.items() if value is not None})
    return data


def close_attempt(pipe: Pipeline, keys: Keys, job: Job, ttl: int) -> None:
    """Write out the start of `job`'s attempt, which ends other than in success: the next attempt
    overwrites the hash that tells it. Call it once per such attempt."""
    if job.started_at is not None:
        started = _started(job.started_at.timestamp(), job.worker_name)
        append(pipe, keys, job.id, json.dumps(started), ttl)


def worker_name(host: str, pid: int, suffix: str) -> str:
    """A worker's name that says where it runs ("host.pid.suffix"), so a job's start can say it too."""
    return f"{host}.{pid}.{suffix}"


def _started(at: float, worker: str | None) -> dict:
    """The `started` event of an attempt started at `at` by `worker` (host and pid when its name has them)."""
    host, _, pid = (worker or "").rpartition(".")[0].rpartition(".")
    if not (host and pid.isdigit()):
        return _event("started", at, worker=worker)
    return _event("started", at, worker=worker, host=host, pid=int(pid))


def append(pipe: Pipeline, keys: Keys, job_id: str, encoded_entry: str, ttl: int) -> None:
    """Append an `entry(...)` to the job's timeline (one entry may serve many jobs, as in a bulk enqueue)."""
    key = keys.timeline(job_id)
    pipe.rpush(key, encoded_entry)
    pipe.expire(key, max(1, int(ttl)))


DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)  # seconds


def durations(redis, keys: Keys, hours: int, end: float | None = None) -> dict[str, dict[str, float]]:
    """Per job name, run counts per duration bucket (not cumulative) and the sum, over the last `hours`."""
    last = datetime.fromtimestamp(end or time.time(), UTC)
    totals: dict[str, dict[str, float]] = {}
    with redis.pipeline(transaction=False) as pipe:
        for back in range(hours):
            pipe.hgetall(keys.durations((last - timedelta(hours=back)).strftime(UNITS["hour"][0])))
        for fields in pipe.execute():
            for field, value in fields.items():
                name, _, bucket = field.decode().rpartition("|")
                per_name = totals.setdefault(name, {})
                per_name[bucket] = per_name.get(bucket, 0) + float(value)
    return totals


_HASH_FIELDS = ("status", "created_at", "source", "origin", "started_at", "ended_at", "worker_name")


def history(redis, keys: Keys, job_id: str) -> list[dict]:
    """The job's timeline, oldest first: its stored events and those its hash tells."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.lrange(keys.timeline(job_id), 0, -1)
        pipe.hmget(Job.key_for(job_id), _HASH_FIELDS)
        stored, values = pipe.execute()
    events = [json.loads(raw) for raw in stored]
    fields = {name: as_text(value) for name, value in zip(_HASH_FIELDS, values, strict=True) if value}
    known = {(event["event"], event["at"]) for event in events}
    events += [event for event in latest_attempt(fields) if (event["event"], event["at"]) not in known]
    return sorted(events, key=lambda event: event["at"])


def latest_attempt(fields: dict[str, str]) -> list[dict]:
    """The ordinary events a job hash's `fields` tell: enqueued (if queued at once, with its `source`),
    the start of its latest attempt and, when that succeeded, the success."""
    events = []
    if "source" in fields and "created_at" in fields:
        created = _epoch(fields["created_at"])
        events.append(_event("enqueued", created, source=fields["source"], queue=fields.get("origin")))
    if "started_at" in fields:
        started = _epoch(fields["started_at"])
        events.append(_started(started, fields.get("worker_name")))
        if fields.get("status") == "finished" and "ended_at" in fields:
            ended = _epoch(fields["ended_at"])
            events.append(_event("succeeded", ended, ms=round((ended - started) * 1000, 1)))
    return events


def _epoch(text: str) -> float:
    """Epoch seconds of a time as RQ writes it."""
    return parse_time(text).timestamp()


class Tally:
    """Succeeded/failed counters and duration histograms, summed in memory until written.

    A worker keeps one per process and writes it about once a second in one pipeline: thousands of jobs
    a second then cost a handful of commands instead of seven per job. Counts are statistics, not job
    state: a process killed between two writes loses at most that interval of them.
    """

    def __init__(self, keys: Keys):
        self.keys = keys
        self._lock = threading.Lock()
        self._counts: Counter = Counter()  # (key, field) -> increment
        self._sums: Counter = Counter()  # (key, field) -> seconds to add
        self._ttls: dict[str, int] = {}
        self._minute = -1  # the epoch minute that _targets are for
        self._targets: dict[str, tuple[tuple[str, int], ...]] = {}  # status -> (key, ttl) per unit

    def _targets_at(self, at: float | None) -> dict[str, tuple[tuple[str, int], ...]]:
        """For each status and for "durations", the keys (and their ttls) that count epoch time `at` (now
        if None), worked out once a minute."""
        minute = int((at or time.time()) // 60)
        if minute != self._minute:
            moment = datetime.fromtimestamp(minute * 60, UTC)
            stamps = {unit: moment.strftime(fmt) for unit, (fmt, _, _) in UNITS.items()}
            targets = {
                status: tuple(
                    (self.keys.stats(status, unit, stamps[unit]), ttl) for unit, (_, _, ttl) in UNITS.items()
                )
                for status in STATUSES
            }
            targets["durations"] = ((self.keys.durations(stamps["hour"]), HOUR_BUCKETS_TTL),)
            self._minute, self._targets = minute, targets
        return self._targets

    def count(self, status: str, job_name: str | None, at: float | None = None) -> None:
        """Count one `status` (succeeded|failed) of `job_name` in its minute and hour buckets."""
        targets, name = self._targets_at(at)[status], job_name or "?"
        with self._lock:
            for key, ttl in targets:
                self._counts[key, name] += 1
                self._ttls[key] = ttl

    def duration(self, job_name: str | None, seconds: float, at: float | None = None) -> None:
        """Count one successful run of `job_name` that took `seconds` in its hour's duration histogram."""
        (key, ttl), name = self._targets_at(at)["durations"][0], job_name or "?"
        edge = bisect.bisect_left(DURATION_BUCKETS, seconds)
        bucket = str(DURATION_BUCKETS[edge]) if edge < len(DURATION_BUCKETS) else "+Inf"
        with self._lock:
            self._counts[key, f"{name}|{bucket}"] += 1
            self._sums[key, f"{name}|sum"] += round(seconds, 6)
            self._ttls[key] = ttl

    def add(self, key: str, field: str, amount: float) -> None:
        """Add `amount` to the hash field `field` of `key` (a key that manages its own expiry)."""
        with self._lock:
            if isinstance(amount, int):
                self._counts[key, field] += amount
            else:
                self._sums[key, field] += amount

    def write(self, pipe: Pipeline) -> tuple:
        """Add everything counted so far to `pipe` and start again from zero; returns what was taken, for
        `restore` if `pipe` fails."""
        with self._lock:
            taken = self._counts, self._sums, self._ttls
            self._counts, self._sums, self._ttls = Counter(), Counter(), {}
        counts, sums, ttls = taken
        for (key, field), value in counts.items():
            pipe.hincrby(key, field, value)
        for (key, field), value in sums.items():
            pipe.hincrbyfloat(key, field, value)
        for key, ttl in ttls.items():
            pipe.expire(key, ttl)
        return taken

    def restore(self, taken: tuple) -> None:
        """Count again what a failed `write` took, for the next write."""
        counts, sums, ttls = taken
        with self._lock:
            self._counts.update(counts)
            self._sums.update(sums)
            self._ttls.update(ttls)

    def flush(self, redis) -> None:
        """Write everything counted so far in one round trip, as one transaction; on a Redis error the
        counts are kept for the next flush."""
        with redis.pipeline() as pipe:
            taken = self.write(pipe)
            try:
                pipe.execute()
            except redis_errors.RedisError:
                self.restore(taken)
                raise


_worker_tally: Tally | None = None  # the counters of the worker running in this process, if one runs


def worker_tally(keys: Keys) -> Tally:
    """The counters of the worker running in this process, one per process whatever its threads, made on
    first use; its heartbeat thread writes them."""
    global _worker_tally
    if _worker_tally is None:
        _worker_tally = Tally(keys)
    return _worker_tally


def count(pipeline: Pipeline, keys: Keys, status: str, job_name: str, seconds: float | None = None) -> None:
    """Count a job's outcome (and the duration of a success): in the counters of the worker running in
    this process, else in `pipeline`; held instead within `counts_held`."""
    held = getattr(_held, "counts", None)
    if held is not None:
        held.append((status, job_name, seconds))
        return
    tally = _worker_tally or Tally(keys)
    _count(tally, status, job_name, seconds)
    if tally is not _worker_tally:
        tally.write(pipeline)


def _count(tally: Tally, status: str, job_name: str, seconds: float | None) -> None:
    tally.count(status, job_name)
    if seconds is not None:
        tally.duration(job_name, seconds)


_held = threading.local()


@contextmanager
def counts_held() -> Iterator[list]:
    """Within the block, the counts this thread makes (`count`) are kept in the list it yields instead:
    `make_counts` makes them once what they count has been written (a worker's job ends ride in its next
    take, which may find one stale and write nothing)."""
    _held.counts = held = []
    try:
        yield held
    finally:
        _held.counts = None


def make_counts(held: list, tally: Tally) -> None:
    """Make in `tally` the counts held by `counts_held`."""
    for status, job_name, seconds in held:
        _count(tally, status, job_name, seconds)


def series(
    redis, keys: Keys, status: str, unit: str, buckets: int, end: float | None = None
) -> list[tuple[datetime, int]]:
    """Totals of `status` per `unit` for the last `buckets` units up to `end`, oldest first."""
    fmt, size, _ = UNITS[unit]
    last = datetime.fromtimestamp(end or time.time(), UTC)
    moments = [last - timedelta(seconds=size * back) for back in range(buckets - 1, -1, -1)]
    with redis.pipeline(transaction=False) as pipe:
        for moment in moments:
            pipe.hvals(keys.stats(status, unit, moment.strftime(fmt)))
        values = pipe.execute()
    return [(moment, sum(int(v) for v in counts)) for moment, counts in zip(moments, values, strict=True)]


def by_name(
    redis, keys: Keys, status: str, unit: str, buckets: int, end: float | None = None
) -> dict[str, int]:
    """Counts of `status` per job name over the last `buckets` units."""
    fmt, size, _ = UNITS[unit]
    last = datetime.fromtimestamp(end or time.time(), UTC)
    totals: dict[str, int] = {}
    with redis.pipeline(transaction=False) as pipe:
        for back in range(buckets):
            pipe.hgetall(keys.stats(status, unit, (last - timedelta(seconds=size * back)).strftime(fmt)))
        for counts in pipe.execute():
            for name, value in counts.items():
                name = name.decode() if isinstance(name, bytes) else name
                totals[name] = totals.get(name, 0) + int(value)
    return totals
