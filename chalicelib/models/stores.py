"""Dealers, stores and POS keys (api.md, Stores and dealers)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from chalicelib.models.common import ClientId, RequestModel, ResponseModel, given_fields

Name = Annotated[str, Field(min_length=1, max_length=100)]


class DealerRequest(RequestModel):
    dealer_id: ClientId
    name: Name


class DealerView(ResponseModel):
    dealer_id: str
    name: str
    created_at: str | None


class DealerList(ResponseModel):
    dealers: list[DealerView]
    next_cursor: str | None


class StoreRequest(RequestModel):
    store_id: ClientId
    dealer_id: ClientId
    name: Name


class StorePatch(RequestModel):
    """At least one of the two; `active: false` closes the store to its POS and staff."""

    # The document says it too: `{"active": null, "name": null}` changes nothing.
    model_config = ConfigDict(json_schema_extra=given_fields(("active", "name")))

    active: bool | None = None
    name: Name | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> StorePatch:
        if self.active is None and self.name is None:
            raise ValueError("give active or name")
        return self


class StoreView(ResponseModel):
    store_id: str
    dealer_id: str
    name: str
    active: bool
    created_at: str | None
    updated_at: str | None


class StoreList(ResponseModel):
    stores: list[StoreView]
    next_cursor: str | None


class PageQuery(RequestModel):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[str, Field(max_length=1024)] | None = None


class StoreKeyIssued(ResponseModel):
    key_id: str
    store_id: str
    secret: str = Field(description="shown once: only its holder can sign as the store")
    created_at: str


class StoreKeyView(ResponseModel):
    key_id: str
    store_id: str
    active: bool
    created_at: str | None
    revoked_at: str | None


class StoreKeyList(ResponseModel):
    keys: list[StoreKeyView]
    next_cursor: str | None
