"""The local event pipeline: what Lambda's event source mappings and EventBridge do in
AWS, done here for `chalice local` (which serves HTTP only).

- Streams: reads every shard of each stream a function consumes (found through the
  template: `Events.<Fn>DynamodbEventSource.Properties.Stream` = Fn::GetAtt of a table),
  with real shard iterators and records, and calls the function with Lambda's event
  shape. A batch item failure is retried from that record on (like Lambda with
  ReportBatchItemFailures); after `max_retries` the failed range goes to the template's
  on-failure destination queue with Lambda's metadata shape, and reading moves on.
- Queues: receives up to the function's batch size, calls it with SQS-shaped records,
  deletes what succeeded, and leaves the reported failures to become visible again;
  the queue's redrive policy moves a message to its DLQ after maxReceiveCount. (Local
  queues get a short visibility timeout, so a retry is seen in seconds.)
- Schedules: runs each `@app.schedule` on its cron/rate expression (UTC, as
  EventBridge does) with a Scheduled Event, and on demand (`run_schedule`).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from local.cron import ScheduleExpression

ACCOUNT = "123456789012"


def logical_id(function_name: str) -> str:
    """Chalice's resource name for a function: on_member_stream -> OnMemberStream."""
    return "".join(part[:1].upper() + part[1:] for part in function_name.split("_"))


class LambdaContext:
    """What Lambda passes as `context`; powertools reads these attributes."""

    def __init__(self, function_name: str, timeout_s: int = 30, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:local:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Binding:
    kind: str  # "stream" | "queue" | "schedule"
    function_name: str
    handler: Callable[[dict[str, Any], Any], Any]
    source: str  # table logical id, queue logical id, or schedule expression
    batch_size: int = 10
    max_retries: int = 3
    on_failure: str | None = None  # queue logical id for a stream's failed batches


@dataclass
class Stats:
    invocations: int = 0
    records: int = 0
    failures: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)


def discover(app_module: Any, template: dict[str, Any]) -> list[Binding]:
    """Bind each event handler of the Chalice app to its source, as deployed. The module
    attribute of a decorated function is Chalice's event-source wrapper: called with
    (event, context) exactly as the Lambda runtime calls it."""
    resources = template["Resources"]
    bindings: list[Binding] = []
    for source in app_module.app.event_sources:
        name = source.name
        handler = getattr(app_module, name)
        events = resources.get(logical_id(name), {}).get("Properties", {}).get("Events", {})
        kind = type(source).__name__
        if kind == "DynamoDBEventConfig":
            props = events[f"{logical_id(name)}DynamodbEventSource"]["Properties"]
            destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            bindings.append(
                Binding(
                    "stream",
                    name,
                    handler,
                    props["Stream"]["Fn::GetAtt"][0],
                    batch_size=source.batch_size,
                    # Lambda retries up to MaximumRetryAttempts; locally at most 3, so a
                    # poison record reaches the DLQ in seconds rather than minutes.
                    max_retries=min(int(props.get("MaximumRetryAttempts", 3)), 3),
                    on_failure=destination["Fn::GetAtt"][0] if destination else None,
                )
            )
        elif kind == "SQSEventConfig":
            props = events[f"{logical_id(name)}SqsEventSource"]["Properties"]
            bindings.append(
                Binding(
                    "queue",
                    name,
                    handler,
                    props["Queue"]["Fn::GetAtt"][0],
                    batch_size=source.batch_size,
                )
            )
        elif kind == "ScheduledEventConfig":
            expression = source.schedule_expression
            if not isinstance(expression, str):
                expression = expression.to_string()
            bindings.append(Binding("schedule", name, handler, expression))
    return bindings


def scheduled_event(name: str, fired_at: datetime, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": fired_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT}:rule/{name}"],
        "detail": {},
    }


def stream_event_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """boto3's get_records record -> the record Lambda delivers (times as epoch numbers)."""
    ddb = dict(record["dynamodb"])
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        ddb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }


def sqs_event_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", ACCOUNT),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        },
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(response: Any) -> set[str]:
    if not isinstance(response, dict):
        return set()
    return {str(item["itemIdentifier"]) for item in response.get("batchItemFailures", [])}


class EventPipeline:
    def __init__(
        self,
        *,
        bindings: list[Binding],
        dynamodb: Any,
        streams: Any,
        sqs: Any,
        table_names: dict[str, str],
        queue_urls: dict[str, str],
        region: str,
        checkpoint_file: Path | None = None,
        poll_interval: float = 0.25,
        log: Callable[[str], None] = print,
    ) -> None:
        self.bindings = bindings
        self._ddb = dynamodb
        self._streams = streams
        self._sqs = sqs
        self._tables = table_names
        self._queues = queue_urls
        self._region = region
        self._checkpoint_file = checkpoint_file
        self._checkpoints: dict[str, str] = self._load_checkpoints()
        self._poll = poll_interval
        self._log = log
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        self.stats: dict[str, Stats] = {b.function_name: Stats() for b in bindings}

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        for binding in self.bindings:
            target = {
                "stream": self._stream_loop,
                "queue": self._queue_loop,
                "schedule": self._schedule_loop,
            }[binding.kind]
            thread = threading.Thread(
                target=self._guarded,
                args=(target, binding),
                name=binding.function_name,
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _guarded(self, loop: Callable[[Binding], None], binding: Binding) -> None:
        while not self._stop.is_set():
            try:
                loop(binding)
                return
            except Exception:  # a poller must outlive a bad moment of the endpoint
                self._record_error(binding, traceback.format_exc())
                self._stop.wait(1.0)

    def _record_error(self, binding: Binding, text: str) -> None:
        with self._lock:
            stats = self.stats[binding.function_name]
            stats.errors = [*stats.errors[-9:], text]
        self._log(f"[pipeline] {binding.function_name}: {text.strip().splitlines()[-1]}")

    # ---- invoking -------------------------------------------------------------------

    def invoke(self, binding: Binding, event: dict[str, Any]) -> Any:
        context = LambdaContext(binding.function_name)
        with self._lock:
            self.stats[binding.function_name].invocations += 1
        # One invocation at a time: each Lambda has its process to itself, and handler
        # modules (batch processors, the logger's keys) rely on that.
        with self._invoke_lock:
            return binding.handler(event, context)

    def run_schedule(self, name: str, fired_at: datetime | None = None) -> Any:
        binding = next(b for b in self.bindings if b.kind == "schedule" and b.function_name == name)
        moment = fired_at or datetime.now(UTC)
        return self.invoke(binding, scheduled_event(name, moment, self._region))

    # ---- streams --------------------------------------------------------------------

    def _stream_arn(self, table_logical_id: str) -> str:
        description = self._ddb.describe_table(TableName=self._tables[table_logical_id])
        return str(description["Table"]["LatestStreamArn"])

    def _stream_loop(self, binding: Binding) -> None:
        stream_arn = self._stream_arn(binding.source)
        iterators: dict[str, str | None] = {}
        finished: set[str] = set()
        while not self._stop.is_set():
            shards = self._streams.describe_stream(StreamArn=stream_arn)["StreamDescription"][
                "Shards"
            ]
            for shard in shards:
                shard_id = shard["ShardId"]
                if shard_id in finished or shard_id in iterators:
                    continue
                parent = shard.get("ParentShardId")
                if (
                    parent
                    and parent not in finished
                    and any(s["ShardId"] == parent for s in shards)
                ):
                    continue  # per-item order: a child waits until its parent is drained
                iterators[shard_id] = self._shard_iterator(stream_arn, shard_id)
            busy = False
            for shard_id, iterator in list(iterators.items()):
                if iterator is None:
                    finished.add(shard_id)
                    del iterators[shard_id]
                    continue
                try:
                    page = self._streams.get_records(
                        ShardIterator=iterator, Limit=binding.batch_size
                    )
                except (
                    self._streams.exceptions.TrimmedDataAccessException,
                    self._streams.exceptions.ExpiredIteratorException,
                ):
                    # Stale iterator: take a fresh one from the checkpoint next round.
                    del iterators[shard_id]
                    continue
                records = page.get("Records", [])
                if records:
                    busy = True
                    self._deliver_stream_batch(binding, stream_arn, shard_id, records)
                iterators[shard_id] = page.get("NextShardIterator")
                if records:
                    # Re-read from the checkpoint: a failed record is delivered again.
                    iterators[shard_id] = self._shard_iterator(stream_arn, shard_id)
            if not busy:
                self._stop.wait(self._poll)

    def _shard_iterator(self, stream_arn: str, shard_id: str) -> str | None:
        key = f"{stream_arn}|{shard_id}"
        checkpoint = self._checkpoints.get(key)
        kwargs: dict[str, Any] = {"StreamArn": stream_arn, "ShardId": shard_id}
        if checkpoint:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return self._streams.get_shard_iterator(**kwargs).get("ShardIterator")  # type: ignore[no-any-return]

    def _deliver_stream_batch(
        self, binding: Binding, stream_arn: str, shard_id: str, records: list[dict[str, Any]]
    ) -> None:
        key = f"{stream_arn}|{shard_id}"
        pending = [stream_event_record(r, stream_arn, self._region) for r in records]
        attempt = 0
        while pending and not self._stop.is_set():
            try:
                response = self.invoke(binding, {"Records": pending})
                failed = failed_ids(response)
            except Exception:
                self._record_error(binding, traceback.format_exc())
                failed = {pending[0]["dynamodb"]["SequenceNumber"]}
            with self._lock:
                self.stats[binding.function_name].records += len(pending)
            if not failed:
                self._checkpoint(key, pending[-1]["dynamodb"]["SequenceNumber"])
                return
            # Lambda semantics: everything before the first failure is done; retry from it.
            first = next(
                i for i, r in enumerate(pending) if r["dynamodb"]["SequenceNumber"] in failed
            )
            if first > 0:
                self._checkpoint(key, pending[first - 1]["dynamodb"]["SequenceNumber"])
            pending = pending[first:]
            attempt += 1
            with self._lock:
                self.stats[binding.function_name].failures += 1
            if attempt > binding.max_retries:
                self._stream_dead_letter(binding, stream_arn, shard_id, pending[:1])
                self._checkpoint(key, pending[0]["dynamodb"]["SequenceNumber"])
                pending = pending[1:]
                attempt = 0
            else:
                self._stop.wait(min(0.2 * 2**attempt, 2.0))

    def _stream_dead_letter(
        self, binding: Binding, stream_arn: str, shard_id: str, records: list[dict[str, Any]]
    ) -> None:
        """What Lambda sends to a stream's on-failure destination: where, not the data."""
        if binding.on_failure is None:
            return
        body = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": (
                    f"arn:aws:lambda:{self._region}:{ACCOUNT}:function:{binding.function_name}"
                ),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": binding.max_retries + 1,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": records[0]["dynamodb"].get(
                    "ApproximateCreationDateTime"
                ),
                "approximateArrivalOfLastRecord": records[-1]["dynamodb"].get(
                    "ApproximateCreationDateTime"
                ),
                "batchSize": len(records),
                "streamArn": stream_arn,
            },
        }
        self._sqs.send_message(
            QueueUrl=self._queues[binding.on_failure], MessageBody=json.dumps(body)
        )
        with self._lock:
            self.stats[binding.function_name].dead_lettered += len(records)
        self._log(f"[pipeline] {binding.function_name}: record sent to {binding.on_failure}")

    def _checkpoint(self, key: str, sequence_number: str) -> None:
        with self._lock:
            self._checkpoints[key] = sequence_number
            if self._checkpoint_file is not None:
                self._checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self._checkpoint_file.with_suffix(".tmp")
                tmp.write_text(json.dumps(self._checkpoints))
                tmp.replace(self._checkpoint_file)

    def _load_checkpoints(self) -> dict[str, str]:
        if self._checkpoint_file is None or not self._checkpoint_file.exists():
            return {}
        return dict(json.loads(self._checkpoint_file.read_text()))

    # ---- queues ---------------------------------------------------------------------

    def _queue_loop(self, binding: Binding) -> None:
        url = self._queues[binding.source]
        arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        while not self._stop.is_set():
            received = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(binding.batch_size, 10),
                WaitTimeSeconds=1,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                continue
            records = [sqs_event_record(m, arn, self._region) for m in received]
            try:
                failed = failed_ids(self.invoke(binding, {"Records": records}))
            except Exception:
                # A raised error fails the whole batch, as in Lambda.
                self._record_error(binding, traceback.format_exc())
                failed = {r["messageId"] for r in records}
            with self._lock:
                self.stats[binding.function_name].records += len(records)
                self.stats[binding.function_name].failures += len(failed)
            done = [r for r in records if r["messageId"] not in failed]
            if done:
                self._sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
                        for i, r in enumerate(done)
                    ],
                )
            # Failed messages stay: they become visible again after the queue's
            # visibility timeout (or whatever the handler set), and the redrive policy
            # moves one to the DLQ after maxReceiveCount receives, exactly as in AWS.

    # ---- schedules ------------------------------------------------------------------

    def _schedule_loop(self, binding: Binding) -> None:
        expression = ScheduleExpression.parse(binding.source)
        next_fire = expression.next_after(datetime.now(UTC))
        while not self._stop.is_set():
            now = datetime.now(UTC)
            if now >= next_fire:
                self._log(f"[pipeline] schedule {binding.function_name} fired ({binding.source})")
                try:
                    self.invoke(
                        binding, scheduled_event(binding.function_name, next_fire, self._region)
                    )
                except Exception:
                    self._record_error(binding, traceback.format_exc())
                next_fire = expression.next_after(next_fire + timedelta(seconds=1))
            self._stop.wait(min(1.0, max(0.0, (next_fire - now).total_seconds())))
