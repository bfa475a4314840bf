"""Property tests of the pure points wallet (chalicelib/domain/ledger.py).

Random sequences of credits, debits, clawbacks (negative and floor policies), expiries and
pending lots that are released later; after every step the wallet's invariants hold and
each operation's Movement describes exactly what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import ledger
from chalicelib.domain.ledger import InsufficientPoints, Movement, PendingLot, Wallet

# A handful of expiry dates, so that lots often share a date and operations collide.
DATES = (*(date(2025, month, 28) for month in (1, 3, 5, 7, 11)), date(2026, 2, 28))
RELEASE_AT = datetime(2025, 1, 1, tzinfo=UTC)

points_st = st.integers(min_value=1, max_value=500)
date_st = st.sampled_from(DATES)


@dataclass(frozen=True)
class Credit:
    points: int
    expires_on: date
    counts_as_earned: bool


@dataclass(frozen=True)
class Debit:
    points: int


@dataclass(frozen=True)
class ClawBack:
    points: int
    prefer: date | None
    allow_negative: bool


@dataclass(frozen=True)
class Expire:
    expires_on: date


@dataclass(frozen=True)
class AddPending:
    points: int
    expires_on: date
    source_id: str


@dataclass(frozen=True)
class Release:
    index: int


operation_st = st.one_of(
    st.builds(Credit, points_st, date_st, st.booleans()),
    st.builds(Debit, st.integers(min_value=1, max_value=1500)),
    st.builds(ClawBack, points_st, st.one_of(st.none(), date_st), st.booleans()),
    st.builds(Expire, date_st),
    st.builds(AddPending, points_st, date_st, st.sampled_from(("TXN#a", "TXN#b", "TXN#c"))),
    st.builds(Release, st.integers(min_value=0, max_value=10)),
)


def assert_invariants(wallet: Wallet) -> None:
    assert wallet.balance == sum(wallet.lots.values()) - wallet.debt
    assert all(points > 0 for points in wallet.lots.values())
    assert wallet.debt >= 0
    if wallet.debt > 0:
        assert wallet.lots == {}
    assert all(p.points > 0 for p in wallet.pending)
    assert wallet.pending_points == sum(p.points for p in wallet.pending)


def assert_lots_follow_movement(before: Wallet, after: Wallet, movement: Movement) -> None:
    """The lots after == the lots before + the movement's per-date changes."""
    expected = dict(before.lots)
    for expires_on, change in movement.by_lot.items():
        expected[expires_on] = expected.get(expires_on, 0) + change
    assert {d: p for d, p in expected.items() if p != 0} == after.lots


def assert_earliest_first(before: Wallet, movement: Movement) -> None:
    """Nothing is taken from a lot while an earlier-expiring lot still has points left."""
    taken = {d: -p for d, p in movement.by_lot.items() if p < 0}
    assert all(p <= 0 for p in movement.by_lot.values())
    if not taken:
        return
    latest = max(taken)
    for expires_on, points in before.lots.items():
        if expires_on < latest:
            assert taken.get(expires_on, 0) == points, (
                f"took from {latest} while {expires_on} kept points"
            )


def apply(wallet: Wallet, op: object, movements: list[Movement]) -> Wallet:
    if isinstance(op, Credit):
        after, movement = ledger.credit(
            wallet, op.points, op.expires_on, counts_as_earned=op.counts_as_earned
        )
        repaid = min(op.points, wallet.debt)
        assert movement.points == op.points
        assert movement.debt_repaid == repaid
        assert after.debt == wallet.debt - repaid
        # the debt is repaid first: only the rest becomes a lot
        rest = op.points - repaid
        assert movement.by_lot == ({op.expires_on: rest} if rest else {})
        assert after.balance == wallet.balance + op.points
        assert after.lifetime_earned == wallet.lifetime_earned + (
            op.points if op.counts_as_earned else 0
        )
    elif isinstance(op, Debit):
        if op.points > wallet.balance:
            with pytest.raises(InsufficientPoints) as excinfo:
                ledger.debit(wallet, op.points)
            assert excinfo.value.requested == op.points
            assert excinfo.value.available == max(wallet.balance, 0)
            return wallet  # unchanged: the wallet is immutable and nothing was returned
        after, movement = ledger.debit(wallet, op.points)
        assert movement.points == -op.points
        assert sum(movement.by_lot.values()) == -op.points
        assert_earliest_first(wallet, movement)
        assert after.debt == wallet.debt
        assert after.balance == wallet.balance - op.points
        assert after.lifetime_earned == wallet.lifetime_earned
    elif isinstance(op, ClawBack):
        after, movement = ledger.claw_back(
            wallet, op.points, prefer=op.prefer, allow_negative=op.allow_negative
        )
        available = sum(wallet.lots.values())
        from_lots = min(op.points, available)
        assert sum(movement.by_lot.values()) == -from_lots
        shortfall = op.points - from_lots
        if op.allow_negative:
            assert movement.points == -op.points
            assert movement.debt_added == shortfall
            assert movement.unrecovered == 0
            assert after.balance == wallet.balance - op.points
        else:
            assert movement.points == -from_lots
            assert movement.debt_added == 0
            assert movement.unrecovered == shortfall
            assert after.balance == wallet.balance - from_lots
        if op.prefer is not None and op.prefer in wallet.lots:
            # the purchase's own lot goes first
            assert movement.by_lot[op.prefer] == -min(op.points, wallet.lots[op.prefer])
        else:
            assert_earliest_first(wallet, movement)
    elif isinstance(op, Expire):
        after, movement = ledger.expire(wallet, op.expires_on)
        remaining = wallet.lots.get(op.expires_on, 0)
        assert movement.points == -remaining
        assert op.expires_on not in after.lots
        assert after.balance == wallet.balance - remaining
    elif isinstance(op, AddPending):
        lot = PendingLot(op.source_id, op.points, RELEASE_AT, op.expires_on)
        after = ledger.add_pending(wallet, lot)
        assert after.balance == wallet.balance
        assert after.lots == wallet.lots
        assert after.pending_points == wallet.pending_points + op.points
        movement = Movement(points=0)
    elif isinstance(op, Release):
        if not wallet.pending:
            return wallet
        lot = wallet.pending[op.index % len(wallet.pending)]
        after, movement = ledger.release(wallet, lot)
        assert after.pending_points == wallet.pending_points - lot.points
        assert len(after.pending) == len(wallet.pending) - 1
        assert movement.points == lot.points
        assert after.balance == wallet.balance + lot.points
        assert after.lifetime_earned == wallet.lifetime_earned + lot.points
    else:  # pragma: no cover
        raise AssertionError(op)
    assert_lots_follow_movement(wallet, after, movement)
    if not isinstance(op, (AddPending, Release)):
        assert after.pending == wallet.pending
    movements.append(movement)
    return after


@settings(max_examples=300, deadline=None)
@given(st.lists(operation_st, max_size=40))
def test_given_any_sequence_of_operations_when_applied_then_every_invariant_holds_after_each_step(
    operations,
):
    wallet = Wallet()
    movements: list[Movement] = []
    for op in operations:
        wallet = apply(wallet, op, movements)
        assert_invariants(wallet)
        # the ledger sum: every movement summed is the balance
        assert sum(m.points for m in movements) == wallet.balance


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(date_st, points_st, min_size=1),
    st.integers(min_value=1, max_value=3000),
)
def test_given_lots_when_debiting_then_earliest_expiring_lots_are_spent_first(lots, points):
    wallet = Wallet(lots=lots)
    if points > wallet.balance:
        with pytest.raises(InsufficientPoints):
            ledger.debit(wallet, points)
        assert wallet == Wallet(lots=lots)
        return
    after, movement = ledger.debit(wallet, points)
    assert_earliest_first(wallet, movement)
    assert_lots_follow_movement(wallet, after, movement)
    left = points
    for expires_on in sorted(lots):
        expected = min(left, lots[expires_on])
        assert -movement.by_lot.get(expires_on, 0) == expected
        left -= expected


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(date_st, points_st),
    st.integers(min_value=0, max_value=1000),
    st.integers(min_value=1, max_value=3000),
)
def test_given_a_debit_beyond_the_balance_then_insufficient_points_and_the_wallet_is_unchanged(
    lots, debt, extra
):
    wallet = Wallet(lots={} if debt else lots, debt=debt, lifetime_earned=7)
    snapshot = Wallet(lots=dict(wallet.lots), debt=wallet.debt, lifetime_earned=7)
    requested = max(wallet.balance, 0) + extra
    with pytest.raises(InsufficientPoints) as excinfo:
        ledger.debit(wallet, requested)
    assert excinfo.value.available == max(wallet.balance, 0)
    assert wallet == snapshot


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=1000), st.integers(min_value=1, max_value=1000))
def test_given_a_debt_when_crediting_then_the_debt_is_repaid_before_anything_is_spendable(
    debt, points
):
    wallet = Wallet(debt=debt)
    after, movement = ledger.credit(wallet, points, DATES[0])
    assert movement.debt_repaid == min(debt, points)
    assert after.debt == max(debt - points, 0)
    assert after.lots == ({DATES[0]: points - debt} if points > debt else {})
    assert after.balance == points - debt


def test_given_a_floor_clawback_beyond_the_lots_then_balance_stops_at_zero_and_unrecovered_is_reported():
    wallet = Wallet(lots={DATES[0]: 30, DATES[1]: 20})
    after, movement = ledger.claw_back(wallet, 80, prefer=DATES[1], allow_negative=False)
    assert after.balance == 0
    assert after.debt == 0
    assert movement.points == -50
    assert movement.unrecovered == 30
    assert movement.by_lot == {DATES[1]: -20, DATES[0]: -30}


def test_given_a_negative_clawback_beyond_the_lots_then_the_shortfall_is_a_debt():
    wallet = Wallet(lots={DATES[0]: 30})
    after, movement = ledger.claw_back(wallet, 80)
    assert after.balance == -50
    assert after.debt == 50
    assert after.lots == {}
    assert movement.points == -80
    assert movement.debt_added == 50


@pytest.mark.parametrize("call", [ledger.credit, ledger.debit, ledger.claw_back])
@pytest.mark.parametrize("points", [0, -5])
def test_given_a_non_positive_amount_when_moving_points_then_value_error(call, points):
    args = (Wallet(lots={DATES[0]: 10}), points)
    with pytest.raises(ValueError, match="positive"):
        call(*args, DATES[0]) if call is ledger.credit else call(*args)


def test_given_pending_lots_when_some_are_due_then_only_those_are_listed():
    due = PendingLot("TXN#a", 10, RELEASE_AT, DATES[0])
    later = PendingLot("TXN#b", 20, RELEASE_AT + timedelta(days=1), DATES[0])
    wallet = ledger.add_pending(ledger.add_pending(Wallet(), due), later)
    assert ledger.due_pending(wallet, RELEASE_AT) == [due]
    assert ledger.due_pending(wallet, RELEASE_AT - timedelta(seconds=1)) == []
    assert wallet.balance == 0
    assert wallet.pending_points == 30


def test_given_pending_lots_of_a_purchase_when_reducing_then_only_that_purchase_shrinks():
    wallet = Wallet(
        pending=(
            PendingLot("TXN#a", 10, RELEASE_AT, DATES[0]),
            PendingLot("TXN#b", 20, RELEASE_AT, DATES[0]),
        )
    )
    after, taken = ledger.reduce_pending(wallet, "TXN#a", 4)
    assert taken == 4
    assert [(p.source_id, p.points) for p in after.pending] == [("TXN#a", 6), ("TXN#b", 20)]
    after, taken = ledger.reduce_pending(after, "TXN#a", 50)
    assert taken == 6
    assert [(p.source_id, p.points) for p in after.pending] == [("TXN#b", 20)]


# ---- points paid, returned by refunds ----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(date_st, points_st, min_size=1),
    st.integers(min_value=0, max_value=3000),
    st.data(),
)
def test_given_lots_that_paid_a_purchase_when_partial_refunds_return_them_then_they_go_back_to_those_lots_latest_first_and_add_up(
    wallet_lots, pay, data
):
    """Spend from a wallet, then return the points paid in any sequence of partial
    returns: each return is exactly what was asked, never to a date that did not pay,
    latest-expiring first, and all of them together give back exactly the lots that paid
    (so the wallet's lots are as before)."""
    wallet = Wallet(lots=wallet_lots)
    pay = min(max(pay, 1), wallet.balance)
    spent, movement = ledger.debit(wallet, pay)
    paid = {d: -p for d, p in movement.by_lot.items()}
    returned_before, total_back = 0, dict.fromkeys(paid, 0)
    while returned_before < pay:
        points = data.draw(st.integers(min_value=1, max_value=pay - returned_before))
        back = ledger.returned_lots(paid, returned_before, points)
        assert sum(back.values()) == points
        assert set(back) <= set(paid)
        assert all(p > 0 for p in back.values())
        # latest first: nothing goes back to a date while a later one still has points out
        for expires_on in back:
            for later in paid:
                if later > expires_on:
                    assert total_back[later] + back.get(later, 0) == paid[later]
        for expires_on, p in back.items():
            total_back[expires_on] += p
            spent, _ = ledger.credit(spent, p, expires_on, counts_as_earned=False)
        assert all(total_back[d] <= paid[d] for d in paid)
        returned_before += points
    assert total_back == paid
    assert spent.lots == wallet.lots


@pytest.mark.parametrize(
    ("returned_before", "points"),
    [(0, 0), (0, -1), (-1, 1), (0, 51), (50, 1), (30, 21)],
)
def test_given_a_return_outside_what_was_paid_then_value_error(returned_before, points):
    with pytest.raises(ValueError, match=r"return is positive|more returned"):
        ledger.returned_lots({DATES[0]: 20, DATES[1]: 30}, returned_before, points)


# ---- expiry dates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earned_on", "months", "expected"),
    [
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year
        (date(2024, 1, 1), 1, date(2024, 2, 29)),
        (date(2023, 2, 15), 12, date(2024, 2, 29)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 12, 15), 1, date(2025, 1, 31)),
        (date(2024, 11, 30), 2, date(2025, 1, 31)),
        (date(2024, 6, 1), 12, date(2025, 6, 30)),
        (date(2024, 6, 30), 24, date(2026, 6, 30)),
        (date(2099, 12, 31), 120, date(2109, 12, 31)),
    ],
)
def test_given_rolling_policy_when_computing_expiry_then_the_last_day_of_the_month_n_months_later(
    earned_on, months, expected
):
    assert ledger.expiry_date(earned_on, "rolling", months) == expected


def test_given_no_policy_when_computing_expiry_then_rolling_twelve_months():
    assert ledger.expiry_date(date(2025, 3, 10)) == date(2026, 3, 31)


@settings(max_examples=300, deadline=None)
@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    st.integers(min_value=1, max_value=120),
)
def test_given_any_day_and_months_when_rolling_then_end_of_the_target_month(earned_on, months):
    expires = ledger.expiry_date(earned_on, "rolling", months)
    assert (expires + timedelta(days=1)).day == 1  # the last day of its month
    elapsed = (expires.year - earned_on.year) * 12 + (expires.month - earned_on.month)
    assert elapsed == months


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_given_next_year_end_policy_when_computing_expiry_then_31_december_of_next_year(
    earned_on,
):
    assert ledger.expiry_date(earned_on, "next_year_end") == date(earned_on.year + 1, 12, 31)


@pytest.mark.parametrize(
    ("earned_on", "expected"),
    [
        (date(2024, 1, 1), date(2025, 12, 31)),
        (date(2024, 12, 31), date(2025, 12, 31)),
        (date(2024, 2, 29), date(2025, 12, 31)),
    ],
)
def test_given_next_year_end_policy_when_earning_on_edge_days_then_31_december_next_year(
    earned_on, expected
):
    assert ledger.expiry_date(earned_on, "next_year_end") == expected


def test_given_an_unknown_policy_when_computing_expiry_then_value_error():
    with pytest.raises(ValueError, match="unknown expiry policy"):
        ledger.expiry_date(date(2024, 1, 1), "weekly")
