"""Member repository on pynamodb. DynamoDB errors become domain exceptions here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal.tables import (
    BonusClaimItem,
    IdentityItem,
    MemberItem,
    reason_codes,
    update_if,
)
from chalicelib.domain.birthdays import birthday_key
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.members import Identity, Member
from chalicelib.errors import MemberExists, NotFound, Unavailable
from chalicelib.retry import retry

MEMBER_SK = "MEMBER"
MARKABLE_FIELDS = frozenset({"expiry_reminded"})


@dataclass(frozen=True)
class BirthdayMember:
    member_id: str
    name: str | None
    tier_code: str


IDENTITY_SK = "ID"
_TXN_ATTEMPTS = 4


def member_pk(member_id: str) -> str:
    return f"MEMBER#{member_id}"


def identity_pk(identity: Identity) -> str:
    return f"ID#{identity.kind}#{identity.key}"


BONUS_CLAIM_SK = "BONUS"


def bonus_claim_pk(claim: Identity) -> str:
    """`BONUS#signup#<hmac of signup_bonus:<phone>>`: the sign-up claim (domain/members.py
    SIGNUP_CLAIM), a key of its own beside the identity claims (`ID#...`)."""
    return f"BONUS#signup#{claim.key}"


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def to_item(member: Member) -> MemberItem:
    return MemberItem(
        pk=member_pk(member.member_id),
        sk=MEMBER_SK,
        member_id=member.member_id,
        phone=member.phone,
        channel=member.channel,
        name=member.name,
        gender=member.gender,
        birthday=member.birthday.isoformat() if member.birthday else None,
        birthday_key=birthday_key(member.birthday, member.member_id) if member.birthday else None,
        email=member.email,
        tags=set(member.tags) or None,
        marketing_consent=member.marketing_consent,
        store_id=member.store_id,
        external_ids=dict(member.external_ids) or None,
        tier_code=member.tier_code,
        tier_expires_at=rfc3339(member.tier_expires_at) if member.tier_expires_at else None,
        points_balance=member.points_balance,
        points_pending=member.points_pending,
        lifetime_earned=member.lifetime_earned,
        expiring_next_points=member.expiring_next_points,
        expiring_next_date=(
            member.expiring_next_date.isoformat() if member.expiring_next_date else None
        ),
        lifecycle_stage=member.lifecycle_stage,
        created_at=rfc3339(member.created_at),
        updated_at=rfc3339(member.updated_at),
        version=member.version,
    )


def from_item(item: MemberItem) -> Member:
    external = item.external_ids.as_dict() if item.external_ids is not None else {}
    return Member(
        member_id=item.member_id,
        phone=item.phone,
        channel=item.channel,
        created_at=datetime.fromisoformat(item.created_at),
        updated_at=datetime.fromisoformat(item.updated_at),
        name=item.name,
        gender=item.gender,
        birthday=date.fromisoformat(item.birthday) if item.birthday else None,
        email=item.email,
        tags=tuple(sorted(item.tags or ())),
        marketing_consent=bool(item.marketing_consent),
        store_id=item.store_id,
        external_ids={str(k): str(v) for k, v in external.items()},
        tier_code=item.tier_code,
        tier_expires_at=_parse_time(item.tier_expires_at),
        points_balance=int(item.points_balance or 0),
        points_pending=int(item.points_pending or 0),
        lifetime_earned=int(item.lifetime_earned or 0),
        expiring_next_points=int(item.expiring_next_points or 0),
        expiring_next_date=(
            date.fromisoformat(item.expiring_next_date) if item.expiring_next_date else None
        ),
        lifecycle_stage=item.lifecycle_stage,
        version=int(item.version or 1),
    )


class DynamoMemberRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(
        self, member: Member, identities: list[Identity], signup_claim: Identity | None = None
    ) -> None:
        item = to_item(member)
        item.first_registration = member.first_registration
        bonus = (
            BonusClaimItem(
                pk=bonus_claim_pk(signup_claim),
                sk=BONUS_CLAIM_SK,
                member_id=member.member_id,
                created_at=item.created_at,
            )
            if signup_claim is not None
            else None
        )
        claims = [
            IdentityItem(
                pk=identity_pk(identity),
                sk=IDENTITY_SK,
                identity_kind=identity.kind,
                member_id=member.member_id,
                created_at=item.created_at,
            )
            for identity in identities
        ]

        def attempt() -> None:
            try:
                # One transaction: the member exists only if every claim on phone and
                # external ids was free. Two registrations of one phone at the same
                # instant cannot both pass the condition.
                with TransactWrite(connection=self._connection) as txn:
                    txn.save(item, condition=MemberItem.pk.does_not_exist())
                    for claim in claims:
                        txn.save(claim, condition=IdentityItem.pk.does_not_exist())
                    if bonus is not None:
                        txn.save(bonus, condition=BonusClaimItem.pk.does_not_exist())
            except TransactWriteError as exc:
                taken = self._taken_claim(exc, identities)
                if taken is not None:
                    raise taken from exc
                reasons = reason_codes(exc)
                if bonus is not None and len(reasons) > len(claims) + 1 and reasons[-1]:
                    # The phone's sign-up claim appeared since it was read: only another
                    # registration of the phone (since erased) makes it; read it again.
                    raise Unavailable("registration contended; retry") from exc
                raise

        # Another transaction holds one of the same claims; it will either commit (the
        # next attempt sees MEMBER_EXISTS) or fail (the next attempt wins).
        retry(
            attempt,
            attempts=_TXN_ATTEMPTS,
            retry_on=TransactWriteError,
            retry_if=_is_conflict,
            exhausted=lambda: Unavailable("registration contended; retry"),
            base=0.04,
            cap=0.4,
        )

    def _taken_claim(
        self, exc: TransactWriteError, identities: list[Identity]
    ) -> MemberExists | None:
        reasons = exc.cancellation_reasons or []
        # reasons[0] is the member item itself; the rest line up with the identities.
        for reason, identity in zip(reasons[1:], identities, strict=False):
            if reason is not None and reason.code == "ConditionalCheckFailed":
                owner = self.find_member_id(identity)
                if owner is not None:
                    return MemberExists(owner, identity.kind)
        return None

    def add_external_id(
        self, member: Member, kind: str, value: str, identity: Identity, now: datetime
    ) -> Member:
        external_ids = {**member.external_ids, kind: value}
        stamp = rfc3339(now)
        claim = IdentityItem(
            pk=identity_pk(identity),
            sk=IDENTITY_SK,
            identity_kind=kind,
            member_id=member.member_id,
            created_at=stamp,
        )
        item = MemberItem(pk=member_pk(member.member_id), sk=MEMBER_SK)
        try:
            with TransactWrite(connection=self._connection) as txn:
                txn.save(claim, condition=IdentityItem.pk.does_not_exist())
                txn.update(
                    item,
                    actions=[
                        MemberItem.external_ids.set(external_ids),
                        MemberItem.updated_at.set(stamp),
                        MemberItem.version.add(1),
                    ],
                    condition=MemberItem.version == member.version,
                )
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                owner = self.find_member_id(identity)
                if owner == member.member_id:  # the same link, made at the same time
                    return self.get(member.member_id) or member
                if owner is not None:
                    raise MemberExists(owner, kind) from exc
            failed = {reason.code for reason in reasons if reason is not None}
            if _is_conflict(exc) or "ConditionalCheckFailed" in failed:
                raise Unavailable("member changed while linking; retry") from exc
            raise
        return replace(
            member,
            external_ids=external_ids,
            updated_at=datetime.fromisoformat(stamp),
            version=member.version + 1,
        )

    def get(self, member_id: str, *, consistent: bool = False) -> Member | None:
        """The member, or None: none was registered, or it was erased (its tombstone keeps
        the ledger's numbers, read by the points repository, never as a member)."""
        try:
            item = MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=consistent)
        except DoesNotExist:
            return None
        if item.erased_at is not None:
            return None
        return from_item(item)

    def signup_claimed(self, claim: Identity) -> bool:
        try:
            BonusClaimItem.get(
                bonus_claim_pk(claim),
                BONUS_CLAIM_SK,
                consistent_read=True,
                attributes_to_get=["pk"],
            )
        except DoesNotExist:
            return False
        return True

    def find_member_id(self, identity: Identity) -> str | None:
        try:
            claim = IdentityItem.get(identity_pk(identity), IDENTITY_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return claim.member_id

    def with_birthday(
        self, key: str, start: dict[str, Any] | None = None, limit: int = 100
    ) -> tuple[list[BirthdayMember], dict[str, Any] | None]:
        """One page of the members under `key` ('<MMDD>#<shard>') on the sparse birthday
        index, and where the next page starts (None: no more). Cost follows the members
        due, not the size of the program."""
        query = MemberItem.birthday_index.query(key, limit=limit, last_evaluated_key=start)
        found = [BirthdayMember(item.member_id, item.name, item.tier_code) for item in query]
        return found, query.last_evaluated_key

    def due_for_reminder(self, key: str, day: date) -> Iterator[str]:
        """Member ids on the expiry index under `key` not yet reminded for `day`."""
        for item in MemberItem.expiry_index.query(key):
            if item.expiry_reminded != day.isoformat():
                yield item.pk.removeprefix("MEMBER#")

    def mark(self, member_id: str, fields: dict[str, str]) -> None:
        """Set bookkeeping fields without touching the version: a ledger commit in
        flight is not disturbed, and it never writes these fields."""
        unknown = set(fields) - MARKABLE_FIELDS
        if unknown:
            raise ValueError(f"not a bookkeeping field: {sorted(unknown)}")
        item = MemberItem(pk=member_pk(member_id), sk=MEMBER_SK)
        item.update(
            actions=[getattr(MemberItem, name).set(value) for name, value in fields.items()],
            condition=MemberItem.pk.exists(),
        )

    def update_profile(self, member_id: str, changes: dict[str, Any], now: datetime) -> Member:
        actions: list[Any] = [
            MemberItem.updated_at.set(rfc3339(now)),
            MemberItem.version.add(1),
        ]
        for name, value in changes.items():
            if name == "birthday":
                actions += _set_or_remove(MemberItem.birthday, value.isoformat() if value else None)
                actions += _set_or_remove(
                    MemberItem.birthday_key, birthday_key(value, member_id) if value else None
                )
            elif name == "tags":
                actions += _set_or_remove(MemberItem.tags, set(value) if value else None)
            elif name == "marketing_consent":
                actions.append(MemberItem.marketing_consent.set(bool(value)))
            else:
                actions += _set_or_remove(getattr(MemberItem, name), value)
        item = MemberItem(pk=member_pk(member_id), sk=MEMBER_SK)
        # Never onto an erased member's tombstone (erased between the read and here).
        condition = MemberItem.pk.exists() & MemberItem.erased_at.does_not_exist()
        if not update_if(item, actions, condition):
            raise NotFound("member not found", code="MEMBER_NOT_FOUND")
        # update() refreshed the item from ALL_NEW; no second read needed.
        return from_item(item)


def _set_or_remove(attribute: Any, value: Any) -> list[Any]:
    return [attribute.remove()] if value is None else [attribute.set(value)]


def _is_conflict(exc: TransactWriteError) -> bool:
    return (
        "TransactionConflict" in reason_codes(exc)
        or exc.cause_response_code == "TransactionConflictException"
    )


# ---- erasure (PIPL art. 47; chalicelib/domain/privacy.py) --------------------------------

# Every attribute of the member item that holds the person, by NAME: the encrypted blob
# and its wrapped key (crypto-shredding), and the same fields in clear (items written
# before encryption, or a stage without it). What stays is the ledger's and the program's:
# member id, balances and lots, tier and qualifying spend, counters, channel, store, dates.
ERASED_ATTRIBUTES = (
    "pii",
    "data_key",
    "phone",
    "name",
    "gender",
    "birthday",
    "birthday_key",  # leaves the birthday index with it
    "email",
    "external_ids",
    "tags",
    "referred_by",  # another person's id: who brought this one
)


def erase_member(
    connection: Connection,
    member: Member,
    identities: list[Identity],
    extra: list[Any],
    now: datetime,
) -> bool:
    """One TransactWriteItems: the member item loses every personal attribute and gets
    `erased_at` (conditional on the version read, so an identity linked meanwhile is not
    missed, and on not being erased yet); each identity item of the member is deleted
    (if it still names this member); `extra` (the request record and the audit entry,
    as (item, condition) pairs) is put. False when the member changed (or was erased)
    since it was read: the caller reads it again."""
    stamp = rfc3339(now)
    attributes = {name: getattr(MemberItem, name) for name in ERASED_ATTRIBUTES}
    actions: list[Any] = [attribute.remove() for attribute in attributes.values()]
    actions += [
        MemberItem.erased_at.set(stamp),
        MemberItem.marketing_consent.set(False),
        MemberItem.updated_at.set(stamp),
        MemberItem.version.add(1),
    ]
    try:
        with TransactWrite(connection=connection) as txn:
            for identity in identities:
                txn.delete(
                    IdentityItem(pk=identity_pk(identity), sk=IDENTITY_SK),
                    condition=(
                        IdentityItem.pk.does_not_exist()
                        | (IdentityItem.member_id == member.member_id)
                    ),
                )
            for item, condition in extra:
                txn.save(item, condition=condition)
            txn.update(
                MemberItem(pk=member_pk(member.member_id), sk=MEMBER_SK),
                actions=actions,
                condition=(MemberItem.version == member.version)
                & MemberItem.erased_at.does_not_exist(),
            )
    except TransactWriteError as exc:
        if "ConditionalCheckFailed" in reason_codes(exc) or _is_conflict(exc):
            return False
        raise
    return True


__all__ = ["DynamoMemberRepository", "erase_member", "from_item", "to_item"]
