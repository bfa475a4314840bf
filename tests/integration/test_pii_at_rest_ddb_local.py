"""No personal data readable from a table dump (DynamoDB Local): members registered with
every personal field, purchases by card, phone and member id, profile changes; then every
table is scanned raw and searched for the phones (E.164 and national digits), names,
birthdays, emails and cards, also inside compressed values."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.wiring import services
from local.pos import encode, key_headers
from tests import iam_check
from tests.conftest import auth, unique_phone

pytestmark = pytest.mark.integration


def scan_everything(tables: dict[str, str]) -> tuple[str, list[bytes]]:
    """Every item of every table as text, and every binary value (and, when it is zlib
    data, what it decompresses to)."""
    import boto3

    # the stage's region, not the environment's: an earlier test may have changed that
    client = boto3.client("dynamodb", region_name=services().settings.region)
    texts: list[str] = []
    blobs: list[bytes] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for kind, inner in value.items():
                if kind in ("B",):
                    blobs.append(bytes(inner))
                    with contextlib.suppress(zlib.error):
                        blobs.append(zlib.decompress(bytes(inner)))
                elif kind == "BS":
                    blobs.extend(bytes(b) for b in inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)
        else:
            texts.append(str(value))

    for table in tables.values():
        for page in client.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                texts.append(json.dumps(list(item), ensure_ascii=False))  # attribute names
                walk(item)
    return "\n".join(texts), blobs


def test_given_members_purchases_and_profile_changes_when_every_table_is_dumped_then_no_personal_data_is_readable(
    ddb_local, app_client, staff_token
):
    from local.tools import create_store_key

    key = create_store_key("store-001")
    tag = uuid.uuid4().hex[:6]
    people = [
        {
            "phone": unique_phone(),
            "channel": "pos",
            "name": f"韩梅梅{tag}",
            "gender": "female",
            "birthday": "1990-05-17",
            "email": f"meimei.{tag}@example.com",
            "external_ids": {"pos_card": f"CARD{tag}A", "wechat_unionid": f"union-{tag}-a"},
        },
        {
            "phone": unique_phone(),
            "channel": "app",
            "name": f"Lily Zhang {tag}",
            "birthday": "1988-12-24",
            "email": f"lily.{tag}@example.cn",
            "external_ids": {"pos_card": f"CARD{tag}B"},
        },
        {"phone": unique_phone(), "channel": "pos", "name": f"李雷{tag}"},
    ]
    member_ids = []
    for person in people:
        answer = app_client.http.post(
            "/v1/members", headers=auth(staff_token), body=json.dumps(person)
        )
        assert answer.status_code == 201, answer.json_body
        member_ids.append(answer.json_body["member_id"])

    def purchase(**who: str) -> None:
        body = encode(
            {
                "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
                "store_id": "store-001",
                **who,
                "occurred_at": datetime.now(UTC).isoformat(),
                "items": [{"sku": "tea", "category": "drinks", "quantity": 2, "unit_price": 2500}],
                "total": 5000,
            }
        )
        headers = key_headers(key, "POST", "/v1/transactions", body)
        answer = app_client.http.post("/v1/transactions", headers=headers, body=body)
        assert answer.status_code == 201, answer.json_body

    purchase(card=people[0]["external_ids"]["pos_card"])
    purchase(phone=people[1]["phone"])
    purchase(member_id=member_ids[2])

    changed = {
        "name": f"王芳{tag}",
        "email": f"wangfang.{tag}@example.com",
        "birthday": "1992-02-29",
    }
    patched = app_client.http.patch(
        f"/v1/members/{member_ids[2]}", headers=auth(staff_token), body=json.dumps(changed)
    )
    assert patched.status_code == 200, patched.json_body
    assert patched.json_body["profile"]["name"] == changed["name"]
    # the member reads back whole: personal fields decrypted, points intact
    read = services().members.get(member_ids[0])
    assert read is not None
    assert (read.name, read.email, read.points_balance) == (
        people[0]["name"],
        people[0]["email"],
        50,
    )
    assert read.external_ids == people[0]["external_ids"]

    text, blobs = scan_everything(ddb_local)
    secrets_ = [key["secret"]]
    needles: list[str] = [*secrets_, changed["name"], changed["email"], changed["birthday"]]
    for person in people:
        phone = person["phone"]
        needles += [phone, phone.removeprefix("+86"), phone.removeprefix("+")]
        needles += [person["name"]] + [person[f] for f in ("email", "birthday") if f in person]
        needles += list(person.get("external_ids", {}).values())
    assert member_ids[0] in text  # the scan did see the members
    for needle in needles:
        assert needle not in text, f"{needle!r} readable in a table dump"
        raw = needle.encode()
        assert not any(raw in blob for blob in blobs), f"{needle!r} readable in a binary value"


def test_given_a_member_when_looked_up_by_phone_or_card_then_one_get_of_the_claim_and_one_of_the_member(
    ddb_local, app_client, staff_token
):
    phone, card = unique_phone(), f"C{uuid.uuid4().hex[:10]}"
    registered = app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps(
            {"phone": phone, "channel": "pos", "name": "查找", "external_ids": {"pos_card": card}}
        ),
    )
    assert registered.status_code == 201
    member_id = registered.json_body["member_id"]
    app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token))  # warm: KEK cached

    for query in ({"phone": phone}, {"card": card}):
        with iam_check.recording() as recorder:
            answer = app_client.http.get(
                "/v1/members/lookup?" + urllib.parse.urlencode(query), headers=auth(staff_token)
            )
        assert answer.status_code == 200, answer.json_body
        assert answer.json_body["member_id"] == member_id
        assert answer.json_body["profile"]["name"] == "查找"
        calls = [
            (r.action, r.keys[0].split("#")[0]) for r in recorder.requests if r.operation != "use"
        ]
        assert calls == [("dynamodb:GetItem", "ID"), ("dynamodb:GetItem", "MEMBER")], calls
