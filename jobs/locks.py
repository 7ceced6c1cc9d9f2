"""Distributed locks: redis-py's Lock, renewed while held, with a fencing token per acquisition.

`lock(name, ttl=30, wait=0)` is a context manager giving a `Held`:

    with jobs.lock("invoices:2026-11") as held:
        write_invoices(fence=held.fence)   # the store refuses writes with an older fence

- Acquiring takes, in the same script, the next value of one platform-wide counter as the fencing
  token: a later holder of a name always has a larger fence than an earlier one (one counter for all
  names, so nothing per name has to live forever).
- A watchdog thread renews the lock every ttl/3 while the holder's process runs; a process that
  stalls (SIGSTOP, a long GC pause) stops renewing, and the lock expires after `ttl`.
- A lock lost while held (it expired, someone released it) sets `held.lost` and is logged; it never
  replaces the exception of the body.
- The lock's value names its holder (job, worker, host, pid, since), for `jobctl locks list`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from .bookkeeping import SENT_TTL
from .connection import Context, current, run_script
from .errors import LockUnavailable

log = logging.getLogger("jobs.locks")

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[3], fence, 'PX', ARGV[2])
  redis.call('SADD', KEYS[4], ARGV[3])
  return fence
end
-- sent again after a lost reply (a client's retry): it was taken, by this very call
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('GET', KEYS[3]) end
return false
"""

# KEYS: the lock, the release's mark; ARGV: the holder's token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], 1, 'EX', SENT_TTL)
  return 1
end
-- sent again after a lost reply (a client's retry): it was released, by this very call
return redis.call('EXISTS', KEYS[2])
""".replace("SENT_TTL", str(SENT_TTL))

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: the job (if any) and the process."""

    job: str | None
    worker: str | None
    host: str
    pid: int
    since: float

    @classmethod
    def here(cls) -> Holder:
        from rq.job import get_current_job

        job = get_current_job()
        worker = job.worker_name if job is not None else None
        return cls(job.id if job else None, worker, socket.gethostname(), os.getpid(), round(time.time(), 3))

    def describe(self) -> str:
        where = f"pid {self.pid} on {self.host}"
        return f"job {self.job} ({where})" if self.job else where


def holder_of(token: bytes | str | None) -> Holder | None:
    """The holder written in a lock's value, or None for a value not written by this module."""
    if token is None:
        return None
    text = token.decode() if isinstance(token, bytes) else token
    try:
        return Holder(**json.loads(text.split("|", 1)[1]))
    except (IndexError, ValueError, TypeError):
        return None


def _an_earlier_run(holder: Holder | None, here: Holder) -> bool:
    """Whether `holder` is an earlier run of the job running `here` (a job runs once at a time)."""
    return holder is not None and here.job is not None and holder.job == here.job


class _FencedLock(Lock):
    """redis-py's Lock whose acquisition also takes a fencing token, whose renewal keeps the fence key
    alive with the lock, and whose release, sent again after a lost reply, is not taken for a lock lost
    (it leaves a mark, `Keys.sent`)."""

    def __init__(self, context: Context, name: str, ttl: float):
        super().__init__(context.redis, context.keys.lock(name), timeout=ttl, sleep=0.05, thread_local=False)
        self.fence_keys = [context.keys.fence_counter, context.keys.fence(name)]
        self.index_key, self.lock_name = context.keys.locks, name
        self.fence: int | None = None
        self._acquire_script = context.redis.register_script(_ACQUIRE)
        self._renew_script = context.redis.register_script(_RENEW)
        self._release_script = context.redis.register_script(_RELEASE)
        self._keys = context.keys

    def do_acquire(self, token) -> bool:
        fence = run_script(
            self._acquire_script,
            [self.name, *self.fence_keys, self.index_key],
            [token, int(self.timeout * 1000), self.lock_name],
            self.redis,
        )
        if fence:
            self.fence = int(fence)
        return bool(fence)

    def do_release(self, expected_token: bytes) -> None:
        mark = self._keys.sent(expected_token.split(b"|", 1)[0].decode())
        if not run_script(self._release_script, [self.name, mark], [expected_token], self.redis):
            raise LockNotOwnedError("Cannot release a lock that's no longer owned", lock_name=self.name)

    def renew(self) -> bool:
        """Reset the TTL if still owned; False once the lock is lost."""
        token = self.local.token
        return token is not None and bool(
            run_script(
                self._renew_script,
                [self.name, self.fence_keys[1]],
                [token, int(self.timeout * 1000)],
                self.redis,
            )
        )


@dataclass
class Held:
    """A held lock: its name, its fencing token, and whether it was lost while held."""

    name: str
    fence: int
    lost: bool = False


class lock:  # noqa: N801 - used like a function: `with jobs.lock(name):`
    """A lock on `name`, held for `ttl` seconds at a time and renewed while held; acquiring waits up to
    `wait` seconds, then raises LockUnavailable naming the holder.

    Use as `with lock(name) as held:`, or call `acquire()` / `release()`.
    """

    def __init__(self, name: str, ttl: float = 30, wait: float = 0, context: Context | None = None):
        if ttl <= 0:
            raise ValueError("a lock needs a ttl above 0 seconds")
        self.context = context or current()
        self.name, self.ttl, self.wait = name, ttl, wait
        self._lock = _FencedLock(self.context, name, ttl)
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self.held: Held | None = None

    def acquire(self) -> Held:
        """Take the lock (waiting up to `wait` seconds) and start renewing it. Held by an earlier run of
        the job calling (its worker died: the job was recovered and runs again), it waits up to `ttl`
        more for that run's lock, which nothing renews any longer, to expire."""
        here = Holder.here()
        token = f"{uuid.uuid4().hex}|{json.dumps(asdict(here))}"
        if not self._take(token, self.wait):
            holder = holder_of(self.context.redis.get(self._lock.name))
            if not (_an_earlier_run(holder, here) and self._take(token, self.ttl + 1)):
                by = f" by {holder.describe()}" if holder else ""
                raise LockUnavailable(f"lock {self.name} is held{by}", name=self.name, holder=holder)
        self.held = Held(self.name, self._lock.fence)
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._renew_loop, name=f"lock:{self.name}", daemon=True)
        self._watchdog.start()
        return self.held

    def _take(self, token: str, wait: float) -> bool:
        return self._lock.acquire(blocking=wait > 0, blocking_timeout=wait or None, token=token)

    def release(self) -> None:
        """Stop renewing and release; a lock lost meanwhile is logged and marked, and one that Redis could
        not be told of is logged (it expires within its ttl), neither raised."""
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()
        try:
            self._lock.release()
        except redis.exceptions.LockError:
            self._mark_lost("it had expired or was released by someone else before the holder finished")
        except redis.RedisError as exc:
            log.warning("lock %s: not released (%s); it expires within %s s", self.name, exc, self.ttl)
        with contextlib.suppress(redis.RedisError):  # a stale index entry is pruned by maintenance
            _prune(self.context, [self.name])

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self._lock.renew():
                    self._mark_lost("it expired before it could be renewed")
                    return
            except redis.RedisError as exc:
                log.warning("lock %s: renewal failed (%s); will retry", self.name, exc)

    def _mark_lost(self, why: str) -> None:
        if self.held is not None and not self.held.lost:
            self.held.lost = True
            log.warning("lock %s (fence %s) was lost while held: %s", self.name, self.held.fence, why)

    def __enter__(self) -> Held:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@dataclass(frozen=True)
class LockView:
    """A held lock as `jobctl locks list` shows it."""

    name: str
    holder: Holder | None
    fence: int | None
    ttl_left: float | None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["age"] = round(time.time() - self.holder.since, 3) if self.holder else None
        return data


def held_locks(context: Context) -> list[LockView]:
    """Every lock held right now (read-only; O(locks held), whatever else is in Redis)."""
    names = sorted(raw.decode() for raw in context.redis.smembers(context.keys.locks))
    with context.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(context.keys.lock(name))
            pipe.pttl(context.keys.lock(name))
            pipe.get(context.keys.fence(name))
        values = pipe.execute()
    views = []
    for index, name in enumerate(names):
        token, pttl, fence = values[3 * index : 3 * index + 3]
        if token is not None:
            ttl_left = pttl / 1000 if pttl > 0 else None
            views.append(LockView(name, holder_of(token), int(fence) if fence else None, ttl_left))
    return views


_PRUNE = """
local pruned = 0
for _, name in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[2] .. name) == 0 then
    pruned = pruned + redis.call('SREM', KEYS[1], name)
  end
end
return pruned
"""


def _prune(context: Context, names: list[str]) -> int:
    """Drop from the index of held locks those of `names` that are not held (atomically: a lock taken
    meanwhile stays listed)."""
    if not names:
        return 0
    script = context.redis.register_script(_PRUNE)
    return script(keys=[context.keys.locks, context.keys.lock("")], args=names)


def prune_index(context: Context) -> int:
    """Maintenance: forget locks that expired without being released (their holder died)."""
    return _prune(context, [raw.decode() for raw in context.redis.smembers(context.keys.locks)])


def force_release(context: Context, name: str) -> bool:
    """Delete the lock `name` whoever holds it (an operator's last resort); True if it was held. The
    holder finds out at its next renewal (`held.lost`)."""
    released = bool(context.redis.delete(context.keys.lock(name)))
    _prune(context, [name])
    return released
