"""What each Lambda function may do: the single source of its role's permissions.

One line per resource a function touches, naming the actions its code performs there.
`infra/gen_template.py` turns each function's lines into the managed policy of that
function's role (and nothing else grants data access). `tests/unit/test_iam.py` checks
both directions: every AWS call a function's code makes while the tests run must be
allowed by its role (`tests/iam_check.py` records them), and every line must be needed
by some call of the function's tour on moto.

Resources are template logical ids: a table (`MembersTable`), one of its indexes
(`MembersTable/index/review-index`, for a Query on it), its stream
(`MembersTable/stream`), a queue, the event bus. `keys` limits item access to partition
keys matching these patterns (`dynamodb:LeadingKeys`): it keeps the POS key secrets
(`STOREKEY#...` in the Program table) and identity claims (`ID#...`) out of every
function but the API, and each worker to its own kind of Runtime item.

A transaction needs the per-item actions (PutItem, UpdateItem, DeleteItem,
ConditionCheckItem); SendMessageBatch needs sqs:SendMessage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    resource: str
    actions: tuple[str, ...]
    keys: tuple[str, ...] = ()
    # Used by Lambda's event source mapping with the function's role (reading its
    # stream or queue, sending failed batches to the on-failure destination), never by
    # the function's code: checked against the template's wiring instead of the tours.
    for_trigger: bool = False


def table(resource: str, *actions: str, keys: tuple[str, ...] = ()) -> Grant:
    if keys and ("/index/" in resource or "Scan" in actions):
        # LeadingKeys only binds item and table-query access: with ForAllValues a Scan
        # (or an index query) names no partition key and would pass unconditionally.
        raise ValueError(f"{resource}: keys cannot limit a Scan or an index query")
    return Grant(resource, tuple(f"dynamodb:{a}" for a in actions), keys)


def queue(resource: str, *actions: str) -> Grant:
    return Grant(resource, tuple(f"sqs:{a}" for a in actions))


def bus(resource: str, *actions: str) -> Grant:
    return Grant(resource, tuple(f"events:{a}" for a in actions))


def kms(resource: str, *actions: str) -> Grant:
    return Grant(resource, tuple(f"kms:{a}" for a in actions))


def secret(resource: str) -> Grant:
    return Grant(resource, ("secretsmanager:GetSecretValue",))


def user_pool(resource: str, *actions: str) -> Grant:
    return Grant(resource, tuple(f"cognito-idp:{a}" for a in actions))


def stream_trigger(table_id: str) -> Grant:
    actions = ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
    return Grant(f"{table_id}/stream", tuple(f"dynamodb:{a}" for a in actions), for_trigger=True)


def queue_trigger(queue_id: str) -> Grant:
    actions = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    return Grant(queue_id, tuple(f"sqs:{a}" for a in actions), for_trigger=True)


def failure_destination(queue_id: str) -> Grant:
    return Grant(queue_id, ("sqs:SendMessage",), for_trigger=True)


# Partition keys, by what they hold.
MEMBERS = "MEMBER#*"  # a member, its ledger entries, tier history and request records
PURCHASES = "TXN#*"  # purchase and refund records (the stream marks them counted)
PROGRAM = "PROGRAM"  # the program's rules and tier ladder
TIER_RULES = "TIER_RULES"  # proposed tier ladders and their dry-run/apply progress
JOBS = "JOB#*"  # scheduled jobs' state and per-run progress
NONCES = "NONCE#*"  # POS request nonces
MEMBER_CODES = "MCODE#*"  # dynamic member codes (会员码), keyed by the code's hash
REWARDS = "REWARD#*"  # a reward's configuration and its stock shards
HOLDS = "HOLD#*"  # payment holds of points + cash redemptions, by shard
COUPONS = "COUPON#*"  # coupons issued to members, keyed by their code
COUPON_TEMPLATES = "COUPON_TEMPLATE#*"  # coupon templates staff define
RATE_COUNTERS = "RATE#*"  # rate-limit counters, one per caller, scope and window
KEYRING = "KEYRING"  # the program's key-encryption key, wrapped by the KMS key PiiKey
IDENTITIES = "ID#*"  # identity claims (keyed hashes of phone, card, WeChat ids, sign-in)

ACCESS: dict[str, tuple[Grant, ...]] = {
    # HTTP: members, points, POS (nonces, keys), program and tier rules administration.
    "APIHandler": (
        table("MembersTable", "GetItem", "PutItem", "UpdateItem", "Query"),
        # a member's coupons: the coupon index, then the coupons of the page at once
        table("MembersTable/index/coupon-index", "Query"),
        table("MembersTable", "BatchGetItem", keys=(COUPONS,)),
        table("ProgramTable", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "Query"),
        # nonces: claimed (put), or on a route whose answer is recorded only read
        table("RuntimeTable", "GetItem", keys=(JOBS, NONCES)),
        table("RuntimeTable", "PutItem", keys=(NONCES,)),
        # issued (put), read by a look-up or a purchase, consumed inside the purchase
        table("RuntimeTable", "GetItem", "PutItem", "UpdateItem", keys=(MEMBER_CODES,)),
        # a points + cash redemption's hold: put with it, deleted when paid or cancelled
        table("RuntimeTable", "PutItem", "DeleteItem", keys=(HOLDS,)),
        # rate limits: one conditional ADD per request (chalicelib/dal/limits.py)
        table("RuntimeTable", "UpdateItem", keys=(RATE_COUNTERS,)),
        # erasure (PIPL): the member's identity claims go in its transaction
        table("MembersTable", "DeleteItem", keys=(IDENTITIES,)),
        queue("JobsQueue", "SendMessage"),
        # personal data at rest: the KEK (KEYRING, in the Program table lines above) is
        # created once (Encrypt) and unwrapped once per container (Decrypt)
        kms("PiiKey", "Encrypt", "Decrypt"),
        # the look-up hash key and the payment provider's secret, read once per container
        secret("PiiHashKey"),
        secret("PaymentNotificationSecret"),
        # erasure (PIPL): the member's sign-in account (a user of the stage's pool)
        user_pool("UserPool", "AdminDeleteUser"),
    ),
    # The members stream: events, welcome messages, sign-up and referral points, tiers.
    "OnMemberStream": (
        stream_trigger("MembersTable"),
        failure_destination("MemberStreamDLQ"),
        table("MembersTable", "GetItem", "PutItem", keys=(MEMBERS,)),
        table("MembersTable", "UpdateItem", keys=(MEMBERS, PURCHASES)),
        # rule coupons (welcome, first purchase, tier upgrade): issued with their record
        table("MembersTable", "PutItem", keys=(COUPONS,)),
        table("ProgramTable", "GetItem", keys=(PROGRAM, COUPON_TEMPLATES)),
        bus("EventBus", "PutEvents"),
        queue("MessagesQueue", "SendMessage"),
    ),
    # Sends messages once; defers marketing in quiet hours.
    "OnMessage": (
        queue_trigger("MessagesQueue"),
        queue("MessagesQueue", "ChangeMessageVisibility"),
        table("MembersTable", "GetItem", "UpdateItem", keys=(MEMBERS,)),
        # powertools idempotency: claim, complete, or delete a failed send's claim (a lost
        # claim returns the existing record with ReturnValuesOnConditionCheckFailure: no read)
        table("IdempotencyTable", "PutItem", "UpdateItem", "DeleteItem"),
        # the recipient's phone and name are encrypted: the KEK, unwrapped once per container
        table("ProgramTable", "GetItem", keys=(KEYRING,)),
        kms("PiiKey", "Decrypt"),
    ),
    # Job tasks: expiry, tier review and birthdays by date and shard, tier recalculation by
    # scan segment.
    "OnJobTask": (
        queue_trigger("JobsQueue"),
        queue("JobsQueue", "SendMessage"),
        table("MembersTable", "GetItem", "PutItem", "UpdateItem", keys=(MEMBERS,)),
        table("MembersTable", "Scan"),
        table("MembersTable/index/expiry-index", "Query"),
        table("MembersTable/index/review-index", "Query"),
        table("MembersTable/index/birthday-index", "Query"),
        queue("MessagesQueue", "SendMessage"),
        # birthday coupons: issued with their record
        table("MembersTable", "PutItem", keys=(COUPONS,)),
        table("ProgramTable", "GetItem", keys=(PROGRAM, TIER_RULES, COUPON_TEMPLATES)),
        table("ProgramTable", "UpdateItem", keys=(TIER_RULES,)),
        table("RuntimeTable", "UpdateItem", keys=(JOBS,)),
    ),
    "PointsExpiry": (
        table("RuntimeTable", "GetItem", "PutItem", "UpdateItem", keys=(JOBS,)),
        queue("JobsQueue", "SendMessage"),
    ),
    "ExpiryReminders": (
        table("ProgramTable", "GetItem", keys=(PROGRAM,)),
        table("MembersTable/index/expiry-index", "Query"),
        queue("MessagesQueue", "SendMessage"),
    ),
    # The daily jobs only schedule: one task per date and shard on the jobs queue.
    "TierReview": (
        table("RuntimeTable", "GetItem", "PutItem", "UpdateItem", keys=(JOBS,)),
        queue("JobsQueue", "SendMessage"),
    ),
    "BirthdayGreetings": (
        table("RuntimeTable", "GetItem", "PutItem", "UpdateItem", keys=(JOBS,)),
        queue("JobsQueue", "SendMessage"),
    ),
    # Points + cash redemptions not paid in time: the holds due, and the release commit
    # (member, ledger entries, the redemption's record, stock shards back, hold deleted).
    "ReleasePaymentHolds": (
        table("RuntimeTable", "Query", "DeleteItem", keys=(HOLDS,)),
        table("MembersTable", "GetItem", "PutItem", "UpdateItem", keys=(MEMBERS,)),
        table("ProgramTable", "GetItem", keys=(PROGRAM,)),
        table("ProgramTable", "UpdateItem", keys=(REWARDS,)),
    ),
}

# Environment variables naming secrets (or holding them), and the functions given them.
SECRETS: dict[str, tuple[str, ...]] = {
    # only the API hashes phones and external ids: it reads the key at run time
    "PII_HASH_KEY_SECRET_ID": ("APIHandler",),
    # only the API verifies the payment provider's notifications
    "PAYMENT_NOTIFICATION_SECRET_ID": ("APIHandler",),
}
