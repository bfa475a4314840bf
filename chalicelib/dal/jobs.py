"""Scheduled jobs' state and per-run progress (Runtime table)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.dal.tables import JobRunItem, save_if_new, update_if
from chalicelib.domain.clock import rfc3339, utc_now

RUN_RETENTION_SECONDS = 400 * 24 * 3600  # a year of runs stays readable


class DynamoJobRepository:
    def last_date(self, job: str) -> date | None:
        try:
            item = JobRunItem.get(f"JOB#{job}", "STATE", consistent_read=True)
        except DoesNotExist:
            return None
        return date.fromisoformat(item.last_date) if item.last_date else None

    def advance(self, job: str, day: date) -> None:
        """Record that `day` has been scheduled; never moves backwards."""
        item = JobRunItem(pk=f"JOB#{job}", sk="STATE")
        # False when a later day is already recorded: nothing to do.
        update_if(
            item,
            [JobRunItem.last_date.set(day.isoformat())],
            JobRunItem.last_date.does_not_exist() | (JobRunItem.last_date < day.isoformat()),
        )

    def start_run(self, job: str, day: date, tasks: int) -> bool:
        """Create the run's progress record; False if the day was already started."""
        run = JobRunItem(
            pk=f"JOB#{job}#{day.isoformat()}",
            sk="RUN",
            started_at=rfc3339(utc_now()),
            tasks=tasks,
            expires_at=int(time.time()) + RUN_RETENTION_SECONDS,
        )
        return save_if_new(run, JobRunItem.pk.does_not_exist())

    def progress(
        self, job: str, day: date, *, members: int, lots: int, points: int, shard_done: int | None
    ) -> int:
        """Add a task's counts; returns how many tasks (shards) have finished so far.
        Counts are progress for people: the ledger's expire entries are the record."""
        actions: list[Any] = [
            JobRunItem.members.add(members),
            JobRunItem.lots.add(lots),
            JobRunItem.points.add(points),
        ]
        if shard_done is not None:
            actions.append(JobRunItem.shards_done.add({shard_done}))
        item = JobRunItem(pk=f"JOB#{job}#{day.isoformat()}", sk="RUN")
        item.update(actions=actions)  # returns ALL_NEW into `item`
        return len(item.shards_done or set())

    def finish(self, job: str, day: date) -> None:
        item = JobRunItem(pk=f"JOB#{job}#{day.isoformat()}", sk="RUN")
        update_if(
            item,
            [JobRunItem.finished_at.set(rfc3339(utc_now()))],
            JobRunItem.finished_at.does_not_exist(),
        )

    def run(self, job: str, day: date) -> dict[str, Any] | None:
        try:
            item = JobRunItem.get(f"JOB#{job}#{day.isoformat()}", "RUN", consistent_read=True)
        except DoesNotExist:
            return None
        return {
            "job": job,
            "date": day.isoformat(),
            "started_at": item.started_at,
            "finished_at": item.finished_at,
            "tasks": int(item.tasks or 0),
            "tasks_done": len(item.shards_done or set()),
            "members": int(item.members or 0),
            "lots": int(item.lots or 0),
            "points": int(item.points or 0),
        }
