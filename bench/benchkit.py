"""What the benchmark scripts share: a private server in a temporary directory, and starting processes."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from jobs.embedded import EmbeddedServer, server_binary

ROOT = Path(__file__).resolve().parent.parent


class PrivateServer(EmbeddedServer):
    """The embedded server's set-up (port, files, options), run from `binary`, else the embedded one."""

    def __init__(self, data_dir: Path, binary: str | None = None):
        super().__init__(data_dir)
        self.binary = binary or server_binary()

    def command(self) -> list[str]:
        """The embedded server's command line, with `binary`."""
        return [self.binary, *super().command()[1:]]


@contextlib.contextmanager
def private_server(
    prefix: str = "jobs-bench-", binary: str | None = None
) -> Iterator[tuple[EmbeddedServer, Path]]:
    """A started private server (of `binary`, else the embedded one) and its temporary directory (for logs
    and data); both are gone on the way out. The server never is the machine's own Redis."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tempdir:
        server = PrivateServer(Path(tempdir) / "server", binary)
        try:
            server.start()
            yield server, Path(tempdir)
        finally:
            server.stop()


class CountedServer(PrivateServer):
    """A private server run under callgrind, which counts the instructions it executes: unlike CPU time,
    the same work on the same binary gives the same count whatever else the machine is doing and on
    any day (system calls, which callgrind does not see, excepted). Several times slower than the
    plain server."""

    def __init__(self, data_dir: Path, binary: str | None = None):
        super().__init__(data_dir, binary)
        self.profile = data_dir / "callgrind.out"

    def command(self) -> list[str]:
        """The server's command under callgrind, counting nothing until asked; cron at 1 Hz, so that the
        server's housekeeping adds little to what a phase counts however long it takes."""
        valgrind = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.profile}",
            f"--log-file={self.data_dir / 'valgrind.log'}",
        ]
        return [*valgrind, *super().command(), "--hz", "1"]

    def instructions(self, phase: Callable[[], object]) -> int:
        """The instructions the server executed while `phase()` ran."""
        self._control("--zero")
        self._control("--instr=on")
        try:
            phase()
        finally:
            self._control("--instr=off")
        dumps = set(self.profile.parent.glob(f"{self.profile.name}*"))
        self._control("--dump")
        (dump,) = set(self.profile.parent.glob(f"{self.profile.name}*")) - dumps
        totals = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
        dump.unlink()
        return int(totals.split()[1])

    def _control(self, option: str) -> None:
        subprocess.run(["callgrind_control", option, str(self.pid)], check=True, capture_output=True)


@contextlib.contextmanager
def counted_server(binary: str | None = None) -> Iterator[CountedServer]:
    """A started CountedServer (of `binary`, else the embedded one) in a temporary directory; both are gone
    on the way out. Exits with a message when valgrind is not installed."""
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        raise SystemExit("counting instructions needs valgrind (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="jobs-bench-callgrind-") as tempdir:
        server = CountedServer(Path(tempdir), binary)
        try:
            server.start(timeout=120.0)
            yield server
        finally:
            server.stop(timeout=60.0)


def server_options(parser: argparse.ArgumentParser) -> None:
    """Add `--server PATH` (the private server's binary) and `--no-aof` (run it keeping nothing on disk)."""
    parser.add_argument("--server", help="the private server's binary (default: the embedded one)")
    parser.add_argument(
        "--no-aof", action="store_true", help="the private server without its append-only file (no disk)"
    )


def describe_server(client, no_aof: bool) -> str:
    """The private server's name, version and append-only file, turned off first when `no_aof`, as on a
    Redis that keeps nothing on disk (the private server keeps one, as `jobctl up` runs it)."""
    if no_aof:
        client.config_set("appendonly", "no")
    return f"{server_version(client)} (private), append-only file {'off' if no_aof else 'on'}"


def server_version(client) -> str:
    """The server's name and version, from INFO."""
    info = client.info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


def compile_sources() -> None:
    """Compile our package and the benchmark's job modules to bytecode, as pip compiled the peers when it
    installed them. Where PYTHONDONTWRITEBYTECODE is set (this machine sets it), every worker process
    would otherwise compile ours from source as it starts, about 0.1 s that no peer spends."""
    for folder in (ROOT / "jobs", ROOT / "bench" / "peer_tasks"):
        compileall.compile_dir(folder, quiet=1)


def spawn(command: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen:
    """Start `command` from the project root, in a session of its own (so its whole group can be
    killed), with its output in `log`."""
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )


def job_count_options(
    doc: str,
    default: int,
    quick: int,
    minimum: int,
    argv: list[str] | None = None,
    more: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
) -> argparse.Namespace:
    """Parse `--jobs N` (default `default`, at least `minimum`) and `--quick` (`--jobs quick`), and the
    options that `more` adds, for a benchmark described by the docstring `doc`."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=default, help=f"jobs per measurement ({default})")
    parser.add_argument("--quick", action="store_true", help=f"small run: --jobs {quick}")
    more(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = quick
    if args.jobs < minimum:
        parser.error(f"--jobs must be at least {minimum}")
    return args
