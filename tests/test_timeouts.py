"""Job timeouts (jobs.timeouts): one alarm serves many jobs in a process's main thread, and every job still
stops at its own deadline, not before; worker threads use the watchdog."""

import threading
import time

import pytest
from rq.timeouts import JobTimeoutException

from jobs.timeouts import JobTimeout


def test_a_block_past_its_timeout_is_stopped_even_in_a_blocking_call():
    expected = pytest.raises(JobTimeoutException, match=r"maximum timeout value \(1 seconds\)")
    with expected, JobTimeout(1, JobTimeoutException):
        time.sleep(30)


def test_a_short_timeout_after_a_long_one_still_stops_its_block():
    with JobTimeout(600, JobTimeoutException):
        pass
    with pytest.raises(JobTimeoutException), JobTimeout(1, JobTimeoutException):
        time.sleep(30)


def test_an_earlier_alarm_neither_cuts_a_longer_block_short_nor_rings_into_idle_code():
    with JobTimeout(1, JobTimeoutException):
        pass  # its alarm stays pending, to ring in about a second
    with JobTimeout(3, JobTimeoutException):
        time.sleep(1.5)  # the alarm rings in here and is armed again for the rest of the 3 s
    time.sleep(2)  # the rest rings after the block ended: nothing is raised


def test_a_block_without_a_timeout_is_never_stopped():
    with JobTimeout(-1, JobTimeoutException):
        time.sleep(0.1)


def test_in_a_worker_thread_the_watchdog_stops_the_block():
    raised: list[BaseException] = []

    def run() -> None:
        try:
            with JobTimeout(1, JobTimeoutException):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # Python code: the watchdog's exception lands in it
                    pass
        except JobTimeoutException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert len(raised) == 1 and "maximum timeout value (1 seconds)" in str(raised[0])
