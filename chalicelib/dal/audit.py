"""Audit entries in the Program table, appended in the same transaction as the change.

  AUDIT#<program day> / <rfc3339 at>#<entry_id>

One partition per program day (Asia/Shanghai): staff actions are a few per second at
most, and a listing reads days newest first. Entries are only ever put with the
condition that they do not exist; nothing updates or deletes them (append-only; the
IAM policy of no function grants a delete on `AUDIT#*`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.dal.cursors import decode_cursor, encode_cursor
from chalicelib.dal.tables import AuditItem, reason_codes, save_if_new, update_if
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.clock import program_date, rfc3339
from chalicelib.errors import InvalidInput, Unavailable
from chalicelib.retry import retry


def audit_pk(entry: AuditEntry) -> str:
    return f"AUDIT#{program_date(entry.at).isoformat()}"


def audit_sk(entry: AuditEntry) -> str:
    return f"{rfc3339(entry.at)}#{entry.entry_id}"


def to_item(entry: AuditEntry) -> AuditItem:
    return AuditItem(
        pk=audit_pk(entry),
        sk=audit_sk(entry),
        entry_id=entry.entry_id,
        at=rfc3339(entry.at),
        actor=entry.actor.subject,
        role=entry.actor.role,
        actor_store=entry.actor.store_id,
        action=entry.action,
        target=entry.target,
        request_id=entry.request_id,
        before=_plain(entry.before),
        after=_plain(entry.after),
    )


# Every entry is put on this condition, and never updated or deleted (append-only).
ENTRY_IS_NEW = AuditItem.pk.does_not_exist()


def append(txn: TransactWrite, entry: AuditEntry | None) -> None:
    """Add the entry to a change's transaction: both are written, or neither. None (no
    one acted: the program itself, a tool) adds nothing. The entry is a put, so it goes
    after every delete and before every update of the transaction in pynamodb's order."""
    if entry is not None:
        txn.save(to_item(entry), condition=ENTRY_IS_NEW)


def record(entry: AuditEntry) -> None:
    """An entry on its own, one conditional put: for a read that changes nothing (an
    export), so there is no change's transaction to share."""
    to_item(entry).save(condition=ENTRY_IS_NEW)


def put_audited(item: Model, condition: Any, entry: AuditEntry | None) -> bool:
    """Put `item` on `condition` with its entry, one transaction (one conditional put when
    there is no entry). False, nothing written, when `condition` does not hold."""
    if entry is None:
        return save_if_new(item, condition) if condition is not None else _put(item)
    return _transact(item, lambda txn: txn.save(item, condition=condition), entry)


def update_audited(
    item: Model, actions: list[Any], condition: Any, entry: AuditEntry | None
) -> bool:
    """Update `item` on `condition` with its entry, one transaction. False, nothing
    written, when `condition` does not hold. Unlike `update_if`, `item` is not refreshed
    (a transaction returns no image): read it again if the new values are needed."""
    if entry is None:
        return update_if(item, actions, condition)
    return _transact(
        item, lambda txn: txn.update(item, actions=actions, condition=condition), entry
    )


def _put(item: Model) -> bool:
    item.save()
    return True


def _transact(item: Model, change: Callable[[TransactWrite], None], entry: AuditEntry) -> bool:
    connection = type(item)._get_connection().connection

    def attempt() -> bool:
        try:
            with TransactWrite(connection=connection) as txn:
                change(txn)
                append(txn, entry)
        except TransactWriteError as exc:
            # the change comes first (a put before the entry's put; an update after it)
            if "ConditionalCheckFailed" in reason_codes(exc):
                return False
            raise
        return True

    # Two writers of the same item at once: one is cancelled with TransactionConflict
    # and tries again (its condition then decides).
    return retry(
        attempt,
        attempts=4,
        retry_on=TransactWriteError,
        retry_if=lambda exc: "TransactionConflict" in reason_codes(exc),
        exhausted=lambda: Unavailable("contended; retry", code="CONTENDED"),
    )


def _plain(side: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(side) if side else None


# ---- reading: GET /v1/admin/audit ------------------------------------------------------------


def from_item(item: AuditItem) -> AuditEntry:
    from datetime import datetime

    from chalicelib.domain.audit import Actor

    return AuditEntry(
        actor=Actor(item.actor, item.role, item.actor_store),
        action=item.action,
        target=item.target,
        at=datetime.fromisoformat(item.at.replace("Z", "+00:00")),
        request_id=item.request_id,
        before=item.before.as_dict() if item.before is not None else None,
        after=item.after.as_dict() if item.after is not None else None,
        entry_id=item.entry_id,
    )


def page(
    days: list[date], actor: str | None, limit: int, cursor: str | None
) -> tuple[list[AuditEntry], str | None]:
    """Entries of `days` (newest day first), newest first, at most `limit`, and the cursor
    of the next page (a full page has one, even the last). One Query per day partition
    walked (ScanIndexForward=False); `actor` is a FilterExpression: DynamoDB still reads
    (and bills) every entry of the days walked, then returns the actor's."""
    start_day, start_key = _resume(days, cursor)
    entries: list[AuditEntry] = []
    last: dict[str, Any] | None = None
    for day in days[days.index(start_day) :]:
        query = AuditItem.query(
            f"AUDIT#{day.isoformat()}",
            scan_index_forward=False,
            limit=limit - len(entries),
            filter_condition=(AuditItem.actor == actor) if actor is not None else None,
            last_evaluated_key=start_key,
        )
        start_key = None
        for item in query:
            entries.append(from_item(item))
            last = {"pk": {"S": item.pk}, "sk": {"S": item.sk}}
        if len(entries) >= limit:
            break
    if len(entries) < limit or last is None:
        return entries, None
    return entries, encode_cursor(last)


def _resume(days: list[date], cursor: str | None) -> tuple[date, dict[str, Any] | None]:
    if cursor is None:
        return days[0], None
    try:
        pk = json.loads(base64.urlsafe_b64decode(cursor.encode()))["pk"]["S"]
        day = date.fromisoformat(str(pk).removeprefix("AUDIT#"))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("invalid cursor", code="INVALID_CURSOR") from exc
    if day not in days:  # a cursor of another range (or listing)
        raise InvalidInput("invalid cursor", code="INVALID_CURSOR")
    return day, decode_cursor(cursor, f"AUDIT#{day.isoformat()}", "")
