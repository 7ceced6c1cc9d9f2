"""The exceptions of the platform: one root, a small tree.

JobsError                 anything the platform refuses or cannot do; its message is one readable line
├── ConfigError           a setting or an option has a wrong value
├── RedisUnavailable      the job store cannot be reached
├── RedisFull             the job store is at its maxmemory and refuses new data (also a redis-py error)
├── UnknownJob            a job name that is not in the catalog
├── InvalidArguments      job arguments that are not JSON or do not fit the function
├── JobNotFound           no job with that id
├── InvalidSchedule       a recurring schedule definition that cannot be used (cron, zone, interval, policy)
├── UnknownSchedule       no recurring schedule with that id
└── LockUnavailable       a lock is held by someone else (names the holder)
"""

from redis.exceptions import OutOfMemoryError


class JobsError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(JobsError):
    """A setting or option has a value the platform cannot use."""


class RedisUnavailable(JobsError):
    """Redis did not answer."""


class RedisFull(JobsError, OutOfMemoryError):
    """Redis refused a write because its used memory reached `maxmemory` (with the `noeviction` policy).

    Raised for every such refusal (see connection.client_for), so it is also the redis-py error it
    replaces: loops that ride out Redis errors treat it as one. Its message says what to do.
    """

    def __str__(self) -> str:
        return (
            "Redis is full: it has reached its maxmemory and refuses new data (maxmemory-policy noeviction). "
            "Workers go on with the jobs already queued, and memory comes back as finished jobs expire "
            "(JOBS_SUCCEEDED_TTL): try again later, or raise Redis' maxmemory"
        )


class UnknownJob(JobsError):
    """The job name is not registered in the catalog."""


class UnreadableJob(JobsError):
    """A job's stored data cannot be read as a platform job (garbage or another serializer's payload)."""


class InvalidArguments(JobsError):
    """Job arguments are not JSON, or do not match the job function's signature."""


class JobNotFound(JobsError):
    """No job with the given id exists (any more)."""


class InvalidSchedule(JobsError):
    """A schedule definition is wrong: cron expression, time zone, interval, id or policy."""


class UnknownSchedule(JobsError):
    """No recurring schedule has the given id."""


class LockUnavailable(JobsError):
    """The lock is held by someone else; `holder` says who, when known."""

    def __init__(self, message: str, name: str = "", holder=None):
        super().__init__(message)
        self.name, self.holder = name, holder


class WorkerInterrupted(BaseException):
    """Raised inside a running job when the shutdown deadline passes; the job is requeued.

    A BaseException so that a job's own `except Exception` cannot swallow it.
    """
