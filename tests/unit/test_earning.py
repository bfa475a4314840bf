"""Points a purchase earns (chalicelib/domain/earning.py): rates, multipliers, campaigns,
points payment, the per-purchase cap, and refund reversals that add up exactly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.earning import Item, compute, reversal_for_amount, reversal_for_units
from chalicelib.domain.program import CampaignMultiplier, CategoryRule, ProgramConfig

AT = datetime(2025, 6, 18, 4, 0, tzinfo=UTC)
STORE = "store-001"


def earn(
    items: list[Item],
    *,
    program: ProgramConfig | None = None,
    cash_paid: int | None = None,
    tier_multiplier: float = 1.0,
    store_id: str = STORE,
    at: datetime = AT,
):
    total = sum(i.amount for i in items)
    return compute(
        items,
        total=total,
        cash_paid=total if cash_paid is None else cash_paid,
        program=program or ProgramConfig(),
        tier_multiplier=tier_multiplier,
        store_id=store_id,
        at=at,
    )


def campaign(
    multiplier: float,
    starts_at: datetime = AT - timedelta(hours=1),
    ends_at: datetime = AT + timedelta(hours=1),
    store_ids: tuple[str, ...] = (),
    campaign_id: str = "double",
) -> CampaignMultiplier:
    return CampaignMultiplier(campaign_id, multiplier, starts_at, ends_at, store_ids)


# ---- base rate ----------------------------------------------------------------------------


def test_given_the_default_program_when_spending_98_yuan_then_98_points():
    earning = earn([Item("tea", "drinks", 2, 2500), Item("cake", "bakery", 1, 4800)])
    assert earning.points == 98
    assert [i.points for i in earning.items] == [50, 48]
    assert earning.uncapped == 98
    assert earning.cap is None


def test_given_fractional_yuan_when_earning_then_each_item_is_floored_on_its_own():
    # 1.50 yuan + 1.50 yuan: 1 point each (floored per item), not floor(3.00) = 3
    earning = earn([Item("a", "g", 1, 150), Item("b", "g", 1, 150)])
    assert [i.points for i in earning.items] == [1, 1]
    assert earning.points == 2


def test_given_less_than_one_yuan_when_earning_then_zero_points():
    assert earn([Item("gum", "g", 1, 99)]).points == 0


def test_given_a_quantity_when_earning_then_the_line_amount_counts():
    earning = earn([Item("egg", "fresh", 12, 85)])  # 10.20 yuan
    assert earning.points == 10
    assert earning.items[0].eligible == 1020


def test_given_a_decimal_rate_when_earning_then_exact_arithmetic_not_float_rounding():
    # 100 yuan x 0.29 = 29 exactly; in floats 100 * 0.29 = 28.999999999999996
    program = ProgramConfig(base_points_per_yuan=0.29)
    assert earn([Item("a", "g", 1, 10_000)], program=program).points == 29


def test_given_a_free_bill_when_earning_then_zero_points_and_no_division_by_zero():
    earning = earn([Item("gift", "g", 1, 0)])
    assert earning.points == 0


# ---- categories and tiers -----------------------------------------------------------------


def test_given_an_excluded_category_when_earning_then_its_items_earn_nothing():
    program = ProgramConfig(category_rules=(CategoryRule("tobacco", 0),))
    earning = earn(
        [Item("cigs", "tobacco", 1, 3000), Item("tea", "drinks", 1, 1000)], program=program
    )
    assert [i.points for i in earning.items] == [0, 10]
    assert earning.items[0].category_multiplier == 0


def test_given_a_category_multiplier_when_earning_then_that_category_is_multiplied():
    program = ProgramConfig(category_rules=(CategoryRule("fresh", 2.0), CategoryRule("wine", 0.5)))
    earning = earn(
        [Item("apple", "fresh", 1, 1000), Item("red", "wine", 1, 1000), Item("x", "g", 1, 1000)],
        program=program,
    )
    assert [i.points for i in earning.items] == [20, 5, 10]


@pytest.mark.parametrize(
    ("tier_multiplier", "expected"), [(1.0, 100), (1.2, 120), (1.5, 150), (1.8, 180), (2.0, 200)]
)
def test_given_a_tier_multiplier_when_earning_then_points_are_multiplied(tier_multiplier, expected):
    earning = earn([Item("a", "g", 1, 10_000)], tier_multiplier=tier_multiplier)
    assert earning.points == expected
    assert earning.tier_multiplier == tier_multiplier


def test_given_tier_and_category_multipliers_when_earning_then_they_compose_exactly():
    program = ProgramConfig(category_rules=(CategoryRule("fresh", 1.1),))
    # 30 yuan x 1.1 x 1.2 = 39.6 -> 39
    assert earn([Item("a", "fresh", 1, 3000)], program=program, tier_multiplier=1.2).points == 39


# ---- campaigns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "applies"),
    [
        (AT - timedelta(hours=1), True),  # starts_at is inside
        (AT, True),
        (AT + timedelta(hours=1) - timedelta(microseconds=1), True),
        (AT + timedelta(hours=1), False),  # ends_at is outside
        (AT - timedelta(hours=1, microseconds=1), False),
    ],
)
def test_given_a_campaign_window_when_earning_then_it_applies_only_inside_starts_inclusive_ends_exclusive(
    at, applies
):
    program = ProgramConfig(campaign_multipliers=(campaign(2.0),))
    earning = earn([Item("a", "g", 1, 1000)], program=program, at=at)
    assert earning.points == (20 if applies else 10)
    assert earning.campaign_ids == (("double",) if applies else ())
    assert earning.campaign_multiplier == (2.0 if applies else 1.0)


@pytest.mark.parametrize(
    ("store_id", "applies"), [("store-001", True), ("store-003", True), ("store-002", False)]
)
def test_given_a_campaign_for_listed_stores_when_earning_then_only_those_stores_get_it(
    store_id, applies
):
    program = ProgramConfig(
        campaign_multipliers=(campaign(3.0, store_ids=("store-001", "store-003")),)
    )
    earning = earn([Item("a", "g", 1, 1000)], program=program, store_id=store_id)
    assert earning.points == (30 if applies else 10)


def test_given_two_overlapping_campaigns_when_earning_then_their_multipliers_multiply():
    program = ProgramConfig(
        campaign_multipliers=(
            campaign(2.0, campaign_id="double"),
            campaign(1.5, campaign_id="bonus"),
            campaign(5.0, campaign_id="past", ends_at=AT - timedelta(days=1)),
        )
    )
    earning = earn([Item("a", "g", 1, 1000)], program=program, tier_multiplier=1.2)
    assert earning.points == 36  # 10 x 2 x 1.5 x 1.2
    assert earning.campaign_ids == ("double", "bonus")
    assert earning.campaign_multiplier == 3.0


# ---- points payment -----------------------------------------------------------------------


def test_given_half_the_bill_paid_with_points_when_earning_then_only_the_cash_half_earns():
    items = [Item("a", "g", 1, 6000), Item("b", "g", 1, 4000)]
    earning = earn(items, cash_paid=5000)
    assert [i.eligible for i in earning.items] == [3000, 2000]
    assert [i.points for i in earning.items] == [30, 20]
    assert earning.points == 50


def test_given_everything_paid_with_points_when_earning_then_nothing_earns():
    assert earn([Item("a", "g", 2, 500)], cash_paid=0).points == 0


def test_given_a_points_payment_when_earning_then_each_item_loses_its_share_before_flooring():
    # 3 items of 3.33 yuan, 3.00 yuan paid in points: each keeps 2.33 yuan of eligible spend
    items = [Item(s, "g", 1, 333) for s in "abc"]
    earning = earn(items, cash_paid=699)
    assert [i.eligible for i in earning.items] == [233, 233, 233]
    assert earning.points == 6


# ---- cap ----------------------------------------------------------------------------------


def test_given_a_cap_when_a_purchase_exceeds_it_then_the_points_hit_the_cap_exactly():
    program = ProgramConfig(max_points_per_purchase=100)
    items = [Item("a", "g", 1, 7000), Item("b", "g", 1, 5000), Item("c", "g", 1, 3100)]
    earning = earn(items, program=program)
    assert earning.uncapped == 151
    assert earning.cap == 100
    assert earning.points == 100
    assert all(i.points >= 0 for i in earning.items)


def test_given_a_cap_when_the_purchase_stays_below_it_then_nothing_changes():
    program = ProgramConfig(max_points_per_purchase=100)
    earning = earn([Item("a", "g", 1, 9999)], program=program)
    assert earning.points == earning.uncapped == 99


def test_given_a_cap_with_equal_remainders_when_scaling_then_earlier_items_get_the_unit():
    program = ProgramConfig(max_points_per_purchase=10)
    items = [Item(s, "g", 1, 1000) for s in "abc"]  # 30 points, scaled to 10
    earning = earn(items, program=program)
    assert [i.points for i in earning.items] == [4, 3, 3]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=20),
            st.integers(min_value=0, max_value=50_000),
            st.sampled_from(["g", "fresh", "tobacco"]),
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=1, max_value=2000),
    st.sampled_from([1.0, 1.2, 1.5, 1.8, 2.0]),
)
def test_given_any_purchase_over_the_cap_when_earning_then_the_sum_is_exactly_the_cap(
    lines, cap, tier
):
    program = ProgramConfig(
        max_points_per_purchase=cap,
        category_rules=(CategoryRule("fresh", 2.0), CategoryRule("tobacco", 0)),
    )
    items = [Item(f"sku{n}", cat, qty, price) for n, (qty, price, cat) in enumerate(lines)]
    earning = earn(items, program=program, tier_multiplier=tier)
    assert all(i.points >= 0 for i in earning.items)
    assert earning.points == min(cap, earning.uncapped)
    for item, capped in zip(items, earning.items, strict=True):
        if item.category == "tobacco" or item.amount == 0:
            assert capped.points == 0  # an item that earned nothing gets nothing from the cap


# ---- refund reversals ---------------------------------------------------------------------


def test_given_an_item_of_3_units_and_10_points_when_refunding_one_by_one_then_3_3_4():
    steps = [reversal_for_units(10, 3, before, 1) for before in range(3)]
    assert steps == [3, 3, 4]
    assert sum(steps) == 10


@st.composite
def splits(draw, total_st):
    """A total and a partition of it into positive parts, in a random order."""
    total = draw(total_st)
    if total == 1:
        return total, [1]
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=total - 1), max_size=20)))
    bounds = [0, *cuts, total]
    parts = [b - a for a, b in itertools.pairwise(bounds)]
    return total, draw(st.permutations(parts))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**7), splits(st.integers(min_value=1, max_value=500)))
def test_given_any_split_of_the_quantity_when_refunding_units_then_the_reversals_sum_to_the_item_points(
    item_points, split
):
    quantity, parts = split
    refunded = 0
    reversed_total = 0
    for part in parts:
        step = reversal_for_units(item_points, quantity, refunded, part)
        assert 0 <= step <= item_points
        reversed_total += step
        refunded += part
        assert reversed_total <= item_points * refunded // quantity
    assert refunded == quantity
    assert reversed_total == item_points


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=10**7),
    splits(st.integers(min_value=1, max_value=10**9)),
)
def test_given_any_split_of_the_total_when_refunding_amounts_then_the_reversals_sum_to_the_points(
    points, split
):
    total, parts = split
    refunded = 0
    reversed_total = 0
    for part in parts:
        step = reversal_for_amount(points, total, refunded, part)
        assert step >= 0
        reversed_total += step
        refunded += part
    assert reversed_total == points


def test_given_half_the_bill_refunded_by_amount_then_half_the_points_floored():
    assert reversal_for_amount(99, 9800, 0, 4900) == 49
    assert reversal_for_amount(99, 9800, 4900, 4900) == 50
