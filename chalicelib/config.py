"""Typed settings, read from the environment on first use, never at import.

Chalice patches a stage's environment variables only while a function runs, and
`chalice package` imports app.py with none of them set; so nothing may read them at
module import time. `get_settings()` builds the object once per container;
`reset_settings()` is for tests that switch environments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

from chalicelib.domain.limits import RateLimits, parse_limits


class SettingsError(RuntimeError):
    """A required setting is missing or malformed: a deployment mistake, not bad input."""


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is required")
    return value


def _optional(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"environment variable {name} must be an integer") from exc


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    members_table: str
    program_table: str
    runtime_table: str
    # Message deliveries' idempotency records (powertools layout: key `id`).
    idempotency_table: str
    messages_queue_url: str | None
    jobs_queue_url: str | None
    event_bus_name: str
    # Member/staff tokens: either a locally signed HS256 secret (stage `local`, tests) or
    # a Cognito user pool (AWS stages). Exactly one of the two is configured.
    jwt_secret: str | None
    jwt_issuer: str
    jwt_audience: str
    cognito_user_pool_id: str | None
    cognito_app_client_id: str | None
    # Phone numbers and external ids are looked up through a keyed hash (HMAC-SHA256),
    # so identity keys in the table do not reveal the person. In AWS the key is read at
    # run time from Secrets Manager (`PII_HASH_KEY_SECRET_ID`, given to the API function
    # only: infra/iam.py SECRETS) and cached per container; the local stage alone has it
    # in its configuration (`PII_HASH_KEY`).
    pii_hash_key: str | None
    max_body_bytes: int
    pos_clock_skew_seconds: int
    # How long a member code (会员码) stays valid: api.md allows at most 120 s.
    member_code_seconds: int = 120
    # Payment notifications (points + cash redemptions) are signed by the payment
    # provider with this secret (hex HMAC-SHA256 of `timestamp.body`). Only the API
    # function is given it (infra/iam.py SECRETS); elsewhere it is None.
    payment_notification_secret: str | None = None
    # Requests per caller and window (RATE_LIMITS, RATE_LIMIT_WINDOW_SECONDS,
    # RATE_LIMIT_LEASE_DIVISOR; defaults in chalicelib/domain/limits.py,
    # docs/architecture.md "Rate limits").
    rate_limits: RateLimits = field(default_factory=lambda: parse_limits(None))
    pii_hash_key_secret_id: str | None = None
    # In AWS the payment secret is read at run time too (`PAYMENT_NOTIFICATION_SECRET_ID`);
    # `PAYMENT_NOTIFICATION_SECRET` is the local stage's.
    payment_notification_secret_id: str | None = None
    # The root key of personal data at rest (chalicelib/dal/crypto.py): a KMS key in AWS
    # (`PII_KMS_KEY_ID`), a local key file otherwise (`PII_LOCAL_KEY_FILE`, relative to
    # the repository unless absolute; created on first use).
    pii_kms_key_id: str | None = None
    pii_local_key_file: str | None = None

    @property
    def uses_cognito(self) -> bool:
        return self.cognito_user_pool_id is not None


def load_settings() -> Settings:
    jwt_secret = _optional("JWT_SECRET")
    pool = _optional("COGNITO_USER_POOL_ID")
    if (jwt_secret is None) == (pool is None):
        raise SettingsError("configure exactly one of JWT_SECRET (local) or COGNITO_USER_POOL_ID")
    if pool is not None:
        # Without it, tokens of any app client of the pool would be accepted.
        _required("COGNITO_APP_CLIENT_ID")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "cn-north-1"
    return Settings(
        stage=os.environ.get("STAGE", "local"),
        region=region,
        members_table=_required("MEMBERS_TABLE"),
        program_table=_required("PROGRAM_TABLE"),
        runtime_table=_required("RUNTIME_TABLE"),
        idempotency_table=_required("IDEMPOTENCY_TABLE"),
        messages_queue_url=_optional("MESSAGES_QUEUE_URL"),
        jobs_queue_url=_optional("JOBS_QUEUE_URL"),
        event_bus_name=os.environ.get("EVENT_BUS_NAME", "default"),
        jwt_secret=jwt_secret,
        jwt_issuer=os.environ.get("JWT_ISSUER", "loyalty-local"),
        jwt_audience=os.environ.get("JWT_AUDIENCE", "loyalty-api"),
        cognito_user_pool_id=pool,
        cognito_app_client_id=_optional("COGNITO_APP_CLIENT_ID"),
        pii_hash_key=_optional("PII_HASH_KEY"),
        max_body_bytes=_int("MAX_BODY_BYTES", 64 * 1024),
        pos_clock_skew_seconds=_int("POS_CLOCK_SKEW_SECONDS", 300),
        member_code_seconds=_member_code_seconds(),
        payment_notification_secret=_optional("PAYMENT_NOTIFICATION_SECRET"),
        rate_limits=_rate_limits(),
        pii_hash_key_secret_id=_optional("PII_HASH_KEY_SECRET_ID"),
        payment_notification_secret_id=_optional("PAYMENT_NOTIFICATION_SECRET_ID"),
        pii_kms_key_id=_optional("PII_KMS_KEY_ID"),
        pii_local_key_file=_optional("PII_LOCAL_KEY_FILE"),
    )


def _rate_limits() -> RateLimits:
    try:
        return parse_limits(
            os.environ.get("RATE_LIMITS"),
            _int("RATE_LIMIT_WINDOW_SECONDS", 60),
            _int("RATE_LIMIT_LEASE_DIVISOR", 50),
        )
    except ValueError as exc:
        raise SettingsError(f"RATE_LIMITS / RATE_LIMIT_*: {exc}") from exc


def _member_code_seconds() -> int:
    seconds = _int("MEMBER_CODE_SECONDS", 120)
    if not 10 <= seconds <= 120:
        # Shorter than a till needs to scan it, or longer than the contract allows.
        raise SettingsError("MEMBER_CODE_SECONDS must be between 10 and 120")
    return seconds


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()
