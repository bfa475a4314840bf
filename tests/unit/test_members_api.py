"""Members over the Chalice app (chalice.test.Client) on moto."""

from __future__ import annotations

import json

from local.pos import encode, signed_headers
from tests.conftest import auth, token_for, unique_phone


def register(client, token, **fields):
    body = {"phone": unique_phone(), "channel": "app", **fields}
    return client.http.post("/v1/members", headers=auth(token), body=json.dumps(body))


def test_given_staff_when_registering_a_member_then_201_with_normalised_phone(
    seeded, app_client, staff_token
):
    response = app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps({"phone": "139 0000 1111", "channel": "app", "name": "韩梅梅"}),
    )
    assert response.status_code == 201
    member = response.json_body
    assert member["phone"] == "+8613900001111"
    assert member["tier"]["code"] == "member"
    assert member["points"] == {"balance": 0, "pending": 0, "expiring_next": None}
    assert member["lifecycle_stage"] == "potential"


def test_given_a_registered_phone_when_registering_it_again_in_another_spelling_then_409(
    seeded, app_client, staff_token
):
    first = register(app_client, staff_token, phone="+86 139 0000 2222")
    second = register(app_client, staff_token, phone="008613900002222")
    assert second.status_code == 409
    assert second.json_body["error"]["code"] == "MEMBER_EXISTS"
    assert second.json_body["error"]["details"]["member_id"] == first.json_body["member_id"]


def test_given_a_member_token_when_reading_another_member_then_403_whether_or_not_it_exists(
    seeded, app_client, staff_token
):
    mine = register(app_client, staff_token).json_body["member_id"]
    other = register(app_client, staff_token).json_body["member_id"]
    token = token_for(mine)
    existing = app_client.http.get(f"/v1/members/{other}", headers=auth(token))
    missing = app_client.http.get("/v1/members/mbr_doesnotexist", headers=auth(token))
    assert existing.status_code == missing.status_code == 403
    assert existing.json_body == missing.json_body
    assert app_client.http.get(f"/v1/members/{mine}", headers=auth(token)).status_code == 200


def test_given_a_patch_of_tier_or_points_then_400_field_not_writable_and_nothing_changes(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token, name="A").json_body["member_id"]
    token = token_for(member_id)
    response = app_client.http.patch(
        f"/v1/members/{member_id}",
        headers=auth(token),
        body=json.dumps({"name": "B", "tier": "diamond", "points": 100000}),
    )
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "FIELD_NOT_WRITABLE"
    assert sorted(response.json_body["error"]["details"]["fields"]) == ["points", "tier"]
    after = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)).json_body
    assert after["profile"]["name"] == "A"


def test_given_a_signed_pos_when_looking_up_by_card_then_the_phone_is_masked(
    seeded, app_client, staff_token, store_key
):
    register(app_client, staff_token, phone="+8613900003333", external_ids={"pos_card": "CARD77"})
    path = "/v1/members/lookup"
    headers = signed_headers(
        store_id="store-001",
        key_id=store_key["key_id"],
        secret=store_key["secret"],
        method="GET",
        path=path,
        body=b"",
    )
    response = app_client.http.get(f"{path}?card=CARD77", headers=headers)
    assert response.status_code == 200, response.json_body
    assert response.json_body["phone"] == "+86139****3333"
    # the same request again is a replay
    again = app_client.http.get(f"{path}?card=CARD77", headers=headers)
    assert again.status_code == 401
    assert again.json_body["error"]["code"] == "NONCE_REUSED"


def test_given_a_store_key_when_registering_for_another_store_then_403(
    seeded, app_client, store_key
):
    body = encode({"phone": unique_phone(), "channel": "pos", "store_id": "store-002"})
    headers = signed_headers(
        store_id="store-001",
        key_id=store_key["key_id"],
        secret=store_key["secret"],
        method="POST",
        path="/v1/members",
        body=body,
    )
    response = app_client.http.post("/v1/members", headers=headers, body=body)
    assert response.status_code == 403
    assert response.json_body["error"]["code"] == "STORE_MISMATCH"
