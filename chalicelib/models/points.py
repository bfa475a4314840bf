"""Points, POS transactions, refunds, activities, adjustments, program configuration."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from chalicelib.models.common import (
    MAX_SAFE_INT,
    ClientId,
    EarnRate,
    MemberCodeValue,
    Multiplier,
    PositiveMultiplier,
    RequestModel,
    ResponseModel,
    given_fields,
)

Fen = Annotated[int, Field(ge=0, le=MAX_SAFE_INT, description="amount in fen (minor units)")]
Points = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
Label = Annotated[str, Field(min_length=1, max_length=64)]


class TransactionItem(RequestModel):
    sku: Label
    category: Annotated[str, Field(min_length=1, max_length=32)] = "general"
    quantity: Annotated[int, Field(ge=1, le=100_000)]
    unit_price: Fen


MEMBER_KEYS = (
    "member_id",
    "card",
    "phone",
    "member_code",
)  # a purchase names its member by one of these


class TransactionRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=given_fields(MEMBER_KEYS))

    transaction_id: ClientId
    store_id: ClientId
    member_id: Label | None = None
    card: Label | None = None
    phone: Annotated[str, Field(min_length=3, max_length=32)] | None = None
    occurred_at: AwareDatetime
    items: Annotated[list[TransactionItem], Field(min_length=1, max_length=200)]
    total: Fen
    currency: Literal["CNY"] = "CNY"
    coupon_codes: Annotated[list[Label], Field(max_length=10)] = Field(default_factory=list)
    pay_with_points: Points = Field(
        default=0, description="points spent on the bill: needs the member's `member_code`"
    )
    member_code: MemberCodeValue | None = None

    @property
    def spends_member_value(self) -> bool:
        """Points leave the member (or a coupon is consumed): such a
        request claims its POS nonce before it runs (auth.PosReplay.RECORDED_ANSWER)."""
        return self.pay_with_points > 0 or bool(self.coupon_codes)

    @model_validator(mode="after")
    def _identifies_a_member(self) -> TransactionRequest:
        if not any(getattr(self, key) is not None for key in MEMBER_KEYS):
            raise ValueError("one of member_id, card, phone or member_code is required")
        return self


class TierOnReceipt(ResponseModel):
    code: str
    name: str
    member_discount_pct: int


class CouponDiscount(ResponseModel):
    code: str
    template_id: str
    discount: int = Field(description="fen")


class TransactionResponse(ResponseModel):
    transaction_id: str
    member_id: str
    store_id: str
    points_earned: int
    points_pending: int
    points_spent: int
    points_value: int = Field(description="fen paid with points")
    cash_due: int
    currency: str
    balance: int
    tier: TierOnReceipt
    coupons_applied: list[str] = Field(description="codes applied, as displayed (XXXX-XXXX-…)")
    coupons_rejected: list[dict[str, str]] = Field(
        default_factory=list,
        description="codes not applied, each {code (as sent), reason}: COUPON_NOT_FOUND, "
        "COUPON_NOT_OWNED, COUPON_USED, COUPON_VOID, COUPON_EXPIRED, COUPON_NOT_YET_VALID, "
        "COUPON_NOT_VALID_HERE, COUPON_NOT_APPLICABLE, BELOW_MIN_SPEND, NOT_STACKABLE, "
        "DUPLICATE_CODE",
    )
    discount: int = Field(default=0, description="fen the coupons took off the bill")
    coupon_discounts: list[CouponDiscount] = Field(default_factory=list)
    breakdown: dict[str, Any]


class RefundLine(RequestModel):
    sku: Label
    quantity: Annotated[int, Field(ge=1, le=100_000)]


class RefundRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=given_fields(("items", "amount"), exactly_one=True))

    refund_id: ClientId
    items: Annotated[list[RefundLine], Field(min_length=1, max_length=200)] | None = None
    amount: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] | None = None
    store_id: ClientId | None = Field(default=None, description="staff only: the purchase's store")

    @model_validator(mode="after")
    def _items_or_amount(self) -> RefundRequest:
        if (self.items is None) == (self.amount is None):
            raise ValueError("give either items or amount")
        return self


class RefundResponse(ResponseModel):
    refund_id: str
    transaction_id: str
    amount: int = Field(description="fen at the purchase's list prices (units x unit_price)")
    coupon_discount: int = Field(
        default=0, description="of `amount`, fen the purchase's coupons had taken off"
    )
    points_reversed: int
    points_returned: int
    balance: int
    coupons_restored: list[str] = Field(
        default_factory=list, description="the full refund gave these coupons back"
    )
    coupons_not_restored: list[dict[str, str]] = Field(
        default_factory=list,
        description="coupons the full refund left used, each {code, reason: COUPON_EXPIRED}",
    )


class TransactionView(ResponseModel):
    transaction: TransactionResponse
    occurred_at: str
    total: int
    refunded_amount: int
    points_reversed: int
    points_returned: int
    refunds: list[RefundResponse]


class StoreQuery(RequestModel):
    store_id: ClientId | None = Field(
        default=None, description="staff: required, the purchase's store; a POS: its own or none"
    )


class ExpiringLot(ResponseModel):
    date: dt.date
    points: int


class PendingRelease(ResponseModel):
    release_at: str
    points: int


class PointsResponse(ResponseModel):
    member_id: str
    balance: int
    pending: int
    lifetime_earned: int
    debt: int
    expiring: list[ExpiringLot]
    pending_releases: list[PendingRelease]


class LedgerEntryView(ResponseModel):
    entry_id: str
    type: str
    points: int
    balance_after: int
    reason: str
    source: str
    source_id: str | None
    store_id: str | None
    created_at: str
    lots: list[ExpiringLot]


class LedgerPage(ResponseModel):
    entries: list[LedgerEntryView]
    next_cursor: str | None


class LedgerQuery(RequestModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=1024)] | None = None


class ActivityType(StrEnum):
    checkin = "checkin"
    review = "review"
    share = "share"
    referral = "referral"
    profile_completed = "profile_completed"


class ActivityRequest(RequestModel):
    # What the activity rules check (domain/points.py): a referral names its referrer.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"type": {"not": {"const": "referral"}}}},
                {
                    "required": ["referrer_member_id"],
                    "properties": {"referrer_member_id": {"not": {"type": "null"}}},
                },
            ]
        }
    )

    activity_id: ClientId
    type: ActivityType
    referrer_member_id: Label | None = None
    reference: Annotated[str, Field(max_length=128)] | None = None


class ActivityResponse(ResponseModel):
    activity_id: str
    type: str
    points_earned: int
    balance: int


class AdjustmentRequest(RequestModel):
    adjustment_id: ClientId
    # Not 0 (422 INVALID_ADJUSTMENT, as is more than the program's max_adjustment).
    points: Annotated[
        int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT, json_schema_extra={"not": {"const": 0}})
    ]
    reason: Annotated[str, Field(min_length=3, max_length=200)]


class AdjustmentResponse(ResponseModel):
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    balance: int


class CategoryRuleModel(RequestModel):
    category: Annotated[str, Field(min_length=1, max_length=32)]
    multiplier: Multiplier


class CampaignMultiplierModel(RequestModel):
    campaign_id: ClientId
    multiplier: PositiveMultiplier
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    store_ids: list[ClientId] = Field(default_factory=list)


class ActivityRuleModel(RequestModel):
    points: Annotated[int, Field(ge=0, le=1_000_000)]
    period: Literal["day", "month", "year", "ever"]
    limit: Annotated[int, Field(ge=1, le=1000)]


TemplateIds = Annotated[list[ClientId], Field(max_length=10)]


class CouponRulesModel(RequestModel):
    """Coupon templates the program issues by itself, once per member and occasion."""

    welcome: TemplateIds = Field(default_factory=list, description="on registration")
    first_purchase: TemplateIds = Field(default_factory=list)
    birthday: TemplateIds = Field(default_factory=list, description="once a year")
    tier_upgrade: Annotated[dict[str, TemplateIds], Field(max_length=20)] = Field(
        default_factory=dict, description="tier code -> templates, on each move up to it"
    )


class ProgramConfigModel(RequestModel):
    """The program's rules; PUT replaces the document (send back `version` as read)."""

    base_points_per_yuan: EarnRate
    category_rules: list[CategoryRuleModel] = Field(default_factory=list)
    campaign_multipliers: list[CampaignMultiplierModel] = Field(default_factory=list)
    max_points_per_purchase: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] | None = None
    pending_days: Annotated[int, Field(ge=0, le=90)] = 0
    points_per_yuan_payment: Annotated[int, Field(ge=1, le=100_000)] = 100
    payment_cap_pct: Annotated[int, Field(ge=0, le=100)] = 50
    expiry_policy: Literal["rolling", "next_year_end"] = "rolling"
    expiry_months: Annotated[int, Field(ge=1, le=120)] = 12
    clawback_policy: Literal["negative", "floor"] = "negative"
    activities: dict[str, ActivityRuleModel] = Field(default_factory=dict)
    max_adjustment: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] = 1_000_000
    reminder_days: Annotated[int, Field(ge=0, le=90)] = 30
    tier_grace_days: Annotated[int, Field(ge=0, le=365)] = 0
    tier_downgrade_policy: Literal["one_level", "to_qualified"] = "one_level"
    payment_timeout_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    coupon_rules: CouponRulesModel = Field(default_factory=CouponRulesModel)
    version: Annotated[int, Field(ge=0, le=MAX_SAFE_INT)] = 0


class ProgramConfigResponse(ResponseModel):
    config: dict[str, Any]


class JobRunView(ResponseModel):
    job: str
    date: str
    started_at: str | None
    finished_at: str | None
    tasks: int
    tasks_done: int
    members: int
    lots: int
    points: int


class TierRef(ResponseModel):
    code: str
    name: str
    name_en: str


class NextTier(ResponseModel):
    code: str
    name: str
    qualify_spend: int
    amount_missing: int


class Retention(ResponseModel):
    retain_spend: int
    amount_missing: int
    review_date: str | None
    in_grace_until: str | None


class TierHistoryEntry(ResponseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    reason: str
    qualifying_spend: int
    at: str
    expires_at: str | None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class MemberTierView(ResponseModel):
    member_id: str
    tier: TierRef
    since: str | None
    expires_at: str | None
    qualifying_spend: int = Field(description="fen over the rolling 12 months, net of refunds")
    next_tier: NextTier | None
    retention: Retention | None
    history: list[TierHistoryEntry]
