"""Members' sign-in accounts closed at the identity provider (chalicelib/dal/sign_ins.py):
a Cognito user pool shaped like the template's (phone as the username attribute, so
each user's username is its `sub`), on moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.dal.sign_ins import CognitoSignIns, NoSignIns
from chalicelib.errors import Unavailable
from tests.conftest import unique_phone

REGION = "ap-east-1"  # Cognito user pools: not in the China regions (README, Operations)


@pytest.fixture
def cognito(aws_env) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("cognito-idp", region_name=REGION)


def user_pool(cognito: Any) -> str:
    # as infra/gen_template.py declares UserPool
    pool = cognito.create_user_pool(
        PoolName="members",
        UsernameAttributes=["phone_number"],
        AutoVerifiedAttributes=["phone_number"],
    )
    return str(pool["UserPool"]["Id"])


def sign_up(cognito: Any, pool_id: str, phone: str) -> str:
    """A member's sign-in: the user the app signs up, its `sub`."""
    user = cognito.admin_create_user(UserPoolId=pool_id, Username=phone)["User"]
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


def users(cognito: Any, pool_id: str) -> list[str]:
    return [u["Username"] for u in cognito.list_users(UserPoolId=pool_id)["Users"]]


def test_given_a_member_s_user_when_closed_by_its_sub_then_deleted_and_the_others_kept(cognito):
    pool_id = user_pool(cognito)
    phone = unique_phone()
    sub = sign_up(cognito, pool_id, phone)
    other = sign_up(cognito, pool_id, unique_phone())

    CognitoSignIns(pool_id, REGION).close(sub)

    assert users(cognito, pool_id) == [other]
    with pytest.raises(cognito.exceptions.UserNotFoundException):
        cognito.admin_get_user(UserPoolId=pool_id, Username=phone)


def test_given_a_user_already_closed_when_closed_again_then_done(cognito):
    """A retried erase closes again: an account already gone counts as closed."""
    pool_id = user_pool(cognito)
    sub = sign_up(cognito, pool_id, unique_phone())
    sign_ins = CognitoSignIns(pool_id, REGION)
    sign_ins.close(sub)
    sign_ins.close(sub)
    CognitoSignIns(pool_id, REGION).close("00000000-0000-4000-8000-000000000000")
    assert users(cognito, pool_id) == []


def test_given_the_pool_unreachable_when_closing_then_unavailable(cognito):
    """Any other failure (here: no such pool) is a 503 to retry, never taken as closed."""
    with pytest.raises(Unavailable):
        CognitoSignIns("ap-east-1_nosuchpool", REGION).close("sub-1")


def test_given_a_new_instance_then_no_client_is_made_before_the_first_close(cognito):
    sign_ins = CognitoSignIns("ap-east-1_pool", REGION)
    assert sign_ins._client is None


def test_given_a_stage_without_a_user_pool_then_closing_does_nothing():
    NoSignIns().close("sub-1")
