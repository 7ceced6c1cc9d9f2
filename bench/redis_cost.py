"""Redis work per job: commands and server CPU per no-op job through its whole life (enqueue, run,
finished), ours against plain RQ (`Queue.enqueue` + `SimpleWorker`) in the same run, and what that implies
for the throughput one Redis server can carry.

Run it from the project root (it is a script, not a test):

    .venv/bin/python bench/redis_cost.py              # 5,000 jobs per measurement
    .venv/bin/python bench/redis_cost.py --quick      # 1,000

It starts a private Redis-compatible server (`jobs.embedded.EmbeddedServer`) in a temporary directory and
stops it at the end. For each kind the DB is flushed, the server's statistics are reset (CONFIG
RESETSTAT), N no-op jobs are enqueued one by one, then one worker process drains them in burst mode and
exits; the statistics are read after each phase. Nothing else talks to the server meanwhile (the script
waits for the worker to exit instead of polling), so every command counted is the platform's own:
the enqueue, the worker's dequeue, start, finish and heartbeats, and its RQ scheduler duty.

- commands per job: the sum of `calls` in INFO commandstats over N. Commands that Lua scripts run are
  counted too (as the server counts them), plus the script call itself.
- server CPU per job: the server process's user+system CPU (INFO cpu) over N: parsing, executing and
  answering, what actually bounds a server. The commandstats time is shown per command as well.
- command time per job: the sum of `usec` in INFO commandstats over N, as the goal counts it (and as
  RQ's 125 µs per job was counted where the goal was set): the time spent executing commands, without
  reading requests and writing replies. A script's or EXEC's time includes the commands it runs, which
  count again under their own names, so this sum counts nested commands twice: an upper bound.
- ceiling: 1 / (server CPU per job): the jobs/s at which one Redis core is saturated, whatever the number
  of workers. Size Redis with it: N workers at r jobs/s each need N * r below the ceiling.

CPU time per job moves within hours on a shared VM (2-5x here, mostly in system calls), so
`--instructions` counts instead the instructions the server executes per job, running it under valgrind's
callgrind (a few times slower; needs valgrind): the same work on the same binary gives the same count
(to about 1 %) whatever else the machine is doing and on any day, a measure to compare a change with
the one before. It leaves out the system calls of the round trips, which the round-trip count stands
for. `--server PATH` measures another server binary (say the machine's redis-server, a Redis 7 as where
the goal was set), with or without counting instructions, instead of the embedded one:

    .venv/bin/python bench/redis_cost.py --quick --instructions
    .venv/bin/python bench/redis_cost.py --quick --instructions --server /usr/bin/redis-server
    .venv/bin/python bench/redis_cost.py --no-aof --server /usr/bin/redis-server

The private server keeps an append-only file, as `jobctl up` runs it; logging every write is a fifth of
the server's work for our jobs and a third for RQ's (Redis 7, by instructions). `--no-aof` turns it off,
as on a Redis that keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchkit import counted_server, describe_server, job_count_options, private_server, server_options, spawn
from rq import Queue
from rq.serializers import JSONSerializer
from throughput import QUEUE, queue_for_kind, worker_commands, worker_env

import jobs
from jobs.builtin import noop
from jobs.config import Settings
from jobs.connection import Context

DEFAULT_JOBS = 5_000
QUICK_JOBS = 1_000
TARGET_COMMANDS = 15
TARGET_MICROSECONDS = 40.0
# The CPU target was set where plain RQ cost the server 125 µs per job; server CPU per job varies a lot
# between machines (system calls cost far more in some VMs), so it is also shown as that share of RQ.
TARGET_RQ_SHARE = TARGET_MICROSECONDS / 125.0
KINDS = {"ours": "ours", "simple": "RQ (SimpleWorker)"}
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


@dataclass
class Cost:
    """The server's work for one phase: commands by name, their commandstats time, the CPU it used and
    the memory it left in use."""

    calls: dict[str, int]
    usec: dict[str, int]
    cpu_seconds: float
    memory: int = 0
    instructions: int = 0  # counted under callgrind (--instructions), else 0

    def per_job(self, jobs: int) -> tuple[float, float]:
        """(commands, server CPU µs) per job."""
        return sum(self.calls.values()) / jobs, self.cpu_seconds * 1e6 / jobs

    def command_usec(self, jobs: int) -> float:
        """Commandstats time per job (nested commands counted twice, see the docstring)."""
        return sum(self.usec.values()) / jobs

    def __add__(self, other: Cost) -> Cost:
        names = self.calls.keys() | other.calls.keys()
        return Cost(
            {n: self.calls.get(n, 0) + other.calls.get(n, 0) for n in names},
            {n: self.usec.get(n, 0) + other.usec.get(n, 0) for n in names},
            self.cpu_seconds + other.cpu_seconds,
            self.memory + other.memory,
            self.instructions + other.instructions,
        )


def parse_args(argv: list[str] | None = None):
    """Command-line options."""

    def more(parser) -> None:
        parser.add_argument(
            "--instructions", action="store_true", help="count the server's instructions (callgrind)"
        )
        server_options(parser)

    return job_count_options(__doc__, DEFAULT_JOBS, QUICK_JOBS, 100, argv, more)


def _cpu(context: Context) -> float:
    info = context.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _memory(context: Context) -> int:
    return int(context.redis.info("memory")["used_memory"])


Counter = Callable[[Callable[[], object]], int]  # runs a phase, returns the server's instructions


def measured(context: Context, phase, counter: Counter | None) -> Cost:
    """Run `phase()` (through `counter`, if any) and return what it cost the server (the statistics are
    reset first)."""
    context.redis.config_resetstat()
    before, memory = _cpu(context), _memory(context)
    if counter:
        instructions = counter(phase)
    else:
        phase()
        instructions = 0
    cpu = _cpu(context) - before
    memory = _memory(context) - memory
    stats = context.redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}
    usec = {name.removeprefix("cmdstat_"): int(s["usec"]) for name, s in stats.items()}
    # the statistics calls of this script itself
    for name in ("config|resetstat", "info"):
        calls.pop(name, None), usec.pop(name, None)
    return Cost(calls, usec, cpu, memory, instructions)


def enqueue_phase(context: Context, kind: str, count: int):
    """The enqueue of `count` no-op jobs, one by one: ours through `jobs.enqueue`, RQ through its Queue."""
    if kind == "ours":
        return lambda: [jobs.enqueue(noop, context=context) for _ in range(count)]
    queue = Queue(QUEUE, connection=context.redis, serializer=JSONSerializer)
    return lambda: [queue.enqueue("jobs.builtin.noop") for _ in range(count)]


def work_phase(context: Context, kind: str):
    """One burst worker of `kind` draining the queue; waits for it to exit."""

    def run() -> None:
        with open("/dev/null", "wb") as log:
            command = worker_commands(kind, context.url, 1)[0]
            process = spawn(command, worker_env(context.url), log)
            if process.wait(timeout=3600) != 0:
                raise SystemExit(f"{KINDS[kind]} worker exited with {process.returncode}")

    return run


def measure(
    context: Context, kind: str, count: int, counter: Counter | None
) -> tuple[Cost, Cost, dict[str, int]]:
    """(enqueue cost, run cost, bytes by key pattern) of `count` no-op jobs for `kind`."""
    context.redis.execute_command("FLUSHDB", "SYNC")  # an asynchronous flush would free memory mid-measure
    enqueued = measured(context, enqueue_phase(context, kind, count), counter)
    ran = measured(context, work_phase(context, kind), counter)
    finished = queue_for_kind(context, kind).finished_job_registry.count
    if finished != count:
        raise SystemExit(f"{KINDS[kind]}: {finished} of {count} jobs finished")
    return enqueued, ran, key_sizes(context)


def key_sizes(context: Context) -> dict[str, int]:
    """Bytes (MEMORY USAGE) held by each kind of key, job ids replaced by `<id>`, largest first."""
    keys = list(context.redis.scan_iter(count=1000))
    with context.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        usages = pipe.execute()
    sizes: dict[str, int] = {}
    for key, usage in zip(keys, usages, strict=True):
        pattern = ID.sub("<id>", key.decode())
        sizes[pattern] = sizes.get(pattern, 0) + (usage or 0)
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


def print_report(results: dict[str, tuple[Cost, Cost, dict[str, int]]], count: int) -> None:
    """Per kind: commands, server work and memory per job by phase, the ceiling, the busiest commands and
    the biggest keys; then the ratios. Server work is CPU time, or instructions when they were counted:
    under callgrind the server's CPU time and memory (valgrind's allocator) are not its own."""
    counted = any(result[1].instructions for result in results.values())
    for kind, (enqueued, ran, sizes) in results.items():
        total = enqueued + ran
        print(f"\n{KINDS[kind]}: {count:,} no-op jobs")
        for label, cost in (("enqueue", enqueued), ("run", ran), ("whole life", total)):
            print(f"  {label:<11} {cost.per_job(count)[0]:6.1f} commands/job  {_work(cost, count, counted)}")
        if not counted:
            _print_memory(total, enqueued, sizes, count)
        print(f"  {'command':<24} {'per job':>8} {'' if counted else 'µs/job':>8}")
        for name, calls in sorted(total.calls.items(), key=lambda item: -item[1]):
            if calls / count >= 0.05:
                usec = "" if counted else f"{total.usec[name] / count:8.2f}"
                print(f"  {name:<24} {calls / count:8.2f} {usec}")
    ours, rq = (results[kind][0] + results[kind][1] for kind in ("ours", "simple"))
    print_targets(ours, rq, count, counted)


def _print_memory(total: Cost, enqueued: Cost, sizes: dict[str, int], count: int) -> None:
    print(f"  ceiling of one Redis core: {1e6 / total.per_job(count)[1]:,.0f} jobs/s")
    print(
        f"  memory: {enqueued.memory / count:,.0f} B per queued job,"
        f" {total.memory / count:,.0f} B per finished job kept"
    )
    for pattern, size in sizes.items():
        if size / count >= 1:
            print(f"    {pattern:<36} {size / count:7,.0f} B per job")


def _work(cost: Cost, count: int, counted: bool) -> str:
    if counted:
        return f"{cost.instructions / count / 1000:7.1f} k server instructions/job"
    return (
        f"{cost.per_job(count)[1]:6.1f} µs server CPU/job {cost.command_usec(count):6.1f} µs command time/job"
    )


def print_targets(ours: Cost, rq: Cost, count: int, counted: bool) -> None:
    """Ours against the targets and against RQ (whole life, per job)."""
    print(f"\ntargets: <= {TARGET_COMMANDS} commands and <= {TARGET_MICROSECONDS:g} µs server CPU per job")
    (commands, cpu), (rq_commands, rq_cpu) = ours.per_job(count), rq.per_job(count)
    verdict = "ok" if commands <= TARGET_COMMANDS else "OVER"
    ratio = commands / rq_commands
    print(
        f"  commands/job       ours {commands:6.1f} {verdict:<5} RQ {rq_commands:6.1f}  ours/RQ {ratio:.2f}x"
    )
    if counted:
        share = ours.instructions / rq.instructions
        print(
            f"  server instructions/job: ours {ours.instructions / count / 1000:,.1f} k, RQ"
            f" {rq.instructions / count / 1000:,.1f} k, ours/RQ {share:.2f}x (the CPU target is a"
            f" {TARGET_RQ_SHARE:.2f}x share of RQ's CPU, system calls included, which instructions leave out)"
        )
    else:
        usec, rq_usec = ours.command_usec(count), rq.command_usec(count)
        verdict = "ok" if usec <= TARGET_MICROSECONDS else "OVER"
        print(
            f"  command µs/job     ours {usec:6.1f} {verdict:<5} RQ {rq_usec:6.1f}  ours/RQ {usec / rq_usec:.2f}x"
            " (INFO commandstats, as the goal counts)"
        )
        verdict = "ok" if cpu <= TARGET_MICROSECONDS else "OVER"
        print(
            f"  server CPU µs/job  ours {cpu:6.1f} {verdict:<5} RQ {rq_cpu:6.1f}  ours/RQ {cpu / rq_cpu:.2f}x"
            " (the process, system calls included)"
        )
        print(
            f"  server CPU as a share of RQ's: ours {cpu / rq_cpu:.2f}x, target {TARGET_RQ_SHARE:.2f}x"
            f" ({'ok' if cpu / rq_cpu <= TARGET_RQ_SHARE else 'OVER'}; the target machine's RQ cost 125 µs,"
            f" this one's {rq_cpu:,.0f} µs)"
        )
        print(
            f"  ceiling ratio: ours {1e6 / cpu:,.0f} jobs/s vs RQ {1e6 / rq_cpu:,.0f} ({rq_cpu / cpu:.2f}x)"
        )
        print(
            f"  memory per finished job: ours {ours.memory / count:,.0f} B, RQ {rq.memory / count:,.0f} B"
            f" ({ours.memory / rq.memory:.2f}x)"
        )


def main(argv: list[str] | None = None) -> int:
    """Measure both kinds and print the report."""
    args = parse_args(argv)
    with _server(args) as (url, counter):
        context = Context.connect(Settings(redis_url=url))
        print(describe_server(context.redis, args.no_aof), flush=True)
        results = {kind: measure(context, kind, args.jobs, counter) for kind in KINDS}
        context.redis.close()
    print_report(results, args.jobs)
    return 0


@contextlib.contextmanager
def _server(args):
    """(URL, instruction counter or None) of the private server to measure."""
    if args.instructions:
        with counted_server(args.server) as server:
            yield server.url, server.instructions
    else:
        with private_server("jobs-bench-cost-", args.server) as (server, _):
            yield server.url, None


if __name__ == "__main__":
    sys.exit(main())
