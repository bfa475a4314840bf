"""Shared request/response building blocks. Requests are validated in strict JSON mode:
"12" is not an integer, 12.5 is not an integer, unknown fields are errors."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

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


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(ResponseModel):
    code: str = Field(description="Machine-readable, SNAKE_CASE")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(ResponseModel):
    error: ErrorBody


class Health(ResponseModel):
    status: str
    version: str
