"""Messages queue worker: consent, quiet hours and once-only delivery, then the sender."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain.clock import utc_now
from chalicelib.domain.messaging import (
    MessageSender,
    Recipient,
    in_quiet_hours,
    may_send,
    seconds_until_quiet_hours_end,
)
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

processor = BatchProcessor(event_type=EventType.SQS)
DELIVERY_GUARD_SECONDS = 35 * 24 * 3600
_sender: MessageSender | None = None


class Deferred(Exception):
    """Marketing during quiet hours: leave the message on the queue for later."""


def sender() -> MessageSender:
    global _sender
    if _sender is None:
        from chalicelib.dal.senders import LogSender

        _sender = LogSender()
    return _sender


def record_handler(record: SQSRecord) -> str:
    message = json.loads(record.body)
    svc = services()
    member = svc.members.get(str(message["member_id"]))
    if member is None:
        logger.info("message dropped: no such member", extra={"message_id": message["message_id"]})
        return "dropped"
    if not may_send(str(message["category"]), member.marketing_consent):
        metrics.add_metric(name="MessagesSkippedNoConsent", unit="Count", value=1)
        return "no_consent"
    now = utc_now()
    if message["category"] == "marketing" and in_quiet_hours(now):
        # Hide it until 08:00 program time; failing the record keeps it on the queue.
        svc.messages.hide(record.receipt_handle, seconds_until_quiet_hours_end(now))
        raise Deferred(message["message_id"])
    guard_key = f"MSG#{message['message_id']}"
    if not svc.guards.claim(guard_key, "delivery", DELIVERY_GUARD_SECONDS):
        return "duplicate"
    try:
        sender().send(
            Recipient(member.member_id, member.phone, member.name),
            str(message["template"]),
            dict(message.get("params") or {}),
        )
    except Exception:
        # Not sent: free the guard so the retry can send it.
        svc.guards.release(guard_key, "delivery")
        raise
    if message.get("after_send"):
        svc.members.mark(member.member_id, dict(message["after_send"]))
    metrics.add_metric(name="MessagesSent", unit="Count", value=1)
    return "sent"


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
