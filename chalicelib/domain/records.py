"""What a points operation reads and writes, and the repository that stores it.

An operation (chalicelib/domain/points.py) reads an Account, plans one Commit (the
member's new wallet, its ledger entries, the request record that makes the client id
idempotent) and hands it to a LedgerRepository, which applies all of it or nothing
(chalicelib/dal/ledger.py stores it in DynamoDB; the tests keep it in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol

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

    @property
    def client_id(self) -> str:
        return self.transaction_id


@dataclass(frozen=True)
class RefundRef:
    purchase: PurchaseRef
    refund_id: str

    @property
    def client_id(self) -> str:
        return self.refund_id


@dataclass(frozen=True)
class MemberRequestRef:
    """A member's own request (`activity`, `adjust`) or a points grant of the program's
    (`grant`): each space has its own ids, so a member can never take a grant's id."""

    member_id: str
    space: Literal["activity", "grant", "adjust"]
    request_id: str

    @property
    def client_id(self) -> str:
        return self.request_id


RequestRef = PurchaseRef | RefundRef | MemberRequestRef


# ---- what an operation reads and writes --------------------------------------------------


@dataclass(frozen=True)
class Account:
    member: Member
    wallet: Wallet
    version: int
    activity_counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    referred_by: str | None = None
    first_purchase_at: datetime | None = None


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
class Commit:
    member_id: str
    expected_version: int
    wallet: Wallet
    entries: list[Entry]
    new_requests: list[RequestRecord]
    activity_counts: dict[str, tuple[str, int]] | None = None
    member_fields: dict[str, Any] = field(default_factory=dict)
    # A refund changes its purchase's record.
    updated_request: RecordUpdate | None = None
    # A purchase consumes the member code presented at the till, in the same commit.
    member_code: CodeUse | None = None


class VersionConflict(Exception):
    """Someone changed the member (or the purchase) since it was read: re-read, re-plan."""


class RequestExists(Exception):
    """A request record with this client id already exists."""


class MemberCodeTaken(Exception):
    """The commit's member code was used, expired or is not the member's any more."""


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

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]: ...
