"""The points mall and coupons under random sequences, once on the in-memory fake and
once on DynamoDB Local (the `ledger` fixture, tests/ledgers.py).

A hypothesis state machine drives the domain functions a few members call in any order:
redeem (points-only gift with a per-member limit, points + cash gift, coupon reward; a
few units over 2-3 stock shards), replays of earlier redemptions (same body: the first
answer; another body: IDEMPOTENCY_CONFLICT), cancel (sometimes twice), payment
notifications (paid, replayed, failed), the release of holds whose payment window has
passed, purchases with 0-2 coupon codes (the member's own, another member's, used,
expired, void, duplicated; some paid partly with points), full and partial refunds of
them, and time passing (the daily expiry run included, so lots and coupons expire).

It keeps its own model of what must hold and checks after every step that:
- every member's balance == Σ of their ledger entries == the wallet's and the member's
  figures, lots positive, and a negative balance only from a refund's clawback debt;
- every reward's Σ shards left == initial stock − units held by redemptions neither
  cancelled nor expired, no shard negative;
- every coupon is as the model says: used by at most one purchase at a time, restored
  only by its own purchase's completing refund (while still valid), voided only by the
  cancel of the redemption that issued it;
- the payment holds are exactly those of redemptions awaiting payment (fake);
- every refusal the model predicts is the one raised, and writes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chalicelib.domain import points as domain
from chalicelib.domain import redemptions as mall
from chalicelib.domain.clock import program_date
from chalicelib.domain.coupons import CouponTemplate, CouponTerms, display_code, issue
from chalicelib.domain.earning import Item
from chalicelib.domain.expiry import expire_member
from chalicelib.domain.points import period_key, request_hash
from chalicelib.domain.rewards import MemberLimit, Reward
from chalicelib.errors import BusinessRuleViolation, Conflict
from tests.helpers import run_machine
from tests.ledgers import InMemoryLedger, Ledger
from tests.unit.test_points_domain import NOW, STORE, adjustment, context
from tests.unit.test_points_properties import check_invariants

# (examples, steps) per store: DynamoDB Local answers in milliseconds, the fake in
# microseconds (about 7 s and 45 s; the DynamoDB one is marked integration).
RUNS = {"fake": (150, 25), "dynamodb": (8, 20)}

COUPON_OFF = 1000  # every coupon here: ¥10 off, stackable, no minimum, any store
TERMS = CouponTerms("amount_off", COUPON_OFF, stackable=True)
REWARD_TEMPLATE = CouponTemplate("tpl-mall-10", "¥10 off", TERMS, valid_days=30)


@dataclass
class CouponModel:
    code: str
    member_id: str
    valid_to: datetime
    status: str = "active"  # active | used | void
    used_by: str | None = None
    redemption: str | None = None  # the redemption that issued it


@dataclass
class RedemptionModel:
    member_id: str
    redemption_id: str
    reward_id: str
    quantity: int
    cmd: mall.Redeem
    answer: tuple[int, dict[str, Any]]
    status: str  # completed | awaiting_payment | cancelled | expired
    due_at: datetime | None
    coupons: list[str] = field(default_factory=list)
    payment_id: str | None = None


@dataclass
class PurchaseModel:
    member_id: str
    transaction_id: str
    total: int
    cmd: domain.Purchase
    answer: tuple[int, dict[str, Any]]
    coupons: list[str]
    refunded: int = 0


def _ref(transaction_id: str) -> str:
    return f"TXN#{STORE}#{transaction_id}"


def _fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class MallMachine(RuleBasedStateMachine):
    repo: Ledger  # set before a run

    @initialize(openings=st.lists(st.integers(50, 2_000), min_size=3, max_size=3))
    def start(self, openings: list[int]) -> None:
        self.now = NOW
        self.members: list[str] = []
        for points in openings:
            member_id = self.repo.add_member()
            # opening points through the ledger, so Σ entries == balance from the start
            domain.record_adjustment(
                adjustment(member_id, points, _fresh("open")), context(self.repo, self.now)
            )
            self.members.append(member_id)
        suffix = uuid.uuid4().hex[:8]
        self.rewards = {
            r.reward_id: r
            for r in (
                Reward(
                    reward_id=f"rw-mug-{suffix}",
                    name="Mug",
                    kind="gift",
                    points=300,
                    stock_shards=2,
                    per_member_limit=MemberLimit(2, "month"),
                ),
                Reward(
                    reward_id=f"rw-kettle-{suffix}",
                    name="Kettle",
                    kind="gift",
                    points=200,
                    cash=1_500,
                    stock_shards=3,
                ),
                Reward(
                    reward_id=f"rw-10off-{suffix}",
                    name="¥10 off",
                    kind="coupon",
                    points=100,
                    stock_shards=2,
                    coupon_template_id=REWARD_TEMPLATE.template_id,
                ),
            )
        }
        self.initial = dict(
            zip(self.rewards, ({0: 3, 1: 2}, {0: 2, 1: 1, 2: 1}, {0: 3, 1: 3}), strict=True)
        )
        for reward_id, shards in self.initial.items():
            self.repo.store.put_stock(reward_id, shards)
        self.shop = mall.Mall(
            reward=self.rewards.get, template={REWARD_TEMPLATE.template_id: REWARD_TEMPLATE}.get
        )
        # coupons issued by staff: two of each member's, one valid for a short while
        self.coupons: dict[str, CouponModel] = {}
        for member_id in self.members:
            for days in (3, 40):
                template = CouponTemplate("tpl-staff", "¥10 off", TERMS, valid_days=days)
                coupon = issue(template, member_id, self.now, "staff", _fresh("issue"))
                self.repo.store.put_coupon(coupon)
                self.coupons[coupon.code] = CouponModel(coupon.code, member_id, coupon.valid_to)
        self.redemptions: list[RedemptionModel] = []
        self.purchases: list[PurchaseModel] = []
        self.refunds: list[tuple[domain.Refund, tuple[int, dict[str, Any]]]] = []
        # (member, reward) -> (period, units): the per-member limit's counter
        self.limit_used: dict[tuple[str, str], tuple[str, int]] = {}

    # ---- helpers -----------------------------------------------------------------------

    def ctx(self) -> domain.Context:
        return context(self.repo, self.now)

    def today(self) -> date:
        return program_date(self.now)

    def held(self, reward_id: str) -> int:
        return sum(
            r.quantity
            for r in self.redemptions
            if r.reward_id == reward_id and r.status in ("completed", "awaiting_payment")
        )

    def left(self, reward_id: str) -> int:
        return sum(self.initial[reward_id].values()) - self.held(reward_id)

    def snapshot(self) -> int:
        """What a refused or replayed request must leave as it was: the commits the store
        accepted (every write of the domain is one)."""
        return len(self.repo.commits)

    def paid_lots(self, red: RedemptionModel) -> dict[date, int]:
        record = self.repo.request(mall.redemption_ref(red.member_id, red.redemption_id))
        assert record is not None
        return {date.fromisoformat(d): int(p) for d, p in record.data["paid_lots"].items()}

    def check_given_back(self, red: RedemptionModel, before: int, debt: int) -> None:
        """Points went back to the lots that paid: those still valid count, those past
        their date expired again (unless they repaid a clawback's debt)."""
        paid = self.paid_lots(red)
        live = sum(p for d, p in paid.items() if d >= self.today())
        delta = self.repo.balance(red.member_id) - before
        if debt == 0:
            assert delta == live, (delta, paid, self.today())
        else:
            assert live <= delta <= sum(paid.values()), (delta, paid, debt)

    def limit_allows(self, member_id: str, reward: Reward, quantity: int) -> bool:
        limit = reward.per_member_limit
        if limit is None:
            return True
        period, used = self.limit_used.get((member_id, reward.reward_id), ("", 0))
        used = used if period == period_key(limit.period, self.now) else 0
        return used + quantity <= limit.count

    def count_use(self, member_id: str, reward: Reward, quantity: int) -> None:
        limit = reward.per_member_limit
        if limit is None:
            return
        current = period_key(limit.period, self.now)
        period, used = self.limit_used.get((member_id, reward.reward_id), ("", 0))
        used = used if period == current else 0
        self.limit_used[(member_id, reward.reward_id)] = (current, used + quantity)

    def give_back_use(self, red: RedemptionModel, period: str | None) -> None:
        key = (red.member_id, red.reward_id)
        if period is not None and self.limit_used.get(key, ("", 0))[0] == period:
            self.limit_used[key] = (period, max(self.limit_used[key][1] - red.quantity, 0))

    def limit_period(self, red: RedemptionModel) -> str | None:
        record = self.repo.request(mall.redemption_ref(red.member_id, red.redemption_id))
        assert record is not None
        period = record.data.get("limit_period")
        return str(period) if period is not None else None

    # ---- redemptions -------------------------------------------------------------------

    @rule(data=st.data(), quantity=st.integers(1, 3))
    def redeem(self, data: st.DataObject, quantity: int) -> None:
        member_id = data.draw(st.sampled_from(self.members))
        reward = self.rewards[data.draw(st.sampled_from(sorted(self.rewards)))]
        redemption_id = _fresh("rd")
        body = {"redemption_id": redemption_id, "reward_id": reward.reward_id, "q": quantity}
        cmd = mall.Redeem(member_id, redemption_id, reward.reward_id, quantity, request_hash(body))
        balance = self.repo.balance(member_id)
        cost = reward.points * quantity
        expected: str | None = None
        if not self.limit_allows(member_id, reward, quantity):
            expected = "LIMIT_REACHED"
        elif balance < cost:
            expected = "INSUFFICIENT_POINTS"
        elif self.left(reward.reward_id) < quantity:
            expected = "OUT_OF_STOCK"
        before = self.snapshot()
        if expected is not None:
            with pytest.raises(BusinessRuleViolation) as refused:
                mall.redeem(cmd, self.ctx(), self.shop)
            assert refused.value.code == expected
            assert self.snapshot() == before
            event(f"redeem refused {expected}")
            return
        answer = mall.redeem(cmd, self.ctx(), self.shop)
        event(f"redeem {reward.kind}{' + cash' if reward.cash else ''}")
        status, response = answer
        assert status == 201
        awaiting = reward.cash > 0
        assert response["status"] == ("awaiting_payment" if awaiting else "completed")
        assert response["points_spent"] == cost
        assert response["cash_due"] == reward.cash * quantity
        assert response["balance"] == balance - cost == self.repo.balance(member_id)
        self.count_use(member_id, reward, quantity)
        issued: list[str] = []
        for shown in response.get("coupons", []):
            code = shown["code"].replace("-", "")
            assert code not in self.coupons
            self.coupons[code] = CouponModel(
                code,
                member_id,
                self.now + timedelta(days=REWARD_TEMPLATE.valid_days or 0),
                redemption=f"REDEEM#{member_id}#{redemption_id}",
            )
            issued.append(code)
        assert len(issued) == (quantity if reward.kind == "coupon" else 0)
        self.redemptions.append(
            RedemptionModel(
                member_id,
                redemption_id,
                reward.reward_id,
                quantity,
                cmd,
                answer,
                response["status"],
                self.now + timedelta(minutes=self.ctx().program.payment_timeout_minutes)
                if awaiting
                else None,
                issued,
            )
        )

    @precondition(lambda self: bool(self.redemptions))
    @rule(data=st.data(), other_body=st.booleans())
    def replay_redemption(self, data: st.DataObject, other_body: bool) -> None:
        red = data.draw(st.sampled_from(self.redemptions))
        before = self.snapshot()
        if other_body:
            cmd = mall.Redeem(
                red.member_id,
                red.redemption_id,
                red.reward_id,
                red.quantity % 3 + 1,
                request_hash({"other": red.redemption_id}),
            )
            with pytest.raises(Conflict) as conflict:
                mall.redeem(cmd, self.ctx(), self.shop)
            assert conflict.value.code == "IDEMPOTENCY_CONFLICT"
        else:
            assert mall.redeem(red.cmd, self.ctx(), self.shop) == red.answer
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.redemptions))
    @rule(data=st.data(), twice=st.booleans(), by_staff=st.booleans())
    def cancel(self, data: st.DataObject, twice: bool, by_staff: bool) -> None:
        with_coupons = [r for r in self.redemptions if r.coupons]
        choices = st.sampled_from(self.redemptions)
        if with_coupons:
            choices = st.one_of(choices, st.sampled_from(with_coupons))
        red = data.draw(choices)
        actor = "ops-1" if by_staff else "member"
        coupons_used = any(self.coupons[c].status != "active" for c in red.coupons)
        cancellable = red.status in ("completed", "awaiting_payment") and not coupons_used
        # cash paid: only staff cancel (they refund it through the payment provider)
        cash_paid = red.status == "completed" and red.payment_id is not None
        before = self.snapshot()
        balance = self.repo.balance(red.member_id)
        debt = self.repo.wallet(red.member_id).debt
        if red.status == "cancelled":
            view = mall.cancel(
                red.member_id, red.redemption_id, actor, self.ctx(), by_staff=by_staff
            )
            assert view["status"] == "cancelled"
            assert self.snapshot() == before
            return
        event(f"cancel {red.status}{' coupon used' if coupons_used else ''}")
        if not cancellable or (cash_paid and not by_staff):
            with pytest.raises(Conflict) as conflict:
                mall.cancel(red.member_id, red.redemption_id, actor, self.ctx(), by_staff=by_staff)
            assert conflict.value.code == "REDEMPTION_NOT_CANCELLABLE"
            if cancellable:
                event("member refused: cash paid")
                assert conflict.value.details["reason"] == "cash_paid"
            assert self.snapshot() == before
            return
        period = self.limit_period(red)
        view = mall.cancel(red.member_id, red.redemption_id, actor, self.ctx(), by_staff=by_staff)
        assert view["status"] == "cancelled"
        assert view["cash_refund_due"] == (
            int(red.answer[1]["cash_due"]) if red.payment_id is not None else 0
        )
        red.status, red.due_at = "cancelled", None
        self.give_back_use(red, period)
        for code in red.coupons:
            self.coupons[code].status = "void"
            self.coupons[code].used_by = f"REDEEM#{red.member_id}#{red.redemption_id}"
        self.check_given_back(red, balance, debt)
        if twice:
            after = self.snapshot()
            again = mall.cancel(red.member_id, red.redemption_id, "member", self.ctx())
            assert again == view
            assert self.snapshot() == after

    def cash_redemptions(self) -> list[RedemptionModel]:
        return [r for r in self.redemptions if self.rewards[r.reward_id].cash > 0]

    @precondition(lambda self: bool(self.cash_redemptions()))
    @rule(data=st.data(), replay=st.booleans(), other_payment=st.booleans())
    def payment_paid(self, data: st.DataObject, replay: bool, other_payment: bool) -> None:
        red = data.draw(st.sampled_from(self.cash_redemptions()))
        payment_id = (
            red.payment_id if red.payment_id is not None and not other_payment else _fresh("pay")
        )
        notice = mall.PaymentNotice(
            payment_id,
            red.member_id,
            red.redemption_id,
            int(red.answer[1]["cash_due"]),
            "CNY",
            "paid",
        )
        before = self.snapshot()
        event(f"paid notice on {red.status}")
        if red.status == "awaiting_payment":
            balance = self.repo.balance(red.member_id)
            view = mall.payment_notified(notice, self.ctx(), self.shop)
            assert view["status"] == "completed"
            assert self.snapshot() == before + 1  # the record and the hold, nothing else
            assert self.repo.balance(red.member_id) == balance  # the points stay spent
            red.status, red.payment_id, red.due_at = "completed", payment_id, None
            if replay:
                assert mall.payment_notified(notice, self.ctx(), self.shop) == view
            assert self.snapshot() == before + 1
            return
        if red.payment_id is not None and red.payment_id != payment_id:
            with pytest.raises(Conflict) as conflict:
                mall.payment_notified(notice, self.ctx(), self.shop)
            assert conflict.value.code == "PAYMENT_CONFLICT"
        elif red.payment_id is not None:  # a replay (perhaps after a cancel)
            view = mall.payment_notified(notice, self.ctx(), self.shop)
            assert view["status"] == red.status
        else:  # released (expired) or cancelled before any payment
            with pytest.raises(Conflict) as conflict:
                mall.payment_notified(notice, self.ctx(), self.shop)
            assert conflict.value.code == "REDEMPTION_EXPIRED"
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.cash_redemptions()))
    @rule(data=st.data())
    def payment_failed(self, data: st.DataObject) -> None:
        red = data.draw(st.sampled_from(self.cash_redemptions()))
        notice = mall.PaymentNotice(
            _fresh("pay"), red.member_id, red.redemption_id, 0, "CNY", "failed"
        )
        if red.status != "awaiting_payment":
            before = self.snapshot()
            assert mall.payment_notified(notice, self.ctx(), self.shop)["status"] == red.status
            assert self.snapshot() == before
            return
        balance = self.repo.balance(red.member_id)
        debt = self.repo.wallet(red.member_id).debt
        period = self.limit_period(red)
        view = mall.payment_notified(notice, self.ctx(), self.shop)
        assert view["status"] == "expired"
        red.status, red.due_at = "expired", None
        self.give_back_use(red, period)
        self.check_given_back(red, balance, debt)

    @rule(minutes=st.sampled_from([5, 16, 30]))
    def release_due_holds(self, minutes: int) -> None:
        """The release job, `minutes` later: every redemption whose hold is due."""
        self.now += timedelta(minutes=minutes)
        for red in self.redemptions:
            if red.due_at is None or red.due_at > self.now:
                continue
            balance = self.repo.balance(red.member_id)
            debt = self.repo.wallet(red.member_id).debt
            period = self.limit_period(red)
            assert mall.release_hold(red.member_id, red.redemption_id, self.ctx()) == "expired"
            event("hold released")
            red.status, red.due_at = "expired", None
            self.give_back_use(red, period)
            self.check_given_back(red, balance, debt)
            # a second run (or a late event) finds nothing to do
            before = self.snapshot()
            assert mall.release_hold(red.member_id, red.redemption_id, self.ctx()) == "expired"
            assert self.snapshot() == before

    # ---- purchases and refunds -----------------------------------------------------------

    @rule(
        data=st.data(),
        prices=st.lists(st.integers(2_500, 20_000), min_size=1, max_size=3),
        pay_share=st.sampled_from([0, 0, 30, 50]),
    )
    def purchase(self, data: st.DataObject, prices: list[int], pay_share: int) -> None:
        member_id = data.draw(st.sampled_from(self.members))
        own = [c for c, m in self.coupons.items() if m.member_id == member_id]
        anyone = list(self.coupons)  # in the order issued: codes are random
        usable = [c for c in own if self.coupons[c].status == "active"]
        pool = st.sampled_from(own) if own else st.sampled_from(anyone)
        from_rewards = [c for c in usable if self.coupons[c].redemption is not None]
        fresh = st.sampled_from(usable) if usable else pool
        if from_rewards:  # a reward's coupons get used, and its cancel is then refused
            fresh = st.one_of(fresh, st.sampled_from(from_rewards))
        codes = data.draw(st.lists(st.one_of(fresh, pool, st.sampled_from(anyone)), max_size=2))
        event(f"purchase with {len(codes)} codes")
        typed = [display_code(c).lower() if n % 2 else c for n, c in enumerate(codes)]
        # what the coupon rules must decide
        applied: list[str] = []
        for code in codes:
            coupon = self.coupons[code]
            if (
                code not in applied
                and coupon.member_id == member_id
                and coupon.status == "active"
                and self.now <= coupon.valid_to
            ):
                applied.append(code)
        total = sum(prices)
        bill = total - COUPON_OFF * len(applied)
        balance = self.repo.balance(member_id)
        pay = max(0, min(balance, bill * pay_share // 100))
        transaction_id = _fresh("t")
        cmd = domain.Purchase(
            transaction_id=transaction_id,
            store_id=STORE,
            member_id=member_id,
            occurred_at=self.now,
            items=[Item(f"sku-{n}", "general", 1, p) for n, p in enumerate(prices)],
            total=total,
            currency="CNY",
            pay_with_points=pay,
            request_hash=request_hash({"id": transaction_id, "codes": typed, "pay": pay}),
            coupon_codes=tuple(typed),
        )
        answer = domain.record_purchase(cmd, self.ctx())
        status, body = answer
        assert status == 201
        assert body["coupons_applied"] == [display_code(c) for c in applied], (body, codes)
        event(f"purchase applied {len(applied)}, rejected {len(body['coupons_rejected'])}")
        assert body["discount"] == COUPON_OFF * len(applied)
        assert body["points_value"] == pay
        assert body["discount"] + body["points_value"] + body["cash_due"] == total
        assert body["balance"] == self.repo.balance(member_id)
        for code in applied:
            coupon = self.coupons[code]
            assert coupon.status == "active"  # used at most once
            assert coupon.used_by is None
            coupon.status, coupon.used_by = "used", _ref(transaction_id)
        self.purchases.append(PurchaseModel(member_id, transaction_id, total, cmd, answer, applied))

    @precondition(lambda self: bool(self.purchases))
    @rule(data=st.data(), full=st.booleans())
    def refund(self, data: st.DataObject, full: bool) -> None:
        bought = data.draw(st.sampled_from(self.purchases))
        remaining = bought.total - bought.refunded
        if full or remaining <= 1:
            amount = max(remaining, 1)
        else:
            amount = data.draw(st.integers(1, remaining - 1))
        refund_id = _fresh("r")
        cmd = domain.Refund(
            refund_id=refund_id,
            store_id=STORE,
            transaction_id=bought.transaction_id,
            items=None,
            amount=amount,
            request_hash=request_hash({"id": refund_id, "amount": amount}),
        )
        before = self.snapshot()
        if remaining == 0:
            with pytest.raises(BusinessRuleViolation) as refused:
                domain.record_refund(cmd, self.ctx())
            assert refused.value.code == "REFUND_EXCEEDS_PURCHASE"
            assert self.snapshot() == before
            return
        answer = domain.record_refund(cmd, self.ctx())
        status, body = answer
        assert status == 201
        assert body["balance"] == self.repo.balance(bought.member_id)
        bought.refunded += amount
        restored: list[str] = []
        if bought.refunded == bought.total:
            for code in bought.coupons:
                coupon = self.coupons[code]
                if coupon.used_by == _ref(bought.transaction_id) and self.now <= coupon.valid_to:
                    coupon.status, coupon.used_by = "active", None
                    restored.append(display_code(code))
        assert body.get("coupons_restored", []) == restored, (body, bought)
        if bought.refunded == bought.total and bought.coupons:
            event(f"completing refund restored {len(restored)} of {len(bought.coupons)}")
        self.refunds.append((cmd, answer))

    @precondition(lambda self: bool(self.purchases) or bool(self.refunds))
    @rule(data=st.data())
    def replay_till(self, data: st.DataObject) -> None:
        """A till sends a purchase or a refund again, even after time has passed."""
        done: list[tuple[Any, Any, tuple[int, dict[str, Any]]]] = [
            (domain.record_purchase, p.cmd, p.answer) for p in self.purchases
        ] + [(domain.record_refund, cmd, answer) for cmd, answer in self.refunds]
        call, cmd, answer = data.draw(st.sampled_from(done))
        before = self.snapshot()
        assert call(cmd, self.ctx()) == answer
        assert self.snapshot() == before

    # ---- time ------------------------------------------------------------------------------

    @rule(days=st.sampled_from([1, 7, 20, 45, 120, 200]))
    def time_passes(self, days: int) -> None:
        """Days go by and the daily expiry run processes each member through yesterday."""
        self.now += timedelta(days=days)
        through = self.today() - timedelta(days=1)
        for member_id in self.members:
            expire_member(member_id, through, self.ctx())

    # ---- invariants --------------------------------------------------------------------------

    @invariant()
    def balances_agree_with_the_ledger(self) -> None:
        if not hasattr(self, "members"):
            return
        for member_id in self.members:
            check_invariants(self.repo, member_id)
            wallet = self.repo.wallet(member_id)
            if wallet.debt:
                event("a member in debt")
            if wallet.balance < 0:  # only a refund's clawback may leave a debt
                entries = self.repo.entries_of(member_id)
                assert any(e.type == "reverse" and e.detail.get("debt_added") for e in entries)

    @invariant()
    def stock_is_initial_minus_held(self) -> None:
        if not hasattr(self, "rewards"):
            return
        for reward_id, initial in self.initial.items():
            shards = self.repo.store.stock(reward_id)
            assert set(shards) == set(initial)
            assert all(left >= 0 for left in shards.values()), shards
            assert sum(shards.values()) == self.left(reward_id), (reward_id, shards)

    @invariant()
    def coupons_are_as_the_model_says(self) -> None:
        if not hasattr(self, "coupons"):
            return
        for code, model in self.coupons.items():
            stored = self.repo.coupon(code)
            assert stored is not None
            assert (stored.member_id, stored.status, stored.used_by) == (
                model.member_id,
                model.status,
                model.used_by,
            ), code
        # a coupon is used by at most one purchase
        users = [c.used_by for c in self.coupons.values() if c.status == "used"]
        assert all(u is not None for u in users)

    @invariant()
    def holds_are_the_redemptions_awaiting_payment(self) -> None:
        if not hasattr(self, "redemptions") or not isinstance(self.repo.store, InMemoryLedger):
            return
        mine = set(self.members)
        holds = {key for key in self.repo.store.holds if key[0] in mine}
        awaiting = {
            (r.member_id, r.redemption_id)
            for r in self.redemptions
            if r.status == "awaiting_payment"
        }
        assert holds == awaiting


def test_given_random_mall_and_till_operations_then_balances_stock_and_coupons_always_agree(
    ledger: Ledger,
) -> None:
    MallMachine.repo = ledger
    examples, steps = RUNS[ledger.kind]
    run_machine(MallMachine, examples=examples, steps=steps)
