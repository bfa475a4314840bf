"""Points the program grants by itself, shared by the members stream (sign-up bonus,
referral reward) and the birthday greetings."""

from __future__ import annotations

from chalicelib.domain import points
from chalicelib.errors import BusinessRuleViolation, InvalidInput, NotFound
from chalicelib.observability import logger
from chalicelib.wiring import points_context


def grant_activity(
    member_id: str, activity: str, activity_id: str, reference: str | None = None
) -> bool:
    """Through the same path as member activities but in the program's own key space: the
    activity id makes a redelivered record or a rerun job pay nothing twice, and no id a
    member chose can collide with it. False when a limit or rule said no."""
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
