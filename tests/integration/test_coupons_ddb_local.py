"""Coupons on DynamoDB Local, where conditions, transactions and the coupon index are
real: the same coupon at two tills at once (one wins, the other 409 COUPON_USED), the
same issue delivered twice at once (one coupon), a member's listing by the index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.dal.coupon_templates import DynamoTemplateRepository
from chalicelib.dal.coupons import DynamoCouponRepository
from chalicelib.domain import coupon_issue
from chalicelib.domain.coupon_templates import create_template, terms_of
from chalicelib.domain.coupons import CouponTemplate, normalise_code
from tests.helpers import at_once, codes, register_member

pytestmark = pytest.mark.integration


def new_template(**fields: object) -> str:
    template_id = f"tpl-{uuid.uuid4().hex[:8]}"
    create_template(
        CouponTemplate(
            template_id=template_id,
            name="¥10 off",
            terms=terms_of("amount_off", 1000, None, 10000, [], [], False),
            valid_days=30,
            **fields,  # type: ignore[arg-type]
        ),
        DynamoTemplateRepository(),
        datetime.now(UTC),
    )
    return template_id


def test_given_one_coupon_when_two_tills_redeem_it_at_once_then_exactly_one_wins(ddb_local):
    store = DynamoCouponRepository()
    member_id = register_member()
    for round_ in range(5):
        issued = coupon_issue.staff_issue(
            store, member_id, f"i-{round_}", new_template(), datetime.now(UTC)
        )
        attempts = [
            lambda txn=txn, s=s, code=issued["code"]: coupon_issue.redeem(
                store, coupon_issue.Redemption(code, s, txn), datetime.now(UTC)
            )
            for txn, s in (("t-a", "store-001"), ("t-b", "store-002"))
        ]
        outcomes = at_once(attempts)
        assert sorted(codes(outcomes)) == ["COUPON_USED", "ok"]
        winner = next(o for o in outcomes if isinstance(o, dict))
        coupon = store.coupon(normalise_code(issued["code"]) or "")
        assert coupon is not None
        assert coupon.status == "used"
        assert coupon.used_by == f"TXN#{winner['store_id']}#{winner['transaction_id']}"


def test_given_the_same_issue_delivered_twice_at_once_then_one_coupon_and_both_answer_it(
    ddb_local,
):
    store = DynamoCouponRepository()
    member_id = register_member()
    template_id = new_template()
    now = datetime.now(UTC)
    outcomes = at_once(
        [
            lambda: coupon_issue.rule_issue(store, member_id, "welcome", template_id, now)
            for _ in range(4)
        ]
    )
    assert codes(outcomes) == ["ok"] * 4
    assert len({o["code"] for o in outcomes}) == 1
    assert len(store.member_coupons(member_id, 10, None)[0]) == 1


def test_given_coupons_issued_over_time_when_listed_by_the_index_then_newest_first_and_paged(
    ddb_local,
):
    store = DynamoCouponRepository()
    member_id = register_member()
    template_id = new_template()
    start = datetime.now(UTC) - timedelta(days=3)
    issued = [
        coupon_issue.staff_issue(
            store, member_id, f"i-{n}", template_id, start + timedelta(hours=n)
        )
        for n in range(5)
    ]
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page, cursor = coupon_issue.member_coupons(
            store, member_id, None, 2, cursor, datetime.now(UTC)
        )
        seen += [c["code"] for c in page]
        if cursor is None:
            break
    assert seen == [c["code"] for c in reversed(issued)]
    other = register_member()
    assert coupon_issue.member_coupons(store, other, None, 10, None, datetime.now(UTC)) == (
        [],
        None,
    )
