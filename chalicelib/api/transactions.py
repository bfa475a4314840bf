"""POS transactions (api.md): purchases with points earned and points-as-payment, refunds."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint

from chalicelib.api.audit import actor
from chalicelib.api.http import ALL_STAFF, OPS, Access, Call, acting_store, operation
from chalicelib.api.points import replayable
from chalicelib.auth import PosReplay
from chalicelib.domain import points as domain
from chalicelib.domain.earning import Item
from chalicelib.domain.phone import normalise_phone
from chalicelib.domain.records import PurchaseRecord, PurchaseRef
from chalicelib.domain.stores import open_store
from chalicelib.errors import NotFound
from chalicelib.models.points import (
    RefundRequest,
    RefundResponse,
    StoreQuery,
    TransactionRequest,
    TransactionResponse,
    TransactionView,
)
from chalicelib.wiring import points_context, services

bp = Blueprint(__name__)
TAGS = ("transactions",)
# Purchases come from a POS (or ops keying one in); store staff read and refund their
# store's purchases but record none, so only a POS ever spends points at a till.
POS_OR_OPS = Access(store=True, staff=OPS)
POS_OR_STAFF = Access(store=True, staff=ALL_STAFF)


def purchase_request_hash(body: dict[str, Any]) -> str:
    """The purchase's request hash (what a replay is compared with) without the phone or
    card in clear: the record keeps the hash beyond the member's erasure, and a plain
    SHA-256 over a body naming a phone falls to guessing the phone (about 10^9 numbers)
    with the rest of the body, which the record also holds. Each is replaced by its keyed
    hash, in a domain of its own (the identity hash key: only the API has it)."""
    hasher = services().hasher
    keyed = dict(body)
    for field in ("phone", "card"):
        if keyed.get(field):
            keyed[field] = hasher.identity(f"request_{field}", str(keyed[field])).key
    return domain.request_hash(keyed)


@operation(
    bp,
    "/v1/transactions",
    "POST",
    access=POS_OR_OPS,
    body=TransactionRequest,
    response=TransactionResponse,
    status=201,
    tags=TAGS,
    summary=(
        "A purchase: points earned (with breakdown), optional points-as-payment (积分抵现, "
        "needs the member's member_code: 403 MEMBER_CODE_REQUIRED / MEMBER_CODE_INVALID)"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422),
    # Recorded under store + transaction_id, in the signed body, with its effect.
    pos_replay=PosReplay.RECORDED_ANSWER,
)
def post_transaction(call: Call) -> object:
    request: TransactionRequest = call.body
    assert call.principal is not None
    store_id = acting_store(call.principal, request.store_id)
    open_store(services().program.store(store_id), store_id)
    # With only a member code, the purchase finds the member through the code (after its
    # replay check: a retry after the code was consumed still gets its first answer).
    member_id = resolve_member(request) if _names(request) else None
    status, body = domain.record_purchase(
        domain.Purchase(
            transaction_id=request.transaction_id,
            store_id=store_id,
            member_id=member_id,
            occurred_at=request.occurred_at,
            items=[Item(i.sku, i.category, i.quantity, i.unit_price) for i in request.items],
            total=request.total,
            currency=request.currency,
            pay_with_points=request.pay_with_points,
            coupon_codes=tuple(request.coupon_codes),
            request_hash=purchase_request_hash(request.model_dump(mode="json")),
            member_code=request.member_code,
            # Every caller of this route, POS or staff: points leave only with the member
            # present (api.md, Member presence).
            member_code_required=True,
            by=actor(call),
        ),
        points_context(),
    )
    return replayable(status, TransactionResponse.model_validate(body))


def _names(request: TransactionRequest) -> bool:
    return bool(request.member_id or request.card or request.phone)


def resolve_member(request: TransactionRequest) -> str:
    """By member id, card, or phone, in that order (product brief, capability 4). Only
    the id: the purchase itself reads the member (consistently) and answers
    MEMBER_NOT_FOUND when there is none, so the member is read once. A member code, when
    also given, must be that member's (the purchase checks it)."""
    svc = services()
    if request.member_id:
        return request.member_id
    if request.card:
        identity = svc.hasher.identity("pos_card", request.card)
    else:
        assert request.phone is not None
        identity = svc.hasher.identity("phone", normalise_phone(request.phone))
    member_id = svc.members.find_member_id(identity)
    if member_id is None:
        raise NotFound("no member matches", code="MEMBER_NOT_FOUND")
    return member_id


@operation(
    bp,
    "/v1/transactions/{transaction_id}",
    "GET",
    access=POS_OR_STAFF,
    query=StoreQuery,
    response=TransactionView,
    tags=TAGS,
    summary="A purchase as recorded, with its refunds (staff pass ?store_id=)",
    error_statuses=(400, 401, 403, 404),
)
def get_transaction(call: Call) -> TransactionView:
    query: StoreQuery = call.query
    assert call.principal is not None
    store_id = acting_store(call.principal, query.store_id)
    repo = services().ledger
    purchase = PurchaseRef(store_id, call.params["transaction_id"])
    record = repo.get_request(purchase, consistent=False)
    if record is None:
        raise NotFound("no such transaction at this store", code="TRANSACTION_NOT_FOUND")
    refunds = repo.refunds(purchase)
    bought = PurchaseRecord.from_data(record.data)
    return TransactionView(
        transaction=TransactionResponse.model_validate(record.response),
        occurred_at=bought.occurred_at,
        total=bought.total,
        refunded_amount=bought.refunded_amount,
        points_reversed=bought.points_reversed,
        points_returned=bought.points_returned,
        refunds=[RefundResponse.model_validate(r.response) for r in refunds],
    )


@operation(
    bp,
    "/v1/transactions/{transaction_id}/refunds",
    "POST",
    access=POS_OR_STAFF,
    body=RefundRequest,
    response=RefundResponse,
    status=201,
    tags=TAGS,
    summary="Refund items (exactly the points they earned) or an amount (proportional)",
    error_statuses=(400, 401, 403, 404, 409, 422),
    # Recorded under the purchase + refund_id (signed path and body), with its effect.
    pos_replay=PosReplay.RECORDED_ANSWER,
)
def post_refund(call: Call) -> object:
    request: RefundRequest = call.body
    assert call.principal is not None
    store_id = acting_store(call.principal, request.store_id)
    status, body = domain.record_refund(
        domain.Refund(
            refund_id=request.refund_id,
            store_id=store_id,
            transaction_id=call.params["transaction_id"],
            items=[(line.sku, line.quantity) for line in request.items] if request.items else None,
            amount=request.amount,
            request_hash=domain.request_hash(request.model_dump(mode="json")),
            by=actor(call),
        ),
        points_context(),
    )
    return replayable(status, RefundResponse.model_validate(body))
