"""The chaos suite (proof of reliability): every test under tests/chaos is marked `chaos`, which the
default run leaves out; `pytest -m chaos` runs the suite on its own.

Shared here: the ledger that jobs write their side effects to (outside Redis), the platform processes
started with the chaos jobs catalogued, and the figures each scenario reports (printed at the end of
the run, so CI logs hold them)."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs import catalog
from tests.chaos import effects
from tests.conftest import TEST_JOBS, Output, Processes

HERE = Path(__file__).parent
IMPORTS = f"{TEST_JOBS},{effects.__name__}"
FIGURES: list[str] = []


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.chaos)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("chaos figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def report():
    """`report(line)` keeps a figure of the scenario for the run's summary."""
    return FIGURES.append


@dataclass
class Run:
    """One line of the ledger: a run of `tag` in process `pid` as job `job_id`, at epoch time `at`."""

    tag: str
    pid: int
    job_id: str
    at: float


class Ledger:
    """The side effects of the chaos jobs, one line per run, in a file the test owns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runs(self) -> list[Run]:
        """Every run recorded so far, in order."""
        if not self.path.exists():
            return []
        # a line is whole once its newline is there: the last one may be being written as this reads it
        lines = self.path.read_text().split("\n")[:-1]
        return [Run(tag, int(pid), job_id, float(at)) for tag, pid, job_id, at in map(str.split, lines)]

    def counts(self) -> Counter[str]:
        """Runs per tag."""
        return Counter(run.tag for run in self.runs())


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> Ledger:
    """An empty ledger; platform processes started by the test inherit its path."""
    path = tmp_path / "ledger"
    monkeypatch.setenv(effects.LEDGER, str(path))
    catalog.load([TEST_JOBS, effects.__name__])
    return Ledger(path)


class Fleet:
    """Platform processes of a chaos test, started with the chaos jobs catalogued, logging warnings and
    errors (INFO would log lines per job), their output read in the background: a pipe nobody reads fills
    up and blocks the process writing to it."""

    def __init__(self, processes: Processes, url: str) -> None:
        self.processes, self.url = processes, url
        self.outputs: list[Output] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        """Start `jobctl ARGS`."""
        env = {
            "JOBS_IMPORTS": IMPORTS,
            effects.LEDGER: os.environ[effects.LEDGER],
            "JOBS_LOG_LEVEL": "WARNING",
            **env,
        }
        process = self.processes.start(*args, url=self.url, **env)
        self.outputs.append(Output(process))
        return process

    def trouble(self) -> str:
        """Warnings and errors logged by every process so far."""
        return "\n".join(filter(None, (output.trouble() for output in self.outputs)))
