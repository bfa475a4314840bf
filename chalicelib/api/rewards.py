"""Points mall: the rewards catalog, redemptions, payment notifications, fulfilment."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint

from chalicelib import errors
from chalicelib.api.audit import actor
from chalicelib.api.http import (
    ALL_STAFF,
    OPS,
    PUBLIC,
    Access,
    Call,
    operation,
    parse_body,
)
from chalicelib.api.members import SELF_OR_OPS
from chalicelib.api.points import replayable
from chalicelib.api.privacy import require_member
from chalicelib.domain import audit
from chalicelib.domain.clock import rfc3339, utc_now
from chalicelib.ids import request_hash
from chalicelib.lazy import LazyModule
from chalicelib.wiring import payment_notification_secret, points_context, services

if TYPE_CHECKING:
    from chalicelib.domain import redemptions as domain
    from chalicelib.domain import rewards as rewards_domain
    from chalicelib.domain.rewards import (
        Reward,
    )
    from chalicelib.models import rewards as models
    from chalicelib.models.rewards import (
        AdminRewardView,
        FulfilmentRequest,
        PageQuery,
        PaymentNotification,
        RedemptionPage,
        RedemptionRequest,
        RedemptionView,
        RewardPage,
        RewardPatch,
        RewardQuery,
        RewardRequest,
    )
else:
    domain = LazyModule("chalicelib.domain.redemptions")
    rewards_domain = LazyModule("chalicelib.domain.rewards")
    models = LazyModule("chalicelib.models.rewards")

bp = Blueprint(__name__)
TAGS = ("mall",)
STAFF_OPS = Access(staff=OPS)
# How far a payment notification's timestamp may be from our clock.
PAYMENT_SKEW_SECONDS = 300
TIMESTAMP_SHAPE = re.compile(r"[0-9]{1,12}")


def _mall() -> domain.Mall:
    from chalicelib.dal.coupon_templates import find_template

    rewards = services().rewards
    return domain.Mall(
        # Read as stored (one consistent GetItem), not through the 30 s cache: the price,
        # the retirement, the limit and the tiers decide what a member is charged.
        reward=lambda reward_id: rewards.reward(reward_id, fresh=True),
        template=lambda template_id: find_template(template_id, consistent=True),
    )


def _template_active(template_id: str | None) -> bool | None:
    if template_id is None:
        return None
    from chalicelib.dal.coupon_templates import find_template

    template = find_template(template_id, consistent=True)
    return template is not None and template.status == "active"


def _reward_fields(reward: Reward, stock_left: int) -> dict[str, Any]:
    limit = reward.per_member_limit
    return {
        "reward_id": reward.reward_id,
        "name": reward.name,
        "name_en": reward.name_en,
        "description": reward.description,
        "description_en": reward.description_en,
        "image_url": reward.image_url,
        "kind": reward.kind,
        "points": reward.points,
        "cash": reward.cash,
        "stock_left": stock_left,
        "in_stock": stock_left > 0,
        "tiers": list(reward.tiers),
        "per_member_limit": {"count": limit.count, "period": limit.period} if limit else None,
        "valid_from": rfc3339(reward.valid_from) if reward.valid_from else None,
        "valid_to": rfc3339(reward.valid_to) if reward.valid_to else None,
        "coupon_template_id": reward.coupon_template_id,
        "status": reward.status,
    }


def _admin_view(reward: Reward, stock_left: int) -> AdminRewardView:
    return models.AdminRewardView(
        **_reward_fields(reward, stock_left),
        stock_shards=reward.stock_shards,
        version=reward.version,
        created_at=reward.created_at,
        updated_at=reward.updated_at,
    )


# ---- catalog (staff) -----------------------------------------------------------------------


@operation(
    bp,
    "/v1/admin/rewards",
    "POST",
    access=STAFF_OPS,
    body="chalicelib.models.rewards:RewardRequest",
    response="chalicelib.models.rewards:AdminRewardView",
    status=201,
    tags=("admin", *TAGS),
    summary=(
        "Create a reward with its stock (the same id and body again answers the same; "
        "another body: 409 REWARD_EXISTS)"
    ),
    error_statuses=(400, 401, 403, 409, 422),
)
def create_reward(call: Call) -> AdminRewardView:
    request: RewardRequest = call.body
    hashed = request_hash(request.model_dump(mode="json"))
    now = rfc3339(utc_now())
    reward = rewards_domain.Reward(
        reward_id=request.reward_id,
        name=request.name,
        name_en=request.name_en,
        description=request.description,
        description_en=request.description_en,
        image_url=request.image_url,
        kind=request.kind,
        points=request.points,
        cash=request.cash,
        stock_shards=request.stock_shards or rewards_domain.default_shards(request.stock),
        per_member_limit=(
            rewards_domain.MemberLimit(
                request.per_member_limit.count, request.per_member_limit.period
            )
            if request.per_member_limit
            else None
        ),
        tiers=tuple(request.tiers),
        valid_from=request.valid_from,
        valid_to=request.valid_to,
        coupon_template_id=request.coupon_template_id,
        created_at=now,
        updated_at=now,
    )
    rewards = services().rewards
    existing_hash = rewards.request_hash(reward.reward_id)
    if existing_hash is None:
        rewards_domain.check_reward(reward, _template_active(reward.coupon_template_id))
        entry = audit.entry(
            actor(call),
            "reward.create",
            f"reward:{reward.reward_id}",
            utc_now(),
            request_id=reward.reward_id,
            after={**_audited_fields(reward), "stock": request.stock},
        )
        if rewards.create(reward, request.stock, hashed, entry):
            return _admin_view(reward, request.stock)
        existing_hash = rewards.request_hash(reward.reward_id)
    if existing_hash != hashed:
        raise errors.Conflict(
            "a reward with this id exists", code="REWARD_EXISTS", details={"id": reward.reward_id}
        )
    return _current_view(reward.reward_id)


def _current_view(reward_id: str) -> AdminRewardView:
    rewards = services().rewards
    reward = rewards.reward(reward_id, fresh=True)
    if reward is None:
        raise errors.NotFound("no such reward", code="REWARD_NOT_FOUND")
    return _admin_view(reward, sum(max(v, 0) for v in rewards.stock(reward_id).values()))


@operation(
    bp,
    "/v1/admin/rewards/{reward_id}",
    "GET",
    access=STAFF_OPS,
    response="chalicelib.models.rewards:AdminRewardView",
    tags=("admin", *TAGS),
    summary="A reward as configured, with its stock left (read consistently)",
    error_statuses=(401, 403, 404),
)
def get_reward(call: Call) -> AdminRewardView:
    return _current_view(call.params["reward_id"])


@operation(
    bp,
    "/v1/admin/rewards/{reward_id}",
    "PATCH",
    access=STAFF_OPS,
    body="chalicelib.models.rewards:RewardPatch",
    response="chalicelib.models.rewards:AdminRewardView",
    tags=("admin", *TAGS),
    summary=(
        "Edit a reward (send the version read: 409 VERSION_CONFLICT if it changed); "
        "`stock` sets the units available now, `status: retired` stops new redemptions"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422),
)
def patch_reward(call: Call) -> AdminRewardView:
    request: RewardPatch = call.body
    rewards = services().rewards
    reward_id = call.params["reward_id"]
    reward = rewards.reward(reward_id, fresh=True)
    if reward is None:
        raise errors.NotFound("no such reward", code="REWARD_NOT_FOUND")
    if reward.version != request.version:
        raise errors.Conflict(
            "the reward changed meanwhile; reload it",
            code="VERSION_CONFLICT",
            details={"version": reward.version},
        )
    changes = request.model_dump(exclude_none=True, exclude={"version", "stock"})
    if request.per_member_limit is not None:
        changes["per_member_limit"] = rewards_domain.MemberLimit(
            request.per_member_limit.count, request.per_member_limit.period
        )
    if request.tiers is not None:
        changes["tiers"] = tuple(request.tiers)
    for name in ("valid_from", "valid_to"):
        if getattr(request, name) is not None:
            changes[name] = getattr(request, name)
    now = utc_now()
    updated = rewards_domain.edited(reward, changes, now) if changes else reward
    by = actor(call)
    if changes:
        rewards_domain.check_reward(updated, True if updated.kind == "coupon" else None)
        before, after = audit.changed(_audited_fields(reward), _audited_fields(updated))
        entry = audit.entry(
            by, "reward.update", f"reward:{reward_id}", now, before=before, after=after
        )
        if not rewards.save(updated, reward.version, entry):
            raise errors.Conflict(
                "the reward changed meanwhile; reload it", code="VERSION_CONFLICT"
            )
    if request.stock is not None:
        # its own write (every shard, conditional on what was read), with its own entry
        entry = audit.entry(
            by, "reward.stock", f"reward:{reward_id}", now, after={"stock": request.stock}
        )
        rewards.set_stock(reward_id, request.stock, entry)
    return _current_view(reward_id)


def _audited_fields(reward: Reward) -> dict[str, Any]:
    """What an entry records of a reward: its configuration (no request hash)."""
    data = rewards_domain.reward_to_data(reward)
    skip = ("created_at", "updated_at", "version")
    return audit.named({k: v for k, v in data.items() if k not in skip}, "reward")


# ---- catalog (members) ---------------------------------------------------------------------


@operation(
    bp,
    "/v1/rewards",
    "GET",
    access=Access(member=True, staff=ALL_STAFF),
    query="chalicelib.models.rewards:RewardQuery",
    response="chalicelib.models.rewards:RewardPage",
    tags=TAGS,
    summary=(
        "Rewards open for redemption, by reward id, paged (filters tier, kind, in_stock; "
        "a page may hold fewer than `limit` after filtering: follow next_cursor); a member "
        "sees whether they can afford each and whether their tier may redeem it"
    ),
    error_statuses=(400, 401, 403),
)
def list_rewards(call: Call) -> RewardPage:
    query: RewardQuery = call.query
    svc = services()
    rewards, cursor = svc.rewards.page(query.limit, query.cursor)
    now = utc_now()
    shown = [
        r
        for r in rewards
        if r.available_at(now)
        and (query.kind is None or r.kind == query.kind)
        and (query.tier is None or r.allows_tier(query.tier))
    ]
    left = svc.rewards.stock_left(shown) if shown else {}
    account = None
    assert call.principal is not None
    if call.principal.kind == "member" and call.principal.member_id is not None:
        account = svc.ledger.load(call.principal.member_id)
    views = []
    for reward in shown:
        stock_left = left.get(reward.reward_id, 0)
        if query.in_stock is not None and (stock_left > 0) != query.in_stock:
            continue
        view = models.RewardView(**_reward_fields(reward, stock_left))
        if account is not None:
            view.affordable = account.wallet.balance >= reward.points
            view.eligible = reward.allows_tier(account.member.tier_code)
        views.append(view)
    return models.RewardPage(rewards=views, next_cursor=cursor)


# ---- redemptions ---------------------------------------------------------------------------


@operation(
    bp,
    "/v1/members/{member_id}/redemptions",
    "POST",
    access=Access(member_self=True, staff=OPS, store=True),
    body="chalicelib.models.rewards:RedemptionRequest",
    response="chalicelib.models.rewards:RedemptionResponse",
    status=201,
    tags=TAGS,
    summary=(
        "Redeem a reward: points (earliest-expiring first) and stock in one transaction; "
        "points + cash: awaiting_payment until paid or released. A POS needs the member's "
        "member_code (403 MEMBER_CODE_REQUIRED / MEMBER_CODE_INVALID). 422 "
        "INSUFFICIENT_POINTS, OUT_OF_STOCK, LIMIT_REACHED, TIER_REQUIRED, REWARD_UNAVAILABLE"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422, 503),
)
def post_redemption(call: Call) -> object:
    request: RedemptionRequest = call.body
    assert call.principal is not None
    status, body = domain.redeem(
        domain.Redeem(
            member_id=call.params["member_id"],
            redemption_id=request.redemption_id,
            reward_id=request.reward_id,
            quantity=request.quantity,
            # The code is consumed, not part of what is asked: a retry with a fresh code
            # is the same redemption.
            request_hash=request_hash(request.model_dump(mode="json", exclude={"member_code"})),
            member_code=request.member_code,
            member_code_required=call.principal.kind == "store",
            by=actor(call),
        ),
        points_context(),
        _mall(),
    )
    return replayable(status, models.RedemptionResponse.model_validate(body))


@operation(
    bp,
    "/v1/members/{member_id}/redemptions",
    "GET",
    access=SELF_OR_OPS,
    query="chalicelib.models.rewards:PageQuery",
    response="chalicelib.models.rewards:RedemptionPage",
    tags=TAGS,
    summary="The member's redemptions, ordered by redemption id, paged",
    error_statuses=(400, 401, 403, 404),
)
def list_redemptions(call: Call) -> RedemptionPage:
    from chalicelib.dal.rewards import redemption_page

    query: PageQuery = call.query
    require_member(call.params["member_id"])  # also binds the tables
    records, cursor = redemption_page(call.params["member_id"], query.limit, query.cursor)
    return models.RedemptionPage(
        redemptions=[
            models.RedemptionView.model_validate(domain.redemption_view(r)) for r in records
        ],
        next_cursor=cursor,
    )


@operation(
    bp,
    "/v1/members/{member_id}/redemptions/{redemption_id}",
    "GET",
    access=SELF_OR_OPS,
    response="chalicelib.models.rewards:RedemptionView",
    tags=TAGS,
    summary="One redemption: status, fulfilment, coupons, payment",
    error_statuses=(401, 403, 404),
)
def get_redemption(call: Call) -> RedemptionView:
    require_member(call.params["member_id"])
    view = domain.get_redemption(
        call.params["member_id"], call.params["redemption_id"], points_context()
    )
    return models.RedemptionView.model_validate(view)


@operation(
    bp,
    "/v1/members/{member_id}/redemptions/{redemption_id}/cancel",
    "POST",
    access=SELF_OR_OPS,
    response="chalicelib.models.rewards:RedemptionView",
    tags=TAGS,
    summary=(
        "Cancel: stock and points go back (points keep their expiry dates; expired ones are "
        "not revived). A redemption whose cash part was paid is cancelled by staff only, "
        "who refund the cash through the payment provider (cash_refund_due). "
        "409 REDEMPTION_NOT_CANCELLABLE once shipped, delivered, a coupon was used, or "
        "(a member) the cash was paid"
    ),
    error_statuses=(401, 403, 404, 409, 503),
)
def cancel_redemption(call: Call) -> RedemptionView:
    assert call.principal is not None
    view = domain.cancel(
        call.params["member_id"],
        call.params["redemption_id"],
        call.principal.subject,
        points_context(),
        by_staff=call.principal.is_staff,
        by=actor(call),
    )
    return models.RedemptionView.model_validate(view)


@operation(
    bp,
    "/v1/admin/members/{member_id}/redemptions/{redemption_id}/fulfilment",
    "POST",
    access=STAFF_OPS,
    body="chalicelib.models.rewards:FulfilmentRequest",
    response="chalicelib.models.rewards:RedemptionView",
    tags=("admin", *TAGS),
    summary="Move a gift forward (placed -> shipped -> delivered); 409 INVALID_FULFILMENT",
    error_statuses=(400, 401, 403, 404, 409),
)
def post_fulfilment(call: Call) -> RedemptionView:
    request: FulfilmentRequest = call.body
    view = domain.fulfil(
        call.params["member_id"],
        call.params["redemption_id"],
        request.status,
        request.tracking_no,
        points_context(),
        actor(call),
    )
    return models.RedemptionView.model_validate(view)


# ---- payment notifications (server to server) ----------------------------------------------


def payment_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the payment provider sends as X-Payment-Signature."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _verify_payment(call: Call) -> bytes:
    assert call.request is not None
    headers = call.request.headers
    raw = call.request.raw_body or b""
    body = raw.encode() if isinstance(raw, str) else raw
    secret = payment_notification_secret()
    timestamp = headers.get("x-payment-timestamp") or ""
    signature = headers.get("x-payment-signature") or ""
    # Unix seconds: ASCII digits, at most 12 of them (str.isdigit also takes '²', which
    # int() refuses; a huge number overflows the float subtraction).
    if not secret or not TIMESTAMP_SHAPE.fullmatch(timestamp) or not signature:
        raise errors.Unauthenticated("unsigned payment notification", code="INVALID_SIGNATURE")
    if abs(time.time() - int(timestamp)) > PAYMENT_SKEW_SECONDS:
        raise errors.Unauthenticated("stale payment notification", code="STALE_TIMESTAMP")
    # Bytes, not str: compare_digest refuses non-ASCII str, and a header is client input.
    given = signature.lower().encode("utf-8", "replace")
    if not hmac.compare_digest(payment_signature(secret, timestamp, body).encode(), given):
        raise errors.Unauthenticated("bad payment signature", code="INVALID_SIGNATURE")
    return body


@operation(
    bp,
    "/v1/payments/notifications",
    "POST",
    access=PUBLIC,
    response="chalicelib.models.rewards:RedemptionView",
    tags=TAGS,
    summary=(
        "The payment provider confirms (paid) or fails a points + cash redemption; signed: "
        "X-Payment-Timestamp (Unix seconds, within 5 min) and X-Payment-Signature (hex "
        "HMAC-SHA256 of `timestamp.body`), else 401. 422 PAYMENT_MISMATCH; paid after the "
        "hold was released: 409 REDEMPTION_EXPIRED (the provider refunds)"
    ),
    error_statuses=(400, 401, 404, 409, 422, 503),
)
def post_payment_notification(call: Call) -> RedemptionView:
    body = _verify_payment(call)
    notice: PaymentNotification = parse_body(models.PaymentNotification, body, frozenset())  # type: ignore[assignment]
    view = domain.payment_notified(
        domain.PaymentNotice(
            payment_id=notice.payment_id,
            member_id=notice.member_id,
            redemption_id=notice.redemption_id,
            amount=notice.amount,
            currency=notice.currency,
            status=notice.status,
        ),
        points_context(),
        _mall(),
    )
    return models.RedemptionView.model_validate(view)
