"""The daily tier review (保级): members whose review date is today, found through the
sparse review index, are kept, given grace, or moved down."""

from __future__ import annotations

from collections import Counter
from typing import Any

from chalicelib.domain.clock import program_date, utc_now
from chalicelib.domain.expiry import EXPIRY_SHARDS, dates_to_run
from chalicelib.domain.tiering import review_member
from chalicelib.handlers.schedules import event_time
from chalicelib.observability import logger, metrics
from chalicelib.wiring import services

JOB = "tier_review"
PAGE = 100


def run_tier_review(event: dict[str, Any]) -> dict[str, Any]:
    today = program_date(event_time(event))
    svc = services()
    program = svc.program.config()
    tiers = svc.program.tiers()
    outcomes: Counter[str] = Counter()
    days = dates_to_run(svc.jobs.last_date(JOB), today)
    for day in days:
        svc.jobs.start_run(JOB, day, 1)  # one task: the shards are read in this run
        reviewed = 0
        for shard in range(EXPIRY_SHARDS):
            key = f"{day.isoformat()}#{shard}"
            start = None
            while True:
                ids, start = svc.tiers.due_for_review(key, start, PAGE)
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
                if start is None:
                    break
        svc.jobs.progress(JOB, day, members=reviewed, lots=0, points=0, shard_done=0)
        svc.jobs.finish(JOB, day)
        svc.jobs.advance(JOB, day)
    for outcome, count in outcomes.items():
        metrics.add_metric(name=f"TierReview{outcome.title()}", unit="Count", value=count)
    logger.info("tier review", extra={"dates": [d.isoformat() for d in days], **outcomes})
    return {
        "job": "tier_review",
        "dates": [d.isoformat() for d in days],
        "outcomes": dict(outcomes),
        "through": today.isoformat(),
    }
