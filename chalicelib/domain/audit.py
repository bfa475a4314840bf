"""Audit entries: who did what to the program, written in the same transaction as the
change (product.md 14; issue "Personal data"). Pure data: the DAL turns an entry into an
item and adds it to the change's TransactWriteItems, so a change is never without its
entry and an entry never without its change.

`before` and `after` describe the change without personal data: ids, codes, numbers,
settings. A member's name, phone, birthday or email never goes into an entry; a member
is named by id only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.ids import ulid

# Profile fields that must never be written into an entry (before/after).
PERSONAL_FIELDS = frozenset({"phone", "name", "birthday", "email", "external_ids", "gender"})


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff subject and the role it acted in (the highest it holds), or a
    member acting on their own data (export)."""

    subject: str
    role: str  # admin | ops | store_staff | member | system
    store_id: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    actor: Actor
    action: str  # e.g. "program.update", "member.erase", "store_key.create"
    target: str  # what was acted on, e.g. "member:<id>", "store:<id>"
    at: datetime
    request_id: str | None = None  # the client id of the write, when it has one
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    entry_id: str = field(default_factory=ulid)

    def __post_init__(self) -> None:
        for side in (self.before, self.after):
            leaked = PERSONAL_FIELDS & set(side or ())
            if leaked:
                raise ValueError(f"personal data in an audit entry: {sorted(leaked)}")
