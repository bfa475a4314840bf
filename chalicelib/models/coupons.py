"""Coupon templates, coupons issued to members, and redeeming one at a till (api.md,
Rewards, coupons, redemptions)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from chalicelib.models.common import MAX_SAFE_INT, ClientId, RequestModel, ResponseModel

Name = Annotated[str, Field(min_length=1, max_length=100)]
Fen = Annotated[int, Field(ge=0, le=MAX_SAFE_INT, description="amount in fen (minor units)")]
Category = Annotated[str, Field(min_length=1, max_length=32)]
ValidDays = Annotated[int, Field(ge=1, le=3650, description="valid this many days from issue")]
# A code as a person types it or a scanner reads it: 16 Crockford base32 characters, in
# any case, with or without dashes or spaces (checked by the route: 404 otherwise).
CouponCode = Annotated[str, Field(min_length=1, max_length=64)]


def _not_null(*names: str) -> dict[str, Any]:
    return {
        "required": list(names),
        "properties": {name: {"not": {"type": "null"}} for name in names},
    }


# What the models' validators check across fields, said in the document as well.
_PERCENT_RULES: list[dict[str, Any]] = [
    {
        # percent_off: value is a percentage; only it has a cap
        "if": {"required": ["kind"], "properties": {"kind": {"const": "percent_off"}}},
        "then": {"properties": {"value": {"maximum": 100}}},
        "else": {"properties": {"max_off": {"type": "null"}}},
    },
]
_WINDOW_PAIRS: list[dict[str, Any]] = [
    {"if": _not_null("valid_from"), "then": _not_null("valid_to")},
    {"if": _not_null("valid_to"), "then": _not_null("valid_from")},
]
TEMPLATE_RULES: dict[str, Any] = {
    "oneOf": [_not_null("valid_days"), _not_null("valid_from", "valid_to")],
    "allOf": _PERCENT_RULES + _WINDOW_PAIRS,
}

PATCH_RULES: dict[str, Any] = {"allOf": _WINDOW_PAIRS}


class TemplateRequest(RequestModel):
    """A coupon template. `value`: fen off (amount_off) or percent off (percent_off, 1-100;
    8.5折 is 15). Validity: `valid_days` from issue, or the window `valid_from`..`valid_to`
    (exactly one of the two). `stores`/`categories` empty: every store/category."""

    model_config = ConfigDict(json_schema_extra=TEMPLATE_RULES)

    template_id: ClientId
    name: Name
    kind: Literal["amount_off", "percent_off"]
    value: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    max_off: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] | None = Field(
        default=None, description="percent_off only: at most this many fen off"
    )
    min_spend: Fen = 0
    valid_days: ValidDays | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    stores: Annotated[list[ClientId], Field(max_length=100)] = Field(default_factory=list)
    categories: Annotated[list[Category], Field(max_length=50)] = Field(default_factory=list)
    stackable: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> TemplateRequest:
        if self.kind == "percent_off" and self.value > 100:
            raise ValueError("a percent_off value is at most 100")
        if self.kind != "percent_off" and self.max_off is not None:
            raise ValueError("only a percent_off template has max_off")
        window = (self.valid_from, self.valid_to)
        if (self.valid_from is None) != (self.valid_to is None):
            raise ValueError("give both valid_from and valid_to")
        if (self.valid_days is None) == (window == (None, None)):
            raise ValueError("give either valid_days or valid_from and valid_to")
        return self


class TemplatePatch(RequestModel):
    """Send back the `version` you read (409 VERSION_CONFLICT if it changed). `kind`,
    `value` and `template_id` never change. `valid_days` replaces a window and a window
    replaces `valid_days`. Coupons already issued keep their terms."""

    model_config = ConfigDict(json_schema_extra=PATCH_RULES)

    version: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    name: Name | None = None
    status: Literal["active", "retired"] | None = None
    max_off: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)] | None = None
    min_spend: Fen | None = None
    valid_days: ValidDays | None = None
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    stores: Annotated[list[ClientId], Field(max_length=100)] | None = None
    categories: Annotated[list[Category], Field(max_length=50)] | None = None
    stackable: bool | None = None

    @model_validator(mode="after")
    def _window(self) -> TemplatePatch:
        if (self.valid_from is None) != (self.valid_to is None):
            raise ValueError("give both valid_from and valid_to")
        return self


class TemplateView(ResponseModel):
    template_id: str
    name: str
    kind: str
    value: int
    max_off: int | None
    min_spend: int
    valid_days: int | None
    valid_from: str | None
    valid_to: str | None
    stores: list[str]
    categories: list[str]
    stackable: bool
    status: str
    version: int


class TemplateList(ResponseModel):
    templates: list[TemplateView]
    next_cursor: str | None


class TemplatePageQuery(RequestModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(max_length=1024)] | None = None


class IssueRequest(RequestModel):
    issue_id: ClientId
    template_id: ClientId


class CouponView(ResponseModel):
    code: str = Field(
        description=(
            "as shown to the member: four groups of four, dashes (store staff: the last "
            "group only, `****-****-****-ZC1B`)"
        )
    )
    member_id: str
    template_id: str
    name: str | None
    status: Literal["active", "used", "expired", "void"]
    kind: str
    value: int
    max_off: int | None
    min_spend: int
    stores: list[str]
    categories: list[str]
    stackable: bool
    valid_from: str
    valid_to: str
    issued_at: str
    source: str
    used_at: str | None


class CouponList(ResponseModel):
    coupons: list[CouponView]
    next_cursor: str | None = Field(
        description="more coupons follow; a page filtered by status may hold fewer than limit"
    )


class CouponQuery(RequestModel):
    status: Literal["active", "used", "expired", "void"] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(max_length=2048)] | None = None


class RedeemRequest(RequestModel):
    transaction_id: ClientId = Field(description="the till's transaction the coupon is used for")
    store_id: ClientId = Field(description="a POS names its own store (403 STORE_MISMATCH)")

    @property
    def spends_member_value(self) -> bool:
        """A coupon is consumed: a POS request claims its nonce before it runs
        (auth.PosReplay.RECORDED_ANSWER), so a refused redemption never succeeds on replay."""
        return True


class RedeemResponse(ResponseModel):
    code: str
    member_id: str
    template_id: str
    status: Literal["used"]
    store_id: str
    transaction_id: str
    used_at: str
    kind: str
    value: int
    max_off: int | None
    min_spend: int
    categories: list[str]
    stackable: bool
