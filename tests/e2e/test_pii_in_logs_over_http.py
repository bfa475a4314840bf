"""No personal data in the logs: members registered with every personal field over HTTP,
looked up by phone (the query names it), a purchase by phone, a profile change, and the
welcome messages sent through the whole pipeline; then the stack's log (API server,
pipeline, workers, the log sender) is searched for the phones, names, birthdays and
emails."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import UTC, datetime

import pytest
import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.clients import Pos
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


def test_given_registrations_lookups_purchases_and_messages_when_the_stack_log_is_read_then_it_names_no_one(
    stack, stack_env
):
    from chalicelib.handlers.messages import delivered
    from local.tools import create_store_key

    api = stack.base_url
    ops = {**auth(token_for(None, role="ops")), "Content-Type": "application/json"}
    tag = uuid.uuid4().hex[:6]
    people = [
        {
            "phone": unique_phone(),
            "channel": "pos",
            "name": f"韩梅梅{tag}",
            "gender": "female",
            "birthday": "1990-05-17",
            "email": f"meimei.{tag}@example.com",
            "external_ids": {"pos_card": f"CARD{tag}"},
        },
        {
            "phone": unique_phone(),
            "channel": "app",
            "name": f"Lily {tag}",
            "birthday": "1988-12-24",
        },
    ]
    ids = []
    for person in people:
        answer = requests.post(
            f"{api}/v1/members", headers=ops, data=json.dumps(person), timeout=10
        )
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["member_id"])
        query = urllib.parse.urlencode({"phone": person["phone"]})
        found = requests.get(f"{api}/v1/members/lookup?{query}", headers=ops, timeout=10)
        assert found.status_code == 200, found.text

    pos = Pos(api, create_store_key("store-001"))
    bought = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
            "store_id": "store-001",
            "phone": people[1]["phone"],
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "tea", "category": "drinks", "quantity": 1, "unit_price": 2500}],
            "total": 2500,
        },
    )
    assert bought.status_code == 201, bought.text
    changed = {"name": f"王芳{tag}", "email": f"wangfang.{tag}@example.com"}
    patched = requests.patch(
        f"{api}/v1/members/{ids[0]}", headers=ops, data=json.dumps(changed), timeout=10
    )
    assert patched.status_code == 200, patched.text

    for member_id in ids:  # stream -> handler -> queue -> worker -> log sender
        assert wait_for(lambda m=member_id: delivered(f"welcome#{m}"), 60), stack.log()[-3000:]
    log = stack.log()
    assert all(member_id in log for member_id in ids)  # the log does name members by id
    assert "/v1/members/lookup" in log  # and the API server's access log is in it
    needles = [changed["name"], changed["email"]]
    for person in people:
        phone = person["phone"]
        needles += [phone, phone.removeprefix("+86"), urllib.parse.quote(phone)]
        needles += [person["name"], person["birthday"], *person.get("external_ids", {}).values()]
        needles += [person["email"]] if "email" in person else []
    for needle in needles:
        assert needle not in log, f"{needle!r} in the stack's log"
