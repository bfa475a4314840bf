"""The audit listing (api.md, Personal data and audit): GET /v1/admin/audit."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from chalicelib.models.common import QueryDate, RequestModel, ResponseModel


class AuditQuery(RequestModel):
    from_: QueryDate | None = Field(
        default=None,
        alias="from",
        description="first program day (Asia/Shanghai), inclusive; default: 29 days before `to`",
    )
    to: QueryDate | None = Field(
        default=None, description="last program day, inclusive; default: today"
    )
    actor: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="only this staff subject's entries"
    )
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(max_length=1024)] | None = None


class AuditActor(ResponseModel):
    subject: str
    role: str
    store_id: str | None


class AuditEntryView(ResponseModel):
    entry_id: str
    at: str
    actor: AuditActor
    action: str = Field(description="e.g. program.update, points.adjust, store_key.revoke")
    target: str = Field(description="what was acted on, e.g. member:<id>, store:<id>")
    request_id: str | None = Field(description="the client id of the write, when it has one")
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(ResponseModel):
    entries: list[AuditEntryView]
    next_cursor: str | None
