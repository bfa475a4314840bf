"""The points mall and coupons over HTTP, as the app, a till, ops staff and the payment
provider use them against the running local stack: browse, redeem, cancel, points + cash
paid or left to time out, a welcome coupon arriving by itself, a coupon used at the till
once however many tills try."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.clients import SIGNUP_BONUS, Pos, balance, tick, wait_for_balance
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

PAYMENT_SECRET_SETTING = "PAYMENT_NOTIFICATION_SECRET"


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _member(api: str, ops: dict[str, str], points: int) -> tuple[str, dict[str, str]]:
    """A member registered by staff, given `points` on top of the sign-up bonus; the
    member's own headers."""
    created = requests.post(
        f"{api}/v1/members",
        headers=ops,
        data=json.dumps({"phone": unique_phone(), "channel": "app", "name": "韩梅梅"}),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    member_id = created.json()["member_id"]
    assert wait_for_balance(api, member_id, SIGNUP_BONUS)
    if not points:
        return member_id, auth(token_for(member_id))
    adjusted = requests.post(
        f"{api}/v1/admin/members/{member_id}/adjustments",
        headers=ops,
        data=json.dumps({"adjustment_id": _id("adj"), "points": points, "reason": "e2e"}),
        timeout=10,
    )
    assert adjusted.status_code == 201, adjusted.text
    return member_id, auth(token_for(member_id))


def _reward(api: str, ops: dict[str, str], **fields: Any) -> str:
    reward_id = _id("rw")
    body = {"reward_id": reward_id, "name": "帆布袋 tote", "kind": "gift", **fields}
    created = requests.post(
        f"{api}/v1/admin/rewards", headers=ops, data=json.dumps(body), timeout=10
    )
    assert created.status_code == 201, created.text
    return reward_id


def _redeem(api: str, member_id: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return requests.post(
        f"{api}/v1/members/{member_id}/redemptions",
        headers=headers,
        data=json.dumps(body),
        timeout=20,
    )


def _stock_left(api: str, ops: dict[str, str], reward_id: str) -> int:
    read = requests.get(f"{api}/v1/admin/rewards/{reward_id}", headers=ops, timeout=10)
    assert read.status_code == 200, read.text
    return int(read.json()["stock_left"])


def test_given_a_member_with_points_when_they_browse_redeem_and_cancel_then_points_and_stock_go_and_come_back(
    stack, stack_env
):
    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    member_id, app = _member(api, ops, 2_000)
    other_id, other_app = _member(api, ops, 10)
    reward_id = _reward(api, ops, points=1_200, stock=3)

    # browsing: the reward is there, affordable for the member, not for the other one
    def listed(headers: dict[str, str]) -> dict[str, Any]:
        page = requests.get(
            f"{api}/v1/rewards?in_stock=true&limit=100", headers=headers, timeout=10
        )
        assert page.status_code == 200, page.text
        found = {r["reward_id"]: r for r in page.json()["rewards"]}
        cursor = page.json()["next_cursor"]
        while reward_id not in found and cursor:
            page = requests.get(
                f"{api}/v1/rewards",
                params={"cursor": cursor, "limit": 100},
                headers=headers,
                timeout=10,
            )
            found.update({r["reward_id"]: r for r in page.json()["rewards"]})
            cursor = page.json()["next_cursor"]
        return found[reward_id]

    assert listed(app)["affordable"] is True
    assert listed(other_app)["affordable"] is False

    body = {"redemption_id": _id("red"), "reward_id": reward_id, "quantity": 1}
    first = _redeem(api, member_id, app, body)
    assert first.status_code == 201, first.text
    assert first.json()["points_spent"] == 1_200
    assert first.json()["balance"] == SIGNUP_BONUS + 2_000 - 1_200
    # a retry of the same redemption answers the same, and takes nothing more
    again = _redeem(api, member_id, app, body)
    assert (again.status_code, again.json()) == (201, first.json())
    assert balance(api, member_id) == SIGNUP_BONUS + 800
    assert _stock_left(api, ops, reward_id) == 2

    # not enough points: refused, nothing taken
    poor = _redeem(api, other_id, other_app, {**body, "redemption_id": _id("red")})
    assert poor.status_code == 422, poor.text
    assert poor.json()["error"]["code"] == "INSUFFICIENT_POINTS"

    # another member cannot read or cancel it
    path = f"{api}/v1/members/{member_id}/redemptions/{body['redemption_id']}"
    assert requests.get(path, headers=other_app, timeout=10).status_code == 403
    assert requests.post(f"{path}/cancel", headers=other_app, timeout=10).status_code == 403

    cancelled = requests.post(f"{path}/cancel", headers=app, timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    twice = requests.post(f"{path}/cancel", headers=app, timeout=10)
    assert (twice.status_code, twice.json()["status"]) == (200, "cancelled")
    assert balance(api, member_id) == SIGNUP_BONUS + 2_000
    assert _stock_left(api, ops, reward_id) == 3
    listing = requests.get(f"{api}/v1/members/{member_id}/redemptions", headers=app, timeout=10)
    assert [r["status"] for r in listing.json()["redemptions"]] == ["cancelled"]


def test_given_a_reward_with_one_unit_when_members_race_for_it_then_exactly_one_gets_it(
    stack, stack_env
):
    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    reward_id = _reward(api, ops, points=100, stock=1)
    members = [_member(api, ops, 500) for _ in range(8)]
    answers: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(members))

    def race(member_id: str, headers: dict[str, str]) -> None:
        body = {"redemption_id": _id("race"), "reward_id": reward_id, "quantity": 1}
        barrier.wait(timeout=30)
        status = _redeem(api, member_id, headers, body).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=race, args=m) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [201] + [422] * (len(members) - 1)
    assert _stock_left(api, ops, reward_id) == 0


def _notify(api: str, secret: str, body: dict[str, Any], *, ts: int | None = None) -> Any:
    raw = json.dumps(body)
    stamp = str(ts if ts is not None else int(time.time()))
    signature = hmac.new(secret.encode(), f"{stamp}.{raw}".encode(), hashlib.sha256).hexdigest()
    return requests.post(
        f"{api}/v1/payments/notifications",
        data=raw,
        headers={
            "Content-Type": "application/json",
            "X-Payment-Timestamp": stamp,
            "X-Payment-Signature": signature,
        },
        timeout=10,
    )


def test_given_points_and_cash_when_the_provider_pays_one_and_never_pays_the_other_then_one_completes_and_one_is_released(
    stack, stack_env
):
    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    secret = stack_env[PAYMENT_SECRET_SETTING]
    member_id, app = _member(api, ops, 3_000)
    reward_id = _reward(api, ops, points=800, cash=2_000, stock=5)

    paid_id, unpaid_id = _id("paid"), _id("unpaid")
    for redemption_id in (paid_id, unpaid_id):
        held = _redeem(
            api, member_id, app, {"redemption_id": redemption_id, "reward_id": reward_id}
        )
        assert held.status_code == 201, held.text
        assert held.json()["status"] == "awaiting_payment"
        assert held.json()["cash_due"] == 2_000
    assert balance(api, member_id) == SIGNUP_BONUS + 3_000 - 1_600
    assert _stock_left(api, ops, reward_id) == 3

    notice = {
        "payment_id": _id("pay"),
        "member_id": member_id,
        "redemption_id": paid_id,
        "amount": 2_000,
        "currency": "CNY",
        "status": "paid",
    }
    forged = _notify(api, "not-the-secret", notice)
    assert forged.status_code == 401, forged.text
    stale = _notify(api, secret, notice, ts=int(time.time()) - 3_600)
    assert stale.status_code == 401, stale.text
    short = _notify(api, secret, {**notice, "amount": 1})
    assert short.status_code == 422, short.text
    paid = _notify(api, secret, notice)
    assert paid.status_code in (200, 201), paid.text
    assert _notify(api, secret, notice).json() == paid.json()  # a provider's retry

    # the other one is never paid: the release job, a while after the window, gives back
    # its points and stock (the job runs every minute; here it is fired as of later)
    tick(stack, "release_payment_holds", datetime.now(UTC) + timedelta(minutes=20))

    def status_of(redemption_id: str) -> str:
        read = requests.get(
            f"{api}/v1/members/{member_id}/redemptions/{redemption_id}", headers=app, timeout=10
        )
        return str(read.json()["status"])

    assert wait_for(lambda: status_of(unpaid_id) == "expired", 30)
    assert status_of(paid_id) == "completed"
    assert balance(api, member_id) == SIGNUP_BONUS + 3_000 - 800
    assert _stock_left(api, ops, reward_id) == 4
    late = _notify(api, secret, {**notice, "payment_id": _id("pay"), "redemption_id": unpaid_id})
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "REDEMPTION_EXPIRED"


def _purchase(code: str, member_id: str) -> dict[str, Any]:
    return {
        "transaction_id": _id("cpn"),
        "store_id": "store-001",
        "member_id": member_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [{"sku": "latte", "category": "drinks", "quantity": 4, "unit_price": 3200}],
        "total": 12_800,
        "coupon_codes": [code],
    }


def test_given_a_new_member_when_their_welcome_coupon_arrives_then_one_till_uses_it_and_others_are_refused(
    stack, stack_env
):
    from local.tools import create_store_key

    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    member_id, app = _member(api, ops, 0)

    # `make run` gives every new member the ¥10 welcome coupon (the members stream)
    def coupons(status: str = "active") -> list[dict[str, Any]]:
        listed = requests.get(
            f"{api}/v1/members/{member_id}/coupons?status={status}", headers=app, timeout=10
        )
        assert listed.status_code == 200, listed.text
        return list(listed.json()["coupons"])

    assert wait_for(lambda: len(coupons()) == 1, 30)
    code = coupons()[0]["code"]
    pos_a = Pos(api, create_store_key("store-001"))
    pos_b = Pos(api, create_store_key("store-001"))

    # two tills ring it up at the same moment: exactly one discount
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def ring(pos: Pos) -> None:
        body = _purchase(code.lower(), member_id)  # typed in lower case: the same code
        barrier.wait(timeout=30)
        answer = pos.send("POST", "/v1/transactions", body)
        assert answer.status_code == 201, answer.text
        results.append(answer.json())

    threads = [threading.Thread(target=ring, args=(p,)) for p in (pos_a, pos_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    discounts = sorted(r["discount"] for r in results)
    assert discounts == [0, 1_000]
    loser = next(r for r in results if r["discount"] == 0)
    assert [x["reason"] for x in loser["coupons_rejected"]] == ["COUPON_USED"]
    winner = next(r for r in results if r["discount"] == 1_000)
    assert winner["cash_due"] == 11_800

    # outside a purchase, another transaction cannot use it either
    again = pos_a.send(
        "POST",
        f"/v1/coupons/{code}/redeem",
        {"transaction_id": _id("other"), "store_id": "store-001"},
    )
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "COUPON_USED"
    assert [c["code"] for c in coupons("used")] == [code]

    # the refund of the whole purchase gives it back, usable again
    refund = pos_a.send(
        "POST",
        f"/v1/transactions/{winner['transaction_id']}/refunds",
        {"refund_id": _id("rf"), "amount": 12_800},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["coupons_restored"] == [winner["coupons_applied"][0]]
    assert [c["code"] for c in coupons()] == [code]
