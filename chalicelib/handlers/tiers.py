"""The daily tier review (保级): members whose review date is today, found through the
sparse review index, are kept, given grace, or moved down. The schedule queues one task
per (date, shard) on the jobs queue (chalicelib/handlers/sharded.py): a tier-rules apply
gives every member it moves the same anniversary, so one day can hold most of the
program, more than one invocation can review."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chalicelib.domain.clock import program_date, utc_now
from chalicelib.domain.expiry import dates_to_run
from chalicelib.domain.tiering import review_member
from chalicelib.handlers.payloads import ShardTask, event_time
from chalicelib.handlers.sharded import Progress, schedule, walk_shard
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

JOB = "tier_review"
PAGE = 100


def run_tier_review(event: dict[str, Any]) -> dict[str, Any]:
    """Queue the review of every date not yet scheduled, up to today (program time):
    missed days are caught up, a rerun of a scheduled day queues nothing."""
    today = program_date(event_time(event))
    svc = services()
    days = dates_to_run(svc.jobs.last_date(JOB), today)
    tasks = schedule(JOB, days)
    logger.info("tier review scheduled", extra={"dates": [d.isoformat() for d in days]})
    return {
        "job": "tier_review",
        "dates": [d.isoformat() for d in days],
        "tasks": tasks,
        "through": today.isoformat(),
    }


def tier_review_task(task: ShardTask, lambda_context: Any = None) -> None:
    """One (date, shard) of a review. Each decision is conditional on the review key the
    member was found under, so a redelivered task or a continuation reviews nobody
    twice, and the run counts each member once."""
    day = task.date
    svc = services()
    program = svc.program.config()
    tiers = svc.program.tiers()
    outcomes: Counter[str] = Counter()

    def review_page(
        key: str, start: dict[str, Any] | None
    ) -> tuple[Progress, dict[str, Any] | None]:
        ids, last = svc.tiers.due_for_review(key, start, PAGE)
        reviewed = 0
        for member_id in ids:
            change = review_member(
                svc.tiers,
                tiers,
                member_id=member_id,
                key=key,
                today=day,
                now=utc_now(),
                grace_days=program.tier_grace_days,
                policy=program.tier_downgrade_policy,
            )
            if change is not None:
                outcomes[change.reason] += 1
                reviewed += 1
        return Progress(reviewed), last

    walk_shard(task, [f"{day.isoformat()}#{task.shard}"], review_page, lambda_context)
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"TierReview{outcome.title()}", unit="Count", value=count)
