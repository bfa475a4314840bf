"""Points operations: purchases, refunds, activities, staff adjustments.

Each operation reads the member (wallet + version), plans every write it needs, and
commits them in one transaction: the member item conditional on its version, the ledger
entries, and the request record keyed on the client id, conditional on not existing.
So a crash leaves all or nothing, concurrent operations on one member serialise through
the version (the loser re-reads and re-plans), and a client id is applied at most once:
a replay finds the request record and gets the first answer back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from chalicelib.domain import ledger
from chalicelib.domain.audit import Actor
from chalicelib.domain.audit import entry as audit_entry_for
from chalicelib.domain.clock import PROGRAM_TZ, program_date, rfc3339
from chalicelib.domain.coupon_rules import CouponOutcome, apply_coupons, codes_to_read
from chalicelib.domain.coupons import CouponChange, display_code
from chalicelib.domain.earning import (
    Earning,
    Item,
    compute,
    reversal_for_amount,
    reversal_for_units,
)
from chalicelib.domain.ledger import InsufficientPoints, Movement, PendingLot
from chalicelib.domain.member_codes import CodeUse, code_required, invalid_code, usable
from chalicelib.domain.members import Member
from chalicelib.domain.program import ProgramConfig
from chalicelib.domain.records import (
    Account,
    Commit,
    CouponTaken,
    Entry,
    LedgerRepository,
    MemberCodeTaken,
    MemberRequestRef,
    PurchaseLine,
    PurchaseRecord,
    PurchaseRef,
    RecordUpdate,
    RefundRecord,
    RefundRef,
    RequestExists,
    RequestRecord,
    RequestRef,
    StockShort,
    UsedCoupon,
    VersionConflict,
    client_id,
)
from chalicelib.domain.tiers import Tier, tier_by_code
from chalicelib.errors import (
    BusinessRuleViolation,
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from chalicelib.ids import request_hash as request_hash  # callers hash requests here too
from chalicelib.ids import ulid
from chalicelib.retry import retry

COMMIT_ATTEMPTS = 10
T = TypeVar("T")
MAX_TRANSACTION_AGE = timedelta(days=30)
MAX_CLOCK_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Context:
    repo: LedgerRepository
    program: ProgramConfig
    tiers: tuple[Tier, ...]
    now: datetime
    sleep: Callable[[float], None] = time.sleep


# ---- idempotency -----------------------------------------------------------------------


def replay(record: RequestRecord, hashed: str) -> tuple[int, dict[str, Any]]:
    if record.request_hash != hashed:
        raise Conflict(
            "this id was already used with a different request",
            code="IDEMPOTENCY_CONFLICT",
            details={"id": client_id(record.ref)},
        )
    return record.status, record.response


def run_request(
    ctx: Context,
    key: RequestRef,
    hashed: str,
    plan: Callable[[], tuple[Commit, dict[str, Any]]],
) -> tuple[int, dict[str, Any]]:
    """Plan (reading what the plan needs) and commit, until the commit lands, the request
    turns out to be done already (replay), or the retries run out (503, retry later).
    Used by every request a client id makes idempotent: points operations here, and
    redemptions (chalicelib/domain/redemptions.py)."""
    existing = ctx.repo.get_request(key, consistent=False)
    if existing is not None:
        return replay(existing, hashed)

    def attempt() -> tuple[int, dict[str, Any]]:
        try:
            commit, response = plan()
        except DomainError:
            # A replay of a request that already took effect must get its first answer,
            # not an error computed from the state that request itself produced.
            existing = ctx.repo.get_request(key, consistent=True)
            if existing is not None:
                return replay(existing, hashed)
            raise
        try:
            ctx.repo.commit(commit)
            return 201, response
        except RequestExists:
            existing = ctx.repo.get_request(key, consistent=True)
            if existing is None:  # pragma: no cover - the condition said it exists
                raise Unavailable("request record vanished; retry") from None
            return replay(existing, hashed)
        except RACES:
            # Often the winner of the race was this very request sent twice (a POS retry
            # storm): then the answer is already there and there is nothing to redo.
            # Otherwise re-read and re-plan (retry_commit).
            existing = ctx.repo.get_request(key, consistent=True)
            if existing is not None:
                return replay(existing, hashed)
            raise

    try:
        return retry_commit(ctx, attempt, "too busy; retry")
    except MemberCodeTaken:
        # Another request consumed the member code between our read and our commit (two
        # tills at once), unless that other request was this very one.
        existing = ctx.repo.get_request(key, consistent=True)
        if existing is not None:
            return replay(existing, hashed)
        raise invalid_code() from None


# What a commit can lose to another writer, and a new plan may win: the member (or a
# record) changed since it was read; a coupon another till used meanwhile (read again, it
# is refused: COUPON_USED); a stock shard emptied meanwhile (another may still hold stock).
RACES = (VersionConflict, CouponTaken, StockShort)


def retry_commit(ctx: Context, attempt: Callable[[], T], busy: str) -> T:
    """Re-read and re-plan after a lost race (RACES), backing off; 503 CONTENDED when the
    member never stops changing."""
    return retry(
        attempt,
        attempts=COMMIT_ATTEMPTS,
        retry_on=RACES,
        exhausted=lambda: Unavailable(busy, code="CONTENDED"),
        sleep=ctx.sleep,
    )


def _account(ctx: Context, member_id: str, *, tombstone: bool = False) -> Account:
    """The member's account for an operation. An erased member is not found by anything a
    member, a till or staff asks for (404 MEMBER_NOT_FOUND); what the program still owes
    its ledger (`tombstone=True`: the refund of an old purchase, a payment arriving, a
    hold released; the expiry run loads it directly) works on its tombstone, which keeps
    the numbers."""
    account = ctx.repo.load(member_id)
    if account is None or (account.erased and not tombstone):
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    return account


# ---- shared planning helpers -----------------------------------------------------------


class Planner:
    """Accumulates wallet changes and their ledger entries for one commit."""

    def __init__(self, account: Account, ctx: Context, store_id: str | None = None) -> None:
        self.account = account
        self.ctx = ctx
        self.wallet = account.wallet
        self.entries: list[Entry] = []
        self.store_id = store_id
        self._released = False

    def record(
        self,
        kind: str,
        movement: Movement,
        reason: str,
        source: str,
        source_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> Entry:
        entry = Entry(
            entry_id=ulid(),
            member_id=self.account.member.member_id,
            type=kind,
            points=movement.points,
            balance_after=self.wallet.balance,
            reason=reason,
            source=source,
            source_id=source_id,
            store_id=self.store_id,
            created_at=self.ctx.now + timedelta(microseconds=len(self.entries)),
            lots=dict(movement.by_lot),
            detail={
                **(detail or {}),
                **({"debt_repaid": movement.debt_repaid} if movement.debt_repaid else {}),
                **({"debt_added": movement.debt_added} if movement.debt_added else {}),
                **({"unrecovered": movement.unrecovered} if movement.unrecovered else {}),
            },
        )
        self.entries.append(entry)
        return entry

    def release_due(self) -> None:
        """Lazy release: pending purchase points whose window has ended become spendable
        in the same commit as whatever touches the member next."""
        if self._released:
            return
        self._released = True
        today = program_date(self.ctx.now)
        for lot in ledger.due_pending(self.wallet, self.ctx.now):
            self.wallet, movement = ledger.release(self.wallet, lot)
            self.record(
                "earn",
                movement,
                "purchase points released",
                "transaction",
                lot.source_id,
                {"expires_on": lot.expires_on.isoformat()},
            )
            if lot.expires_on < today:
                # Held past its expiry date (a very long return window): it expires now,
                # since the daily run has already passed that date.
                self.expire_date(lot.expires_on)

    def expire_date(self, expires_on: date, detail: dict[str, Any] | None = None) -> int:
        """Expire the lot of `expires_on` with its ledger entry; the points it held."""
        self.wallet, movement = ledger.expire(self.wallet, expires_on)
        self.record(
            "expire",
            movement,
            "points expired",
            "expiry",
            f"expiry-{expires_on.isoformat()}",
            detail,
        )
        return -movement.points

    def credit(
        self,
        points: int,
        expires_on: date,
        reason: str,
        source: str,
        source_id: str | None,
        kind: str = "earn",
        detail: dict[str, Any] | None = None,
        counts_as_earned: bool = True,
    ) -> Entry:
        self.wallet, movement = ledger.credit(
            self.wallet, points, expires_on, counts_as_earned=counts_as_earned
        )
        return self.record(
            kind,
            movement,
            reason,
            source,
            source_id,
            {"expires_on": expires_on.isoformat(), **(detail or {})},
        )

    def debit(
        self,
        points: int,
        reason: str,
        source: str,
        source_id: str | None,
        kind: str = "redeem",
        detail: dict[str, Any] | None = None,
    ) -> Entry:
        try:
            self.wallet, movement = ledger.debit(self.wallet, points)
        except InsufficientPoints as exc:
            raise BusinessRuleViolation(
                "not enough points",
                code="INSUFFICIENT_POINTS",
                details={"requested": exc.requested, "available": exc.available},
            ) from exc
        return self.record(kind, movement, reason, source, source_id, detail)

    def claw_back(self, points: int, prefer: date | None, reason: str, source_id: str) -> Entry:
        self.wallet, movement = ledger.claw_back(
            self.wallet,
            points,
            prefer=prefer,
            allow_negative=self.ctx.program.clawback_policy == "negative",
        )
        return self.record("reverse", movement, reason, "transaction", source_id)

    def expires_on(self, earned: datetime) -> date:
        return ledger.expiry_date(
            program_date(earned), self.ctx.program.expiry_policy, self.ctx.program.expiry_months
        )

    def commit(self, new_requests: list[RequestRecord], **extra: Any) -> Commit:
        return Commit(
            member_id=self.account.member.member_id,
            expected_version=self.account.version,
            wallet=self.wallet,
            entries=self.entries,
            new_requests=new_requests,
            **extra,
        )


# ---- purchases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Purchase:
    transaction_id: str
    store_id: str
    member_id: str | None  # None: the member is the one whose `member_code` this is
    occurred_at: datetime
    items: list[Item]
    total: int
    currency: str
    pay_with_points: int
    request_hash: str
    coupon_codes: tuple[str, ...] = ()
    member_code: str | None = None
    # Spending points at a till needs the member present (api.md, Member presence): the
    # POS route sets this for every caller; in-process callers (tests, tools) may not.
    member_code_required: bool = False
    by: Actor | None = None  # staff recording it: their audit entry joins the commit


def record_purchase(cmd: Purchase, ctx: Context) -> tuple[int, dict[str, Any]]:
    # The checks run inside the plan: a retry of a purchase accepted long ago must get its
    # first answer (found before planning), not TRANSACTION_TOO_OLD, and a retry of a
    # purchase whose member code it consumed, not MEMBER_CODE_INVALID.
    key = PurchaseRef(cmd.store_id, cmd.transaction_id)
    return run_request(ctx, key, cmd.request_hash, lambda: _plan_present_purchase(cmd, ctx, key))


def _plan_present_purchase(
    cmd: Purchase, ctx: Context, key: PurchaseRef
) -> tuple[Commit, dict[str, Any]]:
    """Who the member is and that they are present, then the purchase itself; the member
    code (when given) is consumed in the purchase's own commit, so it pays once."""
    if cmd.pay_with_points > 0 and cmd.member_code_required and cmd.member_code is None:
        raise code_required()
    code = (
        usable(ctx.repo.member_code(cmd.member_code), ctx.now, cmd.member_id)
        if cmd.member_code is not None
        else None
    )
    member_id = cmd.member_id
    if member_id is None:
        if code is None:
            raise NotFound("no member matches", code="MEMBER_NOT_FOUND")
        member_id = code.member_id
    commit, response = _plan_purchase(_account(ctx, member_id), cmd, ctx, key)
    if code is not None:
        use = CodeUse(
            code=code.code, member_id=member_id, at=ctx.now, used_by=ctx.repo.reference(key)
        )
        commit = replace(commit, member_code=use)
    return commit, response


def _check_purchase(cmd: Purchase, now: datetime) -> None:
    if sum(item.amount for item in cmd.items) != cmd.total:
        raise BusinessRuleViolation(
            "total is not the sum of the items",
            code="TOTAL_MISMATCH",
            details={"total": cmd.total, "items_sum": sum(i.amount for i in cmd.items)},
        )
    if cmd.occurred_at > now + MAX_CLOCK_AHEAD:
        raise BusinessRuleViolation("occurred_at is in the future", code="INVALID_OCCURRED_AT")
    if cmd.occurred_at < now - MAX_TRANSACTION_AGE:
        raise BusinessRuleViolation(
            "transaction is older than the program accepts", code="TRANSACTION_TOO_OLD"
        )


def _plan_purchase(
    account: Account, cmd: Purchase, ctx: Context, key: PurchaseRef
) -> tuple[Commit, dict[str, Any]]:
    _check_purchase(cmd, ctx.now)
    plan = Planner(account, ctx, cmd.store_id)
    plan.release_due()
    tier = tier_by_code(account.member.tier_code, ctx.tiers)
    # Coupons first, then points against what is left of the bill (their cap applies to
    # it), then cash: total = discount + points value + cash due.
    coupons = _coupons(cmd, ctx, account.member.member_id)
    discount = coupons.discount
    points_value, paid_lots = _pay_with_points(plan, cmd, cmd.total - discount)
    cash_due = cmd.total - discount - points_value
    earning = compute(
        cmd.items,
        total=cmd.total,
        cash_paid=cash_due,
        program=ctx.program,
        tier_multiplier=tier.benefits.earn_multiplier,
        store_id=cmd.store_id,
        at=cmd.occurred_at,
        discounts=coupons.line_discounts,
    )
    expires_on = plan.expires_on(cmd.occurred_at)
    pending = _earn(plan, cmd, earning.points, expires_on, cash_due, key)
    first_purchase = account.first_purchase_at is None
    response = {
        "transaction_id": cmd.transaction_id,
        "member_id": account.member.member_id,
        "store_id": cmd.store_id,
        "points_earned": earning.points,
        "points_pending": earning.points if pending else 0,
        "points_spent": cmd.pay_with_points,
        "points_value": points_value,
        "cash_due": cash_due,
        "currency": cmd.currency,
        "balance": plan.wallet.balance,
        "tier": {
            "code": tier.code,
            "name": tier.name,
            "member_discount_pct": tier.benefits.member_discount_pct,
        },
        "coupons_applied": [c.display for c in coupons.applied],
        "coupons_rejected": [{"code": r.code, "reason": r.reason} for r in coupons.rejected],
        "discount": discount,
        "coupon_discounts": [
            {"code": c.display, "template_id": c.template_id, "discount": c.discount}
            for c in coupons.applied
        ],
        "breakdown": _breakdown(earning),
    }
    bought = PurchaseRecord(
        store_id=cmd.store_id,
        transaction_id=cmd.transaction_id,
        occurred_at=rfc3339(cmd.occurred_at),
        total=cmd.total,
        cash_due=cash_due,
        lines=tuple(
            PurchaseLine(i.sku, i.category, i.quantity, i.unit_price, p.points)
            for i, p in zip(cmd.items, earning.items, strict=True)
        ),
        points_earned=earning.points,
        points_spent=cmd.pay_with_points,
        expires_on=expires_on,
        pending=pending,
        first_purchase=first_purchase,
        referred_by=account.referred_by,
        paid_lots=paid_lots,
        refunded_qty=(0,) * len(cmd.items),
        # tiers count what was paid in cash, in the purchase's program month
        month=program_date(cmd.occurred_at).strftime("%Y-%m"),
        qualifying_delta=cash_due,
        coupons=tuple(
            UsedCoupon(c.code, c.template_id, c.discount, c.lines) for c in coupons.applied
        ),
    )
    record = RequestRecord(
        ref=key,
        kind="purchase",
        member_id=account.member.member_id,
        request_hash=cmd.request_hash,
        status=201,
        response=response,
        created_at=ctx.now,
        data=bought.to_data(),
    )
    fields: dict[str, Any] = {"last_purchase_at": cmd.occurred_at}
    if first_purchase:
        fields["first_purchase_at"] = cmd.occurred_at
    used = tuple(
        CouponChange(c.code, account.member.member_id, "use", ctx.repo.reference(key), ctx.now)
        for c in coupons.applied
    )
    audit = audit_entry_for(
        cmd.by,
        "transaction.purchase",
        f"member:{account.member.member_id}",
        ctx.now,
        request_id=cmd.transaction_id,
        after={"store_id": cmd.store_id, "total": cmd.total, "points_used": cmd.pay_with_points},
    )
    commit = plan.commit([record], member_fields=fields, coupon_changes=used, audit=audit)
    return commit, response


def _coupons(cmd: Purchase, ctx: Context, member_id: str) -> CouponOutcome:
    """The purchase's coupons as stored now (consistent reads), applied or refused."""
    read = {code: ctx.repo.coupon(code) for code in codes_to_read(cmd.coupon_codes)}
    return apply_coupons(
        cmd.coupon_codes,
        read,
        cmd.items,
        member_id=member_id,
        store_id=cmd.store_id,
        at=cmd.occurred_at,
    )


def _pay_with_points(plan: Planner, cmd: Purchase, bill: int) -> tuple[int, dict[date, int]]:
    """Spend the points offered as payment of `bill` (the total after coupons): what they
    are worth (fen) and the lots they came from (expiry date -> points), which a refund
    returns them to."""
    if not cmd.pay_with_points:
        return 0, {}
    value = _points_payment_value(cmd, plan.ctx.program, bill)
    redeemed = plan.debit(
        cmd.pay_with_points,
        "points paid at the till (积分抵现)",
        "transaction",
        cmd.transaction_id,
        detail={"value_fen": value},
    )
    return value, {d: -p for d, p in redeemed.lots.items()}


def _earn(
    plan: Planner, cmd: Purchase, points: int, expires_on: date, cash_due: int, key: PurchaseRef
) -> bool:
    """Credit the points the purchase earned, or hold them for the program's return
    window; True when they are held (pending)."""
    program = plan.ctx.program
    if program.pending_days > 0 and points > 0:
        plan.wallet = ledger.add_pending(
            plan.wallet,
            PendingLot(
                source_id=plan.ctx.repo.reference(key),
                points=points,
                release_at=cmd.occurred_at + timedelta(days=program.pending_days),
                expires_on=expires_on,
            ),
        )
        return True
    if points > 0:
        plan.credit(
            points,
            expires_on,
            "purchase",
            "transaction",
            cmd.transaction_id,
            detail={"total": cmd.total, "cash_due": cash_due},
        )
    return False


def _points_payment_value(cmd: Purchase, program: ProgramConfig, bill: int) -> int:
    rate = program.points_per_yuan_payment
    if (cmd.pay_with_points * 100) % rate:
        raise BusinessRuleViolation(
            f"points pay in steps of {rate // 100 if rate >= 100 else rate} points",
            code="INVALID_POINTS_AMOUNT",
            details={"points_per_yuan": rate},
        )
    value = cmd.pay_with_points * 100 // rate
    cap = bill * program.payment_cap_pct // 100
    if value > cap:
        raise BusinessRuleViolation(
            "points can pay only part of this bill",
            code="POINTS_PAYMENT_CAP",
            details={
                "max_value_fen": cap,
                "max_points": cap * rate // 100,
                "cap_pct": program.payment_cap_pct,
            },
        )
    return value


def _breakdown(earning: Earning) -> dict[str, Any]:
    return {
        "base_points_per_yuan": earning.base_rate,
        "tier_multiplier": earning.tier_multiplier,
        "campaign_multiplier": earning.campaign_multiplier,
        "campaigns": list(earning.campaign_ids),
        "uncapped_points": earning.uncapped,
        "cap": earning.cap,
        "items": [
            {
                "sku": item.sku,
                "eligible_fen": float(item.eligible),
                "category_multiplier": item.category_multiplier,
                "points": item.points,
            }
            for item in earning.items
        ],
    }


# ---- refunds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refund:
    refund_id: str
    store_id: str
    transaction_id: str
    items: list[tuple[str, int]] | None  # (sku, quantity)
    amount: int | None
    request_hash: str
    by: Actor | None = None  # staff recording it: their audit entry joins the commit


def record_refund(cmd: Refund, ctx: Context) -> tuple[int, dict[str, Any]]:
    txn_key = PurchaseRef(cmd.store_id, cmd.transaction_id)
    key = RefundRef(txn_key, cmd.refund_id)

    def plan() -> tuple[Commit, dict[str, Any]]:
        purchase = ctx.repo.get_request(txn_key, consistent=True)
        if purchase is None:
            raise NotFound("no such transaction at this store", code="TRANSACTION_NOT_FOUND")
        account = _account(ctx, purchase.member_id, tombstone=True)
        return _plan_refund(account, purchase, cmd, ctx, key)

    return run_request(ctx, key, cmd.request_hash, plan)


def _plan_refund(
    account: Account, purchase: RequestRecord, cmd: Refund, ctx: Context, key: RefundRef
) -> tuple[Commit, dict[str, Any]]:
    bought = PurchaseRecord.from_data(purchase.data)
    if cmd.items is not None:
        share = _units_refunded(bought, cmd.items)
    else:
        assert cmd.amount is not None
        share = _amount_refunded(bought, cmd.amount)
    after = _after_refund(bought, share)
    points_now = after.points_reversed - bought.points_reversed
    returned_now = after.points_returned - bought.points_returned
    after = replace(
        after, discount_refunded=bought.discount_refunded + _discount_share(bought, after, share)
    )
    discount_now = after.discount_refunded - bought.discount_refunded

    plan = Planner(account, ctx, cmd.store_id)
    plan.release_due()
    if points_now > 0:
        _reverse_points_earned(plan, bought, points_now, key, cmd)
    if returned_now > 0:
        _return_points_paid(plan, bought, returned_now, cmd)
    restores: tuple[CouponChange, ...] = ()
    restored: list[str] = []
    kept: list[dict[str, str]] = []
    if after.refunded_amount == bought.total and bought.coupons:
        restores, restored, kept = _restore_coupons(bought, ctx, key.purchase)
    response = {
        "refund_id": cmd.refund_id,
        "transaction_id": cmd.transaction_id,
        "amount": share.amount,
        "points_reversed": points_now,
        "points_returned": returned_now,
        "balance": plan.wallet.balance,
        # only for a purchase with coupons (the response model shows the defaults)
        **(
            {
                "coupon_discount": discount_now,
                "coupons_restored": restored,
                "coupons_not_restored": kept,
            }
            if bought.coupons
            else {}
        ),
    }
    total = bought.total
    refunded = RefundRecord(
        amount=share.amount,
        points_reversed=points_now,
        points_returned=returned_now,
        # the refunded share of what was paid in cash leaves the purchase's month
        month=bought.month,
        qualifying_delta=-(share.amount * bought.cash_due // total) if total else 0,
    )
    record = RequestRecord(
        ref=key,
        kind="refund",
        member_id=account.member.member_id,
        request_hash=cmd.request_hash,
        status=201,
        response=response,
        created_at=ctx.now,
        data=refunded.to_data(),
    )
    updated = RecordUpdate(purchase.ref, purchase.version, after.refunded_fields())
    audit = audit_entry_for(
        cmd.by,
        "transaction.refund",
        f"member:{account.member.member_id}",
        ctx.now,
        request_id=cmd.refund_id,
        after={
            "store_id": cmd.store_id,
            "transaction_id": cmd.transaction_id,
            "amount": share.amount,
            "points_reversed": points_now,
        },
    )
    commit = plan.commit([record], updated_request=updated, coupon_changes=restores, audit=audit)
    return commit, response


def _discount_share(bought: PurchaseRecord, after: PurchaseRecord, share: _Share) -> int:
    """Of the coupons' discount, the share that went with what this refund takes back
    (what the till may deduct from the cash it returns): each line's discount by units as
    its points are, an amount's in proportion to the bill; the refund that completes the
    purchase takes the rest."""
    discount = bought.discount
    if not discount:
        return 0
    if after.refunded_amount == bought.total:
        return discount - bought.discount_refunded
    if share.refunded_qty == bought.refunded_qty:  # an amount, no items
        return reversal_for_amount(discount, bought.total, bought.refunded_amount, share.amount)
    return sum(
        reversal_for_units(bought.line_discount(i), line.quantity, before, now - before)
        for i, (line, before, now) in enumerate(
            zip(bought.lines, bought.refunded_qty, share.refunded_qty, strict=True)
        )
    )


def _restore_coupons(
    bought: PurchaseRecord, ctx: Context, purchase: PurchaseRef
) -> tuple[tuple[CouponChange, ...], list[str], list[dict[str, str]]]:
    """The refund that completes a purchase gives back its coupons, each one still used by
    that purchase and still valid now (an expired one stays used: a refund does not
    revive it). The changes, for the refund's own commit; the codes restored; those
    kept, with why."""
    ref = ctx.repo.reference(purchase)
    changes: list[CouponChange] = []
    restored: list[str] = []
    kept: list[dict[str, str]] = []
    for used in bought.coupons:
        coupon = ctx.repo.coupon(used.code)
        shown = display_code(used.code)
        if coupon is None or coupon.status != "used" or coupon.used_by != ref:
            kept.append({"code": shown, "reason": "COUPON_CHANGED"})
        elif ctx.now > coupon.valid_to:
            kept.append({"code": shown, "reason": "COUPON_EXPIRED"})
        else:
            changes.append(CouponChange(used.code, coupon.member_id, "restore", ref, ctx.now))
            restored.append(shown)
    return tuple(changes), restored, kept


@dataclass(frozen=True)
class _Share:
    """What one refund takes of its purchase, before the full-refund rule."""

    amount: int  # fen
    points: int  # of the points the purchase earned
    refunded_qty: tuple[int, ...]  # per line, this refund's units included


def _units_refunded(bought: PurchaseRecord, items: list[tuple[str, int]]) -> _Share:
    """Returned units, taken from the purchase's lines of their sku in order: exactly the
    points those units earned."""
    refunded_qty = list(bought.refunded_qty)
    amount = points = 0
    for sku, quantity in items:
        lines = [i for i, line in enumerate(bought.lines) if line.sku == sku]
        if not lines:
            raise BusinessRuleViolation(
                "item not in this purchase", code="UNKNOWN_ITEM", details={"sku": sku}
            )
        left = quantity
        for index in lines:
            line = bought.lines[index]
            take = min(left, line.quantity - refunded_qty[index])
            if take <= 0:
                continue
            points += reversal_for_units(line.points, line.quantity, refunded_qty[index], take)
            amount += take * line.unit_price
            refunded_qty[index] += take
            left -= take
        if left:
            raise BusinessRuleViolation(
                "more units than were bought and not yet refunded",
                code="REFUND_EXCEEDS_PURCHASE",
                details={"sku": sku},
            )
    return _Share(amount, points, tuple(refunded_qty))


def _amount_refunded(bought: PurchaseRecord, amount: int) -> _Share:
    """An amount without items: points in proportion to the share of the bill."""
    if bought.refunded_amount + amount > bought.total:
        raise BusinessRuleViolation(
            "refund larger than what remains of the purchase",
            code="REFUND_EXCEEDS_PURCHASE",
            details={"refundable": bought.total - bought.refunded_amount},
        )
    points = reversal_for_amount(bought.points_earned, bought.total, bought.refunded_amount, amount)
    return _Share(amount, points, bought.refunded_qty)


def _after_refund(bought: PurchaseRecord, share: _Share) -> PurchaseRecord:
    """The purchase with this refund counted. The refund that completes it reverses
    whatever rounding left of the points earned and returns the rest of those spent;
    none reverses more than was earned."""
    refunded_after = bought.refunded_amount + share.amount
    if refunded_after > bought.total:
        raise BusinessRuleViolation(
            "refund larger than the purchase", code="REFUND_EXCEEDS_PURCHASE"
        )
    earned_left = bought.points_earned - bought.points_reversed
    if refunded_after == bought.total:
        reversed_now = earned_left
        returned_now = bought.points_spent - bought.points_returned
    else:
        reversed_now = min(share.points, earned_left)
        returned_now = reversal_for_amount(
            bought.points_spent, bought.total, bought.refunded_amount, share.amount
        )
    return replace(
        bought,
        refunded_amount=refunded_after,
        refunded_qty=share.refunded_qty,
        points_reversed=bought.points_reversed + reversed_now,
        points_returned=bought.points_returned + returned_now,
    )


def _reverse_points_earned(
    plan: Planner, bought: PurchaseRecord, points: int, key: RefundRef, cmd: Refund
) -> None:
    """Take back points the purchase earned: from its pending points while they wait for
    the return window, the rest from the wallet (its own lot first)."""
    still_pending = 0
    if bought.pending:
        plan.wallet, still_pending = ledger.reduce_pending(
            plan.wallet, plan.ctx.repo.reference(key.purchase), points
        )
    if points - still_pending > 0:
        plan.claw_back(points - still_pending, bought.expires_on, "refund", cmd.transaction_id)


def _return_points_paid(plan: Planner, bought: PurchaseRecord, points: int, cmd: Refund) -> None:
    """Points that paid a bill go back with the expiry dates of the lots they were taken
    from: a refund must not give them a fresh date (buying and refunding would keep
    points alive forever). Those whose date has passed expire again at once, in the same
    commit, as the daily run already passed that date: the ledger shows both entries, and
    the balance, the lots and the expiry index stay as the run would have left them."""
    if bought.paid_lots:
        back = ledger.returned_lots(bought.paid_lots, bought.points_returned, points)
    else:
        # Recorded before purchases kept the lots that paid them: the purchase's own
        # expiry date stands in for theirs (never a fresh one).
        back = {bought.expires_on: points}
    today = program_date(plan.ctx.now)
    for expires_on, returned in sorted(back.items()):
        plan.credit(
            returned,
            expires_on,
            "points paid returned by refund",
            "transaction",
            cmd.transaction_id,
            kind="reverse",
            counts_as_earned=False,
        )
        if expires_on < today and plan.wallet.lots.get(expires_on):
            detail = {"expired_on": expires_on.isoformat(), "returned_by": cmd.refund_id}
            plan.expire_date(expires_on, detail)


# ---- activities and adjustments ----------------------------------------------------------


def period_key(period: str, at: datetime) -> str:
    day = at.astimezone(PROGRAM_TZ).date()
    return {
        "day": day.isoformat(),
        "month": day.strftime("%Y-%m"),
        "year": str(day.year),
        "ever": "ever",
    }[period]


@dataclass(frozen=True)
class Activity:
    member_id: str
    activity_id: str
    type: str
    request_hash: str
    referrer_member_id: str | None = None
    reference: str | None = None  # e.g. the reviewed order or shared page
    # Granted by the program itself (sign-up bonus, birthday, referral reward), not posted
    # by the member: recorded in its own space of ids (see `activity_ref`).
    granted: bool = False
    # The member with its personal fields, for `profile_completed`: the ledger reads the
    # wallet without decrypting them (docs/architecture.md, "Personal data at rest").
    profile: Member | None = None


# Activities only the program grants; a member posting one is refused.
PROGRAM_GRANTS = frozenset({"signup", "birthday", "referral_reward"})


def activity_ref(member_id: str, activity_id: str, *, granted: bool) -> MemberRequestRef:
    """The request record of an activity. Members choose their activity ids, so the
    program's grants (`signup`, `birthday-<year>`, `referral-reward-<referee>`) have a
    space of their own: no member request can ever occupy a grant's id (and make the
    grant an IDEMPOTENCY_CONFLICT, or a replay of the member's own answer)."""
    return MemberRequestRef(member_id, "grant" if granted else "activity", activity_id)


# Which rule pays (and counts) an activity. A referral pays both sides: the referee when
# declaring the referrer (`referral_welcome`), the referrer on the referee's first
# purchase (`referral`, granted by the stream handler as `referral_reward`).
RULE_OF_ACTIVITY = {"referral": "referral_welcome", "referral_reward": "referral"}


def record_activity(cmd: Activity, ctx: Context) -> tuple[int, dict[str, Any]]:
    rule_name = RULE_OF_ACTIVITY.get(cmd.type, cmd.type)
    rule = ctx.program.activities.get(rule_name)
    if rule is None:
        raise InvalidInput("unknown activity type", code="UNKNOWN_ACTIVITY")
    if (cmd.type in PROGRAM_GRANTS) != cmd.granted:
        raise InvalidInput("unknown activity type", code="UNKNOWN_ACTIVITY")
    if cmd.type == "referral":
        _check_referrer(cmd, ctx)
    key = activity_ref(cmd.member_id, cmd.activity_id, granted=cmd.granted)
    if cmd.granted:
        # Grants recorded before they had a space of their own sit among the member's
        # activities: a grant found there with the program's own request hash is a replay.
        # (A member's request there never has that hash: its body has other fields.)
        legacy_key = activity_ref(cmd.member_id, cmd.activity_id, granted=False)
        legacy = ctx.repo.get_request(legacy_key, consistent=False)
        if legacy is not None and legacy.request_hash == cmd.request_hash:
            return replay(legacy, cmd.request_hash)

    def plan(account: Account) -> tuple[Commit, dict[str, Any]]:
        counts = dict(account.activity_counts)
        current = period_key(rule.period, ctx.now)
        counted_period, count = counts.get(rule_name, ("", 0))
        used = count if counted_period == current else 0
        if used >= rule.limit:
            raise BusinessRuleViolation(
                "this activity has earned all it can for now",
                code="LIMIT_REACHED",
                details={"type": cmd.type, "limit": rule.limit, "period": rule.period},
            )
        fields: dict[str, Any] = {}
        if cmd.type == "profile_completed":
            _check_profile_complete(cmd.profile if cmd.profile is not None else account.member)
        if cmd.type == "referral":
            if account.referred_by is not None:
                raise BusinessRuleViolation(
                    "already referred", code="LIMIT_REACHED", details={"type": "referral"}
                )
            if not account.first_registration:
                # A phone is referred once ever: one registered before (then erased) is
                # not a new customer, and its referrer was (or could have been) paid.
                raise BusinessRuleViolation(
                    "this phone was registered before",
                    code="LIMIT_REACHED",
                    details={"type": "referral", "reason": "phone_registered_before"},
                )
            fields["referred_by"] = cmd.referrer_member_id
        counts[rule_name] = (current, used + 1)
        planner = Planner(account, ctx)
        planner.release_due()
        expires_on = planner.expires_on(ctx.now)
        points = rule.points
        if points > 0:  # a rule switched to 0 points still counts toward its limit
            planner.credit(
                points,
                expires_on,
                cmd.type,
                "activity",
                cmd.activity_id,
                detail={"reference": cmd.reference} if cmd.reference else None,
            )
        response = {
            "activity_id": cmd.activity_id,
            "type": cmd.type,
            "points_earned": points,
            "balance": planner.wallet.balance,
        }
        record = RequestRecord(
            ref=key,
            kind="grant" if cmd.granted else "activity",
            member_id=cmd.member_id,
            request_hash=cmd.request_hash,
            status=201,
            response=response,
            created_at=ctx.now,
        )
        return planner.commit([record], activity_counts=counts, member_fields=fields), response

    return run_request(ctx, key, cmd.request_hash, lambda: plan(_account(ctx, cmd.member_id)))


def _check_referrer(cmd: Activity, ctx: Context) -> None:
    if not cmd.referrer_member_id:
        raise InvalidInput(
            "a referral names the referrer",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "referrer_member_id", "issue": "required"}]},
        )
    if cmd.referrer_member_id == cmd.member_id:
        raise BusinessRuleViolation("a member cannot refer themselves", code="INVALID_REFERRAL")
    referrer = ctx.repo.load(cmd.referrer_member_id)
    if referrer is None or referrer.erased:
        raise BusinessRuleViolation("unknown referrer", code="INVALID_REFERRAL")


def _check_profile_complete(member: Member) -> None:
    missing = [name for name in ("name", "gender", "birthday") if getattr(member, name) is None]
    if missing:
        raise BusinessRuleViolation(
            "the profile is not complete", code="PROFILE_INCOMPLETE", details={"missing": missing}
        )


@dataclass(frozen=True)
class Adjustment:
    member_id: str
    adjustment_id: str
    points: int
    reason: str
    actor: str
    request_hash: str
    # Staff making it: the audit entry goes into the adjustment's own commit.
    by: Actor | None = None


def record_adjustment(cmd: Adjustment, ctx: Context) -> tuple[int, dict[str, Any]]:
    if cmd.points == 0 or abs(cmd.points) > ctx.program.max_adjustment:
        raise BusinessRuleViolation(
            "adjustment must be non-zero and within the program's limit",
            code="INVALID_ADJUSTMENT",
            details={"max": ctx.program.max_adjustment},
        )
    key = MemberRequestRef(cmd.member_id, "adjust", cmd.adjustment_id)

    def plan(account: Account) -> tuple[Commit, dict[str, Any]]:
        planner = Planner(account, ctx)
        planner.release_due()
        audit = {"actor": cmd.actor, "adjustment_id": cmd.adjustment_id}
        if cmd.points > 0:
            planner.credit(
                cmd.points,
                planner.expires_on(ctx.now),
                cmd.reason,
                "staff",
                cmd.adjustment_id,
                kind="adjust",
                detail=audit,
                counts_as_earned=False,
            )
        else:
            planner.debit(
                -cmd.points, cmd.reason, "staff", cmd.adjustment_id, kind="adjust", detail=audit
            )
        response = {
            "adjustment_id": cmd.adjustment_id,
            "member_id": cmd.member_id,
            "points": cmd.points,
            "reason": cmd.reason,
            "balance": planner.wallet.balance,
        }
        record = RequestRecord(
            ref=key,
            kind="adjustment",
            member_id=cmd.member_id,
            request_hash=cmd.request_hash,
            status=201,
            response=response,
            created_at=ctx.now,
            data=audit,
        )
        audit_entry = audit_entry_for(
            cmd.by,
            "points.adjust",
            f"member:{cmd.member_id}",
            ctx.now,
            request_id=cmd.adjustment_id,
            before={"balance": account.wallet.balance},
            after={"balance": planner.wallet.balance, "points": cmd.points},
        )
        return planner.commit([record], audit=audit_entry), response

    return run_request(ctx, key, cmd.request_hash, lambda: plan(_account(ctx, cmd.member_id)))


# ---- reads -------------------------------------------------------------------------------


def release_pending(member_id: str, ctx: Context) -> Account:
    """Apply due pending releases before a read shows the wallet (lazy release)."""

    def attempt() -> Account:
        account = _account(ctx, member_id)
        if not ledger.due_pending(account.wallet, ctx.now):
            return account
        planner = Planner(account, ctx)
        planner.release_due()
        ctx.repo.commit(planner.commit([]))
        return _account(ctx, member_id)  # as committed: the released points now count

    return retry_commit(ctx, attempt, "the member is too busy; retry")


def points_view(account: Account) -> dict[str, Any]:
    wallet = account.wallet
    return {
        "member_id": account.member.member_id,
        "balance": wallet.balance,
        "pending": wallet.pending_points,
        "lifetime_earned": wallet.lifetime_earned,
        "debt": wallet.debt,
        "expiring": [{"date": d.isoformat(), "points": p} for d, p in wallet.schedule()],
        "pending_releases": [
            {"release_at": rfc3339(p.release_at), "points": p.points} for p in wallet.pending
        ],
    }
