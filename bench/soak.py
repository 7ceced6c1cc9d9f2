"""Soak: the chaos suite's worker massacre, scheduler massacre and Redis restarts, run longer and repeated,
for release checks. Every round is the same test as in CI (tests/chaos), only bigger; the figures of each
round are printed as the tests report them, and any lost or doubled work fails the round.

    .venv/bin/python bench/soak.py                      # about 15 minutes: 100k jobs, 5 min of fires, 10 crashes
    .venv/bin/python bench/soak.py --hours 2            # rounds of that until two hours have passed
    .venv/bin/python bench/soak.py --jobs 1000000 --schedule-seconds 3600 --restarts 50 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = [
    "tests/chaos/test_worker_massacre.py",
    "tests/chaos/test_scheduler_massacre.py",
    "tests/chaos/test_redis_restarts.py",
]


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per worker massacre")
    parser.add_argument("--schedule-seconds", type=int, default=300, help="length of a scheduler massacre")
    parser.add_argument("--restarts", type=int, default=10, help="Redis crashes per appendfsync policy")
    parser.add_argument("--rounds", type=int, default=1, help="rounds to run (unless --hours ends it)")
    parser.add_argument(
        "--hours", type=float, default=None, help="run rounds until this much time has passed"
    )
    args = parser.parse_args(argv)
    if min(args.jobs, args.schedule_seconds, args.restarts, args.rounds) < 1:
        parser.error("--jobs, --schedule-seconds, --restarts and --rounds must be at least 1")
    return args


def run_round(args: argparse.Namespace) -> bool:
    """One pass of the three scenarios at the asked size; True when every one of them held."""
    env = {
        **os.environ,
        "JOBS_CHAOS_JOBS": str(args.jobs),
        "JOBS_CHAOS_SECONDS": str(args.schedule_seconds),
        "JOBS_CHAOS_RESTARTS": str(args.restarts),
    }
    command = [sys.executable, "-m", "pytest", "-m", "chaos", "-q", "-p", "no:cacheprovider", *SCENARIOS]
    return subprocess.run(command, cwd=ROOT, env=env).returncode == 0


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    began = time.monotonic()
    rounds = failed = 0
    while True:
        rounds += 1
        print(f"--- soak round {rounds}", flush=True)
        failed += not run_round(args)
        hours = (time.monotonic() - began) / 3600
        if (args.hours is None and rounds >= args.rounds) or (args.hours is not None and hours >= args.hours):
            break
    print(f"--- soak: {rounds} round(s) in {hours * 60:.0f} min, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
