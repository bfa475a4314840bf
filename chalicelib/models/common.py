"""Shared request/response building blocks. Requests are validated in strict JSON mode:
"12" is not an integer, 12.5 is not an integer, unknown fields are errors.

The OpenAPI document is generated from these models, so every rule a request model
enforces is one its JSON schema states: lengths and patterns apply to the string as sent
(no whitespace stripping before the check), and rules across fields (one of several
fields is required) are declared with `given_fields`, which feeds the schema.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

# Ids chosen by clients (stores, transactions, activities) share one conservative shape,
# so they are safe inside DynamoDB keys joined with '#'.
ClientId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
]
MAX_SAFE_INT = 2**53 - 1
# The member code (会员码) the app shows and the POS scans: 18 digits.
MemberCodeValue = Annotated[
    str,
    Field(
        min_length=18,
        max_length=18,
        pattern=r"^[0-9]{18}$",
        description="the member's dynamic code from the app (会员码), single use",
    ),
]

# White space, spelled out for patterns: `\s` means different characters to ECMA-262 (the
# document's patterns, and clients validating with them), Python and the Rust engine that
# validates here (U+0085 is space to Rust, not to ECMA; U+FEFF the other way round). This
# is the union of both, in escapes all three read alike.
SPACE = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"

# The program's rates and multipliers are decimals such as 1.5 or 0.25. A positive value
# below this means nothing to earning, and DynamoDB cannot store a magnitude below 1e-130
# (a campaign multiplier of 5e-324 passed validation and failed the write with a 500).
MIN_MULTIPLIER = 0.0001


def _zero_or_not_tiny(value: float) -> float:
    if 0 < value < MIN_MULTIPLIER:
        raise ValueError(f"must be 0 or at least {MIN_MULTIPLIER}")
    return value


_NOT_TINY = {"not": {"exclusiveMinimum": 0, "exclusiveMaximum": MIN_MULTIPLIER}}
# 0 (earns nothing) or MIN_MULTIPLIER..100.
Multiplier = Annotated[
    float, Field(ge=0, le=100, json_schema_extra=_NOT_TINY), AfterValidator(_zero_or_not_tiny)
]
PositiveMultiplier = Annotated[float, Field(ge=MIN_MULTIPLIER, le=100)]
# Points per yuan: 0 or MIN_MULTIPLIER..1000.
EarnRate = Annotated[
    float, Field(ge=0, le=1000, json_schema_extra=_NOT_TINY), AfterValidator(_zero_or_not_tiny)
]


def given_fields(names: Sequence[str], *, exactly_one: bool = False) -> dict[str, Any]:
    """JSON schema for "at least one (or exactly one) of these fields is given", given
    meaning present and not null: the model's own validator enforces the same rule."""
    branches = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names
    ]
    return {"oneOf" if exactly_one else "anyOf": branches}


# defer_build: a model's validator, serializer and schema are built when it is first
# used, not when its class is created. Every Lambda imports every model (the routes name
# them), but one request uses a few; building all of them at import was most of the
# app's cold start.
class RequestModel(BaseModel):
    # No str_strip_whitespace: lengths and patterns are checked on the string as sent,
    # which is what the document's minLength and pattern say.
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class ErrorBody(ResponseModel):
    code: str = Field(description="Machine-readable, SNAKE_CASE")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(ResponseModel):
    error: ErrorBody


class Health(ResponseModel):
    status: str
    version: str


def _iso_date_only(value: object) -> object:
    """A query's date is `YYYY-MM-DD` (the document's `format: date`). Query strings are
    validated leniently (every value arrives as a string), and lenient pydantic would
    read `0` or `1700000000` as a Unix time."""
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("a date is YYYY-MM-DD")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A date in a query string (GET /v1/admin/audit?from&to, reports): exactly YYYY-MM-DD.
QueryDate = Annotated[dt.date, BeforeValidator(_iso_date_only)]
