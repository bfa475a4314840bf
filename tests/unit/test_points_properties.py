"""Points operations under random sequences, once on the in-memory fake and once on the
DynamoDB repository on DynamoDB Local (the `ledger` fixture, tests/ledgers.py).

A hypothesis state machine drives purchases (earning and paying with points), refunds,
staff adjustments and activities against one member and checks, after every step, that
balance == sum of ledger entries == sum of remaining lots - debt, that no lot is
negative, and that a replayed request changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.domain.program import ProgramConfig
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.errors import BusinessRuleViolation
from tests.helpers import run_machine
from tests.ledgers import Ledger

# Examples per store: DynamoDB Local answers in milliseconds, the fake in microseconds.
EXAMPLES = {"fake": 100, "dynamodb": 12}


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

    def context(self) -> domain.Context:
        return domain.Context(
            repo=self.repo, program=ProgramConfig(), tiers=DEFAULT_TIERS, now=datetime.now(UTC)
        )

    @initialize()
    def start(self) -> None:
        self.member_id = self.repo.add_member()
        self.purchases: list[tuple[str, list[int], int]] = []  # id, prices, refunded amount
        self.done: list[tuple[str, Any, tuple[int, dict[str, Any]]]] = []

    def _apply(self, kind: str, command: Any, call: Any) -> None:
        try:
            result = call(command, self.context())
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
        before = self.repo.entries_of(self.member_id)
        assert calls[kind](command, self.context()) == first
        assert self.repo.entries_of(self.member_id) == before

    @invariant()
    def balances_agree(self) -> None:
        if hasattr(self, "member_id"):
            check_invariants(self.repo, self.member_id)


def test_given_random_operations_then_balance_ledger_and_lots_always_agree(ledger: Ledger):
    LedgerMachine.repo = ledger
    run_machine(LedgerMachine, examples=EXAMPLES[ledger.kind])
