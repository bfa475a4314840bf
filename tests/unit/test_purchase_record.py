"""The purchase record (chalicelib/domain/records.py): one typed reading of what a purchase
stores, for its refunds, GET /v1/transactions/{id} and the members stream. The stored map
must keep its shape: records already in the table are read by the same code."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from chalicelib.domain.points import record_purchase, record_refund
from chalicelib.domain.records import (
    PurchaseLine,
    PurchaseRecord,
    PurchaseRef,
    RefundRecord,
    RefundRef,
)
from tests.ledgers import Ledger
from tests.unit.test_points_domain import (
    context,
    grant,
    purchase,
    refund,
)

T1 = PurchaseRef("store-001", "t1")

# A purchase's record as stored since before purchases kept the lots that paid them and
# before tiers (no `paid_lots`, `month`, `qualifying_delta`), as the stream delivers it
# (numbers as Decimal).
OLDEST = {
    "store_id": "store-001",
    "transaction_id": "t0",
    "occurred_at": "2025-01-05T02:00:00Z",
    "total": Decimal(9800),
    "cash_due": Decimal(9800),
    "items": [["tea", "drinks", Decimal(2), Decimal(2500), Decimal(50)]],
    "points_earned": Decimal(98),
    "points_spent": Decimal(0),
    "expires_on": "2026-01-31",
    "pending": False,
    "refunded_amount": Decimal(0),
    "refunded_qty": [Decimal(0)],
    "points_reversed": Decimal(0),
    "points_returned": Decimal(0),
    "first_purchase": True,
    "referred_by": None,
}


def test_given_a_purchase_paid_partly_with_points_when_recorded_then_its_record_is_the_map_stored_so_far(
    ledger: Ledger,
):
    repo = ledger
    member_id = repo.add_member()
    grant(repo, member_id, 1000)

    record_purchase(purchase(member_id, pay_with_points=1000), context(repo))

    assert repo.request(T1).data == {
        "store_id": "store-001",
        "transaction_id": "t1",
        "occurred_at": "2025-06-18T04:00:00.000Z",
        "total": 9800,
        "cash_due": 8800,
        "items": [["tea", "drinks", 2, 2500, 44], ["cake", "bakery", 1, 4800, 43]],
        "points_earned": 87,
        "points_spent": 1000,
        "paid_lots": {"2026-06-30": 1000},
        "expires_on": "2026-06-30",
        "pending": False,
        "refunded_amount": 0,
        "refunded_qty": [0, 0],
        "points_reversed": 0,
        "points_returned": 0,
        "first_purchase": True,
        "referred_by": None,
        "month": "2025-06",
        "qualifying_delta": 8800,
    }


def test_given_a_record_from_before_lots_and_tiers_when_read_then_the_missing_fields_have_their_old_meaning():
    bought = PurchaseRecord.from_data(OLDEST)

    assert bought.lines == (PurchaseLine("tea", "drinks", 2, 2500, 50),)
    assert (bought.total, bought.points_earned, bought.refunded_qty) == (9800, 98, (0,))
    assert bought.paid_lots == {}  # a refund returns points paid to the purchase's own date
    assert (bought.month, bought.qualifying_delta) == (None, 0)  # the stream counts nothing
    assert bought.expires_on == date(2026, 1, 31)


def test_given_a_stored_record_when_read_and_written_back_then_the_same_map():
    data = {**OLDEST, "paid_lots": {"2026-01-31": Decimal(300)}, "month": "2025-01"}
    data["qualifying_delta"] = Decimal(9500)

    assert PurchaseRecord.from_data(data).to_data() == data


def test_given_a_refund_when_recorded_then_only_the_refund_fields_of_its_purchase_change(
    ledger: Ledger,
):
    repo = ledger
    member_id = repo.add_member()
    record_purchase(purchase(member_id), context(repo))
    before = repo.request(T1)

    record_refund(refund("r1", items=[("tea", 1)]), context(repo))

    update = repo.commits[-1].updated_request
    assert update is not None
    assert update.data == {
        "refunded_amount": 2500,
        "refunded_qty": [1, 0],
        "points_reversed": 25,
        "points_returned": 0,
    }
    after = PurchaseRecord.from_data(repo.request(T1).data)
    assert after == replace(
        PurchaseRecord.from_data(before.data),
        refunded_amount=2500,
        refunded_qty=(1, 0),
        points_reversed=25,
    )
    assert RefundRecord.from_data(repo.request(RefundRef(T1, "r1")).data) == (
        RefundRecord(
            amount=2500,
            points_reversed=25,
            points_returned=0,
            month="2025-06",
            qualifying_delta=-2500,
        )
    )
