"""Personal data (api.md, Personal data and audit): the export of everything the program
holds about a member, and erasure. Named by the routes as "module:Class" strings, so the
coupon and mall models they reuse are imported on the first export, not at cold start."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chalicelib.models.common import ClientId, RequestModel, ResponseModel
from chalicelib.models.coupons import CouponView
from chalicelib.models.members import MemberResponse
from chalicelib.models.points import LedgerEntryView, MemberTierView, PointsResponse
from chalicelib.models.rewards import RedemptionView

# Why a member is erased. A code, never free text: it goes into the append-only audit log.
ErasureReason = Literal[
    "member_request",  # the member asked (PIPL art. 47)
    "account_closed",  # the member closed the account
    "legal_obligation",  # an authority's order or a retention period ended
    "duplicate_account",
    "other",
]


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
    # Why, as a code, and the ticket it came from: both are kept in the append-only audit
    # entry, so neither is free text (a name or phone typed there could never be erased).
    reason: ErasureReason
    ticket: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:#/-]{1,64}$")] | None = None


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
