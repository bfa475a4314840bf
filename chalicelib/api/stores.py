"""Dealers, stores and POS keys (api.md, Stores and dealers): admin writes, staff reads."""

from __future__ import annotations

from chalice.app import Blueprint

from chalicelib.api.audit import actor
from chalicelib.api.http import ADMIN, ALL_STAFF, OPS, Access, Call, operation, store_named
from chalicelib.auth import ID_SHAPE
from chalicelib.domain import stores as domain
from chalicelib.domain.clock import utc_now
from chalicelib.errors import NotFound
from chalicelib.models.stores import (
    DealerList,
    DealerRequest,
    DealerView,
    PageQuery,
    StoreKeyIssued,
    StoreKeyList,
    StoreKeyView,
    StoreList,
    StorePatch,
    StoreRequest,
    StoreView,
)
from chalicelib.wiring import services

bp = Blueprint(__name__)
TAGS = ("stores",)
ADMIN_ONLY = Access(staff=ADMIN)


def _path_id(call: Call, name: str, code: str) -> str:
    value = call.params[name]
    if not ID_SHAPE.fullmatch(value):
        raise NotFound(f"no such {name.removesuffix('_id')}", code=code)
    return value


@operation(
    bp,
    "/v1/admin/dealers",
    "POST",
    access=ADMIN_ONLY,
    body=DealerRequest,
    response=DealerView,
    status=201,
    tags=TAGS,
    summary="Create a dealer (经销商); the same id and body again answers the same",
    error_statuses=(400, 401, 403, 409),
)
def create_dealer(call: Call) -> DealerView:
    request: DealerRequest = call.body
    body = domain.create_dealer(
        request.dealer_id, request.name, services().program, utc_now(), actor(call)
    )
    return DealerView.model_validate(body)


@operation(
    bp,
    "/v1/admin/dealers",
    "GET",
    access=Access(staff=OPS),
    query=PageQuery,
    response=DealerList,
    tags=TAGS,
    summary="Dealers in id order, paged",
    error_statuses=(400, 401, 403),
)
def list_dealers(call: Call) -> DealerList:
    query: PageQuery = call.query
    dealers, cursor = services().program.dealers(query.limit, query.cursor)
    return DealerList(
        dealers=[DealerView.model_validate(domain.dealer_view(d)) for d in dealers],
        next_cursor=cursor,
    )


@operation(
    bp,
    "/v1/admin/stores",
    "POST",
    access=ADMIN_ONLY,
    body=StoreRequest,
    response=StoreView,
    status=201,
    tags=TAGS,
    summary="Create a store of a dealer (active); the same id and body again answers the same",
    error_statuses=(400, 401, 403, 409, 422),
)
def create_store(call: Call) -> StoreView:
    request: StoreRequest = call.body
    body = domain.create_store(
        request.store_id,
        request.dealer_id,
        request.name,
        services().program,
        utc_now(),
        actor(call),
    )
    return StoreView.model_validate(body)


@operation(
    bp,
    "/v1/admin/stores",
    "GET",
    access=Access(staff=OPS),
    query=PageQuery,
    response=StoreList,
    tags=TAGS,
    summary="Stores in id order, paged",
    error_statuses=(400, 401, 403),
)
def list_stores(call: Call) -> StoreList:
    query: PageQuery = call.query
    stores, cursor = services().program.stores(query.limit, query.cursor)
    return StoreList(
        stores=[StoreView.model_validate(domain.store_view(s)) for s in stores],
        next_cursor=cursor,
    )


@operation(
    bp,
    "/v1/admin/stores/{store_id}",
    "GET",
    access=Access(staff=ALL_STAFF),
    response=StoreView,
    tags=TAGS,
    summary="A store (store staff: their own store only)",
    error_statuses=(401, 403, 404),
)
def get_store(call: Call) -> StoreView:
    assert call.principal is not None
    store_id = _path_id(call, "store_id", "STORE_NOT_FOUND")
    store_named(call.principal, store_id)
    store = domain.existing_store(store_id, services().program)
    return StoreView.model_validate(domain.store_view(store))


@operation(
    bp,
    "/v1/admin/stores/{store_id}",
    "PATCH",
    access=ADMIN_ONLY,
    body=StorePatch,
    response=StoreView,
    tags=TAGS,
    summary="Rename, close (active: false: its POS gets 403 STORE_INACTIVE) or reopen a store",
    error_statuses=(400, 401, 403, 404),
)
def update_store(call: Call) -> StoreView:
    request: StorePatch = call.body
    store_id = _path_id(call, "store_id", "STORE_NOT_FOUND")
    store = domain.update_store(
        store_id, request.model_dump(exclude_none=True), services().program, utc_now(), actor(call)
    )
    return StoreView.model_validate(domain.store_view(store))


@operation(
    bp,
    "/v1/admin/stores/{store_id}/keys",
    "POST",
    access=ADMIN_ONLY,
    response=StoreKeyIssued,
    status=201,
    tags=TAGS,
    summary="Issue a POS key; the secret is in this answer only (each call issues a new key)",
    error_statuses=(401, 403, 404),
)
def issue_key(call: Call) -> StoreKeyIssued:
    store_id = _path_id(call, "store_id", "STORE_NOT_FOUND")
    key = domain.issue_key(store_id, services().program, utc_now(), actor(call))
    assert key.created_at is not None
    return StoreKeyIssued(
        key_id=key.key_id, store_id=key.store_id, secret=key.secret, created_at=key.created_at
    )


@operation(
    bp,
    "/v1/admin/stores/{store_id}/keys",
    "GET",
    access=ADMIN_ONLY,
    query=PageQuery,
    response=StoreKeyList,
    tags=TAGS,
    summary="A store's POS keys, active and revoked, without secrets",
    error_statuses=(400, 401, 403, 404),
)
def list_keys(call: Call) -> StoreKeyList:
    query: PageQuery = call.query
    store_id = _path_id(call, "store_id", "STORE_NOT_FOUND")
    svc = services()
    domain.existing_store(store_id, svc.program)
    keys, cursor = svc.program.store_keys(store_id, query.limit, query.cursor)
    return StoreKeyList(
        keys=[StoreKeyView.model_validate(domain.key_view(k)) for k in keys], next_cursor=cursor
    )


@operation(
    bp,
    "/v1/admin/stores/{store_id}/keys/{key_id}",
    "DELETE",
    access=ADMIN_ONLY,
    response=StoreKeyView,
    tags=TAGS,
    summary="Revoke a POS key (stops verifying within seconds); revoking again answers the same",
    error_statuses=(401, 403, 404),
)
def revoke_key(call: Call) -> StoreKeyView:
    store_id = _path_id(call, "store_id", "STORE_NOT_FOUND")
    key_id = _path_id(call, "key_id", "KEY_NOT_FOUND")
    key = domain.revoke_key(store_id, key_id, services().program, utc_now(), actor(call))
    return StoreKeyView.model_validate(domain.key_view(key))
