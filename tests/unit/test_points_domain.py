"""Points operations (chalicelib/domain/points.py) on the ledger repository, once on the
in-memory fake and once on the DynamoDB repository on DynamoDB Local (the `ledger`
fixture, tests/ledgers.py): the same tests on both, so the fake cannot drift.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from chalicelib import ids
from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.domain.ledger import Wallet
from chalicelib.domain.members import Member
from chalicelib.domain.points import (
    Activity,
    Adjustment,
    Context,
    Purchase,
    Refund,
    points_view,
    record_activity,
    record_adjustment,
    record_purchase,
    record_refund,
    release_pending,
    request_hash,
)
from chalicelib.domain.program import ProgramConfig
from chalicelib.domain.records import (
    Commit,
    MemberRequestRef,
    PurchaseRef,
    RequestRecord,
    VersionConflict,
)
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.errors import (
    BusinessRuleViolation,
    Conflict,
    InvalidInput,
    NotFound,
    Unavailable,
)
from tests.ledgers import Ledger

NOW = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
STORE = "store-001"


class FlakyLedger(Ledger):
    """Commits fail with VersionConflict the first `failures` times."""

    def __init__(self, ledger: Ledger, failures: int) -> None:
        super().__init__(ledger.store, ledger.kind)
        self.failures = failures
        self.attempts = 0

    def commit(self, commit: Commit) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise VersionConflict()
        super().commit(commit)


def assert_ledger_matches_wallet(repo: Ledger, member_id: str) -> None:
    """The ledger is the history of the wallet: its sum is the balance, its per-date
    changes are the lots, and the newest entry carries the balance."""
    wallet = repo.wallet(member_id)
    entries = repo.entries_of(member_id)
    assert sum(e.points for e in entries) == wallet.balance
    lots: dict[date, int] = defaultdict(int)
    for entry in entries:
        for expires_on, change in entry.lots.items():
            lots[expires_on] += change
    assert {d: p for d, p in lots.items() if p} == wallet.lots
    if entries:
        assert entries[-1].balance_after == wallet.balance


# ---- builders -----------------------------------------------------------------------------


def context(
    repo: Ledger,
    now: datetime = NOW,
    program: ProgramConfig | None = None,
    sleeps: list[float] | None = None,
) -> Context:
    return Context(
        repo=repo,
        program=program or ProgramConfig(),
        tiers=DEFAULT_TIERS,
        now=now,
        sleep=(lambda s: sleeps.append(s)) if sleeps is not None else (lambda s: None),
    )


BASKET = (Item("tea", "drinks", 2, 2500), Item("cake", "bakery", 1, 4800))  # 98 yuan


def purchase(
    member_id: str,
    transaction_id: str = "t1",
    *,
    items: tuple[Item, ...] | list[Item] = BASKET,
    total: int | None = None,
    pay_with_points: int = 0,
    occurred_at: datetime = NOW,
    store_id: str = STORE,
) -> Purchase:
    total = sum(i.amount for i in items) if total is None else total
    document = {
        "transaction_id": transaction_id,
        "store_id": store_id,
        "member_id": member_id,
        "occurred_at": occurred_at.isoformat(),
        "items": [[i.sku, i.category, i.quantity, i.unit_price] for i in items],
        "total": total,
        "pay_with_points": pay_with_points,
    }
    return Purchase(
        transaction_id=transaction_id,
        store_id=store_id,
        member_id=member_id,
        occurred_at=occurred_at,
        items=list(items),
        total=total,
        currency="CNY",
        pay_with_points=pay_with_points,
        request_hash=request_hash(document),
    )


def refund(
    refund_id: str,
    *,
    transaction_id: str = "t1",
    items: list[tuple[str, int]] | None = None,
    amount: int | None = None,
    store_id: str = STORE,
) -> Refund:
    document = {"refund_id": refund_id, "items": items, "amount": amount}
    return Refund(
        refund_id=refund_id,
        store_id=store_id,
        transaction_id=transaction_id,
        items=items,
        amount=amount,
        request_hash=request_hash(document),
    )


def adjustment(
    member_id: str, points: int, adjustment_id: str = "adj-1", actor: str = "staff-ops"
) -> Adjustment:
    return Adjustment(
        member_id=member_id,
        adjustment_id=adjustment_id,
        points=points,
        reason="goodwill",
        actor=actor,
        request_hash=request_hash({"id": adjustment_id, "points": points}),
    )


def activity(
    member_id: str,
    activity_id: str,
    kind: str,
    referrer: str | None = None,
    profile: Member | None = None,
) -> Activity:
    return Activity(
        member_id=member_id,
        activity_id=activity_id,
        type=kind,
        request_hash=request_hash({"id": activity_id, "type": kind, "referrer": referrer}),
        referrer_member_id=referrer,
        profile=profile,
    )


def profile_of(repo: Ledger, member_id: str) -> Member:
    """The member with its personal fields, as the API reads it for `profile_completed`
    (the DynamoDB ledger reads the wallet without decrypting them)."""
    if repo.kind == "dynamodb":
        from chalicelib.wiring import services

        found = services().members.get(member_id)
        assert found is not None
        return found
    return repo.account(member_id).member


def grant(repo: Ledger, member_id: str, points: int, adjustment_id: str = "seed") -> None:
    record_adjustment(adjustment(member_id, points, adjustment_id), context(repo))


@pytest.fixture
def repo(ledger: Ledger) -> Ledger:
    """The ledger of the test, on each store in turn (tests/conftest.py)."""
    return ledger


@pytest.fixture
def member(repo: Ledger) -> str:
    return repo.add_member()


# ---- purchases ----------------------------------------------------------------------------


def test_given_a_member_when_a_purchase_is_recorded_then_points_are_earned_and_written_once(
    repo, member
):
    status, body = record_purchase(purchase(member), context(repo))
    assert status == 201
    assert body["points_earned"] == 98
    assert body["points_spent"] == 0
    assert body["cash_due"] == 9800
    assert body["balance"] == 98
    assert body["tier"] == {"code": "member", "name": "普通", "member_discount_pct": 0}
    assert body["coupons_applied"] == []
    assert repo.balance(member) == 98
    assert repo.wallet(member).lifetime_earned == 98
    [earn] = repo.entries_of(member)
    assert (earn.type, earn.points, earn.source, earn.source_id) == (
        "earn",
        98,
        "transaction",
        "t1",
    )
    assert earn.lots == {date(2026, 6, 30): 98}  # rolling: end of the month 12 months later
    assert repo.account(member).first_purchase_at == NOW
    assert_ledger_matches_wallet(repo, member)


def test_given_a_gold_member_when_buying_then_the_tier_multiplier_applies(repo):
    member_id = repo.add_member(tier_code="gold")
    _, body = record_purchase(purchase(member_id), context(repo))
    assert body["points_earned"] == 147
    assert body["tier"]["code"] == "gold"
    assert body["tier"]["member_discount_pct"] == 5


def test_given_a_recorded_purchase_when_replayed_with_the_same_body_then_the_first_answer_and_no_second_credit(
    repo, member
):
    first = record_purchase(purchase(member), context(repo))
    again = record_purchase(purchase(member), context(repo, now=NOW + timedelta(minutes=3)))
    assert again == first
    assert repo.balance(member) == 98
    assert len(repo.entries_of(member)) == 1
    assert len(repo.commits) == 1


def test_given_a_recorded_purchase_when_the_same_id_comes_with_another_body_then_idempotency_conflict(
    repo, member
):
    record_purchase(purchase(member), context(repo))
    other = purchase(member, items=[Item("tea", "drinks", 3, 2500)])
    with pytest.raises(Conflict) as excinfo:
        record_purchase(other, context(repo))
    assert excinfo.value.code == "IDEMPOTENCY_CONFLICT"
    assert repo.balance(member) == 98
    assert len(repo.commits) == 1


def test_given_a_purchase_id_reused_with_another_body_then_the_conflict_names_the_transaction_id(
    repo, member
):
    record_purchase(purchase(member), context(repo))
    with pytest.raises(Conflict) as excinfo:
        record_purchase(purchase(member, items=[Item("tea", "drinks", 3, 2500)]), context(repo))
    assert excinfo.value.details == {"id": "t1"}


def test_given_the_same_transaction_id_at_another_store_then_it_is_another_purchase(repo, member):
    record_purchase(purchase(member), context(repo))
    status, _ = record_purchase(purchase(member, store_id="store-002"), context(repo))
    assert status == 201
    assert repo.balance(member) == 196


@pytest.mark.parametrize("stale", [False, True])
def test_given_a_purchase_paid_with_points_when_replayed_after_the_member_spent_the_rest_then_the_first_answer_not_insufficient_points(
    repo, stale
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 1000}))
    first = record_purchase(purchase(member_id, pay_with_points=1000), context(repo))
    assert first[1]["points_spent"] == 1000
    record_adjustment(adjustment(member_id, -repo.balance(member_id)), context(repo))
    assert repo.balance(member_id) == 0
    # stale: the first, eventually consistent read of the request record misses it, so
    # the request is planned again against a wallet that can no longer pay
    repo.stale_reads = stale
    again = record_purchase(purchase(member_id, pay_with_points=1000), context(repo))
    assert again == first
    assert repo.balance(member_id) == 0


def test_given_a_stale_read_when_a_replay_races_its_own_first_commit_then_request_exists_gives_the_first_answer(
    repo, member
):
    first = record_purchase(purchase(member), context(repo))
    repo.stale_reads = True
    # Planned again on the current version: the commit's request condition fails.
    again = record_purchase(purchase(member), context(repo))
    assert again == first
    assert repo.balance(member) == 98


def test_given_an_accepted_purchase_when_the_pos_retries_after_it_became_too_old_then_the_first_answer(
    repo, member
):
    old = NOW - timedelta(days=29)
    first = record_purchase(purchase(member, occurred_at=old), context(repo))
    again = record_purchase(
        purchase(member, occurred_at=old), context(repo, now=NOW + timedelta(days=2))
    )
    assert again == first


def test_given_a_total_that_is_not_the_sum_of_the_items_then_total_mismatch_and_nothing_written(
    repo, member
):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_purchase(purchase(member, total=9900), context(repo))
    assert excinfo.value.code == "TOTAL_MISMATCH"
    assert excinfo.value.details == {"total": 9900, "items_sum": 9800}
    assert repo.commits == []


@pytest.mark.parametrize(
    ("occurred_at", "code"),
    [
        (NOW + timedelta(minutes=5, seconds=1), "INVALID_OCCURRED_AT"),
        (NOW + timedelta(days=1), "INVALID_OCCURRED_AT"),
        (NOW - timedelta(days=30, seconds=1), "TRANSACTION_TOO_OLD"),
        (NOW - timedelta(days=365), "TRANSACTION_TOO_OLD"),
    ],
)
def test_given_an_occurred_at_outside_the_accepted_window_then_422_and_nothing_written(
    repo, member, occurred_at, code
):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_purchase(purchase(member, occurred_at=occurred_at), context(repo))
    assert excinfo.value.code == code
    assert repo.commits == []


@pytest.mark.parametrize(
    "occurred_at",
    [NOW + timedelta(minutes=5), NOW - timedelta(days=30), NOW - timedelta(days=29, hours=23)],
)
def test_given_an_occurred_at_on_the_edge_of_the_window_then_accepted(repo, member, occurred_at):
    status, _ = record_purchase(purchase(member, occurred_at=occurred_at), context(repo))
    assert status == 201


def test_given_an_unknown_member_when_buying_then_member_not_found(repo):
    with pytest.raises(NotFound) as excinfo:
        record_purchase(purchase("mbr_nobody"), context(repo))
    assert excinfo.value.code == "MEMBER_NOT_FOUND"


def test_given_a_member_with_points_when_paying_with_points_then_the_cash_due_drops_and_only_cash_earns(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 3000}))
    _, body = record_purchase(purchase(member_id, pay_with_points=2000), context(repo))
    assert body["points_spent"] == 2000
    assert body["points_value"] == 2000  # 100 points = ¥1 = 100 fen
    assert body["cash_due"] == 7800
    # each item keeps its share of the cash, floored: 5000 * 78/98 -> 39, 4800 * 78/98 -> 38
    assert body["points_earned"] == 77
    assert body["balance"] == 3000 - 2000 + 77
    redeem = repo.entries_of(member_id, "redeem")
    assert [e.points for e in redeem] == [-2000]
    assert redeem[0].lots == {date(2026, 1, 31): -2000}


def test_given_too_few_points_when_paying_with_points_then_insufficient_points_and_nothing_written(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 500}))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_purchase(purchase(member_id, pay_with_points=600), context(repo))
    assert excinfo.value.code == "INSUFFICIENT_POINTS"
    assert excinfo.value.details == {"requested": 600, "available": 500}
    assert repo.commits == []
    assert repo.request(PurchaseRef(STORE, "t1")) is None


def test_given_the_default_50_percent_cap_when_points_would_pay_more_than_half_then_points_payment_cap(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 10_000}))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_purchase(purchase(member_id, pay_with_points=4901), context(repo))
    assert excinfo.value.code == "POINTS_PAYMENT_CAP"
    assert excinfo.value.details["max_value_fen"] == 4900
    assert excinfo.value.details["max_points"] == 4900
    assert excinfo.value.details["cap_pct"] == 50
    assert repo.commits == []
    _, body = record_purchase(purchase(member_id, pay_with_points=4900), context(repo))
    assert body["cash_due"] == 4900


def test_given_a_payment_rate_whose_value_is_fractional_then_invalid_points_amount(repo):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 10_000}))
    program = ProgramConfig(points_per_yuan_payment=300)  # 3 points = 1 fen
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_purchase(purchase(member_id, pay_with_points=100), context(repo, program=program))
    assert excinfo.value.code == "INVALID_POINTS_AMOUNT"
    assert repo.commits == []
    _, body = record_purchase(
        purchase(member_id, pay_with_points=300), context(repo, program=program)
    )
    assert body["points_value"] == 100
    assert body["cash_due"] == 9700


# ---- pending window -----------------------------------------------------------------------

PENDING = ProgramConfig(pending_days=7)


def test_given_a_pending_window_when_buying_then_points_are_pending_not_spendable(repo, member):
    _, body = record_purchase(purchase(member), context(repo, program=PENDING))
    assert body["points_earned"] == 98
    assert body["points_pending"] == 98
    assert body["balance"] == 0
    view = points_view(repo.account(member))
    assert view["balance"] == 0
    assert view["pending"] == 98
    assert view["pending_releases"] == [{"release_at": "2025-06-25T04:00:00.000Z", "points": 98}]
    assert repo.entries_of(member) == []


def test_given_pending_points_when_the_window_has_not_passed_then_nothing_is_released(repo, member):
    record_purchase(purchase(member), context(repo, program=PENDING))
    early = NOW + timedelta(days=7) - timedelta(seconds=1)
    account = release_pending(member, context(repo, now=early, program=PENDING))
    assert account.wallet.balance == 0
    assert account.wallet.pending_points == 98
    assert len(repo.commits) == 1


def test_given_pending_points_when_7_days_have_passed_then_release_pending_credits_an_earn_entry(
    repo, member
):
    record_purchase(purchase(member), context(repo, program=PENDING))
    account = release_pending(member, context(repo, now=NOW + timedelta(days=7), program=PENDING))
    assert account.wallet.balance == 98
    assert account.wallet.pending_points == 0
    assert account.wallet.lifetime_earned == 98
    [released] = repo.entries_of(member)
    assert released.type == "earn"
    assert released.points == 98
    assert released.lots == {date(2026, 6, 30): 98}
    assert_ledger_matches_wallet(repo, member)
    # reading again releases nothing more
    again = release_pending(member, context(repo, now=NOW + timedelta(days=8), program=PENDING))
    assert again.wallet.balance == 98
    assert len(repo.entries_of(member)) == 1


def test_given_pending_points_when_the_next_operation_comes_after_the_window_then_it_releases_them_first(
    repo, member
):
    record_purchase(purchase(member), context(repo, program=PENDING))
    later = context(repo, now=NOW + timedelta(days=8), program=PENDING)
    _, body = record_adjustment(adjustment(member, -98), later)
    assert body["balance"] == 0
    assert [e.type for e in repo.entries_of(member)] == ["earn", "adjust"]


def test_given_pending_points_when_refunded_before_release_then_the_pending_points_shrink(
    repo, member
):
    record_purchase(purchase(member), context(repo, program=PENDING))
    _, body = record_refund(
        refund("r1", items=[("tea", 1)]), context(repo, now=NOW + timedelta(days=1))
    )
    assert body["points_reversed"] == 25
    assert repo.wallet(member).pending_points == 73
    assert repo.balance(member) == 0
    assert repo.entries_of(member) == []  # nothing spendable moved
    account = release_pending(member, context(repo, now=NOW + timedelta(days=7), program=PENDING))
    assert account.wallet.balance == 73
    assert_ledger_matches_wallet(repo, member)


def test_given_pending_points_when_fully_refunded_before_release_then_nothing_is_ever_credited(
    repo, member
):
    record_purchase(purchase(member), context(repo, program=PENDING))
    record_refund(refund("r1", amount=9800), context(repo, now=NOW + timedelta(days=1)))
    assert repo.wallet(member).pending == ()
    account = release_pending(member, context(repo, now=NOW + timedelta(days=7), program=PENDING))
    assert account.wallet.balance == 0
    assert repo.wallet(member).debt == 0


def test_given_a_return_window_longer_than_the_expiry_when_released_then_the_points_expire_at_once(
    repo, member
):
    program = ProgramConfig(pending_days=90, expiry_months=1)
    record_purchase(purchase(member), context(repo, program=program))
    released = release_pending(member, context(repo, now=NOW + timedelta(days=90), program=program))
    assert released.wallet.balance == 0
    assert released.wallet.lots == {}
    assert [(e.type, e.points) for e in repo.entries_of(member)] == [("earn", 98), ("expire", -98)]
    assert_ledger_matches_wallet(repo, member)


# ---- refunds ------------------------------------------------------------------------------

THREE_TEAS = (Item("tea", "drinks", 3, 333), Item("cake", "bakery", 1, 4800))  # 9 + 48 points


def test_given_a_purchase_when_refunding_items_then_exactly_the_points_they_earned(repo, member):
    record_purchase(purchase(member, items=THREE_TEAS), context(repo))
    assert repo.balance(member) == 57
    _, body = record_refund(refund("r1", items=[("cake", 1)]), context(repo))
    assert body == {
        "refund_id": "r1",
        "transaction_id": "t1",
        "amount": 4800,
        "points_reversed": 48,
        "points_returned": 0,
        "balance": 9,
    }
    [reverse] = repo.entries_of(member, "reverse")
    assert reverse.points == -48
    assert_ledger_matches_wallet(repo, member)


def test_given_several_partial_item_refunds_then_they_sum_to_the_item_points_and_never_beyond(
    repo, member
):
    record_purchase(purchase(member, items=THREE_TEAS), context(repo))
    reversed_points = [
        record_refund(refund(f"r{n}", items=[("tea", 1)]), context(repo))[1]["points_reversed"]
        for n in range(3)
    ]
    assert reversed_points == [3, 3, 3]
    assert sum(reversed_points) == 9
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_refund(refund("r4", items=[("tea", 1)]), context(repo))
    assert excinfo.value.code == "REFUND_EXCEEDS_PURCHASE"
    assert repo.balance(member) == 48
    purchase_record = repo.request(PurchaseRef(STORE, "t1"))
    assert purchase_record.data["refunded_qty"] == [3, 0]
    assert purchase_record.data["points_reversed"] == 9
    assert_ledger_matches_wallet(repo, member)


def test_given_more_units_than_bought_in_one_refund_then_refund_exceeds_purchase_and_nothing_written(
    repo, member
):
    record_purchase(purchase(member, items=THREE_TEAS), context(repo))
    commits = len(repo.commits)
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_refund(refund("r1", items=[("tea", 4)]), context(repo))
    assert excinfo.value.code == "REFUND_EXCEEDS_PURCHASE"
    assert len(repo.commits) == commits
    assert repo.balance(member) == 57


def test_given_a_sku_not_in_the_purchase_when_refunding_then_unknown_item(repo, member):
    record_purchase(purchase(member), context(repo))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_refund(refund("r1", items=[("coffee", 1)]), context(repo))
    assert excinfo.value.code == "UNKNOWN_ITEM"
    assert excinfo.value.details == {"sku": "coffee"}


def test_given_an_unknown_transaction_when_refunding_then_transaction_not_found(repo, member):
    record_purchase(purchase(member), context(repo))
    with pytest.raises(NotFound) as excinfo:
        record_refund(refund("r1", transaction_id="nope", amount=100), context(repo))
    assert excinfo.value.code == "TRANSACTION_NOT_FOUND"
    with pytest.raises(NotFound):
        record_refund(refund("r1", store_id="store-002", amount=100), context(repo))


def test_given_a_purchase_when_refunding_an_amount_then_points_are_reversed_in_proportion(
    repo, member
):
    record_purchase(purchase(member), context(repo))
    _, body = record_refund(refund("r1", amount=4900), context(repo))
    assert body["points_reversed"] == 49
    _, body = record_refund(refund("r2", amount=2450), context(repo))
    assert body["points_reversed"] == 24  # 98 * 7350 // 9800 - 49
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_refund(refund("r3", amount=2451), context(repo))
    assert excinfo.value.code == "REFUND_EXCEEDS_PURCHASE"
    _, body = record_refund(refund("r4", amount=2450), context(repo))
    assert body["points_reversed"] == 25
    assert repo.balance(member) == 0
    assert_ledger_matches_wallet(repo, member)


def test_given_a_purchase_paid_partly_with_points_when_fully_refunded_then_everything_is_reversed_and_the_points_paid_return(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 3000}))
    _, bought = record_purchase(purchase(member_id, pay_with_points=2000), context(repo))
    assert bought["balance"] == 1077
    _, body = record_refund(refund("r1", amount=9800), context(repo))
    assert body["points_reversed"] == 77
    assert body["points_returned"] == 2000
    assert body["balance"] == 3000
    assert repo.balance(member_id) == 3000
    assert repo.wallet(member_id).lifetime_earned == 77  # points returned are not earned
    record = repo.request(PurchaseRef(STORE, "t1"))
    assert record.data["points_reversed"] == 77
    assert record.data["points_returned"] == 2000
    with pytest.raises(BusinessRuleViolation):
        record_refund(refund("r2", amount=1), context(repo))


def test_given_a_purchase_paid_with_points_when_refunding_half_then_half_the_points_paid_return(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 3000}))
    record_purchase(purchase(member_id, pay_with_points=2000), context(repo))
    _, body = record_refund(refund("r1", amount=4900), context(repo))
    assert body["points_returned"] == 1000
    assert body["points_reversed"] == 38  # 77 * 4900 // 9800


JUNE, SEPTEMBER = date(2025, 6, 30), date(2025, 9, 30)  # lots that expire after NOW
PURCHASE_EXPIRES = date(2026, 6, 30)  # what the purchase earns at NOW


def member_paying_from_two_lots(repo: Ledger) -> str:
    """300 points expiring in June, 3000 in September; then 2000 paid at the till: the
    June lot and 1700 of September's."""
    member_id = repo.add_member()
    for adjustment_id, points, earned in (
        ("june", 300, datetime(2024, 6, 10, tzinfo=UTC)),
        ("september", 3000, datetime(2024, 9, 10, tzinfo=UTC)),
    ):
        record_adjustment(adjustment(member_id, points, adjustment_id), context(repo, earned))
    assert repo.wallet(member_id).lots == {JUNE: 300, SEPTEMBER: 3000}
    record_purchase(purchase(member_id, pay_with_points=2000), context(repo))
    return member_id


def test_given_a_purchase_paid_with_points_then_its_record_remembers_the_lots_that_paid(repo):
    member_paying_from_two_lots(repo)
    record = repo.request(PurchaseRef(STORE, "t1"))
    assert record.data["paid_lots"] == {"2025-06-30": 300, "2025-09-30": 1700}
    unpaid = repo.add_member()
    record_purchase(purchase(unpaid, "t2"), context(repo))
    assert "paid_lots" not in repo.request(PurchaseRef(STORE, "t2")).data


def test_given_a_purchase_paid_from_two_lots_when_fully_refunded_then_the_points_go_back_with_their_own_expiry_dates(
    repo,
):
    member_id = member_paying_from_two_lots(repo)

    _, body = record_refund(refund("r1", amount=9800), context(repo, now=NOW + timedelta(days=1)))

    assert body["points_returned"] == 2000
    assert repo.wallet(member_id).lots == {JUNE: 300, SEPTEMBER: 3000}  # no fresh date
    returned = [e for e in repo.entries_of(member_id, "reverse") if e.points > 0]
    assert [(e.lots, e.detail["expires_on"]) for e in returned] == [
        ({JUNE: 300}, "2025-06-30"),
        ({SEPTEMBER: 1700}, "2025-09-30"),
    ]
    assert_ledger_matches_wallet(repo, member_id)


def test_given_partial_refunds_of_a_points_paid_purchase_then_the_latest_expiring_points_go_back_first_and_all_add_up(
    repo,
):
    member_id = member_paying_from_two_lots(repo)

    _, half = record_refund(refund("r1", amount=4900), context(repo))
    assert half["points_returned"] == 1000
    assert repo.wallet(member_id).lots[SEPTEMBER] == 1300 + 1000
    assert JUNE not in repo.wallet(member_id).lots  # still spent: it went first

    _, rest = record_refund(refund("r2", amount=4900), context(repo))
    assert rest["points_returned"] == 1000
    assert repo.wallet(member_id).lots == {JUNE: 300, SEPTEMBER: 3000}
    assert repo.request(PurchaseRef(STORE, "t1")).data["points_returned"] == 2000
    assert_ledger_matches_wallet(repo, member_id)


def test_given_a_lot_that_expired_since_the_purchase_when_refunded_then_its_points_come_back_and_expire_at_once(
    repo,
):
    member_id = member_paying_from_two_lots(repo)
    after_june = datetime(2025, 7, 5, 4, 0, tzinfo=UTC)

    _, body = record_refund(refund("r1", amount=9800), context(repo, now=after_june))

    assert body["points_returned"] == 2000
    assert body["balance"] == 3300 - 300  # June's 300 are past their date
    assert repo.wallet(member_id).lots == {SEPTEMBER: 3000}
    kinds = [(e.type, e.points, e.lots) for e in repo.entries_of(member_id)][-4:]
    assert kinds == [
        ("reverse", -77, {PURCHASE_EXPIRES: -77}),
        ("reverse", 300, {JUNE: 300}),
        ("expire", -300, {JUNE: -300}),
        ("reverse", 1700, {SEPTEMBER: 1700}),
    ]
    expired = repo.entries_of(member_id, "expire")[-1]
    assert expired.detail == {"expired_on": "2025-06-30", "returned_by": "r1"}
    assert_ledger_matches_wallet(repo, member_id)


def test_given_a_purchase_recorded_before_it_kept_its_lots_when_refunded_then_the_points_get_the_purchases_expiry_not_a_fresh_one(
    repo,
):
    member_id = member_paying_from_two_lots(repo)
    old = repo.request(PurchaseRef(STORE, "t1"))
    repo.put_request(replace(old, data={k: v for k, v in old.data.items() if k != "paid_lots"}))
    a_year_later = NOW + timedelta(days=300)

    record_refund(refund("r1", amount=9800), context(repo, now=a_year_later))

    # the purchase's own date (2026-06-30), not the refund's (2027-04-30)
    assert repo.wallet(member_id).lots[PURCHASE_EXPIRES] == 2000
    assert_ledger_matches_wallet(repo, member_id)


def test_given_items_refunded_one_by_one_when_the_last_goes_then_every_point_is_reversed(
    repo, member
):
    record_purchase(purchase(member, items=THREE_TEAS), context(repo))
    for n, (sku, qty) in enumerate([("tea", 2), ("cake", 1), ("tea", 1)]):
        record_refund(refund(f"r{n}", items=[(sku, qty)]), context(repo))
    assert repo.balance(member) == 0
    record = repo.request(PurchaseRef(STORE, "t1"))
    assert record.data["refunded_amount"] == record.data["total"]
    assert record.data["points_reversed"] == 57


def test_given_a_recorded_refund_when_replayed_then_the_first_answer_and_no_second_reversal(
    repo, member
):
    record_purchase(purchase(member), context(repo))
    first = record_refund(refund("r1", items=[("tea", 1)]), context(repo))
    again = record_refund(refund("r1", items=[("tea", 1)]), context(repo))
    assert again == first
    assert repo.balance(member) == 73
    repo.stale_reads = True
    assert record_refund(refund("r1", items=[("tea", 1)]), context(repo)) == first
    assert repo.balance(member) == 73
    with pytest.raises(Conflict) as excinfo:
        record_refund(refund("r1", items=[("tea", 2)]), context(repo))
    assert excinfo.value.code == "IDEMPOTENCY_CONFLICT"
    assert repo.balance(member) == 73


def test_given_the_points_were_spent_when_the_purchase_is_refunded_then_a_debt_that_the_next_earning_repays(
    repo, member
):
    record_purchase(purchase(member), context(repo))
    record_adjustment(adjustment(member, -98), context(repo))
    _, body = record_refund(refund("r1", amount=9800), context(repo))
    assert body["points_reversed"] == 98
    assert body["balance"] == -98
    assert repo.wallet(member).debt == 98
    [reverse] = repo.entries_of(member, "reverse")
    assert reverse.detail["debt_added"] == 98
    assert reverse.balance_after == -98
    # the next purchase earns 100 points: 98 repay the debt, 2 are spendable
    _, body = record_purchase(
        purchase(member, "t2", items=[Item("x", "g", 1, 10_000)]), context(repo)
    )
    assert body["points_earned"] == 100
    assert body["balance"] == 2
    assert repo.wallet(member).debt == 0
    earn = repo.entries_of(member, "earn")[-1]
    assert earn.detail["debt_repaid"] == 98
    assert earn.lots == {date(2026, 6, 30): 2}
    assert_ledger_matches_wallet(repo, member)


def test_given_the_floor_policy_when_a_refund_reverses_spent_points_then_the_balance_stops_at_zero_and_the_loss_is_recorded(
    repo, member
):
    floor = ProgramConfig(clawback_policy="floor")
    record_purchase(purchase(member), context(repo, program=floor))
    record_adjustment(adjustment(member, -90), context(repo, program=floor))
    _, body = record_refund(refund("r1", amount=9800), context(repo, program=floor))
    assert body["balance"] == 0
    assert repo.wallet(member).debt == 0
    [reverse] = repo.entries_of(member, "reverse")
    assert reverse.points == -8
    assert reverse.detail["unrecovered"] == 90
    assert_ledger_matches_wallet(repo, member)


# ---- activities ---------------------------------------------------------------------------


def test_given_a_checkin_when_checking_in_again_the_same_shanghai_day_then_limit_reached(
    repo, member
):
    _, body = record_activity(activity(member, "c1", "checkin"), context(repo))
    assert body == {"activity_id": "c1", "type": "checkin", "points_earned": 5, "balance": 5}
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(
            activity(member, "c2", "checkin"), context(repo, now=NOW + timedelta(hours=11))
        )
    assert excinfo.value.code == "LIMIT_REACHED"
    assert repo.balance(member) == 5


def test_given_a_checkin_at_2359_shanghai_when_checking_in_at_0000_shanghai_the_same_utc_day_then_it_earns(
    repo, member
):
    late = datetime(2025, 6, 18, 15, 59, 59, tzinfo=UTC)  # 23:59:59 on 18 June in Shanghai
    midnight = datetime(2025, 6, 18, 16, 0, tzinfo=UTC)  # 00:00 on 19 June in Shanghai
    record_activity(activity(member, "c1", "checkin"), context(repo, now=late))
    _, body = record_activity(activity(member, "c2", "checkin"), context(repo, now=midnight))
    assert body["points_earned"] == 5
    assert repo.balance(member) == 10
    assert repo.account(member).activity_counts["checkin"] == ("2025-06-19", 1)


def test_given_a_checkin_after_shanghai_midnight_when_checking_in_the_next_utc_day_but_same_shanghai_day_then_limit_reached(
    repo, member
):
    early = datetime(2025, 6, 18, 16, 30, tzinfo=UTC)  # 00:30 on 19 June in Shanghai
    evening = datetime(2025, 6, 19, 15, 0, tzinfo=UTC)  # 23:00 on 19 June in Shanghai
    record_activity(activity(member, "c1", "checkin"), context(repo, now=early))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(activity(member, "c2", "checkin"), context(repo, now=evening))
    assert excinfo.value.code == "LIMIT_REACHED"
    assert repo.balance(member) == 5


def test_given_a_recorded_checkin_when_replayed_then_the_first_answer_not_limit_reached(
    repo, member
):
    first = record_activity(activity(member, "c1", "checkin"), context(repo))
    assert record_activity(activity(member, "c1", "checkin"), context(repo)) == first
    repo.stale_reads = True
    assert record_activity(activity(member, "c1", "checkin"), context(repo)) == first
    assert repo.balance(member) == 5


def test_given_a_complete_profile_when_completing_it_then_50_points_once_ever(repo, member):
    profile = profile_of(repo, member)
    _, body = record_activity(
        activity(member, "p1", "profile_completed", profile=profile), context(repo)
    )
    assert body["points_earned"] == 50
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(
            activity(member, "p2", "profile_completed", profile=profile),
            context(repo, now=NOW + timedelta(days=800)),
        )
    assert excinfo.value.code == "LIMIT_REACHED"
    assert repo.balance(member) == 50


@pytest.mark.parametrize(
    ("missing", "fields"),
    [
        (["birthday"], {"birthday": None}),
        (["name"], {"name": None}),
        (["gender"], {"gender": None}),
        (["name", "gender", "birthday"], {"name": None, "gender": None, "birthday": None}),
    ],
)
def test_given_an_incomplete_profile_when_completing_it_then_profile_incomplete_and_nothing_written(
    repo, missing, fields
):
    member_id = repo.add_member(**fields)
    profile = profile_of(repo, member_id)
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(
            activity(member_id, "p1", "profile_completed", profile=profile), context(repo)
        )
    assert excinfo.value.code == "PROFILE_INCOMPLETE"
    assert excinfo.value.details == {"missing": missing}
    assert repo.commits == []


def test_given_a_referrer_when_a_member_declares_them_then_the_welcome_points_and_referred_by(
    repo, member
):
    referrer = repo.add_member()
    _, body = record_activity(activity(member, "ref1", "referral", referrer), context(repo))
    assert body["points_earned"] == 100
    assert repo.account(member).referred_by == referrer
    assert repo.balance(referrer) == 0  # paid on the referee's first purchase, elsewhere


def test_given_a_declared_referral_when_declaring_another_then_limit_reached(repo, member):
    first, second = repo.add_member(), repo.add_member()
    record_activity(activity(member, "ref1", "referral", first), context(repo))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(
            activity(member, "ref2", "referral", second),
            context(repo, now=NOW + timedelta(days=60)),
        )
    assert excinfo.value.code == "LIMIT_REACHED"
    assert repo.account(member).referred_by == first


def test_given_a_member_when_referring_themselves_then_invalid_referral(repo, member):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(activity(member, "ref1", "referral", member), context(repo))
    assert excinfo.value.code == "INVALID_REFERRAL"
    assert repo.commits == []


def test_given_an_unknown_referrer_when_declaring_then_invalid_referral(repo, member):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_activity(activity(member, "ref1", "referral", "mbr_nobody"), context(repo))
    assert excinfo.value.code == "INVALID_REFERRAL"
    assert repo.account(member).referred_by is None


def test_given_a_referral_without_referrer_then_validation_error(repo, member):
    with pytest.raises(InvalidInput):
        record_activity(activity(member, "ref1", "referral"), context(repo))


def test_given_an_unknown_activity_type_then_unknown_activity(repo, member):
    with pytest.raises(InvalidInput) as excinfo:
        record_activity(activity(member, "x1", "dance"), context(repo))
    assert excinfo.value.code == "UNKNOWN_ACTIVITY"


def program_grant(member_id: str, activity_id: str, kind: str) -> Activity:
    return replace(
        activity(member_id, activity_id, kind),
        request_hash=request_hash({"activity": kind, "id": activity_id}),
        granted=True,
    )


@pytest.mark.parametrize(
    ("posted_type", "grant_type", "activity_id"),
    [
        ("checkin", "birthday", "birthday-2025"),
        ("share", "signup", "signup"),
        ("review", "referral_reward", "referral-reward-mbr_referee"),
    ],
)
def test_given_a_member_who_used_a_grant_id_when_the_program_grants_it_then_both_pay_and_each_replays(
    repo, member, posted_type, grant_type, activity_id
):
    _, posted = record_activity(activity(member, activity_id, posted_type), context(repo))

    _, granted = record_activity(program_grant(member, activity_id, grant_type), context(repo))

    assert (
        granted["points_earned"]
        == {"birthday": 100, "signup": 100, "referral_reward": 200}[grant_type]
    )
    assert repo.balance(member) == posted["points_earned"] + granted["points_earned"]
    assert repo.request(MemberRequestRef(member, "activity", activity_id)) is not None
    assert repo.request(MemberRequestRef(member, "grant", activity_id)) is not None
    # each replays its own first answer, and nothing is paid twice
    again = record_activity(activity(member, activity_id, posted_type), context(repo))
    assert again == (201, posted)
    assert record_activity(program_grant(member, activity_id, grant_type), context(repo)) == (
        201,
        granted,
    )
    assert repo.balance(member) == posted["points_earned"] + granted["points_earned"]


@pytest.mark.parametrize("kind", ["signup", "birthday", "referral_reward"])
def test_given_a_member_when_posting_an_activity_only_the_program_grants_then_unknown_activity(
    repo, member, kind
):
    with pytest.raises(InvalidInput) as excinfo:
        record_activity(activity(member, "x1", kind), context(repo))
    assert excinfo.value.code == "UNKNOWN_ACTIVITY"
    assert repo.commits == []


def test_given_a_grant_recorded_under_the_member_prefix_before_the_split_when_granted_again_then_its_first_answer(
    repo, member
):
    grant_cmd = program_grant(member, "referral-reward-mbr_x", "referral_reward")
    legacy = RequestRecord(
        ref=MemberRequestRef(member, "activity", "referral-reward-mbr_x"),
        kind="activity",
        member_id=member,
        request_hash=grant_cmd.request_hash,
        status=201,
        response={"activity_id": "referral-reward-mbr_x", "points_earned": 200, "balance": 200},
        created_at=NOW,
    )
    repo.put_request(legacy)

    assert record_activity(grant_cmd, context(repo)) == (201, legacy.response)
    assert repo.commits == []


# ---- adjustments --------------------------------------------------------------------------


def test_given_staff_when_adjusting_up_and_down_then_the_balance_moves_and_the_actor_is_audited(
    repo, member
):
    _, body = record_adjustment(adjustment(member, 500, "a1", actor="ops-alice"), context(repo))
    assert body == {
        "adjustment_id": "a1",
        "member_id": member,
        "points": 500,
        "reason": "goodwill",
        "balance": 500,
    }
    _, body = record_adjustment(adjustment(member, -200, "a2", actor="ops-bob"), context(repo))
    assert body["balance"] == 300
    entries = repo.entries_of(member, "adjust")
    assert [(e.points, e.source, e.detail["actor"]) for e in entries] == [
        (500, "staff", "ops-alice"),
        (-200, "staff", "ops-bob"),
    ]
    assert entries[0].detail["adjustment_id"] == "a1"
    assert repo.request(MemberRequestRef(member, "adjust", "a2")).data["actor"] == "ops-bob"
    assert repo.wallet(member).lifetime_earned == 0  # a goodwill credit is not earned
    assert_ledger_matches_wallet(repo, member)


def test_given_a_debit_adjustment_beyond_the_balance_then_insufficient_points(repo, member):
    grant(repo, member, 100)
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_adjustment(adjustment(member, -101, "a1"), context(repo))
    assert excinfo.value.code == "INSUFFICIENT_POINTS"
    assert repo.balance(member) == 100


@pytest.mark.parametrize("points", [0, 1_000_001, -1_000_001])
def test_given_a_zero_or_oversized_adjustment_then_invalid_adjustment(repo, member, points):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_adjustment(adjustment(member, points), context(repo))
    assert excinfo.value.code == "INVALID_ADJUSTMENT"
    assert excinfo.value.details == {"max": 1_000_000}
    assert repo.commits == []


def test_given_an_adjustment_of_exactly_the_max_then_accepted(repo, member):
    _, body = record_adjustment(adjustment(member, 1_000_000), context(repo))
    assert body["balance"] == 1_000_000


def test_given_a_custom_max_when_adjusting_beyond_it_then_invalid_adjustment(repo, member):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_adjustment(
            adjustment(member, 51), context(repo, program=ProgramConfig(max_adjustment=50))
        )
    assert excinfo.value.code == "INVALID_ADJUSTMENT"


# ---- concurrency --------------------------------------------------------------------------


def test_given_two_version_conflicts_when_recording_then_the_third_attempt_commits_once(ledger):
    repo = FlakyLedger(ledger, failures=2)
    member_id = repo.add_member()
    sleeps: list[float] = []
    status, body = record_purchase(purchase(member_id), context(repo, sleeps=sleeps))
    assert status == 201
    assert body["balance"] == 98
    assert repo.attempts == 3
    assert len(sleeps) == 2
    assert len(repo.commits) == 1
    assert repo.balance(member_id) == 98


def test_given_a_member_that_never_stops_changing_then_contended_after_the_attempts(ledger):
    repo = FlakyLedger(ledger, failures=10**6)
    member_id = repo.add_member()
    with pytest.raises(Unavailable) as excinfo:
        record_adjustment(adjustment(member_id, 10), context(repo))
    assert excinfo.value.code == "CONTENDED"
    assert repo.attempts == domain.COMMIT_ATTEMPTS
    assert repo.commits == []


def test_given_a_concurrent_change_when_committing_then_the_operation_is_replanned_on_the_new_state(
    repo, member
):
    grant(repo, member, 1000)

    class RacingLedger(Ledger):
        raced = False

        def commit(self, commit: Commit) -> None:
            if not self.raced:
                self.raced = True
                # another operation wins the race for the member's version
                record_adjustment(adjustment(member, 500, "concurrent"), context(self))
            super().commit(commit)

    racing = RacingLedger(repo.store, repo.kind)
    _, body = record_purchase(purchase(member, pay_with_points=1000), context(racing))
    assert body["points_spent"] == 1000
    # the answer was planned on the state after the concurrent credit
    assert body["balance"] == 1000 + 500 - 1000 + body["points_earned"]
    assert racing.balance(member) == body["balance"]
    assert len(racing.entries_of(member, "redeem")) == 1
    assert_ledger_matches_wallet(racing, member)


def test_given_a_refund_racing_another_refund_of_the_same_purchase_then_it_is_replanned(
    repo, member
):
    record_purchase(purchase(member, items=THREE_TEAS), context(repo))

    class RacingLedger(Ledger):
        raced = False

        def commit(self, commit: Commit) -> None:
            if not self.raced:
                self.raced = True
                record_refund(refund("other", items=[("tea", 3)]), context(self))
            super().commit(commit)

    racing = RacingLedger(repo.store, repo.kind)
    with pytest.raises(BusinessRuleViolation) as excinfo:
        record_refund(refund("mine", items=[("tea", 1)]), context(racing))
    assert excinfo.value.code == "REFUND_EXCEEDS_PURCHASE"
    assert racing.balance(member) == 48


# ---- ledger order -------------------------------------------------------------------------


def test_given_a_purchase_paid_with_points_when_listing_the_ledger_then_the_earn_is_newer_than_the_redeem(
    repo, monkeypatch
):
    # One millisecond, and random parts that happen to decrease: a possible outcome of
    # ulid() (one in two for two entries) that makes the ordering deterministic here.
    draws = iter(range(255, 0, -1))
    monkeypatch.setattr(ids, "time", SimpleNamespace(time=lambda: 1_750_000_000.0))
    monkeypatch.setattr(ids, "os", SimpleNamespace(urandom=lambda n: bytes([next(draws)]) * n))
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 3000}))
    record_purchase(purchase(member_id, pay_with_points=2000), context(repo))
    entries, _ = repo.list_entries(member_id, 10, None)
    assert [e.type for e in entries] == ["earn", "redeem"]  # newest first


# ---- what the repository keeps, as DynamoDB keeps it --------------------------------------


def test_given_a_purchase_when_the_member_is_loaded_then_its_item_carries_the_wallets_figures_and_version(
    repo, member
):
    record_purchase(purchase(member), context(repo, program=ProgramConfig(pending_days=7)))
    record_adjustment(adjustment(member, 500), context(repo))
    account = repo.account(member)
    assert (
        account.member.points_balance,
        account.member.points_pending,
        account.member.lifetime_earned,
    ) == (500, 98, 0)
    assert (account.member.expiring_next_date, account.member.expiring_next_points) == (
        date(2026, 6, 30),
        500,
    )
    assert account.member.version == account.version


def test_given_a_moment_with_microseconds_when_recorded_then_the_times_read_back_to_the_millisecond(
    repo, member
):
    at = NOW + timedelta(microseconds=123_456)
    record_purchase(purchase(member, occurred_at=NOW), context(repo, now=at))
    millisecond = NOW + timedelta(milliseconds=123)
    [earn] = repo.entries_of(member)
    assert earn.created_at == millisecond
    assert repo.request(PurchaseRef(STORE, "t1")).created_at == millisecond
    assert repo.account(member).first_purchase_at == NOW


def test_given_a_page_of_entries_exactly_when_listing_then_the_full_page_has_a_cursor_to_an_empty_last_page(
    repo, member
):
    for n in range(3):
        grant(repo, member, 10 + n, f"g{n}")
    first, cursor = repo.list_entries(member, 2, None)
    assert [e.points for e in first] == [12, 11]
    second, cursor = repo.list_entries(member, 2, cursor)
    assert [e.points for e in second] == [10]
    assert cursor is None
    # DynamoDB cannot tell that a full page was the last: it gives a cursor all the same
    whole, cursor = repo.list_entries(member, 3, None)
    assert len(whole) == 3
    assert cursor is not None
    assert repo.list_entries(member, 3, cursor) == ([], None)


def test_given_another_members_cursor_when_listing_then_invalid_cursor(repo, member):
    other = repo.add_member()
    for n in range(2):
        grant(repo, other, 10, f"g{n}")
    _, cursor = repo.list_entries(other, 1, None)
    with pytest.raises(InvalidInput) as excinfo:
        repo.list_entries(member, 1, cursor)
    assert excinfo.value.code == "INVALID_CURSOR"


def test_given_a_request_record_over_400_kb_when_committing_then_request_too_large_and_nothing_written(
    repo, member
):
    # 2,400 lines of 200-character SKUs: over 500 KB of items in the purchase's record
    items = [Item(f"{n:04d}" + "x" * 196, "general", 1, 100) for n in range(2400)]
    with pytest.raises(InvalidInput) as excinfo:
        record_purchase(purchase(member, items=items), context(repo))
    assert excinfo.value.code == "REQUEST_TOO_LARGE"
    assert repo.commits == []
    assert repo.request(PurchaseRef(STORE, "t1")) is None
    assert repo.balance(member) == 0
