"""Points expiry: which dates a run covers, and what expiring does to one member.

Lots valid through day D (program time) expire when D is over: the run that fires at
00:05 on D+1 in Asia/Shanghai processes D. Members due on D are found through the sparse
`expiry-index` (by earliest lot date and shard: chalicelib/dal/ledger.py), so a run
reads only what expires.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from chalicelib.domain.points import Context, Planner, retry_commit

EXPIRY_SHARDS = 16  # spreads one busy month-end date over 16 index partitions
# How far back the very first run looks (no record of earlier runs): a week covers a
# deployment that went live a few days after points started expiring.
FIRST_RUN_DAYS = 7


def shard_of(member_id: str) -> int:
    return int(hashlib.sha256(member_id.encode()).hexdigest()[:8], 16) % EXPIRY_SHARDS


def dates_to_run(
    last_done: date | None, through: date, first_run_days: int = FIRST_RUN_DAYS
) -> list[date]:
    """Every date after the last one processed, up to `through` (a missed day is caught
    up; a rerun of a processed day is empty). A first run covers `first_run_days`."""
    start = (
        last_done + timedelta(days=1) if last_done else through - timedelta(days=first_run_days - 1)
    )
    days = (through - start).days
    return [start + timedelta(days=n) for n in range(days + 1)]


@dataclass(frozen=True)
class Expired:
    member_id: str
    points: int
    lots: int


def expire_member(member_id: str, through: date, ctx: Context) -> Expired:
    """Expire every lot of the member dated `through` or earlier, in one commit with its
    `expire` entry. Idempotent: a rerun finds no such lot and writes nothing. A purchase
    racing it changes the member's version: the loser re-reads, so a point is either
    spent or expired, never both."""

    def attempt() -> Expired:
        account = ctx.repo.load(member_id)
        if account is None:
            return Expired(member_id, 0, 0)
        planner = Planner(account, ctx)
        planner.release_due()
        due = sorted(d for d in planner.wallet.lots if d <= through)
        points = 0
        for day in due:
            points += planner.expire_date(day, {"expired_on": day.isoformat()})
        if not planner.entries:
            return Expired(member_id, 0, 0)
        ctx.repo.commit(planner.commit([]))
        return Expired(member_id, points, len(due))

    return retry_commit(ctx, attempt, "member too busy to expire; retried later")
