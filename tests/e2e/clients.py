"""How the e2e tests talk to the running stack over HTTP, as its clients do: a till
(signed POS requests), ops staff registering members, a member reading its points, and
the scheduler's tick (`make tick`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests

from tests.conftest import auth, token_for, unique_phone
from tests.e2e.conftest import ROOT
from tests.helpers import SignedPos, wait_for

SIGNUP_BONUS = 100  # the demo program's sign-up bonus, credited through the members stream


class Pos(SignedPos):
    """A till over HTTP."""

    def __init__(
        self,
        api: str,
        key: Mapping[str, str],
        store_id: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(key, store_id)
        self.api, self.timeout = api, timeout

    def send(
        self, method: str, path: str, payload: Any = None, query: str = ""
    ) -> requests.Response:
        body, headers = self.signed(method, path, payload)
        return requests.request(
            method, f"{self.api}{path}{query}", headers=headers, data=body, timeout=self.timeout
        )


def new_member(api: str, channel: str = "app", **fields: Any) -> str:
    """A member that ops staff registered; its id."""
    response = requests.post(
        f"{api}/v1/members",
        headers=auth(token_for(None, role="ops")),
        data=json.dumps({"phone": unique_phone(), "channel": channel, **fields}),
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["member_id"])


def balance(api: str, member_id: str) -> int:
    """The member's points balance, as the member reads it."""
    response = requests.get(
        f"{api}/v1/members/{member_id}/points", headers=auth(token_for(member_id)), timeout=10
    )
    return int(response.json()["balance"])


def wait_for_balance(api: str, member_id: str, expected: int, seconds: float = 20.0) -> bool:
    return wait_for(lambda: balance(api, member_id) == expected, seconds)


def tick(stack: Any, job: str, at: datetime) -> dict[str, Any]:
    """`make tick JOB=job` at `at` against the stack; the schedule's answer."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.tools",
            "tick",
            job,
            "--at",
            at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        cwd=ROOT,
        env={**stack.env(), "LOYALTY_STACK_STATE": str(stack.state_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
