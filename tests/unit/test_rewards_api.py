"""The points mall over HTTP (chalice.test.Client on moto): who may create rewards, list,
redeem, cancel, fulfil; POS redemptions need the member code; payment notifications are
signed; replays answer the same."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.api.rewards import payment_signature
from chalicelib.dal.coupon_templates import TEMPLATE_SK, template_pk, template_to_data
from chalicelib.dal.tables import ProgramItem
from chalicelib.domain.coupons import CouponTemplate, CouponTerms
from tests.conftest import auth, token_for
from tests.helpers import Pos
from tests.unit.test_member_codes_api import code_for, member_with_points

SECRET = "local-only-payment-notification-secret"


@pytest.fixture
def pos(seeded, app_client, store_key) -> Pos:
    return Pos(app_client, store_key)


def reward_body(**fields: Any) -> dict[str, Any]:
    return {
        "reward_id": f"rw-{uuid.uuid4().hex[:8]}",
        "name": "保温杯",
        "name_en": "Bottle",
        "kind": "gift",
        "points": 500,
        "stock": 120,
        **fields,
    }


def create(client: Any, token: str, body: dict[str, Any]) -> Any:
    return client.http.post("/v1/admin/rewards", headers=auth(token), body=json.dumps(body))


def redeem(client: Any, member_id: str, body: dict[str, Any], token: str | None = None) -> Any:
    return client.http.post(
        f"/v1/members/{member_id}/redemptions",
        headers=auth(token or token_for(member_id)),
        body=json.dumps(body),
    )


def notify(client: Any, payload: dict[str, Any], secret: str = SECRET, skew: int = 0) -> Any:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()) + skew)
    headers = {
        "Content-Type": "application/json",
        "X-Payment-Timestamp": stamp,
        "X-Payment-Signature": payment_signature(secret, stamp, body),
    }
    return client.http.post("/v1/payments/notifications", headers=headers, body=body)


def test_given_staff_when_creating_a_reward_then_201_shards_and_replay_answers_the_same(
    seeded, app_client, staff_token
) -> None:
    body = reward_body()
    first = create(app_client, staff_token, body)
    assert first.status_code == 201, first.json_body
    assert first.json_body["stock_left"] == 120
    assert first.json_body["stock_shards"] == 2
    again = create(app_client, staff_token, body)
    assert again.status_code == 201
    assert again.json_body["stock_left"] == 120
    other = create(app_client, staff_token, {**body, "points": 1})
    assert other.status_code == 409
    assert other.json_body["error"]["code"] == "REWARD_EXISTS"


def test_given_a_member_token_when_creating_a_reward_then_403(seeded, app_client, staff_token):
    member_id = member_with_points(app_client, staff_token)
    response = create(app_client, token_for(member_id), reward_body())
    assert response.status_code == 403


def test_given_a_coupon_reward_without_an_active_template_then_refused(
    seeded, app_client, staff_token
) -> None:
    missing = create(app_client, staff_token, reward_body(kind="coupon"))
    assert missing.status_code == 400
    unknown = create(app_client, staff_token, reward_body(kind="coupon", coupon_template_id="x"))
    assert unknown.status_code == 422
    assert unknown.json_body["error"]["code"] == "COUPON_TEMPLATE_NOT_FOUND"


def test_given_a_member_when_listing_then_affordable_and_eligible_and_filters_apply(
    seeded, app_client, staff_token
) -> None:
    member_id = member_with_points(app_client, staff_token, 600)
    cheap = reward_body(points=500)
    gold = reward_body(points=100, tiers=["gold"])
    empty = reward_body(points=100, stock=0)
    for body in (cheap, gold, empty):
        assert create(app_client, staff_token, body).status_code == 201
    response = app_client.http.get("/v1/rewards?limit=100", headers=auth(token_for(member_id)))
    assert response.status_code == 200, response.json_body
    shown = {r["reward_id"]: r for r in response.json_body["rewards"]}
    assert shown[cheap["reward_id"]]["affordable"] is True
    assert shown[gold["reward_id"]]["eligible"] is False
    assert shown[empty["reward_id"]]["in_stock"] is False
    in_stock = app_client.http.get(
        "/v1/rewards?limit=100&in_stock=true", headers=auth(token_for(member_id))
    ).json_body["rewards"]
    assert empty["reward_id"] not in {r["reward_id"] for r in in_stock}


def test_given_a_member_when_redeeming_then_201_replay_same_and_other_body_409(
    seeded, app_client, staff_token
) -> None:
    member_id = member_with_points(app_client, staff_token, 3000)
    body = reward_body()
    create(app_client, staff_token, body)
    request = {"redemption_id": "red-1", "reward_id": body["reward_id"], "quantity": 2}
    first = redeem(app_client, member_id, request)
    assert first.status_code == 201, first.json_body
    assert first.json_body["balance"] == 2000
    assert first.json_body["status"] == "completed"
    again = redeem(app_client, member_id, request)
    assert again.status_code == 201
    assert again.json_body == first.json_body
    other = redeem(app_client, member_id, {**request, "quantity": 1})
    assert other.status_code == 409
    assert other.json_body["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    listed = app_client.http.get(
        f"/v1/members/{member_id}/redemptions", headers=auth(token_for(member_id))
    ).json_body["redemptions"]
    assert [r["redemption_id"] for r in listed] == ["red-1"]
    cancel = app_client.http.post(
        f"/v1/members/{member_id}/redemptions/red-1/cancel", headers=auth(token_for(member_id))
    )
    assert cancel.status_code == 200
    assert cancel.json_body["status"] == "cancelled"
    # a replay after the cancel still answers the first answer
    assert redeem(app_client, member_id, request).json_body == first.json_body


def test_given_another_members_redemption_then_403_everywhere(seeded, app_client, staff_token):
    owner = member_with_points(app_client, staff_token)
    intruder = member_with_points(app_client, staff_token)
    body = reward_body()
    create(app_client, staff_token, body)
    request = {"redemption_id": "red-x", "reward_id": body["reward_id"]}
    assert redeem(app_client, owner, request, token_for(intruder)).status_code == 403
    assert redeem(app_client, owner, request).status_code == 201
    path = f"/v1/members/{owner}/redemptions/red-x"
    headers = auth(token_for(intruder))
    assert app_client.http.get(path, headers=headers).status_code == 403
    assert app_client.http.post(f"{path}/cancel", headers=headers).status_code == 403
    assert app_client.http.get(f"/v1/members/{owner}/redemptions", headers=headers).status_code == (
        403
    )
    fulfil = app_client.http.post(
        f"/v1/admin/members/{owner}/redemptions/red-x/fulfilment",
        headers=headers,
        body=json.dumps({"status": "shipped"}),
    )
    assert fulfil.status_code == 403


def test_given_a_pos_without_the_member_code_then_403_and_with_it_201(
    pos, app_client, staff_token
) -> None:
    member_id = member_with_points(app_client, staff_token)
    body = reward_body()
    create(app_client, staff_token, body)
    path = f"/v1/members/{member_id}/redemptions"
    request = {"redemption_id": "pos-1", "reward_id": body["reward_id"]}
    refused = pos.send("POST", path, request)
    assert refused.status_code == 403
    assert refused.json_body["error"]["code"] == "MEMBER_CODE_REQUIRED"
    code = code_for(app_client, member_id)
    accepted = pos.send("POST", path, {**request, "member_code": code})
    assert accepted.status_code == 201, accepted.json_body
    reused = pos.send("POST", path, {**request, "redemption_id": "pos-2", "member_code": code})
    assert reused.status_code == 403
    assert reused.json_body["error"]["code"] == "MEMBER_CODE_INVALID"


def test_given_points_and_cash_when_the_provider_notifies_then_signed_only_and_completed(
    seeded, app_client, staff_token
) -> None:
    member_id = member_with_points(app_client, staff_token)
    body = reward_body(cash=2000)
    create(app_client, staff_token, body)
    request = {"redemption_id": "pc-1", "reward_id": body["reward_id"]}
    created = redeem(app_client, member_id, request)
    assert created.json_body["status"] == "awaiting_payment"
    paid = {
        "payment_id": "pay-1",
        "member_id": member_id,
        "redemption_id": "pc-1",
        "amount": 2000,
        "currency": "CNY",
        "status": "paid",
    }
    assert notify(app_client, paid, secret="wrong").status_code == 401
    assert notify(app_client, paid, skew=-600).status_code == 401
    unsigned = app_client.http.post(
        "/v1/payments/notifications",
        headers={"Content-Type": "application/json"},
        body=json.dumps(paid),
    )
    assert unsigned.status_code == 401
    assert notify(app_client, {**paid, "amount": 1}).status_code == 422
    done = notify(app_client, paid)
    assert done.status_code == 200, done.json_body
    assert done.json_body["status"] == "completed"
    assert done.json_body["fulfilment"] == "placed"
    assert notify(app_client, paid).json_body == done.json_body
    shipped = app_client.http.post(
        f"/v1/admin/members/{member_id}/redemptions/pc-1/fulfilment",
        headers=auth(staff_token),
        body=json.dumps({"status": "shipped", "tracking_no": "SF1"}),
    )
    assert shipped.status_code == 200
    assert shipped.json_body["fulfilment"] == "shipped"
    back = app_client.http.post(
        f"/v1/admin/members/{member_id}/redemptions/pc-1/fulfilment",
        headers=auth(staff_token),
        body=json.dumps({"status": "shipped"}),
    )
    assert back.status_code == 200
    cancel = app_client.http.post(
        f"/v1/members/{member_id}/redemptions/pc-1/cancel", headers=auth(token_for(member_id))
    )
    assert cancel.status_code == 409


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("1" + "0" * 400, "ab"),  # digits, but too large for a float: OverflowError
        ("9" * 5000, "ab"),  # past int()'s digit limit: ValueError
        ("\u00b2", "ab"),  # '²' is a digit to str.isdigit, not to int()
        (None, "\u00e9" * 64),  # a non-ASCII signature: compare_digest raises TypeError
    ],
)
def test_given_malformed_payment_headers_when_notified_then_401_not_500(
    seeded, app_client, timestamp: str | None, signature: str
) -> None:
    """Given a notification whose timestamp or signature header is odd (huge, a Unicode
    digit, non-ASCII), when it arrives, then 401 with a code, never a 500."""
    body = json.dumps({"payment_id": "p", "member_id": "m", "redemption_id": "r"}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Payment-Timestamp": timestamp or str(int(time.time())),
        "X-Payment-Signature": signature,
    }
    response = app_client.http.post("/v1/payments/notifications", headers=headers, body=body)
    assert response.status_code == 401, response.body
    assert response.json_body["error"]["code"] in ("INVALID_SIGNATURE", "STALE_TIMESTAMP")


@pytest.mark.parametrize(
    "key",
    [
        {"pk": {"S": "MEMBER#{m}"}, "sk": {"S": 5}},
        {"pk": {"S": "MEMBER#{m}"}, "sk": {"S": ["REQ#redeem#x"]}},
        {"pk": {"S": "MEMBER#{m}"}, "sk": "REQ#redeem#x"},
        ["pk", "sk"],
    ],
)
def test_given_a_forged_redemptions_cursor_when_listing_then_400_not_500(
    seeded, app_client, staff_token, key: Any
) -> None:
    """Given a cursor that decodes to JSON of the wrong shape (a number or a list where
    the sort key's string is), when a member lists their redemptions, then 400
    INVALID_CURSOR, never a 500."""
    import base64

    member_id = member_with_points(app_client, staff_token)
    raw = json.dumps(key).replace("{m}", member_id).encode()
    cursor = base64.urlsafe_b64encode(raw).decode()
    response = app_client.http.get(
        f"/v1/members/{member_id}/redemptions?cursor={cursor}",
        headers=auth(token_for(member_id)),
    )
    assert response.status_code == 400, response.body
    assert response.json_body["error"]["code"] == "INVALID_CURSOR"


def test_given_a_reward_retired_or_repriced_in_another_container_when_redeemed_then_the_edit_holds(
    seeded, app_client, staff_token
) -> None:
    """Given a reward this container has cached, when staff in another container (its own
    repository and cache) reprice it and then retire it, then a redemption here pays the
    new price, and once retired is 422 REWARD_UNAVAILABLE: what a redemption charges and
    whether it may happen are read as stored, not from a 30 s cache."""
    from dataclasses import replace

    from chalicelib.dal.rewards import DynamoRewardRepository
    from chalicelib.wiring import services

    member_id = member_with_points(app_client, staff_token, 3000)
    body = reward_body(points=100)
    assert create(app_client, staff_token, body).status_code == 201
    reward_id = body["reward_id"]
    assert services().rewards.reward(reward_id) is not None  # cached here
    elsewhere = DynamoRewardRepository()
    current = elsewhere.reward(reward_id, fresh=True)
    assert current is not None
    repriced = replace(current, points=1000, version=current.version + 1)
    assert elsewhere.save(repriced, current.version)
    first = redeem(app_client, member_id, {"redemption_id": "c-1", "reward_id": reward_id})
    assert first.status_code == 201, first.json_body
    assert first.json_body["points_spent"] == 1000
    retired = replace(repriced, status="retired", version=repriced.version + 1)
    assert elsewhere.save(retired, repriced.version)
    second = redeem(app_client, member_id, {"redemption_id": "c-2", "reward_id": reward_id})
    assert second.status_code == 422, second.json_body
    assert second.json_body["error"]["code"] == "REWARD_UNAVAILABLE"


def test_given_an_unpaid_redemption_when_the_release_job_runs_late_then_it_expires(
    seeded, app_client, staff_token
) -> None:
    from chalicelib.handlers.payment_holds import run_release

    member_id = member_with_points(app_client, staff_token, 1000)
    body = reward_body(cash=100)
    create(app_client, staff_token, body)
    redeem(app_client, member_id, {"redemption_id": "late-1", "reward_id": body["reward_id"]})
    assert run_release({"time": "2020-01-01T00:00:00Z"})["expired"] == 0  # not due yet
    result = run_release({"time": "2999-01-01T00:00:00Z"})
    assert result["expired"] == 1
    assert run_release({"time": "2999-01-01T00:00:00Z"})["expired"] == 0
    view = app_client.http.get(
        f"/v1/members/{member_id}/redemptions/late-1", headers=auth(token_for(member_id))
    ).json_body
    assert view["status"] == "expired"
    points = app_client.http.get(
        f"/v1/members/{member_id}/points", headers=auth(token_for(member_id))
    ).json_body
    assert points["balance"] == 1000


def test_given_staff_when_patching_stock_and_retiring_then_redemptions_stop(
    seeded, app_client, staff_token
) -> None:
    member_id = member_with_points(app_client, staff_token)
    body = reward_body(stock=100)
    created = create(app_client, staff_token, body).json_body
    path = f"/v1/admin/rewards/{body['reward_id']}"
    stale = app_client.http.patch(
        path, headers=auth(staff_token), body=json.dumps({"version": 9, "stock": 5})
    )
    assert stale.status_code == 409
    patched = app_client.http.patch(
        path,
        headers=auth(staff_token),
        body=json.dumps({"version": created["version"], "stock": 7, "status": "retired"}),
    )
    assert patched.status_code == 200, patched.json_body
    assert patched.json_body["stock_left"] == 7
    assert patched.json_body["status"] == "retired"
    refused = redeem(app_client, member_id, {"redemption_id": "r", "reward_id": body["reward_id"]})
    assert refused.status_code == 422
    assert refused.json_body["error"]["code"] == "REWARD_UNAVAILABLE"


def test_given_a_coupon_reward_when_redeemed_over_http_then_the_coupon_is_in_the_answer(
    seeded, app_client, staff_token
) -> None:
    template = CouponTemplate("tpl-api", "¥5", CouponTerms("amount_off", 500), valid_days=10)
    ProgramItem(
        pk=template_pk("tpl-api"),
        sk=TEMPLATE_SK,
        kind="coupon_template",
        data=template_to_data(template),
    ).save()
    member_id = member_with_points(app_client, staff_token)
    body = reward_body(kind="coupon", coupon_template_id="tpl-api", points=100)
    assert create(app_client, staff_token, body).status_code == 201
    response = redeem(app_client, member_id, {"redemption_id": "c", "reward_id": body["reward_id"]})
    assert response.status_code == 201, response.json_body
    coupon = response.json_body["coupon"]
    assert len(coupon["code"]) == 19
    assert coupon["valid_to"] > datetime.now(UTC).isoformat()[:10]


def test_given_a_hold_whose_redemption_is_gone_when_the_release_job_runs_then_it_is_dropped(
    seeded, app_client, staff_token
) -> None:
    """Given a payment hold naming no redemption (a crash, or an erased member), when the
    release job runs, then it deletes the hold instead of failing on it every run at the
    front of its shard's range."""
    from datetime import UTC, datetime

    from chalicelib.dal.mall import hold_item
    from chalicelib.dal.rewards import holds_due
    from chalicelib.domain.records import HoldChange
    from chalicelib.handlers.payment_holds import run_release
    from chalicelib.wiring import services

    services()  # binds the item classes to the test tables
    due = datetime(2026, 1, 1, tzinfo=UTC)
    hold_item(HoldChange("mbr_nobody", "gone-1", due, "put")).save()
    result = run_release({"time": "2026-06-01T00:00:00Z"})
    assert (result["skipped"], result["failed"]) == (1, 0)
    assert all(
        redemption != "gone-1"
        for shard in range(4)
        for _, redemption, _ in holds_due(shard, "2999-01-01T00:00:00.000Z")
    )
