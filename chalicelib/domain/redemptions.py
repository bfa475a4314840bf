"""Redemptions in the points mall: spend points (and perhaps cash) on a reward.

A redemption is one commit of the points ledger (chalicelib/domain/points.py): the member
conditional on its version (the points spent, earliest-expiring first, and the per-member
limit counter), the ledger entry, the stock taken from one or more shards (each
conditional on holding the units), the coupons of a coupon reward, the payment hold of a
points + cash redemption, and the request record `MEMBER#<id>` / `REQ#redeem#<id>` which
makes the redemption id idempotent and holds the redemption's state in `data`.

Later changes (payment, cancel, expiry, fulfilment) are member commits too, with a
RecordUpdate of that record conditional on its version: each happens at most once, and
whatever goes back (points to their original lots, stock, the limit use) goes back in
the same transaction as the status that says so.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from chalicelib.domain import coupon_issue
from chalicelib.domain import coupons as coupon_domain
from chalicelib.domain.audit import Actor
from chalicelib.domain.audit import entry as audit_entry
from chalicelib.domain.clock import program_date, rfc3339
from chalicelib.domain.coupons import CouponChange, CouponTemplate
from chalicelib.domain.member_codes import CodeUse, code_required, usable
from chalicelib.domain.points import (
    Context,
    Planner,
    _account,
    period_key,
    retry_commit,
    run_request,
)
from chalicelib.domain.records import (
    Account,
    Commit,
    HoldChange,
    MemberRequestRef,
    RecordUpdate,
    RequestRecord,
    StockMove,
)
from chalicelib.domain.rewards import Reward, pick_shards
from chalicelib.errors import (
    BusinessRuleViolation,
    Conflict,
    InvalidInput,
    NotFound,
)

MAX_QUANTITY = 10
SOURCE = "redemption"
_rng = random.SystemRandom()


@dataclass(frozen=True)
class Mall:
    """What a redemption reads beside the ledger: rewards and coupon templates, both as
    stored now (a reward's price, status, limit and tiers decide what is charged: a
    cached copy would sell at an old price, or a retired reward, for a while)."""

    reward: Callable[[str], Reward | None]
    template: Callable[[str], CouponTemplate | None]


def redemption_ref(member_id: str, redemption_id: str) -> MemberRequestRef:
    return MemberRequestRef(member_id, "redeem", redemption_id)


def _reference(member_id: str, redemption_id: str) -> str:
    """How other items (a member code consumed, a coupon voided) name a redemption."""
    return f"REDEEM#{member_id}#{redemption_id}"


def _id(record: RequestRecord) -> str:
    return str(record.data["redemption_id"])


# ---- redeem ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Redeem:
    member_id: str
    redemption_id: str
    reward_id: str
    quantity: int
    request_hash: str
    member_code: str | None = None
    member_code_required: bool = False  # a POS: the member shows their code
    by: Actor | None = None  # staff redeeming for the member: their entry joins the commit


def redeem(cmd: Redeem, ctx: Context, mall: Mall) -> tuple[int, dict[str, Any]]:
    if not 1 <= cmd.quantity <= MAX_QUANTITY:
        raise InvalidInput(
            f"quantity is 1 to {MAX_QUANTITY}",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "quantity", "issue": f"1..{MAX_QUANTITY}"}]},
        )
    key = redemption_ref(cmd.member_id, cmd.redemption_id)
    return run_request(ctx, key, cmd.request_hash, lambda: _plan_redeem(cmd, ctx, mall, key))


def _plan_redeem(
    cmd: Redeem, ctx: Context, mall: Mall, key: MemberRequestRef
) -> tuple[Commit, dict[str, Any]]:
    if cmd.member_code_required and cmd.member_code is None:
        raise code_required()
    code = (
        usable(ctx.repo.member_code(cmd.member_code), ctx.now, cmd.member_id)
        if cmd.member_code is not None
        else None
    )
    reward = mall.reward(cmd.reward_id)
    if reward is None:
        raise NotFound("no such reward", code="REWARD_NOT_FOUND")
    if not reward.available_at(ctx.now):
        raise BusinessRuleViolation(
            "this reward cannot be redeemed now",
            code="REWARD_UNAVAILABLE",
            details={"reward_id": reward.reward_id, "status": reward.status},
        )
    account = _account(ctx, cmd.member_id)
    if not reward.allows_tier(account.member.tier_code):
        raise BusinessRuleViolation(
            "this reward is for other tiers",
            code="TIER_REQUIRED",
            details={"tiers": list(reward.tiers)},
        )
    counts = _count_use(account, reward, cmd.quantity, ctx.now)
    template = None
    if reward.kind == "coupon":
        assert reward.coupon_template_id is not None
        template = mall.template(reward.coupon_template_id)
        _template_issuable(reward, template, ctx.now)

    plan = Planner(account, ctx)
    plan.release_due()
    points = reward.points * cmd.quantity
    entry = plan.debit(
        points,
        f"redeemed {reward.name}",
        SOURCE,
        cmd.redemption_id,
        kind="redeem",
        detail={"reward_id": reward.reward_id, "quantity": cmd.quantity},
    )
    paid_lots = {d: -p for d, p in entry.lots.items() if p < 0}
    taken = pick_shards(ctx.repo.stock(reward.reward_id), cmd.quantity, _rng)
    moves = tuple(StockMove(reward.reward_id, shard, -units) for shard, units in taken.items())
    cash_due = reward.cash * cmd.quantity
    awaiting = cash_due > 0
    # A points + cash coupon reward issues its coupons when the cash is paid: a coupon
    # must not be usable at a till before its price is.
    issued = (
        _issue(template, cmd.member_id, cmd.redemption_id, cmd.quantity, ctx.now)
        if template is not None and not awaiting
        else ()
    )
    due_at = ctx.now + timedelta(minutes=ctx.program.payment_timeout_minutes)
    holds = (HoldChange(cmd.member_id, cmd.redemption_id, due_at, "put"),) if awaiting else ()
    state = {
        "redemption_id": cmd.redemption_id,
        "member_id": cmd.member_id,
        "reward_id": reward.reward_id,
        "reward_name": reward.name,
        "kind": reward.kind,
        "quantity": cmd.quantity,
        "status": "awaiting_payment" if awaiting else "completed",
        "points_spent": points,
        "cash_due": cash_due,
        "paid_lots": {d.isoformat(): p for d, p in paid_lots.items()},
        "stock": {str(shard): units for shard, units in taken.items()},
        "coupons": [c.code for c in issued],
        **({"coupon_template_id": template.template_id} if template is not None else {}),
        "fulfilment": _first_fulfilment(reward, awaiting),
        "limit_period": counts[reward.reward_id][0] if reward.per_member_limit else None,
        "created_at": rfc3339(ctx.now),
        **({"payment_due_at": rfc3339(due_at)} if awaiting else {}),
    }
    response = {
        "redemption_id": cmd.redemption_id,
        "reward_id": reward.reward_id,
        "quantity": cmd.quantity,
        "status": state["status"],
        "points_spent": points,
        "cash_due": cash_due,
        "balance": plan.wallet.balance,
        **(
            {
                "coupon": _coupon_view(issued[0]),
                "coupons": [_coupon_view(c) for c in issued],
            }
            if issued
            else {}
        ),
        **({"payment_due_at": rfc3339(due_at)} if awaiting else {}),
    }
    record = RequestRecord(
        ref=key,
        kind="redemption",
        member_id=cmd.member_id,
        request_hash=cmd.request_hash,
        status=201,
        response=response,
        created_at=ctx.now,
        data=state,
    )
    commit = plan.commit(
        [record],
        redemption_counts=counts if reward.per_member_limit else None,
        stock=moves,
        new_coupons=issued,
        holds=holds,
        audit=audit_entry(
            cmd.by,
            "redemption.create",
            f"member:{cmd.member_id}",
            ctx.now,
            request_id=cmd.redemption_id,
            after={"reward_id": cmd.reward_id, "quantity": cmd.quantity},
        ),
    )
    if code is not None:
        commit = replace(
            commit,
            member_code=CodeUse(
                code=code.code,
                member_id=cmd.member_id,
                at=ctx.now,
                used_by=_reference(cmd.member_id, cmd.redemption_id),
            ),
        )
    return commit, response


def _template_issuable(reward: Reward, template: CouponTemplate | None, now: datetime) -> None:
    """A coupon reward sells only coupons its template may issue now: the same check as a
    staff or rule issue (coupon_issue.usable: not retired, fixed window not over), so the
    points never buy a coupon that is expired on arrival."""
    reason = "coupon template missing"
    if template is not None:
        try:
            coupon_issue.usable(template, now)
            return
        except BusinessRuleViolation as exc:
            reason = str(exc.code)
    raise BusinessRuleViolation(
        "this reward cannot be redeemed now",
        code="REWARD_UNAVAILABLE",
        details={"reward_id": reward.reward_id, "reason": reason},
    )


def _issuable_now(template: CouponTemplate | None, now: datetime) -> bool:
    if template is None:
        return False
    try:
        coupon_issue.usable(template, now)
    except BusinessRuleViolation:
        return False
    return True


def _issue(
    template: CouponTemplate, member_id: str, redemption_id: str, quantity: int, now: datetime
) -> tuple[coupon_domain.Coupon, ...]:
    return tuple(
        coupon_domain.issue(template, member_id, now, "reward", redemption_id)
        for _ in range(quantity)
    )


def _first_fulfilment(reward: Reward, awaiting: bool) -> str | None:
    """Gifts and services are `placed` once paid for (points-only: at once); coupons
    are fulfilled by being issued."""
    if reward.kind == "coupon":
        return None
    return "pending_payment" if awaiting else "placed"


def _coupon_view(coupon: coupon_domain.Coupon) -> dict[str, Any]:
    return {
        "code": coupon_domain.display_code(coupon.code),
        "template_id": coupon.template_id,
        "valid_to": rfc3339(coupon.valid_to),
    }


def _count_use(
    account: Account, reward: Reward, quantity: int, now: datetime
) -> dict[str, tuple[str, int]]:
    """The member's redemption counts with this one added; LIMIT_REACHED past the
    reward's per-member limit (units, in its period). Counters of periods already over
    are dropped (they count nothing any more): the map on the member item stays bounded
    by the limited rewards redeemed this day, month or ever."""
    limit = reward.per_member_limit
    if limit is None:
        return dict(account.redemption_counts)
    live = {period_key(p, now) for p in ("day", "month", "year", "ever")}
    counts = {k: v for k, v in account.redemption_counts.items() if v[0] in live}
    current = period_key(limit.period, now)
    counted, used = counts.get(reward.reward_id, ("", 0))
    used = used if counted == current else 0
    if used + quantity > limit.count:
        raise BusinessRuleViolation(
            "this reward's limit per member is reached",
            code="LIMIT_REACHED",
            details={"limit": limit.count, "period": limit.period, "used": used},
        )
    counts[reward.reward_id] = (current, used + quantity)
    return counts


# ---- reads -------------------------------------------------------------------------------


def redemption_view(data: dict[str, Any]) -> dict[str, Any]:
    """A redemption as GET shows it (from its record's data)."""
    view = {
        name: data.get(name)
        for name in (
            "redemption_id",
            "reward_id",
            "reward_name",
            "kind",
            "quantity",
            "status",
            "points_spent",
            "cash_due",
            "fulfilment",
            "tracking_no",
            "payment_due_at",
            "payment_id",
            "created_at",
            "cancelled_at",
            "cash_refund_due",
        )
    }
    view["coupons"] = [coupon_domain.display_code(c) for c in data.get("coupons") or []]
    for name in ("quantity", "points_spent", "cash_due", "cash_refund_due"):
        value = view[name]
        if value is not None:
            view[name] = int(value)
    return view


def get_redemption(member_id: str, redemption_id: str, ctx: Context) -> dict[str, Any]:
    return redemption_view(_record(ctx, member_id, redemption_id).data)


def _record(ctx: Context, member_id: str, redemption_id: str) -> RequestRecord:
    record = ctx.repo.get_request(redemption_ref(member_id, redemption_id), consistent=True)
    if record is None:
        raise NotFound("no such redemption", code="REDEMPTION_NOT_FOUND")
    return record


# ---- giving back: cancel and expiry -----------------------------------------------------


def _give_back(
    plan: Planner, record: RequestRecord, reason: str, coupons: list[CouponChange]
) -> dict[str, Any]:
    """Points to the lots that paid (their own expiry dates; those already past it
    expire again at once, as a refund does), stock to its shards, the limit use when it
    is still this period's: the commit's extra fields."""
    data = record.data
    redemption_id = str(data["redemption_id"])
    paid = {date.fromisoformat(d): int(p) for d, p in (data.get("paid_lots") or {}).items()}
    today = program_date(plan.ctx.now)
    for expires_on, points in sorted(paid.items()):
        if points <= 0:
            continue
        plan.credit(
            points,
            expires_on,
            reason,
            SOURCE,
            redemption_id,
            kind="reverse",
            counts_as_earned=False,
        )
        if expires_on < today and plan.wallet.lots.get(expires_on):
            plan.expire_date(
                expires_on, {"expired_on": expires_on.isoformat(), "returned_by": redemption_id}
            )
    reward_id = str(data["reward_id"])
    moves = tuple(
        StockMove(reward_id, int(shard), int(units))
        for shard, units in (data.get("stock") or {}).items()
    )
    extra: dict[str, Any] = {"stock": moves, "coupon_changes": tuple(coupons)}
    period = data.get("limit_period")
    counts = dict(plan.account.redemption_counts)
    if period is not None and counts.get(reward_id, ("", 0))[0] == period:
        used = counts[reward_id][1] - int(data["quantity"])
        counts[reward_id] = (str(period), max(used, 0))
        extra["redemption_counts"] = counts
    if data.get("status") == "awaiting_payment" and data.get("payment_due_at"):
        due_at = datetime.fromisoformat(str(data["payment_due_at"]))
        extra["holds"] = (HoldChange(record.member_id, redemption_id, due_at, "delete"),)
    return extra


def _void_coupons(ctx: Context, record: RequestRecord) -> list[CouponChange]:
    """The reward's coupons, voided: every one must still be unused (409 otherwise)."""
    changes = []
    for code in record.data.get("coupons") or []:
        coupon = ctx.repo.coupon(str(code))
        if coupon is None or coupon.status != "active":
            raise Conflict(
                "a coupon of this redemption was used",
                code="REDEMPTION_NOT_CANCELLABLE",
                details={"coupon": coupon_domain.display_code(str(code))},
            )
        ref = _reference(record.member_id, _id(record))
        changes.append(CouponChange(str(code), record.member_id, "void", ref, ctx.now))
    return changes


def _cancellable(data: dict[str, Any]) -> None:
    status, fulfilment = data.get("status"), data.get("fulfilment")
    if status == "awaiting_payment":
        return
    if status == "completed" and (data.get("kind") == "coupon" or fulfilment == "placed"):
        return
    raise Conflict(
        "this redemption can no longer be cancelled",
        code="REDEMPTION_NOT_CANCELLABLE",
        details={"status": status, "fulfilment": fulfilment},
    )


def cancel(
    member_id: str,
    redemption_id: str,
    actor: str,
    ctx: Context,
    *,
    by_staff: bool = False,
    by: Actor | None = None,
) -> dict[str, Any]:
    """Cancel: stock and points go back. Cash paid is the payment provider's to refund,
    and nothing here reaches the provider: so only staff cancel a redemption whose cash
    was paid, and the answer (and the record) says `cash_refund_due` for them to refund
    it there; a member asking is refused (REDEMPTION_NOT_CANCELLABLE, reason
    `cash_paid`). Cancelling a cancelled redemption answers its state again."""

    def attempt() -> dict[str, Any]:
        record = _record(ctx, member_id, redemption_id)
        data = record.data
        if data.get("status") == "cancelled":
            return redemption_view(data)
        _cancellable(data)
        if not by_staff and _cash_paid(data):
            raise Conflict(
                "the cash part was paid: staff cancel this redemption and refund the cash",
                code="REDEMPTION_NOT_CANCELLABLE",
                details={"status": data.get("status"), "reason": "cash_paid"},
            )
        voids = _void_coupons(ctx, record) if data.get("coupons") else []
        account = _account(ctx, member_id)
        plan = Planner(account, ctx)
        plan.release_due()
        extra = _give_back(plan, record, "redemption cancelled", voids)
        paid = _cash_paid(data)
        changes = {
            "status": "cancelled",
            "cancelled_at": rfc3339(ctx.now),
            "cancelled_by": actor,
            "cash_refund_due": int(data["cash_due"]) if paid else 0,
            **({"fulfilment": "cancelled"} if data.get("fulfilment") else {}),
        }
        audit = audit_entry(
            by,
            "redemption.cancel",
            f"member:{member_id}",
            ctx.now,
            request_id=redemption_id,
            before={"status": data.get("status"), "fulfilment": data.get("fulfilment")},
            after={
                "status": "cancelled",
                "points_returned": int(data.get("points_spent") or 0),
                "cash_refund_due": changes["cash_refund_due"],
            },
        )
        _commit_update(ctx, plan, record, changes, {**extra, "audit": audit})
        return redemption_view({**data, **changes})

    return retry_commit(ctx, attempt, "the redemption is busy; retry")


def _cash_paid(data: dict[str, Any]) -> bool:
    return data.get("status") == "completed" and int(data.get("cash_due") or 0) > 0


def _commit_update(
    ctx: Context,
    plan: Planner,
    record: RequestRecord,
    changes: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    update = RecordUpdate(record.ref, record.version, changes)
    ctx.repo.commit(plan.commit([], updated_request=update, **(extra or {})))


def release_hold(member_id: str, redemption_id: str, ctx: Context) -> str:
    """The release job (or a failed payment): a redemption still awaiting payment when
    its hold is due expires, and everything it held goes back. Idempotent: anything
    else is left as it is. Returns the status after."""

    def attempt() -> dict[str, Any]:
        record = ctx.repo.get_request(redemption_ref(member_id, redemption_id), consistent=True)
        if record is None:
            return {"status": "missing"}
        data = record.data
        if data.get("status") != "awaiting_payment":
            return {"status": data.get("status")}
        account = _account(ctx, member_id, tombstone=True)
        plan = Planner(account, ctx)
        plan.release_due()
        voids = _void_coupons(ctx, record) if data.get("coupons") else []
        extra = _give_back(plan, record, "redemption not paid in time", voids)
        changes = {"status": "expired", "expired_at": rfc3339(ctx.now)}
        if data.get("fulfilment"):
            changes["fulfilment"] = "cancelled"
        _commit_update(ctx, plan, record, changes, extra)
        return {"status": "expired"}

    return str(retry_commit(ctx, attempt, "the redemption is busy; retry")["status"])


# ---- payment -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentNotice:
    payment_id: str
    member_id: str
    redemption_id: str
    amount: int
    currency: str
    status: str  # paid | failed


def payment_notified(notice: PaymentNotice, ctx: Context, mall: Mall) -> dict[str, Any]:
    """The payment provider's word on a points + cash redemption. `paid` completes it
    (gifts and services become `placed`) and drops the hold; `failed` releases it as a
    timeout would. A replay answers the state again; `paid` after the hold was released
    is 409 REDEMPTION_EXPIRED: the provider must refund the money."""

    def attempt() -> dict[str, Any]:
        record = _record(ctx, notice.member_id, notice.redemption_id)
        data = record.data
        status = data.get("status")
        if notice.status == "failed":
            if status == "awaiting_payment":
                release_hold(notice.member_id, notice.redemption_id, ctx)
                record = _record(ctx, notice.member_id, notice.redemption_id)
            return redemption_view(record.data)
        if status == "completed" or (status == "cancelled" and data.get("payment_id")):
            if data.get("payment_id") != notice.payment_id:
                raise Conflict(
                    "this redemption was paid by another payment",
                    code="PAYMENT_CONFLICT",
                    details={"payment_id": data.get("payment_id")},
                )
            return redemption_view(data)
        if status != "awaiting_payment":
            raise Conflict(
                "the redemption was released before the payment arrived: refund it",
                code="REDEMPTION_EXPIRED",
                details={"status": status},
            )
        if notice.amount != int(data.get("cash_due") or 0) or notice.currency != "CNY":
            raise BusinessRuleViolation(
                "the amount paid is not the cash due",
                code="PAYMENT_MISMATCH",
                details={"cash_due": int(data.get("cash_due") or 0), "currency": "CNY"},
            )
        # money already paid completes even for a member erased meanwhile (the tombstone)
        plan = Planner(_account(ctx, notice.member_id, tombstone=True), ctx)
        changes: dict[str, Any] = {
            "status": "completed",
            "payment_id": notice.payment_id,
            "paid_at": rfc3339(ctx.now),
        }
        if data.get("fulfilment"):
            changes["fulfilment"] = "placed"
        due_at = datetime.fromisoformat(str(data["payment_due_at"]))
        hold = HoldChange(notice.member_id, notice.redemption_id, due_at, "delete")
        issued: tuple[coupon_domain.Coupon, ...] = ()
        if data.get("coupon_template_id"):
            template = mall.template(str(data["coupon_template_id"]))
            if not _issuable_now(template, ctx.now):
                # Retired, or its window ended while the payment was awaited: the coupons
                # bought would be unusable. Released as a late payment is (points and
                # stock back), and the provider refunds the money.
                release_hold(notice.member_id, notice.redemption_id, ctx)
                raise Conflict(
                    "the reward's coupon can no longer be issued: refund the payment",
                    code="REDEMPTION_EXPIRED",
                    details={"status": "expired", "reason": "coupon_template_unavailable"},
                )
            assert template is not None
            issued = _issue(
                template, notice.member_id, notice.redemption_id, int(data["quantity"]), ctx.now
            )
            changes["coupons"] = [c.code for c in issued]
        extra = {"holds": (hold,), "new_coupons": issued}
        _commit_update(ctx, plan, record, changes, extra)
        return redemption_view({**data, **changes})

    return retry_commit(ctx, attempt, "the redemption is busy; retry")


# ---- fulfilment ----------------------------------------------------------------------------

NEXT_FULFILMENT: dict[str, dict[str, tuple[str, ...]]] = {
    "gift": {"placed": ("shipped", "delivered"), "shipped": ("delivered",)},
    "service": {"placed": ("delivered",)},
}


def fulfil(
    member_id: str,
    redemption_id: str,
    status: str,
    tracking_no: str | None,
    ctx: Context,
    by: Actor | None = None,
) -> dict[str, Any]:
    """Staff move a gift forward (placed -> shipped -> delivered; a service placed ->
    delivered), conditional on the record's version. Repeating the current status is a
    replay; any other move is 409 INVALID_FULFILMENT."""

    def attempt() -> dict[str, Any]:
        record = _record(ctx, member_id, redemption_id)
        data = record.data
        current = data.get("fulfilment")
        if current == status and data.get("status") == "completed":
            return redemption_view(data)
        allowed = NEXT_FULFILMENT.get(str(data.get("kind")), {}).get(str(current), ())
        if data.get("status") != "completed" or status not in allowed:
            raise Conflict(
                f"cannot move fulfilment from {current} to {status}",
                code="INVALID_FULFILMENT",
                details={"fulfilment": current, "status": data.get("status")},
            )
        changes: dict[str, Any] = {"fulfilment": status, f"{status}_at": rfc3339(ctx.now)}
        if tracking_no is not None:
            changes["tracking_no"] = tracking_no
        plan = Planner(_account(ctx, member_id), ctx)
        audit = audit_entry(
            by,
            "redemption.fulfil",
            f"member:{member_id}",
            ctx.now,
            request_id=redemption_id,
            before={"fulfilment": current},
            after={"fulfilment": status},  # not the tracking number: it leads to an address
        )
        _commit_update(ctx, plan, record, changes, {"audit": audit})
        return redemption_view({**data, **changes})

    return retry_commit(ctx, attempt, "the redemption is busy; retry")
