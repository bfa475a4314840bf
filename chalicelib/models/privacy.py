"""Personal data (api.md, Personal data and audit): the export of everything the program
holds about a member, and erasure. Named by the routes as "module:Class" strings, so the
coupon and mall models they reuse are imported on the first export, not at cold start."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from chalicelib.models.common import ClientId, RequestModel, ResponseModel
from chalicelib.models.coupons import CouponView
from chalicelib.models.members import MemberResponse
from chalicelib.models.points import LedgerEntryView, MemberTierView, PointsResponse
from chalicelib.models.rewards import RedemptionView


class MemberExport(ResponseModel):
    """All a member's data (PIPL art. 45): profile and consent, the identities linked
    (kinds; the values are in `member.external_ids`), tier and its history, points and
    their expiry dates, the whole ledger (every page), coupons and redemptions."""

    exported_at: str
    member: MemberResponse
    identities: list[str] = Field(description="kinds of identity linked: phone, pos_card, ...")
    tier: MemberTierView
    points: PointsResponse
    ledger: list[LedgerEntryView]
    coupons: list[CouponView]
    redemptions: list[RedemptionView]


class EraseRequest(RequestModel):
    request_id: ClientId
    # Why (a ticket or request number): kept in the audit entry, so no personal data.
    reason: Annotated[str, Field(min_length=3, max_length=200)]


class EraseResponse(ResponseModel):
    member_id: str
    request_id: str
    status: str = Field(description="erased")
    erased_at: str


__all__ = [
    "CouponView",
    "EraseRequest",
    "EraseResponse",
    "LedgerEntryView",
    "MemberExport",
    "MemberResponse",
    "MemberTierView",
    "PointsResponse",
    "RedemptionView",
]
