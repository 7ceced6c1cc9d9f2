"""Scheduler benchmark: how late recurring schedules fire, ours against rq-scheduler and RQ's `rq cron`.

Run it from the project root (it is a script, not a test; it needs `rq-scheduler`, from the dev extra):

    .venv/bin/python bench/scheduler.py            # full run: about 10 minutes
    .venv/bin/python bench/scheduler.py --quick    # short run: about 3 minutes

It starts a private Redis-compatible server (`jobs.embedded.EmbeddedServer`) in a temporary directory,
gives every measurement its own DB (each FLUSHDB'd before use) and stops the server at the end. No
worker runs: a job sits in its queue once enqueued, and lateness is the scheduler's delay alone.

Lateness is the time between a fire time and the job being enqueued: RQ's `enqueued_at` of the job,
minus the fire time (for ours, the one in the job id `schedule-{id}-{fire}`; for the baselines, the
minute the burst belongs to). Three measurements:

1. Ours, spread load: N schedules (1, 1,000, 10,000) run by one real `python -m jobs scheduler`. Our
   intervals are aligned to the epoch, so schedules with one interval all fire in the same second; to
   spread the fires, schedule i gets the interval `--every` + (i mod `--every`) seconds (60..119 s by
   default): about 0.7 N / `--every` fires per second, in bursts of N / `--every` (more when several
   intervals meet). The single schedule fires every second, so that a short window holds many fire
   instants (its lateness does not depend on its interval). Fires in the first second after the
   scheduler is up are not counted; every fire of the window is checked for, and counted missing or
   duplicated if it is.
2. Ours, idle tick: the time of one `Scheduler.tick()` with nothing due, with 10 and with 10,000
   schedules (it reads the due zset by score, so both should cost the same).
3. The every-minute workload, the same for all: N schedules (`--compare-schedules`, 1,000) with cron
   `* * * * *`, so all N are due at :00 of every minute, `--minutes` fire instants per scheduler, each
   scheduler alone with its burst on the server, at its default settings and log level:
   - ours: `python -m jobs scheduler`, N recurring schedules `cron="* * * * *"`;
   - RQ's cron: `rq cron` with a config module registering N jobs `cron="* * * * *"`;
   - rq-scheduler: `rqscheduler --interval 1`, N jobs `Scheduler.cron("* * * * *")`;
   - rq-scheduler at its default `--interval 60`. It polls once a minute from its start, so its
     lateness is the phase of its start within the minute (anywhere in 0-60 s). It is restarted for
     each fire instant at evenly spread phases (K instants: 60 (j + 1/2) / K seconds after the minute),
     which samples the lateness of a randomly started rq-scheduler. It sleeps between its polls, so
     with up to 2,000 schedules it runs alongside the others (its burst comes seconds after theirs;
     an overlap would be reported); with more, its bursts are long and it runs after them.
   Ours stores JSON; RQ's cron and rq-scheduler pickle (their defaults).

To keep the run short, measurements 1 and 2 fill the idle seconds between the minute bursts of 3; no
burst of 3 happens while they run (the schedulers of 3 are idle then). Absolute numbers depend on the
machine; the ratios (same server, same run) are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis
from rq.job import Job as RQJob
from rq.utils import utcparse

from jobs import recurring
from jobs.config import Settings
from jobs.connection import Context
from jobs.scheduling import Scheduler

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # bench_jobs, also when this file is imported rather than run

from bench_jobs import plain_tick, tick  # noqa: E402
from benchkit import ROOT, private_server, spawn  # noqa: E402

QUEUE = "default"
QUEUE_KEY = f"rq:queue:{QUEUE}"
JOBS_MODULE = "bench_jobs"
CRON_MODULE = "bench_rq_cron"
EVERY_MINUTE = "* * * * *"
NEVER_DUE = "0 0 1 1 *"  # once a year: never due during a run

DB_SPREAD, DB_OURS, DB_CRON, DB_POLL, DB_PHASED = 1, 2, 3, 4, 5
DB_IDLE = (6, 7)  # one per count of IDLE_COUNTS

DEFAULT_SIZES = (1, 1_000, 10_000)
QUICK_SIZES = (1, 100, 1_000)
DEFAULT_EVERY = 60
DEFAULT_WINDOW = 30
QUICK_WINDOW = 15
DEFAULT_COMPARE = 1_000
DEFAULT_MINUTES = 3
QUICK_MINUTES = 1
IDLE_COUNTS = (10, 10_000)
IDLE_TICKS = 2_000

START_LEAD = 10.0  # seconds before its first minute that a scheduler process is started
SAVE_SECONDS = 0.001  # about the cost of creating one schedule (planning: estimates allow twice that)
GAP_MARGIN = 2.0  # seconds kept free before the next timed action
POLL = 0.05  # seconds between looks at a queue
LATE_LIMIT = 120  # seconds: a job enqueued later than this after its minute is counted as unexpected
ALONGSIDE_MAX = 2_000  # up to this many schedules, rq-scheduler --interval 60 runs alongside the others
SHOWN = 3  # unexpected jobs printed per minute
TARGET_P99 = 1.0  # seconds: ours, spread load

BASELINES = ("cron", "poll", "phased")
LABELS = {
    "ours": "ours (python -m jobs scheduler)",
    "cron": "RQ's cron (rq cron)",
    "poll": "rq-scheduler --interval 1",
    "phased": "rq-scheduler (default --interval 60)",
}


class BenchError(RuntimeError):
    """A measurement could not be made (a process died, or a run timed out)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        help="schedule counts of the spread-load measurement, comma-separated (default 1,1000,10000; "
        "--quick: 1,100,1000)",
    )
    parser.add_argument(
        "--every",
        type=int,
        default=DEFAULT_EVERY,
        help=f"spread load: schedule i runs every EVERY + (i mod EVERY) seconds ({DEFAULT_EVERY})",
    )
    parser.add_argument(
        "--window",
        type=int,
        help=f"seconds of fires measured per size ({DEFAULT_WINDOW}; --quick: {QUICK_WINDOW})",
    )
    parser.add_argument(
        "--compare-schedules",
        type=int,
        default=DEFAULT_COMPARE,
        help=f"schedules of the every-minute comparison ({DEFAULT_COMPARE:,})",
    )
    parser.add_argument(
        "--minutes",
        type=int,
        help=f"fire instants (minutes) per scheduler in the comparison ({DEFAULT_MINUTES}; --quick: {QUICK_MINUTES})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"short run: --sizes {','.join(map(str, QUICK_SIZES))} --window {QUICK_WINDOW} --minutes {QUICK_MINUTES}",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or ",".join(map(str, QUICK_SIZES if args.quick else DEFAULT_SIZES))
    try:
        args.sizes = tuple(int(part) for part in sizes.split(",") if part.strip())
    except ValueError:
        parser.error(f"--sizes {sizes!r} is not a comma-separated list of numbers")
    args.window = args.window or (QUICK_WINDOW if args.quick else DEFAULT_WINDOW)
    args.minutes = args.minutes or (QUICK_MINUTES if args.quick else DEFAULT_MINUTES)
    if min(args.sizes, default=0) < 1 or args.every < 1 or args.window < 1 or args.compare_schedules < 1:
        parser.error("--sizes, --every, --window and --compare-schedules must be at least 1")
    if not 1 <= args.minutes <= 10:
        parser.error("--minutes must be between 1 and 10")
    return args


# --- server and processes ---------------------------------------------------------------------------


@dataclass
class Server:
    """The private server: one URL, client and context per DB."""

    port: int

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int) -> redis.Redis:
        return redis.Redis(port=self.port, db=db)

    def context(self, db: int) -> Context:
        return Context.connect(Settings(redis_url=self.url(db)))


class Processes:
    """Every process the benchmark starts, each in a session of its own, with its output in a log file.

    `stop` ends one (SIGTERM, then SIGKILL of its process group after a while); `stop_all` ends the rest,
    and is called on the way out, also after Ctrl-C or an error."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: dict[int, tuple[str, subprocess.Popen]] = {}

    def start(self, label: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        with (self.log_dir / f"{label}.log").open("ab") as log:
            process = spawn(command, env, log)
        self.running[process.pid] = (label, process)
        return process

    def check(self, process: subprocess.Popen) -> None:
        """Raise BenchError, with the tail of its log, if `process` has exited."""
        if process.poll() is not None:
            label, _ = self.running.pop(process.pid, ("?", process))
            raise BenchError(f"{label} exited with code {process.returncode}:\n{self.tail(label)}")

    def tail(self, label: str) -> str:
        path = self.log_dir / f"{label}.log"
        return path.read_text(errors="replace")[-2000:].strip() if path.exists() else ""

    def stop(self, process: subprocess.Popen, timeout: float = 15.0) -> None:
        self.running.pop(process.pid, None)
        try:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also on Ctrl-C, which then goes on
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its session: the process and anything it started
            process.wait()

    def stop_all(self) -> None:
        for _, process in list(self.running.values()):
            self.stop(process, timeout=5.0)


def process_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a scheduler process: our settings for `url` (any JOBS_* of the caller is
    dropped), and `bench/` on the import path for the no-op jobs and the `rq cron` config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBS_")}
    path = [str(BENCH), str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(JOBS_REDIS_URL=url, JOBS_IMPORTS=JOBS_MODULE, PYTHONPATH=os.pathsep.join(path), **extra)
    return env


def executable(name: str) -> str:
    """A console script of the venv this runs in (e.g. `rq`, `rqscheduler`), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found: install it (.venv/bin/pip install -e '.[dev]')")
    return found


def ours_command() -> list[str]:
    return [sys.executable, "-m", "jobs", "scheduler"]


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 0.5))


def next_minute(after: float) -> int:
    return (int(after) // 60 + 1) * 60


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(moment))


# --- lateness ---------------------------------------------------------------------------------------


@dataclass
class Lateness:
    """Lateness samples of one scheduler on one workload, and what was wrong with its fires."""

    samples: list[float] = field(default_factory=list)
    instants: set[int] = field(default_factory=set)
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0
    bursts: list[tuple[float, float]] = field(default_factory=list)  # (first, last) enqueue of each instant

    def add(self, other: Lateness) -> None:
        self.samples += other.samples
        self.instants |= other.instants
        self.missing += other.missing
        self.duplicates += other.duplicates
        self.unexpected += other.unexpected
        self.bursts += other.bursts

    def quantile(self, q: float) -> float | None:
        """Nearest-rank quantile (q=1 is the maximum); None without samples."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def max(self) -> float | None:
        return self.quantile(1.0)


def enqueued_at(client: redis.Redis, job_ids: list[str]) -> list[float | None]:
    """RQ's `enqueued_at` of each job, as epoch seconds (None if the job or the field is missing)."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(RQJob.key_for(job_id), "enqueued_at")
        values = pipe.execute()
    return [utcparse(value.decode()).timestamp() if value else None for value in values]


def fire_in_id(job_id: str) -> int:
    """The fire time in the id of a run of ours, `schedule-{id}-{fire}`."""
    return int(job_id.rsplit("-", 1)[1])


class MinuteRuns:
    """The jobs one scheduler enqueued for each minute, read from the end of its queue (no worker takes
    them): each `collect` reads what was added since the previous one."""

    def __init__(self, client: redis.Redis, schedules: int, fire_of: Callable[[str], int] | None = None):
        self.client = client
        self.schedules = schedules
        self.fire_of = fire_of  # ours: the fire time is in the job id; baselines: the minute collected
        self.offset = 0

    def collect(self, minute: int, deadline: float) -> Lateness:
        """Wait until `schedules` more jobs are queued (or `deadline`), then measure them against `minute`."""
        while self.client.llen(QUEUE_KEY) < self.offset + self.schedules and time.time() < deadline:
            time.sleep(POLL)
        ids = [raw.decode() for raw in self.client.lrange(QUEUE_KEY, self.offset, -1)]
        self.offset += len(ids)
        result = Lateness(instants={minute})
        times = enqueued_at(self.client, ids)
        fires = [self.fire_of(job_id) if self.fire_of else minute for job_id in ids]
        for job_id, fire, at in zip(ids, fires, times, strict=True):
            if at is None or fire != minute or not 0 <= at - minute < LATE_LIMIT:
                result.unexpected += 1  # a job of another minute, or one without an enqueue time
                if result.unexpected <= SHOWN:
                    print(f"    unexpected job {job_id}: fire {fire}, enqueued_at {at}", flush=True)
                continue
            result.samples.append(at - minute)
        result.duplicates = len(ids) - len(set(ids)) if self.fire_of else 0
        result.missing = max(0, self.schedules - len(result.samples))
        if result.samples:
            result.bursts.append((minute + min(result.samples), minute + max(result.samples)))
        return result


# --- 1. ours, spread load ---------------------------------------------------------------------------


def spread_intervals(size: int, every: int) -> list[int]:
    """Interval of each schedule of the spread load: `every` + (i mod `every`); 1 s for a single one."""
    if size == 1:
        return [1]
    return [every + number % min(size, every) for number in range(size)]


def wait_ready(
    context: Context, processes: Processes, process: subprocess.Popen, timeout: float = 30.0
) -> float:
    """Wait for the scheduler's first heartbeat (its first tick); return the time it was seen."""
    deadline = time.time() + timeout
    while not context.redis.zcard(context.keys.schedulers):
        processes.check(process)
        if time.time() > deadline:
            raise BenchError("the scheduler did not start within 30 s")
        time.sleep(POLL)
    return time.time()


@dataclass
class SpreadResult:
    size: int
    intervals: str
    rate: float  # mean fires per second in the window
    peak: int  # most fires due in one second
    lateness: Lateness
    load: float  # the machine's 1-minute load average at the end


def measure_spread(server: Server, processes: Processes, size: int, args) -> SpreadResult:
    """Lateness of `size` spread schedules run by one `python -m jobs scheduler` over `args.window` s."""
    context = server.context(DB_SPREAD)
    client = context.redis
    client.flushdb()
    intervals = spread_intervals(size, args.every)
    start = time.time() + 1.0 + size * SAVE_SECONDS * 1.5  # fire times are computed from this moment on
    for number, every in enumerate(intervals):
        recurring.save(context, recurring.define(f"s{number}", tick, every=every), now=start)
    process = processes.start(f"ours-spread-{size}", ours_command(), process_env(server.url(DB_SPREAD)))
    try:
        ready = wait_ready(context, processes, process)
        first = math.ceil(max(start, ready)) + 1  # fires of the first second after start-up are not counted
        last = first + args.window - 1
        sleep_until(last + 0.5)
        deadline = time.time() + 120
        while client.zrangebyscore(context.keys.schedules_due, "-inf", last, start=0, num=1):
            processes.check(process)
            if time.time() > deadline:
                raise BenchError(f"fires due by {clock(last)} were still not done at {clock(time.time())}")
            time.sleep(POLL)
    finally:
        processes.stop(process)
    expected = {
        (f"s{number}", fire)
        for number, every in enumerate(intervals)
        for fire in range(math.ceil(first / every) * every, last + 1, every)
    }
    ids = [raw.decode() for raw in client.lrange(QUEUE_KEY, 0, -1)]
    counted = Counter(ids)
    runs = {}
    for job_id in counted:
        schedule_id, fire = job_id.removeprefix("schedule-").rsplit("-", 1)
        if first <= int(fire) <= last:
            runs[job_id] = (schedule_id, int(fire))
    job_ids = list(runs)
    result = Lateness(instants={fire for _, fire in runs.values()})
    for job_id, at in zip(job_ids, enqueued_at(client, job_ids), strict=True):
        if at is None:
            result.unexpected += 1
        else:
            result.samples.append(at - runs[job_id][1])
    result.missing = len(expected - set(runs.values()))
    result.unexpected += len(set(runs.values()) - expected)
    result.duplicates = sum(count - 1 for job_id, count in counted.items() if job_id in runs)
    due_per_second = Counter(fire for _, fire in expected)
    described = "1 s" if size == 1 else f"{min(intervals)}..{max(intervals)} s"
    client.flushdb()
    print(
        f"    {size:,} schedules: {len(result.samples):,} jobs, p50 {fmt(result.p50)} s, p99 {fmt(result.p99)} s,"
        f" max {fmt(result.max)} s; problems: {problems(result)}",
        flush=True,
    )
    return SpreadResult(
        size,
        described,
        len(expected) / args.window,
        max(due_per_second.values(), default=0),
        result,
        os.getloadavg()[0],
    )


# --- 2. ours, idle tick -----------------------------------------------------------------------------


def measure_idle_tick(server: Server, ticks: int = IDLE_TICKS, rounds: int = 10) -> dict[int, float]:
    """Seconds per `Scheduler.tick()` with nothing due, for each count of `IDLE_COUNTS` schedules (each
    count in a DB of its own). The counts take turns, `rounds` times; the median round is kept."""
    schedulers = {}
    for count, db in zip(IDLE_COUNTS, DB_IDLE, strict=True):
        context = server.context(db)
        context.redis.flushdb()
        for number in range(count):
            recurring.save(context, recurring.define(f"idle-{number}", tick, cron=NEVER_DUE))
        schedulers[count] = Scheduler(context)
    samples: dict[int, list[float]] = {count: [] for count in IDLE_COUNTS}
    for round_number in range(rounds + 1):  # round 0 warms up (and sends the first heartbeats)
        for count, scheduler in schedulers.items():
            started = time.perf_counter()
            fired = sum(scheduler.tick() for _ in range(ticks // rounds))
            if fired:
                raise BenchError(f"{fired} schedule(s) fired during the idle-tick measurement")
            if round_number:
                samples[count].append((time.perf_counter() - started) / (ticks // rounds))
    for scheduler in schedulers.values():
        scheduler.context.redis.flushdb()
    return {count: sorted(values)[len(values) // 2] for count, values in samples.items()}


# --- 3. the every-minute comparison -----------------------------------------------------------------


@dataclass(order=True)
class Action:
    """Something the comparison does at a given time."""

    at: float
    label: str = field(compare=False)
    run: Callable[[], None] = field(compare=False)


@dataclass
class GapTask:
    """A measurement that can run in any idle gap of the comparison that is at least `estimate` s long."""

    label: str
    estimate: float
    run: Callable[[], None]


def run_timeline(actions: list[Action], tasks: list[GapTask], notes: list[str]) -> None:
    """Run `actions` at their times, and `tasks` in the gaps between them (the rest at the end). A task
    that ran into the time of the next action is noted: that action may have been disturbed."""
    for action in sorted(actions):
        fill_gap(tasks, action, notes)
        sleep_until(action.at)
        action.run()
    while tasks:
        task = tasks.pop(0)
        print(f"  {clock(time.time())} {task.label} ...", flush=True)
        task.run()


def fill_gap(tasks: list[GapTask], action: Action, notes: list[str]) -> None:
    while True:
        room = action.at - time.time() - GAP_MARGIN
        task = next((task for task in tasks if task.estimate <= room), None)
        if task is None:
            return
        tasks.remove(task)
        started = time.time()
        print(f"  {clock(started)} {task.label} (gap of {room:.0f} s) ...", flush=True)
        task.run()
        print(f"    took {time.time() - started:.0f} s (estimate {task.estimate:.0f} s)", flush=True)
        if time.time() > action.at:
            notes.append(f"{task.label} ran {time.time() - action.at:.1f} s into '{action.label}'")


class Contender:
    """One scheduler of the every-minute comparison, in a DB of its own: `prepare` sets up its N
    schedules for the next minute, `start` starts its process, `collect` measures one minute's burst."""

    def __init__(self, key: str, server: Server, processes: Processes, args, db: int, interval: int = 1):
        self.key, self.server, self.processes, self.db = key, server, processes, db
        self.schedules = args.compare_schedules
        self.interval = interval  # rq-scheduler's polling interval
        self.client = server.client(db)
        self.runs = MinuteRuns(self.client, self.schedules, fire_in_id if key == "ours" else None)
        self.process: subprocess.Popen | None = None
        self.lateness = Lateness()
        self.starts: list[float] = []
        self.loads: list[float] = []  # the machine's 1-minute load average after each burst

    @property
    def prepare_estimate(self) -> float:
        return 1.0 + self.schedules * SAVE_SECONDS * 2

    def prepare(self, minute: int) -> None:
        """Empty this contender's DB and set up its schedules so that their next fire is `minute`."""
        if time.time() <= minute - 60:  # rq-scheduler's cron jobs take the next minute from the clock
            sleep_until(minute - 59)
        self.client.flushdb()
        self.runs.offset = 0
        if self.key == "ours":
            context = self.server.context(self.db)
            for number in range(self.schedules):
                definition = recurring.define(f"m{number}", tick, cron=EVERY_MINUTE)
                recurring.save(context, definition, now=minute - 1)
        elif self.key in ("poll", "phased"):
            from rq_scheduler import Scheduler as RQScheduler

            scheduler = RQScheduler(queue_name=QUEUE, connection=self.client)
            with warnings.catch_warnings():  # crontab's FutureWarning about naive local time (UTC here)
                warnings.simplefilter("ignore", FutureWarning)
                for number in range(self.schedules):
                    scheduler.cron(EVERY_MINUTE, func=plain_tick, queue_name=QUEUE, id=f"bench-{number}")

    def command(self) -> tuple[list[str], dict[str, str]]:
        url = self.server.url(self.db)
        if self.key == "ours":
            return ours_command(), process_env(url)
        if self.key == "cron":
            command = [executable("rq"), "cron", CRON_MODULE, "--url", url, "--path", str(BENCH)]
            return command, process_env(url, BENCH_CRON_SCHEDULES=str(self.schedules), BENCH_CRON_QUEUE=QUEUE)
        return [executable("rqscheduler"), "--url", url, "--interval", str(self.interval)], process_env(url)

    def start(self) -> None:
        command, env = self.command()
        self.starts.append(time.time())
        self.process = self.processes.start(f"{self.key}-{len(self.starts)}", command, env)

    def collect(self, minute: int, deadline: float) -> None:
        if self.process is not None:
            self.processes.check(self.process)
        burst = self.runs.collect(minute, deadline)
        self.lateness.add(burst)
        self.loads.append(os.getloadavg()[0])
        print(
            f"  {clock(time.time())} {LABELS[self.key]}: minute {clock(minute)}, {len(burst.samples):,} jobs,"
            f" max {fmt(burst.max)} s, load {self.loads[-1]:.1f}"
            + (f", {burst.missing} MISSING" if burst.missing else ""),
            flush=True,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.processes.stop(self.process)
            self.process = None


def prepare_and_start(contender: Contender, minute: int, at: float) -> None:
    """Set up the contender's schedules for `minute`, then start its process at `at`."""
    print(f"  {clock(time.time())} {LABELS[contender.key]}: preparing for {clock(minute)}", flush=True)
    contender.prepare(minute)
    sleep_until(at)
    contender.start()


def collect_minute(contender: Contender, minute: int, deadline: float, last: bool) -> None:
    contender.collect(minute, deadline)
    if last:
        contender.stop()


def comparison_actions(contenders: dict[str, Contender], minutes: int, first: int) -> list[Action]:
    """The timed steps of the comparison from the minute `first` on: ours, RQ's cron and rq-scheduler
    --interval 1 one after another, `minutes` minutes each; rq-scheduler --interval 60 restarted for each
    of its `minutes` instants, at phases spread evenly over the minute: alongside the others from the
    second minute on when its bursts are short (up to ALONGSIDE_MAX schedules), else after them."""
    actions: list[Action] = []
    sequential = [key for key in ("ours", "cron", "poll") if key in contenders]
    for index, key in enumerate(sequential):
        contender = contenders[key]
        own = [first + 60 * (index * minutes + number) for number in range(minutes)]
        start = own[0] - START_LEAD
        actions.append(
            Action(
                start - contender.prepare_estimate,
                f"start {key}",
                partial(prepare_and_start, contender, own[0], start),
            )
        )
        for number, minute in enumerate(own):
            last = number == len(own) - 1
            actions.append(
                Action(
                    minute, f"collect {key}", partial(collect_minute, contender, minute, minute + 55, last)
                )
            )
    if "phased" in contenders:
        contender = contenders["phased"]
        alongside = contender.schedules <= ALONGSIDE_MAX
        base = first + 60 if alongside else first + 60 * (len(sequential) * minutes + 1)
        for number in range(minutes):
            minute = base + 60 * number
            phase = 60 * (number + 0.5) / minutes
            start = minute - 60 + phase
            prepare_at = max(minute - 59, start - contender.prepare_estimate)
            actions.append(
                Action(prepare_at, "start phased", partial(prepare_and_start, contender, minute, start))
            )
            deadline = minute + phase + 10 + contender.schedules * SAVE_SECONDS * 5
            actions.append(
                Action(
                    minute + phase,
                    "collect phased",
                    partial(collect_minute, contender, minute, deadline, True),
                )
            )
    return actions


def overlaps(contenders: dict[str, Contender]) -> list[str]:
    """Bursts of rq-scheduler --interval 60 that overlapped another scheduler's burst."""
    if "phased" not in contenders:
        return []
    found = []
    for first, last in contenders["phased"].lateness.bursts:
        for key, contender in contenders.items():
            if key != "phased" and any(a <= last and first <= b for a, b in contender.lateness.bursts):
                found.append(
                    f"rq-scheduler --interval 60 burst at {clock(first)} overlapped one of {LABELS[key]}"
                )
    return found


# --- report -----------------------------------------------------------------------------------------


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def ratio(ours: float | None, other: float | None) -> str:
    """ours / other as "0.12x" (below 1: ours fires sooner); "-" when either is missing or zero."""
    if not ours or not other:
        return "-"
    value = ours / other
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.4f}x"


def problems(lateness: Lateness) -> str:
    parts = [
        f"{count} {what}"
        for count, what in (
            (lateness.missing, "missing"),
            (lateness.duplicates, "duplicate"),
            (lateness.unexpected, "unexpected"),
        )
        if count
    ]
    return ", ".join(parts) or "none"


def print_spread_table(results: list[SpreadResult], args) -> None:
    print()
    print(
        f"1. Ours, spread load: lateness in seconds (enqueued_at - fire time), one scheduler process,"
        f" {args.window} s of fires per row; target p99 <= {TARGET_P99:g} s"
    )
    header = (
        f"{'schedules':>9} {'intervals':>11} {'fires/s':>8} {'peak/s':>7} {'instants':>8} {'jobs':>7}"
        f" {'p50':>7} {'p99':>7} {'max':>7} {'load':>5}  problems"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        late = result.lateness
        flag = "" if late.p99 is not None and late.p99 <= TARGET_P99 else " (LATE)"
        print(
            f"{result.size:>9,} {result.intervals:>11} {result.rate:>8.1f} {result.peak:>7,}"
            f" {len(late.instants):>8,} {len(late.samples):>7,} {fmt(late.p50):>7} {fmt(late.p99):>7}"
            f" {fmt(late.max):>7} {result.load:>5.1f}  {problems(late)}{flag}"
        )


def print_idle_table(costs: dict[int, float]) -> None:
    print()
    print(
        f"2. Ours, idle tick (nothing due; in-process Scheduler.tick(), {IDLE_TICKS:,} ticks per count,"
        " median of 10 alternating rounds)"
    )
    for count, seconds in costs.items():
        print(f"{count:>9,} schedules  {seconds * 1e6:>8.0f} us per tick")
    low, high = costs[min(costs)], costs[max(costs)]
    print(
        f"{'':>9}  ratio {max(costs):,}/{min(costs):,} schedules: {high / low:.2f}x (1.00x: independent of the count)"
    )


def print_comparison_table(contenders: dict[str, Contender], args, notes: list[str]) -> None:
    print()
    print(
        f"3. Every-minute workload: {args.compare_schedules:,} schedules with cron '{EVERY_MINUTE}' in every"
        f" scheduler, all due at :00 of each minute;"
    )
    print(
        "   lateness in seconds (enqueued_at - the minute); each scheduler alone with its burst, default"
        " settings; no worker runs"
    )
    print(
        f"   load: the machine's 1-minute load average after each burst ({os.cpu_count()} CPUs; other"
        " processes on the machine show up there)"
    )
    header = (
        f"{'scheduler':<38} {'instants':>8} {'jobs':>7} {'p50':>7} {'p99':>7} {'max':>7} {'load':>9}"
        "  problems"
    )
    print(header)
    print("-" * len(header))
    for key, contender in contenders.items():
        late = contender.lateness
        load = f"{min(contender.loads):.1f}-{max(contender.loads):.1f}" if contender.loads else "-"
        print(
            f"{LABELS[key]:<38} {len(late.instants):>8} {len(late.samples):>7,} {fmt(late.p50):>7}"
            f" {fmt(late.p99):>7} {fmt(late.max):>7} {load:>9}  {problems(late)}"
        )
    ours = contenders.get("ours")
    if ours is None:
        return
    print()
    print("   ours / baseline (below 1.00x: ours fires sooner)")
    header = f"{'baseline':<38} {'p50':>8} {'p99':>8} {'max':>8}"
    print(header)
    print("-" * len(header))
    for key in BASELINES:
        if key in contenders:
            other, mine = contenders[key].lateness, ours.lateness
            print(
                f"{LABELS[key]:<38} {ratio(mine.p50, other.p50):>8} {ratio(mine.p99, other.p99):>8}"
                f" {ratio(mine.max, other.max):>8}"
            )
    if "phased" in contenders and contenders["phased"].starts:
        phases = ", ".join(f"{start % 60:.1f}" for start in contenders["phased"].starts)
        notes.append(
            f"rq-scheduler --interval 60 was started at seconds {phases} of the minute: its lateness is"
            " that phase (a random start gives 0-60 s, 30 s on average)"
        )
    for note in notes:
        print(f"   note: {note}")


def rq_scheduler_available() -> bool:
    try:
        import rq_scheduler  # noqa: F401
    except ImportError:
        print("rq-scheduler is not installed (.venv/bin/pip install -e '.[dev]'): its baselines are skipped")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the tables; exit code 1 if a measurement failed."""
    args = parse_args(argv)
    began = time.time()
    spread: list[SpreadResult] = []
    idle: dict[int, float] = {}
    failures: list[str] = []
    notes: list[str] = []

    def guarded(label: str, step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                step()
            except (BenchError, redis.RedisError) as exc:
                failures.append(f"{label}: {exc}")
                print(f"  {label} FAILED: {exc}", flush=True)

        return run

    with private_server() as (embedded, log_dir):
        server = Server(embedded.port)
        processes = Processes(log_dir)
        try:
            keys = ["ours", "cron"] + (["poll", "phased"] if rq_scheduler_available() else [])
            contenders = {
                key: Contender(
                    key,
                    server,
                    processes,
                    args,
                    {"ours": DB_OURS, "cron": DB_CRON, "poll": DB_POLL, "phased": DB_PHASED}[key],
                    interval=60 if key == "phased" else 1,
                )
                for key in keys
            }
            tasks = [
                GapTask(
                    "idle tick, 10 vs 10,000 schedules",
                    5 + max(IDLE_COUNTS) * SAVE_SECONDS * 2,
                    guarded("idle tick", lambda: idle.update(measure_idle_tick(server))),
                )
            ]
            for size in args.sizes:
                tasks.append(
                    GapTask(
                        f"ours, spread load, {size:,} schedules",
                        6 + args.window + size * SAVE_SECONDS * 2,
                        guarded(
                            f"spread {size}",
                            lambda size=size: spread.append(measure_spread(server, processes, size, args)),
                        ),
                    )
                )
            first = next_minute(time.time() + START_LEAD + contenders["ours"].prepare_estimate + GAP_MARGIN)
            actions = [
                Action(action.at, action.label, guarded(action.label, action.run))
                for action in comparison_actions(contenders, args.minutes, first)
            ]
            print(
                f"server 127.0.0.1:{server.port}; {os.cpu_count()} CPU(s); comparison: "
                f"{args.compare_schedules:,} schedules x {args.minutes} minute(s) per scheduler, from"
                f" {clock(first)} UTC; spread load: {', '.join(f'{s:,}' for s in args.sizes)} schedules,"
                f" {args.window} s each",
                flush=True,
            )
            run_timeline(actions, tasks, notes)
        finally:
            processes.stop_all()
    notes += overlaps(contenders)
    if spread:
        print_spread_table(sorted(spread, key=lambda result: result.size), args)
    if idle:
        print_idle_table(idle)
    print_comparison_table(contenders, args, notes)
    print()
    print(f"run time {time.time() - began:.0f} s")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every process was stopped on the way out
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
