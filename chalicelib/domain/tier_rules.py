"""Versioned tier rules: validation of a new ladder, and what recalculating does to one
member (shared by the dry run, which only counts, and the apply, which moves)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date

from chalicelib.domain.tiers import Tier, qualifying_tier, rolling_spend, tier_by_code
from chalicelib.errors import BusinessRuleViolation

SCAN_SEGMENTS = 8  # parallel scan segments: one task each, continued while pages remain


def validate(tiers: tuple[Tier, ...]) -> None:
    problems: list[str] = []
    ordered = sorted(tiers, key=lambda t: t.rank)
    if len({t.code for t in tiers}) != len(tiers):
        problems.append("tier codes must be unique")
    if [t.rank for t in ordered] != list(range(len(ordered))):
        problems.append("ranks must be 0..n-1")
    if ordered and ordered[0].qualify_spend != 0:
        problems.append("the base tier (rank 0) qualifies at 0")
    for lower, higher in itertools.pairwise(ordered):
        if higher.qualify_spend <= lower.qualify_spend:
            problems.append(f"{higher.code} must need more spend than {lower.code}")
    for tier in ordered:
        if tier.retain_spend > tier.qualify_spend:
            problems.append(f"{tier.code}: keeping a tier cannot need more than reaching it")
    if problems:
        raise BusinessRuleViolation(
            "the tier ladder is not consistent",
            code="INVALID_TIER_RULES",
            details={"problems": problems},
        )


@dataclass(frozen=True)
class Recalculation:
    current: Tier
    target: Tier

    @property
    def direction(self) -> str:
        if self.target.rank > self.current.rank:
            return "up"
        if self.target.rank < self.current.rank:
            return "down"
        return "same"


def recalculate(
    tier_code: str, monthly_spend: dict[str, int], today: date, tiers: tuple[Tier, ...]
) -> Recalculation:
    """Under the new ladder, a member holds the tier their rolling spend qualifies for."""
    spend = rolling_spend(monthly_spend, today)
    return Recalculation(tier_by_code(tier_code, tiers), qualifying_tier(spend, tiers))
