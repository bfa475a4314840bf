"""Program-level responses: tiers."""

from __future__ import annotations

from chalicelib.models.common import ResponseModel


class TierBenefitsView(ResponseModel):
    earn_multiplier: float
    member_discount_pct: int
    birthday_gift: bool
    free_shipping: bool
    priority_service: bool


class TierView(ResponseModel):
    code: str
    name: str
    name_en: str
    rank: int
    qualify_spend: int
    retain_spend: int
    currency: str = "CNY"
    benefits: TierBenefitsView


class TierList(ResponseModel):
    tiers: list[TierView]
