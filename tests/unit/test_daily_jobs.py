"""The daily tier review and birthday greetings fanned out on the jobs queue (moto):
the schedule's tasks, one shard's worker, and its continuation near the time limit."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.dal.members import MEMBER_SK, member_pk
from chalicelib.dal.tables import MemberItem
from chalicelib.domain import members as members_domain
from chalicelib.domain.birthdays import birthday_key, shard_keys
from chalicelib.domain.expiry import EXPIRY_SHARDS, shard_of
from chalicelib.domain.tiers import add_years
from chalicelib.handlers import jobs, schedules, sharded, tiers
from chalicelib.handlers.payloads import ShardTask
from chalicelib.wiring import services
from tests.fakes import FakeLambdaContext, FakeQueue
from tests.helpers import fake_queues, make_gold, register_member, sqs_record

LOW = 1_000  # remaining ms: below the safety margin, so every page is the task's last


@pytest.fixture
def queues(seeded, monkeypatch) -> tuple[FakeQueue, FakeQueue]:
    return fake_queues(monkeypatch)


def sqs(task: dict[str, Any]) -> SQSRecord:
    return SQSRecord(sqs_record(task))


def fired(day: date, hour: int = 16, minute: int = 10) -> dict[str, str]:
    """The scheduled event at hour:minute UTC on the day before `day` (program time)."""
    moment = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
    return {"time": (moment + timedelta(hours=hour, minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def run_all(tasks: FakeQueue, context_ms: int = LOW) -> int:
    """Deliver every queued task (continuations too) until the queue is empty."""
    delivered = 0
    while pending := tasks.take():
        for task in pending:
            jobs.task_handler(sqs(task), FakeLambdaContext(remaining_ms=context_ms))
            delivered += 1
    return delivered


def gold_due(key: str) -> str:
    """A gold member with no spend whose review is filed under `key`."""
    member_id = register_member()
    since = date(2026, 6, 1)
    make_gold(member_id, since, add_years(since), key)
    return member_id


def file_birthday_under(member_id: str, key: str) -> None:
    MemberItem(pk=member_pk(member_id), sk=MEMBER_SK).update(
        actions=[MemberItem.birthday_key.set(key)]
    )


# ---- the schedules: one task per date and shard ------------------------------------------


def test_given_three_missed_days_when_the_tier_review_fires_then_a_task_per_date_and_shard(
    queues,
):
    tasks, _ = queues
    day = date(2027, 6, 1)
    services().jobs.advance("tier_review", day - timedelta(days=3))

    first = tiers.run_tier_review(fired(day))
    rerun = tiers.run_tier_review(fired(day))

    missed = [(day - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    assert first == {"job": "tier_review", "dates": missed, "tasks": 48, "through": day.isoformat()}
    assert tasks.sent == [
        {"job": "tier_review", "date": d, "shard": s} for d in missed for s in range(EXPIRY_SHARDS)
    ]
    assert (rerun["dates"], rerun["tasks"]) == ([], 0)
    assert services().jobs.last_date("tier_review") == day
    run = services().jobs.run("tier_review", day)
    assert (run["tasks"], run["tasks_done"], run["finished_at"]) == (16, 0, None)


def test_given_no_birthday_run_yet_when_the_greetings_fire_then_today_only_and_once(queues):
    tasks, outbox = queues
    day = date(2027, 7, 19)

    first = schedules.run_birthday_greetings(fired(day, minute=5))
    rerun = schedules.run_birthday_greetings(fired(day, minute=5))

    assert first == {"job": "birthday_greetings", "dates": [day.isoformat()], "tasks": 16}
    assert tasks.sent == [
        {"job": "birthdays", "date": day.isoformat(), "shard": s} for s in range(EXPIRY_SHARDS)
    ]
    assert outbox.sent == []  # the schedule greets nobody itself: the tasks do
    assert (rerun["dates"], rerun["tasks"]) == ([], 0)


def test_given_a_missed_birthday_run_when_the_next_fires_then_the_missed_day_is_caught_up(queues):
    tasks, _ = queues
    day = date(2027, 8, 10)
    services().jobs.advance("birthdays", day - timedelta(days=2))
    answer = schedules.run_birthday_greetings(fired(day, minute=5))
    assert answer["dates"] == [(day - timedelta(days=1)).isoformat(), day.isoformat()]
    assert len(tasks.sent) == 32


# ---- one shard, resumable near the time limit --------------------------------------------


def test_given_a_shard_over_two_keys_when_time_runs_low_then_a_continuation_resumes_it(queues):
    tasks, _ = queues
    day = date(2027, 9, 1)
    services().jobs.start_run("walk", day, sharded.SHARDS)
    pages = {
        ("k0", None): (sharded.Progress(2), {"pk": {"S": "after-2"}}),
        ("k0", "after-2"): (sharded.Progress(1), None),
        ("k1", None): (sharded.Progress(0), None),
    }
    seen: list[tuple[str, str | None]] = []

    def page(
        key: str, start: dict[str, Any] | None
    ) -> tuple[sharded.Progress, dict[str, Any] | None]:
        at = (key, start["pk"]["S"] if start else None)
        seen.append(at)
        return pages[at]

    task = ShardTask(job="walk", date=day, shard=7)
    # plenty of time after the first page, little after the second
    sharded.walk_shard(task, ["k0", "k1"], page, FakeLambdaContext(script=[120_000, LOW]))

    assert seen == [("k0", None), ("k0", "after-2")]
    continuation = {"job": "walk", "date": day.isoformat(), "shard": 7, "key": 1}
    assert tasks.take() == [continuation]
    assert services().jobs.run("walk", day)["tasks_done"] == 0

    resumed = ShardTask.model_validate(continuation)
    sharded.walk_shard(resumed, ["k0", "k1"], page, FakeLambdaContext(remaining_ms=LOW))
    assert seen[2:] == [("k1", None)]
    assert tasks.sent == []  # the shard is done: nothing more to queue
    run = services().jobs.run("walk", day)
    assert (run["members"], run["tasks_done"]) == (3, 1)


def test_given_five_members_due_on_one_shard_when_reviewed_two_per_page_then_each_once(
    queues, monkeypatch
):
    tasks, _ = queues
    monkeypatch.setattr(tiers, "PAGE", 2)
    day = date(2027, 6, 1)
    key = f"{day.isoformat()}#3"
    due = [gold_due(key) for _ in range(5)]
    first = {"job": "tier_review", "date": day.isoformat(), "shard": 3}

    tasks.send_many([first])
    assert run_all(tasks) == 3  # pages of 2, 2 and 1: two continuations
    jobs.task_handler(sqs(first), FakeLambdaContext(remaining_ms=LOW))  # redelivered late
    assert tasks.sent == []  # found nobody left under the key: the shard is done

    for member_id in due:
        assert services().tiers.state(member_id).tier_code == "silver"
        history = services().tiers.history(member_id)
        assert [h["reason"] for h in history] == ["downgraded", "upgrade"]
    run = services().jobs.run("tier_review", day)
    assert (run["members"], run["tasks_done"]) == (5, 1)


def test_given_members_born_today_on_one_shard_when_greeted_two_per_page_then_each_once(
    queues, monkeypatch
):
    tasks, outbox = queues
    monkeypatch.setattr(schedules, "BIRTHDAYS_PAGE", 2)
    day = date(2027, 7, 19)
    born = [register_member(birthday=date(1990, 7, 19)) for _ in range(3)]
    for member_id in born:
        file_birthday_under(member_id, "0719#5")
    first = {"job": "birthdays", "date": day.isoformat(), "shard": 5}

    tasks.send_many([first])
    assert run_all(tasks) == 2
    jobs.task_handler(sqs(first), FakeLambdaContext(remaining_ms=LOW))  # redelivered
    run_all(tasks)

    for member_id in born:
        assert services().members.get(member_id).points_balance == 100  # granted once
    greetings = [m for m in outbox.sent if m.template == "birthday"]
    assert {m.message_id for m in greetings} == {f"birthday#{m}#2027" for m in born}
    # No personal data in the queue: the sender reads the name when it sends.
    assert all("name" not in m.params for m in greetings)
    assert services().jobs.run("birthdays", day)["tasks_done"] == 1


def test_given_a_member_filed_before_keys_had_shards_then_shard_0_greets_them(queues):
    tasks, outbox = queues
    day = date(2027, 10, 3)
    member_id = register_member(birthday=date(1988, 10, 3))
    file_birthday_under(member_id, "1003")  # as written before the key carried a shard
    tasks.send_many(
        [{"job": "birthdays", "date": day.isoformat(), "shard": s} for s in range(EXPIRY_SHARDS)]
    )
    run_all(tasks, context_ms=300_000)
    assert [m.message_id for m in outbox.sent] == [f"birthday#{member_id}#2027"]


def test_given_a_birthday_when_registered_or_changed_then_the_index_key_names_its_shard(seeded):
    member_id = register_member(birthday=date(1991, 12, 24))
    item = MemberItem.get(member_pk(member_id), MEMBER_SK)
    assert (
        item.birthday_key
        == f"1224#{shard_of(member_id)}"
        == birthday_key(date(1991, 12, 24), member_id)
    )
    members_domain.update_profile(
        member_id,
        {"birthday": date(1991, 2, 1)},
        services().members,
        datetime.now(UTC),
        by_staff=True,
    )
    assert MemberItem.get(member_pk(member_id), MEMBER_SK).birthday_key == (
        f"0201#{shard_of(member_id)}"
    )


def test_shard_keys_cover_29_february_and_the_unsharded_keys_once():
    assert shard_keys(date(2027, 2, 28), 4) == ["0228#4", "0229#4"]
    assert shard_keys(date(2027, 2, 28), 0) == ["0228#0", "0229#0", "0228", "0229"]
    assert shard_keys(date(2028, 2, 28), 9) == ["0228#9"]


def test_given_job_tasks_when_dispatched_then_each_job_runs_and_the_batch_reports_none_failed(
    queues,
):
    day = date(2027, 11, 11)
    services().jobs.start_run("tier_review", day, 16)
    services().jobs.start_run("birthdays", day, 16)
    event = {
        "Records": [
            sqs_record({"job": "tier_review", "date": day.isoformat(), "shard": 2}),
            sqs_record({"job": "birthdays", "date": day.isoformat(), "shard": 2}),
            sqs_record({"job": "nonsense"}),
        ]
    }
    response = jobs.handle_tasks(event, FakeLambdaContext())
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        event["Records"][2]["messageId"]
    ]
    assert services().jobs.run("tier_review", day)["tasks_done"] == 1
    assert services().jobs.run("birthdays", day)["tasks_done"] == 1


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps({"job": "tier_review", "date": "2027-11-31", "shard": 2}),  # no such day
        json.dumps({"job": "tier_review", "date": "2027-11-11"}),  # no shard
        json.dumps({"job": "tier_rules", "version": 3, "mode": "guess", "segment": 0, "total": 8}),
    ],
    ids=["not-json", "bad-date", "no-shard", "unknown-mode"],
)
def test_given_a_malformed_task_when_dispatched_then_its_record_fails_and_nothing_runs(
    queues, body
):
    day = date(2027, 11, 12)
    services().jobs.start_run("tier_review", day, 16)
    bad = {**sqs_record({}), "body": body}
    good = sqs_record({"job": "tier_review", "date": day.isoformat(), "shard": 3})
    response = jobs.handle_tasks({"Records": [bad, good]}, FakeLambdaContext())
    assert response["batchItemFailures"] == [{"itemIdentifier": bad["messageId"]}]
    assert services().jobs.run("tier_review", day)["tasks_done"] == 1  # the good one only


def test_given_the_tasks_a_tier_rules_run_queues_then_the_worker_reads_each_as_queued():
    from chalicelib.domain.tier_rules import SCAN_SEGMENTS, recalculation_tasks
    from chalicelib.handlers.payloads import TierRulesTask, parse_task

    queued = recalculation_tasks(7, "dry_run", 3)  # a repeated dry run: its run number travels
    read = [parse_task(json.dumps(task)) for task in queued]
    assert all(isinstance(task, TierRulesTask) for task in read)
    assert [t.segment for t in read] == list(range(SCAN_SEGMENTS))  # type: ignore[union-attr]
    assert [t.body() for t in read] == [{k: v for k, v in q.items() if v != {}} for q in queued]
