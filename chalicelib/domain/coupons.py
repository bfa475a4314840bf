"""Coupons (product capability 8): templates staff define, and the coupons issued from
them to members, each with a code the member shows at a till.

A coupon carries a copy of its template's terms (kind, value, cap, minimum spend, stores,
categories, stackable) as they were when it was issued: a template edited later does not
change a coupon a member already holds. Its status is what was done to it (`active`,
`used`, `void`); `expired` is not stored but read from `valid_to` (`Coupon.state`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

CouponKind = Literal["amount_off", "percent_off"]
CouponStatus = Literal["active", "used", "void"]
CouponState = Literal["active", "used", "expired", "void"]


@dataclass(frozen=True)
class CouponTerms:
    """What a coupon is worth and where it applies (a template's, copied on issue)."""

    kind: CouponKind
    value: int  # amount_off: fen off; percent_off: percent off (1-100)
    max_off: int | None = None  # percent_off: at most this many fen off
    min_spend: int = 0  # fen of eligible spend the bill must reach
    stores: tuple[str, ...] = ()  # empty: every store
    categories: tuple[str, ...] = ()  # empty: every category
    stackable: bool = False  # may be combined with other coupons on one bill


@dataclass(frozen=True)
class CouponTemplate:
    template_id: str
    name: str
    terms: CouponTerms
    # Validity of an issued coupon: `valid_days` from the moment it is issued, or the
    # fixed window `valid_from`..`valid_to` (exactly one of the two).
    valid_days: int | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    status: Literal["active", "retired"] = "active"
    version: int = 1


@dataclass(frozen=True)
class Coupon:
    code: str  # as stored: normalised (upper case, no separators)
    member_id: str
    template_id: str
    terms: CouponTerms
    valid_from: datetime
    valid_to: datetime
    issued_at: datetime
    source: str  # staff | rule | reward | campaign
    source_id: str  # the issue id, rule occasion, redemption id or campaign run
    status: CouponStatus = "active"
    used_by: str | None = None  # the purchase (or redemption at a till) that consumed it
    used_at: datetime | None = None

    def state(self, now: datetime) -> CouponState:
        if self.status != "active":
            return self.status
        if now > self.valid_to:
            return "expired"
        return "active"

    def refusal(self, store_id: str, at: datetime) -> str | None:
        """Why this coupon cannot be used at `store_id` at `at` (an error code), or None.
        The one rule a till's purchase and `POST /v1/coupons/{code}/redeem` both apply;
        a coupon is never valid before it was issued."""
        if self.status == "used":
            return "COUPON_USED"
        if self.status == "void":
            return "COUPON_VOID"
        if at < max(self.valid_from, self.issued_at):
            return "COUPON_NOT_YET_VALID"
        if at > self.valid_to:
            return "COUPON_EXPIRED"
        if self.terms.stores and store_id not in self.terms.stores:
            return "COUPON_NOT_VALID_HERE"
        return None


@dataclass(frozen=True)
class CouponChange:
    """A change to an issued coupon inside a points commit, conditional on its state:
    `use` (active, this member's -> used by `ref`), `restore` (used by `ref` -> active:
    a full refund gives it back), `void` (active -> void: a cancelled coupon reward)."""

    code: str
    member_id: str
    action: Literal["use", "restore", "void"]
    ref: str  # the purchase (repository reference) or redemption it is used by/for
    at: datetime


# ---- codes ----------------------------------------------------------------------------
# Crockford's base32 (no I, L, O, U: nothing to misread or mistype): 16 characters carry
# 80 random bits, shown in four groups of four (`7KQ2-M9XD-4HRT-ZC1B`), and fit a QR
# or Code 128 bar code. Guessing one among a million live coupons takes about 2^60 tries.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16
_SEPARATORS = re.compile(r"[\s-]")
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(typed: str) -> str | None:
    """The stored form of a code as a person or scanner gave it (any case, dashes or
    spaces, I/L read as 1 and O as 0), or None when it cannot be a code."""
    code = _SEPARATORS.sub("", typed).upper().translate(_CONFUSABLE)
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def display_code(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def issue(
    template: CouponTemplate,
    member_id: str,
    now: datetime,
    source: str,
    source_id: str,
    code: str | None = None,
) -> Coupon:
    """A coupon of `template` for the member, valid from now for the template's days, or
    within its fixed window."""
    if template.valid_days is not None:
        valid_from, valid_to = now, now + timedelta(days=template.valid_days)
    else:
        assert template.valid_from is not None
        assert template.valid_to is not None
        valid_from, valid_to = template.valid_from, template.valid_to
    return Coupon(
        code=code or new_code(),
        member_id=member_id,
        template_id=template.template_id,
        terms=template.terms,
        valid_from=valid_from,
        valid_to=valid_to,
        issued_at=now,
        source=source,
        source_id=source_id,
    )
