"""Members on DynamoDB Local: conditions, transactions and the sparse index for real."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from chalicelib.domain import members as domain
from chalicelib.domain.birthdays import birthday_key
from chalicelib.errors import MemberExists, NotFound
from chalicelib.wiring import services
from tests.conftest import unique_phone

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
