"""Points expiry on DynamoDB Local: the sparse index, reruns, catch-up, races."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib.dal.ledger import expiry_key
from chalicelib.domain import points as domain
from chalicelib.domain.expiry import EXPIRY_SHARDS, dates_to_run, expire_member
from chalicelib.domain.program import ProgramConfig
from chalicelib.domain.records import PurchaseRef
from chalicelib.errors import DomainError
from chalicelib.handlers.expiry import run_points_expiry
from chalicelib.wiring import services
from tests.helpers import credit
from tests.integration.test_ledger_ddb_local import (
    check_invariants,
    ledger_sum,
    new_member,
    purchase,
)

pytestmark = pytest.mark.integration


def ctx_at(moment: datetime, program: ProgramConfig | None = None) -> domain.Context:
    svc = services()
    return domain.Context(
        repo=svc.ledger,
        program=program or svc.program.config(),
        tiers=svc.program.tiers(),
        now=moment,
    )


def due(day: date) -> set[str]:
    found: set[str] = set()
    for shard in range(EXPIRY_SHARDS):
        start = None
        while True:
            ids, start = services().ledger.members_due(f"{day.isoformat()}#{shard}", start, 100)
            found.update(ids)
            if start is None:
                break
    return found


def test_given_lots_on_two_dates_when_the_first_expires_then_only_it_goes_and_a_rerun_does_nothing(
    ddb_local,
):
    member_id = new_member()
    credit(member_id, 300, datetime(2025, 10, 10, 4, tzinfo=UTC))  # expires 2026-10-31
    credit(member_id, 200, datetime(2025, 11, 10, 4, tzinfo=UTC))  # expires 2026-11-30
    assert member_id in due(date(2026, 10, 31))
    now = datetime(2026, 10, 31, 16, 5, tzinfo=UTC)  # 00:05 on 1 Nov in Shanghai

    first = expire_member(member_id, date(2026, 10, 31), ctx_at(now))
    again = expire_member(member_id, date(2026, 10, 31), ctx_at(now))

    assert (first.points, first.lots) == (300, 1)
    assert (again.points, again.lots) == (0, 0)
    account = check_invariants(member_id)
    assert account.wallet.balance == 200
    assert account.member.expiring_next_date == date(2026, 11, 30)
    assert member_id not in due(date(2026, 10, 31))
    assert member_id in due(date(2026, 11, 30))  # the index followed the next date
    entries, _ = services().ledger.list_entries(member_id, 10, None)
    assert next(e.type for e in entries) == "expire"
    assert sum(1 for e in entries if e.type == "expire") == 1


def test_given_a_partly_spent_lot_when_it_expires_then_only_the_rest_expires(ddb_local):
    member_id = new_member()
    credit(member_id, 1_000, datetime(2025, 11, 3, tzinfo=UTC))  # expires 2026-11-30
    domain.record_purchase(
        purchase(member_id, f"p-{uuid.uuid4().hex[:8]}", [2_000], pay=1_000),
        ctx_at(datetime.now(UTC)),
    )
    account = check_invariants(member_id)
    earned_now = account.wallet.balance  # the purchase's own (later-expiring) points
    outcome = expire_member(
        member_id, date(2026, 11, 30), ctx_at(datetime(2026, 12, 1, tzinfo=UTC))
    )
    assert outcome.points == 0  # 1000 were spent from the earliest lot: nothing left in it
    assert check_invariants(member_id).wallet.balance == earned_now


def test_given_expiry_racing_a_spend_then_no_point_is_both_spent_and_expired(ddb_local):
    member_id = new_member()
    credit(member_id, 500, datetime(2025, 11, 5, tzinfo=UTC))  # expires 2026-11-30
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def spend() -> None:
        barrier.wait()
        try:
            results["spend"] = domain.record_purchase(
                purchase(member_id, f"race-{uuid.uuid4().hex[:8]}", [1_000], pay=500),
                ctx_at(datetime.now(UTC)),
            )
        except DomainError as exc:
            results["spend"] = exc.code

    def expire() -> None:
        barrier.wait()
        results["expire"] = expire_member(
            member_id, date(2026, 11, 30), ctx_at(datetime(2026, 12, 1, tzinfo=UTC))
        )

    threads = [threading.Thread(target=spend), threading.Thread(target=expire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    account = check_invariants(member_id)
    expired = results["expire"].points  # type: ignore[attr-defined]
    spent = 500 if isinstance(results["spend"], tuple) else 0
    assert expired + spent == 500, results
    entries, _ = services().ledger.list_entries(member_id, 20, None)
    assert sum(-e.points for e in entries if e.type in ("expire", "redeem")) == 500
    assert account.wallet.balance == ledger_sum(member_id)[0]


def test_given_two_missed_days_when_the_job_runs_then_it_schedules_each_date_once(
    ddb_local, monkeypatch
):
    queued: list[dict] = []
    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: queued.extend(tasks))
    job = services().jobs
    start = date(2031, 5, 1) + timedelta(days=uuid.uuid4().int % 1000)  # a fresh stretch
    job.advance("expiry", start)
    fired = datetime.combine(start + timedelta(days=3), datetime.min.time(), UTC) + timedelta(
        hours=16, minutes=5
    )

    first = run_points_expiry({"time": fired.strftime("%Y-%m-%dT%H:%M:%SZ")})
    rerun = run_points_expiry({"time": fired.strftime("%Y-%m-%dT%H:%M:%SZ")})

    # fired at 00:05 on start+4 (Shanghai): processes start+1 .. start+3
    assert first["dates"] == [(start + timedelta(days=n)).isoformat() for n in (1, 2, 3)]
    assert first["tasks"] == 3 * EXPIRY_SHARDS
    assert rerun["dates"] == []
    assert rerun["tasks"] == 0
    assert len(queued) == 3 * EXPIRY_SHARDS
    assert job.run("expiry", start + timedelta(days=2)) is not None


def test_given_the_shanghai_day_boundary_then_the_run_processes_the_program_day_before(
    ddb_local, monkeypatch
):
    queued: list[dict] = []
    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: queued.extend(tasks))
    job = services().jobs
    base = date(2040, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
    job.advance("expiry", base - timedelta(days=1))
    late_utc = datetime.combine(base, datetime.min.time(), UTC) + timedelta(hours=15, minutes=59)
    # 23:59 in Shanghai on `base`: yesterday (base-1) is already done, nothing to run
    assert run_points_expiry({"time": late_utc.strftime("%Y-%m-%dT%H:%M:%SZ")})["dates"] == []
    # two minutes later it is 00:01 on base+1 in Shanghai: `base` is over
    after = late_utc + timedelta(minutes=2)
    assert run_points_expiry({"time": after.strftime("%Y-%m-%dT%H:%M:%SZ")})["dates"] == [
        base.isoformat()
    ]


def test_given_a_member_on_29_february_then_its_index_key_names_that_date(ddb_local):
    member_id = new_member()
    credit(member_id, 50, datetime(2027, 2, 10, 3, tzinfo=UTC))  # rolling 12 months: 2028-02-29
    account = check_invariants(member_id)
    assert account.member.expiring_next_date == date(2028, 2, 29)
    assert member_id in due(date(2028, 2, 29))
    assert expiry_key(date(2028, 2, 29), member_id).startswith("2028-02-29#")


def test_dates_to_run_catches_up_and_never_repeats():
    assert dates_to_run(date(2026, 3, 1), date(2026, 3, 1)) == []
    assert dates_to_run(date(2026, 2, 27), date(2026, 3, 1)) == [
        date(2026, 2, 28),
        date(2026, 3, 1),
    ]
    assert dates_to_run(None, date(2026, 3, 1))[-1] == date(2026, 3, 1)
    assert len(dates_to_run(None, date(2026, 3, 1))) == 7


def test_given_points_paid_from_a_lot_that_has_since_expired_when_the_bill_is_refunded_then_they_return_to_their_dates_and_the_expired_ones_expire_at_once(
    ddb_local,
):
    from dataclasses import replace

    member_id = new_member()
    credit(member_id, 300, datetime(2025, 10, 10, 4, tzinfo=UTC))  # expires 2026-10-31
    credit(member_id, 500, datetime(2025, 11, 10, 4, tzinfo=UTC))  # expires 2026-11-30
    bought_at = datetime(2026, 10, 20, 4, tzinfo=UTC)
    bill = replace(
        purchase(member_id, f"paid-{uuid.uuid4().hex[:8]}", [2000], pay=400),
        occurred_at=bought_at,
    )
    domain.record_purchase(bill, ctx_at(bought_at))  # 300 of October's lot, 100 of November's
    record = services().ledger.get_request(PurchaseRef("store-001", bill.transaction_id))
    assert record.data["paid_lots"] == {"2026-10-31": 300, "2026-11-30": 100}
    expire_member(member_id, date(2026, 10, 31), ctx_at(datetime(2026, 10, 31, 16, 5, tzinfo=UTC)))

    _, body = domain.record_refund(
        domain.Refund(
            refund_id="all",
            store_id="store-001",
            transaction_id=bill.transaction_id,
            items=None,
            amount=2000,
            request_hash=uuid.uuid4().hex,
        ),
        ctx_at(datetime(2026, 11, 5, 4, tzinfo=UTC)),
    )

    assert body["points_returned"] == 400
    account = check_invariants(member_id)
    assert account.wallet.lots == {date(2026, 11, 30): 500}  # not a fresh 2027 date
    assert body["balance"] == 500
    assert member_id in due(date(2026, 11, 30))
    assert member_id not in due(date(2026, 10, 31))
    entries, _ = services().ledger.list_entries(member_id, 10, None)
    expired = [e for e in entries if e.type == "expire"]
    assert [(e.points, e.lots, e.detail.get("returned_by")) for e in expired] == [
        (-300, {date(2026, 10, 31): -300}, "all")
    ]
    total, _count = ledger_sum(member_id)
    assert total == 500
