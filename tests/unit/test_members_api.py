"""Members over the Chalice app (chalice.test.Client) on moto."""

from __future__ import annotations

import json
import re

import jwt
import pytest

from local.tools import signed_token
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos, SignedPos


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
    _, headers = SignedPos(store_key).signed("GET", path)
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
    response = Pos(app_client, store_key).send(
        "POST", "/v1/members", {"phone": unique_phone(), "channel": "pos", "store_id": "store-002"}
    )
    assert response.status_code == 403
    assert response.json_body["error"]["code"] == "STORE_MISMATCH"


# ---- identity: the sign-in decides the member, never a claim ---------------------------


def sign_up(client, phone: str | None = None) -> tuple[str, str]:
    """An app user signs up with their verified phone: (member_id, their token)."""
    phone = phone or unique_phone()
    token = token_for(None, phone=phone)
    response = register(client, token, phone=phone)
    assert response.status_code == 201, response.json_body
    return response.json_body["member_id"], token


def sub_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def member_routes() -> list[tuple[str, str]]:
    """Every route a member token may call for its own member_id: (method, path)."""
    import app  # noqa: F401  (registers every operation)
    from chalicelib.api.http import OPERATIONS

    return [(op.method, op.path) for op in OPERATIONS if op.access.member_self]


def concrete(path: str, member_id: str) -> str:
    return re.sub(r"{\w+}", "x", path.replace("{member_id}", member_id))


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.json_body
    error = response.json_body["error"]
    assert error["code"] == code, error
    return error


def test_given_a_sign_up_token_when_it_registers_then_the_same_token_acts_as_the_member(
    seeded, app_client
):
    phone = unique_phone()
    token = token_for(None, phone=phone)
    before = app_client.http.get("/v1/members/mbr_notyet", headers=auth(token))
    assert_error(before, 403, "NOT_A_MEMBER")  # not remembered: the sign-up links it next
    member_id = register(app_client, token, phone=phone).json_body["member_id"]
    mine = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert mine.status_code == 200, mine.json_body
    assert mine.json_body["external_ids"] == {"cognito_sub": sub_of(token)}
    # the local tool mints a token for the same sign-in, not a second one
    assert sub_of(token_for(member_id)) == sub_of(token)


def test_given_a_token_naming_b_whose_sub_is_linked_to_a_then_no_member_route_reaches_b(
    seeded, app_client, staff_token
):
    a, a_token = sign_up(app_client)
    b = register(app_client, staff_token, name="B").json_body["member_id"]
    grant = app_client.http.post(
        f"/v1/admin/members/{b}/adjustments",
        headers=auth(staff_token),
        body=json.dumps({"adjustment_id": "bonus-1", "points": 100, "reason": "welcome"}),
    )
    assert grant.status_code == 201, grant.json_body
    # What a user could mint before: custom:member_id set with UpdateUserAttributes.
    forged = signed_token({"sub": sub_of(a_token), "custom:member_id": b})
    routes = member_routes()
    assert ("PATCH", "/v1/members/{member_id}") in routes
    assert ("POST", "/v1/members/{member_id}/activities") in routes
    # the member code is how a member's points are spent at a till
    assert ("POST", "/v1/members/{member_id}/member-code") in routes
    for method, path in routes:
        body = b"{}" if method in ("POST", "PATCH", "PUT") else b""
        response = app_client.http.request(
            method, concrete(path, b), headers=auth(forged), body=body
        )
        assert_error(response, 403, "IDENTITY_MISMATCH")
    patch = app_client.http.patch(
        f"/v1/members/{b}", headers=auth(forged), body=json.dumps({"name": "A was here"})
    )
    assert_error(patch, 403, "IDENTITY_MISMATCH")
    checkin = app_client.http.post(
        f"/v1/members/{b}/activities",
        headers=auth(forged),
        body=json.dumps({"activity_id": "checkin-forged", "type": "checkin"}),
    )
    assert_error(checkin, 403, "IDENTITY_MISMATCH")
    # a forged token is refused outright, even on A's own data
    assert_error(
        app_client.http.get(f"/v1/members/{a}", headers=auth(forged)), 403, "IDENTITY_MISMATCH"
    )
    after = app_client.http.get(f"/v1/members/{b}", headers=auth(staff_token)).json_body
    assert after["profile"]["name"] == "B"
    assert after["points"]["balance"] == 100
    ledger = app_client.http.get(f"/v1/members/{b}/ledger", headers=auth(staff_token)).json_body
    assert [entry["points"] for entry in ledger["entries"]] == [100]
    # A's own sign-in still reaches A, and only A
    assert app_client.http.get(f"/v1/members/{a}", headers=auth(a_token)).status_code == 200
    assert_error(app_client.http.get(f"/v1/members/{b}", headers=auth(a_token)), 403, "FORBIDDEN")


def test_given_a_token_naming_a_member_whose_sub_is_linked_to_no_one_then_403_everywhere(
    seeded, app_client, staff_token
):
    b = register(app_client, staff_token).json_body["member_id"]
    phone = unique_phone()
    forged = signed_token(
        {
            "sub": "user-unlinked",
            "custom:member_id": b,
            "phone_number": phone,
            "phone_number_verified": True,
        }
    )
    assert_error(
        app_client.http.get(f"/v1/members/{b}", headers=auth(forged)), 403, "IDENTITY_MISMATCH"
    )
    assert_error(register(app_client, forged, phone=phone), 403, "IDENTITY_MISMATCH")


def test_given_a_member_registered_by_staff_when_the_tool_mints_its_token_then_it_links_a_sign_in(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token).json_body["member_id"]
    token = token_for(member_id)
    assert sub_of(token_for(member_id)) == sub_of(token)  # linked once
    mine = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert mine.status_code == 200, mine.json_body
    assert mine.json_body["external_ids"] == {"cognito_sub": sub_of(token)}


# ---- sign-up claims: only what the identity provider verified --------------------------


@pytest.mark.parametrize(
    ("label", "claims_of"),
    [
        ("no phone claim", lambda phone: {}),
        ("unverified", lambda phone: {"phone_number": phone, "phone_number_verified": False}),
        (
            "unverified string",
            lambda phone: {"phone_number": phone, "phone_number_verified": "false"},
        ),
        (
            "another phone",
            lambda phone: {"phone_number": unique_phone(), "phone_number_verified": True},
        ),
    ],
)
def test_given_a_sign_up_without_that_verified_phone_then_403_phone_not_verified_and_it_stays_free(
    seeded, app_client, staff_token, label, claims_of
):
    phone = unique_phone()
    token = signed_token({"sub": f"user-{label.replace(' ', '-')}", **claims_of(phone)})
    response = register(app_client, token, phone=phone)
    assert_error(response, 403, "PHONE_NOT_VERIFIED")
    assert register(app_client, staff_token, phone=phone).status_code == 201, label


def test_given_a_sign_up_with_its_verified_phone_in_another_spelling_then_201(seeded, app_client):
    local_number = unique_phone()[3:]
    token = token_for(None, phone=f"+86{local_number}")
    spaced = f"{local_number[:3]} {local_number[3:7]} {local_number[7:]}"
    response = register(app_client, token, phone=spaced)
    assert response.status_code == 201, response.json_body
    assert response.json_body["phone"] == f"+86{local_number}"


@pytest.mark.parametrize("kind", ["pos_card", "wechat_unionid", "wechat_openid"])
def test_given_a_sign_up_claiming_a_card_or_wechat_id_then_403_and_the_id_stays_free(
    seeded, app_client, staff_token, store_key, kind
):
    phone = unique_phone()
    value = f"ID{phone[-8:]}"
    response = register(
        app_client, token_for(None, phone=phone), phone=phone, external_ids={kind: value}
    )
    error = assert_error(response, 403, "EXTERNAL_ID_NOT_VERIFIED")
    assert error["details"] == {"fields": [f"external_ids.{kind}"]}
    # nothing was written: the phone and the id are still free, for a POS to link
    linked = Pos(app_client, store_key).send(
        "POST", "/v1/members", {"phone": phone, "channel": "pos", "external_ids": {kind: value}}
    )
    assert linked.status_code == 201, linked.json_body


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"external_ids": {"pos_card": "CARD-X"}}, 400, "FIELD_NOT_WRITABLE"),
        ({"external_ids": {"cognito_sub": "another-sign-in"}}, 400, "FIELD_NOT_WRITABLE"),
        ({"cognito_sub": "another-sign-in"}, 400, "VALIDATION_ERROR"),
        ({"pos_card": "CARD-X"}, 400, "VALIDATION_ERROR"),
        ({"phone": "+8613900009999"}, 400, "FIELD_NOT_WRITABLE"),
    ],
)
def test_given_a_member_patching_ids_then_400_and_nothing_changes(
    seeded, app_client, body, status, code
):
    member_id, token = sign_up(app_client)
    before = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)).json_body
    response = app_client.http.patch(
        f"/v1/members/{member_id}", headers=auth(token), body=json.dumps(body)
    )
    assert_error(response, status, code)
    after = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)).json_body
    assert after == before


def test_given_a_taken_phone_when_a_member_token_signs_up_then_409_without_the_member_id(
    seeded, app_client, staff_token, store_key
):
    phone = unique_phone()
    existing = register(app_client, staff_token, phone=phone).json_body["member_id"]
    response = register(app_client, token_for(None, phone=phone), phone=phone)
    error = assert_error(response, 409, "MEMBER_EXISTS")
    assert error["details"] == {"field": "phone"}
    assert existing not in json.dumps(response.json_body)
    # staff and a POS still learn which member it is
    again = assert_error(register(app_client, staff_token, phone=phone), 409, "MEMBER_EXISTS")
    assert again["details"] == {"member_id": existing, "field": "phone"}
    pos = assert_error(
        Pos(app_client, store_key).send("POST", "/v1/members", {"phone": phone, "channel": "pos"}),
        409,
        "MEMBER_EXISTS",
    )
    assert pos["details"]["member_id"] == existing


def test_given_a_member_changed_while_linking_a_sign_in_when_linked_then_it_reads_again_and_links(
    seeded, monkeypatch
):
    from chalicelib.domain import members as members_domain
    from chalicelib.domain.clock import utc_now
    from chalicelib.errors import Unavailable
    from chalicelib.wiring import services

    svc = services()
    member = members_domain.register(
        members_domain.Registration(phone=unique_phone(), channel="pos"),
        svc.members,
        svc.hasher,
        utc_now(),
    )
    real = svc.members.add_external_id
    lost = iter([True])

    def add_external_id(*args, **kwargs):
        if next(lost, False):  # the stream paid the sign-up bonus meanwhile
            raise Unavailable("member changed while linking; retry")
        return real(*args, **kwargs)

    monkeypatch.setattr(svc.members, "add_external_id", add_external_id)
    linked = members_domain.link_sign_in(
        member.member_id, "sub-1", svc.members, svc.hasher, utc_now()
    )
    assert linked.external_ids[members_domain.SIGN_IN] == "sub-1"


# ---- a member registered at a till signs in to the app later ---------------------------


def test_given_a_member_registered_at_the_till_when_the_app_user_with_that_verified_phone_claims_then_linked_and_me_answers(
    seeded, app_client, staff_token
):
    phone = unique_phone()
    at_till = register(app_client, staff_token, phone=phone, channel="pos", name="李雷")
    member_id = at_till.json_body["member_id"]
    token = token_for(None, phone=phone)
    refused = register(app_client, token, phone=phone)
    assert_error(refused, 409, "MEMBER_EXISTS")
    assert "member_id" not in refused.json_body["error"]["details"]

    claimed = app_client.http.post(
        "/v1/members/claim", headers=auth(token), body=json.dumps({"phone": phone})
    )

    assert claimed.status_code == 200, claimed.json_body
    assert claimed.json_body["member_id"] == member_id
    me = app_client.http.get("/v1/members/me", headers=auth(token))
    assert me.status_code == 200, me.json_body
    assert me.json_body["member_id"] == member_id
    assert me.json_body["profile"]["name"] == "李雷"
    # a retry of the claim answers the same member; the token now acts as it
    again = app_client.http.post(
        "/v1/members/claim", headers=auth(token), body=json.dumps({"phone": phone})
    )
    assert_error(again, 403, "FORBIDDEN")  # no longer a sign-up token: it is the member


def test_given_an_app_user_whose_verified_phone_is_another_when_claiming_then_403_and_nothing_linked(
    seeded, app_client, staff_token
):
    phone = unique_phone()
    member_id = register(app_client, staff_token, phone=phone).json_body["member_id"]
    token = token_for(None, phone=unique_phone())
    for claimed_phone in (phone, None):
        body = {"phone": claimed_phone} if claimed_phone else {"phone": "+8613900000000"}
        refused = app_client.http.post(
            "/v1/members/claim", headers=auth(token), body=json.dumps(body)
        )
        assert_error(refused, 403, "PHONE_NOT_VERIFIED")
    unverified = token_for(None)
    refused = app_client.http.post(
        "/v1/members/claim", headers=auth(unverified), body=json.dumps({"phone": phone})
    )
    assert_error(refused, 403, "PHONE_NOT_VERIFIED")
    member = app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token)).json_body
    assert "cognito_sub" not in member["external_ids"]


def test_given_a_member_already_signed_in_when_another_app_user_with_its_phone_claims_then_409(
    seeded, app_client
):
    phone = unique_phone()
    first = token_for(None, phone=phone)
    member_id = register(app_client, first, phone=phone).json_body["member_id"]
    second = token_for(None, phone=phone)  # e.g. a second account of the identity provider

    refused = app_client.http.post(
        "/v1/members/claim", headers=auth(second), body=json.dumps({"phone": phone})
    )

    assert_error(refused, 409, "SIGN_IN_LINKED")
    assert "member_id" not in refused.json_body["error"]["details"]
    mine = app_client.http.get(f"/v1/members/{member_id}", headers=auth(first))
    assert mine.status_code == 200


def test_given_no_member_with_the_phone_when_claiming_then_404_and_me_is_403_before_sign_up(
    seeded, app_client
):
    phone = unique_phone()
    token = token_for(None, phone=phone)
    missing = app_client.http.post(
        "/v1/members/claim", headers=auth(token), body=json.dumps({"phone": phone})
    )
    assert_error(missing, 404, "MEMBER_NOT_FOUND")
    assert_error(app_client.http.get("/v1/members/me", headers=auth(token)), 403, "NOT_A_MEMBER")


def test_given_staff_or_a_pos_when_calling_me_or_claim_then_403(seeded, app_client, staff_token):
    assert app_client.http.get("/v1/members/me", headers=auth(staff_token)).status_code == 403
    claim = app_client.http.post(
        "/v1/members/claim", headers=auth(staff_token), body=json.dumps({"phone": unique_phone()})
    )
    assert claim.status_code == 403


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"name": "韩梅梅", "gender": "female", "birthday": "1990-05-17"}, 201),
        ({"name": "韩梅梅", "gender": "female"}, 422),
    ],
)
def test_given_personal_fields_encrypted_at_rest_when_completing_the_profile_then_they_are_judged(
    seeded, app_client, staff_token, fields, status
):
    """The ledger reads the wallet without decrypting the member; the route reads the
    member's personal fields itself to judge `profile_completed`."""
    member_id = register(app_client, staff_token, **fields).json_body["member_id"]
    answer = app_client.http.post(
        f"/v1/members/{member_id}/activities",
        headers=auth(token_for(member_id)),
        body=json.dumps({"activity_id": "p-1", "type": "profile_completed"}),
    )
    assert answer.status_code == status, answer.json_body
    if status == 422:
        assert answer.json_body["error"]["code"] == "PROFILE_INCOMPLETE"
