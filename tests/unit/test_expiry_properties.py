"""Expiry interleaved with earning, spending and refunds at arbitrary dates, once on the
in-memory ledger fake and once on DynamoDB Local (the `ledger` fixture, tests/ledgers.py):
after every step balance == Σ ledger == Σ lots − debt, the ledger's changes per
expiry date are the lots, no lot is negative, the member's expiry-index key names its
earliest lot (and no other date's), spending takes the earliest lot first, no lot dated
on or before the last expiry run survives it, the run expires no date twice, and points
paid that a refund returns go back only to the lots that paid (those past their date
expire at once)."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.dal.ledger import expiry_key
from chalicelib.domain import points as domain
from chalicelib.domain.clock import program_date
from chalicelib.domain.earning import Item
from chalicelib.domain.expiry import expire_member
from chalicelib.domain.program import ProgramConfig
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.errors import BusinessRuleViolation
from tests.helpers import run_machine
from tests.ledgers import Ledger
from tests.unit.test_points_properties import check_invariants

# Examples per store: DynamoDB Local answers in milliseconds, the fake in microseconds.
EXAMPLES = {"fake": 100, "dynamodb": 10}


class ExpiryMachine(RuleBasedStateMachine):
    repo: Ledger  # set before a run

    @initialize(
        start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31))
    )
    def start(self, start: datetime) -> None:
        self.member_id = self.repo.add_member()
        self.now = start.replace(tzinfo=UTC)
        self.lot_dates: set[date] = set()  # every date the member has held a lot on
        self.expired_through: date | None = None
        self.purchases: list[tuple[str, int]] = []
        self.paid: dict[str, dict[date, int]] = {}  # transaction -> lots its points came from

    def ctx(self) -> domain.Context:
        return domain.Context(
            repo=self.repo,
            program=ProgramConfig(),
            tiers=DEFAULT_TIERS,
            now=self.now,
            sleep=lambda s: None,
        )

    @rule(
        amount=st.integers(min_value=100, max_value=80_000),
        pay_share=st.sampled_from([0, 0, 30, 50]),
    )
    def purchase(self, amount: int, pay_share: int) -> None:
        account = self.repo.account(self.member_id)
        pay = max(0, min(account.wallet.balance, amount * pay_share // 100))
        txn = f"t-{uuid.uuid4().hex[:10]}"
        before = {d: p for d, p in account.wallet.lots.items()}
        try:
            _, _body = domain.record_purchase(
                domain.Purchase(
                    transaction_id=txn,
                    store_id="store-001",
                    member_id=self.member_id,
                    occurred_at=self.now,
                    items=[Item("sku", "general", 1, amount)],
                    total=amount,
                    currency="CNY",
                    pay_with_points=pay,
                    request_hash=uuid.uuid4().hex,
                ),
                self.ctx(),
            )
        except BusinessRuleViolation:
            return
        self.purchases.append((txn, amount))
        if pay:
            redeem = next(
                e
                for e in self.repo.entries_of(self.member_id)
                if e.type == "redeem" and e.source_id == txn
            )
            self.paid[txn] = {d: -p for d, p in redeem.lots.items()}
            taken = sorted(redeem.lots)
            # earliest first: every lot taken from, except the last, was emptied, and no
            # earlier lot was left untouched
            untouched_earlier = [d for d in before if d < taken[-1] and d not in redeem.lots]
            assert untouched_earlier == []
            for day in taken[:-1]:
                assert -redeem.lots[day] == before[day]

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        txn, amount = data.draw(st.sampled_from(self.purchases))
        part = data.draw(st.integers(min_value=1, max_value=amount))
        with contextlib.suppress(BusinessRuleViolation):
            domain.record_refund(
                domain.Refund(
                    refund_id=f"r-{uuid.uuid4().hex[:10]}",
                    store_id="store-001",
                    transaction_id=txn,
                    items=None,
                    amount=part,
                    request_hash=uuid.uuid4().hex,
                ),
                self.ctx(),
            )
        # every point paid that came back went to a lot it was taken from, never beyond
        # what that lot gave; one whose date has passed expired in the same commit
        entries = self.repo.entries_of(self.member_id)
        returned: Counter[date] = Counter()
        for entry in entries:
            if entry.type == "reverse" and entry.source_id == txn and entry.points > 0:
                returned.update(entry.lots)
        paid = self.paid.get(txn, {})
        assert all(returned[day] <= paid.get(day, 0) for day in returned), (returned, paid)
        today = program_date(self.now)
        assert all(day >= today for day in self.repo.wallet(self.member_id).lots)

    @rule(days=st.integers(min_value=0, max_value=200))
    def time_passes_and_expiry_runs(self, days: int) -> None:
        self.now += timedelta(days=days)
        through = program_date(self.now) - timedelta(days=1)
        expire_member(self.member_id, through, self.ctx())
        # a rerun of the same day changes nothing
        assert expire_member(self.member_id, through, self.ctx()).points == 0
        self.expired_through = through

    @invariant()
    def consistent(self) -> None:
        if not hasattr(self, "member_id"):
            return
        check_invariants(self.repo, self.member_id)
        account = self.repo.account(self.member_id)
        if self.expired_through is not None:
            assert all(day > self.expired_through for day in account.wallet.lots)
        entries = self.repo.entries_of(self.member_id)
        by_date: Counter[date] = Counter()
        for entry in entries:
            by_date.update(entry.lots)
        assert {d: p for d, p in by_date.items() if p} == account.wallet.lots
        # the expiry index finds the member under its earliest lot's date only
        earliest = min(account.wallet.lots, default=None)
        self.lot_dates.update(account.wallet.lots)
        for day in self.lot_dates:
            due = self.repo.all_due(expiry_key(day, self.member_id))
            assert (self.member_id in due) == (day == earliest), (day, earliest)
        # the daily run expires each date once (points a refund returned to a past date
        # expire again, in the refund's own commit)
        run_expired = Counter(
            day
            for e in entries
            if e.type == "expire" and "returned_by" not in e.detail
            for day in e.lots
        )
        assert all(count == 1 for count in run_expired.values()), run_expired


def test_given_earning_spending_refunds_and_expiry_at_arbitrary_dates_then_the_ledger_holds(
    ledger: Ledger,
):
    ExpiryMachine.repo = ledger
    run_machine(ExpiryMachine, examples=EXAMPLES[ledger.kind])
