"""Which threads of this process are running a job's own function, and raising an exception in them.

A worker runs a job's function in its own thread (the main thread, or one of `--threads`). The shutdown
deadline interrupts running functions, and a timeout in a worker thread stops one; both raise an
exception inside the function. In the main thread a signal handler raises it; in another thread
CPython's asynchronous exceptions do, which take effect at the thread's next Python instruction: a
blocking call (a `time.sleep`, a socket read) ends first.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

_running: set[int] = set()  # idents of the threads running a job's function
# reentrant: the shutdown deadline's signal handler takes it in the main thread, which may hold it then
_lock = threading.RLock()


@contextmanager
def running():
    """Mark the calling thread as running a job's function for the duration of the block."""
    ident = threading.get_ident()
    with _lock:
        _running.add(ident)
    try:
        yield
    finally:
        with _lock:
            _running.discard(ident)


def is_running(ident: int) -> bool:
    """Whether the thread `ident` is running a job's function."""
    return ident in _running


def interrupt_all(exception: type[BaseException]) -> None:
    """Raise `exception` in every thread running a job's function: at once in the calling thread (a
    signal handler's), at their next instruction in the others."""
    me = threading.get_ident()
    with _lock:
        others = [ident for ident in _running if ident != me]
        for ident in others:
            raise_in(ident, exception)
    if is_running(me):
        raise exception()


def raise_in(ident: int, exception: type[BaseException]) -> None:
    """Raise `exception` (a class: CPython instantiates it without arguments) in the thread `ident` at its
    next Python instruction."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exception))
