"""Personal data on request: the erasure transaction and the export's reads
(chalicelib/domain/privacy.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist

from chalicelib.dal.audit import to_item as audit_item
from chalicelib.dal.ledger import find_request, request_item
from chalicelib.dal.members import MEMBER_SK, erase_member, from_item, member_pk
from chalicelib.dal.tables import AuditItem, MemberItem, RequestItem
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.members import Identity, Member
from chalicelib.domain.records import MemberRequestRef, RequestRecord

T = TypeVar("T")


class DynamoPrivacyStore:
    def __init__(self, connection: Connection | None = None) -> None:
        # the item classes' shared connection (chalicelib/dal/tables.share_session)
        self._connection = connection or MemberItem._get_connection().connection

    def member(self, member_id: str) -> Member | None:
        try:
            item = MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return None if item.erased_at is not None else from_item(item)

    def erase_record(self, ref: MemberRequestRef) -> RequestRecord | None:
        return find_request(ref, consistent=True)

    def erase(
        self,
        member: Member,
        identities: list[Identity],
        record: RequestRecord,
        entry: AuditEntry,
        now: datetime,
    ) -> bool:
        extra = [
            (request_item(record), RequestItem.pk.does_not_exist()),
            # the audit foundation's item (chalicelib/dal/audit.py), in this transaction
            (audit_item(entry), AuditItem.pk.does_not_exist()),
        ]
        return erase_member(self._connection, member, identities, extra, now)


def record_audit(entry: AuditEntry) -> None:
    """An audit entry on its own (a read such as an export changes nothing to share a
    transaction with): one conditional put, append-only as every entry."""
    audit_item(entry).save(condition=AuditItem.pk.does_not_exist())


def every_page(read: Callable[[str | None], tuple[list[T], str | None]]) -> Iterator[T]:
    """Every item of a paged listing (`read(cursor)` -> (page, next cursor))."""
    cursor: str | None = None
    while True:
        page, cursor = read(cursor)
        yield from page
        if cursor is None:
            return


def all_of(read: Callable[[str | None], tuple[list[Any], str | None]]) -> list[Any]:
    return list(every_page(read))
