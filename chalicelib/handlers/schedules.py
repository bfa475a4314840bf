"""Scheduled jobs (EventBridge). Each takes the scheduled event and returns counts."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from chalicelib.dal.outbound import OutboundMessage
from chalicelib.domain.birthdays import shard_keys
from chalicelib.domain.clock import program_date
from chalicelib.domain.expiry import dates_to_run
from chalicelib.errors import DomainError, Unavailable
from chalicelib.handlers.grants import grant_activity
from chalicelib.handlers.payloads import ShardTask, event_time
from chalicelib.handlers.rule_coupons import issue_rule_coupons
from chalicelib.handlers.sharded import Progress, schedule, walk_shard
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

BIRTHDAYS_JOB = "birthdays"
BIRTHDAYS_PAGE = 100


def run_birthday_greetings(event: dict[str, Any]) -> dict[str, Any]:
    """Queue the greetings of today (program time) as one task per shard on the jobs
    queue. A day missed (the schedule did not fire) is caught up by the next run, a day
    late rather than never; a first run covers today only; a rerun of a scheduled day
    queues nothing."""
    today = program_date(event_time(event))
    svc = services()
    days = dates_to_run(svc.jobs.last_date(BIRTHDAYS_JOB), today, first_run_days=1)
    tasks = schedule(BIRTHDAYS_JOB, days)
    logger.info("birthday greetings scheduled", extra={"dates": [d.isoformat() for d in days]})
    return {"job": "birthday_greetings", "dates": [d.isoformat() for d in days], "tasks": tasks}


def birthday_task(task: ShardTask, lambda_context: Any = None) -> None:
    """One (date, shard) of the greetings: birthday points and one greeting per member.

    The activity id and the message id name member and year, so a redelivered task (or
    a continuation, or an overlapping run) pays nothing twice and queues duplicates that
    the messages worker drops; no member is greeted twice a year. The run counts the
    greetings queued, a redelivered page again."""
    today = task.date
    svc = services()
    coupons = svc.program.config().coupon_rules.birthday
    occasion = f"birthday-{today.year}"
    granted = queued = failures = 0
    transient: list[str] = []

    def attempt(member_id: str, gift: Callable[[], bool | int]) -> bool:
        nonlocal failures
        try:
            return bool(gift())
        except DomainError as exc:
            failures += 1
            if isinstance(exc, Unavailable):
                transient.append(member_id)
            logger.warning("birthday gift failed", extra={"member_id": member_id, "code": exc.code})
        except Exception:
            failures += 1
            transient.append(member_id)
            logger.exception("birthday gift failed", extra={"member_id": member_id})
        return False

    def greet_page(
        key: str, start: dict[str, Any] | None
    ) -> tuple[Progress, dict[str, Any] | None]:
        nonlocal granted, queued, failures
        members, last = svc.members.with_birthday(key, start, BIRTHDAYS_PAGE)
        batch: list[OutboundMessage] = []
        for member in members:
            # birthday points, once a year (the activity id names the year). One member's
            # failure never ends the task for everyone after them: a refusal for good
            # (the id taken, a limit) is reported; a transient one (CONTENDED, throttling)
            # fails the task once the rest are done, so SQS redelivers it and the grant,
            # idempotent, is made then instead of lost.
            # Birthday coupons likewise, once a year (the occasion names the year); a
            # refusal for good is logged and counted inside, a transient failure retries.
            granted += attempt(
                member.member_id, partial(grant_activity, member.member_id, "birthday", occasion)
            )
            if coupons:
                attempt(
                    member.member_id,
                    partial(issue_rule_coupons, member.member_id, occasion, coupons),
                )
            batch.append(
                OutboundMessage(
                    message_id=f"birthday#{member.member_id}#{today.year}",
                    member_id=member.member_id,
                    template="birthday",
                    category="marketing",
                    params={"tier": member.tier_code},
                )
            )
        svc.messages.send_many(batch)
        queued += len(batch)
        return Progress(len(batch)), last

    walk_shard(task, shard_keys(today, task.shard), greet_page, lambda_context)
    metrics.add_metric(name="BirthdayGreetingsQueued", unit="Count", value=queued)
    metrics.add_metric(name="BirthdayPointsGranted", unit="Count", value=granted)
    metrics.add_metric(name="BirthdayGrantFailures", unit="Count", value=failures)
    if transient:
        raise GrantsToRetry(f"birthday points to retry for {len(transient)} member(s)")


class GrantsToRetry(RuntimeError):
    """Some grants failed for a reason that passes: the task is retried (redelivered by
    SQS, dead-lettered after five receives), the rest of it being idempotent."""
