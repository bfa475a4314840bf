"""Coupons outside a purchase: issued to a member (by staff, by the program's rules, by
campaigns), listed for the member, and redeemed at a till on their own (api.md, Rewards,
coupons, redemptions). A coupon used inside a purchase is the purchase's business
(chalicelib/domain/points.py); a coupon reward is issued by the redemption's own commit.

Issuing is one transaction of the coupon and a request record `MEMBER#<id>` /
`REQ#coupon#<source>:<source id>` holding the first answer, both conditional on not
existing: the same issue (a staff's `issue_id`, a rule's occasion, a campaign run) never
issues twice, however often it is retried or redelivered. Each source has its own ids
(`staff:`, `rule:`, `campaign:`), so no staff issue id can take a rule's occasion.

Redeeming is one conditional update of the coupon (still `active`): two tills at once,
one wins; the same till retrying the same transaction gets its first answer back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from chalicelib.domain.audit import Actor, AuditEntry, entry
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import (
    Coupon,
    CouponState,
    CouponTemplate,
    display_code,
    issue,
    normalise_code,
)
from chalicelib.domain.records import (
    MemberRequestRef,
    PurchaseRef,
    RequestExists,
    RequestRecord,
)
from chalicelib.errors import BusinessRuleViolation, Conflict, NotFound, Unavailable
from chalicelib.ids import request_hash
from chalicelib.retry import Again, retry

IssueSource = Literal["staff", "rule", "campaign"]
ISSUE_KIND = "coupon_issue"


class CodeTaken(Exception):
    """A freshly drawn code already names a coupon (80 random bits: draw again)."""


class CouponStore(Protocol):
    """What issuing, listing and redeeming read and write (chalicelib/dal/coupons.py)."""

    def member_exists(self, member_id: str) -> bool: ...

    def template(self, template_id: str) -> CouponTemplate | None:
        """Read consistently: a template retired a moment ago issues nothing."""
        ...

    def template_names(self, template_ids: Iterable[str]) -> dict[str, str]: ...

    def issue_record(self, ref: MemberRequestRef) -> RequestRecord | None: ...

    def add_issued(
        self, coupon: Coupon, record: RequestRecord, audit: AuditEntry | None = None
    ) -> None:
        """The coupon and its request record, both only if new, and the staff's audit
        entry, in one transaction: RequestExists if the record is taken, CodeTaken if the
        code is (nothing written)."""
        ...

    def coupon(self, code: str) -> Coupon | None:
        """Read consistently."""
        ...

    def use(self, code: str, used_by: str, at: datetime, audit: AuditEntry | None = None) -> bool:
        """Mark the coupon used by `used_by`, conditional on it being active: False (and
        nothing written, no entry either) if it is not any more."""
        ...

    def reference(self, purchase: PurchaseRef) -> str:
        """How a purchase (a store's transaction) is named in `used_by`: the same form a
        purchase that consumes a coupon writes."""
        ...

    def member_coupons(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Coupon], str | None]:
        """A page of the member's coupons, newest issued first, and the next page's cursor."""
        ...


# ---- views -------------------------------------------------------------------------------


def coupon_view(coupon: Coupon, now: datetime, name: str | None = None) -> dict[str, Any]:
    """What a member, staff or a till see of a coupon: its code as it is shown (grouped by
    dashes), its state now, and its terms as issued."""
    terms = coupon.terms
    return {
        "code": display_code(coupon.code),
        "member_id": coupon.member_id,
        "template_id": coupon.template_id,
        "name": name,
        "status": coupon.state(now),
        "kind": terms.kind,
        "value": terms.value,
        "max_off": terms.max_off,
        "min_spend": terms.min_spend,
        "stores": list(terms.stores),
        "categories": list(terms.categories),
        "stackable": terms.stackable,
        "valid_from": rfc3339(coupon.valid_from),
        "valid_to": rfc3339(coupon.valid_to),
        "issued_at": rfc3339(coupon.issued_at),
        "source": coupon.source,
        "used_at": rfc3339(coupon.used_at) if coupon.used_at else None,
    }


# ---- issue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssueRequest:
    member_id: str
    template_id: str
    source: IssueSource
    source_id: str  # staff: the issue id; rule: `<occasion>-<template>`; campaign: its run
    request_hash: str


def issue_ref(member_id: str, source: IssueSource, source_id: str) -> MemberRequestRef:
    return MemberRequestRef(member_id, "coupon", f"{source}:{source_id}")


def issue_coupon(
    store: CouponStore, request: IssueRequest, now: datetime, by: Actor | None = None
) -> dict[str, Any]:
    """Issue a coupon of the template to the member, once per (member, source, source id):
    a replay answers the first issue's coupon (also after the template was retired), the
    same id with another body is 409 IDEMPOTENCY_CONFLICT. 404 MEMBER_NOT_FOUND,
    404 TEMPLATE_NOT_FOUND, 422 TEMPLATE_RETIRED, 422 TEMPLATE_EXPIRED (a fixed window
    already over: the coupon could never be used)."""
    ref = issue_ref(request.member_id, request.source, request.source_id)
    first = store.issue_record(ref)
    if first is not None:
        return _replayed(first, request)
    if not store.member_exists(request.member_id):
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    template = store.template(request.template_id)
    if template is None:
        raise NotFound(
            "no such coupon template",
            code="TEMPLATE_NOT_FOUND",
            details={"template_id": request.template_id},
        )
    usable(template, now)

    def attempt() -> dict[str, Any]:
        coupon = issue(template, request.member_id, now, request.source, request.source_id)
        body = coupon_view(coupon, now, template.name)
        record = RequestRecord(
            ref=ref,
            kind=ISSUE_KIND,
            member_id=request.member_id,
            request_hash=request.request_hash,
            status=201,
            response=body,
            created_at=now,
            data={"code": coupon.code, "template_id": template.template_id},
        )
        audit = entry(
            by,
            "coupon.issue",
            f"member:{request.member_id}",
            now,
            request_id=request.source_id,
            after={"template_id": template.template_id, "code": coupon.code},
        )
        try:
            store.add_issued(coupon, record, audit)
        except CodeTaken:
            raise Again from None
        except RequestExists:
            # the same issue, at the same time, by another worker or a retry: its answer
            winner = store.issue_record(ref)
            if winner is None:  # pragma: no cover - the record exists: it was just seen
                raise Unavailable("coupon issue contended; retry", code="CONTENDED") from None
            return _replayed(winner, request)
        return body

    return retry(
        attempt,
        attempts=3,
        retry_on=Again,
        exhausted=lambda: Unavailable("could not draw a free coupon code", code="CONTENDED"),
        base=0,  # a fresh random draw needs no waiting
    )


def usable(template: CouponTemplate, now: datetime) -> None:
    """A template coupons may be issued from now."""
    if template.status != "active":
        raise BusinessRuleViolation(
            "this coupon template is retired",
            code="TEMPLATE_RETIRED",
            details={"template_id": template.template_id},
        )
    if template.valid_to is not None and template.valid_to < now:
        raise BusinessRuleViolation(
            "this coupon template's validity window is over",
            code="TEMPLATE_EXPIRED",
            details={"template_id": template.template_id},
        )


def _replayed(first: RequestRecord, request: IssueRequest) -> dict[str, Any]:
    if first.request_hash != request.request_hash:
        raise Conflict(
            "this issue id was already used with a different body",
            code="IDEMPOTENCY_CONFLICT",
            details={"issue_id": request.source_id},
        )
    return dict(first.response)


def staff_issue(
    store: CouponStore,
    member_id: str,
    issue_id: str,
    template_id: str,
    now: datetime,
    by: Actor | None = None,
) -> dict[str, Any]:
    """`POST /v1/admin/members/{member_id}/coupons`: idempotent on the staff's issue id."""
    return issue_coupon(
        store,
        IssueRequest(
            member_id=member_id,
            template_id=template_id,
            source="staff",
            source_id=issue_id,
            request_hash=request_hash({"template_id": template_id}),
        ),
        now,
        by,
    )


def rule_issue(
    store: CouponStore, member_id: str, occasion: str, template_id: str, now: datetime
) -> dict[str, Any]:
    """A rule's coupon (welcome pack, first purchase, birthday, tier upgrade), once per
    member, occasion and template: `occasion` names it (`welcome`, `first-purchase`,
    `birthday-2026`, `tier-<history entry>`), so a redelivered stream record or a rerun
    job issues nothing new."""
    return issue_coupon(
        store,
        IssueRequest(
            member_id=member_id,
            template_id=template_id,
            source="rule",
            source_id=f"{occasion}-{template_id}",
            request_hash=request_hash({"occasion": occasion, "template_id": template_id}),
        ),
        now,
    )


def campaign_issue(
    store: CouponStore,
    member_id: str,
    campaign_id: str,
    run_id: str,
    template_id: str,
    now: datetime,
) -> dict[str, Any]:
    """A campaign run's coupon: once per member, campaign run and template."""
    return issue_coupon(
        store,
        IssueRequest(
            member_id=member_id,
            template_id=template_id,
            source="campaign",
            source_id=f"{campaign_id}-{run_id}-{template_id}",
            request_hash=request_hash(
                {"campaign_id": campaign_id, "run_id": run_id, "template_id": template_id}
            ),
        ),
        now,
    )


# ---- list -----------------------------------------------------------------------------------


def member_coupons(
    store: CouponStore,
    member_id: str,
    status: CouponState | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the member's coupons, newest first, each in its state now (`expired`
    is read from `valid_to`). A status filter applies to the page read, so a page may
    hold fewer than `limit` (even none) while `next_cursor` says there is more."""
    coupons, next_cursor = store.member_coupons(member_id, limit, cursor)
    shown = [c for c in coupons if status is None or c.state(now) == status]
    names = store.template_names({c.template_id for c in shown}) if shown else {}
    return [coupon_view(c, now, names.get(c.template_id)) for c in shown], next_cursor


# ---- redeem at a till ---------------------------------------------------------------------


@dataclass(frozen=True)
class Redemption:
    code: str  # as typed or scanned
    store_id: str
    transaction_id: str


def redeem(
    store: CouponStore, request: Redemption, now: datetime, by: Actor | None = None
) -> dict[str, Any]:
    """Consume the coupon for the store's transaction, exactly once. The same transaction
    again gets the same answer (read back from the coupon); another transaction 409
    COUPON_USED. 404 COUPON_NOT_FOUND (also for what cannot be a code: nothing to learn
    for someone guessing), 422 COUPON_EXPIRED, COUPON_NOT_YET_VALID, COUPON_VOID,
    COUPON_NOT_VALID_HERE. Minimum spend and categories are the till's to check: this
    route sees no bill. A coupon whose member was erased is 422 COUPON_VOID: a code is a
    bearer secret, and the value it carried went with the member (PIPL erasure)."""
    code = normalise_code(request.code)
    if code is None:
        raise NotFound("no such coupon", code="COUPON_NOT_FOUND")
    used_by = store.reference(PurchaseRef(request.store_id, request.transaction_id))
    for _ in range(2):
        coupon = store.coupon(code)
        if coupon is None:
            raise NotFound("no such coupon", code="COUPON_NOT_FOUND")
        if coupon.status == "used" and coupon.used_by == used_by:
            return redeemed_view(coupon, request)  # this transaction's own redemption
        refuse(coupon, request.store_id, now)
        if not store.member_exists(coupon.member_id):
            # Its member was erased. Checked here, on the one path that writes, so a
            # refusal or a replay costs nothing more: one consistent read of the member
            # item (1 read unit). The erase does not void the coupons (a member may hold
            # any number: no one transaction could), so a coupon issued in a race with
            # the erase is refused here too. A redemption the erase overtakes between
            # this read and the write went first, as if the till had been a moment faster.
            raise BusinessRuleViolation(REFUSAL_MESSAGES["COUPON_VOID"], code="COUPON_VOID")
        audit = entry(
            by,
            "coupon.redeem",
            f"member:{coupon.member_id}",
            now,
            request_id=request.transaction_id,
            before={"code": code, "status": "active"},
            after={"code": code, "status": "used", "store_id": request.store_id},
        )
        if store.use(code, used_by, now, audit):
            used = Coupon(
                **{**coupon.__dict__, "status": "used", "used_by": used_by, "used_at": now}
            )
            return redeemed_view(used, request)
        # changed since it was read (another till, a refund, a void): read it again
    raise Unavailable("coupon contended; retry", code="CONTENDED")


REFUSAL_MESSAGES = {
    "COUPON_VOID": "this coupon was cancelled",
    "COUPON_NOT_YET_VALID": "this coupon is not valid yet",
    "COUPON_EXPIRED": "this coupon has expired",
    "COUPON_NOT_VALID_HERE": "this coupon is not valid at this store",
}


def refuse(coupon: Coupon, store_id: str, now: datetime) -> None:
    """Why this coupon cannot be used at this store now, if it cannot (Coupon.refusal,
    as a till's purchase judges it): used is a conflict, the rest business rules."""
    reason = coupon.refusal(store_id, now)
    if reason is None:
        return
    if reason == "COUPON_USED":
        raise Conflict("this coupon was already used", code=reason)
    details = {
        "COUPON_NOT_YET_VALID": {"valid_from": rfc3339(max(coupon.valid_from, coupon.issued_at))},
        "COUPON_EXPIRED": {"valid_to": rfc3339(coupon.valid_to)},
    }.get(reason, {})
    raise BusinessRuleViolation(REFUSAL_MESSAGES[reason], code=reason, details=details)


def redeemed_view(coupon: Coupon, request: Redemption) -> dict[str, Any]:
    assert coupon.used_at is not None
    terms = coupon.terms
    return {
        "code": display_code(coupon.code),
        "member_id": coupon.member_id,
        "template_id": coupon.template_id,
        "status": "used",
        "store_id": request.store_id,
        "transaction_id": request.transaction_id,
        "used_at": rfc3339(coupon.used_at),
        "kind": terms.kind,
        "value": terms.value,
        "max_off": terms.max_off,
        "min_spend": terms.min_spend,
        "categories": list(terms.categories),
        "stackable": terms.stackable,
    }
