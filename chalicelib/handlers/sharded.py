"""Daily jobs fanned out on the jobs queue, one task per (date, shard).

The schedule queues the tasks of every date not yet scheduled and records the dates; a
worker walks its shard's keys on a sparse index page by page, and when its Lambda is
near the time limit it queues the rest (the key it was on and where the next page
starts) as a continuation task and stops. Every effect on a member is idempotent, so a
redelivered task, a continuation and an overlapping rerun are harmless. Progress per
run is in `JOB#<job>#<date>/RUN`, readable at `GET /v1/admin/jobs/{job}/runs/{date}`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple

from chalicelib.domain.expiry import EXPIRY_SHARDS
from chalicelib.handlers.payloads import ShardTask
from chalicelib.wiring import services

SHARDS = EXPIRY_SHARDS  # the index keys' '#<shard>' suffix, shard_of(member_id)
# A task stops and queues its continuation while this much of its Lambda time is left
# (a page takes seconds; the jobs function has 300 s in AWS).
SAFETY_MS = 60_000


class Progress(NamedTuple):
    """What one page did, added to the run's progress (lots and points: the expiry's)."""

    members: int
    lots: int = 0
    points: int = 0


# page(key, start) -> (what it did, where the next page starts or None)
Page = Callable[[str, dict[str, Any] | None], tuple[Progress, dict[str, Any] | None]]


def schedule(job: str, days: list[date]) -> int:
    """Queue one task per (date, shard) for `days`, then record them as scheduled. A
    crash in between queues them again on the next run: harmless."""
    svc = services()
    tasks: list[dict[str, Any]] = []
    for day in days:
        svc.jobs.start_run(job, day, SHARDS)
        tasks += [
            ShardTask.model_validate({"job": job, "date": day, "shard": s}).body()
            for s in range(SHARDS)
        ]
    svc.tasks.send_many(tasks)
    for day in days:
        svc.jobs.advance(job, day)  # only once its tasks are safely queued
    return len(tasks)


def walk_shard(task: ShardTask, keys: list[str], page: Page, lambda_context: Any) -> None:
    """Run `page` over every page of `keys` from the task's cursor (`key`: which of
    `keys`, `start`: where in it), adding to the run's progress; hand the rest to a
    continuation task near the time limit; mark the shard done at the end."""
    svc = services()
    index, start = task.key, task.start
    while True:
        did, start = page(keys[index], start)
        if start is None:
            index += 1
        if index >= len(keys):
            done = svc.jobs.progress(task.job, task.date, **did._asdict(), shard_done=task.shard)
            if done >= SHARDS:
                svc.jobs.finish(task.job, task.date)
            return
        if any(did):
            svc.jobs.progress(task.job, task.date, **did._asdict(), shard_done=None)
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < SAFETY_MS:
            rest = task.model_copy(update={"key": index, "start": start})
            svc.tasks.send_many([rest.body()])
            return
