"""The program's tier ladder (会员等级). Thresholds are qualifying spend over a rolling
12 months, in fen. These are the defaults a new program is seeded with; ops edit them."""

from __future__ import annotations

from dataclasses import dataclass

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
