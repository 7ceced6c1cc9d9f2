"""Peer benchmark: job throughput of our worker against RQ, Celery, Dramatiq, huey and arq.

Run it from the project root (it is a script, not a test). The peers live in a venv of their own, never in
the project's; create it once:

    .venv/bin/python -m venv bench/.venv-peers
    bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt

then:

    .venv/bin/python bench/peers.py                       # 20,000 jobs per run, 3 repetitions
    .venv/bin/python bench/peers.py --quick --repeat 1    # 2,000 jobs per run (300 for RQ's forking Worker)
    .venv/bin/python bench/peers.py --only ours,celery,arq --jobs 5000

(It exits with code 2, saying how to create the venv, when the venv is missing.) On a 2-core machine where
ours drains ~300 jobs/s, `--jobs 5000 --fork-jobs 500` takes about 9 minutes, the default run about 40
(a quarter of it in RQ's forking Worker, ~20 jobs/s), `--quick --repeat 1` about 1.5.

What is measured: for each workload (a no-op job, a 1-ms `time.sleep(0.001)` job) and each framework,
N jobs are enqueued first (not timed); then the clock starts as the workers are started, and stops when
N jobs have run. Every framework runs `--processes` (2) worker processes on the same private server (an
embedded valkey in a temporary directory, never the machine's Redis), in the same run:

- ours: `python -m jobs worker --burst -c 2` (a supervisor and 2 worker processes);
- ours (8 threads): the same with `--threads 8` (8 workers per process, as Dramatiq's default);
- RQ SimpleWorker: 2 processes of `rq worker --burst -w rq.worker.SimpleWorker` (JSON serializer);
- RQ forking Worker: 2 processes of `rq worker --burst` (a fork per job: it gets `--fork-jobs` jobs);
- Celery: `celery worker -P prefork -c 2` on a Redis broker, no result backend (mingle, gossip and heartbeat
  off: they coordinate a cluster of workers, and mingle adds a fixed second to startup);
- Dramatiq: `dramatiq --processes 2 --threads 8` (its default threads) on a Redis broker;
- huey: `huey_consumer -k process -w 2` (RedisHuey);
- arq: 2 processes of `arq WorkerSettings`, polling every 10 ms (`poll_delay=0.01`; default 500 ms).

Every worker logs warnings only (RQ, Celery, huey and arq log every job at INFO by default).

How completion is seen, the same way for every framework: every job body, ours and RQ's included, ends
with one INCR of a counter key on the benchmark server (`peer_tasks.count_done`), and this script polls
that counter every 10 ms. Each framework's own completion signal would be uneven: ours and RQ have a
finished registry, arq and huey keep results, Dramatiq and Celery (without a result backend) record
nothing, and adding a result backend to them would add work to their jobs alone. So our "no-op" job here
is one Redis round trip more than `jobs.builtin.noop`, and so is every peer's: the same job for everyone
(`bench/peer_tasks/`). The INCR goes out as plain RESP on a socket of the job's own, not through
redis-py: the two venvs hold different redis-py versions (arq holds the peers' below 6), and redis-py 8
spends twice the Python calls per command of redis-py 5, which would make the same job body dearer in one
venv. The clock includes each worker's startup (as in `bench/throughput.py`); the "1st job" column shows
how much of it that is. Our package is compiled to bytecode first, as pip compiled the peers'
(`benchkit.compile_sources`).

Where the time goes: each run also reports the CPU per job of the workers and of the server, from the
run's start to its last job (startup included, as in the rate): the server's from INFO cpu, the workers'
as the whole machine's (/proc/stat) less the server's and this script's. On a quiet machine that is the
workers'; anything else running counts as theirs.

One-by-one enqueue: each framework's own enqueue call for a no-op job, `--enqueue-jobs` (5,000) times in a
row, each waiting for its reply (arq's too, which the fill above runs 200 at a time): ours is
`noop.enqueue()`, RQ's `Queue.enqueue` (JSON), the peers' their usual call (from the peers' venv, in a
process of their own). The clock runs around those calls only, after one more that imports and connects;
the same repetitions, alternating order and medians. `--enqueue-only` measures that alone (a minute or
two), `--enqueue-jobs 0` skips it.

Measurements run in alternating order (frameworks forward, then backward, ...), `--repeat` times (3),
with a FLUSHALL of the private server before each; the table gives medians. Ratios are the framework's
rate over ours, and over RQ SimpleWorker's, for the same workload. Absolute numbers depend on the machine
(and on whatever else runs on it); the ratios (same server, same run) are what to compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

import peer_tasks
import peer_tasks.rq_tasks  # noqa: F401  (catalogues the benchmark jobs, which `enqueue_bulk` looks up)
import redis
from benchkit import ROOT, compile_sources, private_server, server_version, spawn
from throughput import (
    BenchError,
    Workload,
    enqueue_bulk,
    queue_for_kind,
    stop_processes,
    worker_commands,
    worker_env,
)

from jobs.config import Settings
from jobs.connection import Context

BENCH = ROOT / "bench"
PEERS_VENV = BENCH / ".venv-peers"
PEERS_BIN = PEERS_VENV / "bin"
SETUP_HINT = (
    "peers' venv missing or incomplete; create it with: .venv/bin/python -m venv bench/.venv-peers"
    " && bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt"
)
DEFAULT_JOBS = 20_000
DEFAULT_FORK_JOBS = 2_000
QUICK_JOBS = 2_000
QUICK_FORK_JOBS = 300
DEFAULT_ENQUEUE_JOBS = 5_000
QUICK_ENQUEUE_JOBS = 1_000
POLL_INTERVAL = 0.01  # seconds between reads of the counter
BURST_EXIT_WAIT = 30.0  # seconds a burst worker (ours, RQ) gets to exit once its jobs are done
ENQUEUE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Framework:
    """A worker to measure: its name for `--only`, its label, and how it runs."""

    name: str
    label: str
    peer: bool  # runs from the peers' venv (else from ours, and in burst mode)


FRAMEWORKS = (
    Framework("ours", "ours", peer=False),
    Framework("ours-threads", "ours (8 threads)", peer=False),
    Framework("rq-simple", "RQ SimpleWorker", peer=False),
    Framework("rq-fork", "RQ forking Worker", peer=False),
    Framework("celery", "Celery (prefork)", peer=True),
    Framework("dramatiq", "Dramatiq (8 threads)", peer=True),
    Framework("huey", "huey (processes)", peer=True),
    Framework("arq", "arq", peer=True),
)
RQ_KINDS = {
    "ours": "ours",
    "ours-threads": "ours",
    "rq-simple": "simple",
    "rq-fork": "fork",
}  # throughput.py's
WORKLOADS = (
    Workload("no-op", "peer_tasks.rq_tasks.noop"),
    Workload("sleep 1ms", "peer_tasks.rq_tasks.sleep1ms"),
)
SAME_ENQUEUE = ("ours-threads", "rq-fork")  # enqueue as ours and RQ SimpleWorker do
MAIN_PACKAGES = ("techbirdsfly-jobs", "rq", "redis", "hiredis")
PEER_PACKAGES = ("celery", "kombu", "dramatiq", "huey", "arq", "redis", "hiredis")

_started: list[subprocess.Popen] = []  # every process started and not yet stopped


@dataclass(frozen=True)
class Sample:
    """One measurement: jobs per second, the seconds until the first job had run, and the CPU per job
    (µs) of the workers and of the server (None where the machine has no /proc/stat)."""

    rate: float
    first_job: float
    workers_cpu: float | None
    server_cpu: float | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    names = ",".join(framework.name for framework in FRAMEWORKS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help=f"jobs per run ({DEFAULT_JOBS})")
    parser.add_argument(
        "--fork-jobs", type=int, help=f"jobs per RQ forking Worker run ({DEFAULT_FORK_JOBS}, at most --jobs)"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"small run: --jobs {QUICK_JOBS} --fork-jobs {QUICK_FORK_JOBS}"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per framework and workload (3)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes per framework (2)")
    parser.add_argument(
        "--enqueue-jobs",
        type=int,
        help=f"jobs per one-by-one enqueue run ({DEFAULT_ENQUEUE_JOBS:,}; 0: none)",
    )
    parser.add_argument("--enqueue-only", action="store_true", help="measure one-by-one enqueue only")
    parser.add_argument("--only", help=f"comma-separated frameworks to measure, of: {names}")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up on one run after this (600 s)")
    parser.add_argument(
        "--stall", type=float, default=60.0, help="give up on a run whose count stands still this long (60 s)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = QUICK_JOBS
        args.fork_jobs = args.fork_jobs or QUICK_FORK_JOBS
        args.enqueue_jobs = QUICK_ENQUEUE_JOBS if args.enqueue_jobs is None else args.enqueue_jobs
    args.fork_jobs = args.fork_jobs or min(DEFAULT_FORK_JOBS, args.jobs)
    args.enqueue_jobs = DEFAULT_ENQUEUE_JOBS if args.enqueue_jobs is None else args.enqueue_jobs
    if min(args.jobs, args.fork_jobs, args.repeat, args.processes) < 1:
        parser.error("--jobs, --fork-jobs, --repeat and --processes must be at least 1")
    if args.enqueue_jobs < 0 or (args.enqueue_only and args.enqueue_jobs == 0):
        parser.error("--enqueue-jobs must be at least 0, and at least 1 with --enqueue-only")
    args.frameworks = _selected(parser, args.only)
    return args


def _selected(parser: argparse.ArgumentParser, only: str | None) -> list[Framework]:
    if not only:
        return list(FRAMEWORKS)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = {framework.name: framework for framework in FRAMEWORKS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return [framework for framework in FRAMEWORKS if framework.name in wanted]


# --- processes ---------------------------------------------------------------------------------------


def start(command: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    """Start `command` in a session of its own (`benchkit.spawn`), remembered until `stop`ped."""
    process = spawn([str(part) for part in command], env, log)
    _started.append(process)
    return process


def stop(processes: list[subprocess.Popen]) -> None:
    """Kill the process groups of `processes` (children included) and reap them."""
    stop_processes(processes)
    for process in processes:
        if process in _started:
            _started.remove(process)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def process_env(url: str) -> dict[str, str]:
    """The environment of every worker and enqueuer: the server's URL, `bench/` importable, our catalogue
    extended by `peer_tasks.rq_tasks`."""
    env = worker_env(url)
    path = [str(BENCH), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        {
            peer_tasks.URL_VARIABLE: url,
            "JOBS_IMPORTS": "peer_tasks.rq_tasks",
            "PYTHONPATH": os.pathsep.join(path),
        }
    )
    return env


def _log_tail(log: IO[bytes]) -> str:
    log.seek(0)
    tail = log.read().decode(errors="replace")[-2000:].strip()
    return f"\n--- output (tail) ---\n{tail}" if tail else ""


# --- versions and the peers' venv ----------------------------------------------------------------------

_VERSIONS_SCRIPT = """
import importlib.metadata, json, sys
print(json.dumps({name: importlib.metadata.version(name) for name in sys.argv[1:]}))
"""


def package_versions(python: str, packages: tuple[str, ...]) -> dict[str, str] | None:
    """The installed versions of `packages` for the interpreter `python`; None if one is missing."""
    try:
        done = subprocess.run(
            [python, "-c", _VERSIONS_SCRIPT, *packages], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return json.loads(done.stdout) if done.returncode == 0 else None


def peer_versions_or_none() -> dict[str, str] | None:
    """The peers' versions from `bench/.venv-peers`, checking that each framework imports there."""
    python = PEERS_BIN / "python"
    if not python.exists():
        return None
    check = [str(python), "-c", "import arq, celery, dramatiq, huey, redis"]
    if subprocess.run(check, capture_output=True, timeout=120).returncode != 0:
        return None
    return package_versions(str(python), PEER_PACKAGES)


# --- one measurement -----------------------------------------------------------------------------------


def job_key(workload: Workload) -> str:
    """The job's name in `peer_tasks` ("noop" or "sleep1ms")."""
    return workload.func_name.rsplit(".", 1)[1]


def job_count(framework: Framework, args: argparse.Namespace) -> int:
    """Jobs per run: fewer for RQ's forking Worker."""
    return args.fork_jobs if framework.name == "rq-fork" else args.jobs


def commands(framework: Framework, url: str, processes: int) -> list[list[str]]:
    """The command lines that run `framework`'s workers (`processes` worker processes in all)."""
    if framework.name == "ours-threads":
        return [[*command, "--threads", "8"] for command in worker_commands("ours", url, processes)]
    if not framework.peer:
        return worker_commands(RQ_KINDS[framework.name], url, processes)
    if framework.name == "celery":
        celery = [PEERS_BIN / "celery", "-A", "peer_tasks.celery_tasks", "worker", "-P", "prefork"]
        celery += ["-c", str(processes), "--loglevel", "WARNING"]
        return [[*celery, "--without-mingle", "--without-gossip", "--without-heartbeat"]]
    if framework.name == "dramatiq":
        dramatiq = [PEERS_BIN / "dramatiq", "peer_tasks.dramatiq_tasks", "--processes", str(processes)]
        return [[*dramatiq, "--threads", "8"]]
    if framework.name == "huey":
        return [
            [
                PEERS_BIN / "huey_consumer",
                "peer_tasks.huey_tasks.huey",
                "-k",
                "process",
                "-w",
                str(processes),
                "-q",
            ]
        ]
    if framework.name == "arq":
        arq = [PEERS_BIN / "arq", "peer_tasks.arq_tasks.WorkerSettings"]
        return [[*arq, "--custom-log-dict", "peer_tasks.arq_tasks.LOG_CONFIG"] for _ in range(processes)]
    raise ValueError(f"unknown framework {framework.name!r}")


def enqueue(
    context: Context, framework: Framework, workload: Workload, count: int, env: dict[str, str]
) -> None:
    """Enqueue `count` runs of `workload` for `framework`: ours and RQ's pipelined from here
    (`throughput.enqueue_bulk`), a peer's by `peer_tasks.enqueue` in the peers' venv."""
    if not framework.peer:
        queue = queue_for_kind(context, RQ_KINDS[framework.name])
        enqueue_bulk(queue, workload, count, context.settings)
        return
    run_enqueuer(PEERS_BIN / "python", [framework.name, job_key(workload), str(count)], env)


def run_enqueuer(python, arguments: list[str], env: dict[str, str]) -> str:
    """Run `python -m peer_tasks.enqueue ARGUMENTS` to its end and return its output; BenchError if it
    fails or takes longer than ENQUEUE_TIMEOUT."""
    with tempfile.TemporaryFile() as log:
        process = start([python, "-m", "peer_tasks.enqueue", *arguments], env, log)
        try:
            code = process.wait(timeout=ENQUEUE_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop([process])
        if code != 0:
            raise BenchError(
                f"enqueueing failed ({'timed out' if code is None else f'exit {code}'}){_log_tail(log)}"
            )
        log.seek(0)
        return log.read().decode(errors="replace")


def counted(client: redis.Redis) -> int:
    """How many jobs have run (the counter every job INCRs)."""
    return int(client.get(peer_tasks.COUNTER_KEY) or 0)


def run_workers(
    client: redis.Redis,
    framework: Framework,
    command_lines: list[list[str]],
    env: dict[str, str],
    count: int,
    args,
) -> Sample:
    """Start the workers; time until `count` jobs have run; stop them (burst workers get to exit first)."""
    with tempfile.TemporaryFile() as log:
        cpu_before = cpu_spent(client)
        started = time.perf_counter()
        processes = [start(command, env, log) for command in command_lines]
        try:
            elapsed, first_job = _wait_counted(client, processes, count, started, args)
            workers_cpu, server_cpu = _per_job(cpu_before, cpu_spent(client), count)
            if not framework.peer:
                _wait_exit(processes, BURST_EXIT_WAIT)
        except BenchError as exc:
            raise BenchError(f"{exc}{_log_tail(log)}") from None
        finally:
            stop(processes)
    done = counted(client)
    if done != count:
        raise BenchError(f"{done:,} jobs ran, {count:,} were enqueued")
    return Sample(count / elapsed, first_job, workers_cpu, server_cpu)


def cpu_spent(client: redis.Redis) -> tuple[float, float, float] | None:
    """CPU seconds spent so far by the whole machine (from /proc/stat, steal left out), by the server
    (INFO cpu) and by this script; None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    info = client.info("cpu")
    machine = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    return machine, float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), time.process_time()


def _per_job(before, after, count: int) -> tuple[float | None, float | None]:
    """(workers, server) CPU µs per job between two `cpu_spent`: the workers' is the machine's less the
    server's and this script's (so it holds whatever else the machine ran, little on a quiet one)."""
    if before is None or after is None:
        return None, None
    machine, server, own = (late - early for late, early in zip(after, before, strict=True))
    return (machine - server - own) * 1e6 / count, server * 1e6 / count


def _wait_counted(
    client: redis.Redis, processes: list[subprocess.Popen], count: int, started: float, args
) -> tuple[float, float]:
    """Poll the counter until it reaches `count`; return the seconds since `started` until then and until
    the first job had run."""
    first_job = None
    last, last_change = 0, started
    while True:
        done = counted(client)
        now = time.perf_counter()
        if done and first_job is None:
            first_job = now - started
        if done >= count:
            return now - started, first_job
        if done != last:
            last, last_change = done, now
        if all(process.poll() is not None for process in processes) and counted(client) < count:
            raise BenchError(f"workers exited with {done:,}/{count:,} jobs run")
        if now - started > args.timeout:
            raise BenchError(f"timed out after {args.timeout:.0f}s with {done:,}/{count:,} jobs run")
        if now - last_change > args.stall:
            raise BenchError(f"no job ran for {args.stall:.0f}s ({done:,}/{count:,} jobs run)")
        time.sleep(POLL_INTERVAL)


def _wait_exit(processes: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return  # stopped by the caller all the same


def measure(context: Context, framework: Framework, workload: Workload, args) -> tuple[Sample, float]:
    """One run on an emptied server: the sample, and the seconds enqueueing took (not part of it)."""
    count = job_count(framework, args)
    env = process_env(context.url)
    context.redis.flushall()
    began = time.perf_counter()
    enqueue(context, framework, workload, count, env)
    enqueue_seconds = time.perf_counter() - began
    sample = run_workers(
        context.redis, framework, commands(framework, context.url, args.processes), env, count, args
    )
    return sample, enqueue_seconds


def enqueue_rate(context: Context, framework: Framework, count: int, env: dict[str, str]) -> float:
    """Jobs per second of `framework`'s enqueue of `count` no-op jobs one at a time, on an emptied server,
    timed by `peer_tasks.enqueue` in a process of its own."""
    context.redis.flushall()
    python = PEERS_BIN / "python" if framework.peer else sys.executable
    enqueuer = {"rq-simple": "rq"}.get(framework.name, framework.name)
    output = run_enqueuer(python, [enqueuer, "noop", str(count), "--one-by-one"], env)
    return float(output.split()[-1])


# --- all measurements and the table --------------------------------------------------------------------


def run_all(context: Context, args) -> dict[tuple[str, str], list[Sample | None]]:
    """Every repetition x workload x framework, frameworks in alternating order; returns
    {(framework name, workload label): [sample, or None when the run failed]}."""
    results: dict[tuple[str, str], list[Sample | None]] = {}
    for repetition in range(args.repeat):
        order = args.frameworks if repetition % 2 == 0 else args.frameworks[::-1]
        for workload in WORKLOADS:
            for framework in order:
                print(
                    f"  [{repetition + 1}/{args.repeat}] {workload.label:<9} {framework.label:<21}"
                    f" {job_count(framework, args):>6,} jobs ...",
                    end=" ",
                    flush=True,
                )
                samples = results.setdefault((framework.name, workload.label), [])
                try:
                    sample, enqueue_seconds = measure(context, framework, workload, args)
                except BenchError as exc:
                    samples.append(None)
                    print(f"FAILED: {exc}", flush=True)
                    continue
                samples.append(sample)
                print(
                    f"{sample.rate:>8,.0f} jobs/s (first job after {sample.first_job:.2f}s;"
                    f" enqueued in {enqueue_seconds:.1f}s)",
                    flush=True,
                )
    return results


def run_enqueue_all(context: Context, args) -> dict[str, list[float | None]]:
    """Every repetition x framework with an enqueue of its own, in alternating order; returns {framework
    name: [jobs/s, or None when the run failed]}."""
    frameworks = [framework for framework in args.frameworks if framework.name not in SAME_ENQUEUE]
    env = process_env(context.url)
    results: dict[str, list[float | None]] = {}
    for repetition in range(args.repeat):
        for framework in frameworks if repetition % 2 == 0 else frameworks[::-1]:
            print(
                f"  [{repetition + 1}/{args.repeat}] enqueue one by one {framework.label:<21}"
                f" {args.enqueue_jobs:>6,} jobs ...",
                end=" ",
                flush=True,
            )
            rates = results.setdefault(framework.name, [])
            try:
                rates.append(enqueue_rate(context, framework, args.enqueue_jobs, env))
            except BenchError as exc:
                rates.append(None)
                print(f"FAILED: {exc}", flush=True)
                continue
            print(f"{rates[-1]:>8,.0f} jobs/s", flush=True)
    return results


def print_enqueue_table(results: dict[str, list[float | None]], args, server: str) -> None:
    """The one-by-one enqueue table: median jobs/s, spread, and the ratio to ours."""
    print()
    print(
        f"One-by-one enqueue: {args.enqueue_jobs:,} no-op jobs per run, each call waiting for its reply;"
        f" median of {args.repeat} run(s); {server}"
    )
    header = f"{'framework':<21} {'jobs/s':>8} {'min-max':>15} {'x ours':>7}"
    print(header)
    print("-" * len(header))
    ours = _median([rate for rate in results.get("ours", []) if rate])
    for framework in args.frameworks:
        if framework.name not in results:
            continue
        rates = [rate for rate in results[framework.name] if rate]
        label = "RQ" if framework.name == "rq-simple" else framework.label.split(" (")[0]  # not the worker's
        if not rates:
            print(f"{label:<21} {'failed':>8}")
            continue
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(f"{label:<21} {_median(rates):>8,.0f} {spread:>15} {_ratio(_median(rates), ours):>7}")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def median_rate(samples: list[Sample | None]) -> float | None:
    """The median rate of the runs that succeeded; None if none did."""
    return _median([sample.rate for sample in samples if sample])


def _ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value and reference else "-"


def print_table(results: dict, args, server: str) -> None:
    """The throughput table: median jobs/s, spread, first job, and the ratios to ours and SimpleWorker."""
    fork = f" ({args.fork_jobs:,} for RQ forking Worker)" if args.fork_jobs != args.jobs else ""
    print()
    print(
        f"Job throughput: {args.jobs:,} jobs per run{fork}, pre-enqueued; median of {args.repeat} run(s);"
        f" {args.processes} worker processes each; {server}; {os.cpu_count()} CPU(s)"
    )
    print("x ours / x SimpleWorker: the framework's median rate over ours / RQ SimpleWorker's, same workload")
    print(
        "CPU/job: median CPU per job of the workers and of the server, in µs (whole machine from /proc/stat)"
    )
    header = (
        f"{'framework':<21} {'workload':<9} {'jobs/s':>8} {'min-max':>15} {'1st job':>8} {'x ours':>7}"
        f" {'x SimpleWorker':>15} {'CPU/job workers':>16} {'server':>7}"
    )
    print(header)
    print("-" * len(header))
    for workload in WORKLOADS:
        ours = median_rate(results.get(("ours", workload.label), []))
        simple = median_rate(results.get(("rq-simple", workload.label), []))
        for framework in args.frameworks:
            samples = results.get((framework.name, workload.label), [])
            print(_row(framework, workload, samples, ours, simple))


def _row(
    framework: Framework, workload: Workload, samples: list, ours: float | None, simple: float | None
) -> str:
    good = [sample for sample in samples if sample]
    rate = median_rate(samples)
    if rate is None:
        return f"{framework.label:<21} {workload.label:<9} {'failed':>8}"
    spread = f"{min(s.rate for s in good):,.0f}-{max(s.rate for s in good):,.0f}"
    first = statistics.median(s.first_job for s in good)
    failed = f"  ({len(samples) - len(good)} run(s) failed)" if len(good) < len(samples) else ""
    return (
        f"{framework.label:<21} {workload.label:<9} {rate:>8,.0f} {spread:>15} {first:>7.2f}s"
        f" {_ratio(rate, ours):>7} {_ratio(rate, simple):>15}"
        f" {_median_cpu(s.workers_cpu for s in good):>16} {_median_cpu(s.server_cpu for s in good):>7}{failed}"
    )


def _median_cpu(values) -> str:
    known = [value for value in values if value is not None]
    return f"{statistics.median(known):,.0f}" if known else "-"


def our_code() -> tuple[str, str]:
    """Our code as measured: its git commit (with "+ uncommitted changes" when `jobs/` differs from it),
    and a digest of `jobs/` to tell whether it changed during the run."""
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "jobs"], capture_output=True, text=True
        ).stdout
    except OSError:
        commit, dirty = "", ""
    described = f"git {commit.strip() or '?'}" + (" + uncommitted changes to jobs/" if dirty.strip() else "")
    digest = hashlib.sha1()
    for path in sorted((ROOT / "jobs").rglob("*.py")):
        digest.update(path.read_bytes())
    return described, digest.hexdigest()


def print_versions(
    main_versions: dict[str, str] | None, peers: dict[str, str] | None, server: str, code: str
) -> None:
    """Python, server and library versions, and the commit of our code."""
    print(f"Python {platform.python_version()}; {server}")
    if main_versions:
        versions = ", ".join(f"{k} {v}" for k, v in main_versions.items())
        print(f"ours (.venv):               {versions} ({code})")
    if peers:
        print("peers (bench/.venv-peers):  " + ", ".join(f"{k} {v}" for k, v in peers.items()))


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the table; exit code 1 if a run failed, 2 if the peers' venv is
    missing, 130 when interrupted."""
    args = parse_args(argv)
    compile_sources()
    peers = None
    if any(framework.peer for framework in args.frameworks):
        peers = peer_versions_or_none()
        if peers is None:
            print(SETUP_HINT, file=sys.stderr)
            return 2
    main_versions = package_versions(sys.executable, MAIN_PACKAGES)
    code, digest = our_code()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # even where it was inherited ignored (a `cmd &` in a script)
    try:
        with private_server("jobs-peers-") as (server, _):
            context = Context.connect(Settings(redis_url=server.url))
            try:
                server_name = f"{server_version(context.redis)} on 127.0.0.1:{server.port} (private)"
                print(f"{server_name}; {os.cpu_count()} CPU(s)", flush=True)
                results = {} if args.enqueue_only else run_all(context, args)
                enqueued = run_enqueue_all(context, args) if args.enqueue_jobs else {}
            finally:
                stop(list(_started))
                context.redis.close()
    except KeyboardInterrupt:
        print("\ninterrupted: every process started has been stopped", file=sys.stderr)
        return 130
    if results:
        print_table(results, args, server_name)
    if enqueued:
        print_enqueue_table(enqueued, args, server_name)
    print()
    print_versions(main_versions, peers, server_name, code)
    if our_code()[1] != digest:
        print("WARNING: jobs/ changed during the run: ours was measured on more than one version of the code")
    outcomes = [*results.values(), *enqueued.values()]
    return 1 if any(None in runs for runs in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
