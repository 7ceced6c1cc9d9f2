"""Dashboard benchmark: server-side time of every page and API call over 100,000 failed and 100,000
finished jobs, against rq-dashboard's job list on the same data.

Run it from the project root (it is a script, not a test):

    .venv/bin/python bench/dashboard.py              # full run: 100,000 failed + 100,000 finished jobs
    .venv/bin/python bench/dashboard.py --quick      # 10,000 + 10,000
    .venv/bin/python bench/dashboard.py --profile    # also cProfile each of our calls over the limit

It starts a private Redis-compatible server (`jobs.embedded.EmbeddedServer`, on a free port, in a temporary
directory) and stops it at the end; it never connects to any other server. It fills the server directly
through RQ's Job, registries and results (our Job class, JSON serializer, 1,000 jobs per pipeline), the way
a worker leaves a job behind: the job hash with its status and times, the registry entry, RQ's result
stream, the one-line `error` field our failure path writes, a timeline, and the succeeded/failed
counters. Job names (5) and error messages vary so that the `name=` and `error=` filters have something to
match; 5 % of the finished jobs carry an `error` (they failed an attempt before succeeding). A little of
everything else is added so that no page is trivially empty: a queued backlog, scheduled retries, worker
and scheduler heartbeats, recurring schedules, held locks and audit entries.

Every call goes through Flask's test client on `dashboard.create_app(settings)` (no HTTP server, no
network): the time is the server's own, `time.perf_counter` around the request. Each call is made once
unmeasured (templates compile, connections open), then `--repeat` times; the table shows the first call,
the median and the max, and flags a median over the limit (100 ms).

Filtered job lists (name and time from the index; error text searched through the newest
`jobs.inspect.FILTER_SCAN_LIMIT` jobs) are shown in a table of their own. rq-dashboard (mounted at /rq) is timed on its JSON job list for the middle
page of the failed jobs, at our page size (25, the same rows as our middle page) and at its own default (8).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path, and this file is named like the
# `dashboard` package it measures: put the project root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.append(str(ROOT / "bench"))  # after the project root: for benchkit only

from benchkit import private_server  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from rq.job import JobStatus  # noqa: E402
from rq.results import Result  # noqa: E402

from dashboard import create_app, data  # noqa: E402
from jobs import admin, catalog, index, inspect, recurring, timeline  # noqa: E402
from jobs.config import DEFAULT_QUEUES, Settings  # noqa: E402
from jobs.connection import Context, activate  # noqa: E402
from jobs.enqueue import queue_for  # noqa: E402
from jobs.execution import Worker  # noqa: E402
from jobs.retries import rq_retry  # noqa: E402
from jobs.rqjob import ERROR_FIELD, Job, schedule  # noqa: E402

QUEUE = "default"
DEFAULT_JOBS = 100_000
QUICK_JOBS = 10_000
BATCH = 1_000  # jobs per pipeline when filling
REPEAT = 5
LIMIT_MS = 100.0
RQ_PER_PAGE = 8  # rq-dashboard's default page size
QUEUED = 1_000  # backlog on the default queue
SCHEDULED_RETRIES = 500
WORKERS = 4
SCHEDULES = 20
LOCKS = 5
AUDIT_ENTRIES = 300
FAILED_SPAN = 6 * 86400  # failed jobs ended over the last 6 days (kept 7)
FINISHED_SPAN = 20 * 3600  # finished jobs ended over the last 20 hours (kept 1 day)
FINISHED_WITH_ERROR = 0.05  # share of finished jobs that failed an attempt first

NAMES = (
    "billing.tasks.send_invoice",
    "reports.tasks.build_report",
    "mail.tasks.send_welcome",
    "sync.tasks.pull_orders",
    "media.tasks.resize_image",
)
# (weight, type, message template): {n} is a number that varies per job
ERRORS = (
    (40, "TimeoutError", "smtp.example.com:587 timed out after 30s"),
    (25, "ValueError", "customer {n} has no billing address"),
    (15, "ConnectionError", "orders API returned 503 (attempt {n})"),
    (10, "KeyError", "'month'"),
    (7, "PermissionError", "bucket media-{n} is read-only"),
    (3, "JobTimeoutException", "Task exceeded maximum timeout value (300 seconds)"),
)
NAME_FILTER = NAMES[1]  # a fifth of the jobs
ERROR_FILTER = "billing address"  # a quarter of the failed jobs


@dataclass
class Filled:
    """What the fill made: counts, and a failed job to show in detail."""

    failed: int
    finished: int
    detail_job: str
    schedule_id: str
    seconds: float


@dataclass
class Timing:
    """One call measured: milliseconds of the unmeasured first call and of each repeat."""

    label: str
    url: str
    first: float
    times: list[float]
    size: int
    group: str

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


class BenchError(RuntimeError):
    """A call answered with an error status."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"failed jobs, and as many finished jobs ({DEFAULT_JOBS:,})",
    )
    parser.add_argument("--quick", action="store_true", help=f"small run: --jobs {QUICK_JOBS}")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"measured calls per URL ({REPEAT})")
    parser.add_argument(
        "--rq-repeat", type=int, help="measured calls per rq-dashboard URL (default: --repeat)"
    )
    parser.add_argument("--no-rq", action="store_true", help="skip rq-dashboard (slow at 100k)")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one more call of each of ours over the limit"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = QUICK_JOBS
    args.rq_repeat = args.rq_repeat or args.repeat
    if args.jobs < 100 or args.repeat < 1:
        parser.error("--jobs must be at least 100 and --repeat at least 1")
    return args


@contextlib.contextmanager
def private_store() -> Iterator[Context]:
    """An active context on a private embedded server, in a temporary directory removed on the way out."""
    with private_server("jobs-bench-dashboard-") as (server, tempdir):
        settings = Settings(redis_url=server.url, imports=("jobs.builtin",), data_dir=tempdir / "data")
        context = activate(Context.connect(settings))
        try:
            yield context
        finally:
            context.redis.close()


# --- filling -----------------------------------------------------------------------------------------


def error_for(rng: random.Random) -> str:
    """A one-line failure summary ("Type: message"), drawn with the weights of ERRORS."""
    weights = [weight for weight, _, _ in ERRORS]
    _, kind, message = rng.choices(ERRORS, weights)[0]
    return f"{kind}: {message.format(n=rng.randrange(1, 5000))}"


def traceback_for(name: str, error: str) -> str:
    """A plausible traceback ending in `error` (what RQ keeps in the result stream)."""
    module, _, func = name.rpartition(".")
    path = module.replace(".", "/")
    return (
        "Traceback (most recent call last):\n"
        '  File "/app/.venv/lib/python3.11/site-packages/rq/job.py", line 1483, in perform\n'
        "    self._result = self._execute()\n"
        f'  File "/app/{path}.py", line 42, in {func}\n'
        "    raise_for_status(response)\n"
        f"{error}\n"
    )


def fill_jobs(context: Context, status: str, count: int, span: float, seed: int) -> tuple[str, float]:
    """`count` jobs that ended in `status` (failed|finished) over the last `span` seconds, oldest first, as
    a worker leaves them; returns the id of the middle one and the seconds it took."""
    rng = random.Random(seed)
    queue = queue_for(context, QUEUE)
    settings = context.settings
    failed = status == "failed"
    registry = queue.failed_job_registry if failed else queue.finished_job_registry
    ttl = settings.failed_ttl if failed else settings.succeeded_ttl
    now = time.time()
    counters = timeline.Tally(context.keys)
    middle = ""
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        with context.redis.pipeline(transaction=False) as pipe:
            for position in range(first, min(first + BATCH, count)):
                name = NAMES[rng.randrange(len(NAMES))]
                ended = now - span + span * (position + 1) / count
                took = rng.uniform(0.005, 2.0)
                error = error_for(rng) if failed or rng.random() < FINISHED_WITH_ERROR else None
                job = _job(queue, settings, name, position, ended, took, failed)
                remaining = max(1, int(ended + ttl - now))
                job.save(pipeline=pipe, include_meta=False, include_result=False)
                pipe.expire(job.key, remaining)
                pipe.zadd(registry.key, {job.id: int(ended + ttl)})
                if failed:
                    Result.create_failure(
                        job, remaining, traceback_for(name, error), worker_name=job.worker_name, pipeline=pipe
                    )
                else:
                    Result.create(
                        job,
                        Result.Type.SUCCESSFUL,
                        remaining,
                        return_value={"ok": True, "n": position},
                        worker_name=job.worker_name,
                        pipeline=pipe,
                    )
                if error:
                    pipe.hset(job.key, ERROR_FIELD, error)
                _timeline(pipe, context, job, error, ended, failed, remaining)
                index.add(pipe, context.keys, status, QUEUE, name, job.ended_at, remaining, job.id)
                counters.count("failed" if failed else "succeeded", name, at=ended)
                if position == count // 2:
                    middle = job.id
            pipe.execute()
    counters.flush(context.redis)
    return middle, time.perf_counter() - started


def _job(queue, settings: Settings, name: str, n: int, ended: float, took: float, failed: bool) -> Job:
    """A job of `name` that ran for `took` seconds until `ended`, with the options `jobs.enqueue` gives."""
    job = queue.create_job(
        name,
        args=[n, "2026-11"],
        timeout=300,
        result_ttl=settings.succeeded_ttl,
        failure_ttl=settings.failed_ttl,
        description=name.rpartition(".")[2].replace("_", " ").capitalize(),
        retry=rq_retry(3, 5),
        status=JobStatus.FAILED if failed else JobStatus.FINISHED,
    )
    job.retries_left = 0 if failed else 3
    job.ended_at = datetime.fromtimestamp(ended, UTC)
    job.started_at = job.ended_at - timedelta(seconds=took)
    job.enqueued_at = job.started_at - timedelta(seconds=0.01 + (n % 7) * 0.3)
    job.created_at = job.enqueued_at
    job.worker_name = f"worker-{n % WORKERS}"
    job.source = "code"
    return job


def _timeline(pipe, context: Context, job: Job, error, ended: float, failed: bool, ttl: int):
    """What a worker stores of a job's timeline besides its hash: a failure and the start of its attempt."""
    if failed:
        timeline.close_attempt(pipe, context.keys, job, ttl)
        failure = {"at": round(ended, 6), "event": "failed", "error": error}
        timeline.append(pipe, context.keys, job.id, json.dumps(failure), ttl)


def fill_rest(context: Context, rng: random.Random) -> str:
    """A queued backlog, scheduled retries, workers, schedulers, schedules, locks and audit entries;
    returns a schedule id."""
    for name in DEFAULT_QUEUES:
        context.redis.sadd("rq:queues", queue_for(context, name).key)
    queue = queue_for(context, QUEUE)
    settings = context.settings
    for first in range(0, QUEUED, BATCH):
        queue.enqueue_many(
            [
                queue.prepare_data(
                    NAMES[i % len(NAMES)],
                    args=[i, "2026-11"],
                    result_ttl=settings.succeeded_ttl,
                    failure_ttl=settings.failed_ttl,
                )
                for i in range(first, min(first + BATCH, QUEUED))
            ]
        )
    with context.redis.pipeline(transaction=False) as pipe:
        for n in range(SCHEDULED_RETRIES):
            job = queue.create_job(NAMES[n % len(NAMES)], args=[n, "2026-11"], retry=rq_retry(3, 5))
            schedule(queue, job, time.time() + rng.uniform(5, 600), pipe)
            pipe.hset(job.key, ERROR_FIELD, error_for(rng))
        for n in range(2):
            pipe.zadd(context.keys.schedulers, {f"scheduler-bench-host-{100 + n}": time.time()})
        pipe.execute()
    for n in range(WORKERS):
        worker = Worker([QUEUE], context, name=f"worker-{n}")
        worker.register_birth()
        worker.heartbeat()
    first_schedule = ""
    for n in range(SCHEDULES):
        schedule_id = f"report-{n}"
        timing = {"cron": f"{n % 60} */2 * * *", "tz": "Europe/Berlin"} if n % 2 else {"every": "5m"}
        recurring.save(context, recurring.define(schedule_id, "jobs.builtin.noop", **timing))
        first_schedule = first_schedule or schedule_id
    for n in range(LOCKS):
        context.redis.set(
            context.keys.lock(f"invoices:2026-{n + 1:02}"),
            f"{n:032x}|" + '{"job": "bench", "worker": "worker-0", "host": "bench", "pid": 1}',
            ex=3600,
        )
        context.redis.set(context.keys.fence(f"invoices:2026-{n + 1:02}"), n + 1, ex=3600)
    for n in range(AUDIT_ENTRIES):
        admin.audit(context, "bench@host", "requeue-failed", f"job-{n}", "127.0.0.1", count=1)
    return first_schedule


def fill(context: Context, count: int) -> Filled:
    """Fill the empty store with `count` failed and `count` finished jobs, and the rest."""
    context.redis.flushdb()
    started = time.perf_counter()
    detail, failed_seconds = fill_jobs(context, "failed", count, FAILED_SPAN, seed=1)
    print(f"  {count:,} failed jobs in {failed_seconds:.1f}s", flush=True)
    _, finished_seconds = fill_jobs(context, "finished", count, FINISHED_SPAN, seed=2)
    print(f"  {count:,} finished jobs in {finished_seconds:.1f}s", flush=True)
    schedule_id = fill_rest(context, random.Random(3))
    seconds = time.perf_counter() - started
    keys = context.redis.dbsize()
    memory = context.redis.info("memory").get("used_memory_human")
    print(f"  filled in {seconds:.1f}s ({keys:,} keys, {memory})", flush=True)
    return Filled(count, count, detail, schedule_id, seconds)


# --- measuring ---------------------------------------------------------------------------------------


def call(client: FlaskClient, url: str) -> tuple[float, int]:
    """Milliseconds the app takes to answer GET `url`, and the size of the answer; BenchError unless 200."""
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise BenchError(
            f"GET {url} answered {response.status_code}: {response.get_data(as_text=True)[:200]}"
        )
    return elapsed, len(response.get_data())


def measure(client: FlaskClient, label: str, url: str, repeat: int, group: str) -> Timing:
    """Time `url` once unmeasured (reported as "first"), then `repeat` times."""
    first, size = call(client, url)
    times = [call(client, url)[0] for _ in range(repeat)]
    timing = Timing(label, url, first, times, size, group)
    flag = "  SLOW" if timing.median > LIMIT_MS else ""
    print(f"  {label:<44} median {timing.median:9.1f} ms  max {timing.max:9.1f} ms{flag}", flush=True)
    return timing


def pages_of(client: FlaskClient, state: str, query: str = "") -> int:
    """How many pages the job list of `state` (with `query`) has, from the API."""
    response = client.get(f"/api/jobs/{state}?{query}")
    return response.get_json()["pages"]


def plan(client: FlaskClient, filled: Filled) -> list[tuple[str, str, str]]:
    """(label, url, group) of every call to time."""
    urls: list[tuple[str, str, str]] = []

    def first_middle_last(label: str, path: str, state: str, query: str, group: str) -> None:
        pages = pages_of(client, state, query)
        for where, page in (("first", 1), ("middle", max(1, (pages + 1) // 2)), ("last", pages)):
            separator = "&" if query else ""
            urls.append((f"{label} {where} (p{page})", f"{path}?{query}{separator}page={page}", group))

    urls.append(("overview", "/", "ours"))
    urls.append(("api overview", "/api/overview", "ours"))
    for state in ("failed", "finished"):
        first_middle_last(f"/jobs/{state}", f"/jobs/{state}", state, "", "ours")
    for state in ("failed", "finished"):
        first_middle_last(f"api /jobs/{state}", f"/api/jobs/{state}", state, "", "ours")
    for label, url in (
        ("retries", "/retries"),
        ("api retries", "/api/retries"),
        ("job detail", f"/job/{filled.detail_job}"),
        ("api job detail", f"/api/job/{filled.detail_job}"),
        ("schedules", "/schedules"),
        ("api schedules", "/api/schedules"),
        ("schedule detail", f"/schedules/{filled.schedule_id}"),
        ("workers", "/workers"),
        ("api workers", "/api/workers"),
        ("locks", "/locks"),
        ("api locks", "/api/locks"),
        ("redis", "/redis"),
        ("api redis", "/api/redis"),
        ("audit", "/audit"),
        ("api audit", "/api/audit"),
        ("metrics", "/metrics"),
    ):
        urls.append((label, url, "ours"))
    since = quote((datetime.now(UTC) - timedelta(seconds=FINISHED_SPAN / 2)).isoformat(timespec="seconds"))
    for state in ("failed", "finished"):
        first_middle_last(f"/jobs/{state} name=", f"/jobs/{state}", state, f"name={NAME_FILTER}", "filtered")
        first_middle_last(f"/jobs/{state} since=", f"/jobs/{state}", state, f"since={since}", "filtered")
        first_middle_last(
            f"/jobs/{state} name= since=",
            f"/jobs/{state}",
            state,
            f"name={NAME_FILTER}&since={since}",
            "filtered",
        )
        first_middle_last(
            f"/jobs/{state} error=",
            f"/jobs/{state}",
            state,
            f"error={ERROR_FILTER.replace(' ', '+')}",
            "filtered",
        )
    return urls


def rq_urls(filled: Filled) -> list[tuple[str, str, str]]:
    """rq-dashboard's JSON job list, middle page of the failed jobs, at our page size and at its own."""
    urls = []
    for per_page in (data.PER_PAGE, RQ_PER_PAGE):
        page = max(1, (-(-filled.failed // per_page) + 1) // 2)
        urls.append(
            (
                f"rq-dashboard failed middle ({per_page}/page, p{page})",
                f"/rq/0/data/jobs/{QUEUE}/failed/{per_page}/asc/{page}.json",
                "rq",
            )
        )
    return urls


def profile(client: FlaskClient, url: str, lines: int = 15) -> str:
    """cProfile of one call of `url`: the functions with the most cumulative time below the Flask view,
    then those with the most time of their own."""
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(url)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/(jobs|dashboard|rq|redis|jinja2)/", lines)
    stats.sort_stats("tottime").print_stats(lines)
    return out.getvalue()


# --- report ------------------------------------------------------------------------------------------


def print_table(title: str, timings: list[Timing]) -> None:
    """One table of timings, calls over the limit flagged."""
    if not timings:
        return
    print()
    print(title)
    header = f"{'call':<46} {'first ms':>9} {'median ms':>10} {'max ms':>9} {'bytes':>9}  flag"
    print(header)
    print("-" * len(header))
    for t in timings:
        flag = f"> {LIMIT_MS:g} ms" if t.median > LIMIT_MS else ""
        print(f"{t.label:<46} {t.first:>9.1f} {t.median:>10.1f} {t.max:>9.1f} {t.size:>9,}  {flag}")


def print_ratio(timings: list[Timing]) -> None:
    """Ours vs rq-dashboard on the middle page of failed jobs (same rows: our page size)."""
    ours = {t.label.split(" (")[0]: t for t in timings if t.group == "ours"}
    rq = [t for t in timings if t.group == "rq"]
    if not rq:
        return
    print()
    print("Middle page of failed jobs, ours vs rq-dashboard (median):")
    for label in ("/jobs/failed middle", "api /jobs/failed middle"):
        mine = ours.get(label)
        if mine is None:
            continue
        for other in rq:
            print(
                f"  {label:<26} {mine.median:8.1f} ms vs {other.label:<44} {other.median:10.1f} ms"
                f"  rq-dashboard/ours = {other.median / mine.median:,.0f}x"
            )


def main(argv: list[str] | None = None) -> int:
    """Fill a private server, time every call and print the tables; exit code 1 if a call failed."""
    args = parse_args(argv)
    catalog.load(["jobs.builtin"])
    with private_store() as context:
        print(
            f"server {context.url} (private); {args.jobs:,} failed + {args.jobs:,} finished jobs;"
            f" {args.repeat} measured calls per URL; {os.cpu_count()} CPU(s)",
            flush=True,
        )
        print("filling:", flush=True)
        filled = fill(context, args.jobs)
        app = create_app(context.settings, testing=True)
        client = app.test_client()
        timings: list[Timing] = []
        failures = 0
        print("measuring:", flush=True)
        calls = plan(client, filled) + ([] if args.no_rq else rq_urls(filled))
        for label, url, group in calls:
            repeat = args.rq_repeat if group == "rq" else args.repeat
            try:
                timings.append(measure(client, label, url, repeat, group))
            except BenchError as exc:
                failures += 1
                print(f"  {label}: FAILED: {exc}", flush=True)
        slow = [t for t in timings if t.group != "rq" and t.median > LIMIT_MS]
        profiles = {t.label: profile(client, t.url) for t in slow} if args.profile else {}
    scan = f"{inspect.FILTER_SCAN_LIMIT:,}"
    jobs = f"{args.jobs:,} failed + {args.jobs:,} finished jobs"
    print_table(f"Pages and API, ms per call ({jobs}; {data.PER_PAGE}/page)", _group(timings, "ours"))
    print_table(
        f"Filtered job lists (name, since: the index; error: searches the newest {scan}; name={NAME_FILTER}, error={ERROR_FILTER})",
        _group(timings, "filtered"),
    )
    print_table("rq-dashboard at /rq (JSON job list)", _group(timings, "rq"))
    print_ratio(timings)
    print()
    over = [t.label for t in timings if t.group != "rq" and t.median > LIMIT_MS]
    print(f"over {LIMIT_MS:g} ms (median): {', '.join(over) if over else 'none'}")
    for label, text in profiles.items():
        print(f"\n--- cProfile: {label} ---\n{text}")
    return 1 if failures else 0


def _group(timings: list[Timing], group: str) -> list[Timing]:
    return [t for t in timings if t.group == group]


if __name__ == "__main__":
    sys.exit(main())
