"""Points mall: rewards, redemptions, payment notifications, fulfilment."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from chalicelib.models.common import (
    MAX_SAFE_INT,
    ClientId,
    MemberCodeValue,
    RequestModel,
    ResponseModel,
    given_fields,
)

Name = Annotated[str, Field(min_length=1, max_length=100)]
Description = Annotated[str, Field(min_length=1, max_length=2000)]
ImageUrl = Annotated[str, Field(min_length=9, max_length=1024, pattern=r"^https://[^\s]+$")]
TierCode = Annotated[str, Field(min_length=1, max_length=32)]
RewardKind = Literal["gift", "coupon", "service"]
MAX_STOCK = 10_000_000
MAX_QUANTITY = 10


class MemberLimitModel(RequestModel):
    count: Annotated[int, Field(ge=1, le=1000)]
    period: Literal["day", "month", "ever"]


class RewardRequest(RequestModel):
    reward_id: ClientId
    name: Name
    name_en: Name | None = None
    description: Description | None = None
    description_en: Description | None = None
    image_url: ImageUrl | None = None
    kind: RewardKind
    points: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    cash: Annotated[int, Field(ge=0, le=100_000_000, description="fen; > 0: points + cash")] = 0
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)]
    stock_shards: (
        Annotated[
            int,
            Field(ge=1, le=32, description="counter shards; default 1 below 50 units, up to 16"),
        ]
        | None
    ) = None
    per_member_limit: MemberLimitModel | None = None
    tiers: Annotated[list[TierCode], Field(max_length=20)] = Field(default_factory=list)
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    coupon_template_id: ClientId | None = Field(
        default=None, description="required for kind coupon: an active coupon template"
    )


PATCH_FIELDS = (
    "name",
    "name_en",
    "description",
    "description_en",
    "image_url",
    "points",
    "cash",
    "stock",
    "per_member_limit",
    "tiers",
    "valid_from",
    "valid_to",
    "status",
)


class RewardPatch(RequestModel):
    """The fields to change; `version` as read (409 VERSION_CONFLICT if it changed).
    `stock` sets the units available now; `status: retired` stops new redemptions."""

    model_config = ConfigDict(json_schema_extra=given_fields(PATCH_FIELDS))

    version: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    name: Name | None = None
    name_en: Name | None = None
    description: Description | None = None
    description_en: Description | None = None
    image_url: ImageUrl | None = None
    points: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] | None = None
    cash: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)] | None = None
    per_member_limit: MemberLimitModel | None = None
    tiers: Annotated[list[TierCode], Field(max_length=20)] | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    status: Literal["active", "retired"] | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> RewardPatch:
        if all(getattr(self, name) is None for name in PATCH_FIELDS):
            raise ValueError("give at least one field to change")
        return self


class MemberLimitView(ResponseModel):
    count: int
    period: str


class RewardView(ResponseModel):
    reward_id: str
    name: str
    name_en: str | None = None
    description: str | None = None
    description_en: str | None = None
    image_url: str | None = None
    kind: str
    points: int
    cash: int
    stock_left: int
    in_stock: bool
    tiers: list[str]
    per_member_limit: MemberLimitView | None = None
    valid_from: str | None = None
    valid_to: str | None = None
    coupon_template_id: str | None = None
    status: str
    affordable: bool | None = Field(default=None, description="a member caller: balance >= points")
    eligible: bool | None = Field(default=None, description="a member caller: tier allowed")


class AdminRewardView(RewardView):
    stock_shards: int
    version: int
    created_at: str
    updated_at: str


class RewardQuery(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=False, defer_build=True)

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=1024)] | None = None
    tier: TierCode | None = None
    kind: RewardKind | None = None
    in_stock: bool | None = None


class RewardPage(ResponseModel):
    rewards: list[RewardView]
    next_cursor: str | None


class RedemptionRequest(RequestModel):
    redemption_id: ClientId
    reward_id: ClientId
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)] = 1
    member_code: MemberCodeValue | None = Field(
        default=None, description="required when a POS redeems for the member present"
    )


class CouponIssued(ResponseModel):
    code: str
    template_id: str
    valid_to: str


class RedemptionResponse(ResponseModel):
    redemption_id: str
    reward_id: str
    quantity: int
    status: str
    points_spent: int
    cash_due: int
    balance: int
    coupon: CouponIssued | None = None
    coupons: list[CouponIssued] | None = None
    payment_due_at: str | None = None


class RedemptionView(ResponseModel):
    redemption_id: str
    reward_id: str
    reward_name: str | None = None
    kind: str | None = None
    quantity: int
    status: str = Field(description="awaiting_payment | completed | cancelled | expired")
    points_spent: int
    cash_due: int
    fulfilment: str | None = Field(
        default=None, description="gifts and services: placed -> shipped -> delivered"
    )
    tracking_no: str | None = None
    coupons: list[str] = Field(default_factory=list)
    payment_due_at: str | None = None
    payment_id: str | None = None
    created_at: str | None = None
    cancelled_at: str | None = None
    cash_refund_due: int | None = Field(
        default=None, description="cash the payment provider refunds (fen)"
    )


class RedemptionPage(ResponseModel):
    redemptions: list[RedemptionView]
    next_cursor: str | None


class PageQuery(RequestModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=1024)] | None = None


class FulfilmentRequest(RequestModel):
    status: Literal["shipped", "delivered"]
    tracking_no: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class PaymentNotification(RequestModel):
    payment_id: ClientId
    member_id: Annotated[str, Field(min_length=1, max_length=64)]
    redemption_id: ClientId
    amount: Annotated[int, Field(ge=0, le=MAX_SAFE_INT, description="fen")]
    currency: Literal["CNY"] = "CNY"
    status: Literal["paid", "failed"]
