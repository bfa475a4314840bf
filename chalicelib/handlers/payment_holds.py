"""The release job: points + cash redemptions whose payment window has ended.

Each run reads, per HOLD#<shard> partition of the Runtime table, only the holds due by
now (a key range: sort keys begin with the due time) and releases each redemption: its
points go back to the lots that paid (those past their date expire again at once), its
stock to its shards, its status becomes `expired` and the hold is deleted, all in one
commit conditional on the redemption still awaiting payment. Two runs at once, or a
payment arriving meanwhile, release nothing twice: the loser re-reads and finds the
redemption no longer awaiting payment.
"""

from __future__ import annotations

from typing import Any

from chalicelib.dal.mall import HOLD_SHARDS
from chalicelib.dal.rewards import delete_hold, holds_due
from chalicelib.domain import redemptions
from chalicelib.domain.clock import rfc3339
from chalicelib.errors import DomainError, NotFound
from chalicelib.handlers.payloads import event_time
from chalicelib.observability import logger, metrics
from chalicelib.wiring import points_context

# A run stops after this many releases; the next run (a minute later) goes on.
MAX_PER_RUN = 500


def run_release(event: dict[str, Any]) -> dict[str, Any]:
    ctx = points_context()
    # The event's time, or now if later: a late-delivered event must not miss holds.
    now = max(event_time(event), ctx.now)
    until = rfc3339(now)
    expired = skipped = failed = 0
    for shard in range(HOLD_SHARDS):
        for member_id, redemption_id, due_at in holds_due(shard, until, limit=MAX_PER_RUN):
            try:
                status = redemptions.release_hold(member_id, redemption_id, ctx)
            except NotFound:
                # No such redemption or member any more: the hold can never be released,
                # and left in place it would sit at the front of its shard's range.
                logger.warning(
                    "hold without its redemption", extra={"redemption_id": redemption_id}
                )
                delete_hold(member_id, redemption_id, due_at)
                skipped += 1
                continue
            except DomainError:
                # Contended past its retries: the next run tries again.
                logger.exception("hold release failed", extra={"redemption_id": redemption_id})
                metrics.add_metric(name="HoldReleasesFailed", unit="Count", value=1)
                failed += 1
                continue
            if status == "expired":
                expired += 1
            else:
                # Paid, cancelled or released meanwhile (its commit deleted the hold), or
                # a hold left without its redemption: drop it.
                delete_hold(member_id, redemption_id, due_at)
                skipped += 1
    logger.info("payment holds released", extra={"expired": expired, "skipped": skipped})
    return {
        "job": "release_payment_holds",
        "expired": expired,
        "skipped": skipped,
        "failed": failed,
    }
