"""Member repository on pynamodb. DynamoDB errors become domain exceptions here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal import crypto
from chalicelib.dal.audit import append as append_audit
from chalicelib.dal.audit import update_audited
from chalicelib.dal.tables import (
    BonusClaimItem,
    IdentityItem,
    MemberItem,
    reason_codes,
)
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.birthdays import birthday_key
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.members import Identity, Member
from chalicelib.errors import MemberExists, NotFound, Unavailable
from chalicelib.retry import retry

MEMBER_SK = "MEMBER"
MARKABLE_FIELDS = frozenset({"expiry_reminded"})


@dataclass(frozen=True)
class BirthdayMember:
    """What the birthday index projects: no personal field (the messages worker reads
    the name from the member when it sends)."""

    member_id: str
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


# The member's personal fields: kept only inside `pii`, encrypted (docs/architecture.md,
# "Personal data at rest"). `birthday_key` ('<MMDD>#<shard>') stays in clear for the
# birthday index; nothing else about the person does.
# An item written before encryption held them in clear, as attributes of the same names
# (read by `from_item`, removed by the next profile write and by an erase).
PERSONAL_FIELDS = ("phone", "name", "gender", "birthday", "email", "external_ids")


def personal_fields(member: Member) -> dict[str, Any]:
    """The blob that `pii` encrypts: only the fields that are set."""
    fields: dict[str, Any] = {
        "phone": member.phone,
        "name": member.name,
        "gender": member.gender,
        "birthday": member.birthday.isoformat() if member.birthday else None,
        "email": member.email,
        "external_ids": dict(member.external_ids) or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def to_item(member: Member) -> MemberItem:
    sealed = crypto.cipher().seal_member(member.member_id, personal_fields(member))
    return MemberItem(
        pk=member_pk(member.member_id),
        sk=MEMBER_SK,
        member_id=member.member_id,
        pii=sealed.pii,
        data_key=sealed.data_key,
        channel=member.channel,
        birthday_key=birthday_key(member.birthday, member.member_id) if member.birthday else None,
        tags=set(member.tags) or None,
        marketing_consent=member.marketing_consent,
        store_id=member.store_id,
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


def _personal(item: MemberItem) -> dict[str, Any]:
    if item.pii is not None and item.data_key is not None:
        return crypto.cipher().open_member(item.member_id, item.pii, item.data_key)
    # Written before encryption (or erased: nothing left).
    external = item.external_ids.as_dict() if item.external_ids is not None else None
    clear = {
        "phone": item.phone,
        "name": item.name,
        "gender": item.gender,
        "birthday": item.birthday,
        "email": item.email,
        "external_ids": external,
    }
    return {k: v for k, v in clear.items() if v is not None}


def from_item(item: MemberItem, *, personal: bool = True) -> Member:
    """The member. `personal=False` does not decrypt the personal fields (phone is '',
    the others empty): what the points ledger reads, so only functions that show or send
    to a person need the key (infra/iam.py)."""
    fields = _personal(item) if personal else {}
    external = fields.get("external_ids") or {}
    birthday = fields.get("birthday")
    return Member(
        member_id=item.member_id,
        phone=str(fields.get("phone") or ""),
        channel=item.channel,
        created_at=datetime.fromisoformat(item.created_at),
        updated_at=datetime.fromisoformat(item.updated_at),
        name=fields.get("name"),
        gender=fields.get("gender"),
        birthday=date.fromisoformat(birthday) if birthday else None,
        email=fields.get("email"),
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


def _sealed_actions(member: Member) -> list[Any]:
    """Write the member's personal fields again (a fresh data key each time) and drop any
    clear copy an item from before encryption still holds."""
    if not member.phone:  # the ledger's view: sealing it would erase the person
        raise ValueError("a member read without its personal fields cannot be written back")
    sealed = crypto.cipher().seal_member(member.member_id, personal_fields(member))
    actions: list[Any] = [
        MemberItem.pii.set(sealed.pii),
        MemberItem.data_key.set(sealed.data_key),
    ]
    actions += [getattr(MemberItem, name).remove() for name in PERSONAL_FIELDS]
    return actions


class DynamoMemberRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def create(
        self,
        member: Member,
        identities: list[Identity],
        audit: AuditEntry | None = None,
        signup_claim: Identity | None = None,
    ) -> None:
        item = to_item(member)
        item.first_registration = member.first_registration
        bonus = (
            BonusClaimItem(
                pk=bonus_claim_pk(signup_claim),
                sk=BONUS_CLAIM_SK,
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
                    # after the identities: the reasons above keep their places
                    if bonus is not None:
                        txn.save(bonus, condition=BonusClaimItem.pk.does_not_exist())
                    append_audit(txn, audit)
            except TransactWriteError as exc:
                taken = self._taken_claim(exc, identities)
                if taken is not None:
                    raise taken from exc
                reasons = reason_codes(exc)
                bonus_at = len(claims) + 1  # member, identities, then the sign-up claim
                if bonus is not None and len(reasons) > bonus_at and reasons[bonus_at]:
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
        linked = replace(member, external_ids=external_ids)
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
                        *_sealed_actions(linked),
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
        found = [BirthdayMember(item.member_id, item.tier_code) for item in query]
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

    def update_profile(
        self,
        member_id: str,
        changes: dict[str, Any],
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> Member:
        """Read, change, encrypt again and write, conditional on the version read: a
        write that lost a race (the member changed meanwhile) reads again and retries.
        A staff change carries its audit entry into the same transaction."""

        def attempt() -> Member:
            try:
                item = MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=True)
            except DoesNotExist:
                raise NotFound("member not found", code="MEMBER_NOT_FOUND") from None
            if item.erased_at is not None:
                raise NotFound("member not found", code="MEMBER_NOT_FOUND")
            current = from_item(item)
            personal = {k: v for k, v in changes.items() if k in PERSONAL_FIELDS}
            actions: list[Any] = [
                MemberItem.updated_at.set(rfc3339(now)),
                MemberItem.version.add(1),
            ]
            if personal:
                actions += _sealed_actions(replace(current, **personal))
            for name, value in changes.items():
                if name == "birthday":
                    actions += _set_or_remove(
                        MemberItem.birthday_key, birthday_key(value, member_id) if value else None
                    )
                elif name == "tags":
                    actions += _set_or_remove(MemberItem.tags, set(value) if value else None)
                elif name == "marketing_consent":
                    actions.append(MemberItem.marketing_consent.set(bool(value)))
                elif name not in PERSONAL_FIELDS:
                    actions += _set_or_remove(getattr(MemberItem, name), value)
            target = MemberItem(pk=member_pk(member_id), sk=MEMBER_SK)
            # The version read; an erase in between raised it, so its tombstone is never
            # written to.
            if not update_audited(target, actions, MemberItem.version == current.version, audit):
                raise _LostRace()
            if audit is not None:  # a transaction returns no image: read it back
                target = MemberItem.get(target.pk, target.sk, consistent_read=True)
            # otherwise update() refreshed the item from ALL_NEW; no second read needed.
            return from_item(target)

        return retry(
            attempt,
            attempts=_TXN_ATTEMPTS,
            retry_on=_LostRace,
            exhausted=lambda: Unavailable("member changed while updating; retry"),
            base=0.01,
            cap=0.2,
        )


class _LostRace(Exception):
    """The member changed between the read and the conditional write."""


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
    *PERSONAL_FIELDS,
    "birthday_key",  # leaves the birthday index with it
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


__all__ = [
    "ERASED_ATTRIBUTES",
    "PERSONAL_FIELDS",
    "DynamoMemberRepository",
    "erase_member",
    "from_item",
    "personal_fields",
    "to_item",
]
