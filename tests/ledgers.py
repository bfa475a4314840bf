"""The points ledger under test, on either store: the in-memory fake or the DynamoDB
repository the service runs (chalicelib/dal/ledger.py) on DynamoDB Local.

The domain suites (tests/unit/test_points_domain.py, test_member_codes.py) take the
`ledger` fixture (tests/conftest.py), which gives them a `Ledger` over each store in turn.
A test reaches the store only through the LedgerRepository protocol, the member-code
store, and a few seeding writes both stores implement, so it means the same on both, and
the fake cannot drift from DynamoDB without a test failing on one of them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

from chalicelib.dal.ledger import expiry_key, purchase_pk, request_key
from chalicelib.dal.members import member_pk
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.coupons import Coupon, CouponChange
from chalicelib.domain.ledger import Wallet
from chalicelib.domain.member_codes import MemberCode
from chalicelib.domain.members import Member
from chalicelib.domain.records import (
    Account,
    Commit,
    CouponTaken,
    Entry,
    HoldChange,
    MemberCodeTaken,
    PurchaseRef,
    RequestExists,
    RequestRecord,
    RequestRef,
    StockShort,
    VersionConflict,
)
from chalicelib.errors import InvalidInput
from chalicelib.ids import ulid

JOINED = datetime(2024, 5, 14, 4, 0, tzinfo=UTC)  # 400 days before the domain tests' NOW


class Store(Protocol):
    """What a test needs of a store: the repository, the code store, and seeding (writes
    the service never makes: a bare member, a record or code put as is)."""

    def load(self, member_id: str) -> Account | None: ...
    def commit(self, commit: Commit) -> None: ...
    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None: ...
    def reference(self, purchase: PurchaseRef) -> str: ...
    def member_code(self, code: str) -> MemberCode | None: ...
    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]: ...
    def members_due(
        self, key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[str], dict[str, Any] | None]: ...
    def put_new(self, code: MemberCode) -> bool: ...
    def get(self, code: str) -> MemberCode | None: ...
    def put_member(self, member: Member) -> None: ...
    def mark_member(self, member_id: str, *, erased: bool, first_registration: bool) -> None: ...
    def put_request(self, record: RequestRecord) -> None: ...
    def put_code(self, code: MemberCode) -> None: ...
    def coupon(self, code: str) -> Coupon | None: ...
    def stock(self, reward_id: str) -> dict[int, int]: ...
    def put_coupon(self, coupon: Coupon) -> None: ...
    def put_stock(self, reward_id: str, shards: dict[int, int]) -> None: ...
    def audit_log(self) -> list[AuditEntry]: ...


class InMemoryLedger:
    """The fake: behaves as DynamoDB does for what the service asks of it. A commit is all
    or nothing, conditional on the member's version, on every new request record not
    existing yet, on the version of a purchase record a refund updates, and on the member
    code a purchase consumes being the member's, unused and unexpired; refused with
    REQUEST_TOO_LARGE when an item it writes is over DynamoDB's 400 KB. What it stores
    reads back as DynamoDB gives it: times to the millisecond, the member's figures and
    version on the member. Ledger entries list newest first by entry id (the sort key),
    in pages of `limit` with an opaque cursor; a full page has a cursor, even the last."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._requests: dict[tuple[str, str], RequestRecord] = {}
        self._entries: dict[str, list[Entry]] = {}
        self._codes: dict[str, MemberCode] = {}
        self._coupons: dict[str, Coupon] = {}
        self._stock: dict[str, dict[int, int]] = {}
        self.holds: dict[tuple[str, str], HoldChange] = {}  # (member, redemption) -> hold
        self.audit_entries: list[AuditEntry] = []  # what commits recorded, in order

    # -- LedgerRepository --

    def load(self, member_id: str) -> Account | None:
        return self._accounts.get(member_id)

    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None:
        return self._requests.get(request_key(ref))

    def reference(self, purchase: PurchaseRef) -> str:
        return purchase_pk(purchase)

    def member_code(self, code: str) -> MemberCode | None:
        return self._codes.get(code)

    def coupon(self, code: str) -> Coupon | None:
        return self._coupons.get(code)

    def stock(self, reward_id: str) -> dict[int, int]:
        return dict(self._stock.get(reward_id, {}))

    def commit(self, commit: Commit) -> None:
        items = [_record_item(r) for r in commit.new_requests] + [
            _entry_item(e) for e in commit.entries
        ]
        if any(_item_size(item) > ITEM_SIZE_LIMIT for item in items):
            raise InvalidInput("request too large to record", code="REQUEST_TOO_LARGE")
        commit = _as_stored(commit)
        # Every condition first; nothing is applied unless all of them hold.
        keys = [request_key(r.ref) for r in commit.new_requests]
        if len(set(keys)) != len(keys) or any(key in self._requests for key in keys):
            raise RequestExists()
        use = commit.member_code
        if use is not None:
            code = self._codes.get(use.code)
            if code is None or code.member_id != use.member_id or not code.usable_at(use.at):
                raise MemberCodeTaken()
        for change in commit.coupon_changes:
            if not _coupon_change_holds(self._coupons.get(change.code), change):
                raise CouponTaken(change.code)
        for move in commit.stock:
            shards = self._stock.get(move.reward_id, {})
            if move.shard not in shards or shards[move.shard] + min(move.delta, 0) < 0:
                raise StockShort(move.reward_id, move.shard)
        if any(coupon.code in self._coupons for coupon in commit.new_coupons):
            raise RuntimeError("coupon code taken")  # DynamoDB: the condition fails
        account = self._accounts.get(commit.member_id)
        if account is None or account.version != commit.expected_version:
            raise VersionConflict()
        if commit.updated_request is not None:
            update = commit.updated_request
            current = self._requests.get(request_key(update.ref))
            if current is None or current.version != update.expected_version:
                raise VersionConflict()
        fields = dict(commit.member_fields)
        wallet = commit.wallet
        nxt = wallet.expiring_next()
        version = account.version + 1
        self._accounts[commit.member_id] = replace(
            account,
            wallet=wallet,
            version=version,
            activity_counts=(
                dict(commit.activity_counts)
                if commit.activity_counts is not None
                else account.activity_counts
            ),
            redemption_counts=(
                dict(commit.redemption_counts)
                if commit.redemption_counts is not None
                else account.redemption_counts
            ),
            referred_by=fields.pop("referred_by", account.referred_by),
            first_purchase_at=fields.pop("first_purchase_at", account.first_purchase_at),
            # One item holds the member and the wallet: the figures and version agree.
            member=replace(
                account.member,
                points_balance=wallet.balance,
                points_pending=wallet.pending_points,
                lifetime_earned=wallet.lifetime_earned,
                expiring_next_points=nxt[1] if nxt else 0,
                expiring_next_date=nxt[0] if nxt else None,
                version=version,
            ),
        )
        for record in commit.new_requests:
            self._requests[request_key(record.ref)] = record
        if commit.updated_request is not None:
            update = commit.updated_request
            current = self._requests[request_key(update.ref)]
            self._requests[request_key(update.ref)] = replace(
                current, data={**current.data, **update.data}, version=current.version + 1
            )
        self._entries.setdefault(commit.member_id, []).extend(commit.entries)
        if use is not None:
            self._codes[use.code] = replace(self._codes[use.code], used_by=use.used_by)
        for coupon in commit.new_coupons:
            self._coupons[coupon.code] = coupon
        for change in commit.coupon_changes:
            self._coupons[change.code] = _changed_coupon(self._coupons[change.code], change)
        for move in commit.stock:
            self._stock[move.reward_id][move.shard] += move.delta
        for hold in commit.holds:
            key = (hold.member_id, hold.redemption_id)
            if hold.action == "put":
                self.holds[key] = hold
            else:
                self.holds.pop(key, None)
        if commit.audit is not None:
            self.audit_entries.append(commit.audit)

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        ordered = sorted(self._entries.get(member_id, []), key=lambda e: e.entry_id, reverse=True)
        start = 0
        if cursor is not None:
            ids = [e.entry_id for e in ordered]
            if cursor not in ids:
                raise InvalidInput("invalid cursor", code="INVALID_CURSOR")
            start = ids.index(cursor) + 1
        page = ordered[start : start + limit]
        # A full page has a cursor, as a query stopped by its Limit has a LastEvaluatedKey
        # whether or not more items follow.
        return page, page[-1].entry_id if len(page) == limit else None

    def members_due(
        self, key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[str], dict[str, Any] | None]:
        """The sparse expiry index: members whose earliest lot's key is `key`, in order of
        their partition key, `limit` a page (a full page has a cursor, as in listing)."""
        due = sorted(
            member_pk(member_id)
            for member_id, account in self._accounts.items()
            if (nxt := account.wallet.expiring_next()) and expiry_key(nxt[0], member_id) == key
        )
        if start is not None:
            due = [pk for pk in due if pk > start["pk"]]
        page = due[:limit]
        ids = [pk.removeprefix("MEMBER#") for pk in page]
        return ids, {"pk": page[-1]} if len(page) == limit else None

    def audit_log(self) -> list[AuditEntry]:
        """The audit entries commits recorded, oldest first."""
        return list(self.audit_entries)

    # -- MemberCodeStore --

    def put_new(self, code: MemberCode) -> bool:
        if code.code in self._codes:
            return False
        self._codes[code.code] = code
        return True

    def get(self, code: str) -> MemberCode | None:
        return self._codes.get(code)

    # -- seeding --

    def put_member(self, member: Member) -> None:
        self._accounts[member.member_id] = Account(
            member=member, wallet=Wallet(), version=member.version
        )

    def mark_member(self, member_id: str, *, erased: bool, first_registration: bool) -> None:
        account = self._accounts[member_id]
        member = account.member
        if erased:  # what the tombstone keeps (chalicelib/dal/members.ERASED_ATTRIBUTES)
            member = replace(
                member,
                phone="",
                name=None,
                gender=None,
                birthday=None,
                email=None,
                tags=(),
                external_ids={},
            )
        self._accounts[member_id] = replace(
            account,
            member=member,
            erased=erased,
            first_registration=first_registration,
            version=account.version + 1,
        )

    def put_request(self, record: RequestRecord) -> None:
        self._requests[request_key(record.ref)] = replace(
            record, created_at=_millisecond(record.created_at)
        )

    def put_coupon(self, coupon: Coupon) -> None:
        self._coupons[coupon.code] = coupon

    def put_stock(self, reward_id: str, shards: dict[int, int]) -> None:
        self._stock[reward_id] = dict(shards)

    def put_code(self, code: MemberCode) -> None:
        self._codes[code.code] = code


ITEM_SIZE_LIMIT = 400 * 1024


def _coupon_change_holds(coupon: Coupon | None, change: CouponChange) -> bool:
    """The conditions chalicelib/dal/coupons.py `coupon_change` puts on DynamoDB."""
    if coupon is None or coupon.member_id != change.member_id:
        return False
    if change.action == "restore":
        return coupon.status == "used" and coupon.used_by == change.ref
    return coupon.status == "active"


def _changed_coupon(coupon: Coupon, change: CouponChange) -> Coupon:
    at = _millisecond(change.at)
    if change.action == "use":
        return replace(coupon, status="used", used_by=change.ref, used_at=at)
    if change.action == "restore":
        return replace(coupon, status="active", used_by=None, used_at=None)
    return replace(coupon, status="void", used_by=change.ref)


def _item_size(value: Any) -> int:
    """The size DynamoDB counts for a value (developer guide, "Item sizes"): strings and
    binary their bytes, a number one byte per two significant digits plus one, a list or
    map 3 bytes plus one per element (and a map's names)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, int | float):
        digits = str(abs(value)).replace(".", "").strip("0")
        return (len(digits) + 1) // 2 + 1
    if isinstance(value, dict):
        return 3 + sum(len(str(k).encode()) + _item_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(_item_size(v) + 1 for v in value)
    return len(str(value).encode())  # dates and times: their ISO text


def _record_item(record: RequestRecord) -> dict[str, Any]:
    """A request record's attributes as the repository writes them (the answer is
    zlib-compressed JSON, the hash its 32 bytes)."""
    answer = json.dumps(record.response, separators=(",", ":"), ensure_ascii=False).encode()
    pk, sk = request_key(record.ref)
    return {
        **{name: value for name, value in asdict(record).items() if name != "ref"},
        "pk": pk,
        "sk": sk,
        "request_hash": bytes(32),
        "response": zlib.compress(answer, 9),
        "created_at": "2025-01-01T00:00:00.000Z",
    }


def _entry_item(entry: Entry) -> dict[str, Any]:
    return {"pk": f"MEMBER#{entry.member_id}", "sk": f"LEDGER#{entry.entry_id}", **asdict(entry)}


def _millisecond(moment: datetime) -> datetime:
    """A time as DynamoDB keeps it: RFC 3339 text to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _as_stored(commit: Commit) -> Commit:
    fields = dict(commit.member_fields)
    if fields.get("first_purchase_at") is not None:
        fields["first_purchase_at"] = _millisecond(fields["first_purchase_at"])
    return replace(
        commit,
        entries=[replace(e, created_at=_millisecond(e.created_at)) for e in commit.entries],
        new_requests=[
            replace(r, created_at=_millisecond(r.created_at)) for r in commit.new_requests
        ],
        member_fields=fields,
    )


class DynamoStore:
    """The service's repositories on the current settings' tables, with seeding writes
    made of the same item classes."""

    def __init__(self) -> None:
        from chalicelib.wiring import services

        svc = services()  # binds the item classes to the settings' tables
        self._ledger = svc.ledger
        self._codes = svc.codes

    def load(self, member_id: str) -> Account | None:
        return self._ledger.load(member_id)

    def commit(self, commit: Commit) -> None:
        self._ledger.commit(commit)

    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None:
        return self._ledger.get_request(ref, consistent=consistent)

    def reference(self, purchase: PurchaseRef) -> str:
        return self._ledger.reference(purchase)

    def member_code(self, code: str) -> MemberCode | None:
        return self._ledger.member_code(code)

    def coupon(self, code: str) -> Coupon | None:
        return self._ledger.coupon(code)

    def stock(self, reward_id: str) -> dict[int, int]:
        return self._ledger.stock(reward_id)

    def audit_log(self) -> list[AuditEntry]:
        """The audit entries in the Program table (a test scan), oldest first."""
        from chalicelib.dal.audit import from_item
        from chalicelib.dal.tables import AuditItem

        items = AuditItem.scan(AuditItem.pk.startswith("AUDIT#"))
        return [from_item(i) for i in sorted(items, key=lambda i: (i.pk, i.sk))]

    def put_coupon(self, coupon: Coupon) -> None:
        from chalicelib.dal.coupons import coupon_item

        coupon_item(coupon).save()

    def put_stock(self, reward_id: str, shards: dict[int, int]) -> None:
        from chalicelib.dal.mall import stock_item

        for shard, left in shards.items():
            stock_item(reward_id, shard, left).save()

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        return self._ledger.list_entries(member_id, limit, cursor)

    def members_due(
        self, key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[str], dict[str, Any] | None]:
        return self._ledger.members_due(key, start, limit)

    def put_new(self, code: MemberCode) -> bool:
        return self._codes.put_new(code)

    def get(self, code: str) -> MemberCode | None:
        return self._codes.get(code)

    def put_member(self, member: Member) -> None:
        from chalicelib.dal.members import to_item

        to_item(member).save()

    def mark_member(self, member_id: str, *, erased: bool, first_registration: bool) -> None:
        """As an erasure leaves the member (chalicelib/dal/members.erase_member), and/or
        as a registration of a phone registered before marks it."""
        from chalicelib.dal.members import ERASED_ATTRIBUTES, MEMBER_SK, member_pk
        from chalicelib.dal.tables import MemberItem

        actions: list[Any] = [
            MemberItem.first_registration.set(first_registration),
            MemberItem.version.add(1),
        ]
        if erased:
            actions.append(MemberItem.erased_at.set("2025-06-01T00:00:00Z"))
            actions += [getattr(MemberItem, name).remove() for name in ERASED_ATTRIBUTES]
        MemberItem(pk=member_pk(member_id), sk=MEMBER_SK).update(actions=actions)

    def put_request(self, record: RequestRecord) -> None:
        from chalicelib.dal.ledger import request_item

        request_item(record).save()

    def put_code(self, code: MemberCode) -> None:
        from chalicelib.dal.member_codes import CODE_SK, code_pk, epoch
        from chalicelib.dal.tables import MemberCodeItem

        MemberCodeItem(
            pk=code_pk(code.code),
            sk=CODE_SK,
            member_id=code.member_id,
            expires_at=epoch(code.expires_at),
            used_by=code.used_by,
        ).save()


class Ledger:
    """What the domain code is given as its repository (and code store) in a test: the
    store's own answers, plus what tests arrange or observe around them.

    - `commits`: every commit the store accepted, in order (`[]`: nothing was written).
    - `stale_reads`: eventually consistent reads of request records miss every record
      (DynamoDB may answer so for a moment after a write; DynamoDB Local never does).
    - reads for assertions (`account`, `wallet`, `entries_of`, `request`, `code`) go
      through the protocol, newest state, as a consistent read sees it.
    Subclasses change `commit` to stage races and failures on either store."""

    def __init__(self, store: Store, kind: str) -> None:
        self.store = store
        self.kind = kind  # "fake" | "dynamodb"
        self.commits: list[Commit] = []
        self.stale_reads = False

    # -- LedgerRepository --

    def load(self, member_id: str) -> Account | None:
        return self.store.load(member_id)

    def get_request(self, ref: RequestRef, *, consistent: bool = True) -> RequestRecord | None:
        if self.stale_reads and not consistent:
            return None
        return self.store.get_request(ref, consistent=consistent)

    def reference(self, purchase: PurchaseRef) -> str:
        return self.store.reference(purchase)

    def member_code(self, code: str) -> MemberCode | None:
        return self.store.member_code(code)

    def coupon(self, code: str) -> Coupon | None:
        return self.store.coupon(code)

    def stock(self, reward_id: str) -> dict[int, int]:
        return self.store.stock(reward_id)

    def commit(self, commit: Commit) -> None:
        self.store.commit(commit)
        self.commits.append(commit)

    def list_entries(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Entry], str | None]:
        return self.store.list_entries(member_id, limit, cursor)

    # -- MemberCodeStore --

    def put_new(self, code: MemberCode) -> bool:
        return self.store.put_new(code)

    def get(self, code: str) -> MemberCode | None:
        return self.store.get(code)

    # -- seeding --

    def add_member(
        self,
        member_id: str | None = None,
        *,
        name: str | None = "韩梅梅",
        gender: str | None = "female",
        birthday: date | None = date(1990, 5, 1),
        tier_code: str = "member",
        wallet: Wallet | None = None,
    ) -> str:
        """A member holding `wallet` (written by a commit with no entries: points from
        before the ledger began)."""
        member_id = member_id or f"mbr_{ulid().lower()}"
        self.store.put_member(
            Member(
                member_id=member_id,
                phone="+8613900001111",
                channel="app",
                created_at=JOINED,
                updated_at=JOINED,
                name=name,
                gender=gender,
                birthday=birthday,
                tier_code=tier_code,
            )
        )
        if wallet is not None:
            self.store.commit(
                Commit(
                    member_id=member_id,
                    expected_version=1,
                    wallet=wallet,
                    entries=[],
                    new_requests=[],
                )
            )
        return member_id

    def put_request(self, record: RequestRecord) -> None:
        self.store.put_request(record)

    def erase(self, member_id: str) -> None:
        """The member erased: a tombstone keeping its wallet (chalicelib/domain/privacy.py)."""
        self.store.mark_member(member_id, erased=True, first_registration=True)

    def mark_returning(self, member_id: str) -> None:
        """The member's phone had registered before (its sign-up claim was taken)."""
        self.store.mark_member(member_id, erased=False, first_registration=False)

    def put_code(self, code: MemberCode) -> None:
        self.store.put_code(code)

    # -- reads for assertions --

    def account(self, member_id: str) -> Account:
        account = self.store.load(member_id)
        assert account is not None, member_id
        return account

    def wallet(self, member_id: str) -> Wallet:
        return self.account(member_id).wallet

    def balance(self, member_id: str) -> int:
        return self.wallet(member_id).balance

    def entries_of(self, member_id: str, kind: str | None = None) -> list[Entry]:
        """Every ledger entry of the member, oldest first (the listing, read to its end
        and reversed)."""
        entries: list[Entry] = []
        cursor: str | None = None
        while True:
            page, cursor = self.store.list_entries(member_id, 100, cursor)
            entries.extend(page)
            if cursor is None:
                break
        return [e for e in reversed(entries) if kind is None or e.type == kind]

    def all_due(self, key: str) -> list[str]:
        """Every member the expiry index holds under `key` (all its pages)."""
        due: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self.store.members_due(key, start, 100)
            due.extend(page)
            if start is None:
                return due

    def request(self, ref: RequestRef) -> RequestRecord | None:
        return self.store.get_request(ref, consistent=True)

    def audit_log(self) -> list[AuditEntry]:
        return self.store.audit_log()

    def code(self, code: str) -> MemberCode:
        found = self.store.member_code(code)
        assert found is not None, code
        return found
