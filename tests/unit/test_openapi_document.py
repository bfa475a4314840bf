"""The OpenAPI document says what the server enforces: a request the document's schema
accepts is accepted by the server's validation, and one it refuses is refused. Checked
here with a JSON Schema validator on chosen bodies; tests/e2e/test_openapi_conformance.py
lets schemathesis generate them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import auth, unique_phone

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    import app  # noqa: F401  (registers the operations)
    from chalicelib.api.openapi import build_openapi

    return build_openapi("test")


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The document's refs are "#/components/...": carry the components in the root.
    return Draft202012Validator({**schema, "components": document["components"]})


def body_schema(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    return operation["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


def query_schema(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    for param in document["paths"][path]["get"]["parameters"]:
        if param["name"] == name:
            return param  # type: ignore[no-any-return]
    raise AssertionError(f"{path} has no query parameter {name}")


def model_accepts(model: Any, value: dict[str, Any], *, query: bool = False) -> bool:
    from pydantic import ValidationError

    try:
        if query:
            model.model_validate(value, strict=False)
        else:
            model.model_validate_json(json.dumps(value))
    except ValidationError:
        return False
    return True


PURCHASE = {
    "transaction_id": "t-1",
    "store_id": "store-001",
    "occurred_at": NOW,
    "items": [{"sku": "latte", "quantity": 1, "unit_price": 3200}],
    "total": 3200,
}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({**PURCHASE, "member_id": "mbr_1"}, True),
        ({**PURCHASE, "card": "C1"}, True),
        ({**PURCHASE, "phone": "+8613900001111", "member_id": None}, True),
        (PURCHASE, False),  # names no member
        ({**PURCHASE, "member_id": None, "card": None}, False),  # null is not given
    ],
)
def test_given_a_purchase_when_it_names_its_member_then_the_document_and_the_model_agree(
    document, body, valid
):
    from chalicelib.models.points import TransactionRequest

    schema = body_schema(document, "/v1/transactions", "post")
    assert validator(document, schema).is_valid(body) is valid
    assert model_accepts(TransactionRequest, body) is valid


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"refund_id": "r-1", "amount": 100}, True),
        ({"refund_id": "r-1", "items": [{"sku": "latte", "quantity": 1}]}, True),
        ({"refund_id": "r-1", "items": [{"sku": "latte", "quantity": 1}], "amount": None}, True),
        ({"refund_id": "r-1"}, False),
        ({"refund_id": "r-1", "items": [{"sku": "latte", "quantity": 1}], "amount": 100}, False),
    ],
)
def test_given_a_refund_when_it_gives_items_or_an_amount_then_the_document_and_the_model_agree(
    document, body, valid
):
    from chalicelib.models.points import RefundRequest

    schema = body_schema(document, "/v1/transactions/{transaction_id}/refunds", "post")
    assert validator(document, schema).is_valid(body) is valid
    assert model_accepts(RefundRequest, body) is valid


@pytest.mark.parametrize(
    ("query", "valid"),
    [
        ({"phone": "+8613900001111"}, True),
        ({"card": "C1"}, True),
        ({"wechat_unionid": "u1"}, True),
        ({}, False),
        ({"phone": "+8613900001111", "card": "C1"}, False),
        ({"card": ""}, False),
        ({"member_code": "123456789012345678"}, True),
        ({"member_code": "12345"}, False),
        ({"member_code": "123456789012345678", "phone": "+8613900001111"}, False),
    ],
)
def test_given_a_lookup_when_it_gives_exactly_one_key_then_the_document_and_the_model_agree(
    document, query, valid
):
    from chalicelib.models.members import LookupQuery

    param = query_schema(document, "/v1/members/lookup", "LookupQuery")
    assert (param["in"], param["style"], param["explode"], param["required"]) == (
        "query",
        "form",
        True,
        True,
    )
    assert validator(document, param["schema"]).is_valid(query) is valid
    assert model_accepts(LookupQuery, query, query=True) is valid


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"active": False}, True),
        ({"name": "Jing'an"}, True),
        ({"active": True, "name": None}, True),
        ({}, False),
        ({"active": None, "name": None}, False),  # null is not given: nothing would change
    ],
)
def test_given_a_store_patch_when_it_changes_active_or_name_then_the_document_and_the_model_agree(
    document, body, valid
):
    from chalicelib.models.stores import StorePatch

    schema = body_schema(document, "/v1/admin/stores/{store_id}", "patch")
    assert validator(document, schema).is_valid(body) is valid
    assert model_accepts(StorePatch, body) is valid


def test_given_the_ledger_query_then_limit_is_an_integer_with_its_bounds(document):
    limit = query_schema(document, "/v1/members/{member_id}/ledger", "limit")
    assert limit["schema"]["type"] == "integer"
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    assert limit["required"] is False


def test_given_a_job_run_then_its_date_is_a_date_and_other_path_parameters_are_not_empty_nor_longer_than_an_id(
    document,
):
    params = {
        p["name"]: p["schema"]
        for p in document["paths"]["/v1/admin/jobs/{job}/runs/{run_date}"]["get"]["parameters"]
    }
    assert params["run_date"] == {"type": "string", "format": "date"}
    assert params["job"] == {"type": "string", "minLength": 1, "maxLength": 128}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"activity_id": "a-1", "type": "checkin"}, True),
        ({"activity_id": "a-1", "type": "referral", "referrer_member_id": "mbr_1"}, True),
        ({"activity_id": "a-1", "type": "referral"}, False),
        ({"activity_id": "a-1", "type": "referral", "referrer_member_id": None}, False),
    ],
)
def test_given_a_referral_then_the_document_requires_the_referrer(document, body, valid):
    schema = body_schema(document, "/v1/members/{member_id}/activities", "post")
    assert validator(document, schema).is_valid(body) is valid


def test_given_an_adjustment_of_zero_points_then_the_document_refuses_it(document):
    schema = body_schema(document, "/v1/admin/members/{member_id}/adjustments", "post")
    check = validator(document, schema)
    assert check.is_valid({"adjustment_id": "a-1", "points": 5, "reason": "goodwill"})
    assert not check.is_valid({"adjustment_id": "a-1", "points": 0, "reason": "goodwill"})


@pytest.mark.parametrize(
    ("path", "value", "valid"),
    [
        (("campaign_multipliers", 0, "multiplier"), 5e-324, False),
        (("campaign_multipliers", 0, "multiplier"), 0.0, False),
        (("campaign_multipliers", 0, "multiplier"), 0.0001, True),
        (("category_rules", 0, "multiplier"), 1e-300, False),
        (("category_rules", 0, "multiplier"), 0.0, True),
        (("category_rules", 0, "multiplier"), 1.5, True),
        (("base_points_per_yuan",), 5e-324, False),
        (("base_points_per_yuan",), 0.0, True),
        (("version",), 10**40, False),
    ],
)
def test_given_a_program_number_when_validating_then_the_document_and_the_model_agree(
    document, path, value, valid
):
    from chalicelib.models.points import ProgramConfigModel

    config = {
        "base_points_per_yuan": 1.0,
        "category_rules": [{"category": "drinks", "multiplier": 1.0}],
        "campaign_multipliers": [
            {
                "campaign_id": "c-1",
                "multiplier": 2.0,
                "starts_at": "2026-01-01T00:00:00Z",
                "ends_at": "2027-01-01T00:00:00Z",
            }
        ],
    }
    target: Any = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    schema = body_schema(document, "/v1/admin/program", "put")
    assert validator(document, schema).is_valid(config) is valid
    assert model_accepts(ProgramConfigModel, config) is valid


def test_given_a_campaign_multiplier_of_5e_324_when_putting_the_program_then_400_not_500(
    seeded, app_client, staff_token
):
    """schemathesis found it: DynamoDB cannot store a magnitude below 1e-130, so the
    write failed after validation had let it through (INTERNAL_ERROR)."""
    read = app_client.http.get("/v1/admin/program", headers=auth(staff_token))
    config = read.json_body["config"]
    config["campaign_multipliers"] = [
        {
            "campaign_id": "tiny",
            "multiplier": 5e-324,
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2027-01-01T00:00:00Z",
        }
    ]
    response = app_client.http.put(
        "/v1/admin/program", headers=auth(staff_token), body=json.dumps(config)
    )
    assert response.status_code == 400, response.json_body
    assert response.json_body["error"]["code"] == "VALIDATION_ERROR"
    after = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body
    assert after["config"]["campaign_multipliers"] == []


def test_given_a_name_of_one_space_when_registering_then_201_as_the_document_allows(
    seeded, app_client, staff_token, document
):
    """minLength counts the string as sent; the server stripped it first and refused " "."""
    body = {"phone": unique_phone(), "channel": "app", "name": " "}
    assert validator(document, body_schema(document, "/v1/members", "post")).is_valid(body)
    response = app_client.http.post("/v1/members", headers=auth(staff_token), body=json.dumps(body))
    assert response.status_code == 201, response.json_body
