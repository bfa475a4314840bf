"""The local API server as a client meets it (local/api_server.py): bursts of connections,
tokens the gateway cannot read, methods and routes the API does not have."""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import token_for, unique_phone
from tests.helpers import SignedPos

pytestmark = pytest.mark.e2e

BURST = 100
JOIN_SECONDS = 300  # a bound for a hung client thread, not a timing assertion


def request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own (as a till opens one per sale)."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def envelope(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert set(document) == {"error"}, document
    assert set(document["error"]) == {"code", "message", "details"}, document
    return document["error"]  # type: ignore[no-any-return]


class Till(SignedPos):
    """A till that opens a connection of its own for each request."""

    def __init__(self, base_url: str, key: dict[str, str]) -> None:
        super().__init__(key)
        self.base_url = base_url

    def send(self, method: str, path: str, payload: Any = None) -> tuple[int, bytes]:
        body, headers = self.signed(method, path, payload)
        status, _, answer = request(self.base_url, method, path, body or None, headers)
        return status, answer


def test_given_100_signed_pos_requests_at_once_when_sent_then_every_one_is_answered(
    stack, stack_env
):
    """50 purchases (one per member) and 50 look-ups, each on its own connection, all
    released at once: chalice's backlog of 5 reset about half of them."""
    from local.tools import create_store_key

    till = Till(stack.base_url, create_store_key("store-001"))
    phones = [unique_phone() for _ in range(BURST // 2)]
    members = []
    for phone in phones:
        status, body = till.send("POST", "/v1/members", {"phone": phone, "channel": "pos"})
        assert status == 201, body
        members.append(json.loads(body)["member_id"])
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    prepared = []
    for member_id, phone in zip(members, phones, strict=True):
        purchase = {
            "transaction_id": f"burst-{uuid.uuid4().hex[:12]}",
            "store_id": "store-001",
            "member_id": member_id,
            "occurred_at": now,
            "items": [{"sku": "latte", "quantity": 1, "unit_price": 3200}],
            "total": 3200,
        }
        prepared.append(
            ("POST", "/v1/transactions", *till.signed("POST", "/v1/transactions", purchase))
        )
        path = f"/v1/members/lookup?phone={phone.replace('+', '%2B')}"
        prepared.append(("GET", path, *till.signed("GET", path)))

    start = threading.Barrier(len(prepared))
    answers: list[Any] = [None] * len(prepared)

    def client(index: int) -> None:
        method, path, body, headers = prepared[index]
        start.wait()
        try:
            answers[index] = request(stack.base_url, method, path, body or None, headers)[0]
        except OSError as exc:  # reset, refused, closed without an answer
            answers[index] = type(exc).__name__

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prepared))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    expected = [201 if method == "POST" else 200 for method, *_ in prepared]
    assert answers == expected, Counter(map(str, answers))


def test_given_a_bearer_token_that_is_not_a_jwt_when_calling_then_401_in_the_envelope(
    stack,
):
    for token in ("x", "a.b", "a.b.c", "a.MQ.c"):  # MQ: base64 of "1", not an object
        status, headers, body = request(
            stack.base_url, "GET", "/v1/admin/program", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 401, (token, body)
        assert headers["Content-Type"] == "application/json"
        assert envelope(body)["code"] == "INVALID_TOKEN"


def test_given_a_method_the_api_never_uses_when_calling_then_405_in_the_envelope(stack):
    for method in ("TRACE", "CONNECT", "PROPFIND"):
        status, headers, body = request(stack.base_url, method, "/v1/health")
        assert status == 405, (method, body)
        assert headers["Allow"] == "GET"
        assert envelope(body)["code"] == "METHOD_NOT_ALLOWED"


def test_given_an_unknown_route_when_calling_then_the_template_gateway_response(stack):
    from local.api_server import gateway_responses

    status, _, body = request(
        stack.base_url,
        "GET",
        "/v1/no-such-route",
        headers={"Authorization": f"Bearer {token_for(None, role='ops')}"},
    )
    assert (status, body) == gateway_responses()["MISSING_AUTHENTICATION_TOKEN"]
    assert (status, envelope(body)["code"]) == (404, "NOT_FOUND")


def test_given_a_request_the_http_parser_refuses_when_sent_then_400_in_the_envelope(stack):
    status, _, body = request(
        stack.base_url,
        "POST",
        "/v1/members",
        body=None,
        headers={"Content-Length": "zz", "Authorization": f"Bearer {secrets.token_hex(4)}"},
    )
    assert status == 400, body
    assert envelope(body)["code"] == "BAD_REQUEST"
