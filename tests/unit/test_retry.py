"""The optimistic-retry helper (chalicelib/retry.py): attempts, jittered sleeps, and the
caller's error when the attempts run out."""

from __future__ import annotations

import random

import pytest

from chalicelib.errors import Unavailable
from chalicelib.retry import Again, backoff, retry


class Lost(Exception):
    """A race lost (a version changed meanwhile)."""


def flaky(failures: int, error: Exception, result: str = "done"):
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return result

    return attempt, calls


def contended() -> Unavailable:
    return Unavailable("too busy; retry", code="CONTENDED")


def test_given_a_conflict_twice_then_success_when_retried_then_three_calls_and_two_jittered_sleeps():
    attempt, calls = flaky(2, Lost())
    sleeps: list[float] = []
    draws = iter([0.5, 0.999])
    result = retry(
        attempt,
        attempts=5,
        retry_on=Lost,
        exhausted=contended,
        base=0.01,
        cap=1.0,
        sleep=sleeps.append,
        rand=lambda: next(draws),
    )
    assert result == "done"
    assert len(calls) == 3
    # full jitter: the draw times the exponential bound of each attempt (0.01, then 0.02)
    assert sleeps == pytest.approx([0.005, 0.01998])
    assert 0 <= sleeps[0] < 0.01
    assert 0 <= sleeps[1] < 0.02


def test_given_real_draws_when_backing_off_then_every_delay_is_within_the_capped_bound():
    for attempt in range(12):
        for _ in range(50):
            assert 0 <= backoff(attempt, 0.005, 0.2, random.random) < min(0.2, 0.005 * 2**attempt)


def test_given_a_conflict_every_time_when_attempts_run_out_then_the_callers_error_from_the_last():
    last = Lost("the fourth")
    attempt, calls = flaky(10**6, last)
    sleeps: list[float] = []
    with pytest.raises(Unavailable) as excinfo:
        retry(attempt, attempts=4, retry_on=Lost, exhausted=contended, sleep=sleeps.append)
    assert excinfo.value.code == "CONTENDED"
    assert excinfo.value.__cause__ is last
    assert len(calls) == 4
    assert len(sleeps) == 3  # none after the last attempt: nothing follows it


def test_given_no_exhausted_error_when_attempts_run_out_then_the_last_failure_itself():
    error = Unavailable("member changed while linking; retry")
    attempt, calls = flaky(10**6, error)
    with pytest.raises(Unavailable) as excinfo:
        retry(attempt, attempts=3, retry_on=Unavailable, exhausted=None, sleep=lambda s: None)
    assert excinfo.value is error
    assert len(calls) == 3


def test_given_a_non_retryable_error_when_raised_then_it_passes_through_at_once():
    attempt, calls = flaky(10**6, KeyError("boom"))
    sleeps: list[float] = []
    with pytest.raises(KeyError):
        retry(attempt, attempts=5, retry_on=Lost, exhausted=contended, sleep=sleeps.append)
    assert len(calls) == 1
    assert sleeps == []


def test_given_a_retryable_type_that_the_predicate_refuses_then_it_passes_through_at_once():
    attempt, calls = flaky(10**6, Lost("for good"))
    with pytest.raises(Lost):
        retry(
            attempt,
            attempts=5,
            retry_on=Lost,
            retry_if=lambda exc: str(exc) != "for good",
            exhausted=contended,
            sleep=lambda s: None,
        )
    assert len(calls) == 1


def test_given_a_zero_base_when_a_draw_collides_then_drawn_again_without_sleeping():
    attempt, calls = flaky(2, Again())
    sleeps: list[float] = []
    assert (
        retry(attempt, attempts=5, retry_on=Again, exhausted=contended, base=0, sleep=sleeps.append)
        == "done"
    )
    assert len(calls) == 3
    assert sleeps == []
