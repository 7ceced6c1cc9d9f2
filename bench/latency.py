"""Latency benchmark: how long a job waits from its enqueue until an idle worker starts it, ours against
plain RQ's SimpleWorker on the same server in the same run.

Run it from the project root (it is a script, not a test):

    .venv/bin/python bench/latency.py              # 300 jobs per worker kind
    .venv/bin/python bench/latency.py --quick      # 50

It starts a private Redis-compatible server (`jobs.embedded.EmbeddedServer`) in a temporary directory and
stops it at the end. For each kind one worker process is started and left idle; then no-op jobs are
enqueued one at a time, each after the previous one finished and a pause of 20-50 ms (so the worker is
waiting again, as an idle worker is). The latency of a job is its `started_at` minus its `enqueued_at`,
both written by RQ's own code (the enqueuer's and the worker's clocks: one machine). The kinds alternate
in rounds of 50 jobs so that both see the same conditions.

Then delayed jobs (`--delayed N`, 30; 10 with --quick): each is enqueued at a random instant to be due
at a whole second 1-2 s later (ours: `jobs.enqueue(..., at=)`, RQ: `Queue.enqueue_at`, both keeping
due times in whole seconds), and its lateness is its `started_at` minus that due time. RQ's worker runs
with `--with-scheduler`, which moves due jobs to their queues; ours always does.

Last, a burst (`--burst N`, 10,000; 2,000 with --quick): N delayed jobs all due at the same whole second,
enqueued one by one before it, run by one idle worker of each kind started before it; the lateness of
each is its `started_at` minus that second. It shows how fast each moves a burst of due jobs to the
queue (RQ's scheduler moves at most 1,000 per queue per look, once a second).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

from benchkit import job_count_options, private_server, spawn
from rq import Queue
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer
from throughput import QUEUE, worker_commands, worker_env

import jobs
from jobs.builtin import noop
from jobs.config import Settings
from jobs.connection import Context, activate

DEFAULT_JOBS = 300
QUICK_JOBS = 50
DEFAULT_DELAYED, QUICK_DELAYED = 30, 10
DEFAULT_BURST, QUICK_BURST = 10_000, 2_000
# a floor for either kind's one-by-one delayed enqueues, to set the burst's due time
BURST_ENQUEUES_PER_SECOND = 2_000
ROUND = 50  # jobs per kind before switching to the other
KINDS = {"ours": "ours", "simple": "RQ SimpleWorker"}
TARGET_P50_MS, TARGET_P99_MS = 2.0, 5.0


def parse_args(argv: list[str] | None = None):
    """Command-line options."""

    def more(parser) -> None:
        parser.add_argument("--delayed", type=int, help="delayed jobs per kind (30; 10 with --quick)")
        parser.add_argument(
            "--burst", type=int, help="jobs due together, per kind (10,000; 2,000 with --quick)"
        )

    args = job_count_options(__doc__, DEFAULT_JOBS, QUICK_JOBS, 10, argv, more)
    if args.delayed is None:
        args.delayed = QUICK_DELAYED if args.quick else DEFAULT_DELAYED
    if args.burst is None:
        args.burst = QUICK_BURST if args.quick else DEFAULT_BURST
    return args


def enqueue_one(context: Context, kind: str, due: datetime | None = None) -> str:
    """Enqueue one no-op job (due at `due`, if given) the way each kind's users would; return its id."""
    if kind == "ours":
        return jobs.enqueue(noop, at=due, context=context).id
    queue = Queue(QUEUE, connection=context.redis, serializer=JSONSerializer)
    if due is None:
        return queue.enqueue("jobs.builtin.noop").id
    return queue.enqueue_at(due, "jobs.builtin.noop").id


def latency_ms(context: Context, job_id: str, due: datetime | None = None, timeout: float = 30.0) -> float:
    """Wait until the job has finished; return how long after its enqueue (or its due time, if given) it
    started, in milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = RQJob.fetch(job_id, connection=context.redis, serializer=JSONSerializer)
        if job.get_status(refresh=False) == "finished":
            since = job.enqueued_at if due is None else due
            return (job.started_at - since).total_seconds() * 1000
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} did not finish within {timeout:.0f} s")
        time.sleep(0.001)


def wait_idle(context: Context, kind: str) -> None:
    """Wait until the kind's worker has registered (and so is waiting for jobs)."""
    deadline = time.monotonic() + 30
    while not context.redis.smembers("rq:workers"):
        if time.monotonic() > deadline:
            raise SystemExit(f"the {KINDS[kind]} worker did not start")
        time.sleep(0.05)
    time.sleep(0.5)


@contextlib.contextmanager
def idle_worker(context: Context, kind: str, delayed: bool):
    """One worker process of `kind`, started and waiting for jobs (RQ's with its scheduler for delayed
    jobs); killed and the DB flushed on the way out."""
    with tempfile.TemporaryFile() as log:
        command = worker_commands(kind, context.url, 1)[0]
        command = [part for part in command if part != "--burst"]
        if delayed and kind != "ours":
            command.insert(-1, "--with-scheduler")
        process = spawn(command, worker_env(context.url), log)
        try:
            wait_idle(context, kind)
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            context.redis.flushdb()


def measure_round(
    context: Context, kind: str, count: int, rng: random.Random, delayed: bool = False
) -> list[float]:
    """Latencies of `count` jobs (delayed ones: lateness) run by a freshly started idle worker of `kind`."""
    with idle_worker(context, kind, delayed):
        samples = []
        for _ in range(count):
            time.sleep(rng.uniform(0, 1) if delayed else rng.uniform(0.02, 0.05))
            due = datetime.fromtimestamp(math.ceil(time.time()) + 1, UTC) if delayed else None
            samples.append(latency_ms(context, enqueue_one(context, kind, due), due))
        return samples


def measure_burst(context: Context, kind: str, count: int) -> list[float]:
    """Lateness in ms of `count` jobs due at the same second, enqueued one by one before it."""
    with idle_worker(context, kind, delayed=True):
        due = datetime.fromtimestamp(math.ceil(time.time() + 1 + count / BURST_ENQUEUES_PER_SECOND), UTC)
        ids = [enqueue_one(context, kind, due) for _ in range(count)]
        if datetime.now(UTC) >= due:
            raise SystemExit(f"{count} delayed jobs took longer to enqueue than planned; lower --burst")
        deadline = time.monotonic() + (due - datetime.now(UTC)).total_seconds() + 60 + count / 100
        finished = Queue(QUEUE, connection=context.redis).finished_job_registry
        while finished.count < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"the {KINDS[kind]} worker did not run the burst within a minute")
            time.sleep(0.05)
        with context.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(RQJob.key_for(job_id), "started_at")
            started = [datetime.fromisoformat(value.decode()) for value in pipe.execute()]
        return [(moment - due).total_seconds() * 1000 for moment in started]


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` quantile of `samples` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(
    context: Context, jobs_per_kind: int, rng: random.Random, delayed: bool
) -> dict[str, list[float]]:
    """Latencies (or, of delayed jobs, lateness) in ms per kind, measured in alternating rounds."""
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    while any(len(samples) < jobs_per_kind for samples in results.values()):
        for kind, samples in results.items():
            count = min(ROUND, jobs_per_kind - len(samples))
            if count:
                samples.extend(measure_round(context, kind, count, rng, delayed))
    return results


def print_table(title: str, results: dict[str, list[float]], targets: str = "") -> None:
    """p50/p99/max/mean per kind, and ours over RQ's at p50."""
    print(f"\n{title}")
    if targets:
        print(targets)
    print(f"{'worker':<18} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    for kind, samples in results.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        print(f"{KINDS[kind]:<18} {p50:8.2f} {p99:8.2f} {max(samples):8.2f} {statistics.mean(samples):8.2f}")
    ours, rq = results["ours"], results["simple"]
    print(f"ours / RQ (p50): {percentile(ours, 0.5) / percentile(rq, 0.5):.2f}x")


def main(argv: list[str] | None = None) -> int:
    """Measure both kinds in alternating rounds and print p50/p99/max and the ratios."""
    args = parse_args(argv)
    rng = random.Random(1)
    with private_server("jobs-bench-latency-") as (server, _):
        context = activate(Context.connect(Settings(redis_url=server.url)))
        results = measure(context, args.jobs, rng, delayed=False)
        delayed = measure(context, args.delayed, rng, delayed=True) if args.delayed else None
        burst = {kind: measure_burst(context, kind, args.burst) for kind in KINDS} if args.burst else None
        context.redis.close()
    print_table(
        f"Enqueue -> start latency, idle worker ({args.jobs} jobs per kind; ms)",
        results,
        f"targets for ours: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms",
    )
    if delayed:
        print_table(
            f"Delayed jobs: due time -> start, idle worker ({args.delayed} jobs per kind; ms)", delayed
        )
    if burst:
        print_table(f"A burst: {args.burst:,} delayed jobs due at the same second -> start (ms)", burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
