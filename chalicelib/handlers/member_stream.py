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
from chalicelib.wiring import points_context, services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    stream = record.dynamodb
    if stream is None or record.event_name != DynamoDBRecordEventName.INSERT:
        return
    image = stream.new_image or {}
    kind = image.get("kind")
    if kind == "member":
        _member_registered(record, image)
        _grant_from_stream(str(image["member_id"]), "signup", "signup")
    elif kind == "ledger":
        _points_changed(record, image)
    elif kind == "purchase":
        _purchase_recorded(image)
        _count_for_tier(image)
    elif kind == "refund":
        _count_for_tier(image)
    elif kind == "tier_change":
        _tier_changed(record, image)


def grant_activity(
    member_id: str, activity: str, activity_id: str, reference: str | None = None
) -> bool:
    """Points the program grants by itself (sign-up bonus, referral reward, birthday),
    through the same path as member activities but in the program's own key space: the
    activity id makes a redelivered record or a rerun job pay nothing twice, and no id a
    member chose can collide with it. False when a limit or rule said no."""
    from chalicelib.domain import points
    from chalicelib.errors import BusinessRuleViolation, InvalidInput, NotFound

    try:
        points.record_activity(
            points.Activity(
                member_id=member_id,
                activity_id=activity_id,
                type=activity,
                request_hash=points.request_hash({"activity": activity, "id": activity_id}),
                reference=reference,
                granted=True,
            ),
            points_context(),
        )
    except (BusinessRuleViolation, NotFound, InvalidInput) as exc:
        # over a limit, the rule removed, or the member erased: nothing to pay
        logger.info(
            "points not granted",
            extra={"member_id": member_id, "activity": activity, "code": exc.code},
        )
        return False
    return True


def _grant_from_stream(
    member_id: str, activity: str, activity_id: str, reference: str | None = None
) -> None:
    """A grant that can never succeed (its id taken by another request) is reported, not
    raised: a failing record is retried and blocks its shard, so every member behind it
    would wait for one member's grant. Transient failures (CONTENDED, throttling) still
    raise, so the record is retried and the grant is not lost."""
    from chalicelib.errors import Conflict

    try:
        grant_activity(member_id, activity, activity_id, reference)
    except Conflict as exc:
        logger.error(
            "points grant refused",
            extra={
                "member_id": member_id,
                "activity": activity,
                "activity_id": activity_id,
                "code": exc.code,
            },
        )
        metrics.add_metric(name="GrantsRefused", unit="Count", value=1)


def _count_for_tier(image: dict[str, Any]) -> None:
    """Qualifying spend for tiers, kept per month on the member; an upgrade happens as
    soon as a purchase crosses a threshold (seconds after it was accepted)."""
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.records import PurchaseRecord, RefundRecord
    from chalicelib.domain.tiering import apply_spend

    data = image.get("data") or {}
    record = (PurchaseRecord if image["kind"] == "purchase" else RefundRecord).from_data(data)
    if not record.month:
        return
    svc = services()
    change = apply_spend(
        svc.tiers,
        svc.program.tiers(),
        record_pk=str(image["pk"]),
        record_sk=str(image["sk"]),
        member_id=str(image["member_id"]),
        month=record.month,
        delta=record.qualifying_delta,
        now=utc_now(),
    )
    if change is not None:
        metrics.add_metric(name="TierUpgrades", unit="Count", value=1)
        logger.info("tier upgraded", extra={"member_id": change.member_id, "to": change.to_code})


def _tier_changed(record: DynamoDBRecord, image: dict[str, Any]) -> None:
    services().events.publish(
        [
            BusinessEvent(
                detail_type="TierChanged",
                detail={
                    "event_id": record.event_id,
                    "member_id": image["member_id"],
                    "from": image["from_tier"],
                    "to": image["to_tier"],
                    "reason": image["reason"],
                    "qualifying_spend": int(image["qualifying_spend"]),
                    "at": image["created_at"],
                },
            )
        ]
    )


def _points_changed(record: DynamoDBRecord, image: dict[str, Any]) -> None:
    """PointsEarned / PointsRedeemed / PointsExpired / PointsAdjusted / PointsReversed."""
    entry_type = str(image["type"])
    services().events.publish(
        [
            BusinessEvent(
                detail_type="Points" + EVENT_NAMES.get(entry_type, entry_type.title()),
                detail={
                    "event_id": record.event_id,
                    "member_id": image["member_id"],
                    "entry_id": image["entry_id"],
                    "points": int(image["points"]),
                    "balance_after": int(image["balance_after"]),
                    "source": image.get("source"),
                    "source_id": image.get("source_id"),
                    "store_id": image.get("store_id"),
                    "created_at": image.get("created_at"),
                },
            )
        ]
    )


EVENT_NAMES = {
    "earn": "Earned",
    "redeem": "Redeemed",
    "expire": "Expired",
    "adjust": "Adjusted",
    "reverse": "Reversed",
}


def _purchase_recorded(image: dict[str, Any]) -> None:
    """A referee's first purchase earns the referrer their reward (once per referee)."""
    from chalicelib.domain.records import PurchaseRecord

    purchase = PurchaseRecord.from_data(image.get("data") or {})
    referrer = purchase.referred_by
    if purchase.first_purchase and referrer:
        referee = str(image["member_id"])
        _grant_from_stream(str(referrer), "referral_reward", f"referral-reward-{referee}", referee)


def _member_registered(record: DynamoDBRecord, image: dict[str, Any]) -> None:
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
