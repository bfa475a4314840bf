"""Audit entries: who did what to the program, written in the same transaction as the
change (product.md 14; issue "Personal data"). Pure data: the DAL turns an entry into an
item and adds it to the change's TransactWriteItems, so a change is never without its
entry and an entry never without its change.

`before` and `after` describe the change without personal data: ids, codes, numbers,
settings. A member's name, phone, birthday or email never goes into an entry; a member
is named by id only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
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


# The roles a staff token may hold, highest first: an entry names the one it acted in.
STAFF_ROLE_ORDER = ("admin", "ops", "store_staff")


def acting_role(roles: frozenset[str] | set[str]) -> str:
    """The highest staff role of `roles` (what a route's access was granted on)."""
    for role in STAFF_ROLE_ORDER:
        if role in roles:
            return role
    return "staff"


def entry(
    actor: Actor | None,
    action: str,
    target: str,
    at: datetime,
    *,
    request_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry | None:
    """The entry a change writes when someone acts (`actor`); None when nobody does (the
    program itself, a test or a local tool calling the domain directly): nothing to audit.
    `before`/`after` become plain values (dates as text, tuples as lists)."""
    if actor is None:
        return None
    return AuditEntry(
        actor=actor,
        action=action,
        target=target,
        at=at,
        request_id=request_id,
        before=plain(before) if before else None,
        after=plain(after) if after else None,
    )


def plain(value: Any) -> Any:
    """What an entry stores of a value: JSON-like (str, int, float, bool, None, lists and
    maps with text keys). Empty maps and lists become None (DynamoDB stream parsers turn
    an empty map into something else; nothing is lost: empty says nothing)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # a date
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        items = {str(k): plain(v) for k, v in value.items()}
        return items or None
    if isinstance(value, list | tuple | set | frozenset):
        listed = [plain(v) for v in value]
        return listed or None
    return value


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, on each side (what an edit's entry records)."""
    names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return {k: before.get(k) for k in names}, {k: after.get(k) for k in names}


def named(fields: dict[str, Any], kind: str) -> dict[str, Any]:
    """A thing's fields for an entry, its `name` as `<kind>_name`: a store's, a reward's or
    a template's name is no one's personal data, but `name` is refused in an entry (a
    member's would be), so it is recorded under a name that says whose it is."""
    return {(f"{kind}_name" if k == "name" else k): v for k, v in fields.items()}
