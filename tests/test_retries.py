"""Retry policy: exponential backoff with ±25 % jitter, delays given as a list, zero backoff, RQ's Retry
built from the policy, and which exceptions may be retried.

The end-to-end case (a job with retries=2, backoff=0 that always fails ends failed after 3 attempts
with `retry` twice on its timeline) is covered by test_worker.test_failing_job_is_retried_then_failed.
"""

import random
from types import SimpleNamespace

import pytest
from rq.job import Job as RQJob
from rq.timeouts import JobTimeoutException

from jobs import catalog
from jobs.catalog import job
from jobs.errors import ConfigError, WorkerInterrupted
from jobs.retries import backoff_intervals, is_retryable, rq_retry
from jobs.timeouts import _timeouts

# --- backoff_intervals -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("base", [5, 2, 10.0, 60])
def test_exponential_backoff_stays_within_25_percent_of_base_times_two_to_the_n(seed, base):
    intervals = backoff_intervals(6, base, rng=random.Random(seed))
    assert len(intervals) == 6
    for n, delay in enumerate(intervals):
        nominal = base * 2**n
        assert isinstance(delay, int)
        assert round(nominal * 0.75) <= delay <= round(nominal * 1.25), (n, delay)


def test_backoff_is_exponential_in_expectation():
    rng = random.Random(1234)
    runs = [backoff_intervals(5, 8, rng=rng) for _ in range(400)]
    means = [sum(run[n] for run in runs) / len(runs) for n in range(5)]
    for n, mean in enumerate(means):
        assert mean == pytest.approx(8 * 2**n, rel=0.03)


def test_jitter_spreads_the_delays_of_jobs_failing_together():
    rng = random.Random(7)
    firsts = [backoff_intervals(1, 100, rng=rng)[0] for _ in range(300)]
    assert min(firsts) < 85 and max(firsts) > 115  # spread over most of 75..125
    assert min(firsts) >= 75 and max(firsts) <= 125
    assert len(set(firsts)) > 30


def test_same_seed_same_intervals_and_the_module_random_is_used_without_rng():
    assert backoff_intervals(4, 3, rng=random.Random(42)) == backoff_intervals(4, 3, rng=random.Random(42))
    random.seed(99)
    first = backoff_intervals(4, 3)
    random.seed(99)
    assert backoff_intervals(4, 3) == first


def test_the_seeded_values_are_the_base_times_two_to_the_n_times_a_uniform_factor():
    seed = 2024
    expected_rng = random.Random(seed)
    expected = [max(1, round(4 * 2**n * expected_rng.uniform(0.75, 1.25))) for n in range(5)]
    assert backoff_intervals(5, 4, rng=random.Random(seed)) == expected


def test_a_small_positive_backoff_waits_at_least_one_second():
    assert backoff_intervals(3, 0.2, rng=random.Random(0))[0] == 1
    assert all(delay >= 1 for delay in backoff_intervals(3, 0.2, rng=random.Random(0)))


def test_no_retries_no_intervals():
    assert backoff_intervals(0, 5, rng=random.Random(0)) == []


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ([1, 5, 30], [1, 5, 30]),
        ((10, 10), [10, 10, 10]),
        ([0, 2], [0, 2, 2]),
        ([1.4, 2.6], [1, 3, 3]),
        ([-3, 4], [0, 4, 4]),
        ([], [0, 0, 0]),
        ([1, 5, 30, 60], [1, 5, 30]),
    ],
)
def test_a_sequence_is_used_as_given_its_last_delay_repeated_or_the_rest_left_out(backoff, expected):
    assert backoff_intervals(3, backoff, rng=random.Random(0)) == expected


def test_a_sequence_is_not_jittered():
    rng = random.Random(0)
    state = rng.getstate()
    assert backoff_intervals(3, [7, 7, 7], rng=rng) == [7, 7, 7]
    assert rng.getstate() == state  # no random draw at all


@pytest.mark.parametrize("backoff", [0, 0.0, -1])
@pytest.mark.parametrize(("retries", "expected"), [(3, [0, 0, 0]), (1, [0]), (0, [0])])
def test_zero_backoff_retries_at_once(backoff, retries, expected):
    assert backoff_intervals(retries, backoff, rng=random.Random(0)) == expected


# --- rq_retry ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, -1])
def test_no_rq_retry_when_the_job_must_not_be_retried(retries):
    assert rq_retry(retries, 5) is None


@pytest.mark.parametrize(
    ("retries", "backoff", "waits"),
    [(1, [1, 60], [1]), (2, [2, 4, 8], [2, 4]), (3, [1, 5], [1, 5, 5]), (3, [1, 5, 30], [1, 5, 30])],
)
def test_each_retry_waits_the_delay_of_its_place_in_the_sequence(retries, backoff, waits):
    intervals = rq_retry(retries, backoff).intervals
    # as RQ picks the delay of a retry: counted from the end of its list by the retries left
    picked = [
        RQJob.get_retry_interval(SimpleNamespace(retry_intervals=intervals, retries_left=left))
        for left in range(retries, 0, -1)
    ]
    assert picked == waits


def test_rq_retry_carries_the_count_and_the_intervals():
    retry = rq_retry(2, 0)
    assert (retry.max, retry.intervals) == (2, [0, 0])
    retry = rq_retry(3, [1, 2, 3])
    assert (retry.max, retry.intervals) == (3, [1, 2, 3])
    retry = rq_retry(4, 10)
    assert retry.max == 4 and len(retry.intervals) == 4
    assert all(round(10 * 2**n * 0.75) <= d <= round(10 * 2**n * 1.25) for n, d in enumerate(retry.intervals))


# --- is_retryable ------------------------------------------------------------------------------------


class TransientError(Exception):
    pass


class SlowDown(TransientError):
    pass


def test_by_default_every_exception_is_retried():
    for exc in (ValueError("x"), KeyError("k"), RuntimeError(), TransientError()):
        assert is_retryable(exc, (Exception,), ())


def test_no_exception_recorded_is_retried():
    assert is_retryable(None, (TransientError,), (Exception,))


def test_retry_on_limits_retries_to_those_types_and_their_subclasses():
    retry_on = (TransientError, ConnectionError)
    assert is_retryable(TransientError(), retry_on, ())
    assert is_retryable(SlowDown(), retry_on, ())
    assert is_retryable(ConnectionRefusedError(), retry_on, ())
    assert not is_retryable(ValueError(), retry_on, ())


def test_no_retry_on_excludes_types_and_their_subclasses():
    assert not is_retryable(KeyError("k"), (Exception,), (KeyError,))
    assert not is_retryable(SlowDown(), (Exception,), (TransientError,))
    assert is_retryable(ValueError(), (Exception,), (KeyError,))


def test_no_retry_on_wins_over_retry_on():
    assert not is_retryable(SlowDown(), (TransientError,), (SlowDown,))
    assert is_retryable(TransientError(), (TransientError,), (SlowDown,))


def test_base_exceptions_outside_retry_on_are_not_retried():
    assert not is_retryable(WorkerInterrupted(), (Exception,), ())
    assert not is_retryable(KeyboardInterrupt(), (Exception,), ())


def test_an_empty_retry_on_retries_nothing():
    assert not is_retryable(ValueError(), (), ())


def test_a_job_stopped_for_going_on_after_its_timeout_counts_as_timed_out():
    _, went_on = _timeouts(JobTimeoutException, 1)
    assert is_retryable(went_on(), (Exception,), ())
    assert is_retryable(went_on(), (JobTimeoutException,), ())
    assert not is_retryable(went_on(), (Exception,), (JobTimeoutException,))
    assert not is_retryable(went_on(), (ValueError,), ())


# --- the options, checked where the job is defined ---------------------------------------------------


@pytest.fixture
def catalogued(monkeypatch) -> None:
    """The catalog as it was before the test, whatever the test defines."""
    monkeypatch.setattr(catalog, "_catalog", dict(catalog._catalog))


@pytest.mark.parametrize("backoff", ["5s", ["5s", 60], True])
def test_a_backoff_that_is_not_seconds_is_refused_where_the_job_is_defined(catalogued, backoff):
    with pytest.raises(ConfigError, match=r"backoff=.*give seconds as a number"):
        job(name="tests.retries.backoff", backoff=backoff)(lambda: None)


@pytest.mark.parametrize("option", ["retry_on", "no_retry_on"])
def test_exception_types_given_by_name_are_refused_where_the_job_is_defined(catalogued, option):
    with pytest.raises(ConfigError, match=f"{option}=.*'ValueError' is not an exception class"):
        job(name="tests.retries.by_name", **{option: ("ValueError",)})(lambda: None)
