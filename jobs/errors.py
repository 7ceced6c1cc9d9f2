"""The exceptions of the platform: one root, a small tree.

JobsError                 anything the platform refuses or cannot do; its message is one readable line
├── ConfigError           a setting or an option has a wrong value
├── RedisUnavailable      the job store cannot be reached
├── UnknownJob            a job name that is not in the catalog
├── InvalidArguments      job arguments that are not JSON or do not fit the function
├── JobNotFound           no job with that id
├── InvalidSchedule       a recurring schedule definition that cannot be used (cron, zone, interval, policy)
├── UnknownSchedule       no recurring schedule with that id
└── LockUnavailable       a lock is held by someone else (names the holder)
"""


class JobsError(Exception):
    """Root of every error the platform raises on purpose."""


class ConfigError(JobsError):
    """A setting or option has a value the platform cannot use."""


class RedisUnavailable(JobsError):
    """Redis did not answer."""


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
