"""Personal data over the Chalice app on moto: a member's export (the member, an admin),
an admin's erasure and what every member route answers afterwards, the sign-up bonus and
the referral once per phone across erase and re-register (through the members stream),
and consent withdrawn stopping a marketing message already queued."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.api import privacy as privacy_api
from chalicelib.handlers import member_stream, messages
from chalicelib.wiring import services
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos, sqs_record, stream_record
from tests.unit.test_handlers import DAYTIME, Queues, _as_sqs_record, message_body, sent
from tests.unit.test_handlers import queues as queues  # the fixture, found by name
from tests.unit.test_system_grants import balance, raw_item

PERSONAL = {"phone", "name", "gender", "birthday", "email", "external_ids", "tags", "pii"}


@pytest.fixture
def admin() -> dict[str, str]:
    return auth(token_for(None, "admin"))


@pytest.fixture
def pos(app_client, store_key) -> Pos:
    return Pos(app_client, store_key)


def register(client, staff_token, phone: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"phone": phone or unique_phone(), "channel": "pos", "name": "韩梅梅", **fields}
    response = client.http.post("/v1/members", headers=auth(staff_token), body=json.dumps(body))
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def buy(pos: Pos, member_id: str, transaction_id: str, amount: int = 9800) -> dict[str, Any]:
    response = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": transaction_id,
            "store_id": "store-001",
            "member_id": member_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "tea", "category": "drinks", "quantity": 1, "unit_price": amount}],
            "total": amount,
        },
    )
    assert response.status_code == 201, response.json_body
    return dict(response.json_body)


def erase(
    client, headers, member_id: str, request_id: str = "erase-1", reason: str = "member_request"
):
    return client.http.post(
        f"/v1/admin/members/{member_id}/erase",
        headers=headers,
        body=json.dumps({"request_id": request_id, "reason": reason}),
    )


def audit_entries(action: str, target: str) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    items = client.scan(TableName=services().settings.program_table)["Items"]
    return [
        {k: next(iter(v.values())) for k, v in item.items()}
        for item in items
        if item.get("kind", {}).get("S") == "audit"
        and item["action"]["S"] == action
        and item["target"]["S"] == target
    ]


def deliver_member_insert(member_id: str) -> None:
    record = stream_record("INSERT", raw_item(f"MEMBER#{member_id}", "MEMBER"))
    assert member_stream.handle({"Records": [record]}, None) == {"batchItemFailures": []}


# ---- export --------------------------------------------------------------------------------


def test_given_a_member_when_exporting_themselves_then_all_their_data_and_an_entry_as_member(
    seeded, app_client, staff_token, pos, monkeypatch
):
    card = f"C{uuid.uuid4().hex[:8]}"
    member = register(
        app_client, staff_token, birthday="1990-05-20", external_ids={"pos_card": card}
    )
    member_id = member["member_id"]
    for n in range(3):
        buy(pos, member_id, f"t-{uuid.uuid4().hex[:8]}-{n}")
    monkeypatch.setattr(privacy_api, "PAGE", 2)  # the ledger's 3 entries come in 2 pages

    response = app_client.http.get(
        f"/v1/members/{member_id}/export", headers=auth(token_for(member_id))
    )

    assert response.status_code == 200, response.json_body
    export = response.json_body
    assert export["member"]["phone"] == member["phone"]
    assert export["member"]["profile"]["name"] == "韩梅梅"
    assert export["member"]["profile"]["birthday"] == "1990-05-20"
    assert export["member"]["external_ids"]["pos_card"] == card
    assert export["identities"] == ["phone", "cognito_sub", "pos_card"]
    assert export["points"]["balance"] == 3 * 98
    assert len(export["ledger"]) == 3
    assert export["tier"]["tier"]["code"] == "member"
    assert export["coupons"] == []
    assert export["redemptions"] == []
    (entry,) = audit_entries("member.export", f"member:{member_id}")
    assert entry["role"] == "member"
    # named by member id, not by the sign-in's subject (the entry outlives an erasure)
    assert entry["actor"] == f"member:{member_id}"
    assert member["phone"] not in json.dumps(entry, ensure_ascii=False)


def test_given_an_admin_when_exporting_a_member_then_200_and_audited_as_admin(
    seeded, app_client, staff_token, admin
):
    member_id = register(app_client, staff_token)["member_id"]
    response = app_client.http.get(f"/v1/members/{member_id}/export", headers=admin)
    assert response.status_code == 200, response.json_body
    (entry,) = audit_entries("member.export", f"member:{member_id}")
    assert entry["role"] == "admin"


def test_given_ops_or_another_member_when_exporting_then_403_and_no_entry(
    seeded, app_client, staff_token
):
    member_id = register(app_client, staff_token)["member_id"]
    other = register(app_client, staff_token)["member_id"]
    by_ops = app_client.http.get(f"/v1/members/{member_id}/export", headers=auth(staff_token))
    by_other = app_client.http.get(
        f"/v1/members/{member_id}/export", headers=auth(token_for(other))
    )
    assert by_ops.status_code == 403
    assert by_ops.json_body["error"]["code"] == "ROLE_REQUIRED"
    assert by_other.status_code == 403
    assert audit_entries("member.export", f"member:{member_id}") == []


def test_given_an_unknown_member_when_an_admin_exports_then_404(seeded, app_client, admin):
    response = app_client.http.get("/v1/members/mbr_nobody/export", headers=admin)
    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "MEMBER_NOT_FOUND"


# ---- erase ---------------------------------------------------------------------------------


def test_given_an_erased_member_then_every_member_route_answers_404_and_the_phone_registers_anew(
    seeded, app_client, staff_token, admin, pos
):
    http = app_client.http
    card = f"C{uuid.uuid4().hex[:8]}"
    member = register(app_client, staff_token, external_ids={"pos_card": card})
    member_id, phone = member["member_id"], member["phone"]
    member_token = auth(token_for(member_id))
    txn = f"t-{uuid.uuid4().hex[:8]}"
    buy(pos, member_id, txn)
    code = http.post(f"/v1/members/{member_id}/member-code", headers=member_token).json_body["code"]
    before = balance(member_id)

    response = erase(app_client, admin, member_id)

    assert response.status_code == 202, response.json_body
    assert response.json_body["status"] == "erased"
    ops = auth(staff_token)
    answers = {
        "get": http.get(f"/v1/members/{member_id}", headers=ops),
        "get (member)": http.get(f"/v1/members/{member_id}", headers=member_token),
        "patch": http.patch(
            f"/v1/members/{member_id}", headers=ops, body=json.dumps({"name": "X"})
        ),
        "phone": pos.send("GET", f"/v1/members/lookup?phone={phone.replace('+', '%2B')}"),
        "card": pos.send("GET", f"/v1/members/lookup?card={card}"),
        "member code": pos.send("GET", f"/v1/members/lookup?member_code={code}"),
        "points": http.get(f"/v1/members/{member_id}/points", headers=ops),
        "ledger": http.get(f"/v1/members/{member_id}/ledger", headers=ops),
        "tier": http.get(f"/v1/members/{member_id}/tier", headers=ops),
        "coupons": http.get(f"/v1/members/{member_id}/coupons", headers=ops),
        "redemptions": http.get(f"/v1/members/{member_id}/redemptions", headers=ops),
        "redemption": http.get(f"/v1/members/{member_id}/redemptions/r-1", headers=ops),
        "export": http.get(f"/v1/members/{member_id}/export", headers=admin),
        "activity": http.post(
            f"/v1/members/{member_id}/activities",
            headers=member_token,
            body=json.dumps({"activity_id": "c-1", "type": "checkin"}),
        ),
        "adjustment": http.post(
            f"/v1/admin/members/{member_id}/adjustments",
            headers=ops,
            body=json.dumps({"adjustment_id": "a-1", "points": 5, "reason": "goodwill"}),
        ),
        "coupon issue": http.post(
            f"/v1/admin/members/{member_id}/coupons",
            headers=ops,
            body=json.dumps({"issue_id": "i-1", "template_id": "welcome-10"}),
        ),
        "purchase by id": pos.send(
            "POST",
            "/v1/transactions",
            {
                "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
                "store_id": "store-001",
                "member_id": member_id,
                "occurred_at": datetime.now(UTC).isoformat(),
                "items": [{"sku": "tea", "quantity": 1, "unit_price": 100}],
                "total": 100,
            },
        ),
        "purchase by phone": pos.send(
            "POST",
            "/v1/transactions",
            {
                "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
                "store_id": "store-001",
                "phone": phone,
                "occurred_at": datetime.now(UTC).isoformat(),
                "items": [{"sku": "tea", "quantity": 1, "unit_price": 100}],
                "total": 100,
            },
        ),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    assert {r.json_body["error"]["code"] for r in answers.values()} == {"MEMBER_NOT_FOUND"}

    # the ledger keeps its numbers: an old purchase still refunds on the tombstone
    refunded = pos.send(
        "POST", f"/v1/transactions/{txn}/refunds", {"refund_id": "rf-1", "amount": 9800}
    )
    assert refunded.status_code == 201, refunded.json_body
    assert balance(member_id) == before - 98

    again = register(app_client, staff_token, phone=phone, external_ids={"pos_card": card})
    assert again["member_id"] != member_id
    found = pos.send("GET", f"/v1/members/lookup?card={card}")
    assert found.json_body["member_id"] == again["member_id"]


def test_given_an_erasure_then_the_item_keeps_no_personal_attribute_and_the_entry_is_written(
    seeded, app_client, staff_token, admin
):
    member = register(
        app_client,
        staff_token,
        birthday="1990-05-20",
        email="li@example.com",
        tags=["vip"],
        external_ids={"pos_card": f"C{uuid.uuid4().hex[:8]}"},
    )
    member_id = member["member_id"]
    assert erase(app_client, admin, member_id).status_code == 202
    item = raw_item(f"MEMBER#{member_id}", "MEMBER")
    assert not PERSONAL & set(item)
    assert "birthday_key" not in item
    assert "erased_at" in item
    assert member["phone"] not in json.dumps(item, ensure_ascii=False)
    (entry,) = audit_entries("member.erase", f"member:{member_id}")
    assert entry["role"] == "admin"
    assert entry["request_id"] == "erase-1"
    assert member["phone"] not in json.dumps(entry, ensure_ascii=False)


def test_given_an_erase_when_replayed_then_the_first_202_and_another_id_404_and_another_body_409(
    seeded, app_client, staff_token, admin
):
    member_id = register(app_client, staff_token)["member_id"]
    first = erase(app_client, admin, member_id)
    replay = erase(app_client, admin, member_id)
    other_id = erase(app_client, admin, member_id, request_id="erase-2")
    other_body = erase(app_client, admin, member_id, reason="account_closed")
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.json_body == first.json_body
    assert other_id.status_code == 404
    assert other_id.json_body["error"]["code"] == "MEMBER_NOT_FOUND"
    assert other_body.status_code == 409
    assert other_body.json_body["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    assert len(audit_entries("member.erase", f"member:{member_id}")) == 1


def test_given_ops_a_member_or_a_pos_when_erasing_then_403_and_nothing_erased(
    seeded, app_client, staff_token, pos
):
    member_id = register(app_client, staff_token)["member_id"]
    body = {"request_id": "e-1", "reason": "member_request"}
    path = f"/v1/admin/members/{member_id}/erase"
    by_ops = erase(app_client, auth(staff_token), member_id)
    by_member = erase(app_client, auth(token_for(member_id)), member_id)
    by_pos = pos.send("POST", path, body)
    assert [r.status_code for r in (by_ops, by_member, by_pos)] == [403, 403, 403]
    assert (
        app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token)).status_code
        == 200
    )


# ---- farming: once per phone ever (through the members stream) -----------------------------


def test_given_a_phone_erased_and_registered_again_then_the_sign_up_bonus_is_paid_once(
    queues, seeded, app_client, staff_token, admin
):
    phone = unique_phone()
    first = register(app_client, staff_token, phone=phone)["member_id"]
    deliver_member_insert(first)
    assert balance(first) == 100
    assert erase(app_client, admin, first).status_code == 202

    again = register(app_client, staff_token, phone=phone)["member_id"]
    deliver_member_insert(again)

    assert balance(again) == 0
    assert raw_item(f"MEMBER#{again}", "MEMBER")["first_registration"] == {"BOOL": False}


def test_given_two_referees_with_one_phone_across_an_erasure_then_one_referral_reward(
    queues, seeded, app_client, staff_token, admin, pos
):
    referrer = register(app_client, staff_token)["member_id"]
    phone = unique_phone()

    def referee_joins_and_buys() -> tuple[str, int]:
        referee = register(app_client, staff_token, phone=phone)["member_id"]
        declared = app_client.http.post(
            f"/v1/members/{referee}/activities",
            headers=auth(token_for(referee)),
            body=json.dumps(
                {"activity_id": "ref-1", "type": "referral", "referrer_member_id": referrer}
            ),
        )
        txn = f"t-{uuid.uuid4().hex[:8]}"
        buy(pos, referee, txn)
        record = stream_record("INSERT", raw_item(f"TXN#store-001#{txn}", "TXN"))
        assert member_stream.handle({"Records": [record]}, None) == {"batchItemFailures": []}
        return referee, declared.status_code

    first, first_status = referee_joins_and_buys()
    assert first_status == 201
    assert balance(referrer) == 200
    assert erase(app_client, admin, first).status_code == 202

    _second, second_status = referee_joins_and_buys()

    assert second_status == 422
    assert balance(referrer) == 200  # one reward for the phone


# ---- consent and erasure at send time ------------------------------------------------------


def test_given_consent_withdrawn_after_a_marketing_message_was_queued_then_it_is_not_sent(
    queues, seeded, app_client, staff_token, monkeypatch
):
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)
    member_id = register(app_client, staff_token, marketing_consent=True)["member_id"]
    queued = sqs_record(message_body(member_id, "marketing"))  # queued while consenting
    withdrawn = app_client.http.patch(
        f"/v1/members/{member_id}",
        headers=auth(token_for(member_id)),
        body=json.dumps({"marketing_consent": False}),
    )
    assert withdrawn.status_code == 200, withdrawn.json_body

    assert messages.record_handler(_as_sqs_record(queued)) == "no_consent"
    assert sent() == []


def test_given_an_erased_member_when_a_queued_message_comes_up_then_it_is_dropped(
    queues, seeded, app_client, staff_token, admin, monkeypatch
):
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)
    member_id = register(app_client, staff_token)["member_id"]
    queued = sqs_record(message_body(member_id, "service"))
    assert erase(app_client, admin, member_id).status_code == 202
    assert messages.record_handler(_as_sqs_record(queued)) == "dropped"
    assert sent() == []


def test_given_an_erasure_when_the_stream_delivers_the_change_then_member_erased_names_only_the_id(
    queues: Queues, seeded, app_client, staff_token, admin
):
    member_id = register(app_client, staff_token)["member_id"]
    before = raw_item(f"MEMBER#{member_id}", "MEMBER")
    assert erase(app_client, admin, member_id).status_code == 202
    after = raw_item(f"MEMBER#{member_id}", "MEMBER")
    record = stream_record("MODIFY", after)
    record["dynamodb"]["OldImage"] = before
    assert member_stream.handle({"Records": [record]}, None) == {"batchItemFailures": []}
    (event,) = [e for e in queues.bus_events() if e["detail-type"] == "MemberErased"]
    assert set(event["detail"]) == {"event_id", "member_id", "erased_at"}
    assert event["detail"]["member_id"] == member_id
    assert queues.welcome_messages() == []  # nothing re-created


def test_given_an_erase_reason_in_free_text_then_400_and_nothing_erased_or_audited(
    seeded, app_client, staff_token, admin
):
    """The reason and ticket stay in the append-only audit log: a name or phone typed
    there could never be erased, so only a reason code and a ticket id are accepted."""
    member = register(app_client, staff_token)
    member_id = member["member_id"]
    for body in (
        {"request_id": "e-free", "reason": f"PIPL request of 韩梅梅 {member['phone']}"},
        {"request_id": "e-free", "reason": "member_request", "ticket": f"call {member['phone']}"},
    ):
        response = app_client.http.post(
            f"/v1/admin/members/{member_id}/erase", headers=admin, body=json.dumps(body)
        )
        assert response.status_code == 400, response.json_body
    assert "erased_at" not in raw_item(f"MEMBER#{member_id}", "MEMBER")
    assert audit_entries("member.erase", f"member:{member_id}") == []


def test_given_a_registration_then_the_phone_s_sign_up_claim_names_no_member(
    seeded, app_client, staff_token
):
    """The claim outlives the member's erasure: naming the member would let anyone with
    the hash key go from a phone to the erased member's records."""
    import boto3

    member_id = register(app_client, staff_token)["member_id"]
    client = boto3.client("dynamodb", region_name="cn-north-1")
    items = client.scan(TableName=services().settings.members_table)["Items"]
    claims = [item for item in items if item["pk"]["S"].startswith("BONUS#signup#")]
    assert claims
    for claim in claims:
        assert "member_id" not in claim
        assert member_id not in json.dumps(claim)


def test_given_a_purchase_by_phone_then_its_request_hash_is_keyed_not_a_plain_hash_of_the_body(
    seeded, app_client, staff_token, pos
):
    """A plain SHA-256 of a body naming a phone falls to guessing the phone with the rest
    of the body (which the purchase record holds too); the record keeps the hash beyond
    the member's erasure. A replay still answers the first response."""
    from chalicelib.api.transactions import purchase_request_hash
    from chalicelib.ids import request_hash

    member = register(app_client, staff_token)
    body = {
        "transaction_id": f"t-{uuid.uuid4().hex[:8]}",
        "store_id": "store-001",
        "phone": member["phone"],
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [{"sku": "tea", "category": "drinks", "quantity": 1, "unit_price": 900}],
        "total": 900,
    }
    first = pos.send("POST", "/v1/transactions", body)
    assert first.status_code == 201, first.json_body
    again = pos.send("POST", "/v1/transactions", body)
    assert (again.status_code, again.json_body) == (201, first.json_body)

    keyed = purchase_request_hash(dict(body))
    assert keyed != request_hash(body)
    assert keyed == purchase_request_hash(dict(body))
    assert purchase_request_hash({**body, "phone": "+8613800000000"}) != keyed
    stored = json.dumps(
        [i for i in _members_items() if i["pk"]["S"] == f"TXN#{body['transaction_id']}"]
    )
    assert request_hash(body) not in stored


def _members_items() -> list[dict[str, Any]]:
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    return list(client.scan(TableName=services().settings.members_table)["Items"])


# ---- what could outlive the member: the sign-in account, the coupons -----------------------


def app_sign_up(client) -> tuple[str, str]:
    """A member who signed up in the app: (member id, the sign-in's `sub`)."""
    from local.tools import signed_token

    phone, sub = unique_phone(), str(uuid.uuid4())
    token = signed_token({"sub": sub, "phone_number": phone, "phone_number_verified": True})
    response = client.http.post(
        "/v1/members",
        headers=auth(token),
        body=json.dumps({"phone": phone, "channel": "app", "name": "韩梅梅"}),
    )
    assert response.status_code == 201, response.json_body
    return str(response.json_body["member_id"]), sub


def test_given_an_app_member_when_erased_then_its_sign_in_account_is_closed_once(
    seeded, app_client, admin, monkeypatch
):
    from chalicelib import wiring
    from tests.fakes import InMemorySignIns

    member_id, sub = app_sign_up(app_client)
    sign_ins = InMemorySignIns(sub)
    monkeypatch.setattr(wiring, "sign_in_accounts", lambda: sign_ins)

    first = erase(app_client, admin, member_id)
    replay = erase(app_client, admin, member_id)

    assert (first.status_code, replay.status_code) == (202, 202)
    assert sign_ins.closed == [sub]
    assert sign_ins.accounts == set()


def test_given_the_identity_provider_down_when_erasing_then_503_nothing_erased_and_a_retry_erases(
    seeded, app_client, admin, monkeypatch
):
    from chalicelib import wiring
    from tests.fakes import InMemorySignIns

    member_id, sub = app_sign_up(app_client)
    sign_ins = InMemorySignIns(sub)
    sign_ins.down = True
    monkeypatch.setattr(wiring, "sign_in_accounts", lambda: sign_ins)
    item_before = raw_item(f"MEMBER#{member_id}", "MEMBER")

    refused = erase(app_client, admin, member_id)

    assert refused.status_code == 503, refused.json_body
    assert refused.json_body["error"]["code"] == "TEMPORARILY_UNAVAILABLE"
    assert raw_item(f"MEMBER#{member_id}", "MEMBER") == item_before
    assert audit_entries("member.erase", f"member:{member_id}") == []
    assert app_client.http.get(f"/v1/members/{member_id}", headers=admin).status_code == 200

    sign_ins.down = False
    again = erase(app_client, admin, member_id)
    assert again.status_code == 202, again.json_body
    assert sign_ins.accounts == set()
    assert len(audit_entries("member.erase", f"member:{member_id}")) == 1


def test_given_an_erased_member_s_coupon_when_a_till_redeems_it_then_422_coupon_void_and_nothing_written(
    seeded, app_client, staff_token, admin, pos
):
    """A coupon code is a bearer secret: whoever kept it cannot spend the erased
    member's coupon (nor can ops keying it in)."""
    from chalicelib.domain.coupons import normalise_code
    from tests.unit.test_coupons_api import create_template, issue, redeem, send

    member_id = register(app_client, staff_token)["member_id"]
    template = create_template(app_client)
    issued = issue(app_client, member_id, template["template_id"])
    assert issued.status_code == 201, issued.json_body
    code = issued.json_body["code"]
    assert erase(app_client, admin, member_id).status_code == 202
    coupon_pk = f"COUPON#{normalise_code(code)}"
    before = raw_item(coupon_pk, "COUPON")

    by_till = redeem(pos, code, "t-after-erase")
    by_ops = send(
        app_client,
        "POST",
        f"/v1/coupons/{code}/redeem",
        {"transaction_id": "t-ops", "store_id": "store-001"},
    )

    for refused in (by_till, by_ops):
        assert refused.status_code == 422, refused.json_body
        assert refused.json_body["error"]["code"] == "COUPON_VOID"
    assert raw_item(coupon_pk, "COUPON") == before
    assert before["status"]["S"] == "active"
    assert audit_entries("coupon.redeem", f"member:{member_id}") == []


def test_given_a_member_s_coupon_when_redeemed_before_the_erase_then_the_till_s_retry_answers_the_same(
    seeded, app_client, staff_token, admin, pos
):
    """The refusal is for coupons still to be spent: a till retrying a redemption made
    before the erase gets its first answer (read back from the coupon), nothing more."""
    from tests.unit.test_coupons_api import create_template, issue, redeem

    member_id = register(app_client, staff_token)["member_id"]
    template = create_template(app_client)
    code = issue(app_client, member_id, template["template_id"]).json_body["code"]
    first = redeem(pos, code, "t-before")
    assert first.status_code == 200, first.json_body
    assert erase(app_client, admin, member_id).status_code == 202
    again = redeem(pos, code, "t-before")
    assert (again.status_code, again.json_body) == (200, first.json_body)
