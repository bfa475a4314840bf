"""Points a purchase earns, and how (returned to the POS as a breakdown).

Per item: eligible spend (the item's share of what was paid in cash, since points paid
with points earn nothing, after the coupons' discount on that item: what a coupon took
off a line earns nothing either) x base rate x category multiplier x tier multiplier x campaign
multipliers, floored per item so that refunding an item reverses exactly what it earned.
A per-purchase cap scales items down, largest remainders first, to hit the cap exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from chalicelib.domain.program import ProgramConfig


@dataclass(frozen=True)
class Item:
    sku: str
    category: str
    quantity: int
    unit_price: int  # fen

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class ItemPoints:
    sku: str
    eligible: Fraction  # fen paid in cash for this item (share of the points payment removed)
    category_multiplier: float
    points: int


@dataclass(frozen=True)
class Earning:
    items: tuple[ItemPoints, ...]
    base_rate: float
    tier_multiplier: float
    campaign_multiplier: float
    campaign_ids: tuple[str, ...]
    uncapped: int
    cap: int | None

    @property
    def points(self) -> int:
        return sum(i.points for i in self.items)


def _to_fraction(value: float) -> Fraction:
    # Multipliers are configured as decimals (1.5, 1.2): exact arithmetic avoids 0.1+0.2.
    return Fraction(str(value))


def compute(
    items: list[Item],
    *,
    total: int,
    cash_paid: int,
    program: ProgramConfig,
    tier_multiplier: float,
    store_id: str,
    at: datetime,
    discounts: Sequence[int] | None = None,
) -> Earning:
    """`discounts`: fen the coupons took off each item (None: none). The cash paid is
    spread over the items in proportion to what each cost after its discount."""
    campaigns = [c for c in program.campaign_multipliers if c.applies(at, store_id)]
    campaign_multiplier = Fraction(1)
    for campaign in campaigns:
        campaign_multiplier *= _to_fraction(campaign.multiplier)
    base = _to_fraction(program.base_points_per_yuan) / 100  # per fen
    tier = _to_fraction(tier_multiplier)
    computed: list[ItemPoints] = []
    exact: list[Fraction] = []
    off = list(discounts) if discounts is not None else [0] * len(items)
    payable = total - sum(off)  # the bill after coupons, paid in cash and points
    for item, discount in zip(items, off, strict=True):
        net = item.amount - discount
        eligible = Fraction(net * cash_paid, payable) if payable > 0 else Fraction(0)
        category = _to_fraction(program.category_multiplier(item.category))
        value = eligible * base * category * tier * campaign_multiplier
        exact.append(value)
        computed.append(
            ItemPoints(item.sku, eligible, float(category), int(value))  # int() floors >= 0
        )
    uncapped = sum(i.points for i in computed)
    cap = program.max_points_per_purchase
    if cap is not None and uncapped > cap:
        computed = _apply_cap(computed, exact, cap)
    return Earning(
        items=tuple(computed),
        base_rate=program.base_points_per_yuan,
        tier_multiplier=tier_multiplier,
        campaign_multiplier=float(campaign_multiplier),
        campaign_ids=tuple(c.campaign_id for c in campaigns),
        uncapped=uncapped,
        cap=cap,
    )


def _apply_cap(items: list[ItemPoints], exact: list[Fraction], cap: int) -> list[ItemPoints]:
    total_exact = sum(exact)
    scaled = [value * cap / total_exact for value in exact]
    floors = [int(value) for value in scaled]
    short = cap - sum(floors)
    # Hand the units lost to flooring to the largest remainders (ties: earlier items).
    order = sorted(range(len(items)), key=lambda i: (-(scaled[i] - floors[i]), i))
    for index in order[:short]:
        floors[index] += 1
    return [
        ItemPoints(item.sku, item.eligible, item.category_multiplier, points)
        for item, points in zip(items, floors, strict=True)
    ]


def reversal_for_units(
    item_points: int, quantity: int, refunded_before: int, refunded_now: int
) -> int:
    """Points to take back when `refunded_now` more units of an item are returned: the
    cumulative share floors the same way, so refunding every unit, in any number of
    steps, reverses exactly what the item earned."""
    after = item_points * (refunded_before + refunded_now) // quantity
    before = item_points * refunded_before // quantity
    return after - before


def reversal_for_amount(points: int, total: int, refunded_before: int, refunded_now: int) -> int:
    """Amount-only refunds reverse in proportion to the share of the bill refunded."""
    after = points * (refunded_before + refunded_now) // total
    before = points * refunded_before // total
    return after - before
