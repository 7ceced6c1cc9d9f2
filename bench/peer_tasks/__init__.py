"""The two benchmark jobs of `bench/peers.py`, once per framework, and what they share.

Every framework runs the same two job bodies: `noop` (count it done) and `sleep1ms` (`time.sleep(0.001)`,
then count it done). Counting is one INCR of `COUNTER_KEY` on the benchmark's server, sent the same way
by every framework (arq excepted, see `arq_tasks`), so every job does the same work and `bench/peers.py`
sees completion the same way for every framework.

One module per framework, imported only by that framework's processes:

- `rq_tasks`: catalogued jobs for our worker and RQ's (imports `jobs`: the project's venv);
- `celery_tasks`, `dramatiq_tasks`, `huey_tasks`, `arq_tasks`: the peers (bench/.venv-peers);
- `enqueue`: `python -m peer_tasks.enqueue FRAMEWORK JOB COUNT` fills a peer's queue (peers' venv).

This module imports neither `jobs` nor any framework. The server's URL comes from `BENCH_REDIS_URL`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlsplit

COUNTER_KEY = "bench:peers:done"
URL_VARIABLE = "BENCH_REDIS_URL"
JOB_NAMES = ("noop", "sleep1ms")
SLEEP_SECONDS = 0.001

_INCR = f"*2\r\n$4\r\nINCR\r\n${len(COUNTER_KEY)}\r\n{COUNTER_KEY}\r\n".encode()
_local = threading.local()  # each thread's connection: some frameworks run jobs in threads


def redis_url() -> str:
    """The benchmark server's URL (`BENCH_REDIS_URL`)."""
    return os.environ[URL_VARIABLE]


def count_done() -> None:
    """Count one finished job: one INCR of `COUNTER_KEY`, one round trip on a connection made once per
    thread (and process). It is sent as plain RESP, not through redis-py, so that the job costs every
    framework the same: the two venvs hold different redis-py versions (the peers' is held below 6 by
    arq), and a recent redis-py spends about twice the Python calls per command of an older one."""
    if getattr(_local, "pid", None) != os.getpid():
        _local.connection, _local.pid = _connect(redis_url()), os.getpid()
    _local.connection.sendall(_INCR)
    _expect(_local.connection, b":")


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    connection = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as redis-py sets it
    db = parts.path.strip("/") or "0"
    connection.sendall(f"*2\r\n$6\r\nSELECT\r\n${len(db)}\r\n{db}\r\n".encode())
    _expect(connection, b"+OK")
    return connection


def _expect(connection: socket.socket, kind: bytes) -> None:
    """Read one single-line reply and check that it is of `kind` (RESP's first bytes)."""
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = connection.recv(64)
        if not chunk:
            raise ConnectionError("the benchmark server closed the connection")
        reply += chunk
    if not reply.startswith(kind):
        raise RuntimeError(f"the benchmark server answered {reply!r}")


def sleep1ms() -> None:
    """The body of the sleep job: sleep 1 ms (blocking, as a real job's I/O would), then count it done."""
    time.sleep(SLEEP_SECONDS)
    count_done()
