"""pynamodb item classes. Table names are bound at first use from settings (never at
import), which also lets tests point the same classes at another table or endpoint.

Members table (stream: NEW_AND_OLD_IMAGES) holds everything about a person, keyed so a
later merge of two members only re-points identity items:
  MEMBER#<member_id> / MEMBER        the member: profile, tier, balances
  ID#<kind>#<hmac>   / ID            a unique claim (phone, unionid, card...) -> member_id
  COUPON#<code>      / COUPON        an issued coupon (sparse coupon-index: by member)
Program table: configuration read by every request (tiers, stores, keys, rewards,
coupon templates) and the rewards' stock counters (REWARD#<id> / STOCK#<shard>).
Runtime table (TTL on `expires_at`): POS nonces, member codes, scheduled jobs' state and
runs, payment holds of points + cash redemptions, rate-limit counters.
"""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    NumberSetAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.config import Settings


class _Meta:
    table_name = "unbound"
    region = "cn-north-1"
    max_retry_attempts = 3
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    # One client serves every item class (share_session): the pool the three table
    # clients had between them (10 each), for threaded callers such as the local server.
    max_pool_connections = 30


class BirthdayIndex(GlobalSecondaryIndex["MemberItem"]):
    """Sparse: only members with a birthday carry `birthday_key` ('<MMDD>#<shard>'), the
    documented minimum of the birthday kept outside the encrypted fields. No personal
    field is projected: the messages worker reads the name when it sends."""

    class Meta:
        index_name = "birthday-index"
        projection = IncludeProjection(["member_id", "tier_code"])

    birthday_key = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class ExpiryIndex(GlobalSecondaryIndex["MemberItem"]):
    """Sparse: members holding points carry `expiry_due` = '<earliest expiry date>#<shard>'.
    The expiry run and the reminders read only the members due on a date."""

    class Meta:
        index_name = "expiry-index"
        projection = IncludeProjection(["expiry_reminded"])

    expiry_due = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class ReviewIndex(GlobalSecondaryIndex["MemberItem"]):
    """Sparse: members above the base tier carry `review_due` = '<review date>#<shard>'."""

    class Meta:
        index_name = "review-index"
        projection = KeysOnlyProjection()

    review_due = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class CouponIndex(GlobalSecondaryIndex["CouponItem"]):
    """Sparse: only coupon items carry `coupon_owner` (the member id): a member's coupons
    by issue time, with what a listing shows."""

    class Meta:
        index_name = "coupon-index"
        projection = IncludeProjection(
            ["template_id", "status", "valid_from", "valid_to", "used_at"]
        )

    coupon_owner = UnicodeAttribute(hash_key=True)
    issued_at = UnicodeAttribute(range_key=True)


class MemberItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="member")
    member_id = UnicodeAttribute()
    phone = UnicodeAttribute(null=True)
    channel = UnicodeAttribute()
    # Personal data at rest (issue "Personal data"): `pii` is the member's personal
    # fields (phone, name, gender, birthday, email, external ids) encrypted with the
    # member's own data key; `data_key` is that key, wrapped (chalicelib/dal/crypto.py).
    # Erasing a member removes both (crypto-shredding) and sets `erased_at`.
    pii = BinaryAttribute(legacy_encoding=False, null=True)
    data_key = BinaryAttribute(legacy_encoding=False, null=True)
    erased_at = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    gender = UnicodeAttribute(null=True)
    birthday = UnicodeAttribute(null=True)
    birthday_key = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    tags = UnicodeSetAttribute(null=True)
    marketing_consent = BooleanAttribute(default=False)
    store_id = UnicodeAttribute(null=True)
    external_ids = MapAttribute[str, Any](null=True)
    tier_code = UnicodeAttribute()
    tier_expires_at = UnicodeAttribute(null=True)
    points_balance = NumberAttribute(default=0)
    points_pending = NumberAttribute(default=0)
    lifetime_earned = NumberAttribute(default=0)
    expiring_next_points = NumberAttribute(default=0)
    expiring_next_date = UnicodeAttribute(null=True)
    lifecycle_stage = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = NumberAttribute(default=1)
    # The wallet (chalicelib/domain/ledger.py): lots by expiry date, debt, pending lots.
    lots = MapAttribute[str, Any](null=True)
    points_debt = NumberAttribute(default=0)
    pending_lots = ListAttribute[Any](null=True)
    activity_counts = MapAttribute[str, Any](null=True)
    redemption_counts = MapAttribute[str, Any](null=True)
    referred_by = UnicodeAttribute(null=True)
    first_purchase_at = UnicodeAttribute(null=True)
    last_purchase_at = UnicodeAttribute(null=True)

    expiry_due = UnicodeAttribute(null=True)
    expiry_reminded = UnicodeAttribute(null=True)
    # Tiers: qualifying spend per program month (fen, net of refunds), the current tier's
    # dates, and the sparse review key '<anniversary>#<shard>'.
    qualifying_spend = MapAttribute[str, Any](null=True)
    tier_since = UnicodeAttribute(null=True)
    grace_until = UnicodeAttribute(null=True)
    review_due = UnicodeAttribute(null=True)
    # Farming (chalicelib/domain/privacy.py): True when this registration claimed the
    # phone's `BONUS#signup#<hmac>` (its first registration ever: the sign-up bonus and a
    # referral are due); False when the phone had registered before (and was erased).
    # Absent on members registered before claims existed: treated as True.
    first_registration = BooleanAttribute(null=True)

    birthday_index = BirthdayIndex()
    expiry_index = ExpiryIndex()
    review_index = ReviewIndex()


class IdentityItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="identity")
    identity_kind = UnicodeAttribute()
    member_id = UnicodeAttribute()
    created_at = UnicodeAttribute()


class BonusClaimItem(Model):
    """BONUS#<kind>#<hmac> / BONUS: a phone received a one-time program reward (the
    sign-up bonus, a referral) once, whichever member held it. A keyed hash in a domain of
    its own (not the identity claim's); it outlives the member's erasure, so erasing and
    registering again pays nothing twice (chalicelib/domain/privacy.py). It names no
    member: nothing needs to know which one, and with the hash key a phone would
    otherwise lead to the erased member's records."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="bonus_claim")
    created_at = UnicodeAttribute()


class LedgerEntryItem(Model):
    """MEMBER#<id> / LEDGER#<ulid>: append-only, newest first by key order."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="ledger")
    entry_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    type = UnicodeAttribute()
    points = NumberAttribute()
    balance_after = NumberAttribute()
    reason = UnicodeAttribute()
    source = UnicodeAttribute()
    source_id = UnicodeAttribute(null=True)
    store_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    lots = MapAttribute[str, Any](null=True)  # expiry date -> signed change
    detail = MapAttribute[str, Any](null=True)


class RequestItem(Model):
    """A client id's first answer: a purchase (TXN#<store>#<id> / TXN), a refund
    (TXN#<store>#<id> / REFUND#<refund_id>) or a member request (MEMBER#<id> / REQ#...).
    Written in the same transaction as its effects, conditional on not existing: it is
    the idempotency record."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    member_id = UnicodeAttribute()
    request_hash = BinaryAttribute(legacy_encoding=False)  # sha256: 32 bytes, not 64 hex
    status = NumberAttribute()
    # zlib-compressed JSON of the first answer: keeps a purchase's record under 1 KB,
    # one write unit (two in a transaction) less per purchase
    response = BinaryAttribute(legacy_encoding=False)
    created_at = UnicodeAttribute()
    version = NumberAttribute(default=1)
    data = MapAttribute[str, Any](null=True)


class TierHistoryItem(Model):
    """MEMBER#<id> / TIER#<ulid>: every tier change, newest last by key order."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="tier_change")
    member_id = UnicodeAttribute()
    from_tier = UnicodeAttribute()
    to_tier = UnicodeAttribute()
    reason = UnicodeAttribute()
    qualifying_spend = NumberAttribute()
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute(null=True)


class CouponItem(Model):
    """COUPON#<code> / COUPON: an issued coupon, with the terms of its template as they
    were at issue (chalicelib/domain/coupons.py). Keyed by the code: a till finds it with
    one GetItem; the member's listing reads the coupon-index."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="coupon")
    code = UnicodeAttribute()
    coupon_owner = UnicodeAttribute()  # the member id (the index's key)
    template_id = UnicodeAttribute()
    terms = MapAttribute[str, Any]()
    valid_from = UnicodeAttribute()
    valid_to = UnicodeAttribute()
    issued_at = UnicodeAttribute()
    source = UnicodeAttribute()
    source_id = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    used_by = UnicodeAttribute(null=True)
    used_at = UnicodeAttribute(null=True)
    version = NumberAttribute(default=1)

    coupon_index = CouponIndex()


class ProgramItem(Model):
    """Program configuration items; `data` holds the typed document of each kind."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    data = MapAttribute[str, Any](null=True)
    updated_at = UnicodeAttribute(null=True)


class AuditItem(Model):
    """Program table: AUDIT#<program day> / <at>#<entry_id>, one staff action
    (chalicelib/dal/audit.py). Append-only."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="audit")
    entry_id = UnicodeAttribute()
    at = UnicodeAttribute()
    actor = UnicodeAttribute()
    role = UnicodeAttribute()
    actor_store = UnicodeAttribute(null=True)
    action = UnicodeAttribute()
    target = UnicodeAttribute()
    request_id = UnicodeAttribute(null=True)
    before = MapAttribute[str, Any](null=True)
    after = MapAttribute[str, Any](null=True)


class StockShardItem(Model):
    """REWARD#<id> / STOCK#<shard>: one part of a reward's stock. A hot reward's stock is
    split over several shards, so concurrent redemptions take from different items
    instead of all contending for one (chalicelib/domain/rewards.py)."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="stock")
    reward_id = UnicodeAttribute()
    shard = NumberAttribute()
    left = NumberAttribute(default=0)


class StoreKeyItem(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="store_key")
    key_id = UnicodeAttribute()
    store_id = UnicodeAttribute()
    # The HMAC secret, encrypted under the program's KEK (AAD: the key id;
    # chalicelib/dal/crypto.py). Keys written in clear before (`secret`) no longer verify.
    sealed_secret = BinaryAttribute(legacy_encoding=False)
    active = BooleanAttribute(default=True)
    created_at = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)


class KeyringItem(Model):
    """KEYRING / KEK#<n>: the program's key-encryption key, wrapped by the root key (KMS
    in AWS, a local key file locally). Written once, conditional on not existing."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="keyring")
    wrapped = BinaryAttribute(legacy_encoding=False)
    created_at = UnicodeAttribute()


class GuardItem(Model):
    """A 'this happened once' marker; TTL removes it after `expires_at` (epoch seconds)."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    expires_at = NumberAttribute()
    info = MapAttribute[str, Any](null=True)


class MemberCodeItem(Model):
    """Runtime table: MCODE#<sha256 of the code> / MCODE, a member code (会员码) the app
    shows. `expires_at` (epoch seconds) is both the end of its validity, checked on every
    use, and the TTL that removes it later; `used_by` names the purchase that consumed it.
    The table holds a hash, not the code: a copy of the table lists no usable code."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="member_code")
    member_id = UnicodeAttribute()
    expires_at = NumberAttribute()
    used_by = UnicodeAttribute(null=True)
    used_at = UnicodeAttribute(null=True)


class HoldItem(Model):
    """Runtime table: HOLD#<shard> / <due_at>#<member_id>#<redemption_id>, a points +
    cash redemption waiting for its payment. The release job reads each shard's keys up
    to now (a range query: only what is due); paying or cancelling deletes it in the
    redemption's own commit. `expires_at` (TTL) only cleans up, long after `due_at`."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="hold")
    member_id = UnicodeAttribute()
    redemption_id = UnicodeAttribute()
    due_at = UnicodeAttribute()
    expires_at = NumberAttribute()


class JobRunItem(Model):
    """Runtime table: a scheduled job's state (JOB#<name> / STATE) and each run's
    progress (JOB#<name>#<date> / RUN), readable by staff."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(default="job")
    last_date = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    finished_at = UnicodeAttribute(null=True)
    shards_done = NumberSetAttribute(null=True)
    members = NumberAttribute(default=0)
    lots = NumberAttribute(default=0)
    points = NumberAttribute(default=0)
    tasks = NumberAttribute(default=0)
    expires_at = NumberAttribute(null=True)


class RateCounterItem(Model):
    """Runtime table: RATE#<scope>#<caller>#<window start> / RATE, how many requests a
    caller made in one rate-limit window (chalicelib/dal/limits.py). `expires_at` (TTL)
    only cleans up; a window's key is never used again once it is over."""

    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    n = NumberAttribute(null=True)
    expires_at = NumberAttribute(null=True)


MEMBERS_TABLE_MODELS: tuple[type[Model], ...] = (
    MemberItem,
    IdentityItem,
    LedgerEntryItem,
    RequestItem,
    TierHistoryItem,
    CouponItem,
    BonusClaimItem,
)
PROGRAM_TABLE_MODELS: tuple[type[Model], ...] = (
    ProgramItem,
    StoreKeyItem,
    StockShardItem,
    AuditItem,
    KeyringItem,
)
RUNTIME_TABLE_MODELS: tuple[type[Model], ...] = (
    GuardItem,
    JobRunItem,
    MemberCodeItem,
    HoldItem,
    RateCounterItem,
)


def save_if_new(item: Model, absent: Condition) -> bool:
    """Put `item` on condition `absent` (its key's `does_not_exist()`), one conditional
    write: True if written, False if the key was taken."""
    from pynamodb.exceptions import PutError

    try:
        item.save(condition=absent)
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def put_if_absent(item: Model) -> bool:
    """Put `item` unless an item with its key exists: True if written."""
    return save_if_new(item, type(item)._hash_key_attribute().does_not_exist())


def update_if(item: Model, actions: list[Any], condition: Condition) -> bool:
    """Update `item` on `condition`, one conditional write: True if written (and `item`
    refreshed from the new image), False if the condition did not hold."""
    from pynamodb.exceptions import UpdateError

    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def reason_codes(exc: Any) -> list[str | None]:
    """Why each action of a cancelled transaction (a TransactWriteError) failed, in the
    order pynamodb sent them: 'ConditionalCheckFailed', 'TransactionConflict' or None."""
    return [r.code if r is not None else None for r in exc.cancellation_reasons or []]


def bind(settings: Settings) -> None:
    """Point every item class at the stage's tables (and drop cached connections)."""
    for models, table in (
        (MEMBERS_TABLE_MODELS, settings.members_table),
        (PROGRAM_TABLE_MODELS, settings.program_table),
        (RUNTIME_TABLE_MODELS, settings.runtime_table),
    ):
        for model in models:
            model.Meta.table_name = table
            model.Meta.region = settings.region
            model._connection = None


def share_session(models: tuple[type[Model], ...], connection: Connection) -> None:
    """Give every item class's connection the botocore session of `connection`, and one
    botocore client between them.

    pynamodb builds one Connection per model class, each with a botocore session and a
    client of its own. A new session re-reads botocore's endpoint and service data (about
    0.1 s of a cold container per model class a request touches). A client of its own
    costs less (~7 ms of CPU to create and make its first call, measured), but it also
    opens its own connection: a member's first request reads three item classes (the
    sign-in identity, the member, the program's tiers), which were three connections to
    DynamoDB where one keeps alive. The item classes share one configuration (`_Meta`),
    so one client serves them all (Lambda runs one request at a time per container; the
    session is per thread, and a botocore client is safe to share between threads)."""
    session = connection.session
    client = None
    for model in models:
        shared = model._get_connection().connection
        shared._local.session = session
        if client is None:
            client = shared.client
        else:
            shared._client = client


ALL_MODELS: tuple[type[Model], ...] = (
    *MEMBERS_TABLE_MODELS,
    *PROGRAM_TABLE_MODELS,
    *RUNTIME_TABLE_MODELS,
)
