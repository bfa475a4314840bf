"""The benchmarks price a run's DynamoDB calls as AWS bills them (bench/common.py `price`),
one way for every section."""

from __future__ import annotations

from bench.common import price
from bench.ddbunits import Consumed, IndexSpec, TableSpec

SPEC = TableSpec(keys=("pk", "sk"), indexes=(IndexSpec("expiry-index", ("expiry_due",), "ALL"),))
KEY = ("MEMBER#mbr_1", "MEMBER")
BEFORE = {  # 1.5 KB: 2 write units; on the expiry index
    "pk": {"S": KEY[0]},
    "sk": {"S": KEY[1]},
    "expiry_due": {"S": "2026-10-31#3#mbr_1"},
    "padding": {"S": "x" * 1500},
}
AFTER = {k: v for k, v in BEFORE.items() if k != "expiry_due"}  # off the index
ENTRY = {"pk": {"S": KEY[0]}, "sk": {"S": "LEDGER#01"}, "points": {"N": "-120"}}  # < 1 KB


def expire(*, ok: bool, reported: float = 0.0) -> Consumed:
    """The expiry's transaction: the member updated, a ledger entry put."""
    return Consumed(
        "TransactWriteItems",
        "TransactWriteItems [Update members/MEMBER/MEMBER, Put members/MEMBER/LEDGER]",
        table_units=reported,
        ok=ok,
        writes=[
            ("Update", "members", {"pk": BEFORE["pk"], "sk": BEFORE["sk"]}),
            ("Put", "members", ENTRY),
        ],
    )


def test_given_a_committed_transaction_then_items_and_index_entries_are_billed_twice():
    units = price([expire(ok=True)], SPEC, {KEY: BEFORE}, {KEY: AFTER})
    # member 2 + its index entry removed 2 + new entry 1, all at 2x
    assert (units.wru, units.wru_index, units.unpriced) == (10.0, 4.0, 0)


def test_given_a_cancelled_transaction_then_its_items_are_billed_twice_without_index_writes():
    """AWS bills a cancelled transaction's writes; its response carries no capacity."""
    units = price([expire(ok=False)], SPEC, {KEY: BEFORE}, {})
    assert (units.wru, units.wru_index, units.wru_reported) == (6.0, 0.0, 0.0)
    assert units.by_operation["TransactWriteItems"]["failed"] == 1


def test_given_an_item_without_images_then_the_engine_figure_stands_for_the_call():
    units = price([expire(ok=True, reported=3.0)], SPEC, {}, {})
    assert (units.wru, units.unpriced) == (3.0, 1)


def test_given_reads_and_other_calls_then_reads_are_the_engine_figures_and_the_rest_free():
    calls = [
        Consumed("GetItem", "GetItem members/MEMBER strong", table_units=1.0),
        Consumed("DescribeTable", "DescribeTable members/?", table_units=0.0),
    ]
    units = price(calls, SPEC, {}, {})
    assert (units.rru, units.wru, units.by_line["DescribeTable members/?"]["calls"]) == (1.0, 0, 1)
