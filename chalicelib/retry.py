"""Optimistic retry: run an attempt until it lands, sleeping a jittered backoff between
attempts, and raise the caller's own error when the attempts run out.

Every conditional write that can lose a race (a member's version, a transaction conflict,
a draft version number taken meanwhile, a random id drawn twice) retries through here, so
they all back off the same way. Full jitter (a uniform draw between 0 and the exponential
bound) spreads writers that lost the same race, so they do not collide again in step.

No boto3 here: the domain and the data access layer both use it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


class Again(Exception):
    """Raised by an attempt that did not land and may on the next try (a draw collided,
    a number was taken meanwhile), where no other exception says so."""


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return rand() * min(cap, base * (1 << attempt))


def retry(
    attempt: Callable[[], T],
    *,
    attempts: int,
    retry_on: type[E] | tuple[type[E], ...],
    exhausted: Callable[[], Exception] | None,
    retry_if: Callable[[E], bool] = lambda exc: True,
    base: float = 0.005,
    cap: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """`attempt()` until it returns. An exception of `retry_on` for which `retry_if` holds
    means "try again"; any other passes through at once. When `attempts` run out,
    `exhausted()` is raised from the last failure (None: the last failure itself). No
    sleep after the last attempt, nor when the delay is 0 (`base=0`: a fresh random draw
    needs no waiting)."""
    for n in range(attempts):
        try:
            return attempt()
        except retry_on as exc:
            if not retry_if(exc):
                raise
            if n == attempts - 1:
                if exhausted is None:
                    raise
                raise exhausted() from exc
            delay = backoff(n, base, cap, rand)
            if delay > 0:
                sleep(delay)
    raise ValueError("attempts must be at least 1")
