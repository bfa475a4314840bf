"""Erasure on DynamoDB Local: the one transaction for real (identity items deleted, a
tombstone without any personal attribute, the request record and the audit entry
written with it), the ledger's numbers kept, re-registration, replays and races."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from chalicelib.dal.members import ERASED_ATTRIBUTES, erase_member
from chalicelib.domain import members as domain
from chalicelib.domain.members import identities_of
from chalicelib.wiring import services
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos, at_once

pytestmark = pytest.mark.integration


def client() -> Any:
    return boto3.client("dynamodb", region_name=services().settings.region)


def item(pk: str, sk: str, table: str | None = None) -> dict[str, Any] | None:
    found = client().get_item(
        TableName=table or services().settings.members_table,
        Key={"pk": {"S": pk}, "sk": {"S": sk}},
        ConsistentRead=True,
    )
    return found.get("Item")


def ledger_sum(member_id: str) -> int:
    pages = (
        client()
        .get_paginator("query")
        .paginate(
            TableName=services().settings.members_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :ledger)",
            ExpressionAttributeValues={
                ":pk": {"S": f"MEMBER#{member_id}"},
                ":ledger": {"S": "LEDGER#"},
            },
            ConsistentRead=True,
        )
    )
    return sum(int(i["points"]["N"]) for page in pages for i in page["Items"])


def audit_entries(target: str, action: str = "member.erase") -> list[dict[str, Any]]:
    """The entries of one action on `target` (staff registering the member wrote one too)."""
    pages = client().get_paginator("scan").paginate(TableName=services().settings.program_table)
    return [
        i
        for page in pages
        for i in page["Items"]
        if i.get("kind", {}).get("S") == "audit"
        and i["target"]["S"] == target
        and i["action"]["S"] == action
    ]


def erase(app_client, member_id: str, request_id: str = "erase-1", token: str | None = None):
    return app_client.http.post(
        f"/v1/admin/members/{member_id}/erase",
        headers=auth(token or token_for(None, "admin")),
        body=json.dumps(
            {"request_id": request_id, "reason": "member_request", "ticket": "PIPL-12"}
        ),
    )


@pytest.fixture
def pos(app_client, store_key) -> Pos:
    return Pos(app_client, store_key)


def registered(app_client, phone: str, card: str) -> str:
    response = app_client.http.post(
        "/v1/members",
        headers=auth(token_for(None, "ops")),
        body=json.dumps(
            {
                "phone": phone,
                "channel": "pos",
                "name": "韩梅梅",
                "birthday": "1990-05-20",
                "email": "li@example.com",
                "tags": ["vip"],
                "external_ids": {"pos_card": card},
            }
        ),
    )
    assert response.status_code == 201, response.json_body
    return str(response.json_body["member_id"])


def test_given_a_member_with_purchases_when_erased_then_one_transaction_leaves_a_tombstone_and_the_numbers(
    ddb_local, app_client, pos
):
    phone, card = unique_phone(), f"C{uuid.uuid4().hex[:8]}"
    member_id = registered(app_client, phone, card)
    token = token_for(member_id)  # links a sign-in: a third identity
    txn = f"t-{uuid.uuid4().hex[:8]}"
    bought = pos.send(
        "POST",
        "/v1/transactions",
        {
            "transaction_id": txn,
            "store_id": "store-001",
            "member_id": member_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "tea", "category": "drinks", "quantity": 2, "unit_price": 5000}],
            "total": 10000,
        },
    )
    assert bought.status_code == 201, bought.json_body
    svc = services()
    member = svc.members.get(member_id)
    assert member is not None
    identities = identities_of(member, svc.hasher)
    assert {i.kind for i in identities} == {"phone", "pos_card", "cognito_sub"}
    balance_before, sum_before = int(member.points_balance), ledger_sum(member_id)

    response = erase(app_client, member_id)

    assert response.status_code == 202, response.json_body
    for identity in identities:
        assert item(f"ID#{identity.kind}#{identity.key}", "ID") is None
    tombstone = item(f"MEMBER#{member_id}", "MEMBER")
    assert tombstone is not None
    assert not set(ERASED_ATTRIBUTES) & set(tombstone)
    assert "erased_at" in tombstone
    assert tombstone["marketing_consent"] == {"BOOL": False}
    text = json.dumps(tombstone, ensure_ascii=False)
    for value in (phone, card, "韩梅梅", "li@example.com", "1990-05-20", "vip"):
        assert value not in text
    assert int(tombstone["points_balance"]["N"]) == balance_before == sum_before
    assert ledger_sum(member_id) == sum_before
    assert item(f"MEMBER#{member_id}", "REQ#erase#erase-1") is not None
    (entry,) = audit_entries(f"member:{member_id}")
    assert entry["action"]["S"] == "member.erase"
    assert phone not in json.dumps(entry, ensure_ascii=False)
    # the member's own token no longer finds a member (after the sign-in cache's 30 s)
    svc.verifier._links._links.clear()  # type: ignore[attr-defined]
    mine = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert mine.status_code in (403, 404)

    # the phone registers anew as a new member, with the same card
    again = registered(app_client, phone, card)
    assert again != member_id
    assert domain.find_by_phone(phone, svc.members, svc.hasher).member_id == again

    # an old purchase's refund still runs on the tombstone
    refunded = pos.send(
        "POST", f"/v1/transactions/{txn}/refunds", {"refund_id": "rf-1", "amount": 10000}
    )
    assert refunded.status_code == 201, refunded.json_body
    assert (
        ledger_sum(member_id)
        == sum_before - 100
        == int(
            item(f"MEMBER#{member_id}", "MEMBER")["points_balance"]["N"]  # type: ignore[index]
        )
    )


def test_given_one_erase_sent_twice_at_once_then_both_get_the_same_202_and_one_entry(
    ddb_local, app_client
):
    member_id = registered(app_client, unique_phone(), f"C{uuid.uuid4().hex[:8]}")
    admin = token_for(None, "admin")
    answers = at_once([lambda: erase(app_client, member_id, token=admin)] * 4)
    assert [a.status_code for a in answers] == [202] * 4
    assert len({json.dumps(a.json_body, sort_keys=True) for a in answers}) == 1
    assert len(audit_entries(f"member:{member_id}")) == 1


def test_given_an_erased_member_then_a_replay_202_another_id_404_and_non_admins_403(
    ddb_local, app_client
):
    member_id = registered(app_client, unique_phone(), f"C{uuid.uuid4().hex[:8]}")
    other = registered(app_client, unique_phone(), f"C{uuid.uuid4().hex[:8]}")
    assert erase(app_client, member_id, token=token_for(None, "ops")).status_code == 403
    assert erase(app_client, member_id, token=token_for(other)).status_code == 403
    export_other = app_client.http.get(
        f"/v1/members/{member_id}/export", headers=auth(token_for(other))
    )
    assert export_other.status_code == 403
    first = erase(app_client, member_id)
    assert first.status_code == 202
    assert erase(app_client, member_id).json_body == first.json_body
    assert erase(app_client, member_id, request_id="erase-2").status_code == 404


def test_given_a_member_changed_since_it_was_read_then_the_erase_transaction_writes_nothing(
    ddb_local, app_client
):
    """The condition on the version read: a card linked meanwhile is not left behind."""
    member_id = registered(app_client, unique_phone(), f"C{uuid.uuid4().hex[:8]}")
    svc = services()
    stale = svc.members.get(member_id)
    assert stale is not None
    token_for(member_id)  # links a sign-in: the member's version moves on
    written = erase_member(
        svc.members._connection,  # type: ignore[attr-defined]
        stale,
        identities_of(stale, svc.hasher),
        [],
        datetime.now(UTC),
    )
    assert written is False
    assert svc.members.get(member_id) is not None
    phone_claim = svc.hasher.identity("phone", stale.phone)
    assert item(f"ID#phone#{phone_claim.key}", "ID") is not None
