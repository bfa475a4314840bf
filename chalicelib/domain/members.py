"""Member identity and profile rules. Pure logic: persistence comes in as a repository."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Protocol

from chalicelib.domain.audit import Actor, AuditEntry, entry
from chalicelib.domain.clock import program_date
from chalicelib.domain.phone import normalise_phone
from chalicelib.domain.tiers import BASE_TIER
from chalicelib.errors import (
    BusinessRuleViolation,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from chalicelib.ids import new_member_id
from chalicelib.retry import retry

# External ids that identify a person across channels. Each is a unique claim: two
# members can never hold the same one. `cognito_sub` links an app sign-in to the member.
SIGN_IN = "cognito_sub"
EXTERNAL_ID_KINDS = ("wechat_unionid", "wechat_openid", "pos_card", SIGN_IN)
PROFILE_FIELDS = ("name", "gender", "birthday", "email", "marketing_consent", "tags")
# The sign-up bonus claim's hash domain: HMAC of `signup_bonus:<phone>`, never equal to
# the phone's identity key (`phone:<phone>`), so the two cannot be joined without the key.
SIGNUP_CLAIM = "signup_bonus"


@dataclass(frozen=True)
class Identity:
    """A unique claim on a person: phone or an external id, stored as a keyed hash."""

    kind: str
    key: str  # HMAC of the normalised value: the table never holds the raw id as a key


class IdentityHasher:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def identity(self, kind: str, value: str) -> Identity:
        digest = hmac.new(self._secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
        return Identity(kind=kind, key=digest)


@dataclass(frozen=True)
class Member:
    member_id: str
    phone: str
    channel: str
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    gender: str | None = None
    birthday: date | None = None
    email: str | None = None
    tags: tuple[str, ...] = ()
    marketing_consent: bool = False
    store_id: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    tier_code: str = BASE_TIER
    tier_expires_at: datetime | None = None
    points_balance: int = 0
    points_pending: int = 0
    lifetime_earned: int = 0
    expiring_next_points: int = 0
    expiring_next_date: date | None = None
    lifecycle_stage: str = "potential"
    version: int = 1
    # The phone's first registration ever (its sign-up claim was free): the sign-up bonus
    # and a referral are due. False for a phone registered before, then erased.
    first_registration: bool = True


@dataclass(frozen=True)
class Registration:
    phone: str
    channel: str
    name: str | None = None
    gender: str | None = None
    birthday: date | None = None
    email: str | None = None
    tags: tuple[str, ...] = ()
    marketing_consent: bool = False
    store_id: str | None = None
    external_ids: dict[str, str] = field(default_factory=dict)


class MemberRepository(Protocol):
    def create(
        self,
        member: Member,
        identities: list[Identity],
        audit: AuditEntry | None = None,
        signup_claim: Identity | None = None,
    ) -> None:
        """Write the member and claim every identity atomically (with the staff's audit
        entry); MemberExists if taken. With `signup_claim`, the phone's sign-up claim too
        (in the same transaction)."""

    def signup_claimed(self, claim: Identity) -> bool:
        """Whether a member of this phone ever registered (its sign-up claim exists)."""

    def get(self, member_id: str) -> Member | None: ...

    def find_member_id(self, identity: Identity) -> str | None: ...

    def update_profile(
        self,
        member_id: str,
        changes: dict[str, Any],
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> Member:
        """Apply profile changes to an existing member (with the staff's audit entry, one
        transaction); NotFound when there is none."""

    def add_external_id(
        self, member: Member, kind: str, value: str, identity: Identity, now: datetime
    ) -> Member:
        """Claim one more identity for `member` (as read) and record it in its external
        ids, atomically; MemberExists if another member holds it, Unavailable if the
        member changed since it was read."""


def identities_of(member: Member, hasher: IdentityHasher) -> list[Identity]:
    claims = [hasher.identity("phone", member.phone)]
    claims += [hasher.identity(kind, value) for kind, value in sorted(member.external_ids.items())]
    return claims


def register(
    registration: Registration,
    repo: MemberRepository,
    hasher: IdentityHasher,
    now: datetime,
    by: Actor | None = None,
) -> Member:
    phone = normalise_phone(registration.phone)
    member = Member(
        member_id=new_member_id(),
        phone=phone,
        channel=registration.channel,
        created_at=now,
        updated_at=now,
        name=registration.name,
        gender=registration.gender,
        birthday=registration.birthday,
        email=registration.email,
        tags=registration.tags,
        marketing_consent=registration.marketing_consent,
        store_id=registration.store_id,
        external_ids=dict(registration.external_ids),
    )
    if member.birthday is not None and member.birthday > program_date(now):
        raise BusinessRuleViolation("birthday is in the future", code="INVALID_BIRTHDAY")
    # Staff registering someone: the entry names the member by id and says nothing of them.
    audit = entry(
        by,
        "member.register",
        f"member:{member.member_id}",
        now,
        after={"channel": member.channel, "store_id": member.store_id},
    )
    # Sign-up bonus and referral once per phone ever, across erase and re-register: the
    # first registration claims the phone (a keyed hash that outlives erasure); a later
    # one is marked, and the members stream pays it nothing.
    claim = hasher.identity(SIGNUP_CLAIM, phone)
    if repo.signup_claimed(claim):
        member = replace(member, first_registration=False)
        repo.create(member, identities_of(member, hasher), audit)
    else:
        repo.create(member, identities_of(member, hasher), audit, signup_claim=claim)
    return member


def check_self_sign_up(
    phone: str, external_ids: dict[str, str], verified_phone: str | None
) -> None:
    """What an app user may claim when registering themselves: only the phone their
    identity provider verified, and no card or WeChat id (a POS or staff link those,
    having seen the card; a member could otherwise take another's card and its
    purchases). The sign-in itself is added by the caller."""
    if external_ids:
        raise Forbidden(
            "a member cannot claim a card or WeChat id; a store or staff links them",
            code="EXTERNAL_ID_NOT_VERIFIED",
            details={"fields": [f"external_ids.{kind}" for kind in sorted(external_ids)]},
        )
    if verified_phone is None or normalise_phone(phone) != verified_phone:
        raise Forbidden(
            "phone must be the sign-in's verified phone number", code="PHONE_NOT_VERIFIED"
        )


LINK_ATTEMPTS = 5


def link_sign_in(
    member_id: str, subject: str, repo: MemberRepository, hasher: IdentityHasher, now: datetime
) -> Member:
    """Link an identity-provider sign-in (`sub`) to an existing member, which then acts
    as that member. A member has at most one sign-in; linking the same one is a no-op.
    The link is conditional on the member's version: a member changed meanwhile (the
    stream pays its sign-up bonus seconds after registration) is read again."""

    def attempt() -> Member:
        member = get_member(member_id, repo)
        current = member.external_ids.get(SIGN_IN)
        if current == subject:
            return member
        if current is not None:
            raise Conflict("the member already has a sign-in", code="SIGN_IN_LINKED")
        return repo.add_external_id(
            member, SIGN_IN, subject, hasher.identity(SIGN_IN, subject), now
        )

    # Out of attempts, the last 503 (member changed while linking) is the answer.
    return retry(attempt, attempts=LINK_ATTEMPTS, retry_on=Unavailable, exhausted=None)


def claim_by_verified_phone(
    phone: str,
    verified_phone: str | None,
    subject: str,
    repo: MemberRepository,
    hasher: IdentityHasher,
    now: datetime,
) -> Member:
    """An app user whose identity provider verified `phone` takes over the member with
    that phone (registered at a till or by staff, never signed in): the sign-in is
    linked to it. The verified phone is the proof; a member already signed in elsewhere
    keeps its sign-in (409 SIGN_IN_LINKED), so no one can take over an app account."""
    check_self_sign_up(phone, {}, verified_phone)
    member = find_by_phone(phone, repo, hasher)
    return link_sign_in(member.member_id, subject, repo, hasher, now)


def find_by_phone(raw_phone: str, repo: MemberRepository, hasher: IdentityHasher) -> Member:
    return _find(hasher.identity("phone", normalise_phone(raw_phone)), repo)


def find_by_external_id(
    kind: str, value: str, repo: MemberRepository, hasher: IdentityHasher
) -> Member:
    return _find(hasher.identity(kind, value), repo)


def _find(identity: Identity, repo: MemberRepository) -> Member:
    member_id = repo.find_member_id(identity)
    member = repo.get(member_id) if member_id else None
    if member is None:
        raise NotFound("no member matches", code="MEMBER_NOT_FOUND")
    return member


def get_member(member_id: str, repo: MemberRepository) -> Member:
    member = repo.get(member_id)
    if member is None:
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    return member


def update_profile(
    member_id: str,
    changes: dict[str, Any],
    repo: MemberRepository,
    now: datetime,
    *,
    by_staff: bool,
    for_store: str | None = None,
    by: Actor | None = None,
) -> Member:
    """Profile changes only. A member may set a birthday once; changing it afterwards is a
    staff action, because birthday gifts and birthday multipliers make it worth points.
    Staff acting for one store (`for_store`) change only members registered there (a
    member's registration store never changes)."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise InvalidInput(
            "only profile fields can be changed",
            code="FIELD_NOT_WRITABLE",
            details={"fields": sorted(unknown)},
        )
    current = get_member(member_id, repo)
    if for_store is not None and current.store_id != for_store:
        raise Forbidden("this member was registered at another store", code="STORE_MISMATCH")
    if "birthday" in changes:
        new_birthday = changes["birthday"]
        if new_birthday is not None and new_birthday > program_date(now):
            raise BusinessRuleViolation("birthday is in the future", code="INVALID_BIRTHDAY")
        if not by_staff and current.birthday is not None and new_birthday != current.birthday:
            raise BusinessRuleViolation(
                "birthday can only be changed by staff once set", code="BIRTHDAY_LOCKED"
            )
    if not changes:
        return current
    # Staff changing a profile: which fields, never their values (personal data).
    audit = entry(
        by, "member.update", f"member:{member_id}", now, after={"fields": sorted(changes)}
    )
    return repo.update_profile(member_id, changes, now, audit)


def with_changes(member: Member, changes: dict[str, Any], now: datetime) -> Member:
    """What a member looks like after a profile change (used by fakes and by the DAL)."""
    values = dict(changes)
    if "tags" in values and values["tags"] is not None:
        values["tags"] = tuple(values["tags"])
    if values.get("tags") is None and "tags" in values:
        values["tags"] = ()
    if values.get("marketing_consent") is None and "marketing_consent" in values:
        values["marketing_consent"] = False
    return replace(member, **values, updated_at=now, version=member.version + 1)
