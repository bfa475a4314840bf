"""Producers for the event bus and the message queue (boto3; endpoints from the standard
AWS_ENDPOINT_URL_EVENTBRIDGE / AWS_ENDPOINT_URL_SQS variables on the local stack)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SOURCE = "loyalty"
_PUT_EVENTS_BATCH = 10  # EventBridge accepts at most 10 entries per PutEvents call
_SEND_BATCH = 10  # and SQS at most 10 per SendMessageBatch
_MAX_VISIBILITY_SECONDS = 12 * 3600


class PublishError(RuntimeError):
    """Some entries were not accepted; the caller's batch item must be retried."""


@dataclass(frozen=True)
class BusinessEvent:
    detail_type: str  # e.g. "MemberRegistered"
    detail: dict[str, Any]
    resources: tuple[str, ...] = ()


class EventPublisher:
    def __init__(self, bus_name: str, region: str) -> None:
        self._bus = bus_name
        self._region = region
        self._client: Any = None

    def _events(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("events", region_name=self._region)
        return self._client

    def publish(self, events: list[BusinessEvent]) -> None:
        for start in range(0, len(events), _PUT_EVENTS_BATCH):
            chunk = events[start : start + _PUT_EVENTS_BATCH]
            response = self._events().put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": event.detail_type,
                        "Detail": json.dumps(event.detail, separators=(",", ":")),
                        "EventBusName": self._bus,
                        "Resources": list(event.resources),
                    }
                    for event in chunk
                ]
            )
            if response.get("FailedEntryCount", 0):
                raise PublishError(f"{response['FailedEntryCount']} events were not accepted")


@dataclass(frozen=True)
class OutboundMessage:
    """A message to a member. `message_id` is deterministic (e.g. welcome#<member>) so a
    redelivered request cannot send it twice: the sender claims it before sending."""

    message_id: str
    member_id: str
    template: str
    category: str  # "service" (always sent) or "marketing" (needs consent)
    params: dict[str, Any]
    # Member fields to set once sent (e.g. which expiry date was reminded).
    after_send: dict[str, str] | None = None


class TaskQueue:
    """Work items for queue workers (e.g. expiry tasks): JSON bodies, sent in batches."""

    def __init__(self, queue_url: str | None, region: str) -> None:
        self._url = queue_url
        self._region = region
        self._client: Any = None

    def send_many(self, tasks: list[dict[str, Any]]) -> None:
        if not tasks:
            return
        if not self._url:
            raise RuntimeError("the task queue URL is not configured")
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs", region_name=self._region)
        for start in range(0, len(tasks), _SEND_BATCH):
            chunk = tasks[start : start + _SEND_BATCH]
            response = self._client.send_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps(t, separators=(",", ":"))}
                    for i, t in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                raise PublishError(f"{len(response['Failed'])} tasks were not queued")


class MessageQueue:
    def __init__(self, queue_url: str | None, region: str) -> None:
        self._url = queue_url
        self._region = region
        self._client: Any = None

    def _sqs(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs", region_name=self._region)
        return self._client

    def _queue_url(self) -> str:
        if not self._url:
            raise RuntimeError("MESSAGES_QUEUE_URL is not configured")
        return self._url

    def send(self, message: OutboundMessage) -> None:
        self._sqs().send_message(QueueUrl=self._queue_url(), MessageBody=_body(message))

    def send_many(self, messages: list[OutboundMessage]) -> None:
        for start in range(0, len(messages), _SEND_BATCH):
            chunk = messages[start : start + _SEND_BATCH]
            response = self._sqs().send_message_batch(
                QueueUrl=self._queue_url(),
                Entries=[{"Id": str(i), "MessageBody": _body(m)} for i, m in enumerate(chunk)],
            )
            if response.get("Failed"):
                raise PublishError(f"{len(response['Failed'])} messages were not queued")

    def hide(self, receipt_handle: str, seconds: int) -> None:
        """Keep a received message invisible for a while (it comes back afterwards)."""
        self._sqs().change_message_visibility(
            QueueUrl=self._queue_url(),
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=min(seconds, _MAX_VISIBILITY_SECONDS),
        )


def _body(message: OutboundMessage) -> str:
    return json.dumps(
        {
            "message_id": message.message_id,
            "member_id": message.member_id,
            "template": message.template,
            "category": message.category,
            "params": message.params,
            **({"after_send": message.after_send} if message.after_send else {}),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )
