"""The HTTP API (infra/gen_template.py) calls the same function as the REST API, with
payload format 1.0: every shape it sends must reach the same view with the same request.

Events are built as API Gateway's HTTP API sends them in payload format 1.0 (header
names in lower case, `requestContext.resourcePath` the matched route, stage `$default`,
`stageVariables` null, `authorizer` with null claims when no authorizer ran), starting
from the sample in events/, and handed to `app.app(event, context)` as Lambda would. The
same request through chalice.test.Client (the REST shape) is the reference answer.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import app as app_module
from infra import gen_template
from local.pos import encode, key_headers
from tests.conftest import auth, token_for, unique_phone

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "events" / "http_api_v1_pos_purchase.json"


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "loyalty-dev-APIHandler"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:ap-east-1:123456789012:function:loyalty-dev-APIHandler"
    )
    aws_request_id: str = "6f1b2c3d-0000-4000-8000-000000000001"


def v1_event(
    method: str,
    route: str,
    *,
    params: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    base64_body: bool = False,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A payload-1.0 event for `route` (the path template), from the sample's shape."""
    event = copy.deepcopy(json.loads(SAMPLE.read_text()))
    path = route
    for name, value in (params or {}).items():
        path = path.replace("{" + name + "}", value)
    sent = {"host": event["headers"]["host"], "x-forwarded-proto": "https"}
    sent.update({k.lower(): v for k, v in (headers or {}).items()})  # HTTP API: lower case
    event.update(
        resource=route,
        path=path,
        httpMethod=method,
        headers=sent,
        multiValueHeaders={k: [v] for k, v in sent.items()},
        # payload 1.0: the last value of a repeated key in the single-value map
        queryStringParameters={k: v[-1] for k, v in query.items()} if query else None,
        multiValueQueryStringParameters=query or None,
        pathParameters=params or None,
        stageVariables=None,
        body=(
            None
            if body is None
            else base64.b64encode(body).decode()
            if base64_body
            else body.decode()
        ),
        isBase64Encoded=base64_body,
    )
    context = event["requestContext"]
    context.update(
        httpMethod=method,
        resourcePath=route,
        path=path,
        stage="$default",
        requestId=f"req-{uuid.uuid4().hex[:12]}",
        authorizer=authorizer if authorizer is not None else {"claims": None, "scopes": None},
    )
    return event


def invoke(event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    answer = app_module.app(event, LambdaContext())
    body = answer["body"]
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return answer["statusCode"], json.loads(body) if body else None, answer["headers"]


def app_member(client: Any, staff_token: str) -> str:
    """A member registered by staff through the REST-shaped test client."""
    registered = client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps({"phone": unique_phone(), "channel": "app"}),
    )
    assert registered.status_code == 201, registered.json_body
    return str(registered.json_body["member_id"])


def registration() -> tuple[bytes, str]:
    card = f"C{uuid.uuid4().hex[:8]}"
    body = {
        "phone": unique_phone(),
        "channel": "pos",
        "name": "李小龙",  # non-ASCII: the signature is over the UTF-8 bytes
        "external_ids": {"pos_card": card},
    }
    return encode(body), card


# ---- the template routes what Chalice routes --------------------------------------------


def test_given_the_template_then_every_chalice_path_has_an_any_route_and_no_greedy_proxy():
    resources = gen_template.template()["Resources"]
    keys = {
        r["Properties"]["RouteKey"]
        for r in resources.values()
        if r.get("Type") == "AWS::ApiGatewayV2::Route"
    }
    assert keys == {f"ANY {path}" for path in app_module.app.routes}
    assert not [k for k in keys if "+}" in k or k == "$default"]
    integration = resources["HttpApiIntegration"]["Properties"]
    assert integration["PayloadFormatVersion"] == "1.0"
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["APIHandler", "Arn"]}
    assert resources["HttpApiStage"]["Properties"]["StageName"] == "$default"
    http = [
        rid for rid, r in resources.items() if r.get("Type", "").startswith("AWS::ApiGatewayV2::")
    ]
    http.append("HttpApiInvokePermission")
    assert {resources[rid].get("Condition") for rid in http} == {"UseHttpApi"}
    # the REST API's URL is an output only where the REST API is on
    assert gen_template.template()["Outputs"]["EndpointURL"] == {"Condition": "UseRestApi"}


def test_given_a_method_a_path_lacks_when_it_arrives_through_the_any_route_then_405_in_the_envelope():
    status, body, _ = invoke(v1_event("DELETE", "/v1/health"))
    assert status == 405
    assert body["error"]["code"] == "METHOD_NOT_ALLOWED"


# ---- payload 1.0 events reach the views as REST events do --------------------------------


def test_given_a_path_parameter_and_a_lower_case_authorization_header_then_the_member_is_read(
    seeded, app_client, staff_token
):
    member_id = app_member(app_client, staff_token)
    token = token_for(member_id)
    event = v1_event(
        "GET",
        "/v1/members/{member_id}",
        params={"member_id": member_id},
        headers={"Authorization": f"Bearer {token}"},
    )
    status, body, headers = invoke(event)
    rest = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert status == rest.status_code == 200, body
    assert body == rest.json_body
    assert body["member_id"] == member_id
    # the stage is not part of the path, and the request id is the gateway's
    assert headers["X-Request-Id"] == event["requestContext"]["requestId"]


def test_given_a_signed_pos_look_up_with_a_single_query_value_then_the_masked_member(
    seeded, app_client, staff_token, store_key
):
    body, card = registration()
    created = invoke(
        v1_event(
            "POST",
            "/v1/members",
            headers=key_headers(store_key, "POST", "/v1/members", body),
            body=body,
            base64_body=True,
        )
    )
    assert created[0] == 201, created[1]
    status, found, _ = invoke(
        v1_event(
            "GET",
            "/v1/members/lookup",
            query={"card": [card]},
            headers=key_headers(store_key, "GET", "/v1/members/lookup", b""),
        )
    )
    assert status == 200, found
    assert found["member_id"] == created[1]["member_id"]
    assert found["profile"]["name"] == "李*"
    assert found["masked"] is True


def test_given_a_repeated_query_key_then_the_view_sees_what_the_rest_shape_gives_it(
    seeded, app_client, staff_token
):
    member_id = app_member(app_client, staff_token)
    for points in (10, 20, 30):
        adjusted = app_client.http.post(
            f"/v1/admin/members/{member_id}/adjustments",
            headers=auth(staff_token),
            body=json.dumps(
                {"adjustment_id": uuid.uuid4().hex, "points": points, "reason": "goodwill"}
            ),
        )
        assert adjusted.status_code == 201, adjusted.json_body
    rest = app_client.http.get(
        f"/v1/members/{member_id}/ledger?limit=1&limit=2", headers=auth(staff_token)
    )
    status, body, _ = invoke(
        v1_event(
            "GET",
            "/v1/members/{member_id}/ledger",
            params={"member_id": member_id},
            query={"limit": ["1", "2"]},
            headers=auth(staff_token),
        )
    )
    assert status == rest.status_code == 200, body
    assert body == rest.json_body
    assert len(body["entries"]) == 2  # the last value, as API Gateway's single-value map


@pytest.mark.parametrize("header_case", [str.lower, str.title], ids=["lower", "title"])
def test_given_a_base64_signed_purchase_then_the_signature_verifies_over_the_raw_bytes_and_a_replay_answers_the_same(
    seeded, app_client, staff_token, store_key, header_case
):
    body, card = registration()
    registered = app_client.http.post(
        "/v1/members", headers=key_headers(store_key, "POST", "/v1/members", body), body=body
    )
    assert registered.status_code == 201, registered.json_body
    purchase = encode(
        {
            "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
            "store_id": "store-001",
            "card": card,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "茶", "category": "drinks", "quantity": 2, "unit_price": 2500}],
            "total": 5000,
        }
    )
    signed = key_headers(store_key, "POST", "/v1/transactions", purchase)
    event = v1_event(
        "POST",
        "/v1/transactions",
        headers={header_case(k): v for k, v in signed.items()},
        body=purchase,
        base64_body=True,
    )
    event["headers"] = {header_case(k): v for k, v in event["headers"].items()}
    first = invoke(event)
    assert first[0] == 201, first[1]
    assert first[1]["points_earned"] == 50
    replay = invoke(copy.deepcopy(event))
    assert replay[:2] == first[:2]
    tampered = copy.deepcopy(event)
    tampered["body"] = base64.b64encode(purchase.replace(b'"quantity":2', b'"quantity":3')).decode()
    status, refused, _ = invoke(tampered)
    assert status == 401
    assert refused["error"]["code"] == "INVALID_SIGNATURE"


def test_given_jwt_authorizer_claims_in_the_event_then_the_app_trusts_only_the_token_it_verifies(
    seeded, app_client, staff_token
):
    """No gateway authorizer is configured for the HTTP API; should one be added, its
    claims (requestContext.authorizer.jwt.claims) must not stand in for a token."""
    member_id = app_member(app_client, staff_token)
    admin_claims = {
        "jwt": {"claims": {"sub": "someone", "cognito:groups": "[admin]"}, "scopes": None}
    }
    without_token = invoke(
        v1_event(
            "GET",
            "/v1/members/{member_id}",
            params={"member_id": member_id},
            authorizer=admin_claims,
        )
    )
    assert without_token[0] == 401
    assert without_token[1]["error"]["code"] == "MISSING_CREDENTIALS"
    as_member = invoke(
        v1_event(
            "GET",
            "/v1/admin/program",
            headers=auth(token_for(member_id)),
            authorizer=admin_claims,
        )
    )
    assert as_member[0] == 403, as_member[1]


def test_given_the_sample_event_then_it_is_the_shape_the_tests_send():
    sample = json.loads(SAMPLE.read_text())
    assert sample["version"] == "1.0"
    assert sample["requestContext"]["stage"] == "$default"
    assert sample["requestContext"]["resourcePath"] == sample["resource"] == sample["path"]
    assert sample["isBase64Encoded"] is True
    assert sample["stageVariables"] is None
    assert all(name == name.lower() for name in sample["headers"])
    assert json.loads(base64.b64decode(sample["body"]))["transaction_id"]
