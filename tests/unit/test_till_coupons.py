"""Coupons in POS purchases and their refunds (chalicelib/domain/points.py), on the fake
and on DynamoDB Local (the `ledger` fixture): applied and consumed in the purchase's own
commit, refused with a reason, exactly once across tills, restored by the full refund."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.coupon_rules import apply_coupons
from chalicelib.domain.coupons import (
    Coupon,
    CouponTemplate,
    CouponTerms,
    display_code,
    issue,
)
from chalicelib.domain.earning import Item
from chalicelib.domain.points import Purchase, record_purchase, record_refund, request_hash
from chalicelib.domain.records import Commit, CouponTaken, PurchaseRecord, PurchaseRef
from chalicelib.errors import BusinessRuleViolation
from tests.helpers import at_once
from tests.ledgers import InMemoryLedger, Ledger
from tests.unit.test_points_domain import (
    NOW,
    STORE,
    assert_ledger_matches_wallet,
    context,
    grant,
    purchase,
    refund,
)

REF_T1 = f"TXN#{STORE}#t1"


@pytest.fixture
def repo(ledger: Ledger) -> Ledger:
    return ledger


@pytest.fixture
def member(repo: Ledger) -> str:
    member_id = repo.add_member()
    grant(repo, member_id, 20_000)
    repo.commits.clear()
    return member_id


def seed(repo: Ledger, member_id: str, *, valid_days: int = 30, **terms: object) -> Coupon:
    spec = {"kind": "amount_off", "value": 1000, **terms}
    template = CouponTemplate(
        template_id="tpl-10off",
        name="10 yuan off",
        terms=CouponTerms(**spec),  # type: ignore[arg-type]
        valid_days=valid_days,
    )
    coupon = issue(template, member_id, NOW - timedelta(days=1), "staff", "issue-1")
    repo.store.put_coupon(coupon)
    return coupon


def with_coupons(cmd: Purchase, *codes: str) -> Purchase:
    return replace(
        cmd,
        coupon_codes=tuple(codes),
        request_hash=request_hash({"base": cmd.request_hash, "coupons": list(codes)}),
    )


def buy(repo: Ledger, member_id: str, *codes: str, **kw: object) -> dict:
    status, body = record_purchase(
        with_coupons(purchase(member_id, **kw), *codes),  # type: ignore[arg-type]
        context(repo),
    )
    assert status == 201
    return body


def state(repo: Ledger, coupon: Coupon) -> Coupon:
    found = repo.coupon(coupon.code)
    assert found is not None
    return found


# ---- purchases ---------------------------------------------------------------------------


def test_given_an_amount_off_coupon_when_buying_then_cash_due_and_points_follow_the_discount(
    repo, member
):
    coupon = seed(repo, member)
    body = buy(repo, member, display_code(coupon.code).lower())  # as typed at the till
    assert body["coupons_applied"] == [display_code(coupon.code)]
    assert body["coupons_rejected"] == []
    assert body["discount"] == 1000
    assert body["coupon_discounts"] == [
        {"code": display_code(coupon.code), "template_id": "tpl-10off", "discount": 1000}
    ]
    assert body["cash_due"] == 8800
    # on the 88 yuan paid, not the 98 listed, floored per line: 44.90 + 43.10
    assert body["points_earned"] == 87
    used = state(repo, coupon)
    assert (used.status, used.used_by, used.used_at) == ("used", REF_T1, NOW)
    assert len(repo.commits) == 1  # the coupon was consumed in the purchase's own commit
    bought = PurchaseRecord.from_data(repo.request(PurchaseRef(STORE, "t1")).data)
    assert bought.discount == 1000
    assert bought.coupons[0].lines == (510, 490)  # 5000 and 4800 of the 9800
    assert bought.cash_due == 8800
    assert bought.qualifying_delta == 8800  # tiers count the cash paid
    assert_ledger_matches_wallet(repo, member)


def test_given_a_category_coupon_then_only_its_lines_are_discounted_and_earn_less(repo, member):
    seed_coupon = seed(repo, member, kind="percent_off", value=20, categories=("bakery",))
    body = buy(repo, member, seed_coupon.code)
    assert body["discount"] == 960  # 20% of the 48-yuan cake
    assert body["cash_due"] == 8840
    points = {i["sku"]: i["points"] for i in body["breakdown"]["items"]}
    assert points == {"tea": 50, "cake": 38}
    bought = PurchaseRecord.from_data(repo.request(PurchaseRef(STORE, "t1")).data)
    assert [line.points for line in bought.lines] == [50, 38]


def test_given_points_and_a_coupon_then_the_points_cap_applies_to_the_bill_after_coupons(
    repo, member
):
    coupon = seed(repo, member)
    # 50% of the 88 yuan left: at most 4400 points (100 points a yuan)
    with pytest.raises(BusinessRuleViolation) as refused:
        buy(repo, member, coupon.code, pay_with_points=4500)
    assert refused.value.code == "POINTS_PAYMENT_CAP"
    assert refused.value.details["max_value_fen"] == 4400
    assert repo.commits == []
    assert state(repo, coupon).status == "active"
    body = buy(repo, member, coupon.code, pay_with_points=4400)
    assert (body["discount"], body["points_value"], body["cash_due"]) == (1000, 4400, 4400)
    assert body["points_earned"] == 43  # 22.45 + 21.55, floored per line
    assert body["discount"] + body["points_value"] + body["cash_due"] == 9800


def test_given_refused_codes_then_the_purchase_records_without_them_and_says_why(repo, member):
    other = repo.add_member()
    theirs = seed(repo, other)
    expired = seed(repo, member, valid_days=0)
    elsewhere = seed(repo, member, stores=("store-999",))
    shoes = seed(repo, member, categories=("shoes",))
    big = seed(repo, member, min_spend=10_000)
    ok = seed(repo, member)
    codes = ["NOPE", theirs.code, expired.code, elsewhere.code, shoes.code, big.code]
    codes += [ok.code, ok.code]
    body = buy(repo, member, *codes)
    assert [(r["code"], r["reason"]) for r in body["coupons_rejected"]] == [
        ("NOPE", "COUPON_NOT_FOUND"),
        (theirs.code, "COUPON_NOT_OWNED"),
        (expired.code, "COUPON_EXPIRED"),
        (elsewhere.code, "COUPON_NOT_VALID_HERE"),
        (shoes.code, "COUPON_NOT_APPLICABLE"),
        (big.code, "BELOW_MIN_SPEND"),
        (ok.code, "DUPLICATE_CODE"),
    ]
    assert body["coupons_applied"] == [display_code(ok.code)]
    assert body["cash_due"] == 8800
    for untouched in (theirs, expired, elsewhere, shoes, big):
        assert state(repo, untouched).status == "active"
    assert [c.code for c in repo.commits[0].coupon_changes] == [ok.code]


def test_given_a_used_coupon_when_buying_again_then_coupon_used_and_full_price(repo, member):
    coupon = seed(repo, member)
    buy(repo, member, coupon.code)
    body = buy(repo, member, coupon.code, transaction_id="t2")
    assert body["coupons_rejected"] == [{"code": coupon.code, "reason": "COUPON_USED"}]
    assert body["cash_due"] == 9800
    assert state(repo, coupon).used_by == REF_T1


def test_given_a_non_stackable_coupon_then_a_second_is_refused(repo, member):
    first, second = seed(repo, member), seed(repo, member, stackable=True)
    body = buy(repo, member, first.code, second.code)
    assert body["coupons_rejected"] == [{"code": second.code, "reason": "NOT_STACKABLE"}]
    assert state(repo, second).status == "active"


# ---- exactly once ------------------------------------------------------------------------


def test_given_two_tills_with_one_coupon_when_the_other_commits_first_then_exactly_one_applies_it(
    repo, member
):
    coupon = seed(repo, member)

    class RacingLedger(Ledger):
        raced = False

        def commit(self, commit: Commit) -> None:
            if not self.raced:
                self.raced = True
                # the other till, planned at the same moment, commits first
                record_purchase(
                    with_coupons(purchase(member, "till-2", store_id="store-002"), coupon.code),
                    context(self),
                )
            super().commit(commit)

    racing = RacingLedger(repo.store, repo.kind)
    _, body = record_purchase(
        with_coupons(purchase(member, "till-1"), coupon.code), context(racing)
    )
    # this till's purchase is re-planned: it still records, at full price, saying why
    assert body["coupons_applied"] == []
    assert body["coupons_rejected"] == [{"code": coupon.code, "reason": "COUPON_USED"}]
    assert body["cash_due"] == 9800
    assert state(repo, coupon).used_by == "TXN#store-002#till-2"
    assert_ledger_matches_wallet(repo, member)


def test_given_a_coupon_at_two_tills_at_once_then_exactly_one_gets_the_discount(repo):
    if repo.kind == "fake":
        pytest.skip("threads race on DynamoDB Local's conditions; the fake is not thread-safe")
    member_id = repo.add_member()
    coupon = seed(repo, member_id)
    outcomes = at_once(
        [
            lambda: record_purchase(
                with_coupons(purchase(member_id, "till-a", store_id="store-001"), coupon.code),
                context(repo),
            ),
            lambda: record_purchase(
                with_coupons(purchase(member_id, "till-b", store_id="store-002"), coupon.code),
                context(repo),
            ),
        ]
    )
    bodies = [body for _, body in outcomes]
    assert sorted(b["discount"] for b in bodies) == [0, 1000]
    loser = next(b for b in bodies if b["discount"] == 0)
    assert loser["coupons_rejected"] == [{"code": coupon.code, "reason": "COUPON_USED"}]
    winner = next(b for b in bodies if b["discount"] == 1000)
    assert state(repo, coupon).used_by == f"TXN#{winner['store_id']}#{winner['transaction_id']}"
    assert repo.balance(member_id) == 87 + 98
    assert_ledger_matches_wallet(repo, member_id)


@pytest.mark.parametrize("stale", [False, True])
def test_given_a_purchase_that_used_a_coupon_when_replayed_then_the_first_answer(
    repo, member, stale
):
    coupon = seed(repo, member)
    cmd = with_coupons(purchase(member), coupon.code)
    first = record_purchase(cmd, context(repo))
    # stale: the first read of the request record misses it, so the replay is planned
    # again and finds its own coupon used
    repo.stale_reads = stale
    assert record_purchase(cmd, context(repo, now=NOW + timedelta(minutes=10))) == first
    assert len(repo.commits) == 1


def test_given_only_the_coupons_condition_reported_when_the_winner_was_this_request_then_the_first_answer(
    repo, member
):
    coupon = seed(repo, member)
    cmd = with_coupons(purchase(member), coupon.code)

    class CouponFirstLedger(Ledger):
        """Reports the coupon's condition and not the request's (DynamoDB may report either)."""

        def commit(self, commit: Commit) -> None:
            if commit.coupon_changes and state(repo, coupon).status == "used":
                raise CouponTaken(coupon.code)
            super().commit(commit)

    ledger = CouponFirstLedger(repo.store, repo.kind)
    first = record_purchase(cmd, context(ledger))
    ledger.stale_reads = True
    # the plan sees the coupon unused (as a read racing the first commit would)
    ledger.coupon = lambda code: coupon  # type: ignore[method-assign]
    assert record_purchase(cmd, context(ledger)) == first


# ---- refunds -----------------------------------------------------------------------------


def test_given_a_purchase_with_a_coupon_when_fully_refunded_then_the_coupon_is_restored(
    repo, member
):
    coupon = seed(repo, member)
    bought = buy(repo, member, coupon.code)
    _, body = record_refund(
        refund("r1", items=[("tea", 2), ("cake", 1)]), context(repo, now=NOW + timedelta(days=1))
    )
    assert body["amount"] == 9800  # at list prices
    assert body["coupon_discount"] == 1000  # of which the coupon had taken this much
    assert body["points_reversed"] == bought["points_earned"]
    assert body["coupons_restored"] == [display_code(coupon.code)]
    assert body["coupons_not_restored"] == []
    restored = state(repo, coupon)
    assert (restored.status, restored.used_by, restored.used_at) == ("active", None, None)
    assert len(repo.commits) == 2  # restored in the refund's own commit
    assert buy(repo, member, coupon.code, transaction_id="t2")["discount"] == 1000
    assert_ledger_matches_wallet(repo, member)


def test_given_a_partial_refund_then_the_coupon_stays_used_until_the_refund_that_completes(
    repo, member
):
    coupon = seed(repo, member)
    buy(repo, member, coupon.code)
    later = context(repo, now=NOW + timedelta(days=1))
    _, part = record_refund(refund("r1", items=[("cake", 1)]), later)
    assert part["amount"] == 4800
    assert part["coupon_discount"] == 490  # the cake's share of the discount
    assert part["points_reversed"] == 43  # what the cake earned on 43.10 yuan
    assert part["coupons_restored"] == []
    assert state(repo, coupon).status == "used"
    _, rest = record_refund(refund("r2", amount=5000), later)
    assert rest["coupon_discount"] == 510
    assert rest["coupons_restored"] == [display_code(coupon.code)]
    assert state(repo, coupon).status == "active"


def test_given_an_expired_coupon_when_the_purchase_is_fully_refunded_then_it_stays_used(
    repo, member
):
    coupon = seed(repo, member, valid_days=10)
    buy(repo, member, coupon.code)
    _, body = record_refund(refund("r1", amount=9800), context(repo, now=NOW + timedelta(days=20)))
    assert body["coupons_restored"] == []
    assert body["coupons_not_restored"] == [
        {"code": display_code(coupon.code), "reason": "COUPON_EXPIRED"}
    ]
    assert state(repo, coupon).status == "used"
    assert repo.commits[-1].coupon_changes == ()


def test_given_a_full_refund_that_restored_a_coupon_when_replayed_then_the_first_answer(
    repo, member
):
    coupon = seed(repo, member)
    buy(repo, member, coupon.code)
    cmd = refund("r1", amount=9800)
    first = record_refund(cmd, context(repo))
    repo.stale_reads = True
    assert record_refund(cmd, context(repo)) == first
    assert len(repo.commits) == 2
    assert state(repo, coupon).status == "active"


def test_given_a_refund_of_a_purchase_without_coupons_then_the_answer_is_as_before(repo, member):
    buy(repo, member)
    _, body = record_refund(refund("r1", items=[("cake", 1)]), context(repo))
    assert set(body) == {
        "refund_id",
        "transaction_id",
        "amount",
        "points_reversed",
        "points_returned",
        "balance",
    }


def test_given_a_record_from_before_coupons_then_it_reads_with_none():
    old = {
        "store_id": STORE,
        "transaction_id": "t0",
        "occurred_at": "2025-06-18T04:00:00.000Z",
        "total": 1000,
        "cash_due": 1000,
        "items": [["a", "general", 1, 1000, 10]],
        "points_earned": 10,
        "points_spent": 0,
        "expires_on": "2026-06-18",
        "refunded_amount": 0,
        "refunded_qty": [0],
        "points_reversed": 0,
        "points_returned": 0,
    }
    record = PurchaseRecord.from_data(old)
    assert record.coupons == ()
    assert record.discount == 0
    assert "coupons" not in record.to_data()
    assert "discount_refunded" not in record.refunded_fields()


def test_given_items_with_a_coupon_then_the_record_round_trips(repo, member):
    coupon = seed(repo, member, kind="percent_off", value=10, max_off=500)
    buy(repo, member, coupon.code, items=[Item("a", "x", 3, 999)])
    record = repo.request(PurchaseRef(STORE, "t1"))
    bought = PurchaseRecord.from_data(record.data)
    assert PurchaseRecord.from_data(bought.to_data()) == bought
    assert bought.coupons[0].discount == 299  # 10% of 29.97 yuan, floored


# ---- property: the bill always adds up -------------------------------------------------

CATEGORIES = ("drinks", "bakery")


@settings(max_examples=120, deadline=None)
@given(
    items=st.lists(
        st.builds(
            Item,
            sku=st.sampled_from(("a", "b", "c")),
            category=st.sampled_from(CATEGORIES),
            quantity=st.integers(1, 3),
            unit_price=st.integers(0, 20_000),
        ),
        min_size=1,
        max_size=4,
    ),
    specs=st.lists(
        st.tuples(
            st.sampled_from(("amount_off", "percent_off")),
            st.integers(1, 30_000),
            st.integers(0, 20_000),
            st.lists(st.sampled_from(CATEGORIES), max_size=1),
            st.booleans(),
        ),
        max_size=3,
    ),
    pay_steps=st.integers(0, 100),
)
def test_property_discount_points_and_cash_add_up_to_the_total(items, specs, pay_steps):
    """For any basket and coupons on the fake: discount + points value + cash due = total,
    cash_due >= 0, each line's discount within its price, the coupons used are exactly
    those applied, and the ledger is the wallet's history."""
    repo = Ledger(InMemoryLedger(), "fake")
    member_id = repo.add_member()
    grant(repo, member_id, 1_000_000)
    coupons = [
        seed(
            repo,
            member_id,
            kind=kind,
            value=value if kind == "amount_off" else 1 + value % 100,
            min_spend=min_spend,
            categories=tuple(categories),
            stackable=stackable,
        )
        for kind, value, min_spend, categories, stackable in specs
    ]
    total = sum(i.amount for i in items)
    expected = apply_coupons(
        [c.code for c in coupons],
        {c.code: c for c in coupons},
        items,
        member_id=member_id,
        store_id=STORE,
        at=NOW,
    )
    # points (100 a yuan: 1 point = 1 fen) up to the cap: 50% of the bill after coupons
    points = (total - expected.discount) * 50 // 100 * pay_steps // 100
    cmd = with_coupons(
        purchase(member_id, items=items, pay_with_points=points), *(c.code for c in coupons)
    )
    status, body = record_purchase(cmd, context(repo))
    assert body["discount"] == expected.discount
    assert body["points_value"] == points
    assert status == 201
    assert 0 <= body["discount"] <= total
    assert body["discount"] + body["points_value"] + body["cash_due"] == total
    assert body["cash_due"] >= 0
    bought = PurchaseRecord.from_data(repo.request(PurchaseRef(STORE, "t1")).data)
    for index, line in enumerate(bought.lines):
        assert 0 <= bought.line_discount(index) <= line.quantity * line.unit_price
    assert sum(sum(c.lines) for c in bought.coupons) == body["discount"]
    used = {c.code for c in coupons if state(repo, c).status == "used"}
    assert used == {c.code for c in bought.coupons}
    assert_ledger_matches_wallet(repo, member_id)
