"""Personal data on request (PIPL arts. 45 and 47): export and erasure. Pure rules; the
store comes in as a protocol (chalicelib/dal/privacy.py; tests/fakes.py in memory).

Erasure keeps the ledger's numbers and drops the person. The member item becomes a
tombstone: every personal attribute is removed (the encrypted blob and its wrapped data
key, and the same fields in clear), `erased_at` is set; its member id, balances, lots,
tier and counters stay, so ledger sums, program totals and KPIs do not move, and the
program's own bookkeeping (a refund of an old purchase, the expiry run, a payment hold)
still runs on it. Every identity claim of the member (phone, card, WeChat ids, sign-in)
is deleted in the same transaction, so the phone registers anew as a new member; the
audit entry (`member.erase`, no personal data) and the request record (idempotency on
`request_id`) go in the same transaction too. Everything that reads a member (the
member repository's `get`, `points._account`) reads an erased one as none: 404
MEMBER_NOT_FOUND on every member route. The member's sign-in account at the identity
provider (in AWS a Cognito user, which holds the phone) is closed too, just before
that transaction (`SignInAccounts`); the member's coupons are refused from then on
(chalicelib/domain/coupon_issue.redeem).

What outlives the member, on purpose: the sign-up claim `BONUS#signup#<hmac>` (a keyed
hash of the phone in a hash domain of its own, naming no member). It is the
least that stops sign-up and referral farming (register, collect, erase, register
again): without the key it cannot be turned back into a phone or joined with an
identity key, and it holds nothing else about the person (PIPL art. 47 allows keeping
what another law or a legitimate need requires; fraud prevention is that need, and the
keyed hash is its minimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.audit import Actor, AuditEntry
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.members import SIGN_IN, Identity, IdentityHasher, Member, identities_of
from chalicelib.domain.records import MemberRequestRef, RequestRecord
from chalicelib.errors import Conflict, NotFound, Unavailable

ERASE_ATTEMPTS = 5


class ErasureStore(Protocol):
    def member(self, member_id: str) -> Member | None:
        """The member as stored now (a consistent read); None if none or erased."""

    def erase_record(self, ref: MemberRequestRef) -> RequestRecord | None:
        """The first answer of an erase request (a consistent read)."""

    def erase(
        self,
        member: Member,
        identities: list[Identity],
        record: RequestRecord,
        entry: AuditEntry,
        now: datetime,
    ) -> bool:
        """All or nothing: the member made a tombstone (conditional on the version read
        and on not being erased), its identity items deleted, `record` and `entry` put
        (each conditional on not existing). False when a condition failed."""


class SignInAccounts(Protocol):
    """The identity provider's accounts members sign in with (chalicelib/dal/sign_ins.py:
    Cognito in AWS; none where the stage signs its own tokens)."""

    def close(self, subject: str) -> None:
        """Delete the sign-in account whose subject (`sub`) is `subject`: the person can
        no longer sign in with it and the provider keeps none of their data. An account
        already gone counts as closed (so it can be called again). Raises Unavailable
        when the provider cannot be reached: nothing is closed then."""


@dataclass(frozen=True)
class Erasure:
    member_id: str
    request_id: str
    reason: str  # a code (models/privacy.ErasureReason), never free text
    actor: Actor
    request_hash: str
    ticket: str | None = None  # the ticket it came from (letters, digits, ._:#/-)


def erase_ref(member_id: str, request_id: str) -> MemberRequestRef:
    return MemberRequestRef(member_id, "erase", request_id)


def erase(
    cmd: Erasure,
    store: ErasureStore,
    hasher: IdentityHasher,
    now: datetime,
    *,
    sign_ins: SignInAccounts,
) -> dict[str, Any]:
    """Erase the member once per request id: the same request again answers the first
    answer (202); the same id with another body is 409 IDEMPOTENCY_CONFLICT; another
    request id for a member already erased is 404 MEMBER_NOT_FOUND, as every route
    answers for it (nothing left to erase, and nothing written or audited again).
    A member changed between the read and the write (a purchase, a linked card) is read
    again, so an identity linked meanwhile is deleted too. A member with a sign-in has
    its sign-in account closed first (503 when the provider cannot be reached: nothing
    erased, and the same request again tries both again)."""
    ref = erase_ref(cmd.member_id, cmd.request_id)
    closed: set[str] = set()
    for _ in range(ERASE_ATTEMPTS):
        first = store.erase_record(ref)
        if first is not None:
            return _replay(first, cmd)
        member = store.member(cmd.member_id)
        if member is None:
            # Erased between the two reads, perhaps by this very request sent twice at
            # once: its answer is recorded with the erasure.
            first = store.erase_record(ref)
            if first is not None:
                return _replay(first, cmd)
            raise NotFound("member not found", code="MEMBER_NOT_FOUND")
        response = {
            "member_id": cmd.member_id,
            "request_id": cmd.request_id,
            "status": "erased",
            "erased_at": rfc3339(now),
        }
        record = RequestRecord(
            ref=ref,
            kind="erase",
            member_id=cmd.member_id,
            request_hash=cmd.request_hash,
            status=202,
            response=response,
            created_at=now,
        )
        entry = AuditEntry(
            actor=cmd.actor,
            action="member.erase",
            target=f"member:{cmd.member_id}",
            at=now,
            request_id=cmd.request_id,
            before={"identities": sorted({i.kind for i in identities_of(member, hasher)})},
            after={"erased": True, "reason": cmd.reason, "ticket": cmd.ticket},
        )
        subject = member.external_ids.get(SIGN_IN)
        if subject is not None and subject not in closed:
            # The sign-in account is closed BEFORE the transaction, never after it. The
            # transaction deletes the sign-in's identity item and the sealed external ids:
            # once it is written, nothing names the account any more, and a retried erase
            # only replays its recorded 202. So a close after it that failed (the provider
            # down, the function timed out) would leave the account, with the phone as
            # its username, for good. Closed first, a failure leaves the member as it was
            # and the same request again closes again (an account already gone counts as
            # closed) and then erases. The opposite window (closed, the transaction not
            # written yet) only stops the person signing in until the retry finishes.
            sign_ins.close(subject)
            closed.add(subject)
        if store.erase(member, identities_of(member, hasher), record, entry, now):
            return response
    raise Unavailable("the member kept changing while being erased; retry", code="CONTENDED")


def _replay(first: RequestRecord, cmd: Erasure) -> dict[str, Any]:
    if first.request_hash != cmd.request_hash:
        raise Conflict(
            "this id was already used with a different request",
            code="IDEMPOTENCY_CONFLICT",
            details={"id": cmd.request_id},
        )
    return dict(first.response)


def export_entry(actor: Actor, member_id: str, now: datetime) -> AuditEntry:
    """The audit entry of an export: who read the member's data (the member themself, as
    role `member`, or an admin). An export changes nothing, so the entry is written on
    its own (a conditional put), before the data is handed out."""
    return AuditEntry(actor=actor, action="member.export", target=f"member:{member_id}", at=now)


def identity_kinds(member: Member) -> list[str]:
    """The kinds of identity linked to the member (the values are the member's own data,
    in its external ids; the phone is the member's phone)."""
    return ["phone", *sorted(member.external_ids)]
