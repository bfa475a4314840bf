"""POS transactions, refunds, points, ledger, adjustments and program rules over HTTP
(chalice.test.Client on moto), with signed POS requests as a store integration sends them."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest

from local.pos import encode
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos

API_MD_FIELDS = {
    "transaction_id",
    "member_id",
    "points_earned",
    "points_spent",
    "cash_due",
    "balance",
    "tier",
    "coupons_applied",
}


@pytest.fixture
def pos(seeded, app_client, store_key) -> Pos:
    return Pos(app_client, store_key)


def register(client: Any, staff_token: str, **fields: Any) -> str:
    body = {"phone": unique_phone(), "channel": "app", **fields}
    response = client.http.post("/v1/members", headers=auth(staff_token), body=json.dumps(body))
    assert response.status_code == 201, response.json_body
    return str(response.json_body["member_id"])


def purchase_body(member_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
        "store_id": "store-001",
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [
            {"sku": "tea", "category": "drinks", "quantity": 2, "unit_price": 2500},
            {"sku": "cake", "category": "bakery", "quantity": 1, "unit_price": 4800},
        ],
        "total": 9800,
    }
    if member_id is not None:
        body["member_id"] = member_id
    body.update(overrides)
    return body


def points_of(client: Any, staff_token: str, member_id: str) -> dict[str, Any]:
    response = client.http.get(f"/v1/members/{member_id}/points", headers=auth(staff_token))
    assert response.status_code == 200, response.json_body
    return dict(response.json_body)


def ledger_of(client: Any, token: str, member_id: str, query: str = "") -> Any:
    return client.http.get(f"/v1/members/{member_id}/ledger{query}", headers=auth(token))


def adjust(client: Any, token: str, member_id: str, points: int, adjustment_id: str | None = None):
    return client.http.post(
        f"/v1/admin/members/{member_id}/adjustments",
        headers=auth(token),
        body=json.dumps(
            {
                "adjustment_id": adjustment_id or f"adj-{uuid.uuid4().hex[:10]}",
                "points": points,
                "reason": "goodwill",
            }
        ),
    )


def assert_nothing_written(client: Any, staff_token: str, member_id: str) -> None:
    points = points_of(client, staff_token, member_id)
    assert points["balance"] == 0
    assert points["pending"] == 0
    assert points["expiring"] == []
    assert ledger_of(client, staff_token, member_id).json_body["entries"] == []


def error_code(response: Any) -> str:
    return str(response.json_body["error"]["code"])


def member_code(client: Any, member_id: str) -> str:
    """The code the member's app shows at the till (needed to spend points there)."""
    response = client.http.post(
        f"/v1/members/{member_id}/member-code", headers=auth(token_for(member_id))
    )
    assert response.status_code == 201, response.json_body
    return str(response.json_body["code"])


# ---- purchases ----------------------------------------------------------------------------


def test_given_a_member_when_a_pos_posts_a_purchase_then_201_with_the_api_md_fields(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    body = purchase_body(member_id)
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 201, response.json_body
    receipt = response.json_body
    assert set(receipt) >= API_MD_FIELDS
    assert receipt["transaction_id"] == body["transaction_id"]
    assert receipt["member_id"] == member_id
    assert receipt["points_earned"] == 98
    assert receipt["points_spent"] == 0
    assert receipt["cash_due"] == 9800
    assert receipt["balance"] == 98
    assert receipt["tier"]["code"] == "member"
    assert receipt["coupons_applied"] == []
    points = points_of(app_client, staff_token, member_id)
    assert points["balance"] == 98
    assert points["lifetime_earned"] == 98
    assert sum(lot["points"] for lot in points["expiring"]) == 98
    [entry] = ledger_of(app_client, staff_token, member_id).json_body["entries"]
    assert (entry["type"], entry["points"], entry["balance_after"]) == ("earn", 98, 98)
    assert entry["store_id"] == "store-001"


def test_given_a_recorded_purchase_when_the_pos_retries_with_a_new_nonce_then_the_same_201_body_and_one_credit(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    body = purchase_body(member_id)
    first = pos.send("POST", "/v1/transactions", body)
    again = pos.send("POST", "/v1/transactions", body)  # signed_headers draws a new nonce
    assert first.status_code == again.status_code == 201
    assert again.json_body == first.json_body
    assert points_of(app_client, staff_token, member_id)["balance"] == 98
    assert len(ledger_of(app_client, staff_token, member_id).json_body["entries"]) == 1


def test_given_a_recorded_purchase_when_its_id_comes_with_another_body_then_409_idempotency_conflict(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    body = purchase_body(member_id)
    assert pos.send("POST", "/v1/transactions", body).status_code == 201
    changed = {**body, "items": [{**body["items"][0], "quantity": 3}, body["items"][1]]}
    changed["total"] = 12300
    response = pos.send("POST", "/v1/transactions", changed)
    assert response.status_code == 409
    assert error_code(response) == "IDEMPOTENCY_CONFLICT"
    assert points_of(app_client, staff_token, member_id)["balance"] == 98


# ---- replays of one signed request (the same headers and body, within the ±5 min window) --


def signed_once(pos: Pos, method: str, path: str, payload: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body as a POS sent them once: what someone who saw them could resend."""
    body = encode(payload)
    return pos.signed(method, path, raw=body)[1], body


def nonce_items(tables: dict[str, str]) -> list[dict[str, Any]]:
    import boto3

    items = boto3.client("dynamodb").scan(TableName=tables["RuntimeTable"])["Items"]
    return [item for item in items if item["pk"]["S"].startswith("NONCE#")]


def test_given_a_signed_purchase_when_it_is_replayed_then_the_first_answer_one_credit_and_no_nonce_write(
    seeded, pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    headers, body = signed_once(pos, "POST", "/v1/transactions", purchase_body(member_id))
    first = app_client.http.post("/v1/transactions", headers=headers, body=body)
    replay = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert first.status_code == replay.status_code == 201, replay.json_body
    assert replay.json_body == first.json_body
    assert points_of(app_client, staff_token, member_id)["balance"] == 98
    assert len(ledger_of(app_client, staff_token, member_id).json_body["entries"]) == 1
    assert nonce_items(seeded) == []  # the request record answered, not a nonce


def test_given_a_signed_refund_when_it_is_replayed_then_the_first_answer_and_one_reversal(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    path = f"/v1/transactions/{txn}/refunds"
    headers, body = signed_once(
        pos, "POST", path, {"refund_id": "rf-1", "items": [{"sku": "tea", "quantity": 1}]}
    )
    first = app_client.http.post(path, headers=headers, body=body)
    replay = app_client.http.post(path, headers=headers, body=body)
    assert first.status_code == replay.status_code == 201, replay.json_body
    assert replay.json_body == first.json_body
    assert points_of(app_client, staff_token, member_id)["balance"] == 73


def test_given_a_points_payment_refused_for_too_few_points_when_it_is_replayed_after_a_credit_then_nonce_reused_and_nothing_spent(
    seeded, pos, app_client, staff_token
):
    """The harm a replay could do on a route that records only answers that took effect:
    a refused payment succeeding later, spending points the till was told were not."""
    member_id = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member_id, 1000).status_code == 201
    payload = purchase_body(
        member_id, pay_with_points=2000, member_code=member_code(app_client, member_id)
    )
    headers, body = signed_once(pos, "POST", "/v1/transactions", payload)
    refused = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert refused.status_code == 422
    assert error_code(refused) == "INSUFFICIENT_POINTS"
    assert len(nonce_items(seeded)) == 1  # the failure claimed its nonce
    assert adjust(app_client, staff_token, member_id, 2000).status_code == 201
    replay = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert replay.status_code == 401
    assert error_code(replay) == "NONCE_REUSED"
    assert points_of(app_client, staff_token, member_id)["balance"] == 3000


def test_given_a_points_payment_that_took_effect_when_it_is_replayed_then_nonce_reused_and_spent_once(
    seeded, pos, app_client, staff_token
):
    """A request that spends points claims its nonce before it runs (auth.PosReplay), so
    its exact replay is refused; a POS retry (a new nonce) still gets the first answer."""
    member_id = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member_id, 1000).status_code == 201
    payload = purchase_body(
        member_id, pay_with_points=500, member_code=member_code(app_client, member_id)
    )
    headers, body = signed_once(pos, "POST", "/v1/transactions", payload)
    first = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert first.status_code == 201, first.json_body
    replay = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert (replay.status_code, error_code(replay)) == (401, "NONCE_REUSED")
    retry = pos.send("POST", "/v1/transactions", payload)
    assert (retry.status_code, retry.json_body) == (201, first.json_body)
    assert points_of(app_client, staff_token, member_id)["balance"] == first.json_body["balance"]
    assert first.json_body["points_spent"] == 500


def test_given_a_refused_points_payment_when_a_replay_arrives_while_it_runs_and_points_land_then_the_replay_is_refused(
    pos, app_client, staff_token, monkeypatch
):
    """No gap between a failure and its nonce claim: the replay of a payment is refused
    however it interleaves with the original (here: during the original's run, with a
    credit landing before the original plans)."""
    from chalicelib.api import transactions as route

    member_id = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member_id, 1000).status_code == 201
    payload = purchase_body(
        member_id, pay_with_points=2000, member_code=member_code(app_client, member_id)
    )
    headers, body = signed_once(pos, "POST", "/v1/transactions", payload)
    real = route.domain.record_purchase
    replays: list[Any] = []

    def interleaved(*args: Any, **kwargs: Any) -> Any:
        if not replays:
            replays.append(app_client.http.post("/v1/transactions", headers=headers, body=body))
            assert adjust(app_client, staff_token, member_id, 2000).status_code == 201
        return real(*args, **kwargs)

    monkeypatch.setattr(route.domain, "record_purchase", interleaved)
    original = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert (replays[0].status_code, error_code(replays[0])) == (401, "NONCE_REUSED")
    assert original.status_code == 201, original.json_body
    assert original.json_body["points_spent"] == 2000
    assert (
        points_of(app_client, staff_token, member_id)["balance"]
        == 3000 - 2000 + (original.json_body["points_earned"])
    )


def test_given_the_nonce_claim_after_a_failure_fails_when_a_purchase_is_refused_then_the_till_gets_its_own_answer(
    pos, app_client, staff_token, monkeypatch
):
    """The claim after a failure is best effort: a throttled Runtime table must not turn
    a 404 the till can act on into a 500."""
    from chalicelib.api import http as http_module

    def throttled(headers: Any, guards: Any) -> bool:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(http_module, "spend_nonce", throttled)
    unknown = purchase_body(card=f"C{uuid.uuid4().hex[:8]}")
    refused = pos.send("POST", "/v1/transactions", unknown)
    assert refused.status_code == 404, refused.json_body


def test_given_a_purchase_for_an_unknown_card_when_it_is_replayed_after_the_card_is_registered_then_nonce_reused(
    pos, app_client, staff_token
):
    card = f"C{uuid.uuid4().hex[:8]}"
    headers, body = signed_once(pos, "POST", "/v1/transactions", purchase_body(card=card))
    refused = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert refused.status_code == 404
    member_id = register(app_client, staff_token, external_ids={"pos_card": card})
    replay = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert replay.status_code == 401
    assert error_code(replay) == "NONCE_REUSED"
    assert_nothing_written(app_client, staff_token, member_id)


@pytest.mark.parametrize("route", ["purchase", "refund"])
def test_given_a_signed_purchase_or_refund_when_replayed_with_another_body_then_invalid_signature(
    pos, app_client, staff_token, route
):
    member_id = register(app_client, staff_token)
    if route == "purchase":
        path, payload = "/v1/transactions", purchase_body(member_id)
    else:
        path = f"/v1/transactions/{bought(pos, member_id)}/refunds"
        payload = {"refund_id": "rf-1", "amount": 100}
    headers, _ = signed_once(pos, "POST", path, payload)
    changed = encode(
        {**payload, "transaction_id": "t-other"}
        if route == "purchase"
        else {**payload, "amount": 9800}
    )
    response = app_client.http.post(path, headers=headers, body=changed)
    assert response.status_code == 401
    assert error_code(response) == "INVALID_SIGNATURE"


def test_given_member_id_card_and_phone_when_posting_then_the_member_is_matched_in_that_order(
    pos, app_client, staff_token
):
    by_id = register(app_client, staff_token)
    card = f"CARD{uuid.uuid4().hex[:8]}"
    by_card = register(app_client, staff_token, external_ids={"pos_card": card})
    phone = unique_phone()
    by_phone = register(app_client, staff_token, phone=phone)
    national = f"{phone[3:6]} {phone[6:10]} {phone[10:]}"  # as typed at the till

    def matched(**who: str) -> str:
        response = pos.send("POST", "/v1/transactions", {**purchase_body(), **who})
        assert response.status_code == 201, response.json_body
        return str(response.json_body["member_id"])

    assert matched(member_id=by_id, card=card, phone=phone) == by_id
    assert matched(card=card, phone=phone) == by_card
    assert matched(phone=national) == by_phone


def test_given_an_unknown_card_when_posting_then_404_member_not_found(pos):
    response = pos.send("POST", "/v1/transactions", purchase_body(card="NO-SUCH-CARD"))
    assert response.status_code == 404
    assert error_code(response) == "MEMBER_NOT_FOUND"


def test_given_points_when_the_pos_pays_with_points_then_cash_due_drops_and_points_are_spent(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    assert adjust(app_client, staff_token, member_id, 2000).status_code == 201
    response = pos.send(
        "POST",
        "/v1/transactions",
        purchase_body(
            member_id, pay_with_points=2000, member_code=member_code(app_client, member_id)
        ),
    )
    assert response.status_code == 201, response.json_body
    assert response.json_body["points_spent"] == 2000
    assert response.json_body["cash_due"] == 7800
    assert response.json_body["balance"] == 2000 - 2000 + response.json_body["points_earned"]
    too_much = pos.send(
        "POST",
        "/v1/transactions",
        purchase_body(
            member_id, pay_with_points=4000, member_code=member_code(app_client, member_id)
        ),
    )
    assert too_much.status_code == 422
    assert error_code(too_much) == "INSUFFICIENT_POINTS"


class Case(NamedTuple):
    id: str
    mutate: Callable[[dict[str, Any]], dict[str, Any] | bytes]
    status: int
    code: str | None


def raw_total(text: bytes) -> Callable[[dict[str, Any]], bytes]:
    """The body as raw JSON text with `total` replaced by a literal json.dumps never writes."""

    def mutate(body: dict[str, Any]) -> bytes:
        raw = encode(body)
        assert b'"total":9800' in raw
        return raw.replace(b'"total":9800', b'"total":' + text)

    return mutate


BAD_PURCHASES: list[Case] = [
    Case("negative-total", lambda b: {**b, "total": -1}, 400, "VALIDATION_ERROR"),
    Case(
        "negative-unit-price",
        lambda b: {**b, "items": [{**b["items"][0], "unit_price": -2500}, b["items"][1]]},
        400,
        "VALIDATION_ERROR",
    ),
    Case("fractional", lambda b: {**b, "total": 9800.5}, 400, "VALIDATION_ERROR"),
    Case("fractional-12.5-total", lambda b: {**b, "total": 12.5}, 400, "VALIDATION_ERROR"),
    Case("string-12-total", lambda b: {**b, "total": "12"}, 400, "VALIDATION_ERROR"),
    Case(
        "fractional-12.5-price",
        lambda b: {**b, "items": [{**b["items"][0], "unit_price": 12.5}, b["items"][1]]},
        400,
        "VALIDATION_ERROR",
    ),
    Case("string-total", lambda b: {**b, "total": "9800"}, 400, "VALIDATION_ERROR"),
    Case(
        "string-12-quantity",
        lambda b: {**b, "items": [{**b["items"][0], "quantity": "12"}, b["items"][1]]},
        400,
        "VALIDATION_ERROR",
    ),
    Case("NaN", raw_total(b"NaN"), 400, None),
    Case("Infinity", raw_total(b"Infinity"), 400, None),
    Case("-Infinity", raw_total(b"-Infinity"), 400, None),
    Case("1e400", raw_total(b"1e400"), 400, None),
    Case("total-over-2^53", lambda b: {**b, "total": 2**53}, 400, "VALIDATION_ERROR"),
    Case(
        "price-over-2^53",
        lambda b: {
            **b,
            "items": [{"sku": "gold", "quantity": 1, "unit_price": 2**53 + 1}],
            "total": 2**53 + 1,
        },
        400,
        "VALIDATION_ERROR",
    ),
    Case("huge-total", lambda b: {**b, "total": 10**30}, 400, "VALIDATION_ERROR"),
    Case("empty-items", lambda b: {**b, "items": []}, 400, "VALIDATION_ERROR"),
    Case(
        "zero-quantity",
        lambda b: {**b, "items": [{**b["items"][0], "quantity": 0}, b["items"][1]]},
        400,
        "VALIDATION_ERROR",
    ),
    Case("neg-pwp", lambda b: {**b, "pay_with_points": -100}, 400, "VALIDATION_ERROR"),
    Case("total-mismatch", lambda b: {**b, "total": 9900}, 422, "TOTAL_MISMATCH"),
    Case("old", lambda b: {**b, "occurred_at": "2020-01-01T00:00:00Z"}, 422, "TRANSACTION_TOO_OLD"),
    Case("naive", lambda b: {**b, "occurred_at": "2025-06-18T12:00:00"}, 400, "VALIDATION_ERROR"),
    Case("unknown-field", lambda b: {**b, "points": 5}, 400, "VALIDATION_ERROR"),
]


def test_given_bad_purchases_when_posting_each_then_its_4xx_and_nothing_is_written(
    pos, app_client, staff_token
):
    # One member for every case (a moto setup per case would be slow): after each refused
    # request the member's points, ledger and the transaction are still untouched.
    member_id = register(app_client, staff_token)
    for case in BAD_PURCHASES:
        body = purchase_body(member_id)
        bad = case.mutate(body)
        if isinstance(bad, bytes):
            response = pos.send("POST", "/v1/transactions", raw=bad)
        else:
            response = pos.send("POST", "/v1/transactions", bad)
        assert response.status_code == case.status, (case.id, response.json_body)
        assert "error" in response.json_body, case.id
        if case.code is not None:
            assert error_code(response) == case.code, case.id
        assert_nothing_written(app_client, staff_token, member_id)
        lookup = pos.send("GET", f"/v1/transactions/{body['transaction_id']}")
        assert lookup.status_code == 404, case.id


def test_given_staff_posting_for_an_unknown_store_then_422_unknown_store_and_nothing_written(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    response = app_client.http.post(
        "/v1/transactions",
        headers=auth(staff_token),
        body=json.dumps(purchase_body(member_id, store_id="nope")),
    )
    assert response.status_code == 422
    assert error_code(response) == "UNKNOWN_STORE"
    assert_nothing_written(app_client, staff_token, member_id)


def test_given_a_store_key_when_posting_for_another_stores_id_then_403_store_mismatch_and_nothing_written(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    body = purchase_body(member_id, store_id="store-002")
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 403
    assert error_code(response) == "STORE_MISMATCH"
    assert_nothing_written(app_client, staff_token, member_id)
    lookup = app_client.http.get(
        f"/v1/transactions/{body['transaction_id']}?store_id=store-002", headers=auth(staff_token)
    )
    assert lookup.status_code == 404


# ---- refunds ------------------------------------------------------------------------------


def bought(pos: Pos, member_id: str) -> str:
    body = purchase_body(member_id)
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 201, response.json_body
    return str(body["transaction_id"])


def test_given_a_purchase_when_the_pos_refunds_an_item_then_its_points_are_reversed_and_replays_match(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    path = f"/v1/transactions/{txn}/refunds"
    payload = {"refund_id": "rf-1", "items": [{"sku": "tea", "quantity": 1}]}
    first = pos.send("POST", path, payload)
    assert first.status_code == 201, first.json_body
    assert first.json_body["points_reversed"] == 25
    assert first.json_body["balance"] == 73
    again = pos.send("POST", path, payload)
    assert again.status_code == 201
    assert again.json_body == first.json_body
    conflict = pos.send("POST", path, {"refund_id": "rf-1", "amount": 100})
    assert conflict.status_code == 409
    assert error_code(conflict) == "IDEMPOTENCY_CONFLICT"
    assert points_of(app_client, staff_token, member_id)["balance"] == 73


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"refund_id": "rf-x", "amount": 9801}, id="amount"),
        pytest.param({"refund_id": "rf-x", "items": [{"sku": "tea", "quantity": 3}]}, id="units"),
    ],
)
def test_given_a_purchase_when_refunding_more_than_it_then_422_and_nothing_changes(
    pos, app_client, staff_token, payload
):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    response = pos.send("POST", f"/v1/transactions/{txn}/refunds", payload)
    assert response.status_code == 422
    assert error_code(response) == "REFUND_EXCEEDS_PURCHASE"
    assert points_of(app_client, staff_token, member_id)["balance"] == 98
    view = pos.send("GET", f"/v1/transactions/{txn}").json_body
    assert view["refunded_amount"] == 0
    assert view["refunds"] == []


def test_given_an_unknown_transaction_when_refunding_then_404_transaction_not_found(pos):
    response = pos.send(
        "POST", "/v1/transactions/never-sold/refunds", {"refund_id": "rf-1", "amount": 100}
    )
    assert response.status_code == 404
    assert error_code(response) == "TRANSACTION_NOT_FOUND"


def test_given_malformed_refunds_when_posting_them_then_400_and_nothing_changes(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    malformed = {
        "neither items nor amount": {"refund_id": "rf-1"},
        "both": {"refund_id": "rf-1", "amount": 100, "items": [{"sku": "tea", "quantity": 1}]},
        "zero amount": {"refund_id": "rf-1", "amount": 0},
        "fractional amount": {"refund_id": "rf-1", "amount": 12.5},
        "string amount": {"refund_id": "rf-1", "amount": "12"},
        "zero units": {"refund_id": "rf-1", "items": [{"sku": "tea", "quantity": 0}]},
    }
    for name, payload in malformed.items():
        response = pos.send("POST", f"/v1/transactions/{txn}/refunds", payload)
        assert response.status_code == 400, (name, response.json_body)
    assert points_of(app_client, staff_token, member_id)["balance"] == 98
    assert pos.send("GET", f"/v1/transactions/{txn}").json_body["refunds"] == []


# ---- reading a transaction ----------------------------------------------------------------


def test_given_a_refunded_purchase_when_the_store_and_staff_read_it_then_the_same_view_with_refunds(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    pos.send("POST", f"/v1/transactions/{txn}/refunds", {"refund_id": "rf-1", "amount": 4900})
    by_store = pos.send("GET", f"/v1/transactions/{txn}")
    assert by_store.status_code == 200, by_store.json_body
    view = by_store.json_body
    assert view["transaction"]["transaction_id"] == txn
    assert view["total"] == 9800
    assert view["refunded_amount"] == 4900
    assert view["points_reversed"] == 49
    assert [r["refund_id"] for r in view["refunds"]] == ["rf-1"]
    by_staff = app_client.http.get(
        f"/v1/transactions/{txn}?store_id=store-001", headers=auth(staff_token)
    )
    assert by_staff.status_code == 200
    assert by_staff.json_body == view


def test_given_staff_without_store_id_when_reading_a_transaction_then_400(
    pos, app_client, staff_token
):
    txn = bought(pos, register(app_client, staff_token))
    response = app_client.http.get(f"/v1/transactions/{txn}", headers=auth(staff_token))
    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"


def test_given_another_stores_purchase_when_a_store_reads_it_then_404(pos, app_client, staff_token):
    from local.tools import create_store_key

    txn = bought(pos, register(app_client, staff_token))
    other = Pos(app_client, create_store_key("store-002"))
    assert other.send("GET", f"/v1/transactions/{txn}").status_code == 404
    mismatch = pos.send("GET", f"/v1/transactions/{txn}?store_id=store-002")
    assert mismatch.status_code == 403


def test_given_a_member_token_when_reading_a_transaction_then_403(pos, app_client, staff_token):
    member_id = register(app_client, staff_token)
    txn = bought(pos, member_id)
    response = app_client.http.get(
        f"/v1/transactions/{txn}?store_id=store-001", headers=auth(token_for(member_id))
    )
    assert response.status_code == 403


# ---- ledger and points --------------------------------------------------------------------


def test_given_five_entries_when_paging_the_ledger_by_two_then_newest_first_without_duplicates(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    for points in (1, 2, 3, 4, 5):
        assert adjust(app_client, staff_token, member_id, points).status_code == 201
    token = token_for(member_id)
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    for _ in range(5):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = ledger_of(app_client, token, member_id, query)
        assert response.status_code == 200, response.json_body
        pages.append(response.json_body["entries"])
        cursor = response.json_body["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [2, 2, 1]
    assert cursor is None
    entries = [entry for page in pages for entry in page]
    assert len({e["entry_id"] for e in entries}) == 5
    assert [e["points"] for e in entries] == [5, 4, 3, 2, 1]
    assert [e["balance_after"] for e in entries] == [15, 10, 6, 3, 1]
    assert [e["created_at"] for e in entries] == sorted(
        (e["created_at"] for e in entries), reverse=True
    )


def test_given_a_tampered_cursor_when_paging_the_ledger_then_400_invalid_cursor(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    other_id = register(app_client, staff_token)
    for mid in (member_id, other_id):
        for points in (1, 2, 3):
            adjust(app_client, staff_token, mid, points)
    cursor = ledger_of(app_client, staff_token, member_id, "?limit=1").json_body["next_cursor"]
    assert cursor
    key = json.loads(base64.urlsafe_b64decode(cursor))
    key["pk"]["S"] = f"MEMBER#{other_id}"
    forged = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()
    for bad in ("not-a-cursor!!", "e30=", forged):
        response = ledger_of(app_client, staff_token, member_id, f"?limit=1&cursor={bad}")
        assert response.status_code == 400, (bad, response.json_body)
        assert error_code(response) == "INVALID_CURSOR"
    # another member's genuine cursor does not page this member's ledger either
    response = ledger_of(app_client, staff_token, other_id, f"?limit=1&cursor={cursor}")
    assert response.status_code == 400
    assert error_code(response) == "INVALID_CURSOR"


def test_given_a_member_token_when_reading_another_members_points_or_ledger_then_403(
    seeded, app_client, staff_token
):
    mine = register(app_client, staff_token)
    other = register(app_client, staff_token)
    token = token_for(mine)
    for path in (f"/v1/members/{other}/points", f"/v1/members/{other}/ledger"):
        assert app_client.http.get(path, headers=auth(token)).status_code == 403
    for path in (f"/v1/members/{mine}/points", f"/v1/members/{mine}/ledger"):
        assert app_client.http.get(path, headers=auth(token)).status_code == 200


# ---- adjustments --------------------------------------------------------------------------


def test_given_a_member_or_store_staff_token_when_adjusting_points_then_403_and_nothing_written(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    for token in (token_for(member_id), token_for(None, role="store_staff")):
        response = adjust(app_client, token, member_id, 100)
        assert response.status_code == 403
    assert_nothing_written(app_client, staff_token, member_id)


@pytest.mark.parametrize("role", ["ops", "admin"])
def test_given_ops_or_admin_when_adjusting_then_201_and_the_ledger_shows_the_adjustment(
    seeded, app_client, staff_token, role
):
    member_id = register(app_client, staff_token)
    response = adjust(app_client, token_for(None, role=role), member_id, 300, "adj-1")
    assert response.status_code == 201, response.json_body
    assert response.json_body["balance"] == 300
    debit = adjust(app_client, token_for(None, role=role), member_id, -400, "adj-2")
    assert debit.status_code == 422
    assert error_code(debit) == "INSUFFICIENT_POINTS"
    zero = adjust(app_client, token_for(None, role=role), member_id, 0, "adj-3")
    assert zero.status_code == 422
    assert error_code(zero) == "INVALID_ADJUSTMENT"
    [entry] = ledger_of(app_client, staff_token, member_id).json_body["entries"]
    assert (entry["type"], entry["points"], entry["source"]) == ("adjust", 300, "staff")
    unknown = adjust(app_client, token_for(None, role=role), "mbr_doesnotexist", 10)
    assert unknown.status_code == 404
    assert error_code(unknown) == "MEMBER_NOT_FOUND"


# ---- program rules ------------------------------------------------------------------------


def test_given_the_program_when_ops_put_it_back_with_a_stale_version_then_409(
    seeded, app_client, staff_token
):
    read = app_client.http.get("/v1/admin/program", headers=auth(staff_token))
    assert read.status_code == 200
    config = read.json_body["config"]
    assert config["version"] == 0
    assert config["payment_cap_pct"] == 50
    first = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**config, "pending_days": 3}),
    )
    assert first.status_code == 200, first.json_body
    assert first.json_body["config"]["version"] == 1
    stale = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**config, "pending_days": 5}),  # still version 0
    )
    assert stale.status_code == 409
    second = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**first.json_body["config"], "pending_days": 5}),
    )
    assert second.status_code == 200, second.json_body
    assert second.json_body["config"]["version"] == 2
    stale_again = app_client.http.put(
        "/v1/admin/program",
        headers=auth(staff_token),
        body=json.dumps({**first.json_body["config"], "pending_days": 7}),  # version 1
    )
    assert stale_again.status_code == 409
    assert error_code(stale_again) == "VERSION_CONFLICT"
    now = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body["config"]
    assert (now["version"], now["pending_days"]) == (2, 5)


def test_given_a_member_token_when_reading_or_writing_the_program_then_403(
    seeded, app_client, staff_token
):
    token = token_for(register(app_client, staff_token))
    assert app_client.http.get("/v1/admin/program", headers=auth(token)).status_code == 403
    config = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body["config"]
    response = app_client.http.put(
        "/v1/admin/program", headers=auth(token), body=json.dumps(config)
    )
    assert response.status_code == 403


def test_given_an_invalid_program_when_putting_it_then_400_and_it_is_unchanged(
    seeded, app_client, staff_token
):
    config = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body["config"]
    for bad in ({**config, "payment_cap_pct": 101}, {**config, "expiry_policy": "weekly"}):
        response = app_client.http.put(
            "/v1/admin/program", headers=auth(staff_token), body=json.dumps(bad)
        )
        assert response.status_code == 400
    after = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body
    assert after["config"] == config


def test_given_an_admin_capped_the_points_per_purchase_when_a_pos_posts_a_purchase_then_the_new_rule_applies(
    pos, app_client, staff_token
):
    config = app_client.http.get("/v1/admin/program", headers=auth(staff_token)).json_body["config"]
    saved = app_client.http.put(
        "/v1/admin/program",
        headers=auth(token_for(None, role="admin")),
        body=json.dumps({**config, "max_points_per_purchase": 10}),
    )
    assert saved.status_code == 200, saved.json_body
    member_id = register(app_client, staff_token)
    response = pos.send("POST", "/v1/transactions", purchase_body(member_id))
    assert response.status_code == 201, response.json_body
    assert response.json_body["points_earned"] == 10
    assert response.json_body["breakdown"]["uncapped_points"] == 98


def seed_coupon(member_id: str, **terms: Any) -> str:
    """A coupon of the member's, stored as the coupons' own routes store one."""
    from datetime import timedelta

    from chalicelib.dal.coupons import coupon_item
    from chalicelib.domain.coupons import CouponTemplate, CouponTerms, issue
    from chalicelib.wiring import services

    services()  # binds the item classes to the tables
    template = CouponTemplate(
        "tpl-10off",
        "10 yuan off",
        CouponTerms(**{"kind": "amount_off", "value": 1000, **terms}),
        valid_days=30,
    )
    coupon = issue(template, member_id, datetime.now(UTC) - timedelta(hours=1), "staff", "i-1")
    coupon_item(coupon).save()
    return coupon.code


def test_given_a_coupon_when_a_pos_posts_a_purchase_then_discounted_and_the_view_shows_it(
    pos, app_client, staff_token
):
    from chalicelib.domain.coupons import display_code

    member_id = register(app_client, staff_token)
    code = seed_coupon(member_id)
    body = purchase_body(member_id, coupon_codes=[display_code(code), "WELCOME10"])
    response = pos.send("POST", "/v1/transactions", body)
    assert response.status_code == 201, response.json_body
    receipt = response.json_body
    assert receipt["coupons_applied"] == [display_code(code)]
    assert receipt["coupons_rejected"] == [{"code": "WELCOME10", "reason": "COUPON_NOT_FOUND"}]
    assert receipt["discount"] == 1000
    assert receipt["coupon_discounts"] == [
        {"code": display_code(code), "template_id": "tpl-10off", "discount": 1000}
    ]
    assert receipt["cash_due"] == 8800
    assert receipt["points_earned"] == 87
    view = pos.send("GET", f"/v1/transactions/{body['transaction_id']}")
    assert view.status_code == 200, view.json_body
    assert view.json_body["transaction"] == receipt
    # the same coupon on the next purchase: used
    again = pos.send("POST", "/v1/transactions", purchase_body(member_id, coupon_codes=[code]))
    assert again.status_code == 201, again.json_body
    assert again.json_body["coupons_rejected"] == [{"code": code, "reason": "COUPON_USED"}]
    assert again.json_body["cash_due"] == 9800
    # the full refund gives it back
    refunded = pos.send(
        "POST",
        f"/v1/transactions/{body['transaction_id']}/refunds",
        {"refund_id": "r-all", "amount": 9800},
    )
    assert refunded.status_code == 201, refunded.json_body
    assert refunded.json_body["coupons_restored"] == [display_code(code)]
    assert refunded.json_body["coupon_discount"] == 1000
    view = pos.send("GET", f"/v1/transactions/{body['transaction_id']}")
    assert view.json_body["refunds"][0]["coupons_restored"] == [display_code(code)]


def test_given_another_members_coupon_when_a_pos_posts_a_purchase_then_refused_not_owned(
    pos, app_client, staff_token
):
    member_id = register(app_client, staff_token)
    code = seed_coupon(register(app_client, staff_token))
    response = pos.send("POST", "/v1/transactions", purchase_body(member_id, coupon_codes=[code]))
    assert response.status_code == 201, response.json_body
    assert response.json_body["coupons_rejected"] == [{"code": code, "reason": "COUPON_NOT_OWNED"}]
    assert response.json_body["cash_due"] == 9800
