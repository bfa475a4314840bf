"""Member presence (会员码) over HTTP, as a mobile app and a till use it: the app asks for
a code, the POS looks the member up with it and pays with points; the code pays once,
however the tills retry or race."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.clients import SIGNUP_BONUS, Pos, wait_for_balance

pytestmark = pytest.mark.e2e


def bill(code: str | None, pay: int, **who: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": f"mc-{uuid.uuid4().hex[:10]}",
        "store_id": "store-001",
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [{"sku": "latte", "quantity": 1, "unit_price": 3200}],
        "total": 3200,
        "pay_with_points": pay,
        **who,
    }
    if code is not None:
        body["member_code"] = code
    return body


def test_given_the_app_shows_a_code_when_the_pos_pays_with_points_then_it_pays_once(
    stack, stack_env
):
    from local.tools import create_store_key

    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    registered = requests.post(
        f"{api}/v1/members",
        headers=ops,
        data=json.dumps(
            {
                "phone": unique_phone(),
                "channel": "app",
                "name": "李雷",
                "birthday": "1990-05-20",
                "email": "li@example.com",
            }
        ),
        timeout=10,
    )
    assert registered.status_code == 201, registered.text
    member_id = registered.json()["member_id"]
    assert wait_for_balance(api, member_id, SIGNUP_BONUS)
    app = auth(token_for(member_id))
    pos = Pos(api, create_store_key("store-001"))

    # without the member present, no points leave
    refused = pos.send("POST", "/v1/transactions", bill(None, 100, member_id=member_id))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "MEMBER_CODE_REQUIRED"

    # the app asks for a code and shows it; the till scans it
    issued = requests.post(f"{api}/v1/members/{member_id}/member-code", headers=app, timeout=10)
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    found = requests.get(
        f"{api}/v1/members/lookup",
        params={"member_code": code},
        # the signature covers the path without the query string
        headers=pos.signed("GET", "/v1/members/lookup")[1],
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert found.json()["member_id"] == member_id
    assert found.json()["profile"]["name"] == "李*"
    assert found.json()["profile"]["birthday"] is None
    assert found.json()["profile"]["email"] is None
    assert "****" in found.json()["phone"]

    # two tills send the same code at once, each for its own bill
    bills = [bill(code, 100), bill(code, 100)]
    answers: list[requests.Response] = []
    barrier = threading.Barrier(2)

    def till(body: dict[str, Any]) -> None:
        barrier.wait()
        answers.append(pos.send("POST", "/v1/transactions", body))

    threads = [threading.Thread(target=till, args=(body,)) for body in bills]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 403], [a.text for a in answers]
    [paid] = [a for a in answers if a.status_code == 201]
    [lost] = [a for a in answers if a.status_code == 403]
    assert lost.json()["error"]["code"] == "MEMBER_CODE_INVALID"
    assert paid.json()["member_id"] == member_id
    assert paid.json()["points_spent"] == 100
    assert paid.json()["cash_due"] == 3100

    # the winning till retries (it timed out): the first answer, nothing spent again
    winner = next(b for b in bills if b["transaction_id"] == paid.json()["transaction_id"])
    again = pos.send("POST", "/v1/transactions", winner)
    assert again.status_code == 201
    assert again.json() == paid.json()
    points = requests.get(f"{api}/v1/members/{member_id}/points", headers=app, timeout=10).json()
    assert points["balance"] == SIGNUP_BONUS - 100 + paid.json()["points_earned"]
