"""TechBirdsFly Jobs: background jobs for Python on Redis.

Define a job with `@job`, enqueue it with `my_job.enqueue(...)` or `jobs.enqueue("module.name", ...)`,
run workers with `jobctl worker`. Importing this package does no I/O.
"""

from .catalog import JobFunction, job
from .config import Settings
from .connection import Context, activate
from .enqueue import enqueue, enqueue_many
from .errors import (
    ConfigError,
    InvalidArguments,
    InvalidSchedule,
    JobNotFound,
    JobsError,
    RedisUnavailable,
    UnknownJob,
    UnknownSchedule,
)
from .recurring import schedule

__all__ = [
    # defining and enqueuing jobs
    "job",
    "JobFunction",
    "enqueue",
    "enqueue_many",
    # recurring schedules
    "schedule",
    # configuration and connection
    "Settings",
    "Context",
    "activate",
    # errors
    "JobsError",
    "ConfigError",
    "RedisUnavailable",
    "UnknownJob",
    "InvalidArguments",
    "JobNotFound",
    "InvalidSchedule",
    "UnknownSchedule",
]
