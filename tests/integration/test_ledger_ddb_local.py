"""The points ledger on DynamoDB Local: transactions, conditions and races for real.

A hypothesis state machine drives purchases (earning and paying with points), refunds,
staff adjustments and activities against one member and checks, after every step, that
balance == sum of ledger entries == sum of remaining lots - debt, that no lot is
negative, and that a replayed request changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.errors import BusinessRuleViolation
from chalicelib.wiring import services
from tests.helpers import at_once, codes, credit, register_member, run_machine

pytestmark = pytest.mark.integration


def new_member() -> str:
    return register_member(datetime(1990, 1, 1).date(), channel="pos", name="Prop", gender="female")


def context() -> domain.Context:
    svc = services()
    return domain.Context(
        repo=svc.ledger,
        program=svc.program.config(),
        tiers=svc.program.tiers(),
        now=datetime.now(UTC),
    )


def purchase(member_id: str, txn_id: str, unit_prices: list[int], pay: int = 0) -> domain.Purchase:
    items = [Item(f"sku-{i}", "general", 1, price) for i, price in enumerate(unit_prices)]
    document = {"t": txn_id, "m": member_id, "p": unit_prices, "pay": pay}
    return domain.Purchase(
        transaction_id=txn_id,
        store_id="store-001",
        member_id=member_id,
        occurred_at=datetime.now(UTC),
        items=items,
        total=sum(unit_prices),
        currency="CNY",
        pay_with_points=pay,
        request_hash=domain.request_hash(document),
    )


def ledger_sum(member_id: str) -> tuple[int, int]:
    entries, cursor, total, count = [], None, 0, 0
    while True:
        entries, cursor = services().ledger.list_entries(member_id, 100, cursor)
        total += sum(e.points for e in entries)
        count += len(entries)
        if cursor is None:
            return total, count


def check_invariants(member_id: str) -> Any:
    account = services().ledger.load(member_id)
    assert account is not None
    wallet = account.wallet
    total, _ = ledger_sum(member_id)
    assert account.member.points_balance == wallet.balance
    assert wallet.balance == sum(wallet.lots.values()) - wallet.debt
    assert total == wallet.balance, (total, wallet)
    assert all(points > 0 for points in wallet.lots.values())
    assert wallet.debt >= 0
    assert wallet.debt == 0 or not wallet.lots
    return account


@pytest.mark.usefixtures("ddb_local")
class TestLedgerStateMachine:
    def test_given_random_operations_then_balance_ledger_and_lots_always_agree(self, ddb_local):
        run_state_machine()


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.member_id = new_member()
        self.purchases: list[tuple[str, list[int], int]] = []  # id, prices, refunded amount
        self.done: list[tuple[str, Any, tuple[int, dict[str, Any]]]] = []

    def _apply(self, kind: str, command: Any, call: Any) -> None:
        try:
            result = call(command, context())
        except BusinessRuleViolation:
            return
        self.done.append((kind, command, result))

    @rule(
        prices=st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=4),
        pay_share=st.sampled_from([0, 0, 10, 50]),
    )
    def buy(self, prices: list[int], pay_share: int) -> None:
        account = services().ledger.load(self.member_id)
        assert account is not None
        pay = min(account.wallet.balance, sum(prices) * pay_share // 100) if pay_share else 0
        pay = max(pay, 0)
        txn_id = f"t-{uuid.uuid4().hex[:12]}"
        command = purchase(self.member_id, txn_id, prices, pay)
        before = len(self.done)
        self._apply("purchase", command, domain.record_purchase)
        if len(self.done) > before:
            self.purchases.append((txn_id, prices, 0))

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data(), by_items=st.booleans())
    def refund(self, data: st.DataObject, by_items: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.purchases) - 1))
        txn_id, prices, _ = self.purchases[index]
        if by_items:
            sku = data.draw(st.integers(min_value=0, max_value=len(prices) - 1))
            items, amount, document = [(f"sku-{sku}", 1)], None, {"sku": sku}
        else:
            amount = data.draw(st.integers(min_value=1, max_value=sum(prices)))
            items, document = None, {"amount": amount}
        refund_id = f"r-{uuid.uuid4().hex[:12]}"
        command = domain.Refund(
            refund_id=refund_id,
            store_id="store-001",
            transaction_id=txn_id,
            items=items,
            amount=amount,
            request_hash=domain.request_hash({"id": refund_id, **document}),
        )
        self._apply("refund", command, domain.record_refund)

    @rule(points=st.integers(min_value=-500, max_value=2_000).filter(lambda p: p != 0))
    def adjust(self, points: int) -> None:
        adjustment_id = f"a-{uuid.uuid4().hex[:12]}"
        command = domain.Adjustment(
            member_id=self.member_id,
            adjustment_id=adjustment_id,
            points=points,
            reason="property test",
            actor="staff-test",
            request_hash=domain.request_hash({"id": adjustment_id, "p": points}),
        )
        self._apply("adjustment", command, domain.record_adjustment)

    @rule(kind=st.sampled_from(["checkin", "share", "review"]))
    def activity(self, kind: str) -> None:
        activity_id = f"x-{uuid.uuid4().hex[:12]}"
        command = domain.Activity(
            member_id=self.member_id,
            activity_id=activity_id,
            type=kind,
            request_hash=domain.request_hash({"id": activity_id, "t": kind}),
        )
        self._apply("activity", command, domain.record_activity)

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        kind, command, first = data.draw(st.sampled_from(self.done))
        calls = {
            "purchase": domain.record_purchase,
            "refund": domain.record_refund,
            "adjustment": domain.record_adjustment,
            "activity": domain.record_activity,
        }
        before = ledger_sum(self.member_id)
        assert calls[kind](command, context()) == first
        assert ledger_sum(self.member_id) == before

    @invariant()
    def balances_agree(self) -> None:
        if hasattr(self, "member_id"):
            check_invariants(self.member_id)


def run_state_machine() -> None:
    run_machine(LedgerMachine, examples=12)


def test_given_50_concurrent_submissions_of_one_transaction_then_it_is_credited_once(ddb_local):
    member_id = new_member()
    command = purchase(member_id, f"storm-{uuid.uuid4().hex[:8]}", [12_345, 6_789])
    outcomes = at_once([lambda: domain.record_purchase(command, context())] * 50)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    results = [o for o in outcomes if not isinstance(o, BaseException)]

    assert errors == []
    assert len(results) == 50
    assert all(result == results[0] for result in results)
    account = check_invariants(member_id)
    assert (
        account.wallet.balance == results[0][1]["points_earned"] == 190
    )  # 123 + 67, floored per item
    assert ledger_sum(member_id) == (190, 1)


def test_given_a_balance_for_one_payment_when_20_pay_at_once_then_exactly_one_succeeds(ddb_local):
    member_id = new_member()
    credit(member_id, 1_000, datetime.now(UTC))
    bills = [
        purchase(member_id, f"pay-{uuid.uuid4().hex[:8]}-{n}", [10_000], pay=1_000)
        for n in range(20)
    ]
    outcomes = codes(at_once([lambda b=b: domain.record_purchase(b, context()) for b in bills]))

    assert outcomes.count("ok") == 1, outcomes
    assert outcomes.count("INSUFFICIENT_POINTS") == 19, outcomes
    account = check_invariants(member_id)
    # 1000 paid; the successful purchase earned on its 9000 fen paid in cash: 90 points
    assert account.wallet.balance == 90
    assert account.wallet.balance >= 0


def test_given_a_refund_after_the_points_were_spent_then_the_balance_goes_negative_and_earning_repays(
    ddb_local,
):
    member_id = new_member()
    first = purchase(member_id, f"neg-{uuid.uuid4().hex[:8]}", [50_000])
    domain.record_purchase(first, context())  # 500 points
    domain.record_purchase(
        purchase(member_id, f"spend-{uuid.uuid4().hex[:8]}", [100_000], pay=500), context()
    )  # spends 500, earns 995
    domain.record_adjustment(
        domain.Adjustment(
            member_id=member_id,
            adjustment_id=f"drain-{member_id}",
            points=-995,
            reason="test drain",
            actor="test",
            request_hash="0d",
        ),
        context(),
    )
    status, body = domain.record_refund(
        domain.Refund(
            refund_id="r-all",
            store_id="store-001",
            transaction_id=first.transaction_id,
            items=None,
            amount=50_000,
            request_hash="0e",
        ),
        context(),
    )
    assert status == 201
    assert body["points_reversed"] == 500
    assert body["balance"] == -500
    check_invariants(member_id)
    domain.record_purchase(
        purchase(member_id, f"repay-{uuid.uuid4().hex[:8]}", [80_000]), context()
    )
    account = check_invariants(member_id)
    assert account.wallet.balance == 300
    assert account.wallet.debt == 0
