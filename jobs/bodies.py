"""Which threads of this process are running a job's own function, and raising an exception in them.

A worker runs a job's function in its own thread (the main thread, or one of `--threads`). The shutdown
deadline interrupts running functions, and a timeout in a worker thread stops one; both raise an
exception inside the function. In the main thread a signal handler raises it; in another thread
CPython's asynchronous exceptions do, which take effect at the thread's next Python instruction: a
blocking call (a `time.sleep`, a socket read) ends first.

An asynchronous exception is raised into a thread only while it is listed as running its job's function,
and one still pending as the thread leaves the list is cancelled: it never lands in the worker's own code
after the function (where it could leave a lock held, or requeue a job that has ended). It may still land
as the function returns, which the job tells apart (jobs.rqjob.Job._execute). A timeout never replaces
one still pending (the thread in a blocking call): the job gets the first one raised into it.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

_running: set[int] = set()  # idents of the threads running a job's function
_pending: dict[int, type[BaseException]] = {}  # ident -> the exception raised into it, not landed yet
# reentrant: the shutdown deadline's signal handler takes it in the main thread, which may hold it then
_lock = threading.RLock()


@contextmanager
def running():
    """Mark the calling thread as running a job's function for the duration of the block; once the block
    has ended, no exception raised into the thread by this module is pending, and none is raised."""
    ident = threading.get_ident()
    with _lock:
        _running.add(ident)
    try:
        yield
    finally:
        with _lock:  # the raisers hold it: none raises between the two steps
            _running.discard(ident)  # an exception raised before may land here, the thread unlisted
            _set_async_exc(ident, None)
            _pending.pop(ident, None)


def is_running(ident: int) -> bool:
    """Whether the thread `ident` is running a job's function."""
    return ident in _running


def interrupt_all(exception: type[BaseException]) -> None:
    """Raise `exception` in every thread running a job's function: at once in the calling thread (a
    signal handler's), at their next instruction in the others (replacing one pending there)."""
    me = threading.get_ident()
    with _lock:
        others = [ident for ident in _running if ident != me]
        for ident in others:
            _raise_in(ident, exception)
    if is_running(me):
        raise exception()


def interrupt(ident: int, exception: type[BaseException]) -> bool:
    """Raise `exception` (a class: CPython instantiates it without arguments) in the thread `ident` at its
    next Python instruction if it is running a job's function and no exception raised into it earlier is
    still pending; whether it did."""
    with _lock:
        if ident not in _running or ident in _pending:
            return False
        _raise_in(ident, exception)
        return True


def _raise_in(ident: int, exception: type[BaseException]) -> None:
    """Make `exception` pending in the thread `ident`, noted in _pending until it lands there."""
    landing = _noting_landing(exception)
    _pending[ident] = landing
    _set_async_exc(ident, landing)


def _noting_landing(exception: type[BaseException]) -> type[BaseException]:
    """A subclass of `exception`, under its name, that takes itself out of _pending as it lands (CPython
    makes the instance in the thread it is raised in)."""

    def __init__(self, *args):
        exception.__init__(self, *args)
        with _lock:
            if _pending.get(threading.get_ident()) is type(self):
                del _pending[threading.get_ident()]

    namespace = {
        "__init__": __init__,
        "__module__": exception.__module__,
        "__qualname__": exception.__qualname__,
    }
    return type(exception.__name__, (exception,), namespace)


def _set_async_exc(ident: int, exception: type[BaseException] | None) -> None:
    """Make `exception` the one pending in the thread `ident` (None: cancel the pending one)."""
    pending = None if exception is None else ctypes.py_object(exception)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), pending)
