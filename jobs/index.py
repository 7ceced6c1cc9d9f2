"""An index of ended jobs (finished and failed) by job name and end time, so that a filtered job list,
and a bulk action on everything a filter matches, read O(page) entries instead of every job of a state.

One sorted set per state and queue, `{p}index:{state}:{queue}`, every score 0 so that members sort by
their bytes (ZRANGEBYLEX). An indexed job has three members, written in the pipeline that moves the job
into its state:

    t|{ended}|{job id}              every job by end time            (a time range)
    n|{name}|{ended}|{job id}       by job name, then end time       (a name, with or without a time range)
    x|{expiry}|n|{name}|...         its n member behind its expiry   (how the sweep finds expired jobs)

`ended` is the job's `ended_at` exactly as RQ writes it in the job hash (fixed-width ISO 8601 in UTC, so
byte order is time order) and `expiry` a 12-digit epoch second. An operator's requeue or delete removes
the t and n members in its own transaction (computed from the job hash); expired jobs lose all three in
the sweep, which maintenance runs with retention. A leftover x member of a job requeued before it
expired is harmless: the members it names are gone already.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from redis.client import Pipeline

from .keys import Keys
from .rqtimes import format_time

STATES = ("finished", "failed")
NEVER = "9" * 12  # the expiry of a job kept forever (result_ttl=-1)
SWEEP_BATCH = 500

_SWEEP = """
local due = redis.call('ZRANGEBYLEX', KEYS[1], '[x|', '(x|' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local named = string.sub(member, 16)
  local name_end = string.find(named, '|', 3, true)
  redis.call('ZREM', KEYS[1], member, named, 't|' .. string.sub(named, name_end + 1))
end
return #due
"""


# `add` for scripts that index a job as they move it into its state: add_index_members(args, name, ended,
# expiry, job id), with `indexed_name(name)` and `expiry(ttl)`, appends the ZADD arguments (score, member,
# ...) to `args`. The scores are strings: Lua would format a number with sprintf, for every member.
MEMBERS_LUA = """
local function add_index_members(args, name, ended, expiry, job_id)
  local n, named = #args, 'n|' .. name .. '|' .. ended .. '|' .. job_id
  args[n + 1], args[n + 2], args[n + 3], args[n + 4] = '0', 't|' .. ended .. '|' .. job_id, '0', named
  args[n + 5], args[n + 6] = '0', 'x|' .. expiry .. '|' .. named
end
"""


def indexed_name(name: str | None) -> str:
    """A job name as indexed: `|` separates fields, and no catalogued name contains one."""
    return (name or "?").replace("|", "/")


def expiry(ttl: int) -> str:
    """The expiry member field of a job kept `ttl` seconds from now (negative: forever)."""
    return NEVER if ttl < 0 else f"{int(time.time()) + ttl:012d}"


def _members(name: str | None, ended: datetime, job_id: str) -> tuple[str, str]:
    moment = format_time(ended)
    return f"t|{moment}|{job_id}", f"n|{indexed_name(name)}|{moment}|{job_id}"


def add(
    pipe: Pipeline,
    keys: Keys,
    state: str,
    queue: str,
    name: str | None,
    ended: datetime,
    ttl: int,
    job_id: str,
) -> None:
    """Index a job that ended at `ended` and entered `state`, kept `ttl` seconds (negative: forever)."""
    timed, named = _members(name, ended, job_id)
    pipe.zadd(keys.index(state, queue), {timed: 0, named: 0, f"x|{expiry(ttl)}|{named}": 0})


def remove(
    pipe: Pipeline, keys: Keys, state: str, queue: str, name: str | None, ended: datetime, job_id: str
):
    """Take a job out of `state`'s index (its expiry member is left to the sweep)."""
    pipe.zrem(keys.index(state, queue), *_members(name, ended, job_id))


# the index an ended job is in, by its state: a job stopped (RQ's stop-job command) was indexed as failed
_INDEXED_AS = {"finished": "finished", "failed": "failed", "stopped": "failed"}


def remove_job(pipe: Pipeline, keys: Keys, job) -> None:
    """Take an ended `job` (as read, before it changes) out of the index of its state, in `pipe`."""
    status = job.get_status(refresh=False)
    state = _INDEXED_AS.get(getattr(status, "value", status))
    if state is not None and job.ended_at is not None:
        remove(pipe, keys, state, job.origin, job.job_name, job.ended_at, job.id)


def sweep(redis, keys: Keys, queues: list[str], now: float | None = None) -> int:
    """Drop the members of jobs whose expiry has passed; returns how many jobs were dropped."""
    script = redis.register_script(_SWEEP)
    bound = f"{int(now or time.time()):012d}"
    dropped = 0
    for queue in queues:
        for state in STATES:
            while (batch := script(keys=[keys.index(state, queue)], args=[bound, SWEEP_BATCH])) > 0:
                dropped += batch
                if batch < SWEEP_BATCH:
                    break
    return dropped


@dataclass(frozen=True)
class Range:
    """The indexed jobs of one state and queue with a given name (or any) that ended in [since, until)."""

    key: str
    low: str
    high: str
    named: bool

    def count(self, pipe: Pipeline) -> None:
        """Queue the count of the range in `pipe`."""
        pipe.zlexcount(self.key, self.low, self.high)

    def ids(self, redis, start: int, stop: int) -> list[str]:
        """Ids number `start`..`stop` (exclusive) of the range, newest first: O(log n + stop)."""
        members = redis.zrevrangebylex(self.key, self.high, self.low, start=start, num=stop - start)
        fields = 3 if self.named else 2
        return [member.decode().split("|", fields)[fields] for member in members]


def range_of(
    keys: Keys, state: str, queue: str, name: str | None, since: datetime | None, until: datetime | None
) -> Range:
    """The index range of `state` in `queue` holding jobs of `name` (None: any) ended in [since, until)."""
    prefix = f"n|{indexed_name(name)}|" if name is not None else "t|"
    low = f"[{prefix}{format_time(since)}" if since else f"[{prefix}"
    high = f"({prefix}{format_time(until)}" if until else f"({prefix}\xff"
    return Range(keys.index(state, queue), low, high, name is not None)
