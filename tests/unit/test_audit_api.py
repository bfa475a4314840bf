"""GET /v1/admin/audit and what audited writes leave behind (moto): admin only, newest
first across days, paged, filtered by actor; a replayed write adds no entry; a refused
write adds none; no function's role may delete an entry."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.audit import Actor, AuditEntry, acting_role, changed, entry, named, plain
from local.tools import member_or_staff_token
from tests.conftest import auth
from tests.unit.test_audit_routes import Staff, audit_items, fresh


def listing(client: Any, query: str = "", token: str | None = None) -> Any:
    token = token or member_or_staff_token("admin", "auditor")
    return client.http.get(f"/v1/admin/audit{query}", headers=auth(token))


def put_entries(entries: list[AuditEntry]) -> None:
    """Entries written as a change's transaction writes them (one each)."""
    from pynamodb.transactions import TransactWrite

    from chalicelib.dal.audit import append
    from chalicelib.dal.tables import AuditItem
    from chalicelib.wiring import services

    services()
    for one in entries:
        with TransactWrite(connection=AuditItem._get_connection().connection) as txn:
            append(txn, one)


def at(day: date, hour: int) -> datetime:
    # 04:00 UTC is noon in the program's time zone: the same program day
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# ---- the domain's pieces -------------------------------------------------------------------


def test_given_staff_roles_then_the_entry_names_the_highest():
    assert acting_role(frozenset({"ops", "admin"})) == "admin"
    assert acting_role(frozenset({"store_staff", "ops"})) == "ops"
    assert acting_role(frozenset({"store_staff"})) == "store_staff"


def test_given_no_actor_then_no_entry_and_personal_fields_are_refused():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert entry(None, "points.adjust", "member:m", now) is None
    with pytest.raises(ValueError, match="personal data"):
        entry(Actor("s", "ops"), "member.update", "member:m", now, after={"phone": "+86"})
    # a thing's name is recorded under a name that says whose it is
    made = entry(
        Actor("s", "ops"), "store.create", "store:s", now, after=named({"name": "K"}, "store")
    )
    assert made is not None
    assert made.after == {"store_name": "K"}


def test_given_values_then_plain_makes_them_storable_and_changed_keeps_the_difference():
    assert plain({"d": date(2026, 1, 2), "t": (1, 2), "e": {}}) == {
        "d": "2026-01-02",
        "t": [1, 2],
        "e": None,
    }
    assert changed({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == (
        {"b": 2, "c": None},
        {"b": 3, "c": 4},
    )


# ---- the listing -----------------------------------------------------------------------------


def test_given_entries_over_days_when_listed_then_newest_first_paged_and_filtered_by_actor(
    seeded, app_client
):
    today = date.today()
    alice, bob = Actor(fresh("alice"), "ops"), Actor(fresh("bob"), "admin")
    written = []
    for back in (0, 1, 3):
        day = today - timedelta(days=back)
        for n, who in enumerate((alice, bob, alice)):
            made = entry(who, "points.adjust", f"member:m{back}{n}", at(day, n), request_id=f"r{n}")
            assert made is not None
            written.append(made)
    put_entries(written)
    newest_first = sorted(written, key=lambda e: e.at, reverse=True)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = f"?from={(today - timedelta(days=5)).isoformat()}&to={today.isoformat()}&limit=4"
        response = listing(app_client, query + (f"&cursor={cursor}" if cursor else ""))
        assert response.status_code == 200, response.json_body
        seen += [e["entry_id"] for e in response.json_body["entries"]]
        cursor = response.json_body["next_cursor"]
        if cursor is None:
            break
    assert seen == [e.entry_id for e in newest_first]

    response = listing(app_client, f"?actor={alice.subject}&limit=100")
    entries = response.json_body["entries"]
    assert [e["entry_id"] for e in entries] == [
        e.entry_id for e in newest_first if e.actor == alice
    ]
    assert entries[0]["actor"] == {"subject": alice.subject, "role": "ops", "store_id": None}
    assert entries[0]["action"] == "points.adjust"


def test_given_a_range_over_366_days_or_reversed_or_a_foreign_cursor_then_400(seeded, app_client):
    assert listing(app_client, "?from=2025-01-01&to=2026-03-01").status_code == 400
    assert listing(app_client, "?from=2026-03-02&to=2026-03-01").status_code == 400
    assert listing(app_client, "?from=2026-13-01").status_code == 400
    # a date is YYYY-MM-DD: lenient parsing would read a number as a Unix time
    assert listing(app_client, "?to=0").status_code == 400
    assert listing(app_client, "?from=1700000000").status_code == 400
    foreign = "eyJwayI6eyJTIjoiU1RPUkVTIn0sInNrIjp7IlMiOiJ4In19"  # a stores listing's key
    response = listing(app_client, f"?cursor={foreign}")
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "INVALID_CURSOR"
    old = "eyJwayI6eyJTIjoiQVVESVQjMjAyMC0wMS0wMSJ9LCJzayI6eyJTIjoieCJ9fQ=="  # another range
    assert listing(app_client, f"?cursor={old}").status_code == 400


@pytest.mark.parametrize("role", ["ops", "store_staff", "member"])
def test_given_anyone_but_an_admin_when_listing_then_403(seeded, app_client, role):
    token = member_or_staff_token(role, None, "store-001") if role != "member" else None
    if token is None:
        from tests.conftest import token_for

        token = token_for(None)
    assert listing(app_client, token=token).status_code == 403


# ---- replays and refusals write no entry ------------------------------------------------------


def new_entries(before: dict[tuple[str, str], Any]) -> list[dict[str, Any]]:
    return [item for key, item in audit_items().items() if key not in before]


def test_given_an_audited_write_when_replayed_then_no_second_entry(seeded, app_client):
    admin = Staff(app_client, "admin")
    from tests.unit.test_audit_routes import _member

    member_id, _ = _member(app_client)
    adjustment = {"adjustment_id": fresh("adj"), "points": 20, "reason": "goodwill"}
    store = {"store_id": fresh("s"), "dealer_id": "dealer-demo", "name": "Kiosk"}
    sends = [
        ("POST", f"/v1/admin/members/{member_id}/adjustments", adjustment),
        ("POST", "/v1/admin/stores", store),
    ]
    for method, path, body in sends:
        first = admin.call(method, path, body)
        before = audit_items()
        again = admin.call(method, path, body)
        assert again.status_code == first.status_code == 201
        assert again.json_body == first.json_body
        assert new_entries(before) == [], path
    key = admin.ok("POST", f"/v1/admin/stores/{store['store_id']}/keys")
    revoke = f"/v1/admin/stores/{store['store_id']}/keys/{key['key_id']}"
    admin.ok("DELETE", revoke)
    before = audit_items()
    assert admin.call("DELETE", revoke).status_code == 200
    assert new_entries(before) == []


def test_given_a_refused_write_then_no_entry(seeded, app_client):
    admin = Staff(app_client, "admin")
    config = admin.ok("GET", "/v1/admin/program")["config"]
    before = audit_items()
    stale = admin.call("PUT", "/v1/admin/program", {**config, "version": config["version"] + 7})
    assert stale.status_code == 409
    unknown = admin.call("PATCH", "/v1/admin/stores/no-such-store", {"active": False})
    assert unknown.status_code == 404
    other = admin.call("DELETE", f"/v1/admin/stores/{fresh('s')}/keys/key_0000000000000000")
    assert other.status_code == 404
    assert new_entries(before) == []


def test_given_the_roles_then_no_function_may_delete_an_audit_entry_and_only_the_api_writes():
    from infra import iam
    from tests import iam_check

    template = json.loads(iam_check.TEMPLATE.read_text())
    for function in iam.ACCESS:
        statements = iam_check.role_statements(function, template)
        for action in ("DeleteItem", "PutItem", "UpdateItem"):
            request = iam_check.Request(
                function, f"dynamodb:{action}", "ProgramTable", ("AUDIT#2026-03-01",)
            )
            allowed = iam_check.allows(statements, request, template)
            if action == "DeleteItem" or function != "APIHandler":
                assert not allowed, request.describe()
