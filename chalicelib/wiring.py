"""Composition root: builds the repositories and adapters once per container, on first
use. Everything heavy (pynamodb, botocore, boto3) is imported here, not at app import."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from chalicelib.auth import CachedSignInLinks, TokenVerifier
from chalicelib.config import Settings, SettingsError, get_settings, reset_settings
from chalicelib.domain.limits import Limiter
from chalicelib.domain.members import Identity, IdentityHasher

if TYPE_CHECKING:
    from chalicelib.dal.jobs import DynamoJobRepository
    from chalicelib.dal.ledger import DynamoLedgerRepository
    from chalicelib.dal.member_codes import DynamoMemberCodeRepository
    from chalicelib.dal.members import DynamoMemberRepository
    from chalicelib.dal.outbound import EventPublisher, MessageQueue, TaskQueue
    from chalicelib.dal.program import DynamoGuardRepository, DynamoProgramRepository
    from chalicelib.dal.rewards import DynamoRewardRepository
    from chalicelib.dal.tiers import DynamoTierRepository
    from chalicelib.domain.points import Context
    from chalicelib.domain.privacy import SignInAccounts


@dataclass(frozen=True)
class Services:
    settings: Settings
    members: DynamoMemberRepository
    ledger: DynamoLedgerRepository
    program: DynamoProgramRepository
    guards: DynamoGuardRepository
    hasher: IdentityHasher
    verifier: TokenVerifier
    events: EventPublisher
    messages: MessageQueue
    tasks: TaskQueue
    jobs: DynamoJobRepository
    tiers: DynamoTierRepository
    codes: DynamoMemberCodeRepository
    rewards: DynamoRewardRepository
    limiter: Limiter


class UnkeyedHasher(IdentityHasher):
    """A function without the hash key (every one but the API): hashing an identity
    there is a deployment mistake, never a hash with some other key."""

    def __init__(self) -> None:
        super().__init__("")

    def identity(self, kind: str, value: str) -> Identity:
        raise SettingsError(
            "PII_HASH_KEY_SECRET_ID is not given to this function (infra/iam.py SECRETS)"
        )


# Tests (tests/iam_check.py) watch secret use: a cached secret hides which function read it.
secret_use_hooks: list[Callable[[str], None]] = []


@lru_cache(maxsize=8)
def secret_value(secret_id: str, region: str) -> str:
    """A Secrets Manager secret, read once per container."""
    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    return str(client.get_secret_value(SecretId=secret_id)["SecretString"])


def _used(setting: str) -> None:
    for hook in list(secret_use_hooks):
        hook(setting)


class SecretHasher(IdentityHasher):
    """The hash key read from Secrets Manager on first use (one GetSecretValue per
    container), so it is never a plaintext environment variable of a deployed stage."""

    def __init__(self, secret_id: str, region: str) -> None:
        super().__init__("")
        self._secret_id = secret_id
        self._region = region
        self._loaded = False
        self._lock = threading.Lock()

    def identity(self, kind: str, value: str) -> Identity:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._secret = secret_value(self._secret_id, self._region).encode()
                    self._loaded = True
        return super().identity(kind, value)


def payment_notification_secret() -> str | None:
    """The payment provider's signing secret: from Secrets Manager in AWS
    (`PAYMENT_NOTIFICATION_SECRET_ID`, read once per container), from the local stage's
    configuration locally; None where the function is given neither."""
    _used("PAYMENT_NOTIFICATION_SECRET_ID")
    settings = get_settings()
    if settings.payment_notification_secret_id:
        return secret_value(settings.payment_notification_secret_id, settings.region)
    return settings.payment_notification_secret


def make_hasher(settings: Settings) -> IdentityHasher:
    if settings.pii_hash_key_secret_id:
        return SecretHasher(settings.pii_hash_key_secret_id, settings.region)
    if settings.pii_hash_key:  # the local stage's configuration only
        return IdentityHasher(settings.pii_hash_key)
    return UnkeyedHasher()


@lru_cache(maxsize=1)
def services() -> Services:
    from pynamodb.connection import Connection

    from chalicelib.dal.jobs import DynamoJobRepository
    from chalicelib.dal.ledger import DynamoLedgerRepository
    from chalicelib.dal.limits import DynamoRateCounter
    from chalicelib.dal.member_codes import DynamoMemberCodeRepository
    from chalicelib.dal.members import DynamoMemberRepository
    from chalicelib.dal.outbound import EventPublisher, MessageQueue, TaskQueue
    from chalicelib.dal.program import DynamoGuardRepository, DynamoProgramRepository
    from chalicelib.dal.rewards import DynamoRewardRepository
    from chalicelib.dal.tables import ALL_MODELS, bind, share_session
    from chalicelib.dal.tiers import DynamoTierRepository

    settings = get_settings()
    bind(settings)
    connection = Connection(region=settings.region)
    share_session(ALL_MODELS, connection)
    members = DynamoMemberRepository(connection)
    hasher = make_hasher(settings)
    return Services(
        settings=settings,
        members=members,
        ledger=DynamoLedgerRepository(connection),
        program=DynamoProgramRepository(),
        guards=DynamoGuardRepository(),
        hasher=hasher,
        verifier=TokenVerifier(
            secret=settings.jwt_secret,
            links=CachedSignInLinks(
                lambda subject: members.find_member_id(hasher.identity("cognito_sub", subject))
            ),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            user_pool_id=settings.cognito_user_pool_id,
            app_client_id=settings.cognito_app_client_id,
            region=settings.region,
        ),
        events=EventPublisher(settings.event_bus_name, settings.region),
        messages=MessageQueue(settings.messages_queue_url, settings.region),
        tasks=TaskQueue(settings.jobs_queue_url, settings.region),
        jobs=DynamoJobRepository(),
        tiers=DynamoTierRepository(connection),
        codes=DynamoMemberCodeRepository(),
        rewards=DynamoRewardRepository(),
        limiter=Limiter(settings.rate_limits, DynamoRateCounter()),
    )


def points_context() -> Context:
    """What a points operation needs: the ledger, the program's rules and tiers (cached
    per container), and the time it happens."""
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.points import Context

    svc = services()
    return Context(
        repo=svc.ledger, program=svc.program.config(), tiers=svc.program.tiers(), now=utc_now()
    )


def sign_in_accounts() -> SignInAccounts:
    """Where members' sign-in accounts are closed on erasure: the stage's Cognito user
    pool (its client made on first use), or nowhere on a stage that signs its own tokens."""
    return _sign_in_accounts()


@lru_cache(maxsize=1)
def _sign_in_accounts() -> SignInAccounts:
    from chalicelib.dal.sign_ins import CognitoSignIns, NoSignIns

    settings = get_settings()
    if settings.cognito_user_pool_id:
        return CognitoSignIns(settings.cognito_user_pool_id, settings.region)
    return NoSignIns()


def reset_services() -> None:
    """Forget settings and clients (tests switch environments between cases)."""
    from chalicelib.dal import crypto

    reset_settings()
    services.cache_clear()
    _sign_in_accounts.cache_clear()
    secret_value.cache_clear()
    crypto.use_cipher(None)
