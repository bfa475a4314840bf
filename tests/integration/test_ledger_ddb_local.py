"""The points ledger on DynamoDB Local: transactions, conditions and races for real.

Many submissions of one purchase at once, and many payments racing for one balance,
on threads. (The same domain suites run on DynamoDB Local and on the in-memory fake
through the `ledger` fixture: tests/unit/test_points_domain.py, test_points_properties.py.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.wiring import services
from tests.helpers import at_once, codes, credit, register_member

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
