"""Personal data on request: the erasure transaction and the export's reads
(chalicelib/domain/privacy.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from pynamodb.connection import Connection

from chalicelib.dal.audit import ENTRY_IS_NEW
from chalicelib.dal.audit import to_item as audit_item
from chalicelib.dal.ledger import find_request, request_item
from chalicelib.dal.members import DynamoMemberRepository, erase_member
from chalicelib.dal.tables import MemberItem, RequestItem
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.members import Identity, Member
from chalicelib.domain.records import MemberRequestRef, RequestRecord

T = TypeVar("T")


class DynamoPrivacyStore:
    def __init__(self, connection: Connection | None = None) -> None:
        # the item classes' shared connection (chalicelib/dal/tables.share_session)
        self._connection = connection or MemberItem._get_connection().connection

    def member(self, member_id: str) -> Member | None:
        return DynamoMemberRepository(self._connection).get(member_id, consistent=True)

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
            # the audit entry, on the condition every entry is put on, in this transaction
            (audit_item(entry), ENTRY_IS_NEW),
        ]
        return erase_member(self._connection, member, identities, extra, now)


def all_of(read: Callable[[str | None], tuple[list[T], str | None]]) -> list[T]:
    """Every item of a paged listing (`read(cursor)` -> (page, next cursor))."""
    found: list[T] = []
    cursor: str | None = None
    while True:
        page, cursor = read(cursor)
        found += page
        if cursor is None:
            return found
