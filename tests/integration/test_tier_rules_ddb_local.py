"""Versioned tier rules on DynamoDB Local: dry run counts, apply moves, reruns are no-ops."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.domain import tier_rules
from chalicelib.domain.clock import program_date, utc_now
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.handlers.jobs import task_handler
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
    """Start the run as the API does, then deliver every task it queued to the worker."""
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(services().tasks, "send_many", lambda tasks: queued.extend(tasks))
    start = tier_rules.start_dry_run if mode == "dry_run" else tier_rules.start_apply
    start(str(version), services().program, services().tasks)
    for task in list(queued):
        task_handler(SQSRecord(sqs_record(task)))
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

    tasks = run_all(version, "apply", monkeypatch)
    assert svc.program.tiers() == cheaper_gold  # the ladder became current
    assert svc.tiers.state(rich).tier_code == "gold"
    assert svc.tiers.state(poor).tier_code == "member"
    applied = svc.program.rules_version(version)
    assert applied["status"] == "applied"
    changed = applied["apply"]["changed"]

    for task in tasks:  # the whole apply delivered again
        task_handler(SQSRecord(sqs_record(task)))
    again = svc.program.rules_version(version)
    assert again["apply"]["changed"] == changed  # counts were added once per segment
    history = svc.tiers.history(rich)
    assert [h["to"] for h in history] == ["gold"]
    svc.program.save_tiers(DEFAULT_TIERS, version + 1000)  # leave the defaults for others


def test_given_two_applies_that_both_read_a_draft_when_they_write_then_one_wins_and_one_gets_409(
    ddb_local, monkeypatch
):
    """Both requests pass the status check before either writes (a barrier holds each
    after its read): the status change is conditional, so exactly one applies, queues its
    tasks and makes the ladder current; the other gets 409 RULES_STATUS_CHANGED."""
    from chalicelib.dal.program import DynamoProgramRepository
    from chalicelib.errors import Conflict

    svc = services()
    version = svc.program.create_rules_version(DEFAULT_TIERS)
    both_read = threading.Barrier(2, timeout=10)

    class ReadThenWait(DynamoProgramRepository):
        waited = False

        def rules_version(self, number: int) -> dict[str, Any] | None:
            data = super().rules_version(number)
            if not self.waited:  # the status check of each apply: both see "draft"
                self.waited = True
                both_read.wait()
            return data

    queued: list[dict[str, Any]] = []
    tasks = SimpleNamespace(send_many=queued.extend)

    def apply(_: int) -> object:
        try:
            return tier_rules.start_apply(str(version), ReadThenWait(), tasks)
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(apply, range(2), timeout=30))

    wins = [o for o in outcomes if o == version]
    losses = [o for o in outcomes if isinstance(o, Conflict)]
    assert (len(wins), len(losses)) == (1, 1), outcomes
    assert losses[0].code == "RULES_STATUS_CHANGED"
    assert losses[0].details == {"status": "applying"}
    assert len(queued) == tier_rules.SCAN_SEGMENTS  # one apply's tasks, not two
    assert svc.program.rules_version(version)["status"] == "applying"
    svc.program.save_tiers(DEFAULT_TIERS, version + 1000)  # leave the defaults for others


def test_given_a_finished_dry_run_when_it_is_repeated_then_it_finishes_with_fresh_counts_and_late_redeliveries_add_nothing(
    ddb_local, monkeypatch
):
    """A dry run may be repeated (after more members qualify, say): the second run counts
    from zero under its own run number and ends; the first run's tasks delivered again
    late count in neither."""
    svc = services()
    member_with_spend(350_000)
    ladder = tuple(
        replace(t, qualify_spend=300_000, retain_spend=250_000) if t.code == "gold" else t
        for t in DEFAULT_TIERS
    )
    version = svc.program.create_rules_version(ladder)
    first_tasks = run_all(version, "dry_run", monkeypatch)
    first = svc.program.rules_version(version)
    assert first is not None
    assert first["status"] == "dry_run_done"

    member_with_spend(360_000)  # one more member who would move up
    second_tasks = run_all(version, "dry_run", monkeypatch)
    second = svc.program.rules_version(version)
    assert second is not None
    assert second["status"] == "dry_run_done"
    assert {t["run"] for t in first_tasks} == {1}
    assert {t["run"] for t in second_tasks} == {2}
    assert second["dry_run"]["up"] == first["dry_run"]["up"] + 1
    assert second["dry_run"]["scanned"] == first["dry_run"]["scanned"] + 1

    for task in first_tasks + second_tasks:  # both runs delivered again
        task_handler(SQSRecord(sqs_record(task)))
    assert svc.program.rules_version(version) == second
