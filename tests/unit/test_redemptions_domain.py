"""Redemptions in the points mall (chalicelib/domain/redemptions.py) on the ledger
repository, on the in-memory fake and on DynamoDB Local (the `ledger` fixture): spend,
replay, every refusal writing nothing, points + cash with payment and release, cancel,
fulfilment, and flash-sale concurrency (DynamoDB Local only: threads)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib.domain import redemptions as mall
from chalicelib.domain.coupons import CouponChange, CouponTemplate, CouponTerms
from chalicelib.domain.points import Planner, request_hash
from chalicelib.domain.records import Commit
from chalicelib.domain.rewards import MemberLimit, Reward
from chalicelib.errors import BusinessRuleViolation, Conflict, InvalidInput, NotFound
from tests.helpers import at_once, codes
from tests.ledgers import Ledger
from tests.unit.test_points_domain import NOW, assert_ledger_matches_wallet, context

EARLY, LATE = date(2025, 7, 31), date(2026, 6, 30)
TEMPLATE = CouponTemplate("tpl-10", "¥10 off", CouponTerms("amount_off", 1000), valid_days=30)


def reward(reward_id: str = "rw-tote", **fields: object) -> Reward:
    base = Reward(reward_id=reward_id, name="Tote", kind="gift", points=300, stock_shards=1)
    return replace(base, **fields)  # type: ignore[arg-type]


class Mall:
    def __init__(self, *rewards: Reward) -> None:
        self.rewards = {r.reward_id: r for r in rewards}
        self.templates = {TEMPLATE.template_id: TEMPLATE}

    def __call__(self) -> mall.Mall:
        return mall.Mall(reward=self.rewards.get, template=self.templates.get)


def stocked(ledger: Ledger, *rewards: Reward, shards: dict[int, int] | None = None) -> mall.Mall:
    for r in rewards:
        ledger.store.put_stock(r.reward_id, shards or {0: 10})
    return Mall(*rewards)()


def member(ledger: Ledger, early: int = 200, late: int = 800) -> str:
    """A member holding `early` points expiring on EARLY and `late` on LATE, credited with
    their ledger entries (seeded on the store: `ledger.commits` stays empty)."""
    m = ledger.add_member()
    plan = Planner(ledger.account(m), context(ledger))
    for expires_on, points in ((EARLY, early), (LATE, late)):
        plan.credit(points, expires_on, "seed", "staff", f"seed-{expires_on}", kind="adjust")
    ledger.store.commit(plan.commit([]))
    return m


def redeem_cmd(member_id: str, rid: str = "r1", reward_id: str = "rw-tote", quantity: int = 1):
    body = {"redemption_id": rid, "reward_id": reward_id, "quantity": quantity}
    return mall.Redeem(member_id, rid, reward_id, quantity, request_hash(body))


def test_given_points_when_redeeming_a_gift_then_earliest_lots_pay_and_one_unit_is_taken(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward())
    m = member(ledger)
    status, body = mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert status == 201
    assert body["status"] == "completed"
    assert body["points_spent"] == 300
    assert body["balance"] == 700
    assert body["cash_due"] == 0
    assert ledger.wallet(m).lots == {LATE: 700}  # the 200 expiring first went first
    assert ledger.store.stock("rw-tote") == {0: 9}
    (entry,) = ledger.entries_of(m, "redeem")
    assert (entry.source, entry.source_id, entry.points) == ("redemption", "r1", -300)
    record = ledger.request(mall.redemption_ref(m, "r1"))
    assert record is not None
    assert record.data["paid_lots"] == {EARLY.isoformat(): 200, LATE.isoformat(): 100}
    assert record.data["fulfilment"] == "placed"
    assert len(ledger.commits) == 1
    assert_ledger_matches_wallet(ledger, m)


def test_given_a_redemption_when_replayed_then_first_answer_and_other_body_conflicts(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward())
    m = member(ledger)
    first = mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert mall.redeem(redeem_cmd(m), context(ledger), shop) == first
    with pytest.raises(Conflict) as exc:
        mall.redeem(redeem_cmd(m, quantity=2), context(ledger), shop)
    assert exc.value.code == "IDEMPOTENCY_CONFLICT"
    assert len(ledger.commits) == 1
    assert ledger.store.stock("rw-tote") == {0: 9}


@pytest.mark.parametrize(
    ("setup", "error", "code"),
    [
        ({"reward_id": "rw-none"}, NotFound, "REWARD_NOT_FOUND"),
        ({"status": "retired"}, BusinessRuleViolation, "REWARD_UNAVAILABLE"),
        ({"valid_to": NOW - timedelta(days=1)}, BusinessRuleViolation, "REWARD_UNAVAILABLE"),
        ({"valid_from": NOW + timedelta(days=1)}, BusinessRuleViolation, "REWARD_UNAVAILABLE"),
        ({"tiers": ("gold",)}, BusinessRuleViolation, "TIER_REQUIRED"),
        ({"points": 2000}, BusinessRuleViolation, "INSUFFICIENT_POINTS"),
        ({"stock": 0}, BusinessRuleViolation, "OUT_OF_STOCK"),
    ],
)
def test_given_a_rule_refuses_when_redeeming_then_nothing_is_written(
    ledger: Ledger, setup: dict[str, object], error: type[Exception], code: str
) -> None:
    fields = {k: v for k, v in setup.items() if k not in ("reward_id", "stock")}
    r = reward(**fields)
    ledger.store.put_stock(r.reward_id, {0: int(setup.get("stock", 5))})  # type: ignore[call-overload]
    m = member(ledger)
    target = str(setup.get("reward_id", r.reward_id))
    with pytest.raises(error) as exc:
        mall.redeem(redeem_cmd(m, reward_id=target), context(ledger), Mall(r)())
    assert exc.value.code == code  # type: ignore[attr-defined]
    assert ledger.commits == []


def test_given_a_bad_quantity_when_redeeming_then_400_and_nothing_written(ledger: Ledger) -> None:
    shop = stocked(ledger, reward())
    m = member(ledger)
    for quantity in (0, -1, mall.MAX_QUANTITY + 1):
        with pytest.raises(InvalidInput):
            mall.redeem(redeem_cmd(m, quantity=quantity), context(ledger), shop)
    assert ledger.commits == []


def test_given_a_monthly_limit_when_reached_then_limit_reached_and_next_month_allowed(
    ledger: Ledger,
) -> None:
    r = reward(points=10, per_member_limit=MemberLimit(2, "month"))
    shop = stocked(ledger, r)
    m = member(ledger)
    mall.redeem(redeem_cmd(m, "a", quantity=2), context(ledger), shop)
    with pytest.raises(BusinessRuleViolation) as exc:
        mall.redeem(redeem_cmd(m, "b"), context(ledger), shop)
    assert exc.value.code == "LIMIT_REACHED"
    assert len(ledger.commits) == 1
    later = NOW + timedelta(days=31)
    assert mall.redeem(redeem_cmd(m, "c"), context(ledger, now=later), shop)[0] == 201


def test_given_counts_of_past_periods_when_redeeming_a_limited_reward_then_they_are_dropped(
    ledger: Ledger,
) -> None:
    """Given limit counters of periods long over (other rewards' days and months), when
    the member redeems a limited reward, then only this period's and `ever` counters are
    kept: the member item's map stays bounded by the rewards in play now, not every
    limited reward ever redeemed (the item holds at most 400 KB)."""
    r = reward(points=10, per_member_limit=MemberLimit(5, "day"))
    shop = stocked(ledger, r)
    m = member(ledger)
    account = ledger.account(m)
    stale = {
        "rw-old-day": ("2024-01-01", 1),
        "rw-old-month": ("2024-01", 2),
        "rw-ever": ("ever", 1),
    }
    ledger.store.commit(Commit(m, account.version, account.wallet, [], [], redemption_counts=stale))
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert ledger.account(m).redemption_counts == {
        "rw-ever": ("ever", 1),
        "rw-tote": ("2025-06-18", 1),
    }


def test_given_no_shard_holds_enough_when_redeeming_then_units_come_from_several(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward(points=10, stock_shards=3), shards={0: 1, 1: 2, 2: 1})
    m = member(ledger)
    mall.redeem(redeem_cmd(m, quantity=4), context(ledger), shop)
    assert ledger.store.stock("rw-tote") == {0: 0, 1: 0, 2: 0}
    with pytest.raises(BusinessRuleViolation) as exc:
        mall.redeem(redeem_cmd(m, "r2"), context(ledger), shop)
    assert exc.value.code == "OUT_OF_STOCK"


def test_given_a_coupon_reward_when_redeemed_then_its_coupons_are_issued_in_the_commit(
    ledger: Ledger,
) -> None:
    r = reward("rw-10off", kind="coupon", points=100, coupon_template_id="tpl-10")
    shop = stocked(ledger, r)
    m = member(ledger)
    _, body = mall.redeem(redeem_cmd(m, reward_id="rw-10off", quantity=2), context(ledger), shop)
    assert len(body["coupons"]) == 2
    assert body["coupon"] == body["coupons"][0]
    (commit,) = ledger.commits
    assert len(commit.new_coupons) == 2
    for coupon in commit.new_coupons:
        stored = ledger.store.coupon(coupon.code)
        assert stored is not None
        assert stored.member_id == m
        assert stored.source == "reward"
        assert stored.source_id == "r1"


# ---- cancel ------------------------------------------------------------------------------


def test_given_a_placed_gift_when_cancelled_then_points_keep_their_dates_and_stock_returns(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward(per_member_limit=MemberLimit(1, "ever")))
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    view = mall.cancel(m, "r1", "member", context(ledger))
    assert view["status"] == "cancelled"
    assert view["cash_refund_due"] == 0
    assert ledger.wallet(m).lots == {EARLY: 200, LATE: 800}
    assert ledger.store.stock("rw-tote") == {0: 10}
    # the limit's use is given back, and cancelling again answers the same
    assert mall.cancel(m, "r1", "member", context(ledger)) == view
    assert len(ledger.commits) == 2
    assert mall.redeem(redeem_cmd(m, "r2"), context(ledger), shop)[0] == 201
    assert_ledger_matches_wallet(ledger, m)


def test_given_points_whose_date_passed_when_cancelled_then_they_expire_again_at_once(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward())
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    later = datetime(2025, 8, 2, 4, 0, tzinfo=UTC)  # after EARLY
    mall.cancel(m, "r1", "member", context(ledger, now=later))
    assert ledger.wallet(m).lots == {LATE: 800}
    assert [e.type for e in ledger.entries_of(m)][-3:] == ["reverse", "expire", "reverse"]
    assert_ledger_matches_wallet(ledger, m)


def test_given_a_coupon_reward_whose_template_window_is_over_when_redeemed_then_unavailable(
    ledger: Ledger,
) -> None:
    """Given a coupon reward whose template's fixed window ended yesterday, when a member
    redeems it, then 422 REWARD_UNAVAILABLE and nothing is written: the points must not
    buy a coupon that is expired the moment it is issued (staff issue refuses the same
    template with TEMPLATE_EXPIRED)."""
    over = replace(
        TEMPLATE,
        template_id="tpl-over",
        valid_days=None,
        valid_from=NOW - timedelta(days=30),
        valid_to=NOW - timedelta(days=1),
    )
    r = reward("rw-over", kind="coupon", points=100, coupon_template_id="tpl-over")
    ledger.store.put_stock(r.reward_id, {0: 10})
    shop = Mall(r)
    shop.templates[over.template_id] = over
    m = member(ledger)
    with pytest.raises(BusinessRuleViolation) as exc:
        mall.redeem(redeem_cmd(m, reward_id="rw-over"), context(ledger), shop())
    assert exc.value.code == "REWARD_UNAVAILABLE"
    assert ledger.commits == []
    assert ledger.wallet(m).balance == 1000


def test_given_a_shipped_gift_or_used_coupon_when_cancelled_then_409_and_nothing_written(
    ledger: Ledger,
) -> None:
    r = reward("rw-10off", kind="coupon", points=100, coupon_template_id="tpl-10")
    shop = stocked(ledger, reward(), r)
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    mall.fulfil(m, "r1", "shipped", "SF123", context(ledger))
    _, _body = mall.redeem(redeem_cmd(m, "c1", reward_id="rw-10off"), context(ledger), shop)
    code = ledger.commits[-1].new_coupons[0].code
    use = CouponChange(code, m, "use", "TXN#store-001#t1", NOW)
    account = ledger.account(m)
    ledger.commit(Commit(m, account.version, account.wallet, [], [], coupon_changes=(use,)))
    before = len(ledger.commits)
    for rid in ("r1", "c1"):
        with pytest.raises(Conflict) as exc:
            mall.cancel(m, rid, "member", context(ledger))
        assert exc.value.code == "REDEMPTION_NOT_CANCELLABLE"
    assert len(ledger.commits) == before


def test_given_an_unused_coupon_reward_when_cancelled_then_its_coupons_are_voided(
    ledger: Ledger,
) -> None:
    r = reward("rw-10off", kind="coupon", points=100, coupon_template_id="tpl-10")
    shop = stocked(ledger, r)
    m = member(ledger)
    mall.redeem(redeem_cmd(m, reward_id="rw-10off"), context(ledger), shop)
    code = ledger.commits[0].new_coupons[0].code
    mall.cancel(m, "r1", "staff", context(ledger))
    stored = ledger.store.coupon(code)
    assert stored is not None
    assert stored.status == "void"


# ---- fulfilment ------------------------------------------------------------------------------


def test_given_a_gift_when_fulfilment_moves_then_only_forward(ledger: Ledger) -> None:
    shop = stocked(ledger, reward())
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert mall.fulfil(m, "r1", "shipped", "SF1", context(ledger))["tracking_no"] == "SF1"
    assert mall.fulfil(m, "r1", "shipped", "SF1", context(ledger))["fulfilment"] == "shipped"
    assert mall.fulfil(m, "r1", "delivered", None, context(ledger))["fulfilment"] == "delivered"
    with pytest.raises(Conflict) as exc:
        mall.fulfil(m, "r1", "shipped", None, context(ledger))
    assert exc.value.code == "INVALID_FULFILMENT"
    with pytest.raises(NotFound):
        mall.fulfil(m, "nope", "shipped", None, context(ledger))


# ---- points + cash --------------------------------------------------------------------------


def notice(m: str, rid: str = "r1", amount: int = 2000, status: str = "paid", pid: str = "p1"):
    return mall.PaymentNotice(pid, m, rid, amount, "CNY", status)


def test_given_points_and_cash_when_paid_then_completed_and_hold_dropped(ledger: Ledger) -> None:
    shop = stocked(ledger, reward(cash=2000))
    m = member(ledger)
    _, body = mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert body["status"] == "awaiting_payment"
    assert body["cash_due"] == 2000
    assert body["payment_due_at"] == "2025-06-18T04:15:00.000Z"
    assert ledger.commits[0].holds[0].action == "put"
    with pytest.raises(BusinessRuleViolation) as exc:
        mall.payment_notified(notice(m, amount=1999), context(ledger), shop)
    assert exc.value.code == "PAYMENT_MISMATCH"
    assert len(ledger.commits) == 1
    view = mall.payment_notified(notice(m), context(ledger), shop)
    assert view["status"] == "completed"
    assert view["fulfilment"] == "placed"
    assert ledger.commits[-1].holds[0].action == "delete"
    assert mall.payment_notified(notice(m), context(ledger), shop) == view  # replay
    assert len(ledger.commits) == 2
    with pytest.raises(Conflict):
        mall.payment_notified(notice(m, pid="p2"), context(ledger), shop)
    # cancelled after payment: a member is refused (nothing here reaches the provider);
    # staff cancel it and are told the cash to refund there
    with pytest.raises(Conflict) as refused:
        mall.cancel(m, "r1", "member", context(ledger))
    assert refused.value.code == "REDEMPTION_NOT_CANCELLABLE"
    assert refused.value.details["reason"] == "cash_paid"
    assert len(ledger.commits) == 2
    cancelled = mall.cancel(m, "r1", "ops-1", context(ledger), by_staff=True)
    assert cancelled["cash_refund_due"] == 2000


def test_given_unpaid_when_released_then_everything_returns_and_late_payment_is_refused(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward(cash=2000))
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    later = context(ledger, now=NOW + timedelta(minutes=16))
    assert mall.release_hold(m, "r1", later) == "expired"
    assert mall.release_hold(m, "r1", later) == "expired"  # twice: nothing more
    assert len(ledger.commits) == 2
    assert ledger.wallet(m).lots == {EARLY: 200, LATE: 800}
    assert ledger.store.stock("rw-tote") == {0: 10}
    with pytest.raises(Conflict) as exc:
        mall.payment_notified(notice(m), later, shop)
    assert exc.value.code == "REDEMPTION_EXPIRED"
    assert_ledger_matches_wallet(ledger, m)


def test_given_a_failed_payment_when_notified_then_released_like_a_timeout(ledger: Ledger) -> None:
    shop = stocked(ledger, reward(cash=2000))
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    assert mall.payment_notified(notice(m, status="failed"), context(ledger), shop)["status"] == (
        "expired"
    )
    assert ledger.balance(m) == 1000


def test_given_a_points_and_cash_coupon_reward_then_coupons_come_with_the_payment(
    ledger: Ledger,
) -> None:
    r = reward("rw-10off", kind="coupon", points=100, cash=500, coupon_template_id="tpl-10")
    shop = stocked(ledger, r)
    m = member(ledger)
    _, body = mall.redeem(redeem_cmd(m, reward_id="rw-10off"), context(ledger), shop)
    assert "coupon" not in body
    assert ledger.commits[0].new_coupons == ()
    view = mall.payment_notified(notice(m, amount=500), context(ledger), shop)
    assert len(view["coupons"]) == 1
    assert len(ledger.commits[-1].new_coupons) == 1


def test_given_a_coupon_reward_whose_template_retires_while_awaiting_payment_when_paid_then_released_and_409(
    ledger: Ledger,
) -> None:
    """Given a points + cash coupon reward awaiting payment, when its template is retired
    before the payment arrives, then the payment is answered 409 REDEMPTION_EXPIRED (the
    provider refunds it), points and stock come back, and no coupon is issued."""
    r = reward("rw-10off", kind="coupon", points=100, cash=500, coupon_template_id="tpl-10")
    holder = Mall(r)
    ledger.store.put_stock(r.reward_id, {0: 5})
    m = member(ledger)
    mall.redeem(redeem_cmd(m, reward_id="rw-10off"), context(ledger), holder())
    holder.templates["tpl-10"] = replace(TEMPLATE, status="retired")
    with pytest.raises(Conflict) as exc:
        mall.payment_notified(notice(m, amount=500), context(ledger), holder())
    assert exc.value.code == "REDEMPTION_EXPIRED"
    assert ledger.wallet(m).balance == 1000
    assert sum(ledger.stock(r.reward_id).values()) == 5
    assert all(commit.new_coupons == () for commit in ledger.commits)
    assert mall.get_redemption(m, "r1", context(ledger))["status"] == "expired"


# ---- a small sequence property: balance == sum of the ledger, stock == initial - held -------


def test_given_a_sequence_of_redeem_cancel_expire_then_balance_and_stock_add_up(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward(points=100, cash=0), reward("rw-cash", points=50, cash=100))
    m = member(ledger, early=300, late=700)
    held: Counter[str] = Counter()
    steps = [
        ("redeem", "a", "rw-tote", 2),
        ("redeem", "b", "rw-cash", 1),
        ("cancel", "a", "rw-tote", 2),
        ("redeem", "c", "rw-tote", 1),
        ("release", "b", "rw-cash", 1),
        ("redeem", "d", "rw-cash", 3),
        ("cancel", "d", "rw-cash", 3),
    ]
    for step, rid, reward_id, quantity in steps:
        ctx = context(ledger, now=NOW + timedelta(minutes=20 if step == "release" else 0))
        if step == "redeem":
            mall.redeem(redeem_cmd(m, rid, reward_id, quantity), ctx, shop)
            held[reward_id] += quantity
        elif step == "cancel":
            mall.cancel(m, rid, "member", ctx)
            held[reward_id] -= quantity
        else:
            mall.release_hold(m, rid, ctx)
            held[reward_id] -= quantity
        assert_ledger_matches_wallet(ledger, m)
        for rw in ("rw-tote", "rw-cash"):
            assert sum(ledger.store.stock(rw).values()) == 10 - held[rw]
    assert ledger.balance(m) == 1000 - 100


# ---- flash sale (threads: DynamoDB Local) ---------------------------------------------------


def _dynamodb_only(ledger: Ledger) -> None:
    if ledger.kind != "dynamodb":
        pytest.skip("threads against the store: DynamoDB Local")


def test_given_stock_one_when_30_members_redeem_at_once_then_exactly_one_wins(
    ledger: Ledger,
) -> None:
    _dynamodb_only(ledger)
    shop = stocked(ledger, reward(points=10), shards={0: 1})
    members = [member(ledger) for _ in range(30)]
    outcomes = at_once(
        [lambda m=m: mall.redeem(redeem_cmd(m, f"f-{m}"), context(ledger), shop) for m in members]
    )
    found = Counter(codes(outcomes))
    assert found == {"ok": 1, "OUT_OF_STOCK": 29}, found
    assert ledger.store.stock("rw-tote") == {0: 0}


def test_given_balance_for_one_when_a_member_redeems_many_at_once_then_exactly_one(
    ledger: Ledger,
) -> None:
    _dynamodb_only(ledger)
    shop = stocked(ledger, reward(points=600), shards={0: 10})
    m = member(ledger)
    outcomes = at_once(
        [lambda n=n: mall.redeem(redeem_cmd(m, f"s{n}"), context(ledger), shop) for n in range(8)]
    )
    found = Counter(codes(outcomes))
    assert found == {"ok": 1, "INSUFFICIENT_POINTS": 7}, found
    assert ledger.balance(m) == 400
    assert ledger.store.stock("rw-tote") == {0: 9}


def test_given_stock_20_on_4_shards_when_50_redeem_at_once_then_exactly_20_sold(
    ledger: Ledger,
) -> None:
    _dynamodb_only(ledger)
    shop = stocked(ledger, reward(points=10, stock_shards=4), shards={0: 5, 1: 5, 2: 5, 3: 5})
    members = [member(ledger) for _ in range(50)]
    outcomes = at_once(
        [lambda m=m: mall.redeem(redeem_cmd(m, f"h-{m}"), context(ledger), shop) for m in members]
    )
    found = Counter(codes(outcomes))
    assert found == {"ok": 20, "OUT_OF_STOCK": 30}, found
    assert sum(ledger.store.stock("rw-tote").values()) == 0
