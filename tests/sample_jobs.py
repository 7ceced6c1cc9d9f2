"""Jobs used by the tests. Each records what it did in Redis (the active context's DB) so tests can check."""

from __future__ import annotations

import os
import signal
import threading
import time

from jobs import job
from jobs.connection import current
from jobs.dequeue import started_key


def _record(key: str, value: str) -> None:
    current().redis.rpush(f"test:{key}", value)


@job(retries=0)
def record(tag: str) -> str:
    """Append `tag` to the list test:ran."""
    _record("ran", tag)
    return tag


@job(queue="critical", retries=0)
def record_critical(tag: str) -> str:
    _record("ran", tag)
    return tag


@job(queue="low", retries=0)
def record_low(tag: str) -> str:
    _record("ran", tag)
    return tag


@job(retries=2, backoff=0)
def always_fails(message: str) -> None:
    raise ValueError(message)


@job(retries=3, backoff=0, no_retry_on=(KeyError,))
def fails_without_retry(key: str) -> None:
    raise KeyError(key)


@job(retries=0, timeout=1)
def too_slow() -> None:
    time.sleep(10)


@job(retries=2, backoff=0)
def slow_then_ok(tag: str, seconds: float) -> str:
    """First attempt: announce the pid and sleep `seconds`; later attempts succeed at once."""
    attempt = current().redis.incr(f"test:attempts:{tag}")
    if attempt == 1:
        _record("running", f"{tag}:{os.getpid()}")
        time.sleep(seconds)
    _record("ran", tag)
    return tag


@job(retries=0)
def kills_its_worker(tag: str) -> None:
    """Record `tag`, then kill the process running it at once, as a crash or the OOM killer would."""
    _record("ran", tag)
    os.kill(os.getpid(), signal.SIGKILL)


@job(retries=0)
def records_started(tag: str) -> str:
    """Record in test:started the ids of the default queue's started jobs, as they are while it runs."""
    entries = current().redis.zrange(started_key("default"), 0, -1)
    _record("started", ",".join(sorted(entry.decode().split(":")[0] for entry in entries)))
    _record("ran", tag)
    return tag


@job(retries=2, backoff=0)
def fails_then_naps(tag: str, seconds: float) -> str:
    """Fails on its first attempt; later attempts sleep `seconds`, then succeed."""
    if current().redis.incr(f"test:attempts:{tag}") == 1:
        raise RuntimeError("first attempt fails")
    time.sleep(seconds)
    _record("ran", tag)
    return tag


@job(retries=0)
def sleep_then_record(tag: str, seconds: float) -> str:
    _record("running", f"{tag}:{os.getpid()}")
    time.sleep(seconds)
    _record("ran", tag)
    return tag


@job(retries=5, backoff=0.2)
def add(a: int, b: int) -> int:
    return a + b


@job(retries=1, backoff=1)
def fails_once(tag: str) -> str:
    """Fails on its first attempt, succeeds on the retry."""
    if current().redis.incr(f"test:attempts:{tag}") == 1:
        raise RuntimeError("first attempt fails")
    _record("ran", tag)
    return tag


@job(retries=0, lock="exclusive:{tag}", lock_ttl=1, on_locked="skip")
def exclusive(tag: str, seconds: float) -> str:
    """Holds the lock exclusive:{tag} (ttl 1 s, renewed) for `seconds`."""
    _record("running", f"{tag}:{os.getpid()}")
    time.sleep(seconds)
    _record("ran", tag)
    return tag


@job(retries=0, lock="exclusive:{tag}", lock_ttl=1)
def exclusive_failing(tag: str) -> None:
    raise RuntimeError(f"failed holding exclusive:{tag}")


@job(retries=3, backoff=0, lock="exclusive:{tag}", on_locked="retry")
def exclusive_retrying(tag: str) -> str:
    _record("ran", tag)
    return tag


@job(retries=0, unique="unique:{key}")
def unique_job(key: str, attempt: int = 0) -> str:
    _record("ran", key)
    return key


@job(retries=0, unique="numbered:{number:05d}")
def numbered(number: int) -> int:
    return number


@job(retries=0, unique="unique-failing:{key}")
def unique_failing(key: str) -> None:
    _record("ran", key)
    raise RuntimeError(key)


@job(retries=0, result_ttl=2)
def fleeting(n: int) -> None:
    """Does nothing, and writes nothing: its finished record expires 2 s after it ends."""


@job(retries=0, timeout=1)
def naps(tag: str, seconds: float) -> str:
    """Sleep `seconds` in short naps (an exception raised from another thread lands within one), counting
    in test:concurrency how many of these run at once."""
    return _naps(tag, seconds)


@job(retries=2, backoff=0, timeout=300)
def long_naps(tag: str, seconds: float) -> str:
    """`naps` with a long timeout and retries."""
    return _naps(tag, seconds)


def _naps(tag: str, seconds: float) -> str:
    redis = current().redis
    redis.rpush("test:concurrency", redis.incr("test:naps-running"))
    _record("running", f"{tag}:{os.getpid()}")
    try:
        for _ in range(round(seconds / 0.05)):
            time.sleep(0.05)
    finally:
        redis.decr("test:naps-running")
    _record("ran", tag)
    return tag


@job(retries=2, backoff=[1, 5], description='it\'s "quoted", \\escaped\\ ]] -- 100% \r\n\x0012 über')
def described(tag: str) -> str:
    """A job whose description holds what a Lua or Redis string could get wrong."""
    _record("ran", tag)
    return tag


returning = threading.Event()  # set by `returns_when_let` once its work is done
let_return = threading.Event()


@job(retries=0)
def returns_when_let(tag: str) -> str:
    """Record `tag`, set `returning`, and return once `let_return` is set (for a worker in the test's own
    process: the events are this process's)."""
    _record("ran", tag)
    returning.set()
    let_return.wait(10)
    return tag
