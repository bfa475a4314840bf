"""Tier rule versions: one scan segment of a dry run (counts who would move) or of an
apply (moves them). The lifecycle of a version (which run may start, when it is done)
is chalicelib/domain/tier_rules.py; the API starts runs, this worker does them."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.clock import program_date, utc_now
from chalicelib.domain.tier_rules import finish_segment, recalculate
from chalicelib.domain.tiering import recalculated
from chalicelib.handlers.payloads import TierRulesTask
from chalicelib.observability import logger
from chalicelib.wiring import services

PAGE = 200
SAFETY_MS = 60_000


def tier_rules_task(task: TierRulesTask, lambda_context: Any = None) -> None:
    svc = services()
    tiers = svc.program.rules_tiers(task.version)
    counts = dict(task.counts)
    start = task.start
    now = utc_now()
    today = program_date(now)
    while True:
        states, start = svc.tiers.scan_members(task.segment, task.total, start, PAGE)
        for state in states:
            move = recalculate(state.tier_code, state.monthly_spend, today, tiers)
            counts["scanned"] = counts.get("scanned", 0) + 1
            counts[move.direction] = counts.get(move.direction, 0) + 1
            if task.mode == "apply" and move.direction != "same":
                # Conditional on the tier it was read with: a rerun moves nobody twice.
                change = recalculated(state, move, today, task.version, tiers)
                counts["changed"] = counts.get("changed", 0) + int(svc.tiers.change(change, now))
        if start is None:
            break
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < SAFETY_MS:
            # Carry the counts so far: they are added once, when the segment ends.
            rest = task.model_copy(update={"start": start, "counts": counts})
            svc.tasks.send_many([rest.body()])
            return
    ended = finish_segment(
        task.version, task.mode, counts, task.segment, task.total, svc.program, task.run
    )
    logger.info(
        "tier rules segment done",
        extra={
            "version": task.version,
            "mode": task.mode,
            "segment": task.segment,
            "counts": counts,
            "run_ended": ended,
        },
    )
