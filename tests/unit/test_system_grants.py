"""Points the program grants by itself (sign-up bonus, birthday, referral reward) on moto:
a member's own activity ids can never occupy a grant's key, and one member's failing
grant is reported without failing the birthday job or the stream record for anyone."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.domain import points as points_domain
from chalicelib.domain.clock import program_date
from chalicelib.domain.earning import Item
from chalicelib.errors import Conflict, Unavailable
from chalicelib.handlers import jobs, member_stream
from chalicelib.handlers.schedules import run_birthday_greetings
from chalicelib.wiring import points_context, services
from tests.fakes import FakeLambdaContext
from tests.helpers import register_member, stream_record
from tests.unit.test_handlers import Queues
from tests.unit.test_handlers import queues as queues  # the fixture, found by name


@pytest.fixture
def outbox(seeded, request) -> Queues:
    """The messages queue and a tap on the event bus (test_handlers' `queues`)."""
    return request.getfixturevalue("queues")


def member_posts(member_id: str, activity_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    """What `POST /v1/members/{id}/activities` does with a member's body."""
    body = {"activity_id": activity_id, "type": kind, **extra}
    _, response = points_domain.record_activity(
        points_domain.Activity(
            member_id=member_id,
            activity_id=activity_id,
            type=kind,
            request_hash=points_domain.request_hash(body),
            referrer_member_id=extra.get("referrer_member_id"),
        ),
        points_context(),
    )
    return response


def balance(member_id: str) -> int:
    account = services().ledger.load(member_id)
    assert account is not None
    return account.wallet.balance


def raw_item(pk: str, sk: str) -> dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    table = services().settings.members_table
    return client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]


def greet_today(event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The birthday schedule, then every (date, shard) task it queued, as the jobs worker
    runs them; a task that raised is delivered again (as SQS would), once. Returns what
    the tasks raised."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(services().tasks, "send_many", queued.extend)
    run_birthday_greetings(event)
    raised: list[str] = []
    retried: set[str] = set()
    while queued:
        task = queued.pop(0)
        record = SQSRecord({"messageId": json.dumps(task), "body": json.dumps(task)})
        try:
            jobs.task_handler(record, FakeLambdaContext())
        except Exception as exc:
            raised.append(type(exc).__name__)
            if json.dumps(task) not in retried:
                retried.add(json.dumps(task))
                queued.append(task)
    return raised


def born_today() -> date:
    today = program_date(datetime.now(UTC))
    # 29 February birthdays are greeted on 28 February in common years: avoid the edge
    return date(1990, today.month, min(today.day, 28))


def birthday_event() -> dict[str, Any]:
    now = datetime.now(UTC)
    if program_date(now).day > 28:  # pragma: no cover - the edge of born_today()
        pytest.skip("birthdays after the 28th are out of this test's range")
    return {"time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_given_members_who_posted_the_birthday_activity_id_when_the_birthday_job_runs_then_everyone_born_today_is_granted(
    outbox, monkeypatch
):
    event = birthday_event()
    year = program_date(datetime.now(UTC)).year
    squatter, neighbour = register_member(born_today()), register_member(born_today())
    # the squatter checks in under the id the job uses for this year's birthday points
    checked_in = member_posts(squatter, f"birthday-{year}", "checkin")
    assert checked_in["points_earned"] == 5

    assert greet_today(event, monkeypatch) == []

    assert balance(squatter) == 5 + 100
    assert balance(neighbour) == 100
    # and the member's own request still replays its first answer
    assert member_posts(squatter, f"birthday-{year}", "checkin") == checked_in


def test_given_a_member_who_posted_signup_as_an_activity_id_when_the_member_record_streams_then_the_signup_bonus_is_paid(
    outbox,
):
    member_id = register_member()
    shared = member_posts(member_id, "signup", "share")
    record = stream_record("INSERT", raw_item(f"MEMBER#{member_id}", "MEMBER"))

    response = member_stream.handle({"Records": [record]}, None)
    redelivered = member_stream.handle({"Records": [record]}, None)

    assert response == {"batchItemFailures": []}
    assert redelivered == {"batchItemFailures": []}
    assert balance(member_id) == shared["points_earned"] + 100  # the bonus, once


def test_given_a_referrer_who_posted_the_referral_reward_id_when_the_referee_buys_then_the_reward_is_paid(
    outbox,
):
    referrer, referee = register_member(), register_member()
    posted = member_posts(referrer, f"referral-reward-{referee}", "review")
    member_posts(referee, "ref-1", "referral", referrer_member_id=referrer)
    points_domain.record_purchase(
        points_domain.Purchase(
            transaction_id="first-buy",
            store_id="store-001",
            member_id=referee,
            occurred_at=datetime.now(UTC),
            items=[Item("tea", "drinks", 1, 1000)],
            total=1000,
            currency="CNY",
            pay_with_points=0,
            request_hash="a" * 64,
        ),
        points_context(),
    )
    record = stream_record("INSERT", raw_item("TXN#store-001#first-buy", "TXN"))

    response = member_stream.handle({"Records": [record]}, None)
    redelivered = member_stream.handle({"Records": [record]}, None)

    assert response == {"batchItemFailures": []}
    assert redelivered == {"batchItemFailures": []}
    assert balance(referrer) == posted["points_earned"] + 200  # the reward, once


def test_given_one_member_whose_grant_is_refused_for_good_when_the_birthday_job_runs_then_the_others_are_granted_and_the_task_succeeds(
    outbox, monkeypatch
):
    event = birthday_event()
    first, broken, last = (register_member(born_today()) for _ in range(3))
    real = points_domain.record_activity

    def record_activity(cmd, ctx):
        if cmd.member_id == broken:
            raise Conflict("taken", code="IDEMPOTENCY_CONFLICT")
        return real(cmd, ctx)

    monkeypatch.setattr(points_domain, "record_activity", record_activity)

    assert greet_today(event, monkeypatch) == []  # reported, not retried for ever

    assert balance(first) == 100
    assert balance(last) == 100
    assert balance(broken) == 0
    greeted = {body["member_id"] for body in outbox.welcome_messages()}
    assert {first, broken, last} <= greeted  # the greeting does not depend on the points


@pytest.mark.parametrize(
    "failure",
    [Unavailable("too busy; retry", code="CONTENDED"), RuntimeError("throttled")],
)
def test_given_one_member_whose_grant_fails_for_a_moment_when_the_birthday_job_runs_then_the_others_are_granted_and_the_redelivered_task_grants_it(
    outbox, monkeypatch, failure
):
    event = birthday_event()
    first, broken, last = (register_member(born_today()) for _ in range(3))
    real = points_domain.record_activity
    failing = iter([failure])

    def record_activity(cmd, ctx):
        if cmd.member_id == broken:
            failed = next(failing, None)
            if failed is not None:
                raise failed
        return real(cmd, ctx)

    monkeypatch.setattr(points_domain, "record_activity", record_activity)

    assert greet_today(event, monkeypatch) == ["GrantsToRetry"]  # once, then redelivered

    assert balance(first) == 100
    assert balance(last) == 100
    assert balance(broken) == 100  # not lost: paid by the redelivery, and nobody twice
    greeted = {body["member_id"] for body in outbox.welcome_messages()}
    assert {first, broken, last} <= greeted


def test_given_a_grant_refused_for_good_when_the_member_record_streams_then_the_record_succeeds(
    outbox, monkeypatch
):
    member_id = register_member()

    def record_activity(cmd, ctx):
        raise Conflict("taken", code="IDEMPOTENCY_CONFLICT")

    monkeypatch.setattr(points_domain, "record_activity", record_activity)
    record = stream_record("INSERT", raw_item(f"MEMBER#{member_id}", "MEMBER"))

    # retrying could never succeed: reporting it beats blocking the shard
    assert member_stream.handle({"Records": [record]}, None) == {"batchItemFailures": []}
    assert [e["detail-type"] for e in outbox.bus_events()] == ["MemberRegistered"]
