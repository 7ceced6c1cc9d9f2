"""`rq cron` configuration for `bench/scheduler.py`: $BENCH_CRON_SCHEDULES jobs, each `* * * * *`.

RQ's CronScheduler loads this module (`rq cron bench_rq_cron --path bench`); it reads the environment at
import because that is the only input a cron config module gets.
"""

from __future__ import annotations

import os

from bench_jobs import plain_tick
from rq import cron

QUEUE = os.environ.get("BENCH_CRON_QUEUE", "default")

for number in range(int(os.environ.get("BENCH_CRON_SCHEDULES", "1"))):
    cron.register(plain_tick, QUEUE, cron="* * * * *", name=f"bench-{number}")
