"""The platform's bookkeeping of work it has already accepted, written even when Redis is full.

A full Redis (used memory at `maxmemory`, policy `noeviction`) refuses every command that may take more
memory, and so every MULTI/EXEC holding one. For new jobs that is right: the enqueuer gets RedisFull,
and that is the backpressure. For the jobs already accepted it is not: a worker that cannot record
that a job started or ended cannot drain the queues, so nothing would ever free memory again, and a
refused heartbeat makes a running job look orphaned. So a worker's transactions (its registration, a
job's start, end, failure or retry, its heartbeats, RQ's own) go as MULTI/EXEC, and when a full Redis
refuses one (whole: nothing of it is written), again as one Lua script flagged `allow-oom` (Redis 7 or
later), which Redis runs whatever its memory: atomic like MULTI/EXEC, and like it going on past a
command that fails. The script costs the server two to three times the CPU of a MULTI/EXEC, so it is
kept for when it is needed.

The price: Redis may go past maxmemory by what draining costs, as a finished job kept for its result
TTL takes more than a queued one (a no-op job: about 1.3 KB against 0.45 KB) until it expires. A job's
own writes are not bookkeeping: they go through the ordinary client, and a full Redis refuses them.

The same script writes a transaction at most once where that matters (`sent_once`: a requeue, or a job's
failure that does not ride in the worker's next take, which queues its retry and counts). A worker's
client sends a command again when its connection fails before the reply, though Redis may have run it;
a MULTI/EXEC sent twice would queue the retry twice, and mark it queued while another worker runs it.
The script sets a mark of its own, which a second send finds.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid
from collections.abc import Iterator

import redis
from redis.client import EMPTY_RESPONSE, Pipeline

from .errors import RedisFull
from .keys import Keys

# Replies are taken in RESP3, so that they reach the client as EXEC would give them, whatever protocol
# it speaks; each is wrapped in a list of one, as a null reply (Lua nil) cannot be stored in a table.
# KEYS: none, or a key whose existence means "do nothing", and then possibly a key to set once done.
SENT_TTL = 300  # seconds a committed transaction's mark is kept: far longer than redis-py resends a call
_COMMIT = """#!lua flags=allow-oom
redis.setresp(3)
if #KEYS > 0 and redis.call('EXISTS', KEYS[1]) == 1 then return nil end
local replies, i = {}, 1
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  replies[#replies + 1] = {redis.pcall(unpack(ARGV, i + 1, i + count))}
  i = i + count + 1
end
if #KEYS == 2 then redis.call('SET', KEYS[2], 1, 'EX', SENT_TTL) end
return replies
""".replace("SENT_TTL", str(SENT_TTL))


@functools.cache
def _commit_script(connection: redis.Redis):
    return connection.register_script(_COMMIT)


class _Pipeline(Pipeline):
    """A pipeline whose transaction, if a full Redis refuses it, is committed by the allow-oom script. One
    that WATCHes keys (optimistic locking needs EXEC) or stacks scripts (a script cannot call another)
    stays a MULTI/EXEC, refusal included."""

    committer: redis.Redis  # the client that runs the script

    def execute(self, raise_on_error: bool = True) -> list | None:
        stack = self.command_stack
        committable = (self.transaction or self.explicit_transaction) and not (
            self.watching or self.scripts or any(EMPTY_RESPONSE in options for _, options in stack)
        )
        marks = getattr(_sent_once, "keys", None)
        if committable and stack and marks is not None:
            self.reset()
            mark = marks.sent(uuid.uuid4().hex)
            return self._commit(stack, [mark, mark], raise_on_error)  # None: it was committed before
        try:
            return super().execute(raise_on_error)
        except RedisFull:
            if not committable:
                raise
            return self._commit(stack, [], raise_on_error)

    def detach(self) -> list:
        """The stacked commands, `flattened`, taken out of this pipeline (to be sent by a script)."""
        stack = self.command_stack
        self.reset()
        return flattened(stack)

    def _commit(self, stack: list, keys: list[str], raise_on_error: bool) -> list | None:
        wrapped = _commit_script(self.committer)(keys=keys, args=flattened(stack))
        if wrapped is None:
            return None
        replies = [reply[0] if reply else None for reply in wrapped]
        if raise_on_error:
            self.raise_first_error(stack, replies)
        return [
            self._parsed(reply, args, options) for reply, (args, options) in zip(replies, stack, strict=True)
        ]

    def _parsed(self, reply, args: tuple, options: dict):
        """`reply` as redis-py returns it for the command `args` (its response callback applied)."""
        if isinstance(reply, Exception) or args[0] not in self.response_callbacks:
            return reply
        options = {key: value for key, value in options.items() if key != "keys"}
        return self.response_callbacks[args[0]](reply, **options)


_sent_once = threading.local()


@contextlib.contextmanager
def sent_once(keys: Keys) -> Iterator[None]:
    """Within the block, each bookkeeping transaction of this thread is written at most once, even when
    redis-py sends it again after a lost reply (a resilient client does, though Redis may have run it): it
    goes as the commit script, which also sets a mark of its own (`keys.sent`) that a second send finds.
    For transactions that queue a job (a retry, a requeue) or count: sent twice, the job would be queued
    twice, and marked queued while it runs. The script costs the server more than MULTI/EXEC."""
    _sent_once.keys = keys
    try:
        yield
    finally:
        del _sent_once.keys


# For scripts that run commands sent `flattened`: `run_flattened(a, last)` runs those in ARGV[a..last],
# going on past a failing one as EXEC does; `note(reply)` keeps the first error (of those and of any other
# reply given to it) in `failure`.
RUN_FLATTENED_LUA = """
local failure = false
local function note(reply)
  if type(reply) == 'table' and reply.err and not failure then failure = reply.err end
end
local function run_flattened(a, last)
  while a <= last do
    local count = tonumber(ARGV[a])
    note(redis.pcall(unpack(ARGV, a + 1, a + count)))
    a = a + count + 1
  end
end
"""


def flattened(stack: list) -> list:
    """A pipeline's stacked commands as one list of runs (number of parts, *parts), as scripts read them."""
    return [part for command, _ in stack for part in (len(command), *command)]


class _Client(redis.Redis):
    def pipeline(self, transaction: bool = True, shard_hint=None) -> Pipeline:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.committer = self
        return pipe


def client(connection: redis.Redis) -> redis.Redis:
    """A client on `connection`'s connection pool whose transactions are bookkeeping: committed even when
    Redis is full. Everything else it sends, Redis treats as it would from `connection`."""
    return _Client(connection_pool=connection.connection_pool)
