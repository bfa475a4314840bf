"""Members' sign-in accounts at the identity provider (chalicelib/domain/privacy.py
SignInAccounts): closed when a member is erased.

In AWS a member signs in with a Cognito user of the stage's user pool; the user's `sub`
is the member's `cognito_sub` external id, and the user holds the phone (the pool's
username attribute). The local stage signs its own tokens: it has no accounts to close.
"""

from __future__ import annotations

import threading
from typing import Any

from chalicelib.errors import Unavailable


class CognitoSignIns:
    """`AdminDeleteUser` on the stage's user pool (the API function's role allows it on
    that pool only: infra/iam.py). Admin APIs take the user's `sub` as its username when
    the username is not an alias (the pool signs in by phone as a username attribute, so
    each user's username is a generated id: its `sub`). The client is made on first use,
    so a cold start pays nothing for it."""

    def __init__(self, user_pool_id: str, region: str) -> None:
        self._pool = user_pool_id
        self._region = region
        self._client: Any = None
        self._lock = threading.Lock()

    def _cognito(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    self._client = boto3.client("cognito-idp", region_name=self._region)
        return self._client

    def close(self, subject: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._cognito()
        try:
            client.admin_delete_user(UserPoolId=self._pool, Username=subject)
        except client.exceptions.UserNotFoundException:
            return  # already gone (an earlier attempt, or deleted by hand): closed
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(
                "the member's sign-in account could not be closed; nothing was erased, retry"
            ) from exc


class NoSignIns:
    """A stage without an identity provider (local, tests): tokens are signed by the stage
    itself, so no account outlives the member."""

    def close(self, subject: str) -> None:
        return None
