"""The chaos suite's job: it records its side effect in a ledger file outside Redis, so a test can count
runs even when Redis itself loses writes. One line per run: `tag pid job_id time`."""

from __future__ import annotations

import os
import signal
import time

from rq import get_current_job

from jobs import job

LEDGER = "JOBS_CHAOS_LEDGER"  # environment variable: the ledger file of the running test


RETRIES = 3


@job(retries=RETRIES, backoff=0)
def effect(tag: str) -> None:
    """Append one line for this run to the ledger (one write(2) in O_APPEND mode, so lines never mix)."""
    line = f"{tag} {os.getpid()} {get_current_job().id} {time.time():.6f}\n".encode()
    fd = os.open(os.environ[LEDGER], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@job(retries=RETRIES, backoff=0)
def effect_failing_first(tag: str) -> None:
    """`effect`, then, on the job's first attempt, raise: every job is retried once."""
    effect(tag)
    if get_current_job().retries_left == RETRIES:
        raise RuntimeError(f"first attempt of {tag}")


@job(retries=RETRIES, backoff=0)
def effect_then_die(tag: str) -> None:
    """`effect`, then kill the worker process running it at once, as a crash or the OOM killer would."""
    effect(tag)
    os.kill(os.getpid(), signal.SIGKILL)
