"""Versioned tier rules on DynamoDB Local: dry run counts, apply moves, reruns are no-ops."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain.clock import program_date, utc_now
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.handlers.tier_rules import queue_recalculation, tier_rules_task
from chalicelib.wiring import services
from tests.helpers import sqs_record
from tests.integration.test_ledger_ddb_local import new_member

pytestmark = pytest.mark.integration


def member_with_spend(amount: int) -> str:
    member_id = new_member()
    from tests.integration.test_tiers_ddb_local import _fake_record

    month = program_date(utc_now()).strftime("%Y-%m")
    services().tiers.count_spend(*_fake_record(member_id), member_id, month, amount)
    return member_id


def run_all(version: int, mode: str, monkeypatch) -> list[dict[str, Any]]:
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: queued.extend(tasks))
    queue_recalculation(version, mode)
    for task in list(queued):
        tier_rules_task(SQSRecord(sqs_record(task)))
    return queued


def test_given_a_lower_gold_threshold_then_the_dry_run_counts_and_the_apply_moves_once(
    ddb_local, monkeypatch
):
    svc = services()
    rich = member_with_spend(350_000)  # silver under the defaults (gold needs 500000)
    poor = member_with_spend(10_000)
    cheaper_gold = tuple(
        replace(t, qualify_spend=300_000, retain_spend=250_000) if t.code == "gold" else t
        for t in DEFAULT_TIERS
    )
    version = svc.program.create_rules_version(cheaper_gold)

    run_all(version, "dry_run", monkeypatch)
    dry = svc.program.rules_version(version)
    assert dry["status"] == "dry_run_done"
    assert dry["dry_run"]["up"] >= 1
    assert dry["dry_run"]["scanned"] >= 2
    assert svc.tiers.state(rich).tier_code == "member"  # a dry run moves nobody

    svc.program.save_tiers(cheaper_gold, version)
    tasks = run_all(version, "apply", monkeypatch)
    assert svc.tiers.state(rich).tier_code == "gold"
    assert svc.tiers.state(poor).tier_code == "member"
    applied = svc.program.rules_version(version)
    assert applied["status"] == "applied"
    changed = applied["apply"]["changed"]

    for task in tasks:  # the whole apply delivered again
        tier_rules_task(SQSRecord(sqs_record(task)))
    again = svc.program.rules_version(version)
    assert again["apply"]["changed"] == changed  # counts were added once per segment
    history = svc.tiers.history(rich)
    assert [h["to"] for h in history] == ["gold"]
    svc.program.save_tiers(DEFAULT_TIERS, version + 1000)  # leave the defaults for others
