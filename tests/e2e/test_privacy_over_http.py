"""Personal data over HTTP against the running local stack: a member registers, buys,
exports everything; an admin erases them; every look-up answers 404; the phone
registers anew as a new member with no second sign-up bonus (the members stream pays it
to the first registration only); the ledger keeps its numbers."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.clients import SIGNUP_BONUS, Pos, wait_for_balance

pytestmark = pytest.mark.e2e


def _register(api: str, ops: dict[str, str], phone: str, card: str) -> str:
    created = requests.post(
        f"{api}/v1/members",
        headers=ops,
        data=json.dumps(
            {
                "phone": phone,
                "channel": "pos",
                "name": "韩梅梅",
                "birthday": "1990-05-20",
                "external_ids": {"pos_card": card},
            }
        ),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["member_id"])


def test_given_a_member_who_bought_when_exported_and_erased_then_lookups_404_and_the_phone_registers_anew(
    stack, stack_env
):
    from local.tools import create_store_key

    api = stack.base_url
    ops = auth(token_for(None, role="ops"))
    admin = auth(token_for(None, role="admin"))
    pos = Pos(api, create_store_key("store-001"))
    phone, card = unique_phone(), f"C{uuid.uuid4().hex[:8]}"

    member_id = _register(api, ops, phone, card)
    assert wait_for_balance(api, member_id, SIGNUP_BONUS)
    txn = f"e2e-{uuid.uuid4().hex[:10]}"
    bought = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": txn,
            "store_id": "store-001",
            "card": card,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "tea", "category": "drinks", "quantity": 1, "unit_price": 9800}],
            "total": 9800,
        },
    )
    assert bought.status_code == 201, bought.text
    balance = SIGNUP_BONUS + int(bought.json()["points_earned"])

    # the member downloads everything the program holds about them
    mine = auth(token_for(member_id))
    exported = requests.get(f"{api}/v1/members/{member_id}/export", headers=mine, timeout=20)
    assert exported.status_code == 200, exported.text
    export: dict[str, Any] = exported.json()
    assert export["member"]["phone"] == phone
    assert export["member"]["external_ids"]["pos_card"] == card
    assert export["points"]["balance"] == balance
    assert {e["source_id"] for e in export["ledger"]} >= {txn}
    assert sum(e["points"] for e in export["ledger"]) == balance

    # an admin erases the member
    erased = requests.post(
        f"{api}/v1/admin/members/{member_id}/erase",
        headers=admin,
        data=json.dumps(
            {"request_id": f"erase-{member_id}", "reason": "member_request", "ticket": "PIPL-12"}
        ),
        timeout=10,
    )
    assert erased.status_code == 202, erased.text
    replayed = requests.post(
        f"{api}/v1/admin/members/{member_id}/erase",
        headers=admin,
        data=json.dumps(
            {"request_id": f"erase-{member_id}", "reason": "member_request", "ticket": "PIPL-12"}
        ),
        timeout=10,
    )
    assert replayed.status_code == 202
    assert replayed.json() == erased.json()

    lookups = {
        "phone": pos.send("GET", "/v1/members/lookup", query=f"?phone={phone.replace('+', '%2B')}"),
        "card": pos.send("GET", "/v1/members/lookup", query=f"?card={card}"),
        "member": requests.get(f"{api}/v1/members/{member_id}", headers=ops, timeout=10),
        "points": requests.get(f"{api}/v1/members/{member_id}/points", headers=ops, timeout=10),
        "ledger": requests.get(f"{api}/v1/members/{member_id}/ledger", headers=ops, timeout=10),
    }
    assert {k: r.status_code for k, r in lookups.items()} == dict.fromkeys(lookups, 404)
    assert {r.json()["error"]["code"] for r in lookups.values()} == {"MEMBER_NOT_FOUND"}

    # the phone and the card register anew: a new member, and no second sign-up bonus
    again = _register(api, ops, phone, card)
    assert again != member_id
    found = pos.send("GET", "/v1/members/lookup", query=f"?card={card}")
    assert found.json()["member_id"] == again
    time.sleep(3)  # the members stream has had its time to (not) pay a bonus
    points = requests.get(f"{api}/v1/members/{again}/points", headers=ops, timeout=10)
    assert points.json()["balance"] == 0

    # the ledger keeps its numbers: the old purchase refunds on the erased member's tombstone
    refunded = pos.send(
        "POST", f"/v1/transactions/{txn}/refunds", {"refund_id": "rf-1", "amount": 9800}
    )
    assert refunded.status_code == 201, refunded.text
