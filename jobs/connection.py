"""Redis clients built from Settings, the reachability and eviction checks, and the active context."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.client import Pipeline
from redis.commands.core import Script
from redis.connection import DefaultParser
from redis.exceptions import NoScriptError
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection

from .config import DEFAULT_REDIS_URL, Settings
from .errors import ConfigError, RedisFull, RedisUnavailable
from .keys import Keys

log = logging.getLogger("jobs")


SENTINEL_SCHEME = "redis+sentinel"
# A reply slower than this means the link is dead, not that Redis is busy: without it a connection whose
# packets vanish (a cut link, a lost firewall or NAT state) blocks its process until TCP gives up, hours
# later. It must stay above the longest blocking wait any process asks of Redis (dequeue: 1 s).
COMMAND_TIMEOUT = 5.0
_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")


def redacted(url: str) -> str:
    """Return `url` with any password replaced by ***, for messages and pages."""
    return _PASSWORD.sub(r"\1***@", url)


class ReportingRetry(Retry):
    """redis-py's retries, which also say when Redis stops answering and when it answers again: once per
    process, not per attempt or per connection, and also for outages that the retries ride out."""

    def call_with_retry(self, do, fail, *args, **kwargs):
        def attempt():
            global _link_failures
            try:
                result = do()
            except self._supported_errors as error:
                _link_failures += 1
                if _PROCESS_OUTAGE.reached:  # before that, it is not an outage: the caller says what failed
                    _PROCESS_OUTAGE.failed(error)
                raise
            _PROCESS_OUTAGE.succeeded()
            return result

        return super().call_with_retry(attempt, fail, *args, **kwargs)


class _Parser(DefaultParser):
    """redis-py's reply parser, raising RedisFull where it would raise OutOfMemoryError (Redis' "OOM"
    reply): the one place where a full Redis is recognised, whatever command or transaction it refused.
    The default parser is hiredis' (a dependency), which reads both RESP2 and RESP3."""

    EXCEPTION_CLASSES = {**DefaultParser.EXCEPTION_CLASSES, "OOM": RedisFull}


def client_for(url: str, *, resilient: bool) -> redis.Redis:
    """A client for `url`: `redis://`, `rediss://`, `unix://`, or `redis+sentinel://` (the master of a
    Sentinel-monitored group, followed across failovers). Resilient clients (long-lived processes) retry
    a lost connection with backoff; the others fail at once so that commands can say so within a second
    or two. A write that a full Redis refuses raises RedisFull."""
    retry = ReportingRetry(ExponentialBackoff(cap=2.0, base=0.05), 6) if resilient else Retry(NoBackoff(), 0)
    options = dict(
        socket_connect_timeout=1.0 if not resilient else 3.0,
        socket_timeout=COMMAND_TIMEOUT,
        health_check_interval=30 if resilient else 0,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError] if resilient else [],
        parser_class=_Parser,
    )
    if not url.startswith("unix://"):  # a unix socket has no keepalive to set (redis-py refuses it)
        options["socket_keepalive"] = True
    try:
        if url.startswith(f"{SENTINEL_SCHEME}://"):
            return _sentinel_client(url, options)
        _check_database(url)
        return redis.Redis.from_pool(_Pool.from_url(url, **options))
    except ValueError as exc:
        example = "redis://127.0.0.1:6379/1 or redis+sentinel://host:26379,host2:26379/mymaster/1"
        raise ConfigError(f"{redacted(url)} is not a Redis URL (e.g. {example}): {exc}") from None


def _check_database(url: str) -> None:
    """ValueError unless the database a redis:// or rediss:// URL names, if any, is a number: redis-py
    takes any other path for DB 0, the services' cache, and "/1/2" for DB 12."""
    parts = urlsplit(url)
    databases = [unquote(parts.path)] if parts.path not in ("", "/") else []
    databases += [f"/{value}" for value in parse_qs(parts.query).get("db", [])]
    for database in databases if parts.scheme in ("redis", "rediss") else []:
        if not re.fullmatch(r"/\d+/?", database):
            raise ValueError(f"its database {database[1:]!r} is not a number")


@dataclass(frozen=True)
class SentinelURL:
    """`redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`: the sentinels to ask
    and the group whose master to use; the password is the master's."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Raise ValueError naming what is wrong."""
        parts = urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        sentinels = [_host_port(host) for host in hosts.split(",") if host]
        path = [part for part in parts.path.split("/") if part]
        if not sentinels:
            raise ValueError("no sentinel host:port given")
        if not path or len(path) > 2:
            raise ValueError("the path must be /service or /service/db")
        if len(path) == 2 and not path[1].isdigit():
            raise ValueError(f"the database must be a number, not {path[1]!r}")
        return cls(
            sentinels,
            unquote(path[0]),
            int(path[1]) if len(path) == 2 else 0,
            unquote(username) or None,
            unquote(password) or None,
        )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


class _SentinelConnection(SentinelManagedConnection):
    """redis-py's connection to the master of a Sentinel group, closed when a read fails, as every other
    redis-py connection is. redis-py's own keeps it: the unread reply (say, of a BLPOP that a stop signal
    interrupted) stays on it in the pool, and the next command reads it as its own (redis/redis-py#4292)."""

    def read_response(self, *args, disconnect_on_error: bool = True, **kwargs):
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


def _sentinel_client(url: str, options: dict) -> redis.Redis:
    """A client for the current master of a Sentinel URL's group: every new connection asks the
    sentinels where the master is, so a failover only costs the reconnection."""
    parsed = SentinelURL.parse(url)
    sentinel_options = {"socket_connect_timeout": options["socket_connect_timeout"], "socket_timeout": 2.0}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        parsed.service,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        connection_class=_SentinelConnection,
        connection_pool_class=_SentinelPool,
        **options,
    )


# Attempts that failed to reach Redis in this process (resilient clients). A connection that has not been
# used since the last one may be just as dead: after a cut link its packets vanish, and its next command
# would wait COMMAND_TIMEOUT to find out, one connection after another, while heartbeats lapse.
_link_failures = 0


def _fresh(connection: redis.connection.AbstractConnection) -> redis.connection.AbstractConnection:
    """`connection`, closed (so that its next command opens it again) when this process has failed to
    reach Redis since it was last handed out."""
    seen = getattr(connection, "_failures_seen", None)
    if seen != _link_failures:
        if seen is not None:
            connection.disconnect()
        connection._failures_seen = _link_failures
    return connection


class _Holding:
    """Mixed into redis-py's connection pools: `held()` is a connection that its thread keeps out of the
    pool for `_command`, given back when the thread ends. Taking a connection from redis-py 8's pool and
    giving it back (its lock, its metrics, its events) costs a sixth of a one-by-one enqueue's CPU; a
    held connection costs the pool's check that it is still sound. Every connection handed out is
    opened again first when the process has failed to reach Redis since (`_fresh`)."""

    def reset(self) -> None:
        super().reset()
        self._held = threading.local()  # also in a forked child: the parent's connections are not its own

    def get_connection(self, *args, **kwargs) -> redis.connection.AbstractConnection:
        return _fresh(super().get_connection(*args, **kwargs))

    def held(self) -> redis.connection.AbstractConnection:
        """This thread's connection, connected and with nothing left to read on it."""
        holder = getattr(self._held, "holder", None)
        if holder is None or self.pid != os.getpid():
            holder = _Holder(self, self.get_connection())  # as the pool checks it; after a fork, resets it
            self._held.holder = holder
            return holder.connection
        connection = _fresh(holder.connection)
        try:
            if connection.can_read():  # a reply nobody read; or the server closed it: reconnect
                connection.disconnect()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
        return connection


class _Holder:
    """A connection held out of its pool by one thread, given back when that thread's locals go: in its own
    process only. A forked child drops the locals of its parent's other threads as it starts, and must
    not touch the pool then: another thread may have held the pool's lock at the fork, which the child
    would wait for forever."""

    def __init__(self, pool: redis.ConnectionPool, connection: redis.connection.AbstractConnection):
        self.pool, self.connection, self.pid = pool, connection, os.getpid()

    def __del__(self) -> None:
        if os.getpid() == self.pid:
            self.pool.release(self.connection)


class _Pool(_Holding, redis.ConnectionPool):
    pass


class _SentinelPool(_Holding, SentinelConnectionPool):
    pass


def run_script(script: Script, keys: Sequence, args: Sequence, client: redis.Redis | Pipeline) -> Any:
    """What `script(keys, args, client)` gives: the script run on `client` (loaded first where the server
    lacks it). Every job sends scripts (enqueue, take, locks): on a client they go by `_command`."""
    if isinstance(client, Pipeline):
        return script(keys=keys, args=args, client=client)
    try:
        return _command(client, "EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        script.sha = client.script_load(script.script)
        return _command(client, "EVALSHA", script.sha, len(keys), *keys, *args)


def _command(client: redis.Redis, *args) -> Any:
    """The raw reply to a command, sent as `client.execute_command` sends it (on a connection of its pool,
    with its retries) but without what redis-py 8 wraps around every command (its metrics, its checks of
    the arguments), which here costs about as much as the round trip itself: 50 of 110 µs. The clients of
    `client_for` lend this thread's held connection (`_Holding`), others one from their pool."""
    pool = client.connection_pool
    held = isinstance(pool, _Holding)
    connection = pool.held() if held else pool.get_connection()
    try:
        return connection.retry.call_with_retry(
            lambda: _send(connection, args), lambda error: connection.disconnect()
        )
    except redis.ResponseError:
        raise
    except BaseException:
        connection.disconnect()  # interrupted between sending and reading: its reply would be the next's
        raise
    finally:
        if not held:
            pool.release(connection)


def _send(connection, args: tuple) -> Any:
    send_command(connection, *args)
    return connection.read_response()


def send_command(connection: redis.connection.AbstractConnection, *args) -> None:
    """Send a command on `connection` (of a pool) without reading its reply, packed as redis-py packs it
    (by hiredis) but without redis-py's pass over every argument first."""
    connection.send_packed_command([hiredis.pack_command(args)])


def ping(client: redis.Redis, url: str) -> None:
    """Raise RedisUnavailable with one readable line unless `client` answers."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(
            f"cannot reach Redis at {redacted(url)}: authentication failed ({exc})"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {redacted(url)}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, MasterNotFoundError):  # its text is the repr of redis-py's pool: a thousand characters
        return "no sentinel answered with the group's master (sentinels down, or the group unknown to them)"
    text = str(exc).lower()
    for known in ("connection refused", "timed out", "name or service not known", "no route to host"):
        if known in text:
            return known
    return str(exc) or type(exc).__name__


def eviction_warning(client: redis.Redis) -> str | None:
    """Return a warning if Redis may evict keys (and so delete jobs), else None."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:  # CONFIG is disabled on some managed servers
        try:
            policy = client.info("memory").get("maxmemory_policy")
        except redis.ResponseError as exc:  # and INFO too, say by an ACL without @dangerous commands
            return f"cannot check Redis' maxmemory-policy ({exc}): make sure it is 'noeviction'."
    if policy in (None, "noeviction"):
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: Redis may evict keys and silently delete jobs. "
        "Set it to 'noeviction'."
    )


@dataclass
class Context:
    """What every platform call needs: the settings, a Redis client for the job store, the key schema."""

    settings: Settings
    redis: redis.Redis
    keys: Keys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.prefix)

    @property
    def url(self) -> str:
        return self.settings.redis_url or DEFAULT_REDIS_URL

    @classmethod
    def connect(cls, settings: Settings, *, resilient: bool = False, check: bool = True) -> Context:
        """Connect to the configured job store; raise RedisUnavailable (one line) if it does not answer."""
        url = resolve_url(settings)
        client = client_for(url, resilient=resilient)
        if check:
            ping(client, url)
        return cls(settings.with_(redis_url=url), client)

    def check_eviction(self) -> None:
        """Warn loudly when Redis may evict jobs; refuse to go on with `strict` settings."""
        warning = eviction_warning(self.redis)
        if warning is None:
            return
        if self.settings.strict:
            raise RedisUnavailable(warning + " (refusing to start: JOBS_STRICT is set)")
        log.warning("WARNING: %s", warning)


def resolve_url(settings: Settings) -> str:
    """The job store's URL: JOBS_REDIS_URL, else a live embedded server of `jobctl up`, else the default."""
    from .embedded import running_url

    return settings.redis_url or running_url(settings.data_dir) or DEFAULT_REDIS_URL


_active: Context | None = None


def activate(context: Context) -> Context:
    """Make `context` the one used by calls that are not given one (e.g. `my_job.enqueue(...)`)."""
    global _active
    _active = context
    return context


def current() -> Context:
    """The active context; on first use, one built from the environment."""
    if _active is None:
        return activate(Context.connect(Settings.from_env(), check=False))
    return _active


class OutageLog:
    """Logs a Redis outage (unreachable, or full and refusing writes) once when it starts and once when it
    ends, however many attempts fail in between (so a long outage does not flood the log). With `settle`,
    the outage ends only at a success that many seconds after the last failure: a reconnection that
    merely opens a socket is not the end."""

    def __init__(self, logger: logging.Logger, who: str, settle: float = 0.0):
        self.logger, self.who, self.settle = logger, who, settle
        self.trouble: str | None = None  # "full" or "unreachable" while attempts fail
        self.last_failure = 0.0
        self.reached = False  # whether any attempt has worked yet

    def failed(self, error: Exception) -> None:
        """An attempt failed."""
        trouble = "full" if isinstance(error, RedisFull) else "unreachable"
        if trouble != self.trouble:
            if trouble == "full":
                self.logger.warning("%s: %s; will keep trying", self.who, error)
            else:
                self.logger.warning("%s cannot reach Redis (%s); will keep trying", self.who, error)
        self.trouble, self.last_failure = trouble, time.monotonic()

    def succeeded(self) -> None:
        """An attempt worked."""
        self.reached = True
        if self.trouble and time.monotonic() - self.last_failure >= self.settle:
            if self.trouble == "full":
                self.logger.info("%s: Redis has room again", self.who)
            else:
                self.logger.info("%s reaches Redis again", self.who)
            self.trouble = None


# more than the retries' longest backoff (2 s), which separates a failed command from the next connect
_PROCESS_OUTAGE = OutageLog(log, "this process", settle=3.0)
