"""The clients of long-lived processes after a cut link: every connection opened before it is as dead as
the one that found out, and is opened again on its next use instead of waiting for its own timeout (with a
worker's take stalled behind it, its heartbeats lapse and its jobs go to the orphan sweep)."""

from __future__ import annotations

from jobs import connection
from jobs.connection import _command, client_for
from tests.proxy import Proxy


def test_connections_idle_through_a_cut_link_are_opened_again(redis_url):
    proxy = Proxy.to(redis_url)
    client = client_for(proxy.proxied(redis_url), resilient=True)
    pool = client.connection_pool
    try:
        assert _command(client, "PING") == b"PONG"  # on this thread's held connection
        idle = [pool.get_connection(), pool.get_connection()]  # two of the pool's, linked
        for each in idle:
            pool.release(each)
        proxy.cut()
        proxy.restore()  # the links of before stay dead; new ones go through
        failures = connection._link_failures

        assert client.ping()  # finds its link dead by its timeout, and goes on on a new one
        assert connection._link_failures == failures + 1
        assert _command(client, "PING") == b"PONG"
        assert connection._link_failures == failures + 1, "the held connection waited for its timeout"
        idle = [pool.get_connection(), pool.get_connection()]  # the one just used, and the other
        for each in idle:
            each.send_command("PING")
            assert each.read_response() == b"PONG", "a connection of before the cut waited for its timeout"
            pool.release(each)
        assert connection._link_failures == failures + 1
    finally:
        client.close()
        proxy.close()
