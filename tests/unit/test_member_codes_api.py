"""Member presence (会员码) over HTTP (chalice.test.Client on moto): the app asks for a code,
the POS pays with it; look-up by code; what a POS and store staff see of a member."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.member_codes import MemberCode
from local.tools import member_or_staff_token
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos
from tests.unit.test_transactions_api import (
    adjust,
    error_code,
    ledger_of,
    points_of,
    purchase_body,
)

PERSONAL = {"birthday", "email", "gender", "tags", "marketing_consent"}


@pytest.fixture
def pos(seeded, app_client, store_key) -> Pos:
    return Pos(app_client, store_key)


def register(client: Any, staff_token: str, **fields: Any) -> dict[str, Any]:
    body = {
        "phone": unique_phone(),
        "channel": "app",
        "name": "李雷",
        "gender": "male",
        "birthday": "1990-05-20",
        "email": "lilei@example.com",
        "tags": ["coffee"],
        "external_ids": {"pos_card": f"C{uuid.uuid4().hex[:10]}"},
        **fields,
    }
    response = client.http.post("/v1/members", headers=auth(staff_token), body=json.dumps(body))
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def member_with_points(client: Any, staff_token: str, points: int = 3000) -> str:
    member_id = str(register(client, staff_token)["member_id"])
    assert adjust(client, staff_token, member_id, points).status_code == 201
    return member_id


def ask_code(client: Any, member_id: str, token: str | None = None) -> Any:
    return client.http.post(
        f"/v1/members/{member_id}/member-code", headers=auth(token or token_for(member_id))
    )


def code_for(client: Any, member_id: str) -> str:
    response = ask_code(client, member_id)
    assert response.status_code == 201, response.json_body
    return str(response.json_body["code"])


def pos_lookup(pos: Pos, query: str) -> Any:
    return pos.send("GET", f"/v1/members/lookup?{query}")


# ---- issuing ------------------------------------------------------------------------------


def test_given_a_member_token_when_asking_for_its_code_then_201_digits_valid_at_most_120_seconds(
    seeded, app_client, staff_token
):
    member_id = str(register(app_client, staff_token)["member_id"])
    before = datetime.now(UTC)
    response = ask_code(app_client, member_id)
    assert response.status_code == 201, response.json_body
    body = response.json_body
    assert set(body) == {"code", "expires_at"}
    assert len(body["code"]) == 18
    assert body["code"].isdigit()
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert before < expires_at <= datetime.now(UTC) + timedelta(seconds=120)
    assert code_for(app_client, member_id) != body["code"]


def test_given_anyone_but_the_member_when_asking_for_its_code_then_403(
    seeded, app_client, staff_token, store_key
):
    member_id = str(register(app_client, staff_token)["member_id"])
    other = str(register(app_client, staff_token)["member_id"])
    path = f"/v1/members/{member_id}/member-code"
    assert ask_code(app_client, member_id, token_for(other)).status_code == 403
    for role in ("ops", "admin", "store_staff"):
        response = ask_code(app_client, member_id, token_for(None, role))
        assert response.status_code == 403, role
        assert error_code(response) == "ROLE_REQUIRED"
    signup = ask_code(app_client, member_id, token_for(None))
    assert (signup.status_code, error_code(signup)) == (403, "NOT_A_MEMBER")
    assert Pos(app_client, store_key).send("POST", path).status_code == 403
    assert app_client.http.post(path).status_code == 401


# ---- paying with points -------------------------------------------------------------------


def test_given_points_spent_without_a_code_when_a_pos_or_staff_posts_then_403_member_code_required_and_nothing_spent(
    pos, app_client, staff_token
):
    member_id = member_with_points(app_client, staff_token)
    by_pos = pos.send("POST", "/v1/transactions", purchase_body(member_id, pay_with_points=2000))
    by_staff = app_client.http.post(
        "/v1/transactions",
        headers=auth(staff_token),
        body=json.dumps(purchase_body(member_id, pay_with_points=2000)),
    )
    for response in (by_pos, by_staff):
        assert response.status_code == 403, response.json_body
        assert error_code(response) == "MEMBER_CODE_REQUIRED"
    assert points_of(app_client, staff_token, member_id)["balance"] == 3000
    assert len(ledger_of(app_client, staff_token, member_id).json_body["entries"]) == 1


def test_given_the_members_code_when_the_pos_pays_with_points_then_201_and_the_code_pays_once(
    pos, app_client, staff_token
):
    member_id = member_with_points(app_client, staff_token)
    code = code_for(app_client, member_id)
    body = purchase_body(member_id, pay_with_points=2000, member_code=code)
    paid = pos.send("POST", "/v1/transactions", body)
    assert paid.status_code == 201, paid.json_body
    assert paid.json_body["points_spent"] == 2000
    assert paid.json_body["cash_due"] == 7800
    # the till retries (timeout): the first answer, nothing spent twice
    again = pos.send("POST", "/v1/transactions", body)
    assert (again.status_code, again.json_body) == (201, paid.json_body)
    # the same code on another bill
    reused = pos.send(
        "POST", "/v1/transactions", purchase_body(member_id, pay_with_points=500, member_code=code)
    )
    assert reused.status_code == 403
    assert error_code(reused) == "MEMBER_CODE_INVALID"
    assert points_of(app_client, staff_token, member_id)["balance"] == paid.json_body["balance"]


def test_given_only_a_code_when_the_pos_posts_then_the_code_identifies_the_member(
    pos, app_client, staff_token
):
    member_id = member_with_points(app_client, staff_token)
    code = code_for(app_client, member_id)
    body = purchase_body(pay_with_points=1000, member_code=code)
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 201, response.json_body
    assert response.json_body["member_id"] == member_id
    assert response.json_body["points_spent"] == 1000


def test_given_another_members_code_when_paying_for_a_member_then_403_member_code_invalid(
    pos, app_client, staff_token
):
    victim = member_with_points(app_client, staff_token)
    victim_card = register(app_client, staff_token)["external_ids"]["pos_card"]
    accomplice = str(register(app_client, staff_token)["member_id"])
    code = code_for(app_client, accomplice)
    for who in ({"member_id": victim}, {"card": victim_card}):
        body = {**purchase_body(pay_with_points=1000, member_code=code), **who}
        response = pos.send("POST", "/v1/transactions", body)
        assert response.status_code == 403, response.json_body
        assert error_code(response) == "MEMBER_CODE_INVALID"
    assert points_of(app_client, staff_token, victim)["balance"] == 3000
    # the code was not consumed by the refused attempts: its member can still use it
    own = pos.send("POST", "/v1/transactions", purchase_body(accomplice, member_code=code))
    assert own.status_code == 201, own.json_body


def test_given_an_expired_code_when_paying_then_403_member_code_invalid(
    pos, app_client, staff_token
):
    from chalicelib.wiring import services

    member_id = member_with_points(app_client, staff_token)
    code = "123456789012345678"
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    # TTL has not removed it yet: validity is its stored expiry, not its presence
    assert services().codes.put_new(MemberCode(code, member_id, expired))
    response = pos.send(
        "POST", "/v1/transactions", purchase_body(member_id, pay_with_points=1000, member_code=code)
    )
    assert response.status_code == 403
    assert error_code(response) == "MEMBER_CODE_INVALID"
    looked_up = pos_lookup(pos, f"member_code={code}")
    assert (looked_up.status_code, error_code(looked_up)) == (403, "MEMBER_CODE_INVALID")
    assert points_of(app_client, staff_token, member_id)["balance"] == 3000


@pytest.mark.parametrize("code", ["12345", "12345678901234567x", "1" * 19, ""])
def test_given_a_malformed_code_when_posting_then_400_validation_error(pos, code):
    body = purchase_body("mbr_x", pay_with_points=1000, member_code=code)
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"


def test_given_earning_by_card_without_a_code_then_201(pos, app_client, staff_token):
    card = register(app_client, staff_token)["external_ids"]["pos_card"]
    response = pos.send("POST", "/v1/transactions", purchase_body(card=card))
    assert response.status_code == 201, response.json_body


# ---- look-up and what a till sees ---------------------------------------------------------


def assert_masked(view: dict[str, Any], member: dict[str, Any]) -> None:
    assert view["masked"] is True
    assert view["member_id"] == member["member_id"]
    assert view["phone"] == member["phone"][:-8] + "****" + member["phone"][-4:]
    assert view["profile"]["name"] == "李*"
    assert all(view["profile"][name] in (None, []) for name in PERSONAL), view["profile"]
    assert view["external_ids"] == {}
    assert "1990" not in json.dumps(view)
    assert "example.com" not in json.dumps(view)
    assert view["tier"]["code"] == "member"
    assert view["points"]["balance"] == 3000


def test_given_a_code_when_the_pos_looks_it_up_then_the_masked_member_and_the_code_still_pays(
    pos, app_client, staff_token
):
    member = register(app_client, staff_token)
    member_id = member["member_id"]
    assert adjust(app_client, staff_token, member_id, 3000).status_code == 201
    code = code_for(app_client, member_id)
    found = pos_lookup(pos, f"member_code={code}")
    assert found.status_code == 200, found.json_body
    assert_masked(found.json_body, member)
    paid = pos.send(
        "POST", "/v1/transactions", purchase_body(member_id, pay_with_points=1000, member_code=code)
    )
    assert paid.status_code == 201, paid.json_body
    used = pos_lookup(pos, f"member_code={code}")
    assert (used.status_code, error_code(used)) == (403, "MEMBER_CODE_INVALID")


def test_given_a_pos_when_looking_up_by_phone_or_card_then_no_birthday_email_tags_or_ids(
    pos, app_client, staff_token
):
    member = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member["member_id"], 3000).status_code == 201
    by_card = pos_lookup(pos, f"card={member['external_ids']['pos_card']}")
    by_phone = pos_lookup(pos, f"phone={member['phone'].replace('+', '%2B')}")
    for response in (by_card, by_phone):
        assert response.status_code == 200, response.json_body
        assert_masked(response.json_body, member)


def test_given_store_staff_when_reading_a_member_then_the_masked_view(
    seeded, app_client, staff_token
):
    member = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member["member_id"], 3000).status_code == 201
    store_staff = auth(member_or_staff_token("store_staff", None, store="store-001"))
    read = app_client.http.get(f"/v1/members/{member['member_id']}", headers=store_staff)
    assert read.status_code == 200, read.json_body
    assert_masked(read.json_body, member)


@pytest.mark.parametrize("role", ["ops", "admin", "member"])
def test_given_the_member_ops_or_admin_when_reading_then_the_full_view(
    seeded, app_client, staff_token, role
):
    member = register(app_client, staff_token)
    token = token_for(member["member_id"]) if role == "member" else token_for(None, role)
    view = app_client.http.get(f"/v1/members/{member['member_id']}", headers=auth(token)).json_body
    assert view["masked"] is False
    assert view["phone"] == member["phone"]
    assert view["profile"]["name"] == "李雷"
    assert view["profile"]["birthday"] == "1990-05-20"
    assert view["profile"]["email"] == "lilei@example.com"
    assert view["external_ids"]["pos_card"] == member["external_ids"]["pos_card"]


def test_given_a_pos_registering_a_member_then_it_gets_the_masked_view(
    seeded, app_client, store_key
):
    response = Pos(app_client, store_key).send(
        "POST",
        "/v1/members",
        {"phone": unique_phone(), "channel": "pos", "name": "Lily", "email": "l@example.com"},
    )
    assert response.status_code == 201, response.json_body
    assert response.json_body["masked"] is True
    assert response.json_body["profile"]["name"] == "L*"
    assert response.json_body["profile"]["email"] is None


def test_given_the_openapi_document_then_member_codes_and_the_masked_shape_are_described(
    seeded, app_client
):
    doc = app_client.http.get("/v1/openapi.json").json_body
    assert "post" in doc["paths"]["/v1/members/{member_id}/member-code"]
    schemas = doc["components"]["schemas"]
    assert "member_code" in schemas["TransactionRequest"]["properties"]
    # The look-up's keys are one exploded object parameter (exactly one of them is given):
    # member_code is one of its fields and one of the branches of that rule.
    (lookup,) = doc["paths"]["/v1/members/lookup"]["get"]["parameters"]
    assert (lookup["in"], lookup["style"], lookup["explode"]) == ("query", "form", True)
    assert lookup["schema"]["properties"]["member_code"]["pattern"] == "^[0-9]{18}$"
    assert {"member_code"} in [set(b["required"]) for b in lookup["schema"]["oneOf"]]
    profile = schemas["Profile"]["properties"]
    assert {"type": "null"} in profile["marketing_consent"]["anyOf"]
    assert "masked" in schemas["MemberResponse"]["required"]
