"""Audit entries through the points commit, on the fake and on DynamoDB Local (the
`ledger` fixture): a staff adjustment, cancel or fulfilment writes its entry in the
commit; a replay writes none; a commit whose condition fails writes none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.domain import redemptions as mall
from chalicelib.domain.audit import Actor, entry
from chalicelib.domain.points import record_adjustment
from chalicelib.domain.records import Commit, VersionConflict
from tests.ledgers import Ledger
from tests.unit.test_points_domain import NOW, adjustment, context
from tests.unit.test_redemptions_domain import member, redeem_cmd, reward, stocked

OPS = Actor("ops-alice", "ops")


def test_given_staff_when_adjusting_then_one_entry_in_the_commit_and_a_replay_adds_none(
    ledger: Ledger,
) -> None:
    m = ledger.add_member()
    cmd = replace(adjustment(m, 150, "adj-7"), by=OPS)
    first = record_adjustment(cmd, context(ledger))
    assert record_adjustment(cmd, context(ledger)) == first
    (made,) = ledger.audit_log()
    assert (made.action, made.actor, made.target) == ("points.adjust", OPS, f"member:{m}")
    assert made.request_id == "adj-7"
    assert made.before == {"balance": 0}
    assert made.after == {"balance": 150, "points": 150}


def test_given_no_actor_when_adjusting_then_no_entry(ledger: Ledger) -> None:
    m = ledger.add_member()
    record_adjustment(adjustment(m, 10), context(ledger))
    assert ledger.audit_log() == []


def test_given_a_commit_whose_condition_fails_then_its_entry_is_not_written(
    ledger: Ledger,
) -> None:
    m = ledger.add_member()
    account = ledger.account(m)
    audit = entry(OPS, "points.adjust", f"member:{m}", NOW, request_id="x")
    stale = Commit(m, account.version + 5, account.wallet, [], [], audit=audit)
    with pytest.raises(VersionConflict):
        ledger.commit(stale)
    assert ledger.audit_log() == []


def test_given_staff_when_cancelling_or_fulfilling_then_one_entry_each_and_repeats_add_none(
    ledger: Ledger,
) -> None:
    shop = stocked(ledger, reward(), reward("rw-mug"))
    m = member(ledger)
    mall.redeem(redeem_cmd(m), context(ledger), shop)
    mall.redeem(redeem_cmd(m, "r2", reward_id="rw-mug"), context(ledger), shop)
    for _ in range(2):
        mall.cancel(m, "r1", "ops-alice", context(ledger), by_staff=True, by=OPS)
        mall.fulfil(m, "r2", "shipped", "SF99", context(ledger), by=OPS)
    actions = [(e.action, e.request_id) for e in ledger.audit_log()]
    assert sorted(actions) == [("redemption.cancel", "r1"), ("redemption.fulfil", "r2")]
    fulfil = next(e for e in ledger.audit_log() if e.action == "redemption.fulfil")
    assert fulfil.after == {"fulfilment": "shipped"}  # not the tracking number
