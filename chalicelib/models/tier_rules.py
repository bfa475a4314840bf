"""Tier rule versions (staff)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chalicelib.models.common import MAX_SAFE_INT, Multiplier, RequestModel, ResponseModel


class TierBenefitsModel(RequestModel):
    earn_multiplier: Multiplier
    member_discount_pct: Annotated[int, Field(ge=0, le=100)]
    birthday_gift: bool
    free_shipping: bool
    priority_service: bool


class TierModel(RequestModel):
    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
    name: Annotated[str, Field(min_length=1, max_length=32)]
    name_en: Annotated[str, Field(min_length=1, max_length=32)]
    rank: Annotated[int, Field(ge=0, le=20)]
    qualify_spend: Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
    retain_spend: Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
    benefits: TierBenefitsModel


class TierRulesRequest(RequestModel):
    tiers: Annotated[list[TierModel], Field(min_length=1, max_length=20)]


class TierRulesView(ResponseModel):
    version: int
    status: str
    tiers: list[dict[str, Any]]
    dry_run: dict[str, int]
    apply: dict[str, int]
    created_at: str | None
