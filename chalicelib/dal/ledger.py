"""Ledger repository: one TransactWriteItems per operation (chalicelib/domain/points.py)."""

from __future__ import annotations

import json
import zlib
from datetime import date, datetime
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal.audit import append as append_audit
from chalicelib.dal.coupons import (
    COUPON_SK,
    coupon_change,
    coupon_from_item,
    coupon_item,
    coupon_pk,
)
from chalicelib.dal.cursors import decode_cursor, encode_cursor
from chalicelib.dal.mall import hold_item, read_stock, stock_move
from chalicelib.dal.member_codes import consume_code, find_member_code
from chalicelib.dal.members import MEMBER_SK, from_item, member_pk
from chalicelib.dal.tables import CouponItem, LedgerEntryItem, MemberItem, RequestItem
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import Coupon
from chalicelib.domain.expiry import shard_of
from chalicelib.domain.ledger import PendingLot, Wallet
from chalicelib.domain.member_codes import MemberCode
from chalicelib.domain.records import (
    Account,
    Commit,
    CouponTaken,
    Entry,
    MemberCodeTaken,
    PurchaseRef,
    RefundRef,
    RequestExists,
    RequestRecord,
    RequestRef,
    StockShort,
    VersionConflict,
)
from chalicelib.errors import InvalidInput

# Where each request record lives (the keys stored data is found by: never change them).
PURCHASE_SK = "TXN"
REFUND_PREFIX = "REFUND#"


def purchase_pk(purchase: PurchaseRef) -> str:
    """A purchase and its refunds share this partition key; pending lots and member codes
    keep it as the purchase's id (`DynamoLedgerRepository.reference`)."""
    return f"TXN#{purchase.store_id}#{purchase.transaction_id}"


def request_key(ref: RequestRef) -> tuple[str, str]:
    """(pk, sk) of a request record: a purchase `TXN#<store>#<txn>` / `TXN`, a refund
    `TXN#<store>#<txn>` / `REFUND#<id>`, a member's request or a grant `MEMBER#<id>` /
    `REQ#<activity|adjust|grant>#<id>`."""
    if isinstance(ref, PurchaseRef):
        return purchase_pk(ref), PURCHASE_SK
    if isinstance(ref, RefundRef):
        return purchase_pk(ref.purchase), f"{REFUND_PREFIX}{ref.refund_id}"
    return member_pk(ref.member_id), f"REQ#{ref.space}#{ref.request_id}"


def expiry_shard_key(day: date, shard: int) -> str:
    """A key of the sparse expiry index: '<earliest lot date>#<shard>'."""
    return f"{day.isoformat()}#{shard}"


def expiry_key(day: date, member_id: str) -> str:
    """The member's key on the expiry index, when its earliest lot expires on `day`."""
    return expiry_shard_key(day, shard_of(member_id))


def wallet_from_item(item: MemberItem) -> Wallet:
    lots_raw = item.lots.as_dict() if item.lots is not None else {}
    pending_raw = item.pending_lots or []
    return Wallet(
        lots={date.fromisoformat(k): int(v) for k, v in lots_raw.items() if int(v) > 0},
        debt=int(item.points_debt or 0),
        pending=tuple(
            PendingLot(
                source_id=str(p["source_id"]),
                points=int(p["points"]),
                release_at=datetime.fromisoformat(str(p["release_at"])),
                expires_on=date.fromisoformat(str(p["expires_on"])),
            )
            for p in pending_raw
        ),
        lifetime_earned=int(item.lifetime_earned or 0),
    )


def account_from_item(item: MemberItem) -> Account:
    counts_raw = item.activity_counts.as_dict() if item.activity_counts is not None else {}
    redeemed_raw = item.redemption_counts.as_dict() if item.redemption_counts is not None else {}
    return Account(
        member=from_item(item, personal=False),
        wallet=wallet_from_item(item),
        version=int(item.version or 1),
        activity_counts={k: (str(v[0]), int(v[1])) for k, v in counts_raw.items()},
        redemption_counts={k: (str(v[0]), int(v[1])) for k, v in redeemed_raw.items()},
        referred_by=item.referred_by,
        first_purchase_at=(
            datetime.fromisoformat(item.first_purchase_at) if item.first_purchase_at else None
        ),
        erased=item.erased_at is not None,
        first_registration=item.first_registration is not False,
    )


def _entry_item(entry: Entry) -> LedgerEntryItem:
    return LedgerEntryItem(
        pk=member_pk(entry.member_id),
        sk=f"LEDGER#{entry.entry_id}",
        entry_id=entry.entry_id,
        member_id=entry.member_id,
        type=entry.type,
        points=entry.points,
        balance_after=entry.balance_after,
        reason=entry.reason,
        source=entry.source,
        source_id=entry.source_id,
        store_id=entry.store_id,
        created_at=rfc3339(entry.created_at),
        lots={d.isoformat(): v for d, v in entry.lots.items()} or None,
        detail=entry.detail or None,
    )


def _entry(item: LedgerEntryItem) -> Entry:
    lots = item.lots.as_dict() if item.lots is not None else {}
    return Entry(
        entry_id=item.entry_id,
        member_id=item.member_id,
        type=item.type,
        points=int(item.points),
        balance_after=int(item.balance_after),
        reason=item.reason,
        source=item.source,
        source_id=item.source_id,
        store_id=item.store_id,
        created_at=datetime.fromisoformat(item.created_at),
        lots={date.fromisoformat(k): int(v) for k, v in lots.items()},
        detail=item.detail.as_dict() if item.detail is not None else {},
    )


def request_item(record: RequestRecord) -> RequestItem:
    pk, sk = request_key(record.ref)
    return RequestItem(
        pk=pk,
        sk=sk,
        kind=record.kind,
        member_id=record.member_id,
        request_hash=bytes.fromhex(record.request_hash),
        status=record.status,
        # The first answer: a replay gets back exactly this.
        response=zlib.compress(
            json.dumps(record.response, separators=(",", ":"), ensure_ascii=False).encode(), 9
        ),
        created_at=rfc3339(record.created_at),
        version=record.version,
        data=record.data or None,
    )


def _request(item: RequestItem, ref: RequestRef) -> RequestRecord:
    return RequestRecord(
        ref=ref,
        kind=item.kind,
        member_id=item.member_id,
        request_hash=bytes(item.request_hash).hex(),
        status=int(item.status),
        response=json.loads(zlib.decompress(item.response)),
        created_at=datetime.fromisoformat(item.created_at),
        data=item.data.as_dict() if item.data is not None else {},
        version=int(item.version or 1),
    )


class DynamoLedgerRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def load(self, member_id: str) -> Account | None:
        try:
            # Consistent: the version read here is the one the commit is conditional on.
            item = MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return account_from_item(item)

    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None:
        return find_request(ref, consistent=consistent)

    def reference(self, purchase: PurchaseRef) -> str:
        return purchase_pk(purchase)

    def member_code(self, code: str) -> MemberCode | None:
        return find_member_code(code)

    def coupon(self, code: str) -> Coupon | None:
        try:
            return coupon_from_item(
                CouponItem.get(coupon_pk(code), COUPON_SK, consistent_read=True)
            )
        except DoesNotExist:
            return None

    def stock(self, reward_id: str) -> dict[int, int]:
        return read_stock(reward_id)

    def commit(self, commit: Commit) -> None:
        wallet = commit.wallet
        # One label per transaction item. DynamoDB answers cancellation reasons in the
        # order it received the items, and pynamodb sends deletes, then puts, then
        # updates, each in call order: the labels are kept the same way.
        deletes: list[str] = []
        puts: list[str] = []
        updates: list[str] = []
        try:
            with TransactWrite(connection=self._connection) as txn:
                for entry in commit.entries:
                    txn.save(_entry_item(entry))
                    puts.append("entry")
                for record in commit.new_requests:
                    txn.save(request_item(record), condition=RequestItem.pk.does_not_exist())
                    puts.append("new_request")
                for coupon in commit.new_coupons:
                    # 80 random bits: a taken code is a defect, not a race to re-plan
                    txn.save(coupon_item(coupon), condition=CouponItem.pk.does_not_exist())
                    puts.append("new_coupon")
                if commit.audit is not None:
                    append_audit(txn, commit.audit)
                    puts.append("audit")
                for hold in commit.holds:
                    if hold.action == "put":
                        txn.save(hold_item(hold))
                        puts.append("hold")
                    else:
                        txn.delete(hold_item(hold))
                        deletes.append("hold")
                if commit.updated_request is not None:
                    # Only the fields this operation changes: the stream marks the same
                    # record `tier_counted` without a version, and a whole-item write
                    # would erase that mark (and the spend would be counted again).
                    update = commit.updated_request
                    pk, sk = request_key(update.ref)
                    txn.update(
                        RequestItem(pk=pk, sk=sk),
                        actions=[
                            *(RequestItem.data[name].set(v) for name, v in update.data.items()),
                            RequestItem.version.add(1),
                        ],
                        condition=RequestItem.version == update.expected_version,
                    )
                    updates.append("updated_request")
                txn.update(
                    MemberItem(pk=member_pk(commit.member_id), sk=MEMBER_SK),
                    actions=self._member_actions(commit, wallet),
                    condition=MemberItem.version == commit.expected_version,
                )
                updates.append("member")
                if commit.member_code is not None:
                    code_item, actions, condition = consume_code(commit.member_code)
                    txn.update(code_item, actions=actions, condition=condition)
                    updates.append("member_code")
                for change in commit.coupon_changes:
                    coupon_row, actions, condition = coupon_change(change)
                    txn.update(coupon_row, actions=actions, condition=condition)
                    updates.append(f"coupon:{change.code}")
                for move in commit.stock:
                    shard, actions, condition = stock_move(move)
                    txn.update(shard, actions=actions, condition=condition)
                    updates.append(f"stock:{move.reward_id}:{move.shard}")
        except TransactWriteError as exc:
            labels = [*deletes, *puts, *updates]
            reasons = exc.cancellation_reasons or []
            failed = [
                label
                for label, reason in zip(labels, reasons, strict=False)
                if reason is not None and reason.code == "ConditionalCheckFailed"
            ]
            # A replay first (its answer is recorded); then a code some other purchase
            # consumed, or that expired: re-planning could not make it usable again.
            if "new_request" in failed:
                raise RequestExists() from exc
            if "member_code" in failed:
                raise MemberCodeTaken() from exc
            # A coupon or a stock shard that changed since it was read: the plan reads
            # them again (a coupon used meanwhile is then refused; other shards may hold
            # the stock this one no longer has).
            for label in failed:
                if label.startswith("coupon:"):
                    raise CouponTaken(label.removeprefix("coupon:")) from exc
                if label.startswith("stock:"):
                    _, reward_id, shard_no = label.split(":", 2)
                    raise StockShort(reward_id, int(shard_no)) from exc
            if (
                any(
                    r is not None and r.code in ("ConditionalCheckFailed", "TransactionConflict")
                    for r in reasons
                )
                or exc.cause_response_code == "TransactionConflictException"
            ):
                raise VersionConflict() from exc
            # DynamoDB names an item over 400 KB among the cancellation reasons; DynamoDB
            # Local refuses the whole request instead.
            if any(r is not None and r.code == "ValidationError" for r in reasons) or (
                exc.cause_response_code == "ValidationException"
                and "Item size has exceeded" in (exc.cause_response_message or "")
            ):
                raise InvalidInput("request too large to record", code="REQUEST_TOO_LARGE") from exc
            raise

    @staticmethod
    def _member_actions(commit: Commit, wallet: Wallet) -> list[Any]:
        nxt = wallet.expiring_next()
        actions: list[Any] = [
            MemberItem.lots.set({d.isoformat(): p for d, p in wallet.lots.items()}),
            MemberItem.points_balance.set(wallet.balance),
            MemberItem.points_pending.set(wallet.pending_points),
            MemberItem.points_debt.set(wallet.debt),
            MemberItem.lifetime_earned.set(wallet.lifetime_earned),
            MemberItem.expiring_next_points.set(nxt[1] if nxt else 0),
            MemberItem.pending_lots.set(
                [
                    {
                        "source_id": p.source_id,
                        "points": p.points,
                        "release_at": p.release_at.isoformat(),
                        "expires_on": p.expires_on.isoformat(),
                    }
                    for p in wallet.pending
                ]
            ),
            MemberItem.version.add(1),
        ]
        actions.append(
            MemberItem.expiring_next_date.set(nxt[0].isoformat())
            if nxt
            else MemberItem.expiring_next_date.remove()
        )
        # The sparse expiry index holds members with points, by earliest expiry date;
        # unchanged keys cost no index write.
        actions.append(
            MemberItem.expiry_due.set(expiry_key(nxt[0], commit.member_id))
            if nxt
            else MemberItem.expiry_due.remove()
        )
        if commit.activity_counts is not None:
            actions.append(
                MemberItem.activity_counts.set(
                    {k: [period, count] for k, (period, count) in commit.activity_counts.items()}
                )
            )
        if commit.redemption_counts is not None:
            actions.append(
                MemberItem.redemption_counts.set(
                    {k: [period, n] for k, (period, n) in commit.redemption_counts.items()}
                )
            )
        for name, value in commit.member_fields.items():
            attribute = getattr(MemberItem, name)
            if isinstance(value, datetime):
                value = rfc3339(value)
            actions.append(attribute.set(value))
        return actions

    def members_due(
        self, key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of member ids whose earliest lot expires on the key's date/shard."""
        query = MemberItem.expiry_index.query(key, limit=limit, last_evaluated_key=start)
        ids = [item.pk.removeprefix("MEMBER#") for item in query]
        return ids, query.last_evaluated_key

    def refunds(self, purchase: PurchaseRef) -> list[RequestRecord]:
        query = RequestItem.query(purchase_pk(purchase), RequestItem.sk.startswith(REFUND_PREFIX))
        return [
            _request(item, RefundRef(purchase, item.sk.removeprefix(REFUND_PREFIX)))
            for item in query
        ]

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        start = decode_cursor(cursor, member_pk(member_id), "LEDGER#") if cursor else None
        query = LedgerEntryItem.query(
            member_pk(member_id),
            LedgerEntryItem.sk.startswith("LEDGER#"),
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=start,
        )
        entries = [_entry(item) for item in query]
        last = query.last_evaluated_key
        return entries, encode_cursor(last) if last else None


def find_request(ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None:
    """A request record by what it answers: the repository's read, and a coupon issue's
    outside a points commit (chalicelib/dal/coupons.py), under the same keys."""
    try:
        return _request(RequestItem.get(*request_key(ref), consistent_read=consistent), ref)
    except DoesNotExist:
        return None
