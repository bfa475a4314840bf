"""`make tick JOB=points_expiry` against the running stack: the schedule queues tasks,
the pipeline delivers them to the worker, exactly the due lots expire; reminders go once."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
import requests

from chalicelib.domain.clock import PROGRAM_TZ
from chalicelib.domain.messaging import in_quiet_hours
from tests.conftest import auth, token_for
from tests.e2e.clients import SIGNUP_BONUS, balance, new_member, tick, wait_for_balance
from tests.helpers import credit, wait_for

pytestmark = pytest.mark.e2e


def test_given_points_that_expired_yesterday_when_the_job_ticks_then_exactly_they_expire(
    stack, stack_env
):
    api = stack.base_url
    member_id = new_member(api)
    assert wait_for_balance(api, member_id, SIGNUP_BONUS)  # it stays: it expires in a year
    today = datetime.now(PROGRAM_TZ).date()
    yesterday = today - timedelta(days=1)
    # a lot earned in the month 12 months before yesterday's month expires at its end;
    # choose the run date as that month end, one day before the tick's program day.
    run_day = date(yesterday.year, yesterday.month, 1) - timedelta(days=1)  # a month end
    earned = datetime(run_day.year - 1, run_day.month, 15, 4, tzinfo=UTC)
    credit(member_id, 400, earned)
    credit(member_id, 100, datetime.now(UTC))  # expires in a year: must stay
    fired = datetime.combine(
        run_day + timedelta(days=1), datetime.min.time(), PROGRAM_TZ
    ) + timedelta(minutes=5)

    result = tick(stack, "points_expiry", fired.astimezone(UTC))
    assert run_day.isoformat() in result["dates"]

    assert wait_for(lambda: balance(api, member_id) == SIGNUP_BONUS + 100), stack.log()[-3000:]
    staff = auth(token_for(None, role="ops"))
    assert wait_for(
        lambda: (
            requests.get(
                f"{api}/v1/admin/jobs/expiry/runs/{run_day.isoformat()}", headers=staff, timeout=10
            )
            .json()
            .get("finished_at")
            is not None
        )
    )
    run = requests.get(
        f"{api}/v1/admin/jobs/expiry/runs/{run_day.isoformat()}", headers=staff, timeout=10
    ).json()
    assert run["members"] >= 1
    assert run["points"] >= 400
    assert run["tasks_done"] == run["tasks"]
    # the same tick again changes nothing
    assert tick(stack, "points_expiry", fired.astimezone(UTC))["tasks"] == 0
    time.sleep(1)
    assert balance(api, member_id) == SIGNUP_BONUS + 100


def test_given_points_expiring_within_30_days_then_one_reminder_is_sent(stack, stack_env):
    api = stack.base_url
    member_id = new_member(api, marketing_consent=True)
    today = datetime.now(PROGRAM_TZ).date()
    month_end = date(today.year + (today.month == 12), today.month % 12 + 1, 1) - timedelta(days=1)
    credit(member_id, 250, datetime(month_end.year - 1, month_end.month, 10, 4, tzinfo=UTC))
    first = tick(stack, "expiry_reminders", datetime.now(UTC))
    second = tick(stack, "expiry_reminders", datetime.now(UTC))
    assert first["queued"] >= 1
    if in_quiet_hours(datetime.now(UTC)):
        pytest.skip("quiet hours in Asia/Shanghai: reminders wait until 08:00")

    def reminded() -> bool:
        return _reminded_for(member_id) == month_end.isoformat()

    assert wait_for(reminded)
    third = tick(stack, "expiry_reminders", datetime.now(UTC))
    assert third["queued"] <= max(second["queued"] - 1, 0)  # this member is not queued again


def _reminded_for(member_id: str) -> str | None:
    from chalicelib.dal.members import MEMBER_SK, member_pk
    from chalicelib.dal.tables import MemberItem

    return MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=True).expiry_reminded
