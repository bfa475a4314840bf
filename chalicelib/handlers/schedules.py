"""Scheduled jobs (EventBridge). Each takes the scheduled event and returns counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.dal.outbound import OutboundMessage
from chalicelib.domain.birthdays import birthday_keys
from chalicelib.domain.clock import program_date, utc_now
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services


def run_birthday_greetings(event: dict[str, Any]) -> dict[str, Any]:
    """Queue one birthday greeting per member whose birthday is today (program time).

    The message id names member and year, so a rerun of the same day (or an overlapping
    run) queues duplicates that the sender drops; no member is greeted twice a year.
    """
    fired_at = event_time(event)
    today = program_date(fired_at)
    svc = services()
    batch: list[OutboundMessage] = []
    queued = 0
    from chalicelib.handlers.member_stream import grant_activity

    granted = failures = 0
    for key in birthday_keys(today):
        for member in svc.members.with_birthday(key):
            # birthday points, once a year (the activity id names the year); one member's
            # failure is reported, never the end of the run for everyone after them (a
            # rerun of the day grants what is missing, and nothing twice)
            try:
                granted += grant_activity(member.member_id, "birthday", f"birthday-{today.year}")
            except Exception:
                failures += 1
                logger.exception("birthday points failed", extra={"member_id": member.member_id})
            batch.append(
                OutboundMessage(
                    message_id=f"birthday#{member.member_id}#{today.year}",
                    member_id=member.member_id,
                    template="birthday",
                    category="marketing",
                    params={"name": member.name, "tier": member.tier_code},
                )
            )
            if len(batch) == 100:
                svc.messages.send_many(batch)
                queued += len(batch)
                batch = []
    if batch:
        svc.messages.send_many(batch)
        queued += len(batch)
    metrics.add_metric(name="BirthdayGreetingsQueued", unit="Count", value=queued)
    metrics.add_metric(name="BirthdayGrantFailures", unit="Count", value=failures)
    logger.info("birthday greetings queued", extra={"date": today.isoformat(), "queued": queued})
    return {
        "job": "birthday_greetings",
        "date": today.isoformat(),
        "queued": queued,
        "points_granted": granted,
        "grant_failures": failures,
    }


def event_time(event: dict[str, Any]) -> datetime:
    """The schedule's own time, so a delayed or replayed event acts for its day."""
    raw = event.get("time")
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return utc_now()
