"""Throughput benchmark: our worker pool against plain RQ's SimpleWorker and RQ's forking Worker.

Run it from the project root (it is a script, not a test):

    .venv/bin/python bench/throughput.py               # full run: 20,000 jobs per measurement
    .venv/bin/python bench/throughput.py --jobs 2000   # smaller run
    .venv/bin/python bench/throughput.py --quick       # same as --jobs 2000 --fork-jobs 500

It starts a private Redis-compatible server (`jobs.embedded.EmbeddedServer`) in a temporary directory and
stops it at the end. With `--redis-url` it uses that server instead, and FLUSHDB's the DB of the URL
between measurements (never FLUSHALL): point it at a DB that holds nothing you want to keep.

For each workload (no-op jobs, 1-ms sleep jobs, jobs that raise) and each process count (1, 2), the jobs
are enqueued first; then the clock starts as the workers are started (our package compiled to bytecode
beforehand, as pip compiles RQ's) and stops when the finished registry (for jobs that raise: the failed
registry) holds every job. Three workers run the same function (`jobs.builtin.noop` /
`jobs.builtin.sleep` / `jobs.builtin.fail`, none retried), enqueued by name on the same queue with the
JSON serializer:

- ours: `python -m jobs worker --burst -c N` (the pool supervisor and N in-process workers);
- SimpleWorker: N processes of `rq worker --burst -w rq.worker.SimpleWorker`;
- forking Worker: N processes of `rq worker --burst` (RQ's default Worker forks a work horse per job).

RQ's forking Worker is an order of magnitude slower (a fork per job), so `--fork-jobs` can give it
fewer jobs to keep a run short; its rate in jobs/s stays comparable. (On a small 2-core machine that
drains a few hundred jobs/s, the full default run takes about an hour, mostly in the forking Worker;
`--jobs 5000 --fork-jobs 1000` takes about five minutes.)

It also times enqueueing no-op jobs, pipelined (`Queue.enqueue_many`) and one by one (`jobs.enqueue`).
One by one is timed twice on the private server, each time in three rounds that alternate ours, RQ's, a
bare LPUSH, ours and RQ's for jobs delayed by a minute (`delay=60`, `Queue.enqueue_in`), ours and
RQ's for jobs that must be unique (a `unique` key each; RQ: an id each with `unique=True`), and ours and
RQ's for jobs with an id of the caller's own (`job_id=`), medians printed: as the OS places this process and the server, and with both confined to one core. On a VM a
round trip between two cores can cost more than the work at both ends (waking the other core), which
then bounds every one-by-one enqueue alike; on one core it costs a switch, and what each enqueue makes
client and server do shows.
`--enqueue-only` times only the enqueues (no workers). `--server PATH` runs the private server from
another binary and `--no-aof` without its append-only file, as on a Redis that keeps nothing on disk
(the machine's Redis 7 here; the setting where the goals were set):

    .venv/bin/python bench/throughput.py --quick --enqueue-only --no-aof --server /usr/bin/redis-server

Absolute numbers depend on the machine; the ratios (same server, same run) are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from benchkit import compile_sources, describe_server, private_server, server_options, spawn
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

import jobs
from jobs import catalog
from jobs.builtin import noop
from jobs.catalog import job
from jobs.config import Settings
from jobs.connection import Context
from jobs.enqueue import enqueue, queue_for

QUEUE = "default"


@job(retries=0, unique="bench-unique:{key}", description="Benchmark: a no-op whose runs are unique per key.")
def unique_noop(key: str) -> None:
    """Do nothing: it is only enqueued, to time the unique key's check."""


DEFAULT_JOBS = 20_000
QUICK_JOBS = 2_000
QUICK_FORK_JOBS = 500
PROCESS_COUNTS = (1, 2)
BATCH = 1_000  # jobs per pipeline when enqueueing in bulk
ONE_BY_ONE_ROUNDS = 3
POLL_INTERVAL = 0.01  # seconds between checks of the finished registry
RQ_SERIALIZER = "rq.serializers.JSONSerializer"
TARGET_VS_SIMPLE = 2.0
TARGET_VS_FORK = 5.0
TARGET_BULK_ENQUEUE = 50_000
TARGET_ONE_BY_ONE = 10_000

KINDS = ("ours", "simple", "fork")
KIND_LABELS = {"ours": "ours", "simple": "SimpleWorker", "fork": "forking Worker"}


@dataclass(frozen=True)
class Workload:
    """A job to run many times: its catalogued name and its arguments."""

    label: str
    func_name: str
    args: tuple = ()
    fails: bool = False  # every run raises: the jobs end in the failed registry


WORKLOADS = (
    Workload("no-op", "jobs.builtin.noop"),
    Workload("sleep 1ms", "jobs.builtin.sleep", (0.001,)),
    Workload("failing", "jobs.builtin.fail", ("benchmark",), fails=True),
)


class BenchError(RuntimeError):
    """A measurement could not be made (workers failed, jobs failed, or a run timed out)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, help=f"jobs per measurement ({DEFAULT_JOBS})"
    )
    parser.add_argument(
        "--fork-jobs", type=int, help="jobs per forking-Worker measurement (default: as many as --jobs)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"small run: --jobs {QUICK_JOBS} --fork-jobs {QUICK_FORK_JOBS}"
    )
    parser.add_argument(
        "--redis-url", help="use this server instead of a private one (its DB is FLUSHDB'd between runs)"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="give up on one measurement after this many seconds"
    )
    parser.add_argument("--enqueue-only", action="store_true", help="time the enqueues only, no workers")
    server_options(parser)
    args = parser.parse_args(argv)
    if args.redis_url and (args.server or args.no_aof):
        parser.error("--server and --no-aof choose the private server: not with --redis-url")
    if args.quick:
        args.jobs = QUICK_JOBS
        args.fork_jobs = args.fork_jobs or QUICK_FORK_JOBS
    args.fork_jobs = args.fork_jobs or args.jobs
    if args.jobs < 1 or args.fork_jobs < 1:
        parser.error("--jobs and --fork-jobs must be at least 1")
    return args


@contextlib.contextmanager
def job_store(args: argparse.Namespace) -> Iterator[tuple[Context, int | None]]:
    """A context on `--redis-url`, or on a private server (`--server`, `--no-aof`) that is stopped on the
    way out, and the private server's process id (None for `--redis-url`)."""
    if args.redis_url:
        context = Context.connect(Settings(redis_url=args.redis_url))
        try:
            yield context, None
        finally:
            context.redis.close()
        return
    with private_server(binary=args.server) as (server, _):
        context = Context.connect(Settings(redis_url=server.url))
        print(describe_server(context.redis, args.no_aof), flush=True)
        try:
            yield context, server.pid
        finally:
            context.redis.close()


@contextlib.contextmanager
def on_one_core(server_pid: int) -> Iterator[None]:
    """This thread (which times the enqueues) and every thread of the server confined to one CPU, as they
    were on the way out."""
    threads = [int(tid) for tid in os.listdir(f"/proc/{server_pid}/task")]
    placed = {tid: os.sched_getaffinity(tid) for tid in [0, *threads]}
    cpu = {min(placed[0])}
    for tid in placed:
        os.sched_setaffinity(tid, cpu)
    try:
        yield
    finally:
        for tid, cpus in placed.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, cpus)


def job_datas(workload: Workload, count: int, settings: Settings) -> list:
    """`count` enqueue requests for `workload`, with the options `jobs.enqueue` would give them."""
    spec = catalog.get(workload.func_name)
    return [
        Queue.prepare_data(
            spec.name,
            args=list(workload.args),
            timeout=spec.timeout,
            result_ttl=settings.succeeded_ttl,
            failure_ttl=settings.failed_ttl,
            description=spec.description or spec.name,
        )
        for _ in range(count)
    ]


def enqueue_bulk(queue: Queue, workload: Workload, count: int, settings: Settings) -> None:
    """Enqueue `count` runs of `workload` on `queue`, `BATCH` jobs per pipeline."""
    for start in range(0, count, BATCH):
        queue.enqueue_many(job_datas(workload, min(BATCH, count - start), settings))


def queue_for_kind(context: Context, kind: str) -> Queue:
    """The queue to fill for a worker kind: ours uses our Job class, plain RQ its own (both JSON)."""
    if kind == "ours":
        return queue_for(context, QUEUE)
    return Queue(QUEUE, connection=context.redis, serializer=JSONSerializer)


def worker_commands(kind: str, url: str, processes: int) -> list[list[str]]:
    """The command lines that run `processes` workers of `kind` in burst mode."""
    if kind == "ours":
        # the same single queue as the baselines (our default is three queues by priority)
        return [[sys.executable, "-m", "jobs", "worker", "--burst", "-c", str(processes), "--queues", QUEUE]]
    rq_worker = [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--burst",
        "--url",
        url,
        "--serializer",
        RQ_SERIALIZER,
    ]
    rq_worker += ["--logging_level", "WARNING"]
    if kind == "simple":
        rq_worker += ["-w", "rq.worker.SimpleWorker"]
    return [[*rq_worker, QUEUE] for _ in range(processes)]


def worker_env(url: str) -> dict[str, str]:
    """The environment of worker processes: ours reads JOBS_*; any JOBS_* of the caller is dropped."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    env.update(JOBS_REDIS_URL=url, JOBS_LOG_LEVEL="WARNING")
    return env


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """Kill the process groups of the workers we started (each in a session of its own), after a failure."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run_workers(
    context: Context, commands: list[list[str]], expected: int, timeout: float, fails: bool = False
) -> float:
    """Start the workers and return the seconds until `expected` jobs are finished (with `fails`: failed).

    Raises BenchError if a job ends the other way, the workers exit early, or `timeout` passes. Waits for
    the workers to exit (burst mode) before returning, so no process outlives its measurement.
    """
    finished = FinishedJobRegistry(QUEUE, connection=context.redis).key
    failed = FailedJobRegistry(QUEUE, connection=context.redis).key
    done_key, other_key = (failed, finished) if fails else (finished, failed)
    env = worker_env(context.url)
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        processes = [spawn(command, env, log) for command in commands]
        try:
            elapsed = _wait_finished(context, processes, done_key, other_key, expected, started, timeout)
            for process in processes:
                process.wait(timeout=60)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            stop_processes(processes)
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:].strip()
            detail = f"\n--- worker output (tail) ---\n{tail}" if tail else ""
            raise BenchError(f"{exc}{detail}") from None
        except BaseException:  # Ctrl-C or a Redis error: leave no worker behind
            stop_processes(processes)
            raise
    return elapsed


def _wait_finished(
    context: Context,
    processes: list[subprocess.Popen],
    done_key: str,
    other_key: str,
    expected: int,
    started: float,
    timeout: float,
) -> float:
    """Poll the registry of the expected end (`done_key`) until it holds `expected` jobs; return the
    seconds since `started`. A job in the other registry (`other_key`) is an error."""
    while True:
        finished = context.redis.zcard(done_key)
        if finished >= expected:
            return time.perf_counter() - started
        failed = context.redis.zcard(other_key)
        if failed:
            raise BenchError(f"{failed} job(s) ended the other way")
        if all(process.poll() is not None for process in processes):
            raise BenchError(f"workers exited with only {finished}/{expected} jobs finished")
        if time.perf_counter() - started > timeout:
            raise BenchError(f"timed out after {timeout:.0f}s with {finished}/{expected} jobs finished")
        time.sleep(POLL_INTERVAL)


def measure_workers(context: Context, kind: str, workload: Workload, processes: int, args) -> float:
    """Jobs per second of `processes` workers of `kind` draining pre-enqueued jobs (`args.jobs`, or
    `args.fork_jobs` for the forking Worker)."""
    count = args.fork_jobs if kind == "fork" else args.jobs
    context.redis.flushdb()
    enqueue_bulk(queue_for_kind(context, kind), workload, count, context.settings)
    commands = worker_commands(kind, context.url, processes)
    seconds = run_workers(context, commands, count, args.timeout, workload.fails)
    return count / seconds


def measure_enqueue_bulk(context: Context, count: int) -> tuple[float, float]:
    """Jobs per second enqueueing `count` no-op jobs pipelined: ours (`jobs.enqueue_many`, validated, with
    timelines) and RQ's `Queue.enqueue_many` (our Job class, JSON) as the baseline."""
    context.redis.flushdb()
    calls = [noop.call() for _ in range(count)]
    started = time.perf_counter()
    jobs.enqueue_many(calls, context=context)
    ours = count / (time.perf_counter() - started)
    _check_queued(context, count)
    context.redis.flushdb()
    started = time.perf_counter()
    enqueue_bulk(queue_for(context, QUEUE), WORKLOADS[0], count, context.settings)
    rq = count / (time.perf_counter() - started)
    _check_queued(context, count)
    return ours, rq


def measure_enqueue_one_by_one(context: Context, count: int) -> list[list[float]]:
    """Per second, enqueueing `count` no-op jobs one at a time, in ONE_BY_ONE_ROUNDS rounds that alternate
    them (a VM's speed drifts within a minute): ours (`jobs.enqueue.enqueue`), RQ's `Queue.enqueue`
    (JSON), the floor of one round trip through redis-py (a bare LPUSH), then ours and RQ's delayed by a
    minute, ours and RQ's unique, and ours and RQ's with an id of their own. One list of rates per
    round, in that order."""
    rq_queue = Queue(QUEUE, connection=context.redis, serializer=JSONSerializer)
    minute, keys = timedelta(minutes=1), (f"key-{n}" for n in itertools.count())
    enqueues = (
        (lambda: enqueue(noop, context=context), rq_queue.key),
        (lambda: rq_queue.enqueue("jobs.builtin.noop"), rq_queue.key),
        (lambda: context.redis.lpush(rq_queue.key, "x"), rq_queue.key),
        (lambda: enqueue(noop, delay=minute, context=context), rq_queue.scheduled_job_registry.key),
        (lambda: rq_queue.enqueue_in(minute, "jobs.builtin.noop"), rq_queue.scheduled_job_registry.key),
        (lambda: enqueue(unique_noop, [next(keys)], context=context), rq_queue.key),
        (lambda: rq_queue.enqueue("jobs.builtin.noop", job_id=next(keys), unique=True), rq_queue.key),
        (lambda: enqueue(noop, job_id=next(keys), context=context), rq_queue.key),
        (lambda: rq_queue.enqueue("jobs.builtin.noop", job_id=next(keys)), rq_queue.key),
    )
    rounds = []
    for _ in range(ONE_BY_ONE_ROUNDS):
        rates = []
        for enqueue_one, where in enqueues:
            context.redis.flushdb()
            started = time.perf_counter()
            for _ in range(count):
                enqueue_one()
            rates.append(count / (time.perf_counter() - started))
            _check_queued(context, count, where)
        rounds.append(rates)
    return rounds


def _check_queued(context: Context, count: int, key: str | None = None) -> None:
    """Raise BenchError unless the queue (or `key`, a list or sorted set) holds `count` jobs."""
    key = key or Queue(QUEUE, connection=context.redis).key
    found = context.redis.llen(key) if context.redis.type(key) == b"list" else context.redis.zcard(key)
    if found != count:
        raise BenchError(f"expected {count} jobs in {key}, found {found}")


def ratio(ours: float | None, other: float | None, target: float) -> str:
    """`ours/other` as "1.23x", flagged "(LOW)" when under `target`; "-" when either is missing."""
    if not ours or not other:
        return "-"
    value = ours / other
    return f"{value:.2f}x" + ("" if value >= target else " (LOW)")


def rate(value: float | None) -> str:
    """Jobs/s for the table; "failed" when the measurement could not be made."""
    return "failed" if value is None else f"{value:,.0f}"


def print_worker_table(results: dict, jobs: int, fork_jobs: int, url: str) -> None:
    """The worker throughput table, targets in the header."""
    counts = f"{jobs:,} jobs per run" + (
        f", {fork_jobs:,} for the forking Worker" if fork_jobs != jobs else ""
    )
    print()
    print(f"Worker throughput, jobs/s ({counts}, pre-enqueued; server {url})")
    print(f"targets: ours >= {TARGET_VS_SIMPLE}x SimpleWorker, ours >= {TARGET_VS_FORK:g}x forking Worker")
    header = f"{'workload':<10} {'procs':>5} {'ours':>9} {'SimpleWorker':>13} {'forking Worker':>15}"
    header += f" {'ours/SimpleWorker':>18} {'ours/forking':>13}"
    print(header)
    print("-" * len(header))
    for (label, processes), by_kind in results.items():
        ours, simple, fork = (by_kind.get(kind) for kind in KINDS)
        print(
            f"{label:<10} {processes:>5} {rate(ours):>9} {rate(simple):>13} {rate(fork):>15}"
            f" {ratio(ours, simple, TARGET_VS_SIMPLE):>18} {ratio(ours, fork, TARGET_VS_FORK):>13}"
        )


def print_enqueue_table(
    bulk: tuple[float, float], one_by_one: dict[str, list[list[float]]], count: int
) -> None:
    """The enqueue throughput table, target in the header."""
    ours, rq = bulk
    print()
    targets = f"pipelined >= {TARGET_BULK_ENQUEUE:,}, one by one >= {TARGET_ONE_BY_ONE:,}"
    print(f"Enqueue throughput, jobs/s ({count:,} no-op jobs; targets: {targets})")
    verdict = "ok" if ours >= TARGET_BULK_ENQUEUE else "LOW"
    print(f"{'pipelined, ours (jobs.enqueue_many)':<45} {ours:>9,.0f}  {verdict}  {ours / rq:.2f}x RQ's")
    print(f"{'pipelined, RQ (Queue.enqueue_many, ' + str(BATCH) + '/pipeline)':<45} {rq:>9,.0f}")
    for placement, rounds in one_by_one.items():
        columns = list(zip(*rounds, strict=True))
        medians = [statistics.median(column) for column in columns]
        ours, rq, lpush = medians[:3]
        spread = [f"({min(column):,.0f}-{max(column):,.0f})" for column in columns]
        print(f"one by one, {placement} (medians of {len(rounds)} rounds, their range):")
        verdict = "ok" if ours >= TARGET_ONE_BY_ONE else "LOW"
        print(
            f"{'  ours (jobs.enqueue.enqueue)':<38} {ours:>9,.0f} {spread[0]:>17}  {verdict}  {ours / rq:.2f}x RQ's"
        )
        print(f"{'  RQ (Queue.enqueue)':<38} {rq:>9,.0f} {spread[1]:>17}")
        print(
            f"{'  a bare LPUSH through redis-py':<38} {lpush:>9,.0f} {spread[2]:>17}  (ours: {ours / lpush:.2f}x)"
        )
        for n, (label, rq_label) in enumerate(_VARIANTS):
            at = 3 + 2 * n  # ours, then RQ's at the next column
            ours_at, rq_at = medians[at], medians[at + 1]
            print(f"{'  ' + label:<38} {ours_at:>9,.0f} {spread[at]:>17}      {ours_at / rq_at:.2f}x RQ's")
            print(f"{'  ' + rq_label:<38} {rq_at:>9,.0f} {spread[at + 1]:>17}")


# the one-by-one enqueues timed after the bare LPUSH, ours then RQ's: (label of ours, label of RQ's)
_VARIANTS = (
    ("ours, delayed (delay=60)", "RQ, delayed (Queue.enqueue_in)"),
    ("ours, unique (a unique key each)", "RQ, unique (an id each, unique=True)"),
    ("ours, an id of its own (job_id=)", "RQ, an id of its own (job_id=)"),
)


def run_worker_benchmarks(context: Context, args) -> dict:
    """Every workload x process count x worker kind; returns {(label, processes): {kind: jobs/s or None}}."""
    print("workers:", flush=True)
    results: dict = {}
    for workload in WORKLOADS:
        for processes in PROCESS_COUNTS:
            by_kind = results.setdefault((workload.label, processes), {})
            for kind in KINDS:
                print(
                    f"  {workload.label}, {processes} process(es), {KIND_LABELS[kind]} ...",
                    end=" ",
                    flush=True,
                )
                try:
                    by_kind[kind] = measure_workers(context, kind, workload, processes, args)
                    print(f"{by_kind[kind]:,.0f} jobs/s", flush=True)
                except BenchError as exc:
                    by_kind[kind] = None
                    print(f"FAILED: {exc}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the tables; exit code 1 if a measurement failed."""
    args = parse_args(argv)
    compile_sources()
    with job_store(args) as (context, server_pid):
        print(
            f"server {context.url}; {args.jobs:,} jobs per measurement; {os.cpu_count()} CPU(s)", flush=True
        )
        print("enqueue:", flush=True)
        bulk = measure_enqueue_bulk(context, args.jobs)
        one_by_one = {
            "client and server where the OS puts them": measure_enqueue_one_by_one(context, args.jobs)
        }
        if server_pid is not None:
            with on_one_core(server_pid):
                one_by_one["client and server on one core"] = measure_enqueue_one_by_one(context, args.jobs)
        results = {} if args.enqueue_only else run_worker_benchmarks(context, args)
        context.redis.flushdb()
    if results:
        print_worker_table(results, args.jobs, args.fork_jobs, context.url)
    print_enqueue_table(bulk, one_by_one, args.jobs)
    return 1 if any(value is None for by_kind in results.values() for value in by_kind.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
