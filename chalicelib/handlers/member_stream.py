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
from chalicelib.domain.program import CouponRules
from chalicelib.domain.records import PurchaseRecord, RefundRecord
from chalicelib.handlers.grants import grant_activity
from chalicelib.handlers.payloads import LedgerImage, MemberImage, TierChangeImage
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    """An image that does not fit its kind's model fails its record (retried, then the
    stream's dead-letter queue), like any other error."""
    stream = record.dynamodb
    if stream is None:
        return
    if record.event_name == DynamoDBRecordEventName.MODIFY:
        _erased(record, stream.old_image or {}, stream.new_image or {})
        return
    if record.event_name != DynamoDBRecordEventName.INSERT:
        return
    image = stream.new_image or {}
    kind = image.get("kind")
    if kind == "member":
        member = MemberImage.model_validate(image)
        _member_registered(record, member)
        if member.first_registration is not False:
            # Once per phone ever: a phone registered before (then erased) registers
            # without its claim (chalicelib/domain/members.register).
            _grant_from_stream(member.member_id, "signup", "signup")
            # The welcome coupons too: erasing and registering again must not farm them.
            _rule_coupons(member.member_id, "welcome", _coupon_rules().welcome)
    elif kind == "ledger":
        _points_changed(record, LedgerImage.model_validate(image))
    elif kind in ("purchase", "refund"):
        data = image.get("data") or {}
        if kind == "purchase":
            purchase = PurchaseRecord.from_data(data)
            _purchase_recorded(image, purchase)
            _count_for_tier(image, purchase)
            if purchase.first_purchase:
                member_id = str(image["member_id"])
                _rule_coupons(member_id, "first-purchase", _coupon_rules().first_purchase)
        else:
            _count_for_tier(image, RefundRecord.from_data(data))
    elif kind == "tier_change":
        change = TierChangeImage.model_validate(image)
        _tier_changed(record, change)
        _tier_coupons(str(image["sk"]), change)


def _erased(record: DynamoDBRecord, old: dict[str, Any], new: dict[str, Any]) -> None:
    """A member erased (PIPL): `MemberErased` names the member id only, so consumers of
    the bus drop what they copied of the person. Nothing here re-creates personal data:
    the new image of an erased member holds none, and no other handler acts on a MODIFY."""
    if new.get("kind") != "member" or not new.get("erased_at") or old.get("erased_at"):
        return
    svc = services()
    svc.events.publish(
        [
            BusinessEvent(
                detail_type="MemberErased",
                detail={
                    "event_id": record.event_id,
                    "member_id": str(new["member_id"]),
                    "erased_at": str(new["erased_at"]),
                },
            )
        ]
    )
    metrics.add_metric(name="MembersErased", unit="Count", value=1)


def _coupon_rules() -> CouponRules:
    return services().program.config().coupon_rules


def _rule_coupons(member_id: str, occasion: str, template_ids: tuple[str, ...]) -> None:
    if template_ids:
        from chalicelib.handlers.rule_coupons import issue_rule_coupons

        issue_rule_coupons(member_id, occasion, template_ids)


def _tier_coupons(history_sk: str, change: TierChangeImage) -> None:
    """A move up (an upgrade, or a ladder applied) issues the new tier's coupons, once per
    move: the occasion is the tier history entry, so a member who drops and qualifies
    again is welcomed to the tier again. A jump over tiers issues the new tier's only."""
    templates = _coupon_rules().tier_upgrade.get(change.to_tier, ())
    if not templates:
        return
    ranks = {t.code: t.rank for t in services().program.tiers()}
    if ranks.get(change.to_tier, -1) <= ranks.get(change.from_tier, -1):
        return
    entry = history_sk.removeprefix("TIER#")
    _rule_coupons(change.member_id, f"tier-{entry}", templates)


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


def _count_for_tier(image: dict[str, Any], record: PurchaseRecord | RefundRecord) -> None:
    """Qualifying spend for tiers, kept per month on the member; an upgrade happens as
    soon as a purchase crosses a threshold (seconds after it was accepted)."""
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.tiering import apply_spend

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


def _tier_changed(record: DynamoDBRecord, image: TierChangeImage) -> None:
    services().events.publish(
        [
            BusinessEvent(
                detail_type="TierChanged",
                detail={
                    "event_id": record.event_id,
                    "member_id": image.member_id,
                    "from": image.from_tier,
                    "to": image.to_tier,
                    "reason": image.reason,
                    "qualifying_spend": image.qualifying_spend,
                    "at": image.created_at,
                },
            )
        ]
    )


def _points_changed(record: DynamoDBRecord, image: LedgerImage) -> None:
    """PointsEarned / PointsRedeemed / PointsExpired / PointsAdjusted / PointsReversed."""
    services().events.publish(
        [
            BusinessEvent(
                detail_type="Points" + EVENT_NAMES.get(image.type, image.type.title()),
                detail={
                    "event_id": record.event_id,
                    "member_id": image.member_id,
                    "entry_id": image.entry_id,
                    "points": image.points,
                    "balance_after": image.balance_after,
                    "source": image.source,
                    "source_id": image.source_id,
                    "store_id": image.store_id,
                    "created_at": image.created_at,
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


def _purchase_recorded(image: dict[str, Any], purchase: PurchaseRecord) -> None:
    """A referee's first purchase earns the referrer their reward (once per referee)."""
    referrer = purchase.referred_by
    if purchase.first_purchase and referrer:
        referee = str(image["member_id"])
        _grant_from_stream(str(referrer), "referral_reward", f"referral-reward-{referee}", referee)


def _member_registered(record: DynamoDBRecord, image: MemberImage) -> None:
    member_id = image.member_id
    svc = services()
    # The stream record id goes into the event so consumers can drop a redelivery.
    svc.events.publish(
        [
            BusinessEvent(
                detail_type="MemberRegistered",
                detail={
                    "event_id": record.event_id,
                    "member_id": member_id,
                    "channel": image.channel,
                    "store_id": image.store_id,
                    "registered_at": image.created_at,
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
            # No personal data in the queue: the sender reads the name when it sends.
            params={},
        )
    )
    metrics.add_metric(name="MembersRegistered", unit="Count", value=1)
    logger.info("member registered", extra={"member_id": member_id})


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
