"""Broken object-level authorization, tried over HTTP against the running local stack.

Member routes are taken from the registry of operations (chalicelib/api/http.OPERATIONS),
so a route added later is tried too: a member A against member B on every route a member
may call, a member against every other route, a POS of one store against another store,
store staff of one store against another store. Closing a store and revoking a key are
tried as an admin does them, over HTTP."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.clients import SIGNUP_BONUS, Pos
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


def operations() -> list[Any]:
    import app  # noqa: F401  (registering the blueprints fills the registry)
    from chalicelib.api.http import OPERATIONS

    return list(OPERATIONS)


def concrete(path: str, **values: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: values.get(m.group(1), "x"), path)


def call(api: str, method: str, path: str, token: str, body: Any = None) -> requests.Response:
    data = (
        json.dumps(body if body is not None else {}) if method in ("POST", "PUT", "PATCH") else None
    )
    return requests.request(method, f"{api}{path}", headers=auth(token), data=data, timeout=10)


def staff(role: str, store: str | None = None) -> str:
    from local.tools import member_or_staff_token

    return member_or_staff_token(role, None, store=store)


def register(api: str, token: str | None = None, **fields: Any) -> requests.Response:
    return requests.post(
        f"{api}/v1/members",
        headers=auth(token or staff("ops")),
        data=json.dumps({"phone": unique_phone(), "channel": "pos", **fields}),
        timeout=10,
    )


def new_member(api: str) -> tuple[str, str]:
    card = f"B{uuid.uuid4().hex[:10]}"
    response = register(api, external_ids={"pos_card": card})
    assert response.status_code == 201, response.text
    return str(response.json()["member_id"]), card


def error_code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def purchase(store_id: str, card: str, **overrides: Any) -> dict[str, Any]:
    return {
        "transaction_id": f"bola-{uuid.uuid4().hex[:10]}",
        "store_id": store_id,
        "card": card,
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [{"sku": "tea", "quantity": 1, "unit_price": 2500}],
        "total": 2500,
        **overrides,
    }


# ---- member A -> member B ------------------------------------------------------------------


def test_given_member_a_when_calling_every_member_route_for_b_then_403_the_same_whether_b_exists(
    stack, stack_env
):
    api = stack.base_url
    a, _ = new_member(api)
    b, _ = new_member(api)
    missing = f"mbr_{uuid.uuid4().hex[:20]}"
    token = token_for(a)
    member_routes = [op for op in operations() if op.access.member_self]
    assert len(member_routes) >= 6  # member, profile, points, ledger, activities, tier...
    for op in member_routes:
        to_b = call(api, op.method, concrete(op.path, member_id=b), token)
        to_nobody = call(api, op.method, concrete(op.path, member_id=missing), token)
        assert to_b.status_code == 403, f"{op.method} {op.path}: {to_b.text}"
        assert to_b.json() == to_nobody.json(), f"{op.method} {op.path}"
        assert to_nobody.status_code == 403
        # the same request for A's own id passes authorization (whatever it then says)
        own = call(api, op.method, concrete(op.path, member_id=a), token)
        assert own.status_code != 403, f"{op.method} {op.path}: {own.text}"


def test_given_a_member_when_calling_every_staff_or_pos_route_then_403_even_for_their_own_id(
    stack, stack_env
):
    api = stack.base_url
    a, _ = new_member(api)
    token = token_for(a)
    others = [
        op
        for op in operations()
        if not (
            op.access.public or op.access.member_self or op.access.member or op.access.registrant
        )
    ]
    assert any(op.path.startswith("/v1/admin/stores") for op in others)
    for op in others:
        path = concrete(op.path, member_id=a, store_id="store-001")
        response = call(api, op.method, path, token, body={})
        assert response.status_code == 403, f"{op.method} {path}: {response.text}"


def test_given_a_pos_when_calling_every_route_not_open_to_a_pos_then_403(stack, stack_env):
    from local.tools import create_store_key

    api = stack.base_url
    pos = Pos(api, create_store_key("store-001"))
    a, _ = new_member(api)
    for op in operations():
        if op.access.public or op.access.store:
            continue
        path = concrete(op.path, member_id=a, store_id="store-001")
        payload = {} if op.method in ("POST", "PUT", "PATCH") else None
        response = pos.send(op.method, path, payload)
        assert response.status_code == 403, f"{op.method} {path}: {response.text}"


# ---- POS of store 1 -> store 2 -------------------------------------------------------------


def test_given_a_pos_of_store_1_when_acting_for_store_2_then_403_or_not_found_and_nothing_changes(
    stack, stack_env
):
    from local.tools import create_store_key

    api = stack.base_url
    pos1 = Pos(api, create_store_key("store-001"))
    pos2 = Pos(api, create_store_key("store-002"))
    member_id, card = new_member(api)
    bought = purchase("store-002", card)
    assert pos2.send("POST", "/v1/transactions", bought).status_code == 201
    txn = bought["transaction_id"]
    ops = staff("ops")

    def points() -> int:
        return int(
            requests.get(
                f"{api}/v1/members/{member_id}/points", headers=auth(ops), timeout=10
            ).json()["balance"]
        )

    # the sign-up bonus arrives through the members stream: settle it before the baseline
    assert wait_for(lambda: points() >= SIGNUP_BONUS)
    balance = points()

    register_there = pos1.send(
        "POST", "/v1/members", {"phone": unique_phone(), "channel": "pos", "store_id": "store-002"}
    )
    assert (register_there.status_code, error_code(register_there)) == (403, "STORE_MISMATCH")
    buy_there = pos1.send("POST", "/v1/transactions", purchase("store-002", card))
    assert (buy_there.status_code, error_code(buy_there)) == (403, "STORE_MISMATCH")
    refund_named = pos1.send(
        "POST",
        f"/v1/transactions/{txn}/refunds",
        {"refund_id": "rf-bola", "store_id": "store-002", "amount": 100},
    )
    assert (refund_named.status_code, error_code(refund_named)) == (403, "STORE_MISMATCH")
    refund_unnamed = pos1.send(
        "POST", f"/v1/transactions/{txn}/refunds", {"refund_id": "rf-bola", "amount": 100}
    )
    assert (refund_unnamed.status_code, error_code(refund_unnamed)) == (
        404,
        "TRANSACTION_NOT_FOUND",
    )
    read_named = pos1.send("GET", f"/v1/transactions/{txn}", query="?store_id=store-002")
    assert (read_named.status_code, error_code(read_named)) == (403, "STORE_MISMATCH")
    read_unnamed = pos1.send("GET", f"/v1/transactions/{txn}")
    assert (read_unnamed.status_code, error_code(read_unnamed)) == (404, "TRANSACTION_NOT_FOUND")
    # store 1's key presented as store 2's
    as_store_2 = Pos(api, pos1.key, store_id="store-002").send("GET", f"/v1/transactions/{txn}")
    assert (as_store_2.status_code, error_code(as_store_2)) == (403, "STORE_MISMATCH")

    seen = requests.get(
        f"{api}/v1/transactions/{txn}?store_id=store-002", headers=auth(ops), timeout=10
    ).json()
    assert seen["refunds"] == []
    assert points() == balance


# ---- store_staff of store 1 -> store 2 -----------------------------------------------------


def test_given_store_staff_of_store_1_when_acting_for_store_2_then_403_and_their_own_store_works(
    stack, stack_env
):
    from local.tools import create_store_key

    api = stack.base_url
    mine = staff("store_staff", store="store-001")
    _, card = new_member(api)
    theirs = purchase("store-002", card)
    assert (
        Pos(api, create_store_key("store-002")).send("POST", "/v1/transactions", theirs).status_code
        == 201
    )
    txn = theirs["transaction_id"]

    there = register(api, mine, store_id="store-002")
    assert (there.status_code, error_code(there)) == (403, "STORE_MISMATCH")
    here = register(api, mine)
    assert here.status_code == 201, here.text
    assert here.json()["profile"]["store_id"] == "store-001"

    read = requests.get(
        f"{api}/v1/transactions/{txn}?store_id=store-002", headers=auth(mine), timeout=10
    )
    assert (read.status_code, error_code(read)) == (403, "STORE_MISMATCH")
    refund = call(
        api,
        "POST",
        f"/v1/transactions/{txn}/refunds",
        mine,
        {"refund_id": "rf-staff", "store_id": "store-002", "amount": 100},
    )
    assert (refund.status_code, error_code(refund)) == (403, "STORE_MISMATCH")
    buy = call(api, "POST", "/v1/transactions", mine, purchase("store-001", card))
    assert (buy.status_code, error_code(buy)) == (403, "ROLE_REQUIRED")

    unassigned = register(api, staff("store_staff"))
    assert (unassigned.status_code, error_code(unassigned)) == (403, "STORE_NOT_ASSIGNED")


# ---- an admin closes a store and revokes a key ---------------------------------------------


def test_given_an_admin_when_closing_a_store_and_revoking_a_key_then_its_pos_is_refused_at_once(
    stack, stack_env
):
    api = stack.base_url
    admin = staff("admin")
    store_id = f"bola-{uuid.uuid4().hex[:8]}"
    created = call(
        api,
        "POST",
        "/v1/admin/stores",
        admin,
        {"store_id": store_id, "dealer_id": "dealer-demo", "name": "Pop-up 快闪店"},
    )
    assert created.status_code == 201, created.text
    issued = call(api, "POST", f"/v1/admin/stores/{store_id}/keys", admin)
    assert issued.status_code == 201, issued.text
    pos = Pos(api, issued.json())
    _, card = new_member(api)
    assert pos.send("POST", "/v1/transactions", purchase(store_id, card)).status_code == 201

    closed = call(api, "PATCH", f"/v1/admin/stores/{store_id}", admin, {"active": False})
    assert closed.status_code == 200, closed.text
    refused = pos.send("POST", "/v1/transactions", purchase(store_id, card))
    assert (refused.status_code, error_code(refused)) == (403, "STORE_INACTIVE")
    staffed = register(api, staff("store_staff", store=store_id))
    assert (staffed.status_code, error_code(staffed)) == (403, "STORE_INACTIVE")

    reopened = call(api, "PATCH", f"/v1/admin/stores/{store_id}", admin, {"active": True})
    assert reopened.status_code == 200, reopened.text
    assert pos.send("POST", "/v1/transactions", purchase(store_id, card)).status_code == 201

    revoked = requests.delete(
        f"{api}/v1/admin/stores/{store_id}/keys/{pos.key['key_id']}",
        headers=auth(admin),
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    gone = pos.send("POST", "/v1/transactions", purchase(store_id, card))
    assert (gone.status_code, error_code(gone)) == (401, "KEY_REVOKED")
