"""What a points operation reads and writes, and the repository that stores it.

An operation (chalicelib/domain/points.py) reads an Account, plans one Commit (the
member's new wallet, its ledger entries, the request record that makes the client id
idempotent) and hands it to a LedgerRepository, which applies all of it or nothing
(chalicelib/dal/ledger.py stores it in DynamoDB; the tests keep it in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.coupons import Coupon, CouponChange
from chalicelib.domain.ledger import Wallet
from chalicelib.domain.member_codes import CodeUse, MemberCode
from chalicelib.domain.members import Member

# ---- which request a record answers -----------------------------------------------------
# Requests are named by what they mean; the repository decides the keys they are stored
# under (chalicelib/dal/ledger.py, `request_key`).


@dataclass(frozen=True)
class PurchaseRef:
    """A purchase as the till names it: a transaction id is unique within its store."""

    store_id: str
    transaction_id: str


@dataclass(frozen=True)
class RefundRef:
    purchase: PurchaseRef
    refund_id: str


@dataclass(frozen=True)
class MemberRequestRef:
    """A member's own request (`activity`, `adjust`, `redeem`: a redemption in the points
    mall), a points grant of the program's (`grant`) or a coupon issue (`coupon`: staff's
    issue id, or a rule's occasion): each space has its own ids, so a member can never
    take a grant's id."""

    member_id: str
    space: Literal["activity", "grant", "adjust", "redeem", "coupon", "erase"]
    request_id: str


RequestRef = PurchaseRef | RefundRef | MemberRequestRef


def client_id(ref: RequestRef) -> str:
    """The id the client chose for its request (what an IDEMPOTENCY_CONFLICT names)."""
    if isinstance(ref, PurchaseRef):
        return ref.transaction_id
    if isinstance(ref, RefundRef):
        return ref.refund_id
    return ref.request_id


# ---- what an operation reads and writes --------------------------------------------------


@dataclass(frozen=True)
class Account:
    member: Member
    wallet: Wallet
    version: int
    activity_counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    referred_by: str | None = None
    first_purchase_at: datetime | None = None
    # Points-mall redemptions per reward in the reward's limit period: reward id ->
    # (period key, units redeemed), as activity_counts are per activity.
    redemption_counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Erased (PIPL): a tombstone keeping the ledger's numbers; only the program's own
    # bookkeeping (refunds, expiry, holds) touches it (chalicelib/domain/points._account).
    erased: bool = False
    # The phone's first registration ever: a referral may be declared (domain/privacy.py).
    first_registration: bool = True


@dataclass(frozen=True)
class Entry:
    entry_id: str
    member_id: str
    type: str  # earn | redeem | expire | adjust | reverse
    points: int
    balance_after: int
    reason: str
    source: str  # transaction | activity | campaign | staff | expiry
    created_at: datetime
    source_id: str | None = None
    store_id: str | None = None
    lots: dict[date, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    ref: RequestRef
    kind: str
    member_id: str
    request_hash: str
    status: int
    response: dict[str, Any]
    created_at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass(frozen=True)
class RecordUpdate:
    """A change to an existing request record (a refund's to its purchase): only these
    `data` fields are set, conditional on the record's version (which goes up by one).
    The record is never rewritten whole, so what others mark on it meanwhile (the
    stream's `tier_counted`) is kept."""

    ref: RequestRef
    expected_version: int
    data: dict[str, Any]


@dataclass(frozen=True)
class StockMove:
    """Units of a reward's stock taken from (delta < 0: conditional on the shard holding
    that many) or returned to (delta > 0) one shard of its counter."""

    reward_id: str
    shard: int
    delta: int


@dataclass(frozen=True)
class HoldChange:
    """A redemption awaiting payment, kept where the release job finds it when its
    payment window ends (`put`), or taken out when it is paid or cancelled (`delete`)."""

    member_id: str
    redemption_id: str
    due_at: datetime
    action: Literal["put", "delete"]


@dataclass(frozen=True)
class Commit:
    member_id: str
    expected_version: int
    wallet: Wallet
    entries: list[Entry]
    new_requests: list[RequestRecord]
    activity_counts: dict[str, tuple[str, int]] | None = None
    redemption_counts: dict[str, tuple[str, int]] | None = None
    member_fields: dict[str, Any] = field(default_factory=dict)
    # A refund changes its purchase's record.
    updated_request: RecordUpdate | None = None
    # A purchase consumes the member code presented at the till, in the same commit.
    member_code: CodeUse | None = None
    # The points mall: stock taken or returned, coupons issued (a coupon reward) or
    # used/restored/voided (a purchase, its full refund, a cancelled coupon reward), and
    # the payment hold of a points + cash redemption.
    stock: tuple[StockMove, ...] = ()
    new_coupons: tuple[Coupon, ...] = ()
    coupon_changes: tuple[CouponChange, ...] = ()
    holds: tuple[HoldChange, ...] = ()
    # Staff acting (an adjustment, a staff cancel or fulfilment): their audit entry,
    # written in the same transaction (chalicelib/dal/audit.py).
    audit: AuditEntry | None = None


class VersionConflict(Exception):
    """Someone changed the member (or the purchase) since it was read: re-read, re-plan."""


class RequestExists(Exception):
    """A request record with this client id already exists."""


class MemberCodeTaken(Exception):
    """The commit's member code was used, expired or is not the member's any more."""


class CouponTaken(Exception):
    """A coupon the commit changes is no longer in the state the change needs (used by
    another till meanwhile, voided): re-planning reads it again."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class StockShort(Exception):
    """A stock shard the commit takes from holds fewer units than it takes: re-plan with
    the shards read again (others may still hold stock)."""

    def __init__(self, reward_id: str, shard: int) -> None:
        super().__init__(f"{reward_id}#{shard}")
        self.reward_id = reward_id
        self.shard = shard


class LedgerRepository(Protocol):
    def load(self, member_id: str) -> Account | None: ...

    def commit(self, commit: Commit) -> None: ...

    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None: ...

    def reference(self, purchase: PurchaseRef) -> str:
        """The purchase's id in other items that point at it (a pending lot's source, the
        member code it consumed): stored, so always the same for the same purchase."""
        ...

    def member_code(self, code: str) -> MemberCode | None:
        """The code as stored now (a consistent read), used or not; None if unknown."""
        ...

    def coupon(self, code: str) -> Coupon | None:
        """The coupon with this (normalised) code as stored now (a consistent read)."""
        ...

    def stock(self, reward_id: str) -> dict[int, int]:
        """A reward's stock shards as stored now (a consistent read): shard -> units left;
        empty when the reward has no stock items."""
        ...

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]: ...


# ---- what a purchase and a refund record -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseLine:
    sku: str
    category: str
    quantity: int
    unit_price: int  # fen
    points: int  # what the line earned: a refund of its units takes back their share


@dataclass(frozen=True, slots=True)
class UsedCoupon:
    """A coupon a purchase consumed: its discount and the fen it took off each line."""

    code: str  # normalised
    template_id: str
    discount: int  # fen
    lines: tuple[int, ...]  # per purchase line


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    """What a purchase recorded (its request record's `data`): what its refunds, `GET
    /v1/transactions/{id}` and the members stream read. Stored as the same plain map as
    ever, so records written before a field existed still read (`paid_lots` before
    purchases kept the lots that paid them; `month`, `qualifying_delta` before tiers)."""

    store_id: str
    transaction_id: str
    occurred_at: str  # RFC 3339, as recorded
    total: int
    cash_due: int
    lines: tuple[PurchaseLine, ...]
    points_earned: int
    points_spent: int
    expires_on: date  # of the lot the points earned went to
    pending: bool  # the points earned wait for the return window
    first_purchase: bool
    referred_by: str | None
    # what paid with points came from: lot expiry date -> points (never stored empty)
    paid_lots: dict[date, int] = field(default_factory=dict)
    refunded_amount: int = 0
    refunded_qty: tuple[int, ...] = ()  # per line
    points_reversed: int = 0  # of the points earned
    points_returned: int = 0  # of the points spent
    month: str | None = None  # the program month whose qualifying spend this counts in
    qualifying_delta: int = 0  # what it adds to that month: the cash paid
    # the coupons it consumed (none on records from before coupons applied at the till)
    coupons: tuple[UsedCoupon, ...] = ()
    discount_refunded: int = 0  # of the coupons' discount, the share refunds counted

    @property
    def discount(self) -> int:
        return sum(c.discount for c in self.coupons)

    def line_discount(self, index: int) -> int:
        return sum(c.lines[index] for c in self.coupons)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PurchaseRecord:
        """From the stored map (numbers may come back as Decimal)."""
        return cls(
            store_id=str(data["store_id"]),
            transaction_id=str(data["transaction_id"]),
            occurred_at=str(data["occurred_at"]),
            total=int(data["total"]),
            cash_due=int(data["cash_due"]),
            lines=tuple(
                PurchaseLine(str(sku), str(category), int(qty), int(price), int(points))
                for sku, category, qty, price, points in data["items"]
            ),
            points_earned=int(data["points_earned"]),
            points_spent=int(data["points_spent"]),
            expires_on=date.fromisoformat(str(data["expires_on"])),
            pending=bool(data.get("pending")),
            first_purchase=bool(data.get("first_purchase")),
            referred_by=_text(data.get("referred_by")),
            paid_lots={
                date.fromisoformat(str(d)): int(p) for d, p in (data.get("paid_lots") or {}).items()
            },
            refunded_amount=int(data["refunded_amount"]),
            refunded_qty=tuple(int(q) for q in data["refunded_qty"]),
            points_reversed=int(data["points_reversed"]),
            points_returned=int(data["points_returned"]),
            **_qualifying_spend(data),
            coupons=tuple(
                UsedCoupon(str(code), str(template), int(off), tuple(int(x) for x in lines))
                for code, template, off, lines in data.get("coupons") or ()
            ),
            discount_refunded=int(data.get("discount_refunded") or 0),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "transaction_id": self.transaction_id,
            "occurred_at": self.occurred_at,
            "total": self.total,
            "cash_due": self.cash_due,
            # one list per line, [sku, category, quantity, unit_price, points]: a purchase
            # record stays small (one write unit less per purchase)
            "items": [
                [line.sku, line.category, line.quantity, line.unit_price, line.points]
                for line in self.lines
            ],
            "points_earned": self.points_earned,
            "points_spent": self.points_spent,
            **(
                {"paid_lots": {d.isoformat(): p for d, p in self.paid_lots.items()}}
                if self.paid_lots
                else {}
            ),
            "expires_on": self.expires_on.isoformat(),
            "pending": self.pending,
            **self.refunded_fields(),
            "first_purchase": self.first_purchase,
            "referred_by": self.referred_by,
            "month": self.month,
            "qualifying_delta": self.qualifying_delta,
            # [code, template_id, discount, [fen per line]] each, only when there are any
            **(
                {
                    "coupons": [
                        [c.code, c.template_id, c.discount, list(c.lines)] for c in self.coupons
                    ]
                }
                if self.coupons
                else {}
            ),
        }

    def refunded_fields(self) -> dict[str, Any]:
        """The fields a refund changes, as stored: a refund sets only these (RecordUpdate),
        so the stream's mark on the same record is kept."""
        return {
            "refunded_amount": self.refunded_amount,
            "refunded_qty": list(self.refunded_qty),
            "points_reversed": self.points_reversed,
            "points_returned": self.points_returned,
            **({"discount_refunded": self.discount_refunded} if self.coupons else {}),
        }


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """What a refund recorded (its request record's `data`), read by the members stream
    for tier counting. `month` and `qualifying_delta` are those of its purchase (absent on
    refunds recorded before tiers)."""

    amount: int
    points_reversed: int
    points_returned: int
    month: str | None = None
    qualifying_delta: int = 0  # the refunded share of the cash paid, negative

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RefundRecord:
        return cls(
            amount=int(data["amount"]),
            points_reversed=int(data["points_reversed"]),
            points_returned=int(data["points_returned"]),
            **_qualifying_spend(data),
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "points_reversed": self.points_reversed,
            "points_returned": self.points_returned,
            "month": self.month,
            "qualifying_delta": self.qualifying_delta,
        }


def _qualifying_spend(data: Mapping[str, Any]) -> dict[str, Any]:
    """`month` and `qualifying_delta` of a purchase or refund record: absent on records
    from before tiers, which count in no month."""
    month = data.get("month")
    return {
        "month": None if month is None else str(month),
        "qualifying_delta": int(data.get("qualifying_delta") or 0),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
