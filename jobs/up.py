"""`jobctl up`: the whole platform on one machine, for a laptop.

Uses JOBS_REDIS_URL when set, else the default Redis when it answers, else an embedded server in the data
directory (reused if an earlier run left one). Starts a worker pool, a scheduler and the dashboard as child processes;
Ctrl-C (or SIGTERM) stops them gracefully, then the embedded server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading

from . import billing
from .config import DEFAULT_REDIS_URL, Settings
from .connection import Context, client_for, ping
from .embedded import EmbeddedServer, running_url
from .errors import ConfigError, RedisUnavailable

log = logging.getLogger("jobs.up")
PROCESSES = {"worker": ["worker"], "scheduler": ["scheduler"], "dashboard": ["dashboard"]}


def _choose_redis(settings: Settings, embedded: bool) -> tuple[str, EmbeddedServer | None]:
    if settings.redis_url and embedded:
        raise ConfigError("give JOBS_REDIS_URL / --redis-url or --embedded, not both")
    if settings.redis_url:
        ping(client_for(settings.redis_url, resilient=False), settings.redis_url)
        return settings.redis_url, None
    candidates = (
        (running_url(settings.data_dir),) if embedded else (running_url(settings.data_dir), DEFAULT_REDIS_URL)
    )
    for url in filter(None, candidates):
        try:
            ping(client_for(url, resilient=False), url)
            if url != DEFAULT_REDIS_URL:
                break  # an embedded server of an earlier run: adopt it below so it is stopped with us
            return url, None
        except RedisUnavailable:
            continue
    server = EmbeddedServer(settings.data_dir)
    url = server.start()
    log.info("started embedded Redis-compatible server at %s (data in %s)", url, server.data_dir)
    return url, server


def run_platform(settings: Settings, embedded: bool = False) -> int:
    """Run Redis (if needed; `embedded` insists on our own server), workers, the scheduler and the
    dashboard until interrupted; return the exit code."""
    url, server = _choose_redis(settings, embedded)
    context = Context.connect(settings.with_(redis_url=url))
    context.check_eviction()
    log.info("job store: %s", url)
    billing.register_schedule(context)
    context.redis.close()
    env = {**os.environ, "JOBS_REDIS_URL": url}
    if settings.imports:
        env["JOBS_IMPORTS"] = ",".join(settings.imports)
    children = {
        name: subprocess.Popen([sys.executable, "-m", "jobs", *args], env=env, start_new_session=True)
        for name, args in PROCESSES.items()
    }
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            for name, child in children.items():
                if child.poll() is not None:
                    log.warning("%s exited with %s; restarting it", name, child.returncode)
                    children[name] = subprocess.Popen(
                        [sys.executable, "-m", "jobs", *PROCESSES[name]], env=env, start_new_session=True
                    )
    finally:
        log.info("stopping workers and scheduler")
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=settings.shutdown_timeout + 15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if server is not None:
            server.stop()
            log.info("embedded server stopped")
    return 0
