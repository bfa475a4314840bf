"""`make tick JOB=tier_review` against the running stack: the schedule queues one task
per date and shard, the pipeline delivers them to the jobs worker, and the member whose
tier year ends today is reviewed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from chalicelib.domain.clock import PROGRAM_TZ
from tests.conftest import auth, token_for
from tests.e2e.clients import new_member, tick
from tests.helpers import make_gold, wait_for

pytestmark = pytest.mark.e2e


def test_given_a_gold_member_due_today_without_spend_when_the_review_ticks_then_silver_once(
    stack, stack_env
):
    api = stack.base_url
    member_id = new_member(api)
    today = datetime.now(PROGRAM_TZ).date()
    # gold for a year that ends today, with no spend in it: the review moves them down
    make_gold(member_id, today - timedelta(days=365), today)

    result = tick(stack, "tier_review", datetime.now(UTC))
    assert today.isoformat() in result["dates"]
    assert result["tasks"] == 16 * len(result["dates"])

    def tier() -> dict:
        return requests.get(
            f"{api}/v1/members/{member_id}/tier", headers=auth(token_for(member_id)), timeout=10
        ).json()

    assert wait_for(lambda: tier()["tier"]["code"] == "silver", 60), stack.log()[-3000:]
    staff = auth(token_for(None, role="ops"))

    def run() -> dict:
        return requests.get(
            f"{api}/v1/admin/jobs/tier_review/runs/{today.isoformat()}", headers=staff, timeout=10
        ).json()

    assert wait_for(lambda: run().get("finished_at") is not None, 60)
    assert run()["tasks_done"] == run()["tasks"] == 16
    assert run()["members"] >= 1
    assert [h["reason"] for h in tier()["history"]] == ["downgraded", "upgrade"]
    # the same tick again queues nothing: the day is scheduled
    assert tick(stack, "tier_review", datetime.now(UTC))["tasks"] == 0
