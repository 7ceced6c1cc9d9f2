"""Bookkeeping transactions (jobs.bookkeeping): when Redis is full, where it refuses an ordinary command or
transaction with RedisFull, it commits them all the same, and they answer exactly as MULTI/EXEC does."""

from __future__ import annotations

import pytest
import redis

from jobs import bookkeeping
from jobs.connection import Context
from jobs.errors import RedisFull
from tests.conftest import make_settings
from tests.proxy import Proxy


@pytest.fixture
def full(store) -> Context:
    """The store's private server, refusing every write that may take memory."""
    store.redis.config_set("maxmemory", 1)
    with pytest.raises(RedisFull, match="^Redis is full"):
        store.redis.set("refused", 1)
    return store


def every_kind_of_reply(client: redis.Redis) -> list:
    """A transaction whose replies take every shape redis-py knows (status, null, integer, map, pairs,
    double, boolean, error), on an empty DB."""
    client.flushdb()
    with client.pipeline() as pipe:
        pipe.set("string", "v")
        pipe.set("string", "w", nx=True)
        pipe.hset("hash", mapping={"a": 1, "b": 2})
        pipe.hgetall("hash")
        pipe.hget("hash", "missing")
        pipe.zadd("zset", {"m": 1.5})
        pipe.zrange("zset", 0, -1, withscores=True)
        pipe.zscore("zset", "m")
        pipe.expire("hash", 100)
        pipe.lpush("string", 1)  # wrong type: an error in its place, and the transaction goes on
        pipe.get("string")
        return pipe.execute(raise_on_error=False)


def test_on_a_full_redis_replies_are_those_of_multi_exec(store):
    ordinary = every_kind_of_reply(store.redis)
    store.redis.config_set("maxmemory", 1)
    kept = every_kind_of_reply(bookkeeping.client(store.redis))
    assert [repr(reply) for reply in kept] == [repr(reply) for reply in ordinary]
    assert ordinary[:4] == [True, None, 2, {b"a": b"1", b"b": b"2"}]
    assert isinstance(kept[9], redis.ResponseError) and kept[10] == b"v"


def test_a_full_redis_commits_bookkeeping_and_refuses_everything_else(full):
    with pytest.raises(RedisFull), full.redis.pipeline() as pipe:
        pipe.set("refused", 1)
        pipe.execute()
    with bookkeeping.client(full.redis).pipeline() as pipe:
        pipe.hset("kept", "field", "value")
        pipe.zadd("registry", {"job": 1})
        assert pipe.execute() == [1, 1]
    assert full.redis.hget("kept", "field") == b"value" and not full.redis.exists("refused")


def test_a_failing_command_is_raised_after_the_transaction_ran(full):
    with (
        pytest.raises(redis.ResponseError, match="WRONGTYPE"),
        bookkeeping.client(full.redis).pipeline() as pipe,
    ):
        pipe.set("string", "v")
        pipe.lpush("string", 1)
        pipe.set("after", 1)
        pipe.execute()
    assert full.redis.get("after") == b"1"


def test_a_pipeline_that_watches_stays_an_optimistic_transaction(full):
    with bookkeeping.client(full.redis).pipeline() as pipe:
        pipe.watch("watched")
        pipe.multi()
        pipe.set("written", 1)
        with pytest.raises(RedisFull):
            pipe.execute()
    assert not full.redis.exists("written")


def test_a_transaction_sent_once_is_written_once_when_the_client_sends_it_again(store, private_server):
    proxy = Proxy.to(private_server.url)
    try:
        resilient = Context.connect(make_settings(proxy.proxied(private_server.url)), resilient=True)
        client = bookkeeping.client(resilient.redis)
        with bookkeeping.sent_once(resilient.keys):
            with client.pipeline() as pipe:
                pipe.incr("counted")
                assert pipe.execute() == [1]  # as MULTI/EXEC answers
            proxy.lose_reply_to(b"counted")  # Redis runs it, the reply is lost, redis-py sends it again
            with client.pipeline() as pipe:
                pipe.incr("counted")
                pipe.rpush("queued", "job")
                assert pipe.execute() is None  # the second send: written before
        assert proxy.replies_lost == 1
        assert store.redis.get("counted") == b"2" and store.redis.lrange("queued", 0, -1) == [b"job"]
        marks = store.redis.keys(store.keys.sent("*"))
        assert len(marks) == 2 and 0 < store.redis.ttl(marks[0]) <= bookkeeping.SENT_TTL
        resilient.redis.close()
    finally:
        proxy.close()
