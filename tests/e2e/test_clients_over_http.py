"""A mobile client and a store POS against the running local stack, over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import requests

from chalicelib.domain.clock import PROGRAM_TZ
from chalicelib.domain.messaging import in_quiet_hours
from local.pos import key_headers
from local.tools import signed_token
from tests.conftest import auth, token_for, unique_phone
from tests.e2e.conftest import ROOT
from tests.helpers import SignedPos, wait_for

pytestmark = pytest.mark.e2e


def delivered(message_id: str) -> bool:
    """The messages worker completes a delivery record once it has sent: it is the proof
    that a message went through stream -> handler -> queue -> worker -> sender."""
    from chalicelib.handlers.messages import delivered as completed

    return completed(message_id)


def test_given_a_mobile_user_when_signing_up_then_they_read_and_edit_only_their_own_member(
    stack, stack_env
):
    api = stack.base_url
    phone = unique_phone()
    # signed in with the identity provider (phone verified there), not yet a member
    sign_up = token_for(None, phone=phone)
    created = requests.post(
        f"{api}/v1/members",
        headers=auth(sign_up),
        data=json.dumps({"phone": phone, "channel": "app", "name": "小明"}),
        timeout=10,
    )
    assert created.status_code == 201, created.text
    member_id = created.json()["member_id"]
    assert "cognito_sub" in created.json()["external_ids"]

    # the same sign-in now acts as the member, and so does the tool's token for it
    for token in (sign_up, token_for(member_id)):
        mine = requests.get(f"{api}/v1/members/{member_id}", headers=auth(token), timeout=10)
        assert mine.status_code == 200, mine.text
        assert mine.json()["profile"]["name"] == "小明"

    patched = requests.patch(
        f"{api}/v1/members/{member_id}",
        headers=auth(token),
        data=json.dumps({"marketing_consent": True, "gender": "male"}),
        timeout=10,
    )
    assert patched.status_code == 200
    assert patched.json()["profile"]["marketing_consent"] is True

    other = requests.post(
        f"{api}/v1/members",
        headers=auth(token_for(None, role="ops")),
        data=json.dumps({"phone": unique_phone(), "channel": "web"}),
        timeout=10,
    ).json()["member_id"]
    denied = requests.get(f"{api}/v1/members/{other}", headers=auth(token), timeout=10)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "FORBIDDEN"
    # a token whose custom:member_id names the other member, with this member's sign-in
    sub = created.json()["external_ids"]["cognito_sub"]
    forged = signed_token({"sub": sub, "custom:member_id": other})
    for method, path in (("GET", ""), ("PATCH", ""), ("GET", "/points")):
        response = requests.request(
            method,
            f"{api}/v1/members/{other}{path}",
            headers=auth(forged),
            data=json.dumps({"name": "taken"}) if method == "PATCH" else None,
            timeout=10,
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "IDENTITY_MISMATCH"


def test_given_a_pos_when_it_registers_and_looks_up_a_member_then_signatures_are_enforced(
    stack, stack_env
):
    from local.tools import create_store_key

    key = create_store_key("store-002")
    api = stack.base_url
    phone = unique_phone()
    pos = SignedPos(key)
    body, headers = pos.signed(
        "POST",
        "/v1/members",
        {"phone": phone, "channel": "pos", "external_ids": {"pos_card": phone[-8:]}},
    )
    created = requests.post(f"{api}/v1/members", headers=headers, data=body, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["profile"]["store_id"] == "store-002"

    replay = requests.post(f"{api}/v1/members", headers=headers, data=body, timeout=10)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "NONCE_REUSED"

    _, lookup_headers = pos.signed("GET", "/v1/members/lookup")
    found = requests.get(
        f"{api}/v1/members/lookup", params={"card": phone[-8:]}, headers=lookup_headers, timeout=10
    )
    assert found.status_code == 200, found.text
    assert found.json()["member_id"] == created.json()["member_id"]
    assert "****" in found.json()["phone"]

    stale = key_headers(
        key,
        "GET",
        "/v1/members/lookup",
        b"",
        timestamp=(datetime.now(UTC) - timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    too_old = requests.get(
        f"{api}/v1/members/lookup", params={"card": phone[-8:]}, headers=stale, timeout=10
    )
    assert too_old.status_code == 401
    assert too_old.json()["error"]["code"] == "STALE_TIMESTAMP"

    other_store = dict(lookup_headers, **{"X-Store-Id": "store-001", "X-Nonce": "n-" + phone})
    forged = requests.get(
        f"{api}/v1/members/lookup", params={"card": phone[-8:]}, headers=other_store, timeout=10
    )
    assert forged.status_code in (401, 403)


def test_given_a_registration_then_its_stream_record_reaches_the_handlers_through_the_pipeline(
    stack, stack_env
):
    response = requests.post(
        f"{stack.base_url}/v1/members",
        headers=auth(token_for(None, role="ops")),
        data=json.dumps({"phone": unique_phone(), "channel": "miniprogram", "name": "Stream"}),
        timeout=10,
    )
    member_id = response.json()["member_id"]
    # members table stream -> on_member_stream -> messages queue -> on_message -> sender
    assert wait_for(lambda: delivered(f"welcome#{member_id}")), stack.log()[-3000:]
    assert wait_for(lambda: member_id in stack.log() and "message sent" in stack.log())


def test_given_a_birthday_today_when_the_job_is_ticked_then_its_tasks_greet_and_pay_once(
    stack, stack_env
):
    today = datetime.now(PROGRAM_TZ).date()
    birthday = (
        today.replace(year=1990)
        if not (today.month == 2 and today.day == 29)
        else today.replace(year=1992)
    )
    response = requests.post(
        f"{stack.base_url}/v1/members",
        headers=auth(token_for(None, role="ops")),
        data=json.dumps(
            {
                "phone": unique_phone(),
                "channel": "app",
                "birthday": birthday.isoformat(),
                "marketing_consent": True,
            }
        ),
        timeout=10,
    )
    member_id = response.json()["member_id"]
    tick = subprocess.run(
        [sys.executable, "-m", "local.tools", "tick", "birthday_greetings"],
        cwd=ROOT,
        env={**stack_env, "LOYALTY_STACK_STATE": str(stack.state_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(tick.stdout.strip().splitlines()[-1])
    # the schedule only queues one task per shard; the pipeline's jobs worker runs them
    assert result == {"job": "birthday_greetings", "dates": [today.isoformat()], "tasks": 16}
    from tests.e2e.test_points_over_http import SIGNUP_BONUS, wait_for_balance

    birthday_points = 100
    assert wait_for_balance(stack.base_url, member_id, SIGNUP_BONUS + birthday_points, 40), (
        stack.log()[-3000:]
    )
    staff = auth(token_for(None, role="ops"))

    def run() -> dict:
        return requests.get(
            f"{stack.base_url}/v1/admin/jobs/birthdays/runs/{today.isoformat()}",
            headers=staff,
            timeout=10,
        ).json()

    assert wait_for(lambda: run().get("finished_at") is not None, 40)
    assert run()["tasks_done"] == run()["tasks"] == 16
    assert run()["members"] >= 1
    message_id = f"birthday#{member_id}#{today.year}"
    if in_quiet_hours(datetime.now(UTC)):
        pytest.skip("quiet hours in Asia/Shanghai: the greeting is deferred until 08:00")
    assert wait_for(lambda: delivered(message_id))
