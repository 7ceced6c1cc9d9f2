"""Several workers in one process, one per thread (`--threads`), for jobs that spend their time waiting.

While one thread waits on a socket or a sleep, another runs: a process with 8 threads runs 8 waiting jobs
at once, for the memory of one process. Jobs that compute gain nothing (Python runs one thread at a
time); run more processes for them. Every thread is a worker of its own (registered, heartbeating, shown
in `jobctl workers`); the main thread supervises them: SIGTERM or SIGINT asks each to stop after its job,
and the pool's interrupt at the shutdown deadline interrupts every running job, which is requeued. A job
in a blocking call, which the interrupt waits for, is put back by the main thread INTERRUPT_GRACE later,
and the process exits without waiting for it.

A job's timeout in a thread is raised by one watchdog thread per process: it stops Python code, but a
blocking call (a `time.sleep`, a socket read) ends first. Jobs that must be cut off inside a blocking
call belong in a process of their own (`--threads 1`, where the timeout is a signal).
"""

from __future__ import annotations

import signal
import threading
import time

from . import bodies
from .alone import Alone
from .connection import Context
from .errors import WorkerInterrupted
from .execution import INTERRUPT_SIGNAL, Worker

INTERRUPT_GRACE = 2.0  # seconds running jobs get to stop after the deadline's interrupt (< pool.KILL_GRACE)


def run(context: Context, queues: list[str], burst: bool) -> None:
    """Run `context.settings.threads` workers on `queues` in threads of this process until they have all
    stopped (with `burst`, when the queues are empty). Call it from the main thread."""
    settings = context.settings
    alone = Alone()
    workers = [Worker(queues, context, alone) for _ in range(settings.threads)]
    interrupted: list[float] = []  # when the shutdown deadline's interrupt came

    def stop(signum, frame) -> None:
        for worker in workers:
            worker.stop_after_job()

    def interrupt(signum, frame) -> None:
        stop(signum, frame)
        interrupted.append(time.monotonic())
        bodies.interrupt_all(WorkerInterrupted)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(INTERRUPT_SIGNAL, interrupt)

    def work(worker: Worker, **kwargs) -> None:
        try:
            worker.work(**kwargs)
        finally:  # however it ended: a job run alone must not wait for it
            alone.leave(worker)

    threads = [
        threading.Thread(
            target=work,
            args=(worker,),
            kwargs={"burst": burst, "with_scheduler": number == 0, "logging_level": settings.log_level},
            name=f"worker-{number}",
            daemon=True,  # the process may exit leaving one in a blocking call (_wait)
        )
        for number, worker in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    _wait(threads, workers, interrupted)


def _wait(threads: list[threading.Thread], workers: list[Worker], interrupted: list[float]) -> None:
    """Wait until `threads` (running `workers`) have ended, or INTERRUPT_GRACE after the deadline's
    interrupt: those still running then are in a blocking call, and their workers are abandoned (their
    jobs put back as interrupted)."""
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # wakes the main thread, where signal handlers run
            if interrupted and time.monotonic() - interrupted[0] >= INTERRUPT_GRACE:
                for stuck, worker in zip(threads, workers, strict=True):
                    if stuck.is_alive():
                        worker.abandon()
                return
