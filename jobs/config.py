"""Settings of the platform, read once from the environment at the edge and passed down."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .durations import parse_duration
from .errors import ConfigError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"
DEFAULT_QUEUES = ("critical", "default", "low")
MAX_THREADS = 64  # per process: each thread is a registered worker with its own heartbeat and connection
MAX_PORT = 65535


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ConfigError("use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError("use 1/true/yes/on or 0/false/no/off")
    return lowered in ("1", "true", "yes", "on")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def queue_name_problem(name: object) -> str | None:
    """Why no worker could serve the queue `name` (JOBS_QUEUES and --queues are read as a comma-separated
    list of stripped names), or None."""
    if not isinstance(name, str) or _split(name) != (name,):
        return "a queue name is text, not empty, without a comma or spaces around it"
    return None


def _refuse_misspelt(env: Mapping[str, str], known: Mapping[str, object]) -> None:
    """ConfigError for a JOBS_* variable that is not a setting but is spelt almost as one: ignored, it
    would leave that setting at its default without a word."""
    for variable in env:
        if variable.startswith("JOBS_") and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1, cutoff=0.9)
            if close:
                raise ConfigError(f"{variable} is not a setting: did you mean {close[0]}?")


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Each field has an environment variable (see the README's table)."""

    redis_url: str | None = None  # None: the default URL, or an embedded server when nothing answers there
    prefix: str = "jobs:"
    imports: tuple[str, ...] = ()
    queues: tuple[str, ...] = DEFAULT_QUEUES
    concurrency: int = 2
    threads: int = 1  # workers per process, one per thread (jobs.threads)
    shutdown_timeout: float = 25.0
    orphan_timeout: float = 60.0
    max_orphans: int = 3
    succeeded_ttl: int = 86400
    failed_ttl: int = 7 * 86400
    data_dir: Path = field(default_factory=lambda: Path(".jobs"))
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 9181
    dashboard_users: str = (
        ""  # "name:role:password-hash;..." (role viewer|operator); see `jobctl dashboard hash-password`
    )
    dashboard_token: str = ""  # bearer token with the operator role, for scripts and the API
    dashboard_secret: str = ""  # signs session cookies; generated into the data dir when empty
    strict: bool = False
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Build settings from JOBS_* variables (default: os.environ); `overrides` win over both."""
        env = os.environ if env is None else env
        values: dict = {}
        readers = {
            "JOBS_REDIS_URL": ("redis_url", str),
            "JOBS_PREFIX": ("prefix", str),
            "JOBS_IMPORTS": ("imports", _split),
            "JOBS_QUEUES": ("queues", _split),
            "JOBS_CONCURRENCY": ("concurrency", int),
            "JOBS_THREADS": ("threads", int),
            "JOBS_SHUTDOWN_TIMEOUT": ("shutdown_timeout", parse_duration),
            "JOBS_ORPHAN_TIMEOUT": ("orphan_timeout", parse_duration),
            "JOBS_MAX_ORPHANS": ("max_orphans", int),
            "JOBS_SUCCEEDED_TTL": ("succeeded_ttl", lambda v: int(parse_duration(v))),
            "JOBS_FAILED_TTL": ("failed_ttl", lambda v: int(parse_duration(v))),
            "JOBS_DATA_DIR": ("data_dir", Path),
            "JOBS_DASHBOARD_HOST": ("dashboard_host", str),
            "JOBS_DASHBOARD_PORT": ("dashboard_port", int),
            "JOBS_DASHBOARD_USERS": ("dashboard_users", str),
            "JOBS_DASHBOARD_TOKEN": ("dashboard_token", str),
            "JOBS_DASHBOARD_SECRET": ("dashboard_secret", str),
            "JOBS_STRICT": ("strict", _flag),
            "JOBS_LOG_LEVEL": ("log_level", _log_level),
        }
        _refuse_misspelt(env, readers)
        for variable, (name, convert) in readers.items():
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[name] = convert(raw)
            except (ValueError, ConfigError) as exc:
                raise ConfigError(f"{variable}={raw!r} is not valid: {exc}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_(self, **changes) -> Settings:
        """Return a copy with `changes` applied (None values are ignored)."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def validate(self) -> None:
        """Raise ConfigError on values the platform cannot work with."""
        if self.concurrency < 1:
            raise ConfigError("JOBS_CONCURRENCY / --concurrency must be at least 1")
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"JOBS_THREADS / --threads must be between 1 and {MAX_THREADS}")
        if not self.queues:
            raise ConfigError("JOBS_QUEUES / --queues must name at least one queue")
        if self.orphan_timeout < 1:
            raise ConfigError("JOBS_ORPHAN_TIMEOUT must be at least 1 second")
        if self.max_orphans < 1:
            raise ConfigError("JOBS_MAX_ORPHANS must be at least 1")
        if self.failed_ttl < 1:  # RQ reads a failure kept 0 s as kept a year; a canceled job forever
            raise ConfigError("JOBS_FAILED_TTL must be at least 1 second")
        if not 0 <= self.dashboard_port <= MAX_PORT:
            raise ConfigError(f"JOBS_DASHBOARD_PORT / --port must be between 0 and {MAX_PORT}")
