"""The points wallet: pure arithmetic over lots, no I/O.

Every credit is a lot: points that expire together on one date. Lots with the same expiry
date are interchangeable (spend order, expiry and every balance are decided by the date
alone), so the wallet keeps them as one remaining amount per expiry date. A program with
monthly expiry has at most about thirteen such lots per member, which is why they can
live on the member item and every change is one conditional write of that item.

Invariants (checked by the property tests after every operation):
  balance == sum(remaining lots) - debt, every lot > 0, debt >= 0, and debt > 0 only
  when there are no lots (a debt is repaid before anything else is credited).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date, datetime


class InsufficientPoints(Exception):
    def __init__(self, requested: int, available: int) -> None:
        super().__init__(f"requested {requested} points, {available} available")
        self.requested = requested
        self.available = available


@dataclass(frozen=True)
class PendingLot:
    """Points earned but not spendable until `release_at` (a purchase's return window)."""

    source_id: str
    points: int
    release_at: datetime
    expires_on: date


@dataclass(frozen=True)
class Wallet:
    lots: dict[date, int] = field(default_factory=dict)  # expiry date -> remaining points
    debt: int = 0  # points a clawback took beyond what the member had
    pending: tuple[PendingLot, ...] = ()
    lifetime_earned: int = 0

    @property
    def balance(self) -> int:
        return sum(self.lots.values()) - self.debt

    @property
    def pending_points(self) -> int:
        return sum(p.points for p in self.pending)

    def expiring_next(self) -> tuple[date, int] | None:
        if not self.lots:
            return None
        first = min(self.lots)
        return first, self.lots[first]

    def schedule(self) -> list[tuple[date, int]]:
        return sorted(self.lots.items())


@dataclass(frozen=True)
class Movement:
    """What one operation did to the lots: +points into, or -points out of, each date."""

    points: int  # signed change of the balance
    by_lot: dict[date, int] = field(default_factory=dict)
    debt_repaid: int = 0
    debt_added: int = 0
    unrecovered: int = 0  # a clawback's shortfall written off (floor policy)


def credit(
    wallet: Wallet, points: int, expires_on: date, *, counts_as_earned: bool = True
) -> tuple[Wallet, Movement]:
    """Add a lot. An outstanding debt is repaid first: only the rest becomes spendable."""
    if points <= 0:
        raise ValueError("a credit is positive")
    repaid = min(points, wallet.debt)
    lots = dict(wallet.lots)
    rest = points - repaid
    by_lot: dict[date, int] = {}
    if rest:
        lots[expires_on] = lots.get(expires_on, 0) + rest
        by_lot[expires_on] = rest
    updated = replace(
        wallet,
        lots=lots,
        debt=wallet.debt - repaid,
        lifetime_earned=wallet.lifetime_earned + (points if counts_as_earned else 0),
    )
    return updated, Movement(points=points, by_lot=by_lot, debt_repaid=repaid)


def debit(wallet: Wallet, points: int) -> tuple[Wallet, Movement]:
    """Spend from the earliest-expiring lots first; never below zero."""
    if points <= 0:
        raise ValueError("a debit is positive")
    if points > wallet.balance:
        raise InsufficientPoints(points, max(wallet.balance, 0))
    lots = dict(wallet.lots)
    by_lot: dict[date, int] = {}
    left = points
    for expires_on in sorted(lots):
        take = min(left, lots[expires_on])
        by_lot[expires_on] = -take
        lots[expires_on] -= take
        if lots[expires_on] == 0:
            del lots[expires_on]
        left -= take
        if left == 0:
            break
    return replace(wallet, lots=lots), Movement(points=-points, by_lot=by_lot)


def claw_back(
    wallet: Wallet, points: int, *, prefer: date | None = None, allow_negative: bool = True
) -> tuple[Wallet, Movement]:
    """Take back points a refund reverses: from the lot they were credited to first (the
    purchase's own points), then earliest-expiring first; what the member no longer has
    becomes a debt (or, with the floor policy, is written off and reported)."""
    if points <= 0:
        raise ValueError("a clawback is positive")
    lots = dict(wallet.lots)
    by_lot: dict[date, int] = {}
    left = points
    order = sorted(lots)
    if prefer is not None and prefer in lots:
        order.remove(prefer)
        order.insert(0, prefer)
    for expires_on in order:
        take = min(left, lots[expires_on])
        by_lot[expires_on] = -take
        lots[expires_on] -= take
        if lots[expires_on] == 0:
            del lots[expires_on]
        left -= take
        if left == 0:
            break
    debt_added = left if allow_negative else 0
    unrecovered = 0 if allow_negative else left
    taken = points - unrecovered
    updated = replace(wallet, lots=lots, debt=wallet.debt + debt_added)
    return updated, Movement(
        points=-taken, by_lot=by_lot, debt_added=debt_added, unrecovered=unrecovered
    )


def expire(wallet: Wallet, expires_on: date) -> tuple[Wallet, Movement]:
    """Remove the lot that expires on `expires_on` (nothing if there is none)."""
    remaining = wallet.lots.get(expires_on, 0)
    if remaining == 0:
        return wallet, Movement(points=0)
    lots = dict(wallet.lots)
    del lots[expires_on]
    return replace(wallet, lots=lots), Movement(points=-remaining, by_lot={expires_on: -remaining})


def returned_lots(paid: dict[date, int], returned_before: int, points: int) -> dict[date, int]:
    """The lots `points` paid by a purchase go back to when a refund returns them, after
    `returned_before` went back already: the latest-expiring first. A purchase partly
    refunded is as if it had been paid with fewer points, and a smaller payment would
    have left the latest-expiring points untouched (spending takes the earliest first).
    Any sequence of partial returns adds up to exactly the lots that paid."""
    if points <= 0 or returned_before < 0:
        raise ValueError("a return is positive")
    if returned_before + points > sum(paid.values()):
        raise ValueError("more returned than was paid")
    back: dict[date, int] = {}
    skip, left = returned_before, points
    for expires_on in sorted(paid, reverse=True):
        available = paid[expires_on] - min(skip, paid[expires_on])
        skip -= paid[expires_on] - available
        take = min(left, available)
        if take:
            back[expires_on] = take
            left -= take
        if left == 0:
            break
    return back


def add_pending(wallet: Wallet, lot: PendingLot) -> Wallet:
    return replace(wallet, pending=(*wallet.pending, lot))


def reduce_pending(wallet: Wallet, source_id: str, points: int) -> tuple[Wallet, int]:
    """A refund of a purchase whose points are still pending: shrink them instead."""
    kept: list[PendingLot] = []
    taken = 0
    for lot in wallet.pending:
        if lot.source_id == source_id and taken < points:
            take = min(points - taken, lot.points)
            taken += take
            if lot.points - take > 0:
                kept.append(replace(lot, points=lot.points - take))
        else:
            kept.append(lot)
    return replace(wallet, pending=tuple(kept)), taken


def due_pending(wallet: Wallet, now: datetime) -> list[PendingLot]:
    return [lot for lot in wallet.pending if lot.release_at <= now]


def release(wallet: Wallet, lot: PendingLot) -> tuple[Wallet, Movement]:
    """A pending lot becomes spendable (and is credited like any earning)."""
    remaining = tuple(p for p in wallet.pending if p is not lot)
    return credit(replace(wallet, pending=remaining), lot.points, lot.expires_on)


# ---- expiry policies ------------------------------------------------------------------


def end_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def expiry_date(earned_on: date, policy: str = "rolling", months: int = 12) -> date:
    """`rolling`: end of the month `months` after the month of earning (default 12);
    `next_year_end`: 31 December of the following calendar year."""
    if policy == "next_year_end":
        return date(earned_on.year + 1, 12, 31)
    if policy != "rolling":
        raise ValueError(f"unknown expiry policy {policy}")
    index = earned_on.year * 12 + (earned_on.month - 1) + months
    return end_of_month(index // 12, index % 12 + 1)
