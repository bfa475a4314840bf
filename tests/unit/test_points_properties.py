"""Points operations under random sequences, once on the in-memory fake and once on the
DynamoDB repository on DynamoDB Local (the `ledger` fixture, tests/ledgers.py).

A hypothesis state machine drives purchases (earning and paying with points), refunds,
staff adjustments and activities against one member and checks, after every step, that
balance == sum of ledger entries == sum of remaining lots - debt, that no lot is
negative, and that a replayed request changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.errors import BusinessRuleViolation
from tests.helpers import run_machine
from tests.ledgers import Ledger
from tests.unit.test_points_domain import activity, adjustment, context, purchase, refund

# Examples per store: DynamoDB Local answers in milliseconds, the fake in microseconds.
EXAMPLES = {"fake": 100, "dynamodb": 12}


def check_invariants(repo: Ledger, member_id: str) -> None:
    account = repo.account(member_id)
    wallet = account.wallet
    assert account.member.points_balance == wallet.balance
    assert wallet.balance == sum(wallet.lots.values()) - wallet.debt
    total = sum(e.points for e in repo.entries_of(member_id))
    assert total == wallet.balance, (total, wallet)
    assert all(points > 0 for points in wallet.lots.values())
    assert wallet.debt >= 0
    assert wallet.debt == 0 or not wallet.lots


class LedgerMachine(RuleBasedStateMachine):
    repo: Ledger  # set before a run

    @initialize()
    def start(self) -> None:
        self.member_id = self.repo.add_member()
        self.purchases: list[tuple[str, list[int], int]] = []  # id, prices, refunded amount
        self.done: list[tuple[str, Any, tuple[int, dict[str, Any]]]] = []

    def _apply(self, kind: str, command: Any, call: Any) -> None:
        try:
            result = call(command, context(self.repo))
        except BusinessRuleViolation:
            return
        self.done.append((kind, command, result))

    @rule(
        prices=st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=4),
        pay_share=st.sampled_from([0, 0, 10, 50]),
    )
    def buy(self, prices: list[int], pay_share: int) -> None:
        balance = self.repo.balance(self.member_id)
        pay = min(balance, sum(prices) * pay_share // 100) if pay_share else 0
        pay = max(pay, 0)
        txn_id = f"t-{uuid.uuid4().hex[:12]}"
        items = [Item(f"sku-{i}", "general", 1, price) for i, price in enumerate(prices)]
        command = purchase(self.member_id, txn_id, items=items, pay_with_points=pay)
        before = len(self.done)
        self._apply("purchase", command, domain.record_purchase)
        if len(self.done) > before:
            self.purchases.append((txn_id, prices, 0))

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data(), by_items=st.booleans())
    def return_goods(self, data: st.DataObject, by_items: bool) -> None:
        index = data.draw(st.integers(min_value=0, max_value=len(self.purchases) - 1))
        txn_id, prices, _ = self.purchases[index]
        if by_items:
            sku = data.draw(st.integers(min_value=0, max_value=len(prices) - 1))
            items, amount = [(f"sku-{sku}", 1)], None
        else:
            items, amount = None, data.draw(st.integers(min_value=1, max_value=sum(prices)))
        command = refund(
            f"r-{uuid.uuid4().hex[:12]}", transaction_id=txn_id, items=items, amount=amount
        )
        self._apply("refund", command, domain.record_refund)

    @rule(points=st.integers(min_value=-500, max_value=2_000).filter(lambda p: p != 0))
    def adjust(self, points: int) -> None:
        command = adjustment(self.member_id, points, f"a-{uuid.uuid4().hex[:12]}")
        self._apply("adjustment", command, domain.record_adjustment)

    @rule(kind=st.sampled_from(["checkin", "share", "review"]))
    def take_part(self, kind: str) -> None:
        command = activity(self.member_id, f"x-{uuid.uuid4().hex[:12]}", kind)
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
        before = self.repo.entries_of(self.member_id)
        assert calls[kind](command, context(self.repo)) == first
        assert self.repo.entries_of(self.member_id) == before

    @invariant()
    def balances_agree(self) -> None:
        if hasattr(self, "member_id"):
            check_invariants(self.repo, self.member_id)


def test_given_random_operations_then_balance_ledger_and_lots_always_agree(ledger: Ledger):
    LedgerMachine.repo = ledger
    run_machine(LedgerMachine, examples=EXAMPLES[ledger.kind])
