"""Where the ledger repository (chalicelib/dal/ledger.py) stores request records.

The domain names a request by meaning (store + transaction id, a refund of it, a member's
activity or adjustment, a program grant); the repository maps it to a key. Records
written by earlier versions are found by these exact strings, so they are spelled out
here rather than computed.
"""

from __future__ import annotations

import pytest

from chalicelib.dal.ledger import purchase_pk, request_key
from chalicelib.domain.records import (
    MemberRequestRef,
    PurchaseRef,
    RefundRef,
    RequestRef,
    client_id,
)

PURCHASE = PurchaseRef("store-001", "T-42")


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        (PURCHASE, ("TXN#store-001#T-42", "TXN")),
        (RefundRef(PURCHASE, "r1"), ("TXN#store-001#T-42", "REFUND#r1")),
        (
            MemberRequestRef("mbr_1", "activity", "checkin-1"),
            ("MEMBER#mbr_1", "REQ#activity#checkin-1"),
        ),
        (MemberRequestRef("mbr_1", "grant", "signup"), ("MEMBER#mbr_1", "REQ#grant#signup")),
        (MemberRequestRef("mbr_1", "adjust", "a1"), ("MEMBER#mbr_1", "REQ#adjust#a1")),
    ],
)
def test_given_a_request_when_stored_then_under_the_key_existing_records_have(
    ref: RequestRef, key: tuple[str, str]
) -> None:
    assert request_key(ref) == key


def test_given_a_purchase_then_pending_lots_and_member_codes_name_it_by_its_partition_key() -> None:
    """Pending lots and used member codes already stored hold this id: a refund finds the
    pending points it shrinks by it."""
    assert purchase_pk(PURCHASE) == "TXN#store-001#T-42"


def test_given_a_request_then_its_client_id_is_the_id_the_client_chose() -> None:
    """What an IDEMPOTENCY_CONFLICT names as `id`."""
    assert [
        client_id(ref)
        for ref in (PURCHASE, RefundRef(PURCHASE, "r1"), MemberRequestRef("m", "grant", "g1"))
    ] == ["T-42", "r1", "g1"]
