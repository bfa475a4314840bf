"""Who did what (api.md, Personal data and audit): the actor a staff write records, and
`GET /v1/admin/audit`, the entries newest first.

Every staff or admin write passes `actor(call)` to the domain or repository function that
makes its change; that function builds its AuditEntry (chalicelib/domain/audit.py) and
the DAL writes it in the change's own transaction (chalicelib/dal/audit.py).
`tests/unit/test_audit_routes.py` walks every staff write route and fails for one that
writes no entry and is not on its exemption list."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from chalice.app import Blueprint

from chalicelib.api.http import ADMIN, Access, Call, operation
from chalicelib.domain.audit import Actor, acting_role
from chalicelib.errors import InvalidInput

if TYPE_CHECKING:
    from chalicelib.auth import Principal
    from chalicelib.models.audit import AuditPage, AuditQuery

bp = Blueprint(__name__)
# Default window, and the widest a request may ask for (each day is one Query).
DEFAULT_DAYS = 30
MAX_DAYS = 366


def actor_of(principal: Principal | None) -> Actor | None:
    """The actor a write records: a staff subject in its highest role (and its store, for
    store staff); None for anyone else (a member or a POS acting for itself is not a
    staff action: its own records say who it was)."""
    if principal is None or principal.kind != "staff":
        return None
    role = acting_role(principal.roles)
    return Actor(principal.subject, role, principal.store_id if role == "store_staff" else None)


def actor(call: Call) -> Actor | None:
    return actor_of(call.principal)


@operation(
    bp,
    "/v1/admin/audit",
    "GET",
    access=Access(staff=ADMIN),
    query="chalicelib.models.audit:AuditQuery",
    response="chalicelib.models.audit:AuditPage",
    tags=("admin",),
    summary=(
        "Staff actions, newest first, paged (from/to: program days, inclusive, default the "
        "last 30, at most 366; actor: one staff subject, filtered after reading each day)"
    ),
    error_statuses=(400, 401, 403),
)
def list_audit(call: Call) -> AuditPage:
    from chalicelib.dal.audit import page
    from chalicelib.domain.clock import program_date, rfc3339, utc_now
    from chalicelib.models import audit as models
    from chalicelib.wiring import services

    query: AuditQuery = call.query
    days = audit_days(query.from_, query.to, program_date(utc_now()))
    services()  # binds the tables
    entries, cursor = page(days, query.actor, query.limit, query.cursor)
    return models.AuditPage(
        entries=[
            models.AuditEntryView(
                entry_id=e.entry_id,
                at=rfc3339(e.at),
                actor=models.AuditActor(
                    subject=e.actor.subject, role=e.actor.role, store_id=e.actor.store_id
                ),
                action=e.action,
                target=e.target,
                request_id=e.request_id,
                before=e.before,
                after=e.after,
            )
            for e in entries
        ],
        next_cursor=cursor,
    )


def audit_days(first: date | None, last: date | None, today: date) -> list[date]:
    """The days a listing walks, newest first: 400 when `from` is after `to` or the range
    is wider than MAX_DAYS."""
    last = last or today
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    span = (last - first).days + 1
    if span < 1 or span > MAX_DAYS:
        raise InvalidInput(
            f"from must not be after to, and the range at most {MAX_DAYS} days",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "from", "issue": f"after to, or over {MAX_DAYS} days"}]},
        )
    return [last - timedelta(days=n) for n in range(span)]
