"""The embedded Redis-compatible server and `jobctl up`: the server starts on a free port with append-only
persistence and `noeviction`, keeps its data across stop/start and crashes, adopts a left-over server of a
killed run when it answers and replaces a stale or hung one (never "port in use"), and leaves no process
behind; `jobctl up` runs the platform on it and stops everything on Ctrl-C with exit code 0, even one that
comes while it starts; it refuses a configuration it cannot run before starting anything, restarts a process
that exits later and later while it keeps exiting, and stops everything when one refuses its configuration."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from jobs import catalog, inspect
from jobs.connection import Context, activate
from jobs.embedded import STATE_FILE, EmbeddedServer, answers, free_port, read_state, running_url
from jobs.errors import ConfigError
from jobs.restarts import HEALTHY_AFTER
from jobs.up import MAX_RESTART_DELAY, PROCESSES, RESTART_DELAY, Child
from tests import sample_jobs
from tests.conftest import (
    ROOT,
    TEST_JOBS,
    Output,
    alive,
    children,
    descendants,
    family_of,
    make_settings,
    process_env,
    ran,
    wait_for,
)

# Starts a server the way `jobctl up` does, prints its URL and pid, then waits to be killed.
OWNER = """
import sys
from jobs.embedded import EmbeddedServer
server = EmbeddedServer(sys.argv[1], appendfsync="always")
print(server.start(), server.pid, flush=True)
sys.stdin.read()
"""


# --- helpers ---------------------------------------------------------------------------------------


def servers_in(data_dir: Path) -> list[int]:
    """Pids of live processes working in `data_dir` (a server chdirs into its data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(Path(data_dir).resolve()):
                    found.append(int(entry.name))
            except OSError:
                continue
    return [pid for pid in found if alive(pid)]


def client(server: EmbeddedServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=5)


class Reaper:
    """Processes a test started outside of EmbeddedServer; whatever still runs at the end is SIGKILLed."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.popens: list[subprocess.Popen] = []

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.popens.append(process)
        return process

    def cleanup(self) -> None:
        for popen in self.popens:
            self.pids |= descendants(popen.pid)
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def reaper() -> Reaper:
    reaper = Reaper()
    yield reaper
    reaper.cleanup()


def leave_server_behind(reaper: Reaper, data_dir: Path) -> tuple[str, int]:
    """Start a server from a separate owner process, then SIGKILL the owner (as when `jobctl up` is
    killed): the server lives on with its state file. Returns its URL and pid."""
    owner = reaper.popen(
        [sys.executable, "-c", OWNER, str(data_dir)],
        env=process_env("unused"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url, pid = owner.stdout.readline().split()
    reaper.pids.add(int(pid))
    owner.kill()
    owner.wait()
    assert alive(int(pid)) and running_url(data_dir) == url
    return url, int(pid)


def use_store(url: str, monkeypatch) -> Context:
    """Make a context on `url` the active one for this test (the previous one is restored afterwards)."""
    monkeypatch.setattr("jobs.connection._active", None)
    catalog.load([TEST_JOBS])
    return activate(Context.connect(make_settings(url)))


def up_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of `jobctl up` with no JOBS_REDIS_URL: the embedded path, data in `data_dir`; `extra`
    variables win."""
    env = process_env(
        "unused",
        JOBS_DATA_DIR=str(data_dir),
        JOBS_SHUTDOWN_TIMEOUT="5s",
        JOBS_DASHBOARD_PORT=str(free_port()),
    )
    del env["JOBS_REDIS_URL"]
    env.pop("JOBS_TEST_REDIS_URL", None)
    env.update(extra)
    return env


def in_sessions(leaders: set[int]) -> set[int]:
    """Live processes in the sessions of `leaders`: each of up's children leads one, and what it leaves
    behind stays in it even once orphaned."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, ValueError):
                continue
            if session in leaders and alive(int(entry.name)):
                found.add(int(entry.name))
    return found


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Check that `result` is a user error (exit 2, one `error:` line, no traceback); return the line."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- the server ------------------------------------------------------------------------------------


def test_starts_on_a_free_port_with_append_only_persistence_and_noeviction(tmp_path):
    first, second = EmbeddedServer(tmp_path / "a"), EmbeddedServer(tmp_path / "b")
    try:
        url = first.start()
        second.start()
        assert url == f"redis://127.0.0.1:{first.port}/1"
        assert first.port != second.port and 6379 not in (first.port, second.port)
        config = client(first).config_get("*")
        assert config["appendonly"] == "yes"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["appendfsync"] == "everysec"
        assert config["save"] == ""
        assert Path(config["dir"]) == (tmp_path / "a").resolve()
        assert read_state(tmp_path / "a") == {"pid": first.pid, "port": first.port}
        assert servers_in(tmp_path / "a") == [first.pid]
    finally:
        first.stop()
        second.stop()


def test_data_survives_stop_and_start(tmp_path):
    server = EmbeddedServer(tmp_path / "data")
    try:
        url = server.start()
        client(server).set("kept", "yes")
        server.stop()
        assert not answers(server.port)
        assert server.start() == url  # same port, same data dir
        assert client(server).get("kept") == b"yes"
    finally:
        server.stop()


def test_acknowledged_writes_survive_a_crash(private_server):
    client(private_server).rpush("acknowledged", *range(100))
    private_server.kill()
    assert not answers(private_server.port)
    private_server.start()
    assert client(private_server).llen("acknowledged") == 100


def test_a_left_over_server_that_answers_is_adopted(tmp_path, reaper):
    data_dir = tmp_path / "data"
    url, pid = leave_server_behind(reaper, data_dir)
    redis.Redis.from_url(url).set("from-the-earlier-run", 1)

    server = EmbeddedServer(data_dir)
    assert server.start() == url
    assert server.pid == pid and server.process is None  # adopted, not a second server
    assert servers_in(data_dir) == [pid]
    assert client(server).get("from-the-earlier-run") == b"1"

    server.stop()
    assert not alive(pid) and not answers(server.port)
    assert not (data_dir / STATE_FILE).exists()
    assert servers_in(data_dir) == []


@pytest.mark.parametrize("port_taken", [False, True], ids=["port-free", "port-now-used-by-another-program"])
def test_a_stale_state_file_of_a_dead_server_is_replaced(tmp_path, port_taken):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer exists
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        if port_taken:
            other_program.listen()  # something else listens there now, and it is not Redis
        stale_port = other_program.getsockname()[1]
        (data_dir / STATE_FILE).write_text(json.dumps({"pid": gone.pid, "port": stale_port}))

        server = EmbeddedServer(data_dir)
        try:
            url = server.start()
            assert answers(server.port) and url == server.url
            assert server.pid != gone.pid and server.process is not None
            assert read_state(data_dir) == {"pid": server.pid, "port": server.port}
            if port_taken:
                assert server.port != stale_port
        finally:
            server.stop()


def test_a_port_another_server_answers_on_is_an_error_not_that_servers_url(tmp_path, private_server):
    server = EmbeddedServer(tmp_path / "data", port=private_server.port)  # as a restart reuses its port
    with pytest.raises(ConfigError, match=f"did not start on port {private_server.port}"):
        server.start()
    assert not alive(server.pid) and read_state(tmp_path / "data") is None
    assert answers(private_server.port)  # the other server is left alone


def test_a_hung_left_over_server_is_replaced_promptly_and_its_data_kept(tmp_path, reaper):
    data_dir = tmp_path / "data"
    url, pid = leave_server_behind(reaper, data_dir)
    redis.Redis.from_url(url).set("from-the-earlier-run", 1)
    os.kill(pid, signal.SIGSTOP)  # still alive, still holds its port, but no longer answers

    server = EmbeddedServer(data_dir)
    try:
        began = time.monotonic()
        server.start()
        took = time.monotonic() - began
        assert server.pid != pid
        wait_for(lambda: not alive(pid), timeout=5, what="the hung server to be killed")
        assert servers_in(data_dir) == [server.pid]  # never two servers on one append-only file
        assert client(server).get("from-the-earlier-run") == b"1"
    finally:
        server.stop()
    # One short PING decides that it does not answer: `jobctl up` must not sit silent after a crash.
    assert took < 5, f"start() took {took:.1f}s to replace a hung server (its PING is retried with backoff)"


def test_a_stale_pid_now_used_by_another_process_is_left_alone(tmp_path, reaper):
    """After a reboot the pid in server.json may belong to any process of the user; it must not be
    killed just because nothing answers on the recorded port."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    innocent = reaper.popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    (data_dir / STATE_FILE).write_text(json.dumps({"pid": innocent.pid, "port": free_port()}))
    server = EmbeddedServer(data_dir)
    try:
        server.start()
        assert answers(server.port)
    finally:
        server.stop()
    assert innocent.poll() is None, f"start() killed an unrelated process (exit {innocent.returncode})"


def test_stop_leaves_no_process_behind(tmp_path):
    data_dir = tmp_path / "data"
    server = EmbeddedServer(data_dir)
    server.start()
    pid, port = server.pid, server.port
    server.stop()
    with pytest.raises(ProcessLookupError):  # exited and reaped: not even a zombie is left
        os.kill(pid, 0)
    assert not answers(port)
    assert not (data_dir / STATE_FILE).exists()
    assert servers_in(data_dir) == []
    assert running_url(data_dir) is None
    server.stop()  # a second stop is harmless


# --- jobctl up -------------------------------------------------------------------------------------


def start_up(reaper: Reaper, data_dir: Path, *options: str, **env: str) -> subprocess.Popen:
    """`jobctl up OPTIONS` with its data in `data_dir` (and `env`), its output readable by the test."""
    command = [sys.executable, "-m", "jobs", "up", *options]
    return reaper.popen(
        command,
        env=up_env(data_dir, **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def platform_up(reaper: Reaper, data_dir: Path, **env: str) -> tuple[subprocess.Popen, Output, set[int]]:
    """`jobctl up --embedded` (with `env`) once its workers and scheduler run: the process, its output and
    the leaders of its children's sessions (whose processes the reaper kills should the test fail)."""
    up = start_up(reaper, data_dir, "--embedded", **env)
    output = Output(up)
    wait_for(lambda: platform_is_up(output), timeout=30, what="the workers and the scheduler to be running")
    leaders = children(up.pid)
    reaper.pids |= in_sessions(leaders)
    return up, output, leaders


def child_running(leaders: set[int], command: bytes) -> int:
    """The pid of the child of `jobctl up` that runs `jobctl COMMAND`."""
    return next(pid for pid in leaders if Path(f"/proc/{pid}/cmdline").read_bytes().endswith(command + b"\0"))


def run_a_job(url: str, monkeypatch) -> None:
    ctx = use_store(url, monkeypatch)
    job = sample_jobs.record.enqueue("via-up")
    wait_for(lambda: inspect.job_detail(ctx, job.id).state == "finished", timeout=30, what="the job to run")
    assert ran(ctx) == ["via-up"]
    ctx.redis.close()


def platform_is_up(output: Output) -> bool:
    """Both workers listen and the scheduler process runs (a Ctrl-C is then a shutdown, not a start-up race)."""
    listening = sum("Listening on" in line for line in output.lines)
    return listening >= 2 and any(
        re.search(r" jobs\.scheduler INFO .*running", line) for line in output.lines
    )


def assert_clean_exit(log: str) -> None:
    assert "Traceback" not in log, log
    assert "restarting" not in log, log  # no worker or scheduler died along the way
    assert re.search(r" jobs\.scheduler INFO scheduler\S* stopped$", log, re.MULTILINE), log


def test_up_starts_an_embedded_server_and_ctrl_c_stops_everything(tmp_path, reaper, monkeypatch):
    data_dir = tmp_path / "jobs-data"
    up = start_up(reaper, data_dir, "--embedded")  # never the Redis this machine may run on 6379
    output = Output(up)
    url = wait_for(lambda: running_url(data_dir), timeout=30, what="up's embedded server")
    server_pid = read_state(data_dir)["pid"]
    wait_for(lambda: any(f"job store: {url}" in line for line in output.lines), what="up to use it")

    wait_for(lambda: platform_is_up(output), what="the workers and the scheduler to be running")
    run_a_job(url, monkeypatch)
    # server, worker supervisor, its 2 workers, scheduler: all of them below `up`
    family = wait_for(lambda: family_of(up.pid, at_least=5), what="up's processes")
    reaper.pids |= family
    assert server_pid in family

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0
    assert [pid for pid in family if alive(pid)] == [], "processes left behind by up"
    log = output.finish()
    assert_clean_exit(log)
    assert "embedded server stopped" in log, log
    assert not (data_dir / STATE_FILE).exists()
    assert "ready to exit" in (data_dir / "server.log").read_text()  # a clean server shutdown


def test_up_adopts_the_server_of_a_killed_run_and_stops_it_on_ctrl_c(tmp_path, reaper, monkeypatch):
    data_dir = tmp_path / "jobs-data"
    left_over = EmbeddedServer(data_dir)  # as if an earlier `jobctl up` had been killed
    url = left_over.start()
    try:
        # `up` tries a live embedded server of its data dir before the default URL: the real command can
        # be run here without touching a Redis on 127.0.0.1:6379.
        assert running_url(data_dir) == url
        up = start_up(reaper, data_dir)
        output = Output(up)
        wait_for(lambda: any("job store: " in line for line in output.lines), what="up to choose Redis")
        assert any(f"job store: {url}" in line for line in output.lines), output.lines
        wait_for(lambda: platform_is_up(output), what="the workers and the scheduler to be running")
        run_a_job(url, monkeypatch)
        family = wait_for(lambda: family_of(up.pid, at_least=4), what="up's processes")
        reaper.pids |= family

        up.send_signal(signal.SIGINT)
        # Reap the server as its parent would (here the test), so that `up` sees it exit.
        wait_for(lambda: left_over.process.poll() is not None, timeout=60, what="up to stop the server")
        assert left_over.process.returncode == 0
        assert up.wait(timeout=60) == 0
        assert [pid for pid in family if alive(pid)] == [], "processes left behind by up"
        assert_clean_exit(output.finish())
        assert not (data_dir / STATE_FILE).exists()
    finally:
        left_over.stop()


def run_up(data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """`jobctl up --embedded` to completion, with its data in `data_dir` and `env` added."""
    return subprocess.run(
        [sys.executable, "-m", "jobs", "up", "--embedded"],
        env=up_env(data_dir, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_with_a_data_dir_that_is_a_file_is_a_one_line_error(tmp_path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    line = one_line_error(run_up(not_a_dir))
    assert "JOBS_DATA_DIR" in line and str(not_a_dir) in line, line


@pytest.mark.parametrize("problem", ["public-without-users", "port-in-use"])
def test_up_refuses_a_dashboard_address_it_cannot_serve_before_starting_anything(tmp_path, problem):
    """Else the dashboard refuses it at each start, and `up` restarted it twice a second forever."""
    data_dir = tmp_path / "data"
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        if problem == "port-in-use":
            env = {"JOBS_DASHBOARD_PORT": str(other_program.getsockname()[1])}
        else:
            env = {"JOBS_DASHBOARD_HOST": "0.0.0.0"}
        line = one_line_error(run_up(data_dir, **env))
    expected = "Address already in use" if problem == "port-in-use" else "only with JOBS_DASHBOARD_USERS"
    assert expected in line, line
    assert not data_dir.exists()  # no server started


def test_up_stops_everything_when_a_process_refuses_its_configuration(tmp_path, reaper):
    """A child that exits with code 2 refused its configuration (here: strict mode, and Redis may now evict
    keys): restarting it cannot help, so `up` stops everything and exits 2, the refusal printed once."""
    data_dir = tmp_path / "jobs-data"
    up, output, leaders = platform_up(reaper, data_dir, JOBS_STRICT="1")
    wait_for(lambda: any("Listening at: " in line for line in output.lines), what="the dashboard to listen")
    redis.Redis.from_url(running_url(data_dir)).config_set("maxmemory-policy", "allkeys-lru")
    os.kill(child_running(leaders, b"scheduler"), signal.SIGKILL)  # restarted, it refuses the evicting Redis

    assert up.wait(timeout=60) == 2
    log = output.finish()
    assert re.search(r"scheduler exited with -9; restarting it in \d", log), log
    assert log.count("refusing to start: JOBS_STRICT is set") == 1, log
    assert "scheduler refused its configuration" in log, log
    assert in_sessions(leaders) == set(), "processes left behind by up"


def test_up_restarts_a_process_that_keeps_exiting_later_and_later():
    """The delay doubles with each exit that comes soon after the start, up to a ceiling, and starts over
    after a healthy run."""
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(1)"], dict(os.environ))
    try:
        delays = []
        for _ in range(4):
            child.process.wait(timeout=30)
            now = time.monotonic()
            assert child.tend(now) == 1
            assert child.tend(now) is None  # each exit is reported once
            delays.append(child.restart_at - now)
            exited = child.process
            child.tend(child.restart_at - 0.01)
            assert child.process is exited  # not restarted before its time
            child.tend(child.restart_at)
            assert child.process is not exited
        assert delays == pytest.approx(
            [2 * RESTART_DELAY, 4 * RESTART_DELAY, 8 * RESTART_DELAY, 16 * RESTART_DELAY]
        )

        child.process.wait(timeout=30)
        child.crash_loop.quick_exits = 1000
        now = time.monotonic()
        child.tend(now)
        assert child.restart_at - now == pytest.approx(MAX_RESTART_DELAY)
        child.tend(child.restart_at)

        child.process.wait(timeout=30)
        after_a_healthy_run = child.started_at + HEALTHY_AFTER + 1
        assert child.tend(after_a_healthy_run) == 1
        assert child.restart_at - after_a_healthy_run == pytest.approx(RESTART_DELAY)
    finally:
        child.process.wait(timeout=30)


def test_up_kills_a_process_that_does_not_stop_with_everything_in_its_session(tmp_path, reaper, monkeypatch):
    """A worker pool whose supervisor hangs is killed at the deadline with its workers, not the supervisor
    alone: its workers, told to stop when it dies, would finish their jobs first."""
    data_dir = tmp_path / "jobs-data"
    up, output, leaders = platform_up(reaper, data_dir, JOBS_SHUTDOWN_TIMEOUT="1s")
    ctx = use_store(running_url(data_dir), monkeypatch)
    sample_jobs.sleep_then_record.enqueue("long", 120)
    wait_for(lambda: ctx.redis.lrange("test:running", 0, -1), timeout=30, what="the job to start")
    ctx.redis.close()
    os.kill(child_running(leaders, b"worker"), signal.SIGSTOP)  # the pool's supervisor hangs

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 0
    output.finish()
    assert in_sessions(leaders) == set(), "processes left behind by up"


# Runs `jobctl up --embedded` in this process, with a Ctrl-C (SIGINT to itself) at one moment of its
# start-up: right after the embedded server answers ("server"), or once the children are started
# ("children"). Prints the pid of each process it starts (each leads a session).
CTRL_C_DURING_START = """
import os, signal, sys
import jobs.embedded, jobs.up
from jobs.cli import main

def started(pid, moment):
    print("started", pid, flush=True)
    if moment == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C now

start = jobs.embedded.EmbeddedServer.start
def start_and_report(self, *args, **kwargs):
    url = start(self, *args, **kwargs)
    started(self.pid, "server")
    return url
jobs.embedded.EmbeddedServer.start = start_and_report

init = jobs.up.Child.__init__
def init_and_report(self, *args, **kwargs):
    init(self, *args, **kwargs)
    started(self.process.pid, "children" if self.name == list(jobs.up.PROCESSES)[-1] else None)
jobs.up.Child.__init__ = init_and_report
main(["up", "--embedded"])
"""


@pytest.mark.parametrize("moment", ["server", "children"])
def test_ctrl_c_while_up_starts_leaves_no_process_behind(tmp_path, reaper, moment):
    """The children and the server run in sessions of their own: the terminal's Ctrl-C reaches `up` alone,
    which must stop them whenever it comes."""
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"  # a file, not a pipe: what `up` leaves behind would hold a pipe open
    with log.open("w") as out:
        driver = reaper.popen(
            [sys.executable, "-c", CTRL_C_DURING_START, moment],
            env=up_env(data_dir),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    driver.wait(timeout=60)
    output = log.read_text()
    started = {int(line.split()[1]) for line in output.splitlines() if line.startswith("started ")}
    reaper.pids |= in_sessions(started)
    assert (driver.returncode, len(started)) == (0, len(PROCESSES) + 1), output
    assert in_sessions(started) == set(), f"left running after up exited:\n{output[-1500:]}"
