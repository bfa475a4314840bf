"""Dealers, stores and POS keys over HTTP (chalice.test.Client on moto): admin routes,
idempotent creates, closing a store and revoking a key stop its POS within seconds."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from local.tools import member_or_staff_token
from tests.conftest import auth, token_for
from tests.helpers import Pos
from tests.unit.test_transactions_api import error_code, purchase_body, register


def admin() -> str:
    return token_for(None, role="admin")


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(client: Any, path: str, body: Any = None, token: str | None = None) -> Any:
    return client.http.post(
        path, headers=auth(token or admin()), body=json.dumps(body) if body is not None else b""
    )


def create_store(client: Any, store_id: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"store_id": store_id or fresh_id("s"), "dealer_id": "dealer-demo", "name": "Mall kiosk"}
    response = post(client, "/v1/admin/stores", {**body, **fields})
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def issue_key(client: Any, store_id: str) -> dict[str, str]:
    response = post(client, f"/v1/admin/stores/{store_id}/keys")
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def patch(client: Any, store_id: str, body: Any) -> Any:
    return client.http.patch(
        f"/v1/admin/stores/{store_id}", headers=auth(admin()), body=json.dumps(body)
    )


def pos_purchase(client: Any, key: dict[str, str], staff_token: str) -> Any:
    member_id = register(client, staff_token)
    body = purchase_body(member_id, store_id=key["store_id"])
    return Pos(client, key).send("POST", "/v1/transactions", body)


# ---- dealers and stores -------------------------------------------------------------------


def test_given_a_new_dealer_when_created_twice_then_the_same_201_and_another_body_is_409(
    seeded, app_client
):
    dealer_id = fresh_id("d")
    first = post(app_client, "/v1/admin/dealers", {"dealer_id": dealer_id, "name": "华东经销"})
    assert first.status_code == 201, first.json_body
    again = post(app_client, "/v1/admin/dealers", {"dealer_id": dealer_id, "name": "华东经销"})
    assert (again.status_code, again.json_body) == (201, first.json_body)
    other = post(app_client, "/v1/admin/dealers", {"dealer_id": dealer_id, "name": "华南经销"})
    assert (other.status_code, error_code(other)) == (409, "IDEMPOTENCY_CONFLICT")
    listed = app_client.http.get("/v1/admin/dealers?limit=100", headers=auth(admin()))
    assert dealer_id in [d["dealer_id"] for d in listed.json_body["dealers"]]


def test_given_a_store_when_created_again_after_a_rename_then_the_first_answer_and_409_for_another_body(
    seeded, app_client
):
    store = create_store(app_client)
    assert (store["active"], store["dealer_id"]) == (True, "dealer-demo")
    renamed = patch(app_client, store["store_id"], {"name": "Mall kiosk 2"})
    assert renamed.status_code == 200, renamed.json_body
    replay = post(
        app_client,
        "/v1/admin/stores",
        {"store_id": store["store_id"], "dealer_id": "dealer-demo", "name": "Mall kiosk"},
    )
    assert (replay.status_code, replay.json_body) == (201, store)
    other = post(
        app_client,
        "/v1/admin/stores",
        {"store_id": store["store_id"], "dealer_id": "dealer-demo", "name": "Somewhere else"},
    )
    assert (other.status_code, error_code(other)) == (409, "IDEMPOTENCY_CONFLICT")
    read = app_client.http.get(f"/v1/admin/stores/{store['store_id']}", headers=auth(admin()))
    assert read.json_body["name"] == "Mall kiosk 2"


def test_given_a_seeded_store_when_created_with_another_body_then_409_and_it_is_unchanged(
    seeded, app_client
):
    other = post(
        app_client,
        "/v1/admin/stores",
        {"store_id": "store-001", "dealer_id": "dealer-demo", "name": "Taken over"},
    )
    assert (other.status_code, error_code(other)) == (409, "IDEMPOTENCY_CONFLICT")
    read = app_client.http.get("/v1/admin/stores/store-001", headers=auth(admin()))
    assert read.json_body["name"] == "Demo Store 001 旗舰店"


def test_given_an_unknown_dealer_when_creating_a_store_then_422_unknown_dealer(seeded, app_client):
    response = post(
        app_client,
        "/v1/admin/stores",
        {"store_id": fresh_id("s"), "dealer_id": "dealer-nope", "name": "x"},
    )
    assert (response.status_code, error_code(response)) == (422, "UNKNOWN_DEALER")


@pytest.mark.parametrize(
    "body",
    [
        {"store_id": "a#b", "dealer_id": "dealer-demo", "name": "x"},
        {"store_id": "", "dealer_id": "dealer-demo", "name": "x"},
        {"store_id": "s" * 65, "dealer_id": "dealer-demo", "name": "x"},
        {"store_id": "s-1", "dealer_id": "dealer-demo", "name": ""},
        {"store_id": "s-1", "dealer_id": "dealer-demo"},
        {"store_id": "s-1", "dealer_id": "dealer-demo", "name": "x", "active": False},
    ],
)
def test_given_a_malformed_store_when_creating_it_then_400(seeded, app_client, body):
    response = post(app_client, "/v1/admin/stores", body)
    assert (response.status_code, error_code(response)) == (400, "VALIDATION_ERROR")


def test_given_stores_when_listing_by_pages_then_every_store_once_in_id_order(seeded, app_client):
    created = {create_store(app_client)["store_id"] for _ in range(3)}
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = app_client.http.get(f"/v1/admin/stores{query}", headers=auth(token_for(None, "ops")))
        assert page.status_code == 200, page.json_body
        seen += [s["store_id"] for s in page.json_body["stores"]]
        cursor = page.json_body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert created | {"store-001", "store-002"} <= set(seen)
    bad = app_client.http.get("/v1/admin/stores?cursor=bm90IGEgY3Vyc29y", headers=auth(admin()))
    assert (bad.status_code, error_code(bad)) == (400, "INVALID_CURSOR")


def test_given_a_patch_when_it_names_nothing_or_an_unknown_store_then_400_or_404(
    seeded, app_client
):
    empty = patch(app_client, "store-001", {})
    assert (empty.status_code, error_code(empty)) == (400, "VALIDATION_ERROR")
    missing = patch(app_client, "store-nope", {"active": False})
    assert (missing.status_code, error_code(missing)) == (404, "STORE_NOT_FOUND")
    odd = patch(app_client, "x" * 300, {"active": False})  # longer than any id (document)
    assert (odd.status_code, error_code(odd)) == (400, "VALIDATION_ERROR")


@pytest.mark.parametrize("role", ["ops", "store_staff", "member", "signup"])
def test_given_anyone_but_an_admin_when_writing_stores_dealers_or_keys_then_403(
    seeded, app_client, staff_token, role
):
    token = {
        "ops": staff_token,
        "store_staff": member_or_staff_token("store_staff", None, store="store-001"),
        "member": token_for(register(app_client, staff_token)),
        "signup": token_for(None),
    }[role]
    key = issue_key(app_client, "store-001")
    writes = [
        post(app_client, "/v1/admin/dealers", {"dealer_id": fresh_id("d"), "name": "x"}, token),
        post(
            app_client,
            "/v1/admin/stores",
            {"store_id": fresh_id("s"), "dealer_id": "dealer-demo", "name": "x"},
            token,
        ),
        app_client.http.patch(
            "/v1/admin/stores/store-001", headers=auth(token), body=json.dumps({"active": False})
        ),
        post(app_client, "/v1/admin/stores/store-001/keys", None, token),
        app_client.http.get("/v1/admin/stores/store-001/keys", headers=auth(token)),
        app_client.http.delete(
            f"/v1/admin/stores/store-001/keys/{key['key_id']}", headers=auth(token)
        ),
    ]
    assert [w.status_code for w in writes] == [403] * len(writes)
    assert pos_purchase(app_client, key, staff_token).status_code == 201


def test_given_a_pos_when_calling_the_store_routes_then_403(seeded, app_client, store_key):
    pos = Pos(app_client, store_key)
    response = pos.send("PATCH", "/v1/admin/stores/store-001", {"active": False})
    assert response.status_code == 403
    assert app_client.http.get("/v1/admin/stores/store-001", headers=auth(admin())).json_body[
        "active"
    ]


# ---- keys ---------------------------------------------------------------------------------


def test_given_an_issued_key_when_used_listed_and_revoked_then_it_signs_until_revoked(
    seeded, app_client, staff_token
):
    store_id = create_store(app_client)["store_id"]
    key = issue_key(app_client, store_id)
    assert set(key) == {"key_id", "store_id", "secret", "created_at"}
    assert pos_purchase(app_client, key, staff_token).status_code == 201

    listed = app_client.http.get(f"/v1/admin/stores/{store_id}/keys", headers=auth(admin()))
    assert listed.status_code == 200, listed.json_body
    [view] = listed.json_body["keys"]
    assert view["key_id"] == key["key_id"]
    assert view["active"] is True
    assert "secret" not in json.dumps(listed.json_body)

    revoked = app_client.http.delete(
        f"/v1/admin/stores/{store_id}/keys/{key['key_id']}", headers=auth(admin())
    )
    assert revoked.status_code == 200, revoked.json_body
    assert (revoked.json_body["active"], revoked.json_body["revoked_at"] is not None) == (
        False,
        True,
    )
    again = app_client.http.delete(
        f"/v1/admin/stores/{store_id}/keys/{key['key_id']}", headers=auth(admin())
    )
    assert (again.status_code, again.json_body) == (200, revoked.json_body)
    refused = pos_purchase(app_client, key, staff_token)
    assert (refused.status_code, error_code(refused)) == (401, "KEY_REVOKED")


def test_given_a_key_of_another_store_when_revoking_it_through_this_store_then_404_and_it_still_works(
    seeded, app_client, staff_token
):
    key = issue_key(app_client, "store-001")
    response = app_client.http.delete(
        f"/v1/admin/stores/store-002/keys/{key['key_id']}", headers=auth(admin())
    )
    assert (response.status_code, error_code(response)) == (404, "KEY_NOT_FOUND")
    assert pos_purchase(app_client, key, staff_token).status_code == 201


def test_given_an_unknown_store_when_issuing_or_listing_keys_then_404(seeded, app_client):
    issued = post(app_client, "/v1/admin/stores/store-nope/keys")
    assert (issued.status_code, error_code(issued)) == (404, "STORE_NOT_FOUND")
    listed = app_client.http.get("/v1/admin/stores/store-nope/keys", headers=auth(admin()))
    assert (listed.status_code, error_code(listed)) == (404, "STORE_NOT_FOUND")


# ---- closing a store ----------------------------------------------------------------------


def test_given_a_closed_store_when_its_pos_calls_then_403_store_inactive_until_reopened(
    seeded, app_client, staff_token
):
    store_id = create_store(app_client)["store_id"]
    key = issue_key(app_client, store_id)
    assert pos_purchase(app_client, key, staff_token).status_code == 201
    assert patch(app_client, store_id, {"active": False}).json_body["active"] is False

    pos = Pos(app_client, key)
    for method, path, body in [
        ("POST", "/v1/transactions", purchase_body("mbr_x", store_id=store_id)),
        ("GET", "/v1/members/lookup?card=C1", None),
        ("POST", "/v1/members", {"phone": "+8613900000000", "channel": "pos"}),
        ("GET", "/v1/transactions/t-1", None),
    ]:
        response = pos.send(method, path, body)
        assert (response.status_code, error_code(response)) == (403, "STORE_INACTIVE"), path

    assert patch(app_client, store_id, {"active": True}).json_body["active"] is True
    assert pos_purchase(app_client, key, staff_token).status_code == 201


def test_given_a_refund_at_a_closed_store_when_ops_refund_then_201(seeded, app_client, staff_token):
    store_id = create_store(app_client)["store_id"]
    key = issue_key(app_client, store_id)
    bought = pos_purchase(app_client, key, staff_token)
    assert bought.status_code == 201
    patch(app_client, store_id, {"active": False})
    refund = app_client.http.post(
        f"/v1/transactions/{bought.json_body['transaction_id']}/refunds",
        headers=auth(staff_token),
        body=json.dumps({"refund_id": "rf-1", "store_id": store_id, "amount": 100}),
    )
    assert refund.status_code == 201, refund.json_body


def test_given_another_container_closed_the_store_when_its_pos_calls_then_refused_once_the_cache_ages(
    seeded, app_client, staff_token, monkeypatch
):
    """Each container caches stores and keys for 10 s: a change made elsewhere is seen
    within that. The clock is moved, not waited for."""
    import time as real_time

    from chalicelib.dal import program as program_dal
    from chalicelib.dal.program import STORE_CACHE_SECONDS, DynamoProgramRepository
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.stores import update_store

    store_id = create_store(app_client)["store_id"]
    key = issue_key(app_client, store_id)
    assert pos_purchase(app_client, key, staff_token).status_code == 201  # store now cached

    now = real_time.monotonic()
    monkeypatch.setattr(program_dal, "_clock", lambda: now)
    update_store(store_id, {"active": False}, DynamoProgramRepository(), utc_now())
    assert pos_purchase(app_client, key, staff_token).status_code == 201  # not seen yet

    monkeypatch.setattr(program_dal, "_clock", lambda: now + STORE_CACHE_SECONDS + 0.1)
    refused = pos_purchase(app_client, key, staff_token)
    assert (refused.status_code, error_code(refused)) == (403, "STORE_INACTIVE")


def test_given_another_container_revoked_the_key_when_the_pos_signs_then_refused_once_the_cache_ages(
    seeded, app_client, staff_token, monkeypatch
):
    import time as real_time

    from chalicelib.dal import program as program_dal
    from chalicelib.dal.program import KEY_CACHE_SECONDS, DynamoProgramRepository
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.stores import revoke_key

    key = issue_key(app_client, "store-001")
    assert pos_purchase(app_client, key, staff_token).status_code == 201  # key now cached

    now = real_time.monotonic()
    monkeypatch.setattr(program_dal, "_clock", lambda: now)
    revoke_key("store-001", key["key_id"], DynamoProgramRepository(), utc_now())
    assert pos_purchase(app_client, key, staff_token).status_code == 201  # not seen yet

    monkeypatch.setattr(program_dal, "_clock", lambda: now + KEY_CACHE_SECONDS + 0.1)
    refused = pos_purchase(app_client, key, staff_token)
    assert (refused.status_code, error_code(refused)) == (401, "KEY_REVOKED")
