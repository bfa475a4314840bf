"""Coupon templates, staff issue, a member's coupons and redeeming at a till, over HTTP
(chalice.test.Client on moto): who may call each route, bad input refused with nothing
written, replays answered the same."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import auth, token_for
from tests.helpers import Pos
from tests.unit.test_transactions_api import error_code, register


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ops() -> dict[str, str]:
    return auth(token_for(None, role="ops"))


def send(client: Any, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
    return client.http.request(
        method,
        path,
        headers={**(headers or ops()), "Content-Type": "application/json"},
        body=json.dumps(body) if body is not None else b"",
    )


def template_body(**fields: Any) -> dict[str, Any]:
    return {
        "template_id": fresh_id("tpl"),
        "name": "¥10 off ¥100",
        "kind": "amount_off",
        "value": 1000,
        "min_spend": 10000,
        "valid_days": 30,
        **fields,
    }


def create_template(client: Any, **fields: Any) -> dict[str, Any]:
    response = send(client, "POST", "/v1/admin/coupon-templates", template_body(**fields))
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def issue(client: Any, member_id: str, template_id: str, issue_id: str | None = None) -> Any:
    return send(
        client,
        "POST",
        f"/v1/admin/members/{member_id}/coupons",
        {"issue_id": issue_id or fresh_id("iss"), "template_id": template_id},
    )


def listed(client: Any, member_id: str, query: str = "", headers: Any = None) -> Any:
    return client.http.get(
        f"/v1/members/{member_id}/coupons{query}", headers=headers or auth(token_for(member_id))
    )


def template_items(table_prefix: str = "COUPON_TEMPLATE#") -> list[dict[str, Any]]:
    import boto3

    from chalicelib.config import get_settings

    settings = get_settings()
    client = boto3.client("dynamodb", region_name=settings.region)
    items = client.scan(TableName=settings.program_table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(table_prefix)]


def coupon_items() -> list[dict[str, Any]]:
    import boto3

    from chalicelib.config import get_settings

    settings = get_settings()
    client = boto3.client("dynamodb", region_name=settings.region)
    items = client.scan(TableName=settings.members_table)["Items"]
    return [i for i in items if i["pk"]["S"].startswith("COUPON#")]


# ---- templates --------------------------------------------------------------------------


def test_given_a_template_when_created_twice_then_the_same_201_and_another_body_is_409(
    seeded, app_client
):
    body = template_body(
        kind="percent_off",
        value=15,
        max_off=5000,
        valid_days=None,
        valid_from="2026-01-01T00:00:00+08:00",
        valid_to="2027-01-01T00:00:00+08:00",
        stores=["store-001"],
    )
    first = send(app_client, "POST", "/v1/admin/coupon-templates", body)
    assert first.status_code == 201, first.json_body
    assert first.json_body["status"] == "active"
    assert first.json_body["version"] == 1
    assert first.json_body["valid_from"] == "2025-12-31T16:00:00.000Z"
    again = send(app_client, "POST", "/v1/admin/coupon-templates", body)
    assert (again.status_code, again.json_body) == (201, first.json_body)
    other = send(app_client, "POST", "/v1/admin/coupon-templates", {**body, "value": 20})
    assert (other.status_code, error_code(other)) == (409, "IDEMPOTENCY_CONFLICT")
    got = app_client.http.get(f"/v1/admin/coupon-templates/{body['template_id']}", headers=ops())
    assert got.json_body == first.json_body
    page = app_client.http.get("/v1/admin/coupon-templates?limit=100", headers=ops())
    assert body["template_id"] in [t["template_id"] for t in page.json_body["templates"]]


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"value": 0}, 400, "VALIDATION_ERROR"),
        ({"kind": "percent_off", "value": 101}, 400, "VALIDATION_ERROR"),
        ({"max_off": 500}, 400, "VALIDATION_ERROR"),  # a cap on an amount off
        (
            {"valid_from": "2026-01-01T00:00:00Z", "valid_to": "2026-02-01T00:00:00Z"},
            400,
            "VALIDATION_ERROR",
        ),  # both valid_days and a window
        ({"valid_days": None}, 400, "VALIDATION_ERROR"),  # neither
        (
            {
                "valid_days": None,
                "valid_from": "2026-02-01T00:00:00Z",
                "valid_to": "2026-01-01T00:00:00Z",
            },
            400,
            "VALIDATION_ERROR",
        ),  # a window ending before it starts
        ({"valid_days": None, "valid_from": "2026-02-01T00:00:00Z"}, 400, "VALIDATION_ERROR"),
        ({"stores": ["store-nowhere"]}, 422, "UNKNOWN_STORE"),
        ({"value": "1000"}, 400, "VALIDATION_ERROR"),
    ],
)
def test_given_a_bad_template_when_created_then_4xx_with_a_code_and_nothing_written(
    seeded, app_client, fields, status, code
):
    body = {k: v for k, v in template_body(**fields).items() if v is not None}
    response = send(app_client, "POST", "/v1/admin/coupon-templates", body)
    assert (response.status_code, error_code(response)) == (status, code), response.json_body
    assert [i for i in template_items() if i["pk"]["S"].endswith(body["template_id"])] == []
    listing = template_items("COUPON_TEMPLATES")
    assert [i for i in listing if i["sk"]["S"] == body["template_id"]] == []


@pytest.mark.parametrize("role", ["member", "store_staff", "pos"])
def test_given_no_ops_role_when_creating_a_template_then_403(seeded, app_client, store_key, role):
    body = template_body()
    if role == "pos":
        response = Pos(app_client, store_key).send("POST", "/v1/admin/coupon-templates", body)
    else:
        member_id = register(app_client, token_for(None, "ops")) if role == "member" else None
        headers = auth(token_for(member_id, role if role != "member" else "member"))
        response = send(app_client, "POST", "/v1/admin/coupon-templates", body, headers)
    assert response.status_code == 403, response.json_body
    assert [i for i in template_items() if i["pk"]["S"].endswith(body["template_id"])] == []


def test_given_a_template_when_edited_with_the_read_version_then_it_changes_and_a_stale_edit_is_409(
    seeded, app_client
):
    template = create_template(app_client)
    path = f"/v1/admin/coupon-templates/{template['template_id']}"
    edited = send(app_client, "PATCH", path, {"version": 1, "name": "¥10 off, weekends"})
    assert edited.status_code == 200, edited.json_body
    assert (edited.json_body["name"], edited.json_body["version"]) == ("¥10 off, weekends", 2)
    stale = send(app_client, "PATCH", path, {"version": 1, "status": "retired"})
    assert (stale.status_code, error_code(stale)) == (409, "VERSION_CONFLICT")
    face = send(app_client, "PATCH", path, {"version": 2, "value": 5000})
    assert (face.status_code, error_code(face)) == (400, "FIELD_NOT_WRITABLE")
    window = send(
        app_client,
        "PATCH",
        path,
        {"version": 2, "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2026-03-01T00:00:00Z"},
    )
    assert window.status_code == 200, window.json_body
    assert window.json_body["valid_days"] is None
    assert window.json_body["version"] == 3
    cap = send(app_client, "PATCH", path, {"version": 3, "max_off": 100})
    assert (cap.status_code, error_code(cap)) == (400, "VALIDATION_ERROR")
    missing = send(app_client, "PATCH", "/v1/admin/coupon-templates/nope", {"version": 1})
    assert (missing.status_code, error_code(missing)) == (404, "TEMPLATE_NOT_FOUND")


# ---- staff issue --------------------------------------------------------------------------


def test_given_a_template_when_staff_issue_then_201_a_typable_code_and_a_replay_answers_the_same(
    seeded, app_client
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    issue_id = fresh_id("iss")
    first = issue(app_client, member_id, template["template_id"], issue_id)
    assert first.status_code == 201, first.json_body
    coupon = first.json_body
    assert len(coupon["code"]) == 19
    assert coupon["code"].count("-") == 3
    assert (coupon["status"], coupon["template_id"], coupon["value"]) == (
        "active",
        template["template_id"],
        1000,
    )
    assert datetime.fromisoformat(coupon["valid_to"]) - datetime.fromisoformat(
        coupon["valid_from"]
    ) == timedelta(days=30)
    again = issue(app_client, member_id, template["template_id"], issue_id)
    assert (again.status_code, again.json_body) == (201, coupon)
    other = create_template(app_client)
    conflict = issue(app_client, member_id, other["template_id"], issue_id)
    assert (conflict.status_code, error_code(conflict)) == (409, "IDEMPOTENCY_CONFLICT")
    assert len(coupon_items()) == 1


def test_given_bad_issues_then_4xx_with_a_code_and_no_coupon_written(seeded, app_client):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    unknown = issue(app_client, member_id, "no-such-template")
    assert (unknown.status_code, error_code(unknown)) == (404, "TEMPLATE_NOT_FOUND")
    nobody = issue(app_client, "m_nobody", template["template_id"])
    assert (nobody.status_code, error_code(nobody)) == (404, "MEMBER_NOT_FOUND")
    path = f"/v1/admin/coupon-templates/{template['template_id']}"
    assert send(app_client, "PATCH", path, {"version": 1, "status": "retired"}).status_code == 200
    retired = issue(app_client, member_id, template["template_id"])
    assert (retired.status_code, error_code(retired)) == (422, "TEMPLATE_RETIRED")
    past = create_template(
        app_client,
        valid_days=None,
        valid_from="2020-01-01T00:00:00Z",
        valid_to="2020-02-01T00:00:00Z",
    )
    over = issue(app_client, member_id, past["template_id"])
    assert (over.status_code, error_code(over)) == (422, "TEMPLATE_EXPIRED")
    assert coupon_items() == []


@pytest.mark.parametrize("role", ["member", "store_staff"])
def test_given_a_member_or_store_staff_token_when_issuing_then_403_and_nothing_written(
    seeded, app_client, role
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    headers = auth(token_for(member_id) if role == "member" else token_for(None, role))
    response = send(
        app_client,
        "POST",
        f"/v1/admin/members/{member_id}/coupons",
        {"issue_id": "i-1", "template_id": template["template_id"]},
        headers,
    )
    assert response.status_code == 403, response.json_body
    assert coupon_items() == []


# ---- a member's coupons -------------------------------------------------------------------


def test_given_coupons_when_the_member_lists_them_then_newest_first_in_pages_and_filtered(
    seeded, app_client
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    codes = [
        issue(app_client, member_id, template["template_id"]).json_body["code"] for _ in range(3)
    ]
    first = listed(app_client, member_id, "?limit=2")
    assert first.status_code == 200, first.json_body
    assert [c["code"] for c in first.json_body["coupons"]] == codes[::-1][:2]
    assert first.json_body["coupons"][0]["name"] == template["name"]
    rest = listed(app_client, member_id, f"?limit=2&cursor={first.json_body['next_cursor']}")
    assert [c["code"] for c in rest.json_body["coupons"]] == codes[:1]
    used = listed(app_client, member_id, "?status=used")
    assert used.json_body["coupons"] == []
    staff = listed(app_client, member_id, headers=ops())
    assert staff.status_code == 200


def test_given_another_member_when_listing_coupons_then_403_and_a_foreign_cursor_is_400(
    seeded, app_client
):
    owner = register(app_client, token_for(None, "ops"))
    other = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    for _ in range(2):
        issue(app_client, owner, template["template_id"])
    response = listed(app_client, owner, headers=auth(token_for(other)))
    assert (response.status_code, error_code(response)) == (403, "FORBIDDEN")
    cursor = listed(app_client, owner, "?limit=1").json_body["next_cursor"]
    foreign = listed(app_client, other, f"?cursor={cursor}")
    assert (foreign.status_code, error_code(foreign)) == (400, "INVALID_CURSOR")
    garbage = listed(app_client, other, "?cursor=bm90LWpzb24")
    assert (garbage.status_code, error_code(garbage)) == (400, "INVALID_CURSOR")


def test_given_store_staff_when_listing_a_members_coupons_then_codes_are_masked(seeded, app_client):
    """Given a member's active coupon, when store staff (of any store) list the member's
    coupons, then they see its state and terms but not its code: a code is a bearer
    secret a till redeems without owner or member code (POST /v1/coupons/{code}/redeem),
    so staff harvesting codes could spend any member's coupons at their own till."""
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    staff = auth(_store_staff())
    response = listed(app_client, member_id, headers=staff)
    assert response.status_code == 200, response.json_body
    (shown,) = response.json_body["coupons"]
    assert shown["status"] == "active"
    assert shown["code"] != code
    assert shown["code"] == "****-****-****-" + code[-4:]
    own = listed(app_client, member_id).json_body["coupons"]
    assert own[0]["code"] == code  # the member sees it whole
    assert listed(app_client, member_id, headers=ops()).json_body["coupons"][0]["code"] == code


def _store_staff() -> str:
    from local.tools import member_or_staff_token

    return member_or_staff_token("store_staff", None, store="store-001")


def test_given_a_pos_when_listing_a_members_coupons_then_403(seeded, app_client, store_key):
    member_id = register(app_client, token_for(None, "ops"))
    response = Pos(app_client, store_key).send("GET", f"/v1/members/{member_id}/coupons")
    assert response.status_code == 403


# ---- redeem at a till ---------------------------------------------------------------------


def redeem(pos: Pos, code: str, transaction_id: str, store_id: str = "store-001") -> Any:
    return pos.send(
        "POST",
        f"/v1/coupons/{code}/redeem",
        {"transaction_id": transaction_id, "store_id": store_id},
    )


def test_given_a_coupon_when_a_pos_redeems_it_then_it_is_used_once_and_a_retry_answers_the_same(
    seeded, app_client, store_key
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    pos = Pos(app_client, store_key)
    first = redeem(pos, code.lower().replace("-", " "), "t-1")  # typed: any case, spaces
    assert first.status_code == 200, first.json_body
    assert (first.json_body["status"], first.json_body["transaction_id"]) == ("used", "t-1")
    assert first.json_body["member_id"] == member_id
    again = redeem(pos, code, "t-1")  # a retry: a fresh nonce, the same transaction
    assert (again.status_code, again.json_body) == (200, first.json_body)
    other = redeem(pos, code, "t-2")
    assert (other.status_code, error_code(other)) == (409, "COUPON_USED")
    coupons = listed(app_client, member_id).json_body["coupons"]
    assert coupons[0]["status"] == "used"
    assert coupons[0]["used_at"] == first.json_body["used_at"]


def test_given_a_signed_redemption_when_it_is_replayed_then_401_nonce_reused(
    seeded, app_client, store_key
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    pos = Pos(app_client, store_key)
    path = f"/v1/coupons/{code}/redeem"
    body, headers = pos.signed("POST", path, {"transaction_id": "t-1", "store_id": "store-001"})
    first = app_client.http.request("POST", path, headers=headers, body=body)
    assert first.status_code == 200, first.json_body
    replay = app_client.http.request("POST", path, headers=headers, body=body)
    assert (replay.status_code, error_code(replay)) == (401, "NONCE_REUSED")


def test_given_a_pos_of_store_a_when_it_redeems_as_store_b_then_403_and_the_coupon_stays_active(
    seeded, app_client, store_key
):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    response = redeem(Pos(app_client, store_key), code, "t-1", store_id="store-002")
    assert (response.status_code, error_code(response)) == (403, "STORE_MISMATCH")
    assert listed(app_client, member_id).json_body["coupons"][0]["status"] == "active"


def test_given_a_member_token_when_redeeming_then_403(seeded, app_client):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    response = send(
        app_client,
        "POST",
        f"/v1/coupons/{code}/redeem",
        {"transaction_id": "t-1", "store_id": "store-001"},
        auth(token_for(member_id)),
    )
    assert response.status_code == 403
    assert listed(app_client, member_id).json_body["coupons"][0]["status"] == "active"


def test_given_unusable_coupons_when_redeemed_then_4xx_with_a_code_and_nothing_changes(
    seeded, app_client, store_key
):
    member_id = register(app_client, token_for(None, "ops"))
    elsewhere = create_template(app_client, stores=["store-002"])
    code = issue(app_client, member_id, elsewhere["template_id"]).json_body["code"]
    pos = Pos(app_client, store_key)
    here = redeem(pos, code, "t-1")
    assert (here.status_code, error_code(here)) == (422, "COUPON_NOT_VALID_HERE")
    for bad in ("0000-0000-0000-0000", "not-a-code", "U" * 16):
        missing = redeem(pos, bad, "t-1")
        assert (missing.status_code, error_code(missing)) == (404, "COUPON_NOT_FOUND")
    future = create_template(
        app_client,
        valid_days=None,
        valid_from=(datetime.now(UTC) + timedelta(days=5)).isoformat(),
        valid_to=(datetime.now(UTC) + timedelta(days=9)).isoformat(),
    )
    early = issue(app_client, member_id, future["template_id"]).json_body["code"]
    response = redeem(pos, early, "t-1")
    assert (response.status_code, error_code(response)) == (422, "COUPON_NOT_YET_VALID")
    assert {c["status"] for c in listed(app_client, member_id).json_body["coupons"]} == {"active"}


def test_given_an_expired_coupon_when_redeemed_or_listed_then_422_and_it_lists_as_expired(
    seeded, app_client, store_key
):
    from chalicelib.dal.coupons import DynamoCouponRepository
    from chalicelib.domain.coupon_issue import staff_issue
    from chalicelib.domain.coupons import normalise_code

    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client, valid_days=1)
    # issued two days ago: valid one day from then
    issued = staff_issue(
        DynamoCouponRepository(),
        member_id,
        "old-issue",
        template["template_id"],
        datetime.now(UTC) - timedelta(days=2),
    )
    response = redeem(Pos(app_client, store_key), issued["code"], "t-1")
    assert (response.status_code, error_code(response)) == (422, "COUPON_EXPIRED")
    expired = listed(app_client, member_id, "?status=expired").json_body["coupons"]
    assert [c["code"] for c in expired] == [issued["code"]]
    assert listed(app_client, member_id, "?status=active").json_body["coupons"] == []
    assert DynamoCouponRepository().coupon(normalise_code(issued["code"]) or "").status == "active"


def test_given_ops_when_redeeming_then_they_name_the_store_and_it_must_be_open(seeded, app_client):
    member_id = register(app_client, token_for(None, "ops"))
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    path = f"/v1/coupons/{code}/redeem"
    unknown = send(app_client, "POST", path, {"transaction_id": "t-1", "store_id": "nowhere"})
    assert (unknown.status_code, error_code(unknown)) == (422, "UNKNOWN_STORE")
    done = send(app_client, "POST", path, {"transaction_id": "t-1", "store_id": "store-002"})
    assert done.status_code == 200, done.json_body
    assert done.json_body["store_id"] == "store-002"
