"""Points end to end: a POS purchase, a refund, a referral paid through the stream."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests

from tests.conftest import auth, token_for
from tests.e2e.clients import SIGNUP_BONUS, Pos, balance, new_member, wait_for_balance

pytestmark = pytest.mark.e2e


def register(api: str, **fields) -> str:
    member_id = new_member(api, **fields)
    # the sign-up bonus arrives through the members stream, seconds later
    assert wait_for_balance(api, member_id, SIGNUP_BONUS)
    return member_id


def test_given_a_member_when_a_pos_posts_a_purchase_and_a_refund_then_points_follow(
    stack, stack_env
):
    from local.tools import create_store_key

    pos = Pos(stack.base_url, create_store_key("store-001"))
    member_id = register(stack.base_url, external_ids={"pos_card": f"E2E{uuid.uuid4().hex[:8]}"})
    txn = {
        "transaction_id": f"e2e-{uuid.uuid4().hex[:10]}",
        "store_id": "store-001",
        "member_id": member_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [
            {"sku": "tea", "category": "drinks", "quantity": 2, "unit_price": 2500},
            {"sku": "cake", "category": "bakery", "quantity": 1, "unit_price": 4800},
        ],
        "total": 9800,
    }
    first = pos.send("POST", "/v1/transactions", txn)
    assert first.status_code == 201, first.text
    assert first.json()["points_earned"] == 98
    # the POS timed out and retries: same answer, one credit
    again = pos.send("POST", "/v1/transactions", txn)
    assert again.status_code == 201
    assert again.json() == first.json()
    refund = pos.send(
        "POST",
        f"/v1/transactions/{txn['transaction_id']}/refunds",
        {"refund_id": "rf-1", "items": [{"sku": "tea", "quantity": 1}]},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["points_reversed"] == 25
    points = requests.get(
        f"{stack.base_url}/v1/members/{member_id}/points",
        headers=auth(token_for(member_id)),
        timeout=10,
    ).json()
    assert points["balance"] == SIGNUP_BONUS + 73
    assert sum(lot["points"] for lot in points["expiring"]) == SIGNUP_BONUS + 73


def test_given_a_referral_when_the_referee_buys_for_the_first_time_then_the_referrer_is_paid(
    stack, stack_env
):
    from local.tools import create_store_key

    pos = Pos(stack.base_url, create_store_key("store-002"))
    referrer = register(stack.base_url)
    referee = register(stack.base_url)
    declared = requests.post(
        f"{stack.base_url}/v1/members/{referee}/activities",
        headers=auth(token_for(referee)),
        data=json.dumps(
            {"activity_id": "ref-1", "type": "referral", "referrer_member_id": referrer}
        ),
        timeout=10,
    )
    assert declared.status_code == 201, declared.text
    bought = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": f"ref-{uuid.uuid4().hex[:10]}",
            "store_id": "store-002",
            "member_id": referee,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "x", "quantity": 1, "unit_price": 1000}],
            "total": 1000,
        },
    )
    assert bought.status_code == 201, bought.text

    # the default referral reward, on top of the sign-up bonus
    assert wait_for_balance(stack.base_url, referrer, SIGNUP_BONUS + 200)
    assert balance(stack.base_url, referrer) == SIGNUP_BONUS + 200


def test_given_a_purchase_crossing_the_gold_threshold_then_the_member_is_gold_within_seconds(
    stack, stack_env
):
    from local.tools import create_store_key

    pos = Pos(stack.base_url, create_store_key("store-001"))
    member_id = register(stack.base_url)
    accepted = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": f"gold-{uuid.uuid4().hex[:10]}",
            "store_id": "store-001",
            "member_id": member_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [
                {"sku": "watch", "category": "jewellery", "quantity": 1, "unit_price": 520_000}
            ],
            "total": 520_000,
        },
    )
    assert accepted.status_code == 201, accepted.text
    started = time.monotonic()

    def tier() -> dict:
        return requests.get(
            f"{stack.base_url}/v1/members/{member_id}/tier",
            headers=auth(token_for(member_id)),
            timeout=10,
        ).json()

    while tier()["tier"]["code"] != "gold" and time.monotonic() - started < 15:
        time.sleep(0.2)
    view = tier()
    assert view["tier"]["code"] == "gold"
    assert view["qualifying_spend"] == 520_000
    assert view["next_tier"]["code"] == "platinum"
    assert view["next_tier"]["amount_missing"] == 1_000_000 - 520_000
    assert view["retention"]["retain_spend"] == 400_000
    assert view["history"][0]["to"] == "gold"
    member = requests.get(
        f"{stack.base_url}/v1/members/{member_id}", headers=auth(token_for(member_id)), timeout=10
    ).json()
    assert member["tier"]["code"] == "gold"
    assert member["tier"]["expires_at"] is not None
