"""The program's tier ladder (会员等级). Thresholds are qualifying spend over a rolling
12 months, in fen. These are the defaults a new program is seeded with; ops edit them."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

BASE_TIER = "member"


@dataclass(frozen=True)
class TierBenefits:
    earn_multiplier: float
    member_discount_pct: int
    birthday_gift: bool
    free_shipping: bool
    priority_service: bool


@dataclass(frozen=True)
class Tier:
    code: str
    name: str
    name_en: str
    rank: int
    qualify_spend: int  # fen over a rolling 12 months to reach the tier
    retain_spend: int  # fen over the tier year to keep it at review (保级)
    benefits: TierBenefits


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("member", "普通", "Member", 0, 0, 0, TierBenefits(1.0, 0, False, False, False)),
    Tier("silver", "银卡", "Silver", 1, 200_000, 150_000, TierBenefits(1.2, 2, True, False, False)),
    Tier("gold", "金卡", "Gold", 2, 500_000, 400_000, TierBenefits(1.5, 5, True, True, False)),
    Tier(
        "platinum",
        "白金",
        "Platinum",
        3,
        1_000_000,
        800_000,
        TierBenefits(1.8, 8, True, True, True),
    ),
    Tier(
        "diamond",
        "钻石",
        "Diamond",
        4,
        3_000_000,
        2_400_000,
        TierBenefits(2.0, 10, True, True, True),
    ),
)


def tier_by_code(code: str, tiers: tuple[Tier, ...] = DEFAULT_TIERS) -> Tier:
    for tier in tiers:
        if tier.code == code:
            return tier
    return tiers[0]


# ---- qualification and review (pure) -----------------------------------------------------

TIER_YEAR_MONTHS = 12


def month_key(day: date) -> str:
    return day.strftime("%Y-%m")


def rolling_months(today: date, months: int = TIER_YEAR_MONTHS) -> list[str]:
    """The program-time months of the rolling window ending with today's month."""
    index = today.year * 12 + today.month - 1
    return [f"{(i // 12):04d}-{(i % 12) + 1:02d}" for i in range(index - months + 1, index + 1)]


def rolling_spend(monthly: dict[str, int], today: date) -> int:
    """Qualifying spend over the rolling window: sum of the window's months (net of
    refunds, which are booked against their purchase's month)."""
    return sum(int(monthly.get(m, 0)) for m in rolling_months(today))


def qualifying_tier(spend: int, tiers: tuple[Tier, ...] = DEFAULT_TIERS) -> Tier:
    eligible = [t for t in tiers if t.qualify_spend <= spend]
    return max(eligible, key=lambda t: t.rank) if eligible else min(tiers, key=lambda t: t.rank)


def add_years(day: date, years: int = 1) -> date:
    """Same day `years` later; 29 February becomes 28 February in a common year."""
    year = day.year + years
    return date(year, day.month, min(day.day, calendar.monthrange(year, day.month)[1]))


@dataclass(frozen=True)
class ReviewDecision:
    outcome: str  # "kept" | "grace" | "downgraded"
    tier: Tier
    next_review: date | None  # None: the base tier is not reviewed
    grace_until: date | None = None


def review(
    current: Tier,
    spend: int,
    today: date,
    *,
    tiers: tuple[Tier, ...] = DEFAULT_TIERS,
    grace_days: int = 0,
    in_grace: bool = False,
    policy: str = "one_level",
) -> ReviewDecision:
    """The anniversary review (保级): retention met keeps the tier for another year; else
    an optional grace period; else down one level, or to the tier the spend qualifies for
    (never up: upgrades happen as soon as spend crosses a threshold)."""
    if spend >= current.retain_spend:
        return ReviewDecision("kept", current, add_years(today))
    if grace_days > 0 and not in_grace:
        until = today + timedelta(days=grace_days)
        return ReviewDecision("grace", current, until, grace_until=until)
    ordered = sorted(tiers, key=lambda t: t.rank)
    if policy == "to_qualified":
        target = qualifying_tier(spend, tiers)
        if target.rank >= current.rank:  # cannot happen (retention < qualification), but safe
            target = ordered[max(0, ordered.index(current) - 1)]
    else:
        target = ordered[max(0, ordered.index(current) - 1)]
    next_review = add_years(today) if target.rank > ordered[0].rank else None
    return ReviewDecision("downgraded", target, next_review)


def next_tier(current: Tier, tiers: tuple[Tier, ...] = DEFAULT_TIERS) -> Tier | None:
    higher = [t for t in tiers if t.rank > current.rank]
    return min(higher, key=lambda t: t.rank) if higher else None
