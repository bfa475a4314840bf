"""Member requests and responses (api.md, Members)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from chalicelib.models.common import (
    SPACE,
    ClientId,
    MemberCodeValue,
    RequestModel,
    ResponseModel,
    given_fields,
)

Name = Annotated[str, Field(min_length=1, max_length=64)]
Tag = Annotated[str, Field(min_length=1, max_length=32, pattern=rf"^[^#{SPACE}]+$")]
ExternalValue = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")]
Email = Annotated[str, Field(max_length=254, pattern=rf"^[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}]+$")]
Phone = Annotated[str, Field(min_length=3, max_length=32)]


class Channel(StrEnum):
    app = "app"
    miniprogram = "miniprogram"
    web = "web"
    pos = "pos"
    staff = "staff"


class Gender(StrEnum):
    female = "female"
    male = "male"
    other = "other"
    undisclosed = "undisclosed"


class ExternalIds(RequestModel):
    wechat_unionid: ExternalValue | None = None
    wechat_openid: ExternalValue | None = None
    pos_card: ExternalValue | None = None


class ClaimMemberRequest(RequestModel):
    phone: Phone = Field(description="the sign-in's verified phone number")


class RegisterMemberRequest(RequestModel):
    phone: Phone
    channel: Channel
    name: Name | None = None
    gender: Gender | None = None
    birthday: dt.date | None = None
    email: Email | None = None
    store_id: ClientId | None = None
    external_ids: ExternalIds | None = None
    marketing_consent: bool = False
    tags: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)


class UpdateMemberRequest(RequestModel):
    """Profile fields only. Absent fields stay as they are; null clears a field."""

    name: Name | None = None
    gender: Gender | None = None
    birthday: dt.date | None = None
    email: Email | None = None
    marketing_consent: bool | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None


# Fields a client may try to PATCH that belong to the program, not the member. They are
# refused with FIELD_NOT_WRITABLE rather than silently ignored.
NOT_WRITABLE_FIELDS = frozenset(
    {
        "member_id",
        "phone",
        "tier",
        "points",
        "external_ids",
        "channel",
        "store_id",
        "lifecycle_stage",
        "created_at",
        "updated_at",
        "balance",
        "lifetime_earned",
    }
)


MASKED = "null in the masked view (a POS, store staff)"


class Profile(ResponseModel):
    name: str | None = Field(description="in the masked view only its first letter: 李*")
    gender: str | None = Field(description=MASKED)
    birthday: dt.date | None = Field(description=MASKED)
    email: str | None = Field(description=MASKED)
    tags: list[str] = Field(description="empty in the masked view (a POS, store staff)")
    marketing_consent: bool | None = Field(description=MASKED)
    channel: str
    store_id: str | None


class TierSummary(ResponseModel):
    code: str
    name: str
    expires_at: str | None


class ExpiringNext(ResponseModel):
    points: int
    date: dt.date


class PointsSummary(ResponseModel):
    balance: int
    pending: int
    expiring_next: ExpiringNext | None


class MemberResponse(ResponseModel):
    member_id: str
    phone: str = Field(description="E.164; masked (+86138****5678) in the masked view")
    masked: bool = Field(
        description=(
            "true when the caller sees a POS's view (a POS, store staff): phone and name "
            "masked; no birthday, email, gender, tags or external ids"
        )
    )
    profile: Profile
    external_ids: dict[str, str] = Field(description="empty in the masked view")
    tier: TierSummary
    points: PointsSummary
    lifecycle_stage: str
    created_at: str
    updated_at: str


class MemberExistsDetails(ResponseModel):
    member_id: str | None = Field(
        default=None, description="the existing member; absent when a member token asks"
    )
    field: str


LOOKUP_KEYS = (
    "phone",
    "card",
    "wechat_unionid",
    "member_code",
)  # a look-up gives exactly one of these


class LookupQuery(RequestModel):
    model_config = ConfigDict(json_schema_extra=given_fields(LOOKUP_KEYS, exactly_one=True))

    phone: Phone | None = None
    card: ExternalValue | None = None
    wechat_unionid: ExternalValue | None = None
    member_code: MemberCodeValue | None = None

    @model_validator(mode="after")
    def _exactly_one_key(self) -> LookupQuery:
        if sum(getattr(self, key) is not None for key in LOOKUP_KEYS) != 1:
            raise ValueError("give exactly one of " + ", ".join(LOOKUP_KEYS))
        return self


class MemberCodeResponse(ResponseModel):
    code: str = Field(description="18 digits; show as a QR/bar code; valid once, until expires_at")
    expires_at: str = Field(description="RFC 3339 UTC; at most 120 s after issue")
