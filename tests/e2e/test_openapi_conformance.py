"""schemathesis (`schemathesis run`) against `/v1/openapi.json` on a local stack of its own,
as a client generated from the document meets the API: as staff (admin), as a member and
as a signing POS. It tests whatever operations the document holds, so a new route is
covered as soon as it is published.

What must hold for every generated request (checks, and tests/e2e/openapi_client_hooks.py):
- no server error (5xx), and no connection closed without an answer;
- a request the document calls invalid is refused with a 4xx;
- a request the document calls valid is accepted, unless the refusal is one of the
  business rules in ALLOWED_REJECTIONS (openapi_client_hooks.py), each with its reason.

The admin run PUTs random (valid) program configurations and tier rules, so the runs have
a stack of their own: the other e2e tests never see what they leave behind. Its store and
key routes act on a store of their own (ADMIN_STORE): closing it or revoking its keys
never stops the POS run's store and key, and the POS run goes first all the same. The
runs are bounded (MAX_EXAMPLES per operation) and derandomized with a fixed seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from local.stack_process import StackDidNotStart, local_stack
from tests.conftest import token_for
from tests.e2e.clients import Pos
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 10  # per operation, in the fuzzing phase (the other phases are bounded)
SEED = 20261202
STORE = "store-001"  # the POS's store (the local seed's), which the admin run never touches
DEALER = "dealer-demo"  # the local seed's dealer, of both stores
ADMIN_STORE = "store-openapi-admin"  # the one the admin run closes, reopens, issues keys for
RUN_TIMEOUT = 900  # seconds: a bound for a hung run, far above what a run takes


@dataclass
class World:
    base_url: str
    member_id: str
    transaction_id: str
    rules_version: int
    pos_key: dict[str, str]
    admin_key_id: str
    work: Path


def _signed_post(base: str, key: dict[str, str], path: str, payload: dict[str, Any]) -> Any:
    return Pos(base, key, timeout=30).send("POST", path, payload)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A stack of its own with a member, a POS key, a purchase and a tier-rules draft,
    whose ids the runs use for path parameters (so requests reach real resources)."""
    from chalicelib.wiring import reset_services
    from local.stack import stack_environment
    from local.tools import create_store_key

    data_dir = tmp_path_factory.mktemp("openapi-stack")
    with ExitStackOrFail(data_dir) as state, pytest.MonkeyPatch.context() as mp:
        env = stack_environment(state["ddb_port"], state["moto_port"], state["queues"])
        for name, value in env.items():
            mp.setenv(name, value)
        reset_services()
        base = state["api"]
        staff = {"Authorization": f"Bearer {token_for(None, role='admin')}"}
        member = requests.post(
            f"{base}/v1/members",
            headers=staff,
            json={"phone": "+8613912345678", "channel": "web", "name": "Schema"},
            timeout=30,
        )
        assert member.status_code == 201, member.text
        member_id = member.json()["member_id"]
        key = create_store_key(STORE)
        txn_id = f"seed-{uuid.uuid4().hex[:8]}"
        bought = _signed_post(
            base,
            key,
            "/v1/transactions",
            {
                "transaction_id": txn_id,
                "store_id": STORE,
                "member_id": member_id,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "items": [{"sku": "latte", "quantity": 2, "unit_price": 3200}],
                "total": 6400,
            },
        )
        assert bought.status_code == 201, bought.text
        tiers = requests.get(f"{base}/v1/tiers", timeout=30).json()["tiers"]
        for tier in tiers:
            tier.pop("currency")
        rules = requests.post(
            f"{base}/v1/admin/tier-rules", headers=staff, json={"tiers": tiers}, timeout=30
        )
        assert rules.status_code == 201, rules.text
        store = requests.post(
            f"{base}/v1/admin/stores",
            headers=staff,
            json={"store_id": ADMIN_STORE, "dealer_id": DEALER, "name": "OpenAPI admin run"},
            timeout=30,
        )
        assert store.status_code == 201, store.text
        admin_key = requests.post(
            f"{base}/v1/admin/stores/{ADMIN_STORE}/keys", headers=staff, timeout=30
        )
        assert admin_key.status_code == 201, admin_key.text
        yield World(
            base,
            member_id,
            txn_id,
            rules.json()["version"],
            key,
            admin_key.json()["key_id"],
            data_dir,
        )
    reset_services()


class ExitStackOrFail:
    def __init__(self, data_dir: Path) -> None:
        self._cm = local_stack(data_dir)

    def __enter__(self) -> dict[str, Any]:
        try:
            return self._cm.__enter__()
        except StackDidNotStart as exc:
            pytest.fail(str(exc))

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


def run_schemathesis(world: World, role: str, credentials: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {credentials['token']}"} if "token" in credentials else {}
    config = {
        "seed": SEED,
        "workers": 1,
        "continue-on-failure": True,
        "request-timeout": 30,
        "headers": headers,
        "cache": {"enabled": False},  # no replay of earlier runs' crashes, no files left
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "with-security-parameters": False,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            "only_business_rules_refuse_valid_requests": {"enabled": True},
        },
        "parameters": {
            "path.member_id": world.member_id,
            "path.transaction_id": world.transaction_id,
            "path.version": str(world.rules_version),
            # Only admin routes have these: the store and key of ADMIN_STORE.
            "path.store_id": ADMIN_STORE,
            "path.key_id": world.admin_key_id,
        },
    }
    config_path = world.work / f"schemathesis-{role}.toml"
    config_path.write_text(toml(config))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.e2e.openapi_client_hooks",
        "OPENAPI_ROLE": role,
        "OPENAPI_CREDENTIALS": json.dumps(credentials),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config_path),
            "--no-color",
            "run",
            f"{world.base_url}/v1/openapi.json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    # Warnings (operations whose valid requests were all refused, by business rules the
    # check allowed, or 404s) and the summary, shown with `pytest -rP`.
    start = output.find("=== WARNINGS")
    print(output[(start if start >= 0 else output.rfind("=== SUMMARY")) - 40 :])


def toml(config: dict[str, Any]) -> str:
    """The TOML of a config made of tables, strings, numbers and booleans."""
    out: list[str] = []

    def table(path: tuple[str, ...], value: dict[str, Any]) -> None:
        scalars = {k: v for k, v in value.items() if not isinstance(v, dict)}
        if path:
            out.append("[" + ".".join(json.dumps(part) for part in path) + "]")
        out.extend(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in scalars.items())
        for key, sub in value.items():
            if isinstance(sub, dict):
                table((*path, key), sub)

    table((), config)
    return "\n".join(out) + "\n"


# The POS run first (then the member's): the admin run changes program and rules.
def test_given_the_document_when_a_pos_sends_what_it_allows_then_the_api_agrees(world):
    run_schemathesis(world, "pos", {"pos_key": world.pos_key, "store_id": STORE})


def test_given_the_document_when_a_member_sends_what_it_allows_then_the_api_agrees(world):
    run_schemathesis(world, "member", {"token": token_for(world.member_id), "store_id": STORE})


def test_given_the_document_when_staff_send_what_it_allows_then_the_api_agrees(world):
    run_schemathesis(
        world,
        "staff",
        {"token": token_for(None, role="admin"), "store_id": STORE, "dealer_id": DEALER},
    )
