"""The HTTP contract (api.md) over chalice.test.Client on moto: status codes, the error
envelope, authentication and the generated OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from tests.conftest import auth, token_for, unique_phone

MEMBERS = "/v1/members"
MAX_BODY = 64 * 1024


def post_member(client: Any, headers: dict[str, str], body: Any) -> Any:
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.http.post(MEMBERS, headers=headers, body=raw)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.body
    body = response.json_body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert response.headers["Content-Type"] == "application/json"
    error: dict[str, Any] = body["error"]
    return error


# ---- request bodies ---------------------------------------------------------------------


@pytest.mark.parametrize("raw", ['{"phone": "139', "not json", "{'phone': 1}", ""])
def test_given_a_body_that_is_not_json_when_registering_then_400_malformed_json(
    seeded, app_client, staff_token, raw
):
    response = post_member(app_client, auth(staff_token), raw)
    assert_error(response, 400, "MALFORMED_JSON")


@pytest.mark.parametrize("document", [[], [{"phone": "13900001111"}], "a string", 42, None])
def test_given_json_that_is_not_an_object_when_registering_then_400_validation_error(
    seeded, app_client, staff_token, document
):
    response = post_member(app_client, auth(staff_token), json.dumps(document))
    assert_error(response, 400, "VALIDATION_ERROR")


def test_given_an_unknown_field_when_registering_then_400_validation_error_naming_it(
    seeded, app_client, staff_token
):
    body = {"phone": unique_phone(), "channel": "app", "nickname": "x"}
    error = assert_error(post_member(app_client, auth(staff_token), body), 400, "VALIDATION_ERROR")
    assert [f["field"] for f in error["details"]["fields"]] == ["nickname"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": 13900001111, "channel": "app"}, "phone"),
        ({"phone": "13900001111", "channel": "telegram"}, "channel"),
        (
            {"phone": "13900001111", "channel": "app", "marketing_consent": "true"},
            "marketing_consent",
        ),
        ({"phone": "13900001111", "channel": "app", "birthday": "01/02/1990"}, "birthday"),
        ({"channel": "app"}, "phone"),
    ],
)
def test_given_a_field_of_the_wrong_type_when_registering_then_400_validation_error(
    seeded, app_client, staff_token, body, field
):
    error = assert_error(post_member(app_client, auth(staff_token), body), 400, "VALIDATION_ERROR")
    assert field in [f["field"] for f in error["details"]["fields"]]


@pytest.mark.parametrize("phone", ["12345", "139 0000 111", "+86 123 4567"])
def test_given_an_invalid_phone_string_when_registering_then_400_invalid_phone(
    seeded, app_client, staff_token, phone
):
    response = post_member(app_client, auth(staff_token), {"phone": phone, "channel": "app"})
    assert_error(response, 400, "INVALID_PHONE")


def test_given_a_body_over_64_kib_when_posting_then_413_before_authentication(seeded, app_client):
    body = json.dumps({"phone": unique_phone(), "channel": "app", "name": "x" * MAX_BODY})
    # no credentials at all: the size is checked first
    response = post_member(app_client, {"Content-Type": "application/json"}, body)
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"max_bytes": MAX_BODY}


def test_given_a_body_of_exactly_64_kib_when_registering_then_it_is_not_too_large(
    seeded, app_client, staff_token
):
    document = json.dumps({"phone": unique_phone(), "channel": "app"})
    exact = document + " " * (MAX_BODY - len(document))  # whitespace keeps it valid JSON
    assert len(exact.encode()) == MAX_BODY
    assert post_member(app_client, auth(staff_token), exact).status_code == 201
    over = document + " " * (MAX_BODY + 1 - len(document))
    assert_error(post_member(app_client, auth(staff_token), over), 413, "PAYLOAD_TOO_LARGE")


# ---- authentication and authorization ---------------------------------------------------


def test_given_no_credentials_when_registering_then_401_missing_credentials(seeded, app_client):
    body = {"phone": unique_phone(), "channel": "app"}
    response = post_member(app_client, {"Content-Type": "application/json"}, body)
    assert_error(response, 401, "MISSING_CREDENTIALS")


def test_given_no_credentials_when_reading_a_member_then_401_missing_credentials(
    seeded, app_client
):
    assert_error(app_client.http.get(f"{MEMBERS}/mbr_x"), 401, "MISSING_CREDENTIALS")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_given_a_garbage_bearer_token_when_registering_then_401_invalid_token(
    seeded, app_client, token
):
    body = {"phone": unique_phone(), "channel": "app"}
    assert_error(post_member(app_client, auth(token), body), 401, "INVALID_TOKEN")


def test_given_a_token_signed_with_another_secret_when_reading_then_401_invalid_token(
    seeded, app_client, aws_env
):
    env = dict(aws_env, JWT_SECRET="a-different-secret-of-sufficient-length-000")
    from local.tools import member_or_staff_token

    forged = member_or_staff_token("ops", None, env=env)
    response = app_client.http.get(f"{MEMBERS}/mbr_x", headers=auth(forged))
    assert_error(response, 401, "INVALID_TOKEN")


def test_given_a_token_without_member_id_when_signing_up_then_201_linked_to_the_sign_in(
    seeded, app_client
):
    phone = unique_phone()
    token = token_for(None, phone=phone)
    subject = jwt.decode(token, options={"verify_signature": False})["sub"]
    response = post_member(app_client, auth(token), {"phone": phone, "channel": "app"})
    assert response.status_code == 201, response.json_body
    assert response.json_body["external_ids"] == {"cognito_sub": subject}


def test_given_a_sign_up_token_when_reading_a_member_then_403_not_a_member(
    seeded, app_client, staff_token
):
    member_id = post_member(
        app_client, auth(staff_token), {"phone": unique_phone(), "channel": "app"}
    ).json_body["member_id"]
    response = app_client.http.get(f"{MEMBERS}/{member_id}", headers=auth(token_for(None)))
    assert_error(response, 403, "NOT_A_MEMBER")


def test_given_a_sign_up_token_when_sending_external_ids_then_cognito_sub_cannot_be_chosen(
    seeded, app_client
):
    phone = unique_phone()
    body = {"phone": phone, "channel": "app", "external_ids": {"cognito_sub": "other"}}
    response = post_member(app_client, auth(token_for(None, phone=phone)), body)
    assert_error(response, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("role", ["ops", "admin"])
def test_given_a_staff_token_when_reading_a_member_then_200_with_the_full_phone(
    seeded, app_client, staff_token, role
):
    phone = unique_phone()
    member_id = post_member(
        app_client, auth(staff_token), {"phone": phone, "channel": "app"}
    ).json_body["member_id"]
    response = app_client.http.get(f"{MEMBERS}/{member_id}", headers=auth(token_for(None, role)))
    assert response.status_code == 200, response.json_body
    assert response.json_body["member_id"] == member_id
    assert response.json_body["phone"] == phone


def test_given_a_staff_token_when_reading_a_missing_member_then_404_member_not_found(
    seeded, app_client, staff_token
):
    response = app_client.http.get(f"{MEMBERS}/mbr_doesnotexist", headers=auth(staff_token))
    assert_error(response, 404, "MEMBER_NOT_FOUND")


def test_given_an_unknown_store_id_when_registering_then_422_unknown_store(
    seeded, app_client, staff_token
):
    body = {"phone": unique_phone(), "channel": "pos", "store_id": "store-999"}
    error = assert_error(post_member(app_client, auth(staff_token), body), 422, "UNKNOWN_STORE")
    assert error["details"] == {"store_id": "store-999"}


def test_given_a_known_store_id_when_registering_then_the_member_belongs_to_it(
    seeded, app_client, staff_token
):
    body = {"phone": unique_phone(), "channel": "pos", "store_id": "store-002"}
    response = post_member(app_client, auth(staff_token), body)
    assert response.status_code == 201
    assert response.json_body["profile"]["store_id"] == "store-002"


# ---- unexpected failures ----------------------------------------------------------------


def test_given_a_handler_that_crashes_when_calling_then_500_internal_error_without_details(
    seeded, app_client, staff_token, monkeypatch
):
    from chalicelib.domain import members as domain

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals: table loyalty-local-members")

    monkeypatch.setattr(domain, "get_member", explode)
    response = app_client.http.get(f"{MEMBERS}/mbr_any", headers=auth(staff_token))
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret internals" not in json.dumps(response.json_body)
    assert error["details"] == {}


# ---- public routes and the OpenAPI document ---------------------------------------------


def test_given_no_credentials_when_asking_health_then_200_ok(aws_env, app_client):
    response = app_client.http.get("/v1/health")
    assert response.status_code == 200
    assert response.json_body["status"] == "ok"
    assert set(response.json_body) == {"status", "version"}


def test_given_the_openapi_document_when_validating_then_it_is_valid_openapi_3_1(
    seeded, app_client
):
    from openapi_spec_validator import validate

    response = app_client.http.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json_body
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_given_the_openapi_document_then_it_lists_exactly_the_registered_operations(
    seeded, app_client
):
    import app as app_module
    from chalicelib.api.http import OPERATIONS

    paths = app_client.http.get("/v1/openapi.json").json_body["paths"]
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    recorded = {(op.path, op.method.upper()) for op in OPERATIONS}
    routed = {
        (path, method.upper())
        for path, methods in app_module.app.routes.items()
        for method in methods
    }
    assert documented == recorded
    # nothing reaches Chalice without going through operation(...) and so the document
    assert routed == recorded
    operation_ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_given_the_openapi_document_then_every_error_response_is_the_envelope(seeded, app_client):
    document = app_client.http.get("/v1/openapi.json").json_body
    envelope = document["components"]["schemas"]["ErrorResponse"]
    assert envelope["required"] == ["error"]
    for ops in document["paths"].values():
        for op in ops.values():
            for status, spec in op["responses"].items():
                if int(status) >= 400:
                    schema = spec["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


# ---- POS signatures over HTTP -----------------------------------------------------------


def pos_post(client: Any, store_key: dict[str, str], **overrides: str) -> Any:
    from tests.helpers import SignedPos

    payload = {"phone": unique_phone(), "channel": "pos"}
    body, headers = SignedPos(store_key).signed("POST", MEMBERS, payload)
    headers.update(overrides)
    return client.http.post(MEMBERS, headers=headers, body=body)


def test_given_a_signed_pos_request_when_registering_then_201_for_its_store(
    seeded, app_client, store_key
):
    response = pos_post(app_client, store_key)
    assert response.status_code == 201, response.json_body
    assert response.json_body["profile"]["store_id"] == "store-001"
    assert "*" in response.json_body["phone"]


def test_given_a_pos_signature_on_a_staff_only_route_when_calling_then_403(
    seeded, app_client, store_key
):
    response = app_client.http.get(f"{MEMBERS}/mbr_x", headers={"X-Signature": "ab"})
    assert_error(response, 403, "FORBIDDEN")


def test_given_a_wrong_pos_signature_when_registering_then_401_invalid_signature(
    seeded, app_client, store_key
):
    response = pos_post(app_client, store_key, **{"X-Signature": "0" * 64})
    assert_error(response, 401, "INVALID_SIGNATURE")


def test_given_a_non_ascii_pos_signature_when_registering_then_401_not_500(
    seeded, app_client, store_key
):
    response = pos_post(app_client, store_key, **{"X-Signature": "é" * 64})
    assert_error(response, 401, "INVALID_SIGNATURE")


# ---- path ids ---------------------------------------------------------------------------


def test_given_a_path_id_over_128_characters_when_reading_then_400_before_any_table(
    seeded, app_client, staff_token
):
    response = app_client.http.get(f"/v1/admin/rewards/{'r' * 129}", headers=auth(staff_token))
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"]["fields"] == [{"field": "reward_id", "issue": "too long"}]


def test_given_a_percent_encoded_path_id_the_document_allows_when_reading_then_it_is_not_too_long(
    seeded, app_client, staff_token
):
    """The document says at most 128 characters; 100 non-ASCII characters arrive from a
    gateway as 900 encoded ones, and are within it (an unknown reward: 404)."""
    from urllib.parse import quote

    encoded = quote("पन्ह" * 25)
    assert len(encoded) > 128
    response = app_client.http.get(f"/v1/admin/rewards/{encoded}", headers=auth(staff_token))
    assert_error(response, 404, "REWARD_NOT_FOUND")
