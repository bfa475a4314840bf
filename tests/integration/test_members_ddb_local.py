"""Members on DynamoDB Local: conditions, transactions and the sparse index for real."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime

import jwt
import pytest

from chalicelib.domain import members as domain
from chalicelib.domain.birthdays import birthday_key
from chalicelib.errors import MemberExists, NotFound, Unavailable
from chalicelib.wiring import services
from local.pos import key_headers
from local.tools import signed_token
from tests.conftest import auth, token_for, unique_phone

pytestmark = pytest.mark.integration


def registration(phone: str, **extra) -> domain.Registration:
    return domain.Registration(phone=phone, channel="app", **extra)


def test_given_20_threads_registering_one_phone_at_once_then_exactly_one_member_exists(ddb_local):
    phone = unique_phone()
    svc = services()
    barrier = threading.Barrier(20)
    created: list[str] = []
    existing: list[str] = []
    failures: list[BaseException] = []

    def attempt() -> None:
        barrier.wait()
        try:
            member = domain.register(
                registration(phone), svc.members, svc.hasher, datetime.now(UTC)
            )
            created.append(member.member_id)
        except MemberExists as exc:
            existing.append(exc.member_id)
        except BaseException as exc:  # anything else is a bug to report
            failures.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert len(created) == 1
    assert len(existing) == 19
    assert set(existing) == set(created)
    found = domain.find_by_phone(phone, svc.members, svc.hasher)
    assert found.member_id == created[0]


def test_given_a_card_held_by_one_member_when_another_registers_with_it_then_nothing_is_written(
    ddb_local,
):
    svc = services()
    first = domain.register(
        registration(unique_phone(), external_ids={"pos_card": "DL-CARD-1"}),
        svc.members,
        svc.hasher,
        datetime.now(UTC),
    )
    second_phone = unique_phone()
    with pytest.raises(MemberExists) as raised:
        domain.register(
            registration(second_phone, external_ids={"pos_card": "DL-CARD-1"}),
            svc.members,
            svc.hasher,
            datetime.now(UTC),
        )
    assert raised.value.member_id == first.member_id
    assert raised.value.details["field"] == "pos_card"
    # all or nothing: the second phone was not claimed either
    with pytest.raises(NotFound):
        domain.find_by_phone(second_phone, svc.members, svc.hasher)


def test_given_a_member_when_profile_changes_then_version_and_birthday_index_follow(ddb_local):
    svc = services()
    member = domain.register(
        registration(unique_phone()), svc.members, svc.hasher, datetime.now(UTC)
    )
    updated = domain.update_profile(
        member.member_id,
        {"name": "王芳", "birthday": date(1992, 2, 29), "tags": ["vip", "vip2"]},
        svc.members,
        datetime.now(UTC),
        by_staff=False,
    )
    assert updated.version == member.version + 1
    assert updated.name == "王芳"
    assert updated.tags == ("vip", "vip2")
    key = birthday_key(date(1992, 2, 29), member.member_id)
    assert member.member_id in [m.member_id for m in svc.members.with_birthday(key)[0]]
    cleared = domain.update_profile(
        member.member_id,
        {"birthday": None, "tags": None},
        svc.members,
        datetime.now(UTC),
        by_staff=True,
    )
    assert cleared.birthday is None
    assert cleared.tags == ()
    assert member.member_id not in [m.member_id for m in svc.members.with_birthday(key)[0]]


def test_given_no_member_when_patching_then_not_found_and_no_item_is_created(ddb_local):
    svc = services()
    with pytest.raises(NotFound):
        svc.members.update_profile("mbr_missing_for_patch", {"name": "x"}, datetime.now(UTC))
    assert svc.members.get("mbr_missing_for_patch") is None


def test_given_a_nonce_when_claimed_twice_then_only_the_first_claim_wins(ddb_local):
    guards = services().guards
    key = f"NONCE#store-001#{unique_phone()}"
    assert guards.claim(key, "nonce", 900) is True
    assert guards.claim(key, "nonce", 900) is False


def test_given_a_nonce_when_read_before_and_after_its_claim_then_the_strong_read_sees_it(
    ddb_local,
):
    guards = services().guards
    key = f"NONCE#store-001#{unique_phone()}"
    assert guards.claimed(key, "nonce") is False
    assert guards.claim(key, "nonce", 900) is True
    assert guards.claimed(key, "nonce") is True


def test_given_a_signed_purchase_when_replayed_exactly_then_its_first_answer_one_credit_and_no_nonce_item(
    ddb_local, app_client, staff_token
):
    import boto3

    from local.pos import encode
    from local.tools import create_store_key

    key = create_store_key("store-001")
    card = f"C{unique_phone()[-8:]}"
    registered = app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps(
            {"phone": unique_phone(), "channel": "pos", "external_ids": {"pos_card": card}}
        ),
    )
    assert registered.status_code == 201, registered.json_body
    body = encode(
        {
            "transaction_id": f"t-{unique_phone()[-10:]}",
            "store_id": "store-001",
            "card": card,
            "occurred_at": datetime.now(UTC).isoformat(),
            "items": [{"sku": "tea", "category": "drinks", "quantity": 2, "unit_price": 2500}],
            "total": 5000,
        }
    )
    headers = key_headers(key, "POST", "/v1/transactions", body)
    answers = [
        app_client.http.post("/v1/transactions", headers=headers, body=body) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [201, 201, 201], answers[-1].json_body
    assert answers[1].json_body == answers[2].json_body == answers[0].json_body
    member_id = registered.json_body["member_id"]
    assert services().members.get(member_id).points_balance == 50
    runtime = boto3.client("dynamodb").get_item(
        TableName=ddb_local["RuntimeTable"],
        Key={"pk": {"S": f"NONCE#store-001#{headers['X-Nonce']}"}, "sk": {"S": "nonce"}},
        ConsistentRead=True,
    )
    assert "Item" not in runtime


# ---- sign-in links: the member a token acts for -----------------------------------------


def test_given_a_token_naming_b_whose_sub_is_linked_to_a_then_it_cannot_read_patch_earn_or_spend_as_b(
    ddb_local, app_client, staff_token
):
    phone = unique_phone()
    sign_in = token_for(None, phone=phone)
    a = app_client.http.post(
        "/v1/members", headers=auth(sign_in), body=json.dumps({"phone": phone, "channel": "app"})
    ).json_body["member_id"]
    b = app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps({"phone": unique_phone(), "channel": "app", "name": "B"}),
    ).json_body["member_id"]
    sub_a = jwt.decode(sign_in, options={"verify_signature": False})["sub"]
    forged = signed_token({"sub": sub_a, "custom:member_id": b})
    attempts = [
        ("GET", f"/v1/members/{b}", b""),
        ("GET", f"/v1/members/{b}/points", b""),
        ("GET", f"/v1/members/{b}/ledger", b""),
        ("PATCH", f"/v1/members/{b}", json.dumps({"name": "taken"}).encode()),
        (
            "POST",
            f"/v1/members/{b}/activities",
            json.dumps({"activity_id": "checkin-as-b", "type": "checkin"}).encode(),
        ),
        # a member code is what lets a till spend the member's points
        ("POST", f"/v1/members/{b}/member-code", b""),
    ]
    for method, path, body in attempts:
        response = app_client.http.request(method, path, headers=auth(forged), body=body)
        assert response.status_code == 403, (method, path, response.json_body)
        assert response.json_body["error"]["code"] == "IDENTITY_MISMATCH"
    after = services().members.get(b)
    assert after is not None
    assert after.name == "B"
    assert after.points_balance == 0
    assert after.version == 1
    # the sign-in without the forged claim is A, exactly
    mine = app_client.http.get(f"/v1/members/{a}", headers=auth(sign_in))
    assert mine.status_code == 200, mine.json_body


def test_given_a_sign_in_linked_to_one_member_when_linking_it_to_another_then_member_exists(
    ddb_local,
):
    svc = services()
    now = datetime.now(UTC)
    first = domain.register(registration(unique_phone()), svc.members, svc.hasher, now)
    second = domain.register(registration(unique_phone()), svc.members, svc.hasher, now)
    subject = f"sub-{first.member_id}"
    linked = domain.link_sign_in(first.member_id, subject, svc.members, svc.hasher, now)
    assert linked.external_ids == {"cognito_sub": subject}
    assert svc.members.get(first.member_id) == linked
    assert svc.members.find_member_id(svc.hasher.identity("cognito_sub", subject)) == (
        first.member_id
    )
    with pytest.raises(MemberExists) as raised:
        domain.link_sign_in(second.member_id, subject, svc.members, svc.hasher, now)
    assert raised.value.member_id == first.member_id
    untouched = svc.members.get(second.member_id)  # all or nothing
    assert untouched is not None
    assert (untouched.external_ids, untouched.version) == ({}, second.version)


def test_given_a_member_changed_since_it_was_read_when_linking_then_unavailable_and_no_claim(
    ddb_local,
):
    svc = services()
    now = datetime.now(UTC)
    member = domain.register(registration(unique_phone()), svc.members, svc.hasher, now)
    domain.update_profile(member.member_id, {"name": "new"}, svc.members, now, by_staff=True)
    identity = svc.hasher.identity("cognito_sub", f"sub-{member.member_id}")
    with pytest.raises(Unavailable):
        svc.members.add_external_id(member, "cognito_sub", f"sub-{member.member_id}", identity, now)
    assert svc.members.find_member_id(identity) is None
    assert svc.members.get(member.member_id).external_ids == {}


def test_given_ten_threads_linking_one_sign_in_at_once_then_all_see_the_one_link(ddb_local):
    svc = services()
    now = datetime.now(UTC)
    member = domain.register(registration(unique_phone()), svc.members, svc.hasher, now)
    subject = f"sub-{member.member_id}"
    barrier = threading.Barrier(10)
    results: list[str] = []
    failures: list[BaseException] = []

    def attempt() -> None:
        barrier.wait()
        try:
            linked = domain.link_sign_in(member.member_id, subject, svc.members, svc.hasher, now)
            results.append(linked.external_ids["cognito_sub"])
        except BaseException as exc:  # anything else is a bug to report
            failures.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # a loser of the race re-reads and sees the winner's link, or is told to retry
    assert all(isinstance(exc, Unavailable) for exc in failures), failures
    assert results
    assert set(results) == {subject}
    stored = svc.members.get(member.member_id)
    assert stored.external_ids == {"cognito_sub": subject}
    assert stored.version == 2


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/members/{long}"),
        ("PATCH", "/v1/members/{long}"),
        ("GET", "/v1/members/{long}/points"),
        ("GET", "/v1/members/{long}/tier"),
        ("GET", "/v1/transactions/{long}?store_id=store-001"),
        ("POST", "/v1/transactions/{long}/refunds"),
        ("GET", "/v1/admin/jobs/{long}/runs/2026-01-01"),
    ],
)
def test_given_a_path_id_longer_than_any_key_when_called_then_400_not_a_500_from_dynamodb(
    ddb_local, app_client, method, path
):
    from local.tools import member_or_staff_token

    headers = {
        "Authorization": f"Bearer {member_or_staff_token('admin', None)}",
        "Content-Type": "application/json",
    }
    body = {"PATCH": '{"name": "x"}', "POST": '{"refund_id": "r-1", "amount": 100}'}.get(method)
    response = app_client.http.request(
        method, path.replace("{long}", "m" * 2100), headers=headers, body=body
    )
    assert response.status_code == 400, response.json_body
    assert response.json_body["error"]["code"] == "VALIDATION_ERROR"
