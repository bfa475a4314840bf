"""Points expiry (daily schedule -> SQS tasks -> workers) and expiry reminders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chalicelib.dal.ledger import expiry_shard_key
from chalicelib.dal.outbound import OutboundMessage
from chalicelib.domain.clock import program_date
from chalicelib.domain.expiry import EXPIRY_SHARDS, dates_to_run, expire_member
from chalicelib.handlers.payloads import ShardTask, event_time
from chalicelib.handlers.sharded import Progress, schedule, walk_shard
from chalicelib.observability import logger, metrics
from chalicelib.wiring import points_context, services

JOB = "expiry"
PAGE = 100


def run_points_expiry(event: dict[str, Any]) -> dict[str, Any]:
    """Queue one task per (date, shard) for every date not yet scheduled, up to
    yesterday in program time. Rerunning or overlapping is harmless: a task finds only
    members who still hold lots of its date."""
    through = program_date(event_time(event)) - timedelta(days=1)
    svc = services()
    days = dates_to_run(svc.jobs.last_date(JOB), through)
    tasks = schedule(JOB, days)
    logger.info("expiry scheduled", extra={"dates": [d.isoformat() for d in days]})
    return {"job": "points_expiry", "dates": [d.isoformat() for d in days], "tasks": tasks}


def expiry_task(task: ShardTask, lambda_context: Any = None) -> None:
    """One (date, shard) of an expiry run. Near the Lambda's time limit it queues the
    rest of its page chain as a new task and stops (chalicelib/handlers/sharded.py)."""
    day = task.date
    svc = services()
    ctx = points_context()

    def expire_page(
        key: str, start: dict[str, Any] | None
    ) -> tuple[Progress, dict[str, Any] | None]:
        ids, last = svc.ledger.members_due(key, start, PAGE)
        members = lots = points = 0
        for member_id in ids:
            outcome = expire_member(member_id, day, ctx)
            if outcome.lots:
                members, lots, points = members + 1, lots + outcome.lots, points + outcome.points
        metrics.add_metric(name="PointsExpired", unit="Count", value=points)
        return Progress(members, lots, points), last

    walk_shard(task, [expiry_shard_key(day, task.shard)], expire_page, lambda_context)


def run_expiry_reminders(event: dict[str, Any]) -> dict[str, Any]:
    """One reminder per member and expiry date, for dates within the program's reminder
    window. The expiry index carries `expiry_reminded`, so members already reminded for
    their date are skipped without reading them."""
    today = program_date(event_time(event))
    svc = services()
    window = svc.program.config().reminder_days
    queued = 0
    batch: list[OutboundMessage] = []
    for offset in range(1, window + 1):
        day = today + timedelta(days=offset)
        for shard in range(EXPIRY_SHARDS):
            for member_id in svc.members.due_for_reminder(expiry_shard_key(day, shard), day):
                batch.append(
                    OutboundMessage(
                        message_id=f"expiry-reminder#{member_id}#{day.isoformat()}",
                        member_id=member_id,
                        template="points_expiring",
                        category="marketing",
                        params={"expires_on": day.isoformat()},
                        after_send={"expiry_reminded": day.isoformat()},
                    )
                )
                if len(batch) == 100:
                    svc.messages.send_many(batch)
                    queued, batch = queued + len(batch), []
    if batch:
        svc.messages.send_many(batch)
        queued += len(batch)
    return {"job": "expiry_reminders", "date": today.isoformat(), "queued": queued}
