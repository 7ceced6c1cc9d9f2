"""Job timeouts (jobs.timeouts): one alarm serves many jobs in a process's main thread, and every job still
stops at its own deadline, not before; worker threads use the watchdog. Both raise only into a job's
function (bodies.running(), as jobs run). A job that catches its timeout and goes on is stopped a second
later."""

import signal
import threading
import time
from contextlib import contextmanager

import pytest
from rq.timeouts import JobTimeoutException

from jobs import bodies, catalog, timeouts
from jobs.catalog import job
from jobs.errors import ConfigError, WorkerInterrupted
from jobs.timeouts import JobTimeout, JobTimeoutIgnored


@contextmanager
def own_alarm(seconds: int):
    """A job's own SIGALRM time limit (timeout-decorator's, stopit's SignalTimeout...): its handler and
    alarm, both put back as they were afterwards, which cancels the alarm that was pending."""
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def goes_on_after_errors(items: int, errors: list[BaseException]) -> None:
    """A batch loop that logs an item's error (in `errors`) and goes on with the next; 0.05 s per item."""
    for _ in range(items):
        try:
            time.sleep(0.05)
        except Exception as exc:  # noqa: BLE001 - "log it and go on with the next item"
            errors.append(exc)


def in_a_thread(block) -> list[BaseException]:
    """Run `block` in a worker thread; what it raised."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            block()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return raised


def test_a_block_past_its_timeout_is_stopped_even_in_a_blocking_call():
    expected = pytest.raises(JobTimeoutException, match=r"maximum timeout value \(1 seconds\)")
    with expected, JobTimeout(1, JobTimeoutException), bodies.running():
        time.sleep(30)


def test_a_short_timeout_after_a_long_one_still_stops_its_block():
    with JobTimeout(600, JobTimeoutException):
        pass
    with pytest.raises(JobTimeoutException), JobTimeout(1, JobTimeoutException), bodies.running():
        time.sleep(30)


def test_an_earlier_alarm_neither_cuts_a_longer_block_short_nor_rings_into_idle_code():
    with JobTimeout(1, JobTimeoutException):
        pass  # its alarm stays pending, to ring in about a second
    with JobTimeout(3, JobTimeoutException), bodies.running():
        time.sleep(1.5)  # the alarm rings in here and is armed again for the rest of the 3 s
    time.sleep(2)  # the rest rings after the block ended: nothing is raised


def test_a_timeout_is_raised_only_while_the_job_s_function_runs():
    with JobTimeout(1, JobTimeoutException):
        with bodies.running():
            pass  # the job's function returns at once
        time.sleep(1.5)  # the worker's own code after the function (RQ's, release()), past the deadline


def test_a_block_without_a_timeout_is_never_stopped():
    with JobTimeout(-1, JobTimeoutException):
        time.sleep(0.1)


def test_a_block_that_cancelled_the_pending_alarm_with_its_own_leaves_the_next_timeouts_working():
    with JobTimeout(1, JobTimeoutException), own_alarm(5):
        pass
    with pytest.raises(JobTimeoutException), JobTimeout(1, JobTimeoutException), bodies.running():
        time.sleep(5)


def test_a_block_that_catches_its_timeout_and_goes_on_is_stopped_a_second_later():
    errors: list[BaseException] = []
    stopped = pytest.raises(JobTimeoutIgnored, match=r"timeout value \(1 seconds\) and went on after it")
    with stopped, JobTimeout(1, JobTimeoutException), bodies.running():
        goes_on_after_errors(100, errors)  # 5 s
    assert len(errors) == 1 and isinstance(errors[0], JobTimeoutException)


def test_in_a_worker_thread_the_watchdog_stops_the_block():
    def block() -> None:
        with JobTimeout(1, JobTimeoutException), bodies.running():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # Python code: the watchdog's exception lands in it
                pass

    [raised] = in_a_thread(block)
    assert isinstance(raised, JobTimeoutException) and "maximum timeout value (1 seconds)" in str(raised)


def test_in_a_worker_thread_a_block_that_catches_its_timeout_and_goes_on_is_stopped_a_second_later():
    errors: list[BaseException] = []

    def block() -> None:
        with JobTimeout(1, JobTimeoutException), bodies.running():
            goes_on_after_errors(100, errors)  # 5 s

    [raised] = in_a_thread(block)
    assert isinstance(raised, JobTimeoutIgnored)
    assert len(errors) == 1 and isinstance(errors[0], JobTimeoutException)


def test_in_a_worker_thread_a_timeout_falling_in_a_long_blocking_call_lands_as_the_timeout():
    def block() -> None:
        with JobTimeout(1, JobTimeoutException), bodies.running():
            time.sleep(2.5)  # the call ends first, the watchdog having looked again meanwhile

    [raised] = in_a_thread(block)
    assert isinstance(raised, JobTimeoutException), raised  # not the repeat, for a timeout it never saw


def test_in_a_worker_thread_a_timeout_does_not_replace_the_deadline_s_interrupt_pending_there():
    started = threading.Event()

    def block() -> None:
        with JobTimeout(1, JobTimeoutException), bodies.running():
            started.set()
            time.sleep(2.5)

    raised: list[BaseException] = []
    thread = threading.Thread(target=lambda: raised.extend(in_a_thread(block)))
    thread.start()
    assert started.wait(5)
    bodies.interrupt_all(WorkerInterrupted)  # the deadline's, from the main thread: pending until 2.5 s
    thread.join(10)
    assert [type(exc).__mro__[1] for exc in raised] == [WorkerInterrupted]  # requeued, not failed


def test_a_thread_s_timeout_is_raised_only_while_its_job_s_function_runs():
    def block() -> None:
        with JobTimeout(1, JobTimeoutException):
            with bodies.running():
                pass  # the job's function returns at once
            time.sleep(1.5)  # the worker's own code after the function (RQ's, release()), past the deadline

    assert in_a_thread(block) == []


def job_ending_after_its_deadline_passed(watchdog: timeouts._Watchdog) -> None:
    """A job in a worker thread whose deadline passes (at 0.05 s) while another worker thread holds the
    watchdog's lock (starting or ending its own job) until 0.2 s: the watchdog waits for the lock, and so
    does the job's release() once its function has ended (at 0.1 s)."""
    started = threading.Event()

    def block() -> None:
        with JobTimeout(0.05, JobTimeoutException), bodies.running():
            started.set()
            time.sleep(0.1)

    thread = threading.Thread(target=in_a_thread, args=(block,), daemon=True)
    thread.start()
    assert started.wait(5)
    with watchdog._changed:
        time.sleep(0.2)
    thread.join(5)


def test_a_thread_s_job_ending_after_its_deadline_passed_leaves_the_watchdog_free(monkeypatch):
    for attempt in range(3):  # the watchdog, waiting first, takes the lock first (almost always)
        watchdog = timeouts._Watchdog()
        monkeypatch.setattr(timeouts, "_watchdog", watchdog)
        job_ending_after_its_deadline_passed(watchdog)
        # an exception raised into the job's thread as it took the lock in release() would keep it held:
        # no other thread could start or end a job, and no timeout would be raised any more
        assert watchdog._changed.acquire(timeout=2), f"attempt {attempt + 1}: the watchdog's lock is held"
        watchdog._changed.release()


@pytest.mark.parametrize("timeout", [0, "0s", 0.5, "500ms"])
def test_a_timeout_under_a_second_is_refused_where_the_job_is_defined(monkeypatch, timeout):
    monkeypatch.setattr(catalog, "_catalog", dict(catalog._catalog))
    with pytest.raises(ConfigError, match="timeout is 1 s at least"):
        job(name="tests.timeouts.zero", timeout=timeout)(lambda: None)
