"""Tier rule versions: the dry run counts who would move; the apply moves them. Both
are one task per parallel-scan segment on the jobs queue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain.clock import program_date
from chalicelib.domain.tier_rules import SCAN_SEGMENTS, recalculate
from chalicelib.domain.tiering import TierChange, review_key, start_of_day
from chalicelib.domain.tiers import add_years
from chalicelib.observability import logger
from chalicelib.wiring import services

PAGE = 200
SAFETY_MS = 60_000


def queue_recalculation(version: int, mode: str) -> int:
    tasks = [
        {
            "job": "tier_rules",
            "version": version,
            "mode": mode,
            "segment": s,
            "total": SCAN_SEGMENTS,
            "counts": {},
        }
        for s in range(SCAN_SEGMENTS)
    ]
    services().tasks.send_many(tasks)
    return len(tasks)


def tier_rules_task(record: SQSRecord, lambda_context: Any = None) -> None:
    task = json.loads(record.body)
    version, mode = int(task["version"]), str(task["mode"])
    segment, total = int(task["segment"]), int(task["total"])
    svc = services()
    tiers = svc.program.rules_tiers(version)
    counts: dict[str, int] = {k: int(v) for k, v in (task.get("counts") or {}).items()}
    start = task.get("start")
    now = datetime.now(UTC)
    today = program_date(now)
    while True:
        states, start = svc.tiers.scan_members(segment, total, start, PAGE)
        for state in states:
            move = recalculate(state.tier_code, state.monthly_spend, today, tiers)
            counts["scanned"] = counts.get("scanned", 0) + 1
            counts[move.direction] = counts.get(move.direction, 0) + 1
            if mode == "apply" and move.direction != "same":
                base = move.target.rank == min(t.rank for t in tiers)
                anniversary = add_years(today)
                # Conditional on the tier it was read with: a rerun moves nobody twice.
                changed = svc.tiers.change(
                    TierChange(
                        member_id=state.member_id,
                        from_code=state.tier_code,
                        to_code=move.target.code,
                        reason=f"recalculated v{version}",
                        spend=0,
                        since=None if base else today,
                        expires_at=None if base else start_of_day(anniversary),
                        review_due=None if base else review_key(anniversary, state.member_id),
                        grace_until=None,
                    ),
                    now,
                )
                counts["changed"] = counts.get("changed", 0) + int(changed)
        if start is None:
            break
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < SAFETY_MS:
            # Carry the counts so far: they are added once, when the segment ends.
            svc.tasks.send_many([{**task, "start": start, "counts": counts}])
            return
    done = svc.program.add_rules_counts(
        version, "dry_run" if mode == "dry_run" else "apply", counts, segment
    )
    if done == total:
        svc.program.set_rules_status(version, "dry_run_done" if mode == "dry_run" else "applied")
    logger.info(
        "tier rules segment done",
        extra={"version": version, "mode": mode, "segment": segment, "counts": counts},
    )
