"""Coupons at the till, the pure rules (chalicelib/domain/coupon_rules.py): which codes
apply, why the others do not, and what each takes off which line."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.coupon_rules import allocate, apply_coupons
from chalicelib.domain.coupons import (
    Coupon,
    CouponTemplate,
    CouponTerms,
    display_code,
    issue,
)
from chalicelib.domain.earning import Item

NOW = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)
MEMBER = "m-1"
STORE = "store-001"
BASKET = (Item("tea", "drinks", 2, 2500), Item("cake", "bakery", 1, 4800))  # 9800 fen


def coupon(
    *,
    kind: str = "amount_off",
    value: int = 1000,
    member_id: str = MEMBER,
    issued_at: datetime = NOW - timedelta(days=1),
    valid_days: int = 30,
    **terms: object,
) -> Coupon:
    template = CouponTemplate(
        template_id="tpl-1",
        name="ten off",
        terms=CouponTerms(kind=kind, value=value, **terms),  # type: ignore[arg-type]
        valid_days=valid_days,
    )
    return issue(template, member_id, issued_at, "staff", "i-1")


def decide(coupons: list[Coupon | None], given: list[str] | None = None, **kw: object):
    known = {c.code: c for c in coupons if c is not None}
    codes = given if given is not None else [c.code for c in coupons if c is not None]
    args = {"member_id": MEMBER, "store_id": STORE, "at": NOW, **kw}
    items = args.pop("items", BASKET)
    return apply_coupons(codes, known, items, **args)  # type: ignore[arg-type]


def reasons(outcome) -> list[str]:
    return [r.reason for r in outcome.rejected]


# ---- each refusal -----------------------------------------------------------------------


def test_given_a_malformed_or_unknown_code_then_coupon_not_found():
    outcome = decide([], given=["WELCOME10", "0" * 16])
    assert reasons(outcome) == ["COUPON_NOT_FOUND", "COUPON_NOT_FOUND"]
    assert outcome.discount == 0


def test_given_another_members_coupon_then_not_owned_and_nothing_about_its_state():
    theirs = replace(coupon(member_id="m-2"), status="used", used_by="TXN#x")
    outcome = decide([theirs])
    assert reasons(outcome) == ["COUPON_NOT_OWNED"]
    assert outcome.rejected[0].code == theirs.code  # as sent, nothing more


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "used", "used_by": "TXN#s#t0"}, "COUPON_USED"),
        ({"status": "void"}, "COUPON_VOID"),
    ],
)
def test_given_a_used_or_void_coupon_then_refused(change, reason):
    assert reasons(decide([replace(coupon(), **change)])) == [reason]


def test_given_validity_then_judged_at_the_purchase_time():
    c = coupon(issued_at=NOW - timedelta(days=10), valid_days=5)  # ended 5 days ago
    assert reasons(decide([c])) == ["COUPON_EXPIRED"]
    # a sale made while it was valid, recorded later (an offline till), counts
    assert decide([c], at=NOW - timedelta(days=6)).discount == 1000


def test_given_a_purchase_before_the_coupon_was_issued_then_not_yet_valid():
    c = coupon(issued_at=NOW + timedelta(minutes=1))
    assert reasons(decide([c])) == ["COUPON_NOT_YET_VALID"]
    fixed = CouponTemplate(
        "tpl-2",
        "summer",
        CouponTerms("amount_off", 500),
        valid_from=NOW + timedelta(days=1),
        valid_to=NOW + timedelta(days=30),
    )
    assert reasons(decide([issue(fixed, MEMBER, NOW - timedelta(days=1), "staff", "i")])) == [
        "COUPON_NOT_YET_VALID"
    ]


def test_given_a_coupon_for_other_stores_then_not_valid_here():
    assert reasons(decide([coupon(stores=("store-002",))])) == ["COUPON_NOT_VALID_HERE"]
    assert decide([coupon(stores=("store-002", STORE))]).discount == 1000


def test_given_no_line_in_its_categories_then_not_applicable():
    assert reasons(decide([coupon(categories=("shoes",))])) == ["COUPON_NOT_APPLICABLE"]


def test_given_eligible_spend_below_the_minimum_then_below_min_spend():
    # 满50减10 on bakery only: the cake is 48 yuan
    c = coupon(categories=("bakery",), min_spend=5000)
    assert reasons(decide([c])) == ["BELOW_MIN_SPEND"]
    assert decide([coupon(min_spend=9800)]).discount == 1000  # the whole bill: exactly


def test_given_the_same_code_twice_then_the_second_is_a_duplicate():
    c = coupon()
    outcome = decide([c], given=[c.code, display_code(c.code).lower()])
    assert [a.code for a in outcome.applied] == [c.code]
    assert reasons(outcome) == ["DUPLICATE_CODE"]


def test_given_a_percentage_that_floors_to_nothing_then_not_applicable():
    tiny = (Item("gum", "snacks", 1, 5),)
    assert reasons(decide([coupon(kind="percent_off", value=10)], items=tiny)) == [
        "COUPON_NOT_APPLICABLE"
    ]


# ---- stacking ----------------------------------------------------------------------------


def test_given_a_non_stackable_coupon_first_then_it_goes_alone():
    first, second = coupon(), coupon(stackable=True)
    outcome = decide([first, second])
    assert [a.code for a in outcome.applied] == [first.code]
    assert reasons(outcome) == ["NOT_STACKABLE"]


def test_given_a_non_stackable_coupon_after_another_then_it_is_refused():
    first, second = coupon(stackable=True), coupon()
    outcome = decide([first, second])
    assert [a.code for a in outcome.applied] == [first.code]
    assert reasons(outcome) == ["NOT_STACKABLE"]


def test_given_stackable_coupons_then_all_apply_and_min_spend_counts_what_is_left():
    a = coupon(stackable=True, value=2000, min_spend=9000)
    b = coupon(stackable=True, value=1000)
    c = coupon(stackable=True, value=1000, min_spend=9000)  # 9800 - 3000 left: below
    outcome = decide([a, b, c])
    assert [x.code for x in outcome.applied] == [a.code, b.code]
    assert outcome.discount == 3000
    assert reasons(outcome) == ["BELOW_MIN_SPEND"]


def test_given_a_refused_coupon_first_then_it_does_not_block_a_non_stackable_one():
    expired = coupon(issued_at=NOW - timedelta(days=40))
    ok = coupon()
    outcome = decide([expired, ok])
    assert [x.code for x in outcome.applied] == [ok.code]
    assert reasons(outcome) == ["COUPON_EXPIRED"]


# ---- discount math ----------------------------------------------------------------------


def test_given_amount_off_larger_than_the_eligible_lines_then_it_takes_only_those():
    outcome = decide([coupon(value=10_000, categories=("bakery",))])
    assert outcome.discount == 4800
    assert outcome.line_discounts == (0, 4800)


def test_given_percent_off_with_a_cap_then_floored_and_capped():
    assert decide([coupon(kind="percent_off", value=15)]).discount == 1470  # 15% of 9800
    assert decide([coupon(kind="percent_off", value=15, max_off=1000)]).discount == 1000
    odd = (Item("a", "x", 1, 333),)
    assert decide([coupon(kind="percent_off", value=10)], items=odd).discount == 33


def test_given_a_discount_over_several_lines_then_spread_in_proportion_largest_remainder():
    items = (Item("a", "x", 1, 100), Item("b", "x", 1, 100), Item("c", "x", 1, 100))
    outcome = decide([coupon(value=100)], items=items)
    assert outcome.line_discounts == (34, 33, 33)
    assert allocate(1000, [5000, 4800]) == (510, 490)


# ---- properties --------------------------------------------------------------------------

CATEGORIES = ("drinks", "bakery", "snacks")
items_st = st.lists(
    st.builds(
        Item,
        sku=st.sampled_from(("a", "b", "c", "d")),
        category=st.sampled_from(CATEGORIES),
        quantity=st.integers(1, 5),
        unit_price=st.integers(0, 20_000),
    ),
    min_size=1,
    max_size=6,
)
terms_st = st.builds(
    dict,
    kind=st.sampled_from(("amount_off", "percent_off")),
    value=st.integers(1, 100),
    amount=st.integers(1, 50_000),
    max_off=st.none() | st.integers(1, 10_000),
    min_spend=st.integers(0, 30_000),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
    stackable=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(items_st, st.lists(terms_st, min_size=1, max_size=4))
def test_property_discounts_stay_within_the_eligible_lines_and_the_bill(items, specs):
    coupons = [
        coupon(
            kind=spec["kind"],
            value=spec["value"] if spec["kind"] == "percent_off" else spec["amount"],
            max_off=spec["max_off"] if spec["kind"] == "percent_off" else None,
            min_spend=spec["min_spend"],
            categories=tuple(spec["categories"]),
            stackable=spec["stackable"],
        )
        for spec in specs
    ]
    outcome = decide(coupons, items=items)
    total = sum(i.amount for i in items)
    assert 0 <= outcome.discount <= total
    assert len(outcome.applied) + len(outcome.rejected) == len(coupons)
    assert all(d <= i.amount for d, i in zip(outcome.line_discounts, items, strict=True))
    for applied, c in zip(
        outcome.applied,
        [c for c in coupons if any(a.code == c.code for a in outcome.applied)],
        strict=True,
    ):
        assert applied.discount > 0
        assert sum(applied.lines) == applied.discount
        eligible = sum(
            i.amount for i in items if not c.terms.categories or i.category in c.terms.categories
        )
        assert applied.discount <= eligible
        assert all(
            off == 0
            for off, i in zip(applied.lines, items, strict=True)
            if c.terms.categories and i.category not in c.terms.categories
        )
    if len(outcome.applied) > 1:
        assert all(
            c.terms.stackable for c in coupons if c.code in {a.code for a in outcome.applied}
        )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=8), st.data())
def test_property_allocation_sums_to_the_amount_and_no_share_exceeds_its_weight(weights, data):
    amount = data.draw(st.integers(0, sum(weights)))
    shares = allocate(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))
