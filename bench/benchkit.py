"""What the benchmark scripts share: a private server in a temporary directory, and starting processes."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jobs.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def private_server(prefix: str = "jobs-bench-") -> Iterator[tuple[EmbeddedServer, Path]]:
    """A started embedded server and its temporary directory (for logs and data); both are gone on the way
    out. The server never is the machine's own Redis."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tempdir:
        server = EmbeddedServer(Path(tempdir) / "server")
        try:
            server.start()
            yield server, Path(tempdir)
        finally:
            server.stop()


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
    doc: str, default: int, quick: int, minimum: int, argv: list[str] | None = None
) -> argparse.Namespace:
    """Parse `--jobs N` (default `default`, at least `minimum`) and `--quick` (`--jobs quick`) for a
    benchmark described by the docstring `doc`."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=default, help=f"jobs per measurement ({default})")
    parser.add_argument("--quick", action="store_true", help=f"small run: --jobs {quick}")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs = quick
    if args.jobs < minimum:
        parser.error(f"--jobs must be at least {minimum}")
    return args
