"""The daily tier review and birthday greetings on DynamoDB Local, driven as the jobs
queue would: many members due on one day, processed across tasks and continuations,
with every first task delivered twice at once (a redelivery racing the original)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.dal.senders import LogSender
from chalicelib.domain.tiering import TierChange, review_key, start_of_day
from chalicelib.domain.tiers import add_years
from chalicelib.handlers import jobs, messages, schedules, tiers
from chalicelib.wiring import services
from tests.fakes import FakeLambdaContext, FakeQueue, set_last_scheduled
from tests.helpers import fake_queues, make_gold, register_member, sqs_record

pytestmark = pytest.mark.integration
LOW = 1_000  # remaining ms: every page is its task's last, the rest goes on


@pytest.fixture
def queues(ddb_local, monkeypatch) -> tuple[FakeQueue, FakeQueue]:
    return fake_queues(monkeypatch)


def sqs(task: dict[str, Any]) -> SQSRecord:
    return SQSRecord(sqs_record(task))


def drive(tasks: FakeQueue) -> int:
    """Deliver queued tasks four at a time until none is left; every first task (no
    cursor yet) twice, at once. Returns how many deliveries there were."""
    deliveries = 0
    with ThreadPoolExecutor(4) as pool:
        while pending := tasks.take():
            copies = [t for t in pending for _ in range(1 if "start" in t else 2)]
            list(
                pool.map(
                    lambda t: jobs.task_handler(sqs(t), FakeLambdaContext(remaining_ms=LOW)),
                    copies,
                )
            )
            deliveries += len(copies)
    return deliveries


def fired_on(day: date, minute: int) -> dict[str, str]:
    """00:<minute> on `day` in Asia/Shanghai (16:<minute> UTC the day before)."""
    moment = start_of_day(day) + timedelta(minutes=minute)
    return {"time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_given_40_members_due_one_day_when_reviewed_across_tasks_then_each_once(
    queues, monkeypatch
):
    tasks, _ = queues
    monkeypatch.setattr(tiers, "PAGE", 2)
    since = date(2300, 1, 1) + timedelta(days=random.randrange(20_000))  # a fresh stretch
    day = add_years(since)
    svc = services()
    due = []
    for _ in range(40):  # gold, no spend: each review moves them down to silver
        member_id = register_member()
        make_gold(member_id, since, day)
        due.append(member_id)
    set_last_scheduled("tier_review", day - timedelta(days=1))

    scheduled = tiers.run_tier_review(fired_on(day, 10))
    deliveries = drive(tasks)

    assert scheduled["dates"] == [day.isoformat()]
    assert scheduled["tasks"] == 16
    assert deliveries > 32  # continuations: pages of two members
    for member_id in due:
        history = svc.tiers.history(member_id)
        assert [h["reason"] for h in history] == ["downgraded", "upgrade"], member_id
        assert svc.tiers.state(member_id).tier_code == "silver"
    run = svc.jobs.run("tier_review", day)
    assert (run["members"], run["tasks"], run["tasks_done"]) == (40, 16, 16)
    assert run["finished_at"] is not None


def test_given_30_members_born_one_day_when_greeted_across_tasks_then_each_once(
    queues, monkeypatch
):
    tasks, outbox = queues
    monkeypatch.setattr(schedules, "BIRTHDAYS_PAGE", 2)
    monkeypatch.setattr(messages, "utc_now", lambda: datetime(2026, 3, 2, 4, tzinfo=UTC))
    sender = LogSender()
    monkeypatch.setattr(messages, "_sender", sender)
    day = date(2400 + random.randrange(500), 9, 17)  # nobody else in these tests: 17 Sep
    born = [register_member(birthday=date(1985 + n % 20, 9, 17)) for n in range(30)]
    set_last_scheduled("birthdays", day - timedelta(days=1))

    scheduled = schedules.run_birthday_greetings(fired_on(day, 5))
    drive(tasks)

    assert scheduled["tasks"] == 16
    for member_id in born:  # points once, though some tasks ran twice at once
        assert services().members.get(member_id).points_balance == 100, member_id
    queued = outbox.take()
    assert {m.message_id for m in queued} == {f"birthday#{m}#{day.year}" for m in born}
    # the messages worker sends each greeting once, duplicates from redeliveries dropped
    for start in range(0, len(queued), 10):
        batch = [
            sqs_record(
                {
                    "message_id": m.message_id,
                    "member_id": m.member_id,
                    "template": m.template,
                    "category": "service",  # consent is not what this test is about
                    "params": m.params,
                }
            )
            for m in queued[start : start + 10]
        ]
        assert messages.handle({"Records": batch}, FakeLambdaContext()) == {"batchItemFailures": []}
    assert sorted(sender.sent) == sorted((m, "birthday") for m in born)
    run = services().jobs.run("birthdays", day)
    assert (run["tasks"], run["tasks_done"]) == (16, 16)
    assert run["members"] >= 30  # greetings queued, a redelivered page's again
    assert run["finished_at"] is not None


def test_given_a_member_moved_meanwhile_when_a_review_applies_its_change_then_false_not_an_error(
    ddb_local,
):
    svc = services()
    member_id = register_member()
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
