"""Member codes (会员码) on DynamoDB Local: issuing costs one write, a purchase consumes
its code inside its own transaction (so two tills with one code spend once), expired,
used and other members' codes are refused, and a replay still gets its first answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.dal.member_codes import CODE_SK, code_pk
from chalicelib.dal.tables import MemberCodeItem
from chalicelib.domain import member_codes
from chalicelib.domain import points as domain
from chalicelib.domain.member_codes import MemberCode
from chalicelib.errors import DomainError
from chalicelib.wiring import reset_services, services
from tests.conftest import auth, token_for
from tests.helpers import Pos, at_once, codes, credit
from tests.integration.test_ledger_ddb_local import (
    check_invariants,
    context,
    ledger_sum,
    new_member,
    purchase,
)

pytestmark = pytest.mark.integration


def funded_member(points: int = 1_000) -> str:
    member_id = new_member()
    credit(member_id, points, datetime.now(UTC))
    return member_id


def new_code(member_id: str) -> str:
    return member_codes.issue(member_id, services().codes, datetime.now(UTC)).code


def at_till(member_id: str | None, code: str | None, pay: int, txn_id: str | None = None):
    command = purchase(member_id or "", txn_id or f"t-{uuid.uuid4().hex[:10]}", [10_000], pay)
    return replace(command, member_id=member_id, member_code=code, member_code_required=True)


def code_of(exc_info: Any) -> str:
    return str(exc_info.value.code)


def test_given_a_member_when_a_code_is_issued_then_it_costs_one_write_and_carries_its_ttl(
    ddb_local,
):
    from bench.ddbunits import CapacityMeter

    member_id = new_member()
    meter = CapacityMeter().install()
    try:
        reset_services()  # clients created from here on report their capacity
        services().codes.get("0" * 18)  # the client exists before recording starts
        with meter.recording() as calls:
            code = member_codes.issue(member_id, services().codes, datetime.now(UTC))
    finally:
        meter.uninstall()
        reset_services()
    assert [(c.operation, c.label) for c in calls] == [("PutItem", "PutItem runtime/MCODE/MCODE")]
    assert calls[0].reported_units == 1.0  # one write unit: the item is ~150 bytes
    item = MemberCodeItem.get(code_pk(code.code), CODE_SK, consistent_read=True)
    assert item.member_id == member_id
    # the TTL attribute of the Runtime table, equal to the end of validity
    assert item.expires_at == int(code.expires_at.timestamp())
    assert code.code not in json.dumps(item.attribute_values, default=str)


def test_given_one_code_when_eight_tills_pay_with_it_at_once_then_exactly_one_spends(ddb_local):
    member_id = funded_member(8_000)
    code = new_code(member_id)
    bills = [at_till(member_id, code, 1_000, f"till-{n}-{uuid.uuid4().hex[:6]}") for n in range(8)]
    outcomes = codes(at_once([lambda b=b: domain.record_purchase(b, context()) for b in bills]))

    assert outcomes.count("ok") == 1, outcomes
    assert outcomes.count("MEMBER_CODE_INVALID") == 7, outcomes
    account = check_invariants(member_id)
    # 1000 points paid once; that purchase earned 90 on its 9000 fen paid in cash
    assert account.wallet.balance == 8_000 - 1_000 + 90
    assert ledger_sum(member_id) == (account.wallet.balance, 3)


def test_given_a_consumed_code_when_the_purchase_is_replayed_then_the_first_answer(ddb_local):
    member_id = funded_member()
    code = new_code(member_id)
    command = at_till(member_id, code, 1_000)
    first = domain.record_purchase(command, context())
    assert first[1]["points_spent"] == 1_000
    assert domain.record_purchase(command, context()) == first
    # even planned again (as after a stale read of the request record): its own code is
    # used now, and the answer is still the first one
    account = services().ledger.load(member_id)
    assert account is not None
    with pytest.raises(DomainError) as excinfo:
        domain.record_purchase(replace(command, transaction_id="other"), context())
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    assert check_invariants(member_id).version == account.version


def test_given_a_commit_that_finds_its_code_used_then_member_code_invalid_not_contended(
    ddb_local,
):
    """The code is taken between the plan's read and the commit: the transaction is
    cancelled by the code's condition, which re-planning cannot cure."""
    member_id = funded_member(5_000)
    code = new_code(member_id)
    ledger = services().ledger
    unused = ledger.member_code(code)

    class TillThatReadEarly:
        def __getattr__(self, name: str) -> Any:
            return getattr(ledger, name)

        def member_code(self, value: str) -> MemberCode | None:
            return unused

    domain.record_purchase(at_till(member_id, code, 1_000), context())
    late = replace(context(), repo=TillThatReadEarly())
    with pytest.raises(DomainError) as excinfo:
        domain.record_purchase(at_till(member_id, code, 1_000), late)
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    assert ledger_sum(member_id)[1] == 3  # seed, one redeem, one earn


def test_given_an_expired_code_not_yet_removed_by_ttl_then_member_code_invalid(ddb_local):
    member_id = funded_member()
    code = "9" * 18
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    services().codes.put_new(MemberCode(code, member_id, expired))
    with pytest.raises(DomainError) as excinfo:
        domain.record_purchase(at_till(member_id, code, 1_000), context())
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    with pytest.raises(DomainError) as excinfo:
        member_codes.member_of(code, services().codes, datetime.now(UTC))
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    MemberCodeItem(pk=code_pk(code), sk=CODE_SK).delete()


def test_given_an_expired_code_when_the_plan_read_it_valid_then_the_commit_condition_refuses_it(
    ddb_local,
):
    member_id = funded_member()
    code = new_code(member_id)
    after_expiry = replace(context(), now=datetime.now(UTC) + timedelta(seconds=121))
    ledger = services().ledger

    class ClockOfTheRead:
        """The plan believed the code valid; the commit happens after its expiry."""

        def __getattr__(self, name: str) -> Any:
            return getattr(ledger, name)

        def member_code(self, value: str) -> MemberCode | None:
            found = ledger.member_code(value)
            assert found is not None
            return replace(found, expires_at=found.expires_at + timedelta(hours=1))

    with pytest.raises(DomainError) as excinfo:
        domain.record_purchase(
            at_till(member_id, code, 1_000), replace(after_expiry, repo=ClockOfTheRead())
        )
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    assert check_invariants(member_id).wallet.balance == 1_000


def test_given_another_members_code_then_member_code_invalid_and_the_code_unused(ddb_local):
    victim = funded_member()
    other = new_member()
    code = new_code(other)
    with pytest.raises(DomainError) as excinfo:
        domain.record_purchase(at_till(victim, code, 1_000), context())
    assert code_of(excinfo) == "MEMBER_CODE_INVALID"
    assert check_invariants(victim).wallet.balance == 1_000
    found = services().codes.get(code)
    assert found is not None
    assert found.used_by is None


def test_given_only_a_code_then_it_identifies_the_member_and_is_consumed(ddb_local):
    member_id = funded_member()
    code = new_code(member_id)
    status, body = domain.record_purchase(at_till(None, code, 1_000), context())
    assert (status, body["member_id"]) == (201, member_id)
    found = services().codes.get(code)
    assert found is not None
    assert found.used_by is not None
    assert found.used_by.endswith(body["transaction_id"])


def test_given_a_code_when_a_pos_looks_it_up_then_the_masked_member_over_the_app(
    ddb_local, app_client
):
    from local.tools import create_store_key

    staff = token_for(None, "ops")
    registered = app_client.http.post(
        "/v1/members",
        headers=auth(staff),
        body=json.dumps(
            {
                "phone": "+8613" + uuid.uuid4().int.__str__()[:9],
                "channel": "app",
                "name": "韩梅梅",
                "birthday": "1991-02-03",
                "email": "hmm@example.com",
                "tags": ["tea"],
            }
        ),
    )
    assert registered.status_code == 201, registered.json_body
    member_id = registered.json_body["member_id"]
    issued = app_client.http.post(
        f"/v1/members/{member_id}/member-code", headers=auth(token_for(member_id))
    )
    assert issued.status_code == 201, issued.json_body
    found = Pos(app_client, create_store_key("store-001")).send(
        "GET", f"/v1/members/lookup?member_code={issued.json_body['code']}"
    )
    assert found.status_code == 200, found.json_body
    view = found.json_body
    assert view["member_id"] == member_id
    assert view["masked"] is True
    assert view["profile"]["name"] == "韩*"
    assert view["profile"]["birthday"] is None
    assert view["profile"]["email"] is None
    assert view["profile"]["tags"] == []
    assert view["external_ids"] == {}
    # a look-up does not consume the code
    code = services().codes.get(issued.json_body["code"])
    assert code is not None
    assert code.used_by is None


def test_given_a_purchase_with_a_code_then_one_strong_read_and_the_code_in_the_same_transaction(
    ddb_local,
):
    from bench.ddbunits import CapacityMeter

    member_id = funded_member()
    code = new_code(member_id)
    meter = CapacityMeter().install()
    try:
        reset_services()
        services().codes.get("0" * 18)
        with meter.recording() as calls:
            domain.record_purchase(at_till(member_id, code, 1_000), context())
    finally:
        meter.uninstall()
        reset_services()
    code_reads = [c for c in calls if c.label == "GetItem runtime/MCODE/MCODE strong"]
    assert [c.reported_units for c in code_reads] == [1.0]
    [commit] = [c for c in calls if c.operation == "TransactWriteItems"]
    assert "Update runtime/MCODE/MCODE" in commit.label
    assert "Update members/MEMBER/MEMBER" in commit.label
