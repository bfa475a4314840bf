"""What the workers receive, typed: jobs-queue tasks, messages-queue messages, the
members-table stream images they act on, and the scheduled event's time.

The envelope (SQS record, stream record) stays powertools' event data class; the body
or image inside it is validated here, so a malformed one fails its record like any
other error (partial batch failure, then redelivery and the dead-letter queue) instead
of failing somewhere in the middle of the work. Handlers import this module when they
run, never app.py, so these models cost nothing at the API's cold start.

Purchase and refund records on the stream are read through their own typed record
(chalicelib/domain/records.py), which purchase, refund and the transaction view share.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, TypeAdapter

from chalicelib.domain.clock import utc_now


class Payload(BaseModel):
    # Fields a newer producer adds are ignored, so a deployment that changes a body
    # does not fail the records still queued in the old shape. Each worker reads only
    # some of these models: a validator is built when its model is first used.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    def body(self) -> dict[str, Any]:
        """As queued: JSON types, and only what differs from the defaults (a first task
        carries no cursor; its reader assumes the defaults)."""
        return self.model_dump(mode="json", exclude_defaults=True)


# ---- jobs queue -------------------------------------------------------------------------


class ShardTask(Payload):
    """One (date, shard) of a daily job, or its continuation (chalicelib/handlers/sharded.py):
    `key` is which of the shard's index keys it is on, `start` where its next page starts.
    Any job name: the jobs worker decides which jobs exist (an unknown one fails)."""

    job: str = Field(min_length=1)
    date: dt.date
    shard: NonNegativeInt
    key: NonNegativeInt = 0
    start: dict[str, Any] | None = None


class TierRulesTask(Payload):
    """One parallel-scan segment of a tier-rules dry run or apply (its continuation carries
    the counts so far and where the scan goes on)."""

    job: Literal["tier_rules"]
    version: int = Field(gt=0)
    mode: Literal["dry_run", "apply"]
    segment: NonNegativeInt
    total: int = Field(gt=0)
    run: int = Field(default=1, gt=0)  # a dry run may be repeated; each counts apart
    counts: dict[str, int] = Field(default_factory=dict)
    start: dict[str, Any] | None = None


Task = TierRulesTask | ShardTask


@cache
def _tasks() -> TypeAdapter[Task]:
    return TypeAdapter(Task)


def parse_task(body: str) -> Task:
    """A jobs-queue body; ValidationError (a ValueError) for malformed JSON or a missing
    or ill-typed field."""
    return _tasks().validate_json(body)


# ---- messages queue ---------------------------------------------------------------------


class Message(Payload):
    """A message to a member, as chalicelib/dal/outbound.py queues it."""

    message_id: str = Field(min_length=1)
    member_id: str = Field(min_length=1)
    template: str = Field(min_length=1)
    category: Literal["service", "marketing"]
    params: dict[str, Any] = Field(default_factory=dict)
    after_send: dict[str, str] | None = None


# ---- members-table stream images --------------------------------------------------------


class MemberImage(Payload):
    kind: Literal["member"]
    member_id: str
    channel: str | None = None
    store_id: str | None = None
    created_at: str | None = None
    # False: the phone registered before (and was erased): no second sign-up bonus.
    first_registration: bool | None = None
    erased_at: str | None = None


class LedgerImage(Payload):
    """A ledger entry (earn, redeem, expire, adjust, reverse)."""

    kind: Literal["ledger"]
    type: str
    member_id: str
    entry_id: str
    points: int
    balance_after: int
    source: str | None = None
    source_id: str | None = None
    store_id: str | None = None
    created_at: str | None = None


class TierChangeImage(Payload):
    kind: Literal["tier_change"]
    member_id: str
    from_tier: str
    to_tier: str
    reason: str
    qualifying_spend: int
    created_at: str


# ---- scheduled events -------------------------------------------------------------------


def event_time(event: dict[str, Any]) -> dt.datetime:
    """The schedule's own time, so a delayed or replayed event acts for its day (now, for
    an event without one: a manual invoke)."""
    raw = event.get("time")
    if isinstance(raw, str):
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return utc_now()
