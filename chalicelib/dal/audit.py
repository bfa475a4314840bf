"""Audit entries in the Program table, appended in the same transaction as the change.

  AUDIT#<program day> / <rfc3339 at>#<entry_id>

One partition per program day (Asia/Shanghai): staff actions are a few per second at
most, and a listing reads days newest first. Entries are only ever put with the
condition that they do not exist; nothing updates or deletes them (append-only; the
IAM policy of no function grants a delete on `AUDIT#*`)."""

from __future__ import annotations

from typing import Any

from pynamodb.transactions import TransactWrite

from chalicelib.dal.tables import AuditItem
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.clock import program_date, rfc3339


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


def append(txn: TransactWrite, entry: AuditEntry) -> None:
    """Add the entry to a change's transaction: both are written, or neither."""
    txn.save(to_item(entry), condition=AuditItem.pk.does_not_exist())


def _plain(side: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(side) if side else None
