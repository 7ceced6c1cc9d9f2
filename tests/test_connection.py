"""Clients of the job store: every kind of URL the README names connects, one that cannot a one-line
reason; and the clients of long-lived processes after a cut link: every connection opened before it is
as dead as the one that found out, and is opened again on its next use instead of waiting for its own
timeout (with a worker's take stalled behind it, its heartbeats lapse and its jobs go to the orphan
sweep)."""

from __future__ import annotations

import subprocess

import pytest

from jobs import connection
from jobs.config import Settings
from jobs.connection import Context, _command, client_for
from jobs.embedded import free_port, server_binary
from jobs.errors import RedisUnavailable
from tests.conftest import wait_for
from tests.proxy import Proxy


@pytest.fixture
def unix_socket(tmp_path):
    """The path of the unix socket of a server of the test's own."""
    path = tmp_path / "redis.sock"
    command = [
        server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(path),
        "--dir",
        str(tmp_path),
        "--save",
        "",
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(path.exists, timeout=10, what="the server's unix socket")
        yield path
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_unix_socket_url_connects(unix_socket):
    url = f"unix://{unix_socket}?db=1"
    assert client_for(url, resilient=False).ping() and client_for(url, resilient=True).ping()
    assert Context.connect(Settings(redis_url=url)).redis.ping()


def test_sentinels_that_do_not_answer_are_one_short_line():
    url = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/1"
    with pytest.raises(RedisUnavailable) as refused:
        Context.connect(Settings(redis_url=url))
    assert str(refused.value) == (
        f"cannot reach Redis at {url}: no sentinel answered with the group's master (sentinels down, or the"
        " group unknown to them)"
    )


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
