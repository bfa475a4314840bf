"""Rate limits per caller (docs/architecture.md, "Rate limits"): who is counted, against
which limit, and the answer when over it. No boto3: the shared counter is a port
(`Counter`), implemented on the Runtime table by chalicelib/dal/limits.py.

Every authenticated request counts once, in one scope:

- a POS (principal kind "store"): its store, across all its tills and keys;
- a member token: its member; an app user not yet signed up ("registrant"): its sign-in;
- staff: their sign-in (`sub`);
- a route may name a class of its own (`operation(..., rate_class=...)`) for what is
  costly or abusable: its requests count in that class, per the same caller, instead.

The window is fixed (default 60 s, aligned to the epoch): at most `limit` requests per
caller and scope in each window, counted by conditional updates of a shared counter (1
write unit each), which a container takes a lease of at a time (`Limiter`). A caller
refused in a window is remembered in the container until the window ends, so its
further requests there are refused without a write.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.errors import RateLimited

# Requests per window (default 60 s). 0 switches a scope's limit off (no counter write).
DEFAULT_LIMITS: Mapping[str, int] = {
    # A store's POS: every till and key of the store together (a busy hypermarket's 20
    # tills at a purchase and a look-up a minute each stay far below).
    "store": 600,
    # A member's own token: the app and mini-program together.
    "member": 60,
    # An app user not yet a member: only sign-up and claim are open to it.
    "registrant": 10,
    # Staff (ops, admin, store staff): per sign-in.
    "staff": 300,
    # Member codes (会员码): each is a write; an app refreshes one every ~60 s.
    "member_code": 10,
    # A member's data export (PIPL): it reads the whole history and writes an audit
    # entry that is never deleted, so a few a minute per caller (member or admin).
    "export": 5,
}
DEFAULT_WINDOW_SECONDS = 60
SCOPES = frozenset(DEFAULT_LIMITS)


# A container takes this share of a limit from the shared counter at once (a lease):
# 1/50, so a store's 600 a minute cost one write per 12 requests, and a member's 60 (a
# lease of 1) one write each.
LEASE_DIVISOR = 50


@dataclass(frozen=True)
class RateLimits:
    limits: Mapping[str, int]
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    enabled: bool = True
    lease_divisor: int = LEASE_DIVISOR

    def limit(self, scope: str) -> int:
        return self.limits.get(scope, 0)

    def lease_size(self, limit: int) -> int:
        return max(1, limit // self.lease_divisor)


def parse_limits(
    text: str | None,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    lease_divisor: int = LEASE_DIVISOR,
) -> RateLimits:
    """`RATE_LIMITS`: empty for the defaults, `off` for none, or `scope=n,...` overriding
    the defaults scope by scope (`member=120,member_code=5`). ValueError if malformed."""
    if window_seconds < 1:
        raise ValueError("the window must be at least one second")
    if lease_divisor < 1:
        raise ValueError("the lease divisor must be at least 1")
    limits = dict(DEFAULT_LIMITS)
    text = (text or "").strip()
    if text.lower() == "off":
        return RateLimits(limits, window_seconds, enabled=False, lease_divisor=lease_divisor)
    for part in filter(None, (p.strip() for p in text.split(","))):
        scope, sep, value = part.partition("=")
        scope = scope.strip()
        if not sep or scope not in SCOPES:
            raise ValueError(f"unknown rate limit scope in {part!r}: one of {sorted(SCOPES)}")
        try:
            number = int(value)
        except ValueError as exc:
            raise ValueError(f"rate limit {part!r} is not a whole number") from exc
        if number < 0:
            raise ValueError(f"rate limit {part!r} is negative")
        limits[scope] = number
    return RateLimits(limits, window_seconds, lease_divisor=lease_divisor)


@dataclass(frozen=True)
class Subject:
    """Who a request is counted for: a scope and the caller's id in it."""

    scope: str
    caller: str


class Caller(Protocol):
    """What the limiter reads of an authenticated principal (chalicelib.auth.Principal)."""

    @property
    def kind(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def member_id(self) -> str | None: ...
    @property
    def store_id(self) -> str | None: ...


def subject_for(principal: Caller, rate_class: str | None = None) -> Subject:
    if principal.kind == "store" and principal.store_id:
        caller = principal.store_id
        scope = "store"
    elif principal.kind == "member" and principal.member_id:
        caller, scope = principal.member_id, "member"
    elif principal.kind == "member":
        caller, scope = principal.subject, "registrant"
    else:
        caller, scope = principal.subject, "staff"
    return Subject(rate_class or scope, caller)


@dataclass(frozen=True)
class Window:
    start: int  # epoch seconds
    end: int


class Counter(Protocol):
    def take(self, subject: Subject, window: Window, limit: int, count: int = 1) -> bool:
        """Count `count` requests of `subject` in `window` if that keeps the window's
        count within `limit`: True if counted, False (nothing counted) if not."""
        ...


class Limiter:
    """Admits or refuses a request (raises RateLimited, api.md 429 with Retry-After).

    - **Leases**: a container takes `lease_size(limit)` requests from the shared counter
      at once (one write) and admits that many before it writes again; near the end of a
      window, when a whole lease no longer fits, it takes one at a time. What is admitted
      has always been counted, so all containers together never admit more than the
      limit; a lease a container does not use up is lost for that window (the caller may
      be refused up to `lease - 1` requests early per container that served it).
    - **Refusals** are remembered per container until their window ends, so a caller
      hammering a full window costs one write per container and window, not one per
      request.
    Both are kept for `max_remembered` callers at most."""

    def __init__(
        self,
        limits: RateLimits,
        counter: Counter,
        *,
        clock: Callable[[], float] = time.time,
        max_remembered: int = 10_000,
    ) -> None:
        self.limits = limits
        self._counter = counter
        self.clock = clock  # epoch seconds; tests move it
        self._max = max_remembered
        self._refused: dict[Subject, int] = {}  # subject -> end of the full window
        self._leases: dict[Subject, tuple[int, int]] = {}  # subject -> (window, left)
        # subject -> the window in which a whole lease no longer fit: one at a time there
        self._no_lease: dict[Subject, int] = {}
        self._lock = threading.Lock()  # `chalice local` serves requests on threads

    def window(self, now: float) -> Window:
        size = self.limits.window_seconds
        start = int(now) // size * size
        return Window(start, start + size)

    def admit(self, principal: Caller, rate_class: str | None = None) -> None:
        if not self.limits.enabled:
            return
        subject = subject_for(principal, rate_class)
        limit = self.limits.limit(subject.scope)
        if limit <= 0:
            return
        now = self.clock()
        window = self.window(now)
        with self._lock:
            full_until = self._refused.get(subject)
            if full_until is not None and full_until > now:
                raise self._refusal(subject, limit, full_until, now)
            start, left = self._leases.get(subject, (window.start, 0))
            if start == window.start and left > 0:
                self._leases[subject] = (start, left - 1)
                return
            lease = self.limits.lease_size(limit)
            if self._no_lease.get(subject) == window.start:
                lease = 1
        if lease > 1:
            if self._counter.take(subject, window, limit, lease):
                self._keep(subject, window, lease - 1, now)
                return
            with self._lock:
                if subject not in self._no_lease and len(self._no_lease) >= self._max:
                    self._forget(now)
                self._no_lease[subject] = window.start
        if self._counter.take(subject, window, limit):
            return
        with self._lock:
            if subject not in self._refused and len(self._refused) >= self._max:
                self._forget(now)
            self._refused[subject] = window.end
        raise self._refusal(subject, limit, window.end, now)

    def _keep(self, subject: Subject, window: Window, tokens: int, now: float) -> None:
        with self._lock:
            start, left = self._leases.get(subject, (window.start, 0))
            if start != window.start:
                left = 0
            elif subject not in self._leases and len(self._leases) >= self._max:
                self._forget(now)
            self._leases[subject] = (window.start, left + tokens)

    def _forget(self, now: float) -> None:
        """Make room (under the lock): drop what is over, then the oldest entries."""
        current = self.window(now).start
        for key in [k for k, until in self._refused.items() if until <= now]:
            del self._refused[key]
        for key in [k for k, (start, _) in self._leases.items() if start != current]:
            del self._leases[key]
        for key in [k for k, start in self._no_lease.items() if start != current]:
            del self._no_lease[key]
        entries: dict[Subject, Any]
        for entries in (self._refused, self._leases, self._no_lease):
            if len(entries) >= self._max:
                del entries[next(iter(entries))]

    def _refusal(self, subject: Subject, limit: int, until: int, now: float) -> RateLimited:
        retry_after = max(1, math.ceil(until - now))
        return RateLimited(
            "too many requests: retry after the time given",
            details={
                "scope": subject.scope,
                "limit": limit,
                "window_seconds": self.limits.window_seconds,
                "retry_after_seconds": retry_after,
            },
        )
