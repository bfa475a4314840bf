"""Members-table stream: the table is the outbox. A member item appearing publishes
MemberRegistered and queues the welcome message; each record is processed on its own and
a failing one is reported alone (partial batch failure), so the rest are not retried."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from chalicelib.dal.outbound import BusinessEvent, OutboundMessage
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    stream = record.dynamodb
    if stream is None or record.event_name != DynamoDBRecordEventName.INSERT:
        return
    image = stream.new_image or {}
    if image.get("kind") != "member":
        return
    member_id = str(image["member_id"])
    svc = services()
    # The stream record id goes into the event so consumers can drop a redelivery.
    svc.events.publish(
        [
            BusinessEvent(
                detail_type="MemberRegistered",
                detail={
                    "event_id": record.event_id,
                    "member_id": member_id,
                    "channel": image.get("channel"),
                    "store_id": image.get("store_id"),
                    "registered_at": image.get("created_at"),
                },
            )
        ]
    )
    svc.messages.send(
        OutboundMessage(
            message_id=f"welcome#{member_id}",
            member_id=member_id,
            template="welcome",
            category="service",
            params={"name": image.get("name")},
        )
    )
    metrics.add_metric(name="MembersRegistered", unit="Count", value=1)
    logger.info("member registered", extra={"member_id": member_id})


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
