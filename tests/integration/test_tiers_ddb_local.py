"""Tiers on DynamoDB Local: spend counted once per stream record, upgrades at once,
the yearly review through the sparse index (keep, grace, move down), reruns."""

from __future__ import annotations

import threading
import uuid
import zlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from chalicelib.dal.ledger import request_key
from chalicelib.domain import points as domain
from chalicelib.domain.records import Commit, PurchaseRef
from chalicelib.domain.tiering import (
    TierChange,
    review_key,
    review_member,
    start_of_day,
)
from chalicelib.domain.tiers import add_years
from chalicelib.handlers import member_stream
from chalicelib.wiring import services
from tests.fakes import set_last_scheduled
from tests.helpers import stream_record
from tests.integration.test_ledger_ddb_local import context, new_member, purchase

pytestmark = pytest.mark.integration


def stream_event(items: list[tuple[str, str]]) -> dict[str, Any]:
    """The stream records DynamoDB writes for freshly inserted items, read back raw."""
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    table = services().settings.members_table
    records = []
    for pk, sk in items:
        image = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
        records.append(stream_record("INSERT", image, created=1795300000))
    return {"Records": records}


@pytest.fixture
def no_events(monkeypatch):
    monkeypatch.setattr(services().events, "publish", lambda events: None)
    monkeypatch.setattr(services().messages, "send", lambda message: None)


def test_given_a_purchase_over_the_gold_threshold_when_its_record_streams_then_gold_once(
    ddb_local, no_events
):
    member_id = new_member()
    txn = purchase(member_id, f"gold-{uuid.uuid4().hex[:8]}", [520_000])
    domain.record_purchase(txn, context())
    event = stream_event([record_key(txn)])

    first = member_stream.handle(event, None)
    replay = member_stream.handle(event, None)  # a retried batch

    assert first == {"batchItemFailures": []}
    assert replay == {"batchItemFailures": []}
    state = services().tiers.state(member_id)
    assert state.tier_code == "gold"
    assert sum(state.monthly_spend.values()) == 520_000  # counted once
    assert state.review_due is not None
    history = services().tiers.history(member_id)
    assert [(h["from"], h["to"], h["reason"]) for h in history] == [("member", "gold", "upgrade")]


def test_given_a_refund_below_the_threshold_then_the_tier_stays_until_the_review(
    ddb_local, no_events
):
    member_id = new_member()
    txn = purchase(member_id, f"rf-{uuid.uuid4().hex[:8]}", [520_000])
    domain.record_purchase(txn, context())
    member_stream.handle(stream_event([record_key(txn)]), None)
    domain.record_refund(
        domain.Refund(
            refund_id="half",
            store_id=txn.store_id,
            transaction_id=txn.transaction_id,
            items=None,
            amount=300_000,
            request_hash="0a",
        ),
        context(),
    )
    member_stream.handle(
        stream_event([(f"TXN#{txn.store_id}#{txn.transaction_id}", "REFUND#half")]), None
    )
    state = services().tiers.state(member_id)
    assert sum(state.monthly_spend.values()) == 220_000
    assert state.tier_code == "gold"


def set_tier(member_id: str, code: str, since: date, spend_by_month: dict[str, int]) -> str:
    repo = services().tiers
    for month, amount in spend_by_month.items():
        repo.count_spend(*_fake_record(member_id), member_id, month, amount)
    anniversary = add_years(since)
    key = review_key(anniversary, member_id)
    assert repo.change(
        TierChange(
            member_id, "member", code, "upgrade", 0, since, start_of_day(anniversary), key, None
        ),
        datetime.now(UTC),
    )
    return key


def _fake_record(member_id: str) -> tuple[str, str]:
    """A request record to mark as counted (what a purchase would be)."""
    from chalicelib.dal.tables import RequestItem

    pk = f"TXN#test#{uuid.uuid4().hex}"
    RequestItem(
        pk=pk,
        sk="TXN",
        kind="purchase",
        member_id=member_id,
        request_hash=b"x",
        status=201,
        response=zlib.compress(b"{}"),
        created_at="2026-01-01T00:00:00Z",
        data={"n": 1},
    ).save()
    return pk, "TXN"


def review(member_id: str, key: str, today: date, grace_days: int = 0) -> Any:
    svc = services()
    return review_member(
        svc.tiers,
        svc.program.tiers(),
        member_id=member_id,
        key=key,
        today=today,
        now=datetime.now(UTC),
        grace_days=grace_days,
        policy="one_level",
    )


def test_given_retention_met_then_the_tier_is_kept_for_another_year_and_a_rerun_does_nothing(
    ddb_local,
):
    member_id = new_member()
    key = set_tier(member_id, "gold", date(2025, 6, 1), {"2025-09": 450_000})
    kept = review(member_id, key, date(2026, 6, 1))
    assert kept.reason == "kept"
    assert kept.review_due == review_key(date(2027, 6, 1), member_id)
    assert review(member_id, key, date(2026, 6, 1)) is None  # same day again
    assert services().tiers.state(member_id).tier_code == "gold"


def test_given_retention_missed_then_down_one_level_or_grace_first(ddb_local):
    plain = new_member()
    key = set_tier(plain, "platinum", date(2025, 6, 1), {"2025-09": 100_000})
    moved = review(plain, key, date(2026, 6, 1))
    assert (moved.reason, moved.to_code) == ("downgraded", "gold")

    graced = new_member()
    key = set_tier(graced, "gold", date(2025, 6, 1), {"2025-09": 100_000})
    grace = review(graced, key, date(2026, 6, 1), grace_days=30)
    assert (grace.reason, grace.to_code) == ("grace", "gold")
    assert grace.grace_until == date(2026, 7, 1)
    later = review(graced, grace.review_due, date(2026, 7, 1), grace_days=30)
    assert (later.reason, later.to_code) == ("downgraded", "silver")


def test_given_an_anniversary_on_29_february_then_the_review_is_on_28_february(ddb_local):
    member_id = new_member()
    key = set_tier(member_id, "silver", date(2028, 2, 29), {"2028-03": 200_000})
    assert key.startswith("2029-02-28#")
    assert review(member_id, key, date(2029, 2, 28)).reason == "kept"


def test_given_no_spend_window_left_then_the_rolling_window_ignores_old_months(ddb_local):
    member_id = new_member()
    key = set_tier(member_id, "silver", date(2025, 6, 1), {"2025-05": 900_000})  # 13 months back
    assert review(member_id, key, date(2026, 6, 1)).to_code == "member"
    state = services().tiers.state(member_id)
    assert state.review_due is None  # the base tier is not reviewed
    assert state.tier_expires_at is None


def test_review_key_uses_the_member_shard():
    assert review_key(date(2026, 1, 31), "mbr_x").startswith("2026-01-31#")
    assert start_of_day(date(2026, 1, 31)) == datetime(2026, 1, 30, 16, tzinfo=UTC)
    assert add_years(date(2028, 2, 29)) == date(2029, 2, 28)
    assert (date(2026, 1, 1) - timedelta(days=1)).year == 2025


def test_given_the_shanghai_day_boundary_then_the_review_runs_on_the_program_day(
    ddb_local, monkeypatch
):
    from chalicelib.handlers.tiers import run_tier_review

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(services().tasks, "send_many", queued.extend)
    member_id = new_member()
    since = date(2030, 1, 1) + timedelta(days=uuid.uuid4().int % 2000)
    key = set_tier(member_id, "gold", since, {})
    due = add_years(since)
    set_last_scheduled("tier_review", due - timedelta(days=2))
    before_midnight = datetime.combine(
        due - timedelta(days=1), datetime.min.time(), UTC
    ) + timedelta(hours=15, minutes=59)  # 23:59 the day before, in Shanghai
    run_tier_review({"time": before_midnight.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert services().tiers.state(member_id).review_due == key  # not yet

    after_midnight = before_midnight + timedelta(minutes=11)  # 00:10 on the anniversary
    result = run_tier_review({"time": after_midnight.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert result["dates"] == [due.isoformat()]
    run_tasks(queued)  # what the jobs queue's worker does with them
    state = services().tiers.state(member_id)
    assert state.tier_code == "silver"  # no spend: down one level
    again = run_tier_review({"time": after_midnight.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert again["dates"] == []


# ---- counting and refunds cannot lose each other's writes -------------------------------


class CountsBeforeCommit:
    """The ledger repository, except that `stream` runs just before the first commit:
    a refund has read its purchase record (plan) but not yet written it."""

    def __init__(self, repo: Any, stream: Any) -> None:
        self._repo = repo
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)

    def commit(self, commit: Commit) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream()
        self._repo.commit(commit)


def record_key(txn: domain.Purchase) -> tuple[str, str]:
    """Where the purchase's request record is stored (what its stream record carries)."""
    return request_key(PurchaseRef(txn.store_id, txn.transaction_id))


def refund_of(
    txn: domain.Purchase,
    refund_id: str,
    amount: int | None = None,
    items: list[tuple[str, int]] | None = None,
) -> domain.Refund:
    return domain.Refund(
        refund_id=refund_id,
        store_id=txn.store_id,
        transaction_id=txn.transaction_id,
        items=items,
        amount=amount,
        request_hash=domain.request_hash({"refund": refund_id, "amount": amount, "i": items}),
    )


def test_given_the_stream_counting_a_purchase_between_a_refunds_read_and_write_when_the_record_is_redelivered_then_the_spend_is_counted_once(
    ddb_local, no_events
):
    member_id = new_member()
    txn = purchase(member_id, f"race-{uuid.uuid4().hex[:8]}", [290_000, 10_000])  # ¥3,000
    domain.record_purchase(txn, context())
    key = record_key(txn)
    purchase_record = stream_event([key])  # the INSERT record, as the stream delivers it

    def stream_counts() -> None:
        assert member_stream.handle(purchase_record, None) == {"batchItemFailures": []}
        assert sum(services().tiers.state(member_id).monthly_spend.values()) == 300_000

    ctx = context()
    racing = replace(ctx, repo=CountsBeforeCommit(ctx.repo, stream_counts))
    domain.record_refund(refund_of(txn, "r1", items=[("sku-1", 1)]), racing)
    assert racing.repo._stream is None  # the interleaving happened

    redelivered = member_stream.handle(purchase_record, None)  # e.g. a retried batch
    member_stream.handle(stream_event([(key[0], "REFUND#r1")]), None)

    assert redelivered == {"batchItemFailures": []}
    state = services().tiers.state(member_id)
    assert sum(state.monthly_spend.values()) == 290_000  # ¥3,000 once, less the refund
    assert state.tier_code == "silver"  # counted twice, ¥6,000 would have made gold
    record = services().ledger.get_request(PurchaseRef(txn.store_id, txn.transaction_id))
    assert record.data["tier_counted"] is True
    assert record.data["refunded_amount"] == 10_000
    assert record.data["refunded_qty"] == [0, 1]
    assert record.data["points_reversed"] == 100
    assert record.version == 2


def test_given_a_refund_committed_between_the_streams_read_of_a_purchase_and_its_count_when_redelivered_then_the_spend_is_counted_once(
    ddb_local, no_events, monkeypatch
):
    member_id = new_member()
    txn = purchase(member_id, f"race-{uuid.uuid4().hex[:8]}", [300_000])
    domain.record_purchase(txn, context())
    key = record_key(txn)
    purchase_record = stream_event([key])
    tiers = services().tiers
    real_count = tiers.count_spend
    refunds = iter([lambda: domain.record_refund(refund_of(txn, "r1", 10_000), context())])

    def count_spend(*args: Any, **kwargs: Any) -> bool:
        refund = next(refunds, None)
        if refund is not None:
            # lands after the stream read the record, before it counts; on a thread of its
            # own, as the API's request is: the stream function never makes these calls
            racing = threading.Thread(target=refund)
            racing.start()
            racing.join()
        return real_count(*args, **kwargs)

    monkeypatch.setattr(tiers, "count_spend", count_spend)
    assert member_stream.handle(purchase_record, None) == {"batchItemFailures": []}
    assert next(refunds, None) is None  # the interleaving happened
    assert member_stream.handle(purchase_record, None) == {"batchItemFailures": []}
    member_stream.handle(stream_event([(key[0], "REFUND#r1")]), None)

    state = services().tiers.state(member_id)
    assert sum(state.monthly_spend.values()) == 290_000
    assert state.tier_code == "silver"


def run_tasks(queued: list[dict[str, Any]]) -> None:
    import json

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.handlers.jobs import task_handler

    while queued:
        task = queued.pop(0)
        task_handler(SQSRecord({"messageId": "m", "body": json.dumps(task)}), None)
