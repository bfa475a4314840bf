"""Messages queue worker: consent, quiet hours and once-only delivery, then the sender.

Once-only delivery is a powertools idempotency record per message id (Idempotency
table): claimed IN_PROGRESS before the send, COMPLETED after it, deleted if the send
raises. The in-progress claim expires at this invocation's deadline (the Lambda context's
remaining time), so a worker that times out or dies mid-send holds the message only
until then: SQS redelivers it (visibility timeout > function timeout) and the next worker
sends it. A redelivery of a sent message finds the COMPLETED record and sends nothing; a
duplicate arriving while another worker is sending fails its record (partial batch
failure) and comes back after the visibility timeout, to find the message sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.config import Settings
from chalicelib.domain.clock import utc_now
from chalicelib.domain.messaging import (
    MessageSender,
    Recipient,
    in_quiet_hours,
    may_send,
    seconds_until_quiet_hours_end,
)
from chalicelib.handlers.payloads import Message
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

# A batch whose every record failed (all deferred to 08:00, or all being sent by another
# worker) is reported as failed items like any other, not raised as a function error:
# the queue retries them either way, and only real errors count as function errors.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# How long a sent message's record is kept: far beyond any redelivery (SQS keeps a
# message 4 days) and any rerun of the job that queued it.
DELIVERY_RECORD_SECONDS = 35 * 24 * 3600
# Lambda always passes a context; a direct call without one (a script, `chalice invoke`
# tooling) claims for the function's default timeout, never for the record's lifetime.
DEFAULT_TIMEOUT_MS = 30_000
_sender: MessageSender | None = None


class Deferred(Exception):
    """Marketing during quiet hours: leave the message on the queue for later."""


def sender() -> MessageSender:
    global _sender
    if _sender is None:
        from chalicelib.dal.senders import LogSender

        _sender = LogSender()
    return _sender


def send_message(*, message: dict[str, Any], recipient: Recipient) -> str:
    """The send itself; made idempotent on `message["message_id"]` by `_delivery()`."""
    sender().send(recipient, str(message["template"]), dict(message.get("params") or {}))
    return "sent"


@dataclass(frozen=True)
class _Delivery:
    settings: Settings
    config: Any  # IdempotencyConfig
    store: Any  # DynamoDBPersistenceLayer
    send_once: Any  # send_message wrapped by powertools' idempotent_function


_delivery_cache: _Delivery | None = None


def _delivery() -> _Delivery:
    """Built on first use and again when the settings change (tests switch stages)."""
    global _delivery_cache
    settings = services().settings
    if _delivery_cache is None or _delivery_cache.settings is not settings:
        from aws_lambda_powertools.utilities.idempotency import (
            IdempotencyConfig,
            idempotent_function,
        )

        from chalicelib.dal.deliveries import delivery_store

        config = IdempotencyConfig(
            event_key_jmespath="message_id",
            raise_on_no_idempotency_key=True,  # never send a message that cannot be deduped
            expires_after_seconds=DELIVERY_RECORD_SECONDS,
            hash_function="sha256",
            # A COMPLETED record answers instead of the send: say so to the caller.
            response_hook=lambda response, record: "duplicate",
        )
        store = delivery_store(settings)
        send_once = idempotent_function(
            send_message,
            data_keyword_argument="message",
            persistence_store=store,
            config=config,
            key_prefix="message",
        )
        _delivery_cache = _Delivery(settings, config, store, send_once)
    return _delivery_cache


def delivered(message_id: str) -> bool:
    """Whether the message with this id was sent (its record is COMPLETED)."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyItemNotFoundError,
    )
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import (
        STATUS_CONSTANTS,
    )

    delivery = _delivery()
    delivery.store.configure(delivery.config, key_prefix="message")
    try:
        record = delivery.store.get_record(data={"message_id": message_id})
    except IdempotencyItemNotFoundError:
        return False
    return bool(record.status == STATUS_CONSTANTS["COMPLETED"])


def record_handler(record: SQSRecord) -> str:
    """A body that is not a message (malformed JSON, a field missing) fails its record."""
    message = Message.model_validate_json(record.body)
    svc = services()
    # Read at send time, consistently: consent withdrawn a moment ago stops a message
    # queued before it, and an erased member (read as none) gets nothing.
    member = svc.members.get(message.member_id, consistent=True)
    if member is None:
        logger.info("message dropped: no such member", extra={"message_id": message.message_id})
        return "dropped"
    if not may_send(message.category, member.marketing_consent):
        metrics.add_metric(name="MessagesSkippedNoConsent", unit="Count", value=1)
        return "no_consent"
    now = utc_now()
    if message.category == "marketing" and in_quiet_hours(now):
        # Hide it until 08:00 program time; failing the record keeps it on the queue.
        svc.messages.hide(record.receipt_handle, seconds_until_quiet_hours_end(now))
        raise Deferred(message.message_id)
    # Raises (the record fails and is retried) if the send fails, or if another worker
    # is sending this message right now (IdempotencyAlreadyInProgressError).
    outcome = str(
        _delivery().send_once(
            message=message.body(),
            recipient=Recipient(member.member_id, member.phone, member.name),
        )
    )
    if message.after_send:
        # Also on a duplicate: setting the field again is harmless, and it repairs a
        # first attempt that sent but failed here.
        svc.members.mark(member.member_id, dict(message.after_send))
    if outcome == "sent":
        metrics.add_metric(name="MessagesSent", unit="Count", value=1)
    return outcome


class _DefaultDeadline:
    def __init__(self) -> None:
        import time

        self._deadline = time.monotonic() + DEFAULT_TIMEOUT_MS / 1000

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._deadline - time.monotonic()) * 1000))


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The in-progress claims of this invocation expire at its deadline.
    _delivery().config.register_lambda_context(context or _DefaultDeadline())
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
