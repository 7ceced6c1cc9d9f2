"""TechBirdsFly Jobs: background jobs for Python on Redis.

Define a job with `@job`, enqueue it with `my_job.enqueue(...)` or `jobs.enqueue("module.name", ...)`,
run workers with `jobctl worker`. Importing this package does no I/O.
"""

from .catalog import JobFunction, job
from .config import Settings
from .connection import Context, activate
from .enqueue import enqueue
from .errors import (
    ConfigError,
    InvalidArguments,
    JobNotFound,
    JobsError,
    RedisUnavailable,
    UnknownJob,
)

__all__ = [
    # defining and enqueuing jobs
    "job",
    "JobFunction",
    "enqueue",
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
]
