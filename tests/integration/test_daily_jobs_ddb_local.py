"""The daily tier review and birthday greetings on DynamoDB Local, driven as the jobs
queue would: many members due on one day, processed across tasks and continuations,
with every first task delivered twice at once (a redelivery racing the original)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from chalicelib.domain import members as members_domain
from chalicelib.domain.tiering import TierChange, review_key, start_of_day
from chalicelib.domain.tiers import add_years
from chalicelib.wiring import services
from tests.conftest import unique_phone

pytestmark = pytest.mark.integration
LOW = 1_000  # remaining ms: every page is its task's last, the rest goes on


def register(birthday: date | None = None) -> str:
    svc = services()
    return members_domain.register(
        members_domain.Registration(
            phone=unique_phone(), channel="app", name="Mei", birthday=birthday
        ),
        svc.members,
        svc.hasher,
        datetime.now(UTC),
    ).member_id


def test_given_a_member_moved_meanwhile_when_a_review_applies_its_change_then_false_not_an_error(
    ddb_local,
):
    svc = services()
    member_id = register()
    since = date(2026, 6, 1)
    key = review_key(add_years(since), member_id)
    upgrade = TierChange(
        member_id, "member", "gold", "upgrade", 0, since, start_of_day(add_years(since)), key, None
    )
    assert svc.tiers.change(upgrade, datetime.now(UTC))
    # another worker's decision, made on the same read, lands second
    stale = TierChange(
        member_id, "member", "gold", "upgrade", 0, since, None, None, None, expected_review_due=None
    )
    assert svc.tiers.change(stale, datetime.now(UTC)) is False
    assert [h["to"] for h in svc.tiers.history(member_id)] == ["gold"]
