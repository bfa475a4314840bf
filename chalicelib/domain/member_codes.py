"""Member presence (会员码): short-lived, single-use codes the app shows as a QR/bar code.

A POS that spends a member's points must send one of that member's codes: it proves the
member (their phone, signed in to the app) is at the till, which a member id, card or
phone number alone does not. A code is 18 random digits (about 60 bits), so a POS
guessing codes for the two minutes one is valid finds none; it is stored with its expiry
and used once: a purchase consumes it in its own transaction (chalicelib/domain/points.py).
Validity is decided from the stored expiry, never by whether TTL has removed the item yet.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from chalicelib.errors import Forbidden, Unavailable
from chalicelib.retry import Again, retry

CODE_DIGITS = 18
MAX_VALID_SECONDS = 120
# A collision with a live code is about one in 10^12 even with a million codes live;
# a few attempts make a failure practically impossible without looping forever.
ISSUE_ATTEMPTS = 5


@dataclass(frozen=True)
class MemberCode:
    code: str
    member_id: str
    expires_at: datetime  # whole seconds, UTC
    used_by: str | None = None  # the purchase that consumed it

    def usable_at(self, now: datetime) -> bool:
        return self.used_by is None and now < self.expires_at


@dataclass(frozen=True)
class CodeUse:
    """A purchase consuming a code: conditional on the code naming `member_id`, being
    unused and not expired at `at`."""

    code: str
    member_id: str
    at: datetime
    used_by: str


class MemberCodeStore(Protocol):
    def put_new(self, code: MemberCode) -> bool:
        """Store a new code; False (and nothing written) when the code already exists."""
        ...

    def get(self, code: str) -> MemberCode | None: ...


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def issue(
    member_id: str, store: MemberCodeStore, now: datetime, valid_seconds: int = MAX_VALID_SECONDS
) -> MemberCode:
    """One conditional put (one write) per code; a collision draws another code."""
    valid_seconds = max(1, min(valid_seconds, MAX_VALID_SECONDS))
    # Whole seconds, rounded down: the code is never valid longer than promised.
    expires_at = (now + timedelta(seconds=valid_seconds)).replace(microsecond=0)

    def attempt() -> MemberCode:
        code = MemberCode(code=new_code(), member_id=member_id, expires_at=expires_at)
        if not store.put_new(code):
            raise Again  # a live code has these digits: draw again
        return code

    return retry(
        attempt,
        attempts=ISSUE_ATTEMPTS,
        retry_on=Again,
        exhausted=lambda: Unavailable("could not issue a member code; retry", code="CONTENDED"),
        base=0,  # a fresh draw, not a race: nothing to wait for
    )


def invalid_code() -> Forbidden:
    # One answer for unknown, expired, used and another member's code: a POS learns
    # nothing about which codes exist.
    return Forbidden(
        "the member code is not valid: expired, used, or not this member's",
        code="MEMBER_CODE_INVALID",
    )


def code_required() -> Forbidden:
    return Forbidden(
        "spending points needs the member's code from the app (会员码)",
        code="MEMBER_CODE_REQUIRED",
    )


def usable(found: MemberCode | None, now: datetime, member_id: str | None = None) -> MemberCode:
    """The code if it can be used now (for `member_id`, when given), else MEMBER_CODE_INVALID."""
    if found is None or not found.usable_at(now):
        raise invalid_code()
    if member_id is not None and found.member_id != member_id:
        raise invalid_code()
    return found


def member_of(code: str, store: MemberCodeStore, now: datetime) -> str:
    """Look-up by code: who is presenting it (the code is not consumed)."""
    return usable(store.get(code), now).member_id
