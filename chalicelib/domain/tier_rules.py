"""Versioned tier rules: validation of a new ladder, the lifecycle of a version (draft,
dry run, apply), and what recalculating does to one member (shared by the dry run,
which only counts, and the apply, which moves).

A version moves draft -> dry_run_running -> dry_run_done (a dry run may be repeated)
and -> applying -> applied. Each move is a conditional write on the status it starts
from, so two staff starting an apply at once cannot both apply: one wins, the other
gets 409 RULES_STATUS_CHANGED. The API starts a run; the jobs worker finishes it.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

from chalicelib.domain.audit import Actor, AuditEntry, entry
from chalicelib.domain.clock import utc_now
from chalicelib.domain.tiers import Tier, qualifying_tier, rolling_spend, tier_by_code
from chalicelib.errors import BusinessRuleViolation, Conflict, NotFound

SCAN_SEGMENTS = 8  # parallel scan segments: one task each, continued while pages remain
Mode = Literal["dry_run", "apply"]
# The statuses each run may start from, and the ones it moves through.
DRY_RUN_FROM = ("draft", "dry_run_done")
APPLY_FROM = ("draft", "dry_run_running", "dry_run_done")
RUNNING: dict[str, str] = {"dry_run": "dry_run_running", "apply": "applying"}
DONE: dict[str, str] = {"dry_run": "dry_run_done", "apply": "applied"}
APPLY_RUN = 1  # a version is applied once


class RulesRepository(Protocol):
    def rules_version(self, version: int) -> dict[str, Any] | None: ...

    def rules_tiers(self, version: int) -> tuple[Tier, ...]: ...

    def change_rules_status(self, version: int, status: str, expected: Collection[str]) -> bool:
        """Set the status if it is one of `expected`; False (nothing written) if not."""
        ...

    def apply_rules(
        self,
        version: int,
        tiers: tuple[Tier, ...],
        expected: Collection[str],
        audit: AuditEntry | None = None,
    ) -> bool:
        """Make `tiers` the program's ladder and set the status to applying, in one write,
        if the status is one of `expected`; False (nothing written) if not."""
        ...

    def start_dry_run(
        self, version: int, expected: Collection[str], audit: AuditEntry | None = None
    ) -> int | None:
        """Set the status to dry_run_running with counts at zero, if it is one of
        `expected`; the new run's number (1, 2, ...), or None (nothing written) if not."""
        ...

    def add_rules_counts(
        self, version: int, mode: str, counts: dict[str, int], segment: int, run: int
    ) -> int:
        """Add one finished segment's counts to run `run`, once; how many of that run's
        segments are done (-1 if this one was added before)."""
        ...


class TaskQueue(Protocol):
    def send_many(self, tasks: list[dict[str, Any]]) -> None: ...


def validate(tiers: tuple[Tier, ...]) -> None:
    problems: list[str] = []
    ordered = sorted(tiers, key=lambda t: t.rank)
    if len({t.code for t in tiers}) != len(tiers):
        problems.append("tier codes must be unique")
    if [t.rank for t in ordered] != list(range(len(ordered))):
        problems.append("ranks must be 0..n-1")
    if ordered and ordered[0].qualify_spend != 0:
        problems.append("the base tier (rank 0) qualifies at 0")
    for lower, higher in itertools.pairwise(ordered):
        if higher.qualify_spend <= lower.qualify_spend:
            problems.append(f"{higher.code} must need more spend than {lower.code}")
    for tier in ordered:
        if tier.retain_spend > tier.qualify_spend:
            problems.append(f"{tier.code}: keeping a tier cannot need more than reaching it")
    if problems:
        raise BusinessRuleViolation(
            "the tier ladder is not consistent",
            code="INVALID_TIER_RULES",
            details={"problems": problems},
        )


@dataclass(frozen=True)
class Recalculation:
    current: Tier
    target: Tier

    @property
    def direction(self) -> str:
        if self.target.rank > self.current.rank:
            return "up"
        if self.target.rank < self.current.rank:
            return "down"
        return "same"


def recalculate(
    tier_code: str, monthly_spend: dict[str, int], today: date, tiers: tuple[Tier, ...]
) -> Recalculation:
    """Under the new ladder, a member holds the tier their rolling spend qualifies for."""
    spend = rolling_spend(monthly_spend, today)
    return Recalculation(tier_by_code(tier_code, tiers), qualifying_tier(spend, tiers))


# ---- the lifecycle of a version ---------------------------------------------------------


def load(version: str, repo: RulesRepository) -> tuple[int, dict[str, Any]]:
    """A version named in a path: its number and stored state, or 404 RULES_NOT_FOUND."""
    number = int(version) if version.isdigit() else -1
    data = repo.rules_version(number) if number > 0 else None
    if data is None:
        raise NotFound("no such tier rules version", code="RULES_NOT_FOUND")
    return number, data


def start_dry_run(
    version: str, repo: RulesRepository, tasks: TaskQueue, by: Actor | None = None
) -> int:
    number, data = load(version, repo)
    if data["status"] not in DRY_RUN_FROM:
        raise BusinessRuleViolation("only a draft can be dry-run", code="RULES_NOT_DRAFT")
    audit = entry(
        by,
        "tier_rules.dry_run",
        f"tier_rules:v{number}",
        utc_now(),
        before={"status": data["status"]},
        after={"status": RUNNING["dry_run"]},
    )
    # A repeated dry run counts from zero under a new run number: the segments of an
    # earlier run are marked done under theirs, so a late redelivery adds nothing.
    run = repo.start_dry_run(number, DRY_RUN_FROM, audit)
    if run is None:
        raise _status_changed(number, repo)
    tasks.send_many(recalculation_tasks(number, "dry_run", run))
    return number


def start_apply(
    version: str, repo: RulesRepository, tasks: TaskQueue, by: Actor | None = None
) -> int:
    """The ladder becomes current and the status applying in one conditional write, then
    the recalculation is queued."""
    number, data = load(version, repo)
    if data["status"] not in APPLY_FROM:
        raise BusinessRuleViolation("this version is already applied", code="RULES_APPLIED")
    audit = entry(
        by,
        "tier_rules.apply",
        f"tier_rules:v{number}",
        utc_now(),
        before={"status": data["status"]},
        after={"status": RUNNING["apply"]},
    )
    if not repo.apply_rules(number, repo.rules_tiers(number), APPLY_FROM, audit):
        raise _status_changed(number, repo)
    tasks.send_many(recalculation_tasks(number, "apply", APPLY_RUN))
    return number


def _status_changed(version: int, repo: RulesRepository) -> Conflict:
    """The status was read as allowed, but changed before the write: another request
    started a run meanwhile."""
    now = repo.rules_version(version) or {}
    return Conflict(
        "the tier rules version changed meanwhile; reload it",
        code="RULES_STATUS_CHANGED",
        details={"status": now.get("status")},
    )


def recalculation_tasks(version: int, mode: Mode, run: int) -> list[dict[str, Any]]:
    """One jobs-queue task per scan segment (chalicelib/handlers/payloads.py reads them)."""
    return [
        {
            "job": "tier_rules",
            "version": version,
            "mode": mode,
            "run": run,
            "segment": s,
            "total": SCAN_SEGMENTS,
            "counts": {},
        }
        for s in range(SCAN_SEGMENTS)
    ]


def finish_segment(
    version: int,
    mode: Mode,
    counts: dict[str, int],
    segment: int,
    total: int,
    repo: RulesRepository,
    run: int,
) -> bool:
    """Add a finished segment's counts (once); the last segment ends the run, unless its
    status moved on meanwhile (an apply started while a dry run was counting). True when
    this segment ended the run."""
    done = repo.add_rules_counts(version, mode, counts, segment, run)
    return done == total and repo.change_rules_status(version, DONE[mode], (RUNNING[mode],))
