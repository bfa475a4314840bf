"""Coupons (product capability 8): templates staff define, and the coupons issued from
them to members, each with a code the member shows at a till.

A coupon carries a copy of its template's terms (kind, value, cap, minimum spend, stores,
categories, stackable) as they were when it was issued: a template edited later does not
change a coupon a member already holds. Its status is what was done to it (`active`,
`used`, `void`); `expired` is not stored but read from `valid_to` (`Coupon.state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
