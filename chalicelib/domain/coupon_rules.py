"""Coupons at the till: which of the codes a purchase names apply, and what each takes
off which line (pure: the purchase reads the coupons, chalicelib/domain/points.py
consumes the applied ones in its own commit).

Rules, in the order the codes are given (the till's order decides, never the server's
guess at the best combination, so the same request always gets the same answer):

- A code that cannot be a code, or that no coupon has: `COUPON_NOT_FOUND`. The same
  coupon twice in one purchase: `DUPLICATE_CODE` (the second).
- Another member's coupon: `COUPON_NOT_OWNED`, and nothing else about it (not its
  state, not whose it is).
- `COUPON_USED`, `COUPON_VOID`: its status as read now.
- Validity is judged at the purchase's `occurred_at`: a coupon valid when the customer
  paid counts even if the till records the sale later (an offline till syncing), which
  the 30-day transaction age window bounds. A coupon cannot have been shown before it
  was issued: `occurred_at` before `max(valid_from, issued_at)` is `COUPON_NOT_YET_VALID`;
  after `valid_to`, `COUPON_EXPIRED`.
- `COUPON_NOT_VALID_HERE`: the coupon names stores and not this one.
- `COUPON_NOT_APPLICABLE`: no line in its categories, or nothing of them left to take
  off (earlier coupons took it all, or a percentage floors to 0 fen): a coupon is never
  consumed for nothing.
- `NOT_STACKABLE`: a coupon that is not stackable goes alone. Once a coupon is applied,
  a non-stackable one after it is refused; once a non-stackable one is applied, every
  coupon after it is refused. (Only coupons that pass every other check take part: an
  expired coupon listed first does not block the next one.)
- `BELOW_MIN_SPEND`: `min_spend` is compared with the eligible amount (its categories'
  lines, or the whole bill) left after the coupons applied before it, so two stacked
  "100 off 20" coupons do not both count the same 100.

Discount: `amount_off` takes min(value, eligible left); `percent_off` takes
floor(eligible left x value / 100), at most `max_off`. Each coupon's discount is spread
over its eligible lines in proportion to what is left of each, in fen, the fen lost to
rounding going to the largest remainders (ties: the earlier line), so every line's net
price is known (points are earned on it, refunds of its units give back its share) and
no line goes below 0; the discounts together never exceed the bill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from chalicelib.domain.coupons import Coupon, display_code, normalise_code
from chalicelib.domain.earning import Item


@dataclass(frozen=True)
class AppliedCoupon:
    code: str  # normalised
    template_id: str
    discount: int  # fen
    lines: tuple[int, ...]  # fen taken off each line of the purchase (0 where not eligible)

    @property
    def display(self) -> str:
        return display_code(self.code)


@dataclass(frozen=True)
class RejectedCoupon:
    code: str  # as the till gave it
    reason: str


@dataclass(frozen=True)
class CouponOutcome:
    applied: tuple[AppliedCoupon, ...]
    rejected: tuple[RejectedCoupon, ...]
    line_count: int

    @property
    def discount(self) -> int:
        return sum(c.discount for c in self.applied)

    @property
    def line_discounts(self) -> tuple[int, ...]:
        return tuple(sum(c.lines[i] for c in self.applied) for i in range(self.line_count))


def codes_to_read(given: Sequence[str]) -> list[str]:
    """The normalised codes worth reading (well formed, each once)."""
    seen: list[str] = []
    for typed in given:
        code = normalise_code(typed)
        if code is not None and code not in seen:
            seen.append(code)
    return seen


def apply_coupons(
    given: Sequence[str],
    coupons: Mapping[str, Coupon | None],
    items: Sequence[Item],
    *,
    member_id: str,
    store_id: str,
    at: datetime,
) -> CouponOutcome:
    """Decide each code of `given` (as the till sent them) against `coupons` (normalised
    code -> the coupon as read, None when there is none), for the purchase of `items` by
    `member_id` at `store_id`, paid at `at`."""
    left = [item.amount for item in items]
    applied: list[AppliedCoupon] = []
    rejected: list[RejectedCoupon] = []
    seen: set[str] = set()
    alone = False  # a non-stackable coupon was applied
    for typed in given:
        code = normalise_code(typed)
        if code is not None and code in seen:
            rejected.append(RejectedCoupon(typed, "DUPLICATE_CODE"))
            continue
        if code is not None:
            seen.add(code)
        coupon = coupons.get(code) if code is not None else None
        reason = _refusal(coupon, member_id, store_id, at)
        eligible: list[int] = []
        if reason is None:
            assert coupon is not None
            eligible = [i for i, item in enumerate(items) if _in_categories(coupon, item)]
            if not eligible:
                reason = "COUPON_NOT_APPLICABLE"
            elif alone or (applied and not coupon.terms.stackable):
                reason = "NOT_STACKABLE"
            elif sum(left[i] for i in eligible) < coupon.terms.min_spend:
                reason = "BELOW_MIN_SPEND"
        if reason is None:
            assert coupon is not None
            discount = _discount(coupon, sum(left[i] for i in eligible))
            if discount <= 0:
                reason = "COUPON_NOT_APPLICABLE"
            else:
                lines = allocate(
                    discount, [left[i] if i in eligible else 0 for i in range(len(items))]
                )
                left = [have - take for have, take in zip(left, lines, strict=True)]
                applied.append(AppliedCoupon(coupon.code, coupon.template_id, discount, lines))
                alone = alone or not coupon.terms.stackable
                continue
        rejected.append(RejectedCoupon(typed, reason))
    return CouponOutcome(tuple(applied), tuple(rejected), len(items))


def _refusal(coupon: Coupon | None, member_id: str, store_id: str, at: datetime) -> str | None:
    if coupon is None:
        return "COUPON_NOT_FOUND"
    if coupon.member_id != member_id:
        return "COUPON_NOT_OWNED"
    return coupon.refusal(store_id, at)


def _in_categories(coupon: Coupon, item: Item) -> bool:
    return not coupon.terms.categories or item.category in coupon.terms.categories


def _discount(coupon: Coupon, eligible: int) -> int:
    terms = coupon.terms
    if terms.kind == "amount_off":
        return max(0, min(terms.value, eligible))
    off = eligible * terms.value // 100
    if terms.max_off is not None:
        off = min(off, terms.max_off)
    return max(0, min(off, eligible))


def allocate(amount: int, weights: Sequence[int]) -> tuple[int, ...]:
    """`amount` (≤ Σ weights) split in proportion to `weights`, in whole fen: floors, then
    one more fen to each of the largest remainders (ties: the earlier). No share exceeds
    its weight, and the shares sum to `amount`."""
    total = sum(weights)
    if amount <= 0 or total <= 0:
        return (0,) * len(weights)
    assert amount <= total
    floors = [amount * w // total for w in weights]
    short = amount - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-((amount * weights[i]) % total), i))
    for index in order[:short]:
        floors[index] += 1
    return tuple(floors)
