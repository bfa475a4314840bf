"""Event handlers with hand-built Lambda events on moto (DynamoDB, SQS, EventBridge):
the members-table stream (outbox) and the messages queue worker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.dal.members import to_item
from chalicelib.dal.senders import LogSender
from chalicelib.domain import members as domain
from chalicelib.domain.members import Member, Registration
from chalicelib.handlers import member_stream, messages
from chalicelib.wiring import reset_services, services
from tests.conftest import unique_phone
from tests.fakes import FakeLambdaContext
from tests.helpers import sqs_record, stream_record

BUS = "loyalty-unit"
DAYTIME = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
NIGHT = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai


class Queues:
    def __init__(self, sqs: Any, messages_url: str, bus_tap_url: str) -> None:
        self.sqs = sqs
        self.messages_url = messages_url
        self.bus_tap_url = bus_tap_url

    def drain(self, url: str) -> list[dict[str, Any]]:
        bodies: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", [])
            if not got:
                return bodies
            for message in got:
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def welcome_messages(self) -> list[dict[str, Any]]:
        return self.drain(self.messages_url)

    def bus_events(self) -> list[dict[str, Any]]:
        return self.drain(self.bus_tap_url)


@pytest.fixture
def queues(moto_tables, aws_env, monkeypatch) -> Queues:
    """A messages queue and an event bus whose every event is copied to a tap queue."""
    import boto3

    region = aws_env["AWS_REGION"]
    sqs = boto3.client("sqs", region_name=region)
    messages_url = sqs.create_queue(QueueName="unit-messages")["QueueUrl"]
    tap_url = sqs.create_queue(QueueName="unit-bus-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events", region_name=region)
    events.create_event_bus(Name=BUS)
    events.put_rule(Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": ["loyalty"]}))
    events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": tap_arn}])
    monkeypatch.setenv("MESSAGES_QUEUE_URL", messages_url)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    reset_services()
    monkeypatch.setattr(messages, "_sender", LogSender())
    # what `handle` does per invocation, for tests that call `record_handler` directly
    messages._delivery().config.register_lambda_context(FakeLambdaContext())
    return Queues(sqs, messages_url, tap_url)


# ---- members-table stream ---------------------------------------------------------------


def member(name: str = "Li", **fields: Any) -> Member:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return Member(
        member_id=f"mbr_{uuid.uuid4().hex[:12]}",
        phone=unique_phone(),
        channel="app",
        created_at=now,
        updated_at=now,
        name=name,
        **fields,
    )


def member_image(m: Member) -> dict[str, Any]:
    return dict(to_item(m).serialize())


def identity_image() -> dict[str, Any]:
    return {
        "pk": {"S": f"ID#phone#{uuid.uuid4().hex}"},
        "sk": {"S": "ID"},
        "kind": {"S": "identity"},
        "identity_kind": {"S": "phone"},
        "member_id": {"S": "mbr_x"},
        "created_at": {"S": "2026-03-01T12:00:00.000Z"},
    }


def test_given_an_inserted_member_when_the_stream_delivers_it_then_event_and_welcome_message(
    queues,
):
    m = member(name="韩梅梅", store_id="store-001")
    record = stream_record("INSERT", member_image(m))
    response = member_stream.handle({"Records": [record]}, None)
    assert response == {"batchItemFailures": []}

    events = queues.bus_events()
    assert len(events) == 1
    assert events[0]["source"] == "loyalty"
    assert events[0]["detail-type"] == "MemberRegistered"
    assert events[0]["detail"] == {
        "event_id": record["eventID"],
        "member_id": m.member_id,
        "channel": "app",
        "store_id": "store-001",
        "registered_at": "2026-03-01T12:00:00.000Z",
    }
    assert queues.welcome_messages() == [
        {
            "message_id": f"welcome#{m.member_id}",
            "member_id": m.member_id,
            "template": "welcome",
            "category": "service",
            "params": {},  # no personal data in the queue: the sender reads the name
        }
    ]


@pytest.mark.parametrize(
    ("event_name", "image"),
    [
        ("MODIFY", lambda: member_image(member())),
        ("REMOVE", lambda: member_image(member())),
        ("INSERT", identity_image),
    ],
)
def test_given_a_record_that_is_not_a_new_member_when_streamed_then_nothing_is_published(
    queues, event_name, image
):
    response = member_stream.handle({"Records": [stream_record(event_name, image())]}, None)
    assert response == {"batchItemFailures": []}
    assert queues.bus_events() == []
    assert queues.welcome_messages() == []


def test_given_a_batch_where_one_member_fails_when_streamed_then_only_its_sequence_number_fails(
    queues, monkeypatch
):
    ok_first, poison, ok_last = member(name="A"), member(name="B"), member(name="C")
    records = [stream_record("INSERT", member_image(m)) for m in (ok_first, poison, ok_last)]
    real_send = services().messages.send

    def send(message):
        if message.member_id == poison.member_id:
            raise RuntimeError("queue unavailable")
        real_send(message)

    monkeypatch.setattr(services().messages, "send", send)
    response = member_stream.handle({"Records": records}, None)

    assert response == {
        "batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]
    }
    welcomed = sorted(body["member_id"] for body in queues.welcome_messages())
    assert welcomed == sorted([ok_first.member_id, ok_last.member_id])


def test_given_a_batch_with_modifies_and_inserts_when_streamed_then_one_event_per_insert(queues):
    a, b = member(), member()
    records = [
        stream_record("INSERT", member_image(a)),
        stream_record("MODIFY", member_image(a)),
        stream_record("INSERT", identity_image()),
        stream_record("INSERT", member_image(b)),
    ]
    assert member_stream.handle({"Records": records}, None) == {"batchItemFailures": []}
    assert sorted(e["detail"]["member_id"] for e in queues.bus_events()) == sorted(
        [a.member_id, b.member_id]
    )
    assert len(queues.welcome_messages()) == 2


# ---- messages worker --------------------------------------------------------------------


def registered_member(marketing_consent: bool = False) -> Member:
    svc = services()
    return domain.register(
        Registration(
            phone=unique_phone(), channel="app", name="Li", marketing_consent=marketing_consent
        ),
        svc.members,
        svc.hasher,
        datetime.now(UTC),
    )


def message_body(
    member_id: str, category: str = "service", message_id: str | None = None
) -> dict[str, Any]:
    return {
        "message_id": message_id or f"msg#{uuid.uuid4().hex}",
        "member_id": member_id,
        "template": "welcome" if category == "service" else "spring_sale",
        "category": category,
        "params": {"name": "Li"},
    }


def sent() -> list[tuple[str, str]]:
    return list(messages.sender().sent)  # type: ignore[attr-defined]


@pytest.fixture
def daytime(monkeypatch):
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)


def test_given_a_service_message_when_processed_then_it_is_sent_once(queues, daytime):
    m = registered_member()
    response = messages.handle({"Records": [sqs_record(message_body(m.member_id))]}, None)
    assert response == {"batchItemFailures": []}
    assert sent() == [(m.member_id, "welcome")]


def test_given_a_redelivered_message_when_processed_again_then_duplicate_and_not_resent(
    queues, daytime
):
    m = registered_member()
    body = message_body(m.member_id, message_id=f"welcome#{m.member_id}")
    first, again = sqs_record(body), sqs_record(body)  # same message_id, new SQS messageId
    assert messages.record_handler(_as_sqs_record(first)) == "sent"
    assert messages.record_handler(_as_sqs_record(again)) == "duplicate"
    assert messages.handle({"Records": [sqs_record(body)]}, None) == {"batchItemFailures": []}
    assert sent() == [(m.member_id, "welcome")]


def test_given_the_same_message_twice_in_one_batch_when_processed_then_sent_once(queues, daytime):
    m = registered_member()
    body = message_body(m.member_id)
    response = messages.handle({"Records": [sqs_record(body), sqs_record(body)]}, None)
    assert response == {"batchItemFailures": []}
    assert sent() == [(m.member_id, "welcome")]


def test_given_marketing_without_consent_when_processed_then_skipped_not_failed(queues, daytime):
    m = registered_member(marketing_consent=False)
    record = sqs_record(message_body(m.member_id, category="marketing"))
    assert messages.record_handler(_as_sqs_record(record)) == "no_consent"
    assert messages.handle(
        {"Records": [sqs_record(message_body(m.member_id, "marketing"))]}, None
    ) == {"batchItemFailures": []}
    assert sent() == []


def test_given_marketing_with_consent_in_daytime_when_processed_then_sent(queues, daytime):
    m = registered_member(marketing_consent=True)
    response = messages.handle(
        {"Records": [sqs_record(message_body(m.member_id, category="marketing"))]}, None
    )
    assert response == {"batchItemFailures": []}
    assert sent() == [(m.member_id, "spring_sale")]


def test_given_a_message_for_an_unknown_member_when_processed_then_dropped_not_failed(
    queues, daytime
):
    record = sqs_record(message_body("mbr_nobody"))
    assert messages.record_handler(_as_sqs_record(record)) == "dropped"
    assert sent() == []


def test_given_marketing_in_quiet_hours_when_processed_then_deferred_until_08_00(
    queues, monkeypatch
):
    m = registered_member(marketing_consent=True)
    service = message_body(m.member_id, "service")
    marketing = message_body(m.member_id, "marketing")
    # a real queued message, so the worker can hide it by its receipt handle
    queues.sqs.send_message(QueueUrl=queues.messages_url, MessageBody=json.dumps(marketing))
    received = queues.sqs.receive_message(QueueUrl=queues.messages_url, VisibilityTimeout=1)
    marketing_record = sqs_record(marketing, received["Messages"][0]["ReceiptHandle"])
    hidden: list[int] = []
    real_hide = services().messages.hide

    def hide(receipt_handle: str, seconds: int) -> None:
        hidden.append(seconds)
        real_hide(receipt_handle, seconds)

    monkeypatch.setattr(services().messages, "hide", hide)
    monkeypatch.setattr(messages, "utc_now", lambda: NIGHT)

    response = messages.handle({"Records": [sqs_record(service), marketing_record]}, None)

    assert response == {"batchItemFailures": [{"itemIdentifier": marketing_record["messageId"]}]}
    assert sent() == [(m.member_id, "welcome")]  # service messages ignore quiet hours
    assert hidden == [9 * 3600]  # 23:00 -> 08:00 in Shanghai
    # still hidden: a later receive does not see it
    assert queues.sqs.receive_message(QueueUrl=queues.messages_url).get("Messages", []) == []

    # at 08:00 the message comes back and is sent: deferring did not use up its delivery
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)
    assert messages.handle({"Records": [sqs_record(marketing)]}, None) == {"batchItemFailures": []}
    assert sent() == [(m.member_id, "welcome"), (m.member_id, "spring_sale")]


class FlakySender(LogSender):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def send(self, recipient, template, params):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("SMS gateway timed out")
        super().send(recipient, template, params)


def test_given_a_failing_sender_when_processed_then_the_record_fails_and_a_retry_sends(
    queues, daytime, monkeypatch
):
    flaky = FlakySender(failures=1)
    monkeypatch.setattr(messages, "_sender", flaky)
    ok_member, unlucky = registered_member(), registered_member()
    body = message_body(unlucky.member_id)
    first = sqs_record(body)
    ok = sqs_record(message_body(ok_member.member_id))

    # the first send in the batch fails; the other record is unaffected
    response = messages.handle({"Records": [first, ok]}, None)
    assert response == {"batchItemFailures": [{"itemIdentifier": first["messageId"]}]}
    assert flaky.sent == [(ok_member.member_id, "welcome")]

    # the redelivery is not mistaken for a duplicate: the guard was released
    retry = sqs_record(body)
    assert messages.handle({"Records": [retry]}, None) == {"batchItemFailures": []}
    assert flaky.sent == [(ok_member.member_id, "welcome"), (unlucky.member_id, "welcome")]


class FunctionTimedOut(BaseException):
    """Lambda stopping the process at its deadline: no except/finally runs after it."""


class DyingSender(LogSender):
    """The first send never returns: the invocation reaches its time limit inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def send(self, recipient, template, params):
        self.attempts += 1
        if self.attempts == 1:
            raise FunctionTimedOut()
        super().send(recipient, template, params)


def test_given_a_send_that_times_out_after_claiming_when_redelivered_after_its_deadline_then_sent_once(
    queues, daytime, monkeypatch
):
    dying = DyingSender()
    monkeypatch.setattr(messages, "_sender", dying)
    m = registered_member()
    body = message_body(m.member_id, message_id=f"welcome#{m.member_id}")
    at_its_limit = FakeLambdaContext(remaining_ms=0)

    with pytest.raises(FunctionTimedOut):
        messages.handle({"Records": [sqs_record(body)]}, at_its_limit)
    assert dying.sent == []
    at_its_limit.wait_past_deadline()  # SQS redelivers after the visibility timeout

    assert messages.handle({"Records": [sqs_record(body)]}, FakeLambdaContext()) == {
        "batchItemFailures": []
    }
    assert dying.sent == [(m.member_id, "welcome")]
    assert messages.delivered(f"welcome#{m.member_id}")
    # and once sent, later redeliveries send nothing
    again = sqs_record(body)
    assert messages.handle({"Records": [again]}, FakeLambdaContext()) == {"batchItemFailures": []}
    assert dying.sent == [(m.member_id, "welcome")]


def test_given_a_worker_that_died_mid_send_when_a_redelivery_comes_before_its_deadline_then_it_is_kept_on_the_queue(
    queues, daytime, monkeypatch
):
    dying = DyingSender()
    monkeypatch.setattr(messages, "_sender", dying)
    m = registered_member()
    body = message_body(m.member_id)
    with pytest.raises(FunctionTimedOut):
        messages.handle({"Records": [sqs_record(body)]}, FakeLambdaContext(remaining_ms=600_000))

    early = sqs_record(body)
    response = messages.handle({"Records": [early]}, FakeLambdaContext())

    # the claim may still be sending: not sent again, not dropped either
    assert response == {"batchItemFailures": [{"itemIdentifier": early["messageId"]}]}
    assert dying.sent == []
    assert not messages.delivered(body["message_id"])


def test_given_two_workers_with_the_same_message_at_once_then_it_is_sent_once(
    queues, daytime, monkeypatch
):
    import threading

    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
    )

    entered, release = threading.Event(), threading.Event()

    class SlowSender(LogSender):
        def send(self, recipient, template, params):
            entered.set()
            assert release.wait(30)
            super().send(recipient, template, params)

    slow = SlowSender()
    monkeypatch.setattr(messages, "_sender", slow)
    m = registered_member()
    body = message_body(m.member_id)
    first: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: first.update(
            messages.handle({"Records": [sqs_record(body)]}, FakeLambdaContext())
        )
    )
    worker.start()
    try:
        assert entered.wait(30)
        # the second delivery arrives while the first worker is inside the send
        with pytest.raises(IdempotencyAlreadyInProgressError):
            messages.record_handler(_as_sqs_record(sqs_record(body)))
    finally:
        release.set()
        worker.join(30)
    assert first == {"batchItemFailures": []}
    # it comes back after the visibility timeout and finds the message sent
    assert messages.record_handler(_as_sqs_record(sqs_record(body))) == "duplicate"
    assert slow.sent == [(m.member_id, "welcome")]


def test_given_a_sent_message_whose_after_send_mark_failed_when_redelivered_then_marked_not_resent(
    queues, daytime, monkeypatch
):
    m = registered_member()
    body = {**message_body(m.member_id), "after_send": {"expiry_reminded": "2026-03-31"}}
    real_mark = services().members.mark
    failures = iter([ConnectionError("throttled")])

    def mark(member_id: str, fields: dict[str, str]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_mark(member_id, fields)

    monkeypatch.setattr(services().members, "mark", mark)
    first = sqs_record(body)
    assert messages.handle({"Records": [first]}, FakeLambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": first["messageId"]}]
    }
    assert messages.handle({"Records": [sqs_record(body)]}, FakeLambdaContext()) == {
        "batchItemFailures": []
    }
    assert sent() == [(m.member_id, "welcome")]
    assert services().members.get(m.member_id) is not None
    from chalicelib.dal.members import MEMBER_SK, member_pk
    from chalicelib.dal.tables import MemberItem

    assert MemberItem.get(member_pk(m.member_id), MEMBER_SK).expiry_reminded == "2026-03-31"


def _as_sqs_record(record: dict[str, Any]) -> Any:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    return SQSRecord(record)


# ---- malformed bodies and images fail their own record only -------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps({"message_id": "m1", "template": "welcome", "category": "service"}),
        json.dumps({"message_id": "m2", "member_id": "x", "template": "t", "category": "spam"}),
    ],
    ids=["not-json", "no-member", "unknown-category"],
)
def test_given_a_malformed_message_in_a_batch_when_processed_then_only_it_fails_the_rest_is_sent(
    queues, daytime, body
):
    m = registered_member()
    good = sqs_record(message_body(m.member_id))
    bad = {**sqs_record({}), "body": body}
    response = messages.handle({"Records": [bad, good]}, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    assert sent() == [(m.member_id, "welcome")]


def test_given_a_ledger_image_without_points_when_streamed_then_only_its_record_fails(queues):
    entry = {
        "pk": {"S": "MEMBER#mbr_x"},
        "sk": {"S": "LEDGER#1"},
        "kind": {"S": "ledger"},
        "type": {"S": "earn"},
        "member_id": {"S": "mbr_x"},
        "entry_id": {"S": "e1"},
        "balance_after": {"N": "10"},
    }
    bad = stream_record("INSERT", entry)
    good = stream_record("INSERT", {**entry, "sk": {"S": "LEDGER#2"}, "points": {"N": "10"}})
    response = member_stream.handle({"Records": [bad, good]}, None)
    assert response == {
        "batchItemFailures": [{"itemIdentifier": bad["dynamodb"]["SequenceNumber"]}]
    }
    (event,) = queues.bus_events()
    assert event["detail-type"] == "PointsEarned"
    assert event["detail"]["points"] == 10


def test_given_what_the_queue_producer_writes_then_the_worker_reads_the_same_message():
    from chalicelib.dal.outbound import OutboundMessage, _body
    from chalicelib.handlers.payloads import Message

    message = OutboundMessage(
        message_id="expiry-reminder#m1#2026-03-02",
        member_id="m1",
        template="points_expiring",
        category="marketing",
        params={"expires_on": "2026-03-02"},
        after_send={"expiry_reminded": "2026-03-02"},
    )
    read = Message.model_validate_json(_body(message))
    assert (read.message_id, read.member_id, read.template, read.category) == (
        message.message_id,
        message.member_id,
        message.template,
        message.category,
    )
    assert (read.params, read.after_send) == (message.params, message.after_send)
