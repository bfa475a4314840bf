"""Audit entries on DynamoDB Local: the entry and its change are one transaction (a change
whose condition fails writes no entry; a replay writes no second one), and the listing
walks day partitions newest first, in pages, with the actor filter."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib.dal import audit as dal
from chalicelib.dal.tables import AuditItem
from chalicelib.domain import stores as domain
from chalicelib.domain.audit import Actor, AuditEntry, entry
from chalicelib.errors import Conflict, NotFound
from chalicelib.wiring import services

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 4, tzinfo=UTC)


def entries_for(subject: str) -> list[AuditEntry]:
    return [
        dal.from_item(i)
        for i in AuditItem.scan(AuditItem.pk.startswith("AUDIT#") & (AuditItem.actor == subject))
    ]


def test_given_an_audited_create_when_replayed_or_refused_then_one_entry_only(ddb_local):
    repo = services().program
    admin = Actor(f"admin-{uuid.uuid4().hex[:8]}", "admin")
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    first = domain.create_store(store_id, "dealer-demo", "Kiosk", repo, NOW, admin)
    assert domain.create_store(store_id, "dealer-demo", "Kiosk", repo, NOW, admin) == first
    with pytest.raises(Conflict):  # the same id, another body: refused, nothing written
        domain.create_store(store_id, "dealer-demo", "Other", repo, NOW, admin)
    (made,) = entries_for(admin.subject)
    assert (made.action, made.target, made.request_id) == (
        "store.create",
        f"store:{store_id}",
        store_id,
    )
    assert made.after is not None
    assert made.after["store_name"] == "Kiosk"


def test_given_a_change_whose_condition_fails_then_no_entry_and_no_change(ddb_local):
    repo = services().program
    admin = Actor(f"admin-{uuid.uuid4().hex[:8]}", "admin")
    with pytest.raises(NotFound):  # the store does not exist: its update's condition fails
        domain.update_store(f"s-{uuid.uuid4().hex[:8]}", {"active": False}, repo, NOW, admin)
    config = repo.config(fresh=True)
    stale = entry(admin, "program.update", "program:config", NOW)
    with pytest.raises(Conflict):
        repo.save_config(config, expected_version=config.version + 3, audit=stale)
    assert repo.config(fresh=True) == config
    # a key revoked twice: one entry (the second revocation changes nothing)
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    domain.create_store(store_id, "dealer-demo", "Kiosk", repo, NOW)
    key = domain.issue_key(store_id, repo, NOW)
    for _ in range(2):
        assert not domain.revoke_key(store_id, key.key_id, repo, NOW, admin).active
    assert [e.action for e in entries_for(admin.subject)] == ["store_key.revoke"]


def test_given_entries_over_days_when_paged_with_the_actor_filter_then_newest_first(ddb_local):
    services()
    alice = Actor(f"alice-{uuid.uuid4().hex[:8]}", "ops")
    bob = Actor(f"bob-{uuid.uuid4().hex[:8]}", "admin")
    # days of their own (a test run long ago): no other test writes there
    base = date(2001, 1, 1) + timedelta(days=uuid.uuid4().int % 5000)
    days = [base + timedelta(days=n) for n in range(4)]
    written: list[AuditEntry] = []
    for day in days:
        if day == days[2]:
            continue  # an empty day in the middle
        for n in range(5):
            who = alice if n % 2 == 0 else bob
            moment = datetime(day.year, day.month, day.day, 2, n, tzinfo=UTC)
            made = entry(who, "reward.update", f"reward:r{n}", moment, after={"points": n})
            assert made is not None
            written.append(made)
    from pynamodb.transactions import TransactWrite

    for made in written:
        with TransactWrite(connection=AuditItem._get_connection().connection) as txn:
            dal.append(txn, made)
    newest_days = sorted(days, reverse=True)

    def walk(actor: str | None, limit: int) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            page, cursor = dal.page(newest_days, actor, limit, cursor)
            assert len(page) <= limit
            seen += [e.entry_id for e in page]
            if cursor is None:
                return seen

    newest_first = sorted(written, key=lambda e: e.at, reverse=True)
    assert walk(None, 4) == [e.entry_id for e in newest_first]
    assert walk(alice.subject, 2) == [e.entry_id for e in newest_first if e.actor == alice]
    assert walk(bob.subject, 100) == [e.entry_id for e in newest_first if e.actor == bob]
