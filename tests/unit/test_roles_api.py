"""Staff roles over HTTP (chalice.test.Client on moto): store_staff act for their own store
only, ops run the program, admin alone holds limits, keys, stores and tier-rule apply."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from local.tools import member_or_staff_token
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos
from tests.unit.test_transactions_api import error_code, purchase_body, register


def store_staff(store: str | None = "store-001") -> str:
    return member_or_staff_token("store_staff", None, store=store)


def admin() -> str:
    return token_for(None, role="admin")


def post_member(client: Any, token: str, **fields: Any) -> Any:
    body = {"phone": unique_phone(), "channel": "pos", **fields}
    return client.http.post("/v1/members", headers=auth(token), body=json.dumps(body))


def lookup(client: Any, token: str, phone: str) -> Any:
    return client.http.get(
        f"/v1/members/lookup?phone={phone.replace('+', '%2B')}", headers=auth(token)
    )


# ---- the role model itself --------------------------------------------------------------


def test_given_every_route_then_admin_may_call_whatever_ops_may():
    import app  # noqa: F401  (registers every route)
    from chalicelib.api.http import OPERATIONS

    for op in OPERATIONS:
        if "ops" in op.access.staff:
            assert "admin" in op.access.staff, f"{op.method} {op.path}"


def test_given_every_route_then_admin_only_routes_are_exactly_limits_keys_stores_apply_audit_erase():
    import app  # noqa: F401
    from chalicelib.api.http import OPERATIONS

    admin_only = {
        (op.method, op.path)
        for op in OPERATIONS
        if op.access.staff == frozenset({"admin"}) and not op.access.store
    }
    assert admin_only == {
        ("POST", "/v1/admin/tier-rules/{version}/apply"),
        ("POST", "/v1/admin/dealers"),
        ("POST", "/v1/admin/stores"),
        ("PATCH", "/v1/admin/stores/{store_id}"),
        ("POST", "/v1/admin/stores/{store_id}/keys"),
        ("GET", "/v1/admin/stores/{store_id}/keys"),
        ("DELETE", "/v1/admin/stores/{store_id}/keys/{key_id}"),
        ("GET", "/v1/admin/audit"),  # who did what: admin only
        ("POST", "/v1/admin/members/{member_id}/erase"),  # PIPL erasure: admin only
        ("GET", "/v1/members/{member_id}/export"),  # of staff only admin (and the member)
    }


# ---- store_staff: their own store ---------------------------------------------------------


def test_given_store_staff_when_registering_without_a_store_then_the_member_is_at_their_store(
    seeded, app_client
):
    response = post_member(app_client, store_staff("store-002"))
    assert response.status_code == 201, response.json_body
    assert response.json_body["profile"]["store_id"] == "store-002"


def test_given_store_staff_when_registering_at_another_store_then_403_store_mismatch_and_nothing_written(
    seeded, app_client, staff_token
):
    phone = unique_phone()
    response = post_member(app_client, store_staff("store-001"), phone=phone, store_id="store-002")
    assert response.status_code == 403
    assert error_code(response) == "STORE_MISMATCH"
    assert lookup(app_client, staff_token, phone).status_code == 404


def test_given_store_staff_when_registering_at_their_own_store_by_name_then_201(seeded, app_client):
    response = post_member(app_client, store_staff("store-001"), store_id="store-001")
    assert response.status_code == 201, response.json_body


def test_given_a_store_staff_token_without_a_store_when_calling_any_route_then_403_store_not_assigned(
    seeded, app_client, staff_token
):
    phone = unique_phone()
    member_id = register(app_client, staff_token, phone=phone)
    token = store_staff(None)
    responses = [
        post_member(app_client, token),
        lookup(app_client, token, phone),
        app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)),
        app_client.http.patch(
            f"/v1/members/{member_id}", headers=auth(token), body=json.dumps({"name": "x"})
        ),
        app_client.http.get("/v1/transactions/t-1?store_id=store-001", headers=auth(token)),
        app_client.http.get("/v1/admin/stores/store-001", headers=auth(token)),
    ]
    assert [(r.status_code, error_code(r)) for r in responses] == [
        (403, "STORE_NOT_ASSIGNED")
    ] * len(responses)


def test_given_store_staff_when_changing_a_set_birthday_then_422_birthday_locked_but_ops_may(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token, birthday="1990-05-20", store_id="store-001")
    change = json.dumps({"birthday": "1990-01-01"})
    refused = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(store_staff()), body=change
    )
    assert refused.status_code == 422
    assert error_code(refused) == "BIRTHDAY_LOCKED"
    renamed = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(store_staff()), body=json.dumps({"name": "王芳"})
    )
    assert renamed.status_code == 200, renamed.json_body
    # store staff see the masked view (no birthday): read back as ops
    kept = app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token))
    assert kept.json_body["profile"]["birthday"] == "1990-05-20"
    by_ops = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(staff_token), body=change
    )
    assert by_ops.status_code == 200, by_ops.json_body
    assert by_ops.json_body["profile"]["birthday"] == "1990-01-01"


@pytest.mark.parametrize("suffix", ["points", "ledger", "tier"])
def test_given_store_staff_when_reading_a_members_points_ledger_or_tier_then_403(
    seeded, app_client, staff_token, suffix
):
    member_id = register(app_client, staff_token)
    response = app_client.http.get(f"/v1/members/{member_id}/{suffix}", headers=auth(store_staff()))
    assert response.status_code == 403
    assert error_code(response) == "ROLE_REQUIRED"


def test_given_store_staff_when_posting_a_purchase_then_403_only_a_pos_or_ops_record_one(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    response = app_client.http.post(
        "/v1/transactions", headers=auth(store_staff()), body=json.dumps(purchase_body(member_id))
    )
    assert response.status_code == 403
    assert error_code(response) == "ROLE_REQUIRED"


def test_given_purchases_at_two_stores_when_store_staff_read_and_refund_then_only_their_stores(
    seeded, app_client, staff_token
):
    from local.tools import create_store_key

    member_id = register(app_client, staff_token)
    mine = purchase_body(member_id, store_id="store-001")
    theirs = purchase_body(member_id, store_id="store-002")
    assert (
        Pos(app_client, create_store_key("store-001"))
        .send("POST", "/v1/transactions", mine)
        .status_code
        == 201
    )
    assert (
        Pos(app_client, create_store_key("store-002"))
        .send("POST", "/v1/transactions", theirs)
        .status_code
        == 201
    )
    token = store_staff("store-001")

    own = app_client.http.get(f"/v1/transactions/{mine['transaction_id']}", headers=auth(token))
    assert own.status_code == 200, own.json_body
    named_other = app_client.http.get(
        f"/v1/transactions/{theirs['transaction_id']}?store_id=store-002", headers=auth(token)
    )
    assert (named_other.status_code, error_code(named_other)) == (403, "STORE_MISMATCH")
    unnamed_other = app_client.http.get(
        f"/v1/transactions/{theirs['transaction_id']}", headers=auth(token)
    )
    assert (unnamed_other.status_code, error_code(unnamed_other)) == (404, "TRANSACTION_NOT_FOUND")

    refund_other = app_client.http.post(
        f"/v1/transactions/{theirs['transaction_id']}/refunds",
        headers=auth(token),
        body=json.dumps({"refund_id": "rf-x", "store_id": "store-002", "amount": 100}),
    )
    assert (refund_other.status_code, error_code(refund_other)) == (403, "STORE_MISMATCH")
    refund_own = app_client.http.post(
        f"/v1/transactions/{mine['transaction_id']}/refunds",
        headers=auth(token),
        body=json.dumps({"refund_id": "rf-1", "amount": 100}),
    )
    assert refund_own.status_code == 201, refund_own.json_body
    untouched = app_client.http.get(
        f"/v1/transactions/{theirs['transaction_id']}?store_id=store-002", headers=auth(staff_token)
    )
    assert untouched.json_body["refunds"] == []


def test_given_store_staff_when_reading_stores_then_only_their_own(seeded, app_client):
    token = store_staff("store-001")
    own = app_client.http.get("/v1/admin/stores/store-001", headers=auth(token))
    assert own.status_code == 200, own.json_body
    other = app_client.http.get("/v1/admin/stores/store-002", headers=auth(token))
    assert (other.status_code, error_code(other)) == (403, "STORE_MISMATCH")
    listing = app_client.http.get("/v1/admin/stores", headers=auth(token))
    assert (listing.status_code, error_code(listing)) == (403, "ROLE_REQUIRED")


def test_given_a_closed_store_when_its_staff_call_then_403_store_inactive(seeded, app_client):
    store_id = new_store(app_client)
    token = store_staff(store_id)
    assert post_member(app_client, token).status_code == 201
    close(app_client, store_id)
    refused = post_member(app_client, token)
    assert (refused.status_code, error_code(refused)) == (403, "STORE_INACTIVE")


# ---- ops and admin ------------------------------------------------------------------------


def new_store(client: Any) -> str:
    store_id = f"store-{uuid.uuid4().hex[:8]}"
    created = client.http.post(
        "/v1/admin/stores",
        headers=auth(admin()),
        body=json.dumps({"store_id": store_id, "dealer_id": "dealer-demo", "name": "Pop-up"}),
    )
    assert created.status_code == 201, created.json_body
    return store_id


def close(client: Any, store_id: str) -> None:
    closed = client.http.patch(
        f"/v1/admin/stores/{store_id}", headers=auth(admin()), body=json.dumps({"active": False})
    )
    assert closed.status_code == 200, closed.json_body


def program(client: Any, token: str) -> dict[str, Any]:
    response = client.http.get("/v1/admin/program", headers=auth(token))
    assert response.status_code == 200
    return dict(response.json_body["config"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_adjustment", 1_000_000_000),
        ("max_points_per_purchase", 50),
        ("payment_cap_pct", 100),
        ("points_per_yuan_payment", 1),
    ],
)
def test_given_ops_when_changing_a_program_limit_then_403_limits_require_admin_and_nothing_changes(
    seeded, app_client, staff_token, field, value
):
    before = program(app_client, staff_token)
    response = app_client.http.put(
        "/v1/admin/program", headers=auth(staff_token), body=json.dumps({**before, field: value})
    )
    assert response.status_code == 403
    assert error_code(response) == "LIMITS_REQUIRE_ADMIN"
    assert response.json_body["error"]["details"] == {"fields": [field]}
    assert program(app_client, staff_token) == before


def test_given_ops_when_changing_other_rules_with_the_limits_as_read_then_200(
    seeded, app_client, staff_token
):
    before = program(app_client, staff_token)
    response = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**before, "pending_days": 7, "base_points_per_yuan": 2.0}),
    )
    assert response.status_code == 200, response.json_body
    assert response.json_body["config"]["max_adjustment"] == before["max_adjustment"]


def test_given_an_admin_when_changing_a_limit_then_200_and_ops_keep_it_by_sending_it_back(
    seeded, app_client, staff_token
):
    before = program(app_client, staff_token)
    raised = app_client.http.put(
        "/v1/admin/program",
        headers=auth(admin()),
        body=json.dumps({**before, "max_adjustment": 50}),
    )
    assert raised.status_code == 200, raised.json_body
    after = raised.json_body["config"]
    kept = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**after, "pending_days": 1}),
    )
    assert kept.status_code == 200, kept.json_body
    assert kept.json_body["config"]["max_adjustment"] == 50


def test_given_ops_with_a_stale_version_when_putting_then_409_before_any_limit_check(
    seeded, app_client, staff_token
):
    before = program(app_client, staff_token)
    first = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**before, "pending_days": 2}),
    )
    assert first.status_code == 200
    stale = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**before, "max_adjustment": 5}),  # version as first read
    )
    assert (stale.status_code, error_code(stale)) == (409, "VERSION_CONFLICT")


def test_given_ops_when_applying_tier_rules_then_403_but_an_admin_may(
    seeded, app_client, staff_token, monkeypatch
):
    from chalicelib.wiring import services
    from tests.unit.test_tier_rules_api import ladder

    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: None)
    created = app_client.http.post(
        "/v1/admin/tier-rules", headers=auth(staff_token), body=json.dumps(ladder())
    )
    version = created.json_body["version"]
    by_ops = app_client.http.post(
        f"/v1/admin/tier-rules/{version}/apply", headers=auth(staff_token)
    )
    assert (by_ops.status_code, error_code(by_ops)) == (403, "ROLE_REQUIRED")
    by_admin = app_client.http.post(f"/v1/admin/tier-rules/{version}/apply", headers=auth(admin()))
    assert by_admin.status_code == 202, by_admin.json_body


def test_given_ops_when_purchasing_or_registering_at_a_closed_store_then_422_store_inactive(
    seeded, app_client, staff_token
):
    store_id = new_store(app_client)
    close(app_client, store_id)
    member_id = register(app_client, staff_token)
    purchase = app_client.http.post(
        "/v1/transactions",
        headers=auth(staff_token),
        body=json.dumps(purchase_body(member_id, store_id=store_id)),
    )
    assert (purchase.status_code, error_code(purchase)) == (422, "STORE_INACTIVE")
    registration = post_member(app_client, staff_token, store_id=store_id)
    assert (registration.status_code, error_code(registration)) == (422, "STORE_INACTIVE")


# ---- found in review: store scope on profile changes, ops minting through activities ---


def test_given_store_staff_of_store_1_when_changing_a_store_2_members_profile_then_403_and_nothing_changes(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token, store_id="store-002")
    change = {"marketing_consent": True, "email": "x@example.com", "birthday": "1990-01-01"}
    refused = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(store_staff("store-001")), body=json.dumps(change)
    )
    assert refused.status_code == 403
    assert error_code(refused) == "STORE_MISMATCH"
    member = app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token)).json_body
    assert member["profile"]["email"] is None
    assert member["profile"]["birthday"] is None
    own = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(store_staff("store-002")), body=json.dumps(change)
    )
    assert own.status_code == 200, own.json_body


def test_given_ops_when_making_an_activity_worth_more_than_max_adjustment_then_403_but_an_admin_may(
    seeded, app_client, staff_token
):
    capped = {**program(app_client, staff_token), "max_adjustment": 1000}
    set_by_admin = app_client.http.put(
        "/v1/admin/program", headers=auth(admin()), body=json.dumps(capped)
    )
    assert set_by_admin.status_code == 200, set_by_admin.json_body
    before = program(app_client, staff_token)
    activities = dict(before["activities"])
    activities["checkin"] = {"points": 1001, "period": "day", "limit": 1000}
    proposed = {**before, "activities": activities}
    refused = app_client.http.put(
        "/v1/admin/program", headers=auth(staff_token), body=json.dumps(proposed)
    )
    assert refused.status_code == 403
    assert error_code(refused) == "LIMITS_REQUIRE_ADMIN"
    assert refused.json_body["error"]["details"] == {"fields": ["activities.checkin"]}
    assert program(app_client, staff_token) == before
    small = {**activities, "checkin": {"points": 10, "period": "day", "limit": 2}}
    allowed = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**before, "activities": small}),
    )
    assert allowed.status_code == 200, allowed.json_body
    by_admin = app_client.http.put(
        "/v1/admin/program",
        headers=auth(admin()),
        body=json.dumps({**allowed.json_body["config"], "activities": activities}),
    )
    assert by_admin.status_code == 200, by_admin.json_body


@pytest.mark.parametrize("role", ["ops", "admin", "store_staff"])
def test_given_staff_when_posting_a_members_activity_then_403_staff_credit_through_adjustments(
    seeded, app_client, staff_token, role
):
    member_id = register(app_client, staff_token, store_id="store-001")
    token = store_staff() if role == "store_staff" else token_for(None, role=role)
    response = app_client.http.post(
        f"/v1/members/{member_id}/activities",
        headers=auth(token),
        body=json.dumps({"activity_id": "c-1", "type": "checkin"}),
    )
    assert response.status_code == 403
    points = app_client.http.get(f"/v1/members/{member_id}/points", headers=auth(staff_token))
    assert points.json_body["balance"] == 0
