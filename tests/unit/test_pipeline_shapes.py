"""local/cron.py and the pure parts of local/pipeline.py: the shapes Lambda would deliver."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from local.cron import ScheduleExpression
from local.pipeline import (
    ACCOUNT,
    discover,
    failed_ids,
    logical_id,
    scheduled_event,
    sqs_event_record,
    stream_event_record,
)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# ---- schedule expressions ---------------------------------------------------------------


def test_given_the_birthday_cron_when_parsing_then_minute_5_hour_16_every_day():
    expression = ScheduleExpression.parse("cron(5 16 * * ? *)")
    assert expression == ScheduleExpression(minutes={5}, hours={16})


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2026, 3, 1, 0, 0), utc(2026, 3, 1, 16, 5)),
        (utc(2026, 3, 1, 16, 4, 59), utc(2026, 3, 1, 16, 5)),
        (utc(2026, 3, 1, 16, 5), utc(2026, 3, 2, 16, 5)),  # strictly after
        (utc(2026, 3, 1, 16, 5, 30), utc(2026, 3, 2, 16, 5)),
        (utc(2025, 12, 31, 17, 0), utc(2026, 1, 1, 16, 5)),  # across the year
        (utc(2028, 2, 28, 16, 6), utc(2028, 2, 29, 16, 5)),  # leap day
    ],
)
def test_given_the_birthday_cron_when_asking_the_next_firing_then(moment, expected):
    assert ScheduleExpression.parse("cron(5 16 * * ? *)").next_after(moment) == expected


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", timedelta(days=1)),
    ],
)
def test_given_a_rate_when_asking_the_next_firing_then_moment_plus_rate(text, delta):
    moment = utc(2026, 3, 1, 10, 17, 42)
    expression = ScheduleExpression.parse(text)
    assert expression.rate == delta
    assert expression.next_after(moment) == moment + delta


def test_given_weekday_names_when_asking_the_next_firing_from_friday_evening_then_monday():
    expression = ScheduleExpression.parse("cron(0 9 ? * MON-FRI *)")
    assert expression.weekdays == {2, 3, 4, 5, 6}
    friday_evening = utc(2026, 3, 6, 18, 0)
    assert friday_evening.strftime("%a") == "Fri"
    monday = expression.next_after(friday_evening)
    assert monday == utc(2026, 3, 9, 9, 0)
    assert monday.strftime("%a") == "Mon"


def test_given_sunday_by_name_when_matching_then_eventbridge_numbering_is_used():
    expression = ScheduleExpression.parse("cron(0 0 ? * SUN *)")
    assert expression.weekdays == {1}
    assert expression.matches(utc(2026, 3, 8, 0, 0))  # a Sunday
    assert not expression.matches(utc(2026, 3, 9, 0, 0))  # a Monday


@pytest.mark.parametrize(
    ("field_text", "minutes"),
    [
        ("0/15", {0, 15, 30, 45}),
        ("*/20", {0, 20, 40}),
        ("5/20", {5, 25, 45}),
        ("0,30", {0, 30}),
        ("10-12", {10, 11, 12}),
        ("10-40/10", {10, 20, 30, 40}),
        ("7", {7}),
    ],
)
def test_given_lists_ranges_and_steps_when_parsing_minutes_then_the_set(field_text, minutes):
    assert ScheduleExpression.parse(f"cron({field_text} * * * ? *)").minutes == minutes


def test_given_a_quarter_hour_step_when_asking_next_firings_then_every_15_minutes():
    expression = ScheduleExpression.parse("cron(0/15 * * * ? *)")
    moment = utc(2026, 3, 1, 23, 50)
    firings = []
    for _ in range(3):
        moment = expression.next_after(moment)
        firings.append(moment)
    assert firings == [utc(2026, 3, 2, 0, 0), utc(2026, 3, 2, 0, 15), utc(2026, 3, 2, 0, 30)]


def test_given_month_names_and_a_day_when_asking_the_next_firing_then_that_date():
    expression = ScheduleExpression.parse("cron(0 0 1 JAN,JUL ? *)")
    assert expression.months == {1, 7}
    assert expression.next_after(utc(2026, 3, 1)) == utc(2026, 7, 1)


def test_given_a_year_in_the_past_when_asking_the_next_firing_then_value_error():
    expression = ScheduleExpression.parse("cron(0 0 * * ? 2020)")
    with pytest.raises(ValueError, match="never fires"):
        expression.next_after(utc(2026, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "cron(5 16 * * ?)",  # five fields
        "cron(5 16 * * ? * *)",  # seven fields
        "cron()",
        "rate(5 weeks)",
        "rate(five minutes)",
        "every 5 minutes",
        "5 16 * * ? *",
        "cron(x 16 * * ? *)",
        "cron(0 9 ? * MON-FUNDAY *)",
    ],
)
def test_given_a_bad_expression_when_parsing_then_value_error(text):
    with pytest.raises(ValueError):  # noqa: PT011 - the message differs by cause
        ScheduleExpression.parse(text)


# ---- event shapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("on_member_stream", "OnMemberStream"),
        ("on_message", "OnMessage"),
        ("birthday_greetings", "BirthdayGreetings"),
        ("api", "Api"),
    ],
)
def test_given_a_function_name_when_building_the_logical_id_then_chalices_name(name, expected):
    assert logical_id(name) == expected


def test_given_a_firing_when_building_a_scheduled_event_then_eventbridges_shape():
    fired = datetime(2026, 3, 2, 0, 5, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    event = scheduled_event("birthday_greetings", fired, "cn-north-1")
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["version"] == "0"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["account"] == ACCOUNT
    assert event["time"] == "2026-03-01T16:05:00Z"  # in UTC, second precision
    assert event["region"] == "cn-north-1"
    assert event["resources"] == [f"arn:aws:events:cn-north-1:{ACCOUNT}:rule/birthday_greetings"]
    assert event["detail"] == {}
    uuid.UUID(event["id"])
    assert scheduled_event("birthday_greetings", fired, "cn-north-1")["id"] != event["id"]


STREAM_ARN = "arn:aws:dynamodb:cn-north-1:123456789012:table/members/stream/2026-03-01T00:00:00.000"


def boto3_stream_record(created: object) -> dict[str, Any]:
    """What dynamodbstreams.get_records returns (boto3 parses the time into a datetime)."""
    return {
        "eventID": "e-1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "cn-north-1",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {"pk": {"S": "MEMBER#m1"}, "sk": {"S": "MEMBER"}},
            "NewImage": {"pk": {"S": "MEMBER#m1"}, "kind": {"S": "member"}},
            "SequenceNumber": "000000000000000000001",
            "SizeBytes": 42,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_given_a_boto3_stream_record_when_converting_then_lambdas_record_with_epoch_time():
    created = utc(2026, 3, 1, 12, 0, 0)
    record = boto3_stream_record(created)
    event_record = stream_event_record(record, STREAM_ARN, "cn-north-1")
    assert event_record == {
        "eventID": "e-1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "cn-north-1",
        "dynamodb": {
            "ApproximateCreationDateTime": int(created.timestamp()),
            "Keys": {"pk": {"S": "MEMBER#m1"}, "sk": {"S": "MEMBER"}},
            "NewImage": {"pk": {"S": "MEMBER#m1"}, "kind": {"S": "member"}},
            "SequenceNumber": "000000000000000000001",
            "SizeBytes": 42,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": STREAM_ARN,
    }
    assert event_record["dynamodb"]["ApproximateCreationDateTime"] == 1772366400
    # the boto3 record itself is left as it was
    assert record["dynamodb"]["ApproximateCreationDateTime"] == created


def test_given_a_record_without_region_or_version_when_converting_then_defaults_are_used():
    record = boto3_stream_record(1772366400)
    del record["awsRegion"]
    del record["eventVersion"]
    event_record = stream_event_record(record, STREAM_ARN, "cn-northwest-1")
    assert event_record["awsRegion"] == "cn-northwest-1"
    assert event_record["eventVersion"] == "1.1"
    assert event_record["dynamodb"]["ApproximateCreationDateTime"] == 1772366400


def test_given_an_sqs_message_when_converting_then_lambdas_sqs_record_shape():
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": '{"a":1}',
        "MD5OfBody": "abc",
        "Attributes": {
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1772366400000",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "1772366400100",
        },
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
    }
    arn = "arn:aws:sqs:cn-north-1:123456789012:messages"
    assert sqs_event_record(message, arn, "cn-north-1") == {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": '{"a":1}',
        "attributes": {
            "ApproximateReceiveCount": "3",
            "SentTimestamp": "1772366400000",
            "SenderId": "AIDA",
            "ApproximateFirstReceiveTimestamp": "1772366400100",
        },
        "messageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
        "md5OfBody": "abc",
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "cn-north-1",
    }


def test_given_a_bare_sqs_message_when_converting_then_attributes_get_defaults():
    record = sqs_event_record(
        {"MessageId": "m-2", "ReceiptHandle": "rh-2", "Body": "x"}, "arn:q", "cn-north-1"
    )
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["SenderId"] == ACCOUNT
    assert attributes["SentTimestamp"].isdigit()
    assert attributes["ApproximateFirstReceiveTimestamp"].isdigit()
    assert record["messageAttributes"] == {}
    assert record["md5OfBody"] == ""


@pytest.mark.parametrize(
    ("response", "ids"),
    [
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": 7}]}, {"a", "7"}),
        ({"batchItemFailures": []}, set()),
        ({}, set()),
        (None, set()),
        ("ok", set()),
    ],
)
def test_given_a_handler_response_when_reading_failed_ids_then(response, ids):
    assert failed_ids(response) == ids


# ---- discover() against the real app and template ---------------------------------------


@pytest.fixture(scope="module")
def bindings():
    import app as app_module
    from local.infra import load_template

    return {b.function_name: b for b in discover(app_module, load_template())}, app_module


def test_given_the_app_and_template_when_discovering_then_the_stream_handler_reads_members(
    bindings,
):
    by_name, app_module = bindings
    stream = by_name["on_member_stream"]
    assert stream.kind == "stream"
    assert stream.source == "MembersTable"
    assert stream.on_failure == "MemberStreamDLQ"
    assert stream.batch_size == 100
    assert stream.max_retries == 3  # the template's 10, capped locally
    assert stream.handler is app_module.on_member_stream


def test_given_the_app_and_template_when_discovering_then_the_worker_reads_the_messages_queue(
    bindings,
):
    by_name, app_module = bindings
    queue = by_name["on_message"]
    assert queue.kind == "queue"
    assert queue.source == "MessagesQueue"
    assert queue.batch_size == 10
    assert queue.on_failure is None
    assert queue.handler is app_module.on_message


def test_given_the_app_and_template_when_discovering_then_birthday_greetings_runs_on_its_cron(
    bindings,
):
    by_name, app_module = bindings
    schedule = by_name["birthday_greetings"]
    assert schedule.kind == "schedule"
    assert schedule.source == "cron(5 16 * * ? *)"
    assert schedule.handler is app_module.birthday_greetings
    # and the expression is one the local scheduler understands: 00:05 in Shanghai
    assert ScheduleExpression.parse(schedule.source).next_after(utc(2026, 3, 1)) == utc(
        2026, 3, 1, 16, 5
    )


def test_given_the_app_when_discovering_then_every_event_source_is_bound_exactly_once(bindings):
    by_name, app_module = bindings
    assert sorted(by_name) == sorted(s.name for s in app_module.app.event_sources)
