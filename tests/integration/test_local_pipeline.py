"""The local event pipeline on DynamoDB Local streams and a local SQS endpoint: retries,
partial batch failures and DLQs behave as Lambda's event source mappings do."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local import ddb
from local.infra import create_queues
from local.pipeline import Binding, EventPipeline
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = ddb.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def local_aws(ddb_local, sqs_endpoint, monkeypatch) -> dict[str, Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", sqs_endpoint)
    region = "cn-north-1"
    sqs = boto3.client("sqs", region_name=region)
    queues = create_queues(sqs, f"it-{uuid.uuid4().hex[:8]}", visibility_timeout=1)
    return {
        "tables": ddb_local,
        "queues": queues,
        "sqs": sqs,
        "dynamodb": boto3.client("dynamodb", region_name=region),
        "streams": boto3.client("dynamodbstreams", region_name=region),
        "region": region,
    }


def run_pipeline(local_aws: dict[str, Any], bindings: list[Binding]) -> EventPipeline:
    pipeline = EventPipeline(
        bindings=bindings,
        dynamodb=local_aws["dynamodb"],
        streams=local_aws["streams"],
        sqs=local_aws["sqs"],
        table_names=local_aws["tables"],
        queue_urls=local_aws["queues"],
        region=local_aws["region"],
        poll_interval=0.05,
        log=lambda _line: None,
    )
    pipeline.start()
    return pipeline


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def put_marker(local_aws: dict[str, Any], run: str, name: str) -> None:
    local_aws["dynamodb"].put_item(
        TableName=local_aws["tables"]["MembersTable"],
        Item={
            "pk": {"S": f"TEST#{run}#{name}"},
            "sk": {"S": "T"},
            "run": {"S": run},
            "name": {"S": name},
        },
    )


def test_given_a_poison_stream_record_then_it_goes_to_the_dlq_and_later_records_still_arrive(
    local_aws,
):
    run = uuid.uuid4().hex
    seen: list[str] = []
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            image = record["dynamodb"].get("NewImage", {})
            if image.get("run", {}).get("S") != run:
                continue
            name = image["name"]["S"]
            with lock:
                attempts[name] = attempts.get(name, 0) + 1
                if name == "poison":
                    failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
                    break  # Lambda stops at the first failure; later records come again
                seen.append(name)
        return {"batchItemFailures": failures}

    binding = Binding(
        "stream",
        "probe",
        handler,
        "MembersTable",
        batch_size=10,
        max_retries=2,
        on_failure="MemberStreamDLQ",
    )
    pipeline = run_pipeline(local_aws, [binding])
    try:
        for name in ("first", "poison", "after-1", "after-2"):
            put_marker(local_aws, run, name)
        assert wait_for(lambda: {"first", "after-1", "after-2"} <= set(seen))
    finally:
        pipeline.stop()

    assert seen.count("first") == 1  # a retry starts at the failed record, not before it
    assert attempts["poison"] == 3  # first try + max_retries
    dead = drain(local_aws["sqs"], local_aws["queues"]["MemberStreamDLQ"])
    assert len(dead) == 1
    info = dead[0]["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert dead[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_given_a_batch_with_one_failing_message_then_only_it_is_retried_and_then_dead_lettered(
    local_aws,
):
    deliveries: dict[str, int] = {}
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            with lock:
                deliveries[body["name"]] = deliveries.get(body["name"], 0) + 1
            if body["name"] == "poison":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    binding = Binding("queue", "probe_queue", handler, "MessagesQueue", batch_size=10)
    sqs, url = local_aws["sqs"], local_aws["queues"]["MessagesQueue"]
    for name in ("a", "poison", "b"):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"name": name}))
    pipeline = run_pipeline(local_aws, [binding])
    try:
        dlq = local_aws["queues"]["MessagesDLQ"]
        dead: list[dict[str, Any]] = []
        assert wait_for(lambda: bool(dead.extend(drain(sqs, dlq)) or dead), seconds=60)
    finally:
        pipeline.stop()

    assert deliveries["a"] == 1
    assert deliveries["b"] == 1
    assert deliveries["poison"] == 5  # the template's maxReceiveCount
    assert dead == [{"name": "poison"}]


def test_given_a_schedule_binding_when_run_on_demand_then_it_gets_a_scheduled_event(local_aws):
    received: list[dict[str, Any]] = []
    binding = Binding(
        "schedule",
        "nightly",
        lambda event, ctx: received.append(event) or {"ok": 1},
        "cron(0 3 * * ? *)",
    )
    pipeline = EventPipeline(
        bindings=[binding],
        dynamodb=None,
        streams=None,
        sqs=None,
        table_names={},
        queue_urls={},
        region="cn-north-1",
    )
    assert pipeline.run_schedule("nightly") == {"ok": 1}
    assert received[0]["detail-type"] == "Scheduled Event"
    assert received[0]["source"] == "aws.events"
