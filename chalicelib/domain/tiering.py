"""Tier changes: upgrades as spend arrives (from the stream), the yearly review, and the
moves of a tier-rules apply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from chalicelib.domain.clock import PROGRAM_TZ, program_date
from chalicelib.domain.expiry import shard_of
from chalicelib.domain.tier_rules import Recalculation
from chalicelib.domain.tiers import (
    Tier,
    add_years,
    next_tier,
    qualifying_tier,
    review,
    rolling_spend,
    tier_by_code,
)


@dataclass(frozen=True)
class TierState:
    member_id: str
    tier_code: str
    tier_since: date | None
    tier_expires_at: datetime | None
    grace_until: date | None
    review_due: str | None
    monthly_spend: dict[str, int]


@dataclass(frozen=True)
class TierChange:
    member_id: str
    from_code: str
    to_code: str
    reason: str  # upgrade | kept | grace | downgraded | recalculated
    spend: int
    since: date | None
    expires_at: datetime | None
    review_due: str | None
    grace_until: date | None
    expected_review_due: str | None = None  # the key the review found the member under


class TierRepository(Protocol):
    def count_spend(
        self, record_pk: str, record_sk: str, member_id: str, month: str, delta: int
    ) -> bool: ...

    def state(self, member_id: str) -> TierState | None: ...

    def change(self, change: TierChange, now: datetime) -> bool: ...


def review_key(day: date, member_id: str) -> str:
    return f"{day.isoformat()}#{shard_of(member_id)}"


def start_of_day(day: date) -> datetime:
    """A tier held until its anniversary lapses at 00:00 of that day, program time."""
    return datetime.combine(day, time(0), PROGRAM_TZ).astimezone(UTC)


def apply_spend(
    repo: TierRepository,
    tiers: tuple[Tier, ...],
    *,
    record_pk: str,
    record_sk: str,
    member_id: str,
    month: str,
    delta: int,
    now: datetime,
) -> TierChange | None:
    """Count the spend (once per record) and upgrade at once if a threshold is crossed.
    Lower spend (a refund) never downgrades here: the review decides."""
    if delta:
        repo.count_spend(record_pk, record_sk, member_id, month, delta)
    state = repo.state(member_id)
    if state is None:
        return None
    today = program_date(now)
    spend = rolling_spend(state.monthly_spend, today)
    current = tier_by_code(state.tier_code, tiers)
    target = qualifying_tier(spend, tiers)
    if target.rank <= current.rank:
        return None
    anniversary = add_years(today)
    change = TierChange(
        member_id=member_id,
        from_code=current.code,
        to_code=target.code,
        reason="upgrade",
        spend=spend,
        since=today,
        expires_at=start_of_day(anniversary),
        review_due=review_key(anniversary, member_id),
        grace_until=None,
    )
    return change if repo.change(change, now) else None


def review_member(
    repo: TierRepository,
    tiers: tuple[Tier, ...],
    *,
    member_id: str,
    key: str,
    today: date,
    now: datetime,
    grace_days: int,
    policy: str,
) -> TierChange | None:
    """Review one member found under `key` on the review index. Conditional on the key,
    so a rerun of the day (or an overlapping run) reviews nobody twice."""
    state = repo.state(member_id)
    if state is None or state.review_due != key:
        return None
    spend = rolling_spend(state.monthly_spend, today)
    current = tier_by_code(state.tier_code, tiers)
    decision = review(
        current,
        spend,
        today,
        tiers=tiers,
        grace_days=grace_days,
        in_grace=state.grace_until is not None,
        policy=policy,
    )
    moved = decision.tier.code != current.code
    change = TierChange(
        member_id=member_id,
        from_code=current.code,
        to_code=decision.tier.code,
        reason=decision.outcome,
        spend=spend,
        since=today if moved else state.tier_since,
        expires_at=start_of_day(decision.next_review) if decision.next_review else None,
        review_due=review_key(decision.next_review, member_id) if decision.next_review else None,
        grace_until=decision.grace_until,
        expected_review_due=key,
    )
    return change if repo.change(change, now) else None


def recalculated(
    state: TierState, move: Recalculation, today: date, version: int, tiers: tuple[Tier, ...]
) -> TierChange:
    """A tier-rules apply moving a member: a tier above the base runs for a year from
    today (the same anniversary for everyone it moves); the base tier has no term. The
    change is conditional on the tier it was read with, so a rerun moves nobody twice."""
    base = move.target.rank == min(t.rank for t in tiers)
    anniversary = add_years(today)
    return TierChange(
        member_id=state.member_id,
        from_code=state.tier_code,
        to_code=move.target.code,
        reason=f"recalculated v{version}",
        spend=0,
        since=None if base else today,
        expires_at=None if base else start_of_day(anniversary),
        review_due=None if base else review_key(anniversary, state.member_id),
        grace_until=None,
    )


def tier_view(
    state: Any, tiers: tuple[Tier, ...], today: date, history: list[dict[str, Any]]
) -> dict[str, Any]:
    current = tier_by_code(state.tier_code, tiers)
    spend = rolling_spend(state.monthly_spend, today)
    upcoming = next_tier(current, tiers)
    return {
        "member_id": state.member_id,
        "tier": {"code": current.code, "name": current.name, "name_en": current.name_en},
        "since": state.tier_since.isoformat() if state.tier_since else None,
        "expires_at": (
            state.tier_expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
            if state.tier_expires_at
            else None
        ),
        "qualifying_spend": spend,
        "next_tier": (
            {
                "code": upcoming.code,
                "name": upcoming.name,
                "qualify_spend": upcoming.qualify_spend,
                "amount_missing": max(0, upcoming.qualify_spend - spend),
            }
            if upcoming
            else None
        ),
        "retention": (
            {
                "retain_spend": current.retain_spend,
                "amount_missing": max(0, current.retain_spend - spend),
                "review_date": state.review_due.split("#")[0] if state.review_due else None,
                "in_grace_until": state.grace_until.isoformat() if state.grace_until else None,
            }
            if state.review_due
            else None
        ),
        "history": history,
    }
