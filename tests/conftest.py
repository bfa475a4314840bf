"""Shared fixtures.

- `aws_env`      : the local stage's settings with fake credentials (no network).
- `moto_tables`  : the template's tables in moto (unit tests).
- `ddb_local`    : one DynamoDB Local for the session (integration tests), tables from
                   the template, settings pointing at it.
- `ledger`       : the points ledger on the in-memory fake, then on the DynamoDB
                   repository on DynamoDB Local (marked integration), for the domain
                   suites: tests/ledgers.py.
- `app_client`   : chalice.test.Client over the app with the current settings.
- `staff_token`, `store_key`, `token_for(...)` : credentials as clients get them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from local.infra import create_tables, stage_environment
from local.stack import ENDPOINT_VARIABLES, LOCAL_CREDENTIALS


def reset_app_state() -> None:
    from chalicelib.wiring import reset_services

    reset_services()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = stage_environment("local")
    env.update(LOCAL_CREDENTIALS)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_app_state()
    yield env
    reset_app_state()


@pytest.fixture
def moto_tables(aws_env: dict[str, str]) -> Iterator[dict[str, str]]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name=aws_env["AWS_REGION"])
        tables = create_tables(client, aws_env)
        reset_app_state()
        yield tables


@pytest.fixture
def seeded(moto_tables: dict[str, str]) -> dict[str, str]:
    from local.seed import seed

    seed()
    return moto_tables


@pytest.fixture(scope="session")
def ddb_local_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from local import ddb

    port = ddb.free_port()
    log = tmp_path_factory.mktemp("ddb") / "dynamodb.log"
    proc = ddb.start(port, None, log)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ddb.stop(proc)


@pytest.fixture
def ddb_local(
    ddb_local_endpoint: str, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings on DynamoDB Local. Tables are created once per session and shared; tests
    use fresh ids (phones, members) so they never see each other's data."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb_local_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", ddb_local_endpoint)
    client = boto3.client("dynamodb", region_name=aws_env["AWS_REGION"])
    tables = create_tables(client, aws_env)
    reset_app_state()
    from local.seed import seed

    seed()
    return tables


@pytest.fixture(scope="session")
def ledger_suite_tables(ddb_local_endpoint: str) -> tuple[dict[str, str], Any]:
    """Tables of the ledger suite's own on the session's DynamoDB Local (environment
    variable -> name) and a client for them. Emptied before each of its tests (the fake
    starts empty too), they never hold what the other integration tests share (a lot in
    the expiry index would join their expiry runs)."""
    import boto3

    env = {**stage_environment("local"), **LOCAL_CREDENTIALS}
    names = {
        name: f"{value}-ledger-suite" for name, value in env.items() if name.endswith("_TABLE")
    }
    client = boto3.client(
        "dynamodb",
        endpoint_url=ddb_local_endpoint,
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    create_tables(client, {**env, **names})
    return names, client


def _empty_tables(client: Any, names: list[str]) -> None:
    for name in names:
        keys = [
            {"DeleteRequest": {"Key": item}}
            for page in client.get_paginator("scan").paginate(
                TableName=name, ProjectionExpression="pk, sk"
            )
            for item in page["Items"]
        ]
        for start in range(0, len(keys), 25):  # BatchWriteItem takes 25 at most
            batch = {name: keys[start : start + 25]}
            while batch:  # what it leaves unprocessed is sent again
                batch = client.batch_write_item(RequestItems=batch)["UnprocessedItems"]


@pytest.fixture(params=["fake", pytest.param("dynamodb", marks=pytest.mark.integration)])
def ledger(request: pytest.FixtureRequest) -> Any:
    """The points ledger a domain test runs on, once per store: the in-memory fake, and
    the service's DynamoDB repository on DynamoDB Local, on empty tables."""
    from tests.ledgers import DynamoStore, InMemoryLedger, Ledger

    if request.param == "fake":
        return Ledger(InMemoryLedger(), "fake")
    names, client = request.getfixturevalue("ledger_suite_tables")
    request.getfixturevalue("aws_env")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("ddb_local_endpoint"))
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    reset_app_state()
    # the Program table too: rewards' stock shards are seeded there
    _empty_tables(client, [names["MEMBERS_TABLE"], names["RUNTIME_TABLE"], names["PROGRAM_TABLE"]])
    return Ledger(DynamoStore(), "dynamodb")


@pytest.fixture
def app_client() -> Iterator[Any]:
    from chalice.test import Client

    import app as app_module

    with Client(app_module.app, stage_name="local") as client:
        yield client


def unique_phone() -> str:
    """A valid, random mainland mobile number (E.164)."""
    return "+86139" + "".join(secrets.choice("0123456789") for _ in range(8))


@pytest.fixture
def staff_token() -> str:
    from local.tools import member_or_staff_token

    return member_or_staff_token("ops", None)


def token_for(member_id: str | None, role: str = "member", phone: str | None = None) -> str:
    """A member's token (its sign-in is linked in the current tables first if it has
    none), an app user's before sign-up (`member_id` None; `phone` is then the verified
    phone it may register), or a staff token for `role`."""
    from local.tools import member_or_staff_token

    return member_or_staff_token(role, member_id, phone=phone)


@pytest.fixture
def store_key() -> dict[str, str]:
    from local.tools import create_store_key

    return create_store_key("store-001")


def auth(token: str) -> dict[str, str]:
    from local.tools import bearer

    return bearer(token)


def env_snapshot() -> dict[str, str]:
    return dict(os.environ)


@pytest.fixture(autouse=True)
def iam_checked() -> Iterator[None]:
    """Every AWS call a Lambda function's code makes in a test must be allowed by that
    function's role in the merge template (see tests/iam_check.py)."""
    from tests.iam_check import denied, recording

    with recording() as recorder:
        yield
    problems = denied(recorder.requests)
    if problems:
        pytest.fail(
            "AWS calls not allowed by the function's role (infra/iam.py):\n"
            + "\n".join(p.describe() for p in problems),
            pytrace=False,
        )
