"""Personal data on request (api.md, Personal data and audit): a member's export (the
member or an admin) and an admin's erasure. Rules in chalicelib/domain/privacy.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint

from chalicelib.api.audit import actor_of as staff_actor
from chalicelib.api.http import ADMIN, Access, Call, operation
from chalicelib.auth import Principal
from chalicelib.domain import members as members_domain
from chalicelib.domain import privacy as domain
from chalicelib.domain.audit import Actor
from chalicelib.domain.clock import program_date, rfc3339, utc_now
from chalicelib.errors import NotFound
from chalicelib.ids import request_hash
from chalicelib.wiring import points_context, services

if TYPE_CHECKING:
    from chalicelib.models.privacy import EraseRequest, EraseResponse, MemberExport

bp = Blueprint(__name__)
TAGS = ("privacy",)
PAGE = 100  # the export reads every listing to its end, a page at a time


def require_member(member_id: str) -> None:
    """404 MEMBER_NOT_FOUND unless the member exists and is not erased: for the member
    routes that read only the member's other items (ledger, coupons, redemptions, tier),
    so an erased member reads as none there too. One read of the member item."""
    members_domain.get_member(member_id, services().members)


def actor_of(principal: Principal) -> Actor:
    """Who acts, for the audit entry: staff as every audited write names them
    (api/audit.actor_of), or a member acting on their own data, named by member id: the
    sign-in's subject would tie the entry, which outlives an erasure, to the sign-in."""
    return staff_actor(principal) or Actor(f"member:{principal.member_id}", "member")


@operation(
    bp,
    "/v1/members/{member_id}/export",
    "GET",
    access=Access(member_self=True, staff=ADMIN),
    response="chalicelib.models.privacy:MemberExport",
    tags=TAGS,
    summary=(
        "Everything the program holds about the member (PIPL art. 45): profile, consent, "
        "identities, tier and history, points, the whole ledger, coupons, redemptions. "
        "The member or an admin; audited (member.export)"
    ),
    error_statuses=(401, 403, 404),
    rate_class="export",
)
def export_member(call: Call) -> MemberExport:
    from chalicelib.api.coupons import _coupons
    from chalicelib.api.members import member_view
    from chalicelib.api.points import ledger_entry_view
    from chalicelib.dal.audit import record as record_audit
    from chalicelib.dal.privacy import all_of
    from chalicelib.dal.rewards import redemption_page
    from chalicelib.domain import coupon_issue
    from chalicelib.domain.points import points_view
    from chalicelib.domain.redemptions import redemption_view
    from chalicelib.domain.tiering import tier_view
    from chalicelib.models import privacy as models

    assert call.principal is not None
    svc = services()
    member_id = call.params["member_id"]
    now = utc_now()
    member = members_domain.get_member(member_id, svc.members)  # 404 when none or erased
    ctx = points_context()
    account = ctx.repo.load(member_id)
    state = svc.tiers.state(member_id)
    if account is None or account.erased or state is None:  # erased since the read
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    tiers = svc.program.tiers()
    coupons = _coupons()
    entries = all_of(lambda cursor: svc.ledger.list_entries(member_id, PAGE, cursor))
    export = models.MemberExport(
        exported_at=rfc3339(now),
        member=member_view(member, call.principal),
        identities=domain.identity_kinds(member),
        tier=models.MemberTierView.model_validate(
            tier_view(state, tiers, program_date(now), svc.tiers.history(member_id, limit=1000))
        ),
        points=models.PointsResponse.model_validate(points_view(account)),
        ledger=[ledger_entry_view(e) for e in entries],
        coupons=[
            models.CouponView.model_validate(c)
            for c in all_of(
                lambda cursor: coupon_issue.member_coupons(
                    coupons, member_id, None, PAGE, cursor, now
                )
            )
        ],
        redemptions=[
            models.RedemptionView.model_validate(redemption_view(r))
            for r in all_of(lambda cursor: redemption_page(member_id, PAGE, cursor))
        ],
    )
    # Audited before it is handed out: no export leaves without its entry.
    record_audit(domain.export_entry(actor_of(call.principal), member_id, now))
    return export


@operation(
    bp,
    "/v1/admin/members/{member_id}/erase",
    "POST",
    access=Access(staff=ADMIN),
    body="chalicelib.models.privacy:EraseRequest",
    response="chalicelib.models.privacy:EraseResponse",
    status=202,
    tags=("admin", *TAGS),
    summary=(
        "Erase the member's personal data (PIPL art. 47): identities deleted, personal "
        "fields removed, the app sign-in account closed (503 when the identity provider "
        "cannot be reached: nothing erased, retry), the ledger's numbers kept; the phone "
        "can register anew. "
        "Idempotent on request_id; audited (member.erase). Afterwards every member "
        "route answers 404 MEMBER_NOT_FOUND, also another erase request"
    ),
    error_statuses=(400, 401, 403, 404, 409, 503),
)
def erase_member(call: Call) -> EraseResponse:
    from chalicelib.dal.privacy import DynamoPrivacyStore
    from chalicelib.models.privacy import EraseResponse
    from chalicelib.wiring import sign_in_accounts

    request: EraseRequest = call.body
    assert call.principal is not None
    svc = services()
    body: dict[str, Any] = domain.erase(
        domain.Erasure(
            member_id=call.params["member_id"],
            request_id=request.request_id,
            reason=request.reason,
            ticket=request.ticket,
            actor=actor_of(call.principal),
            request_hash=request_hash(request.model_dump(mode="json")),
        ),
        DynamoPrivacyStore(),
        svc.hasher,
        utc_now(),
        sign_ins=sign_in_accounts(),
    )
    return EraseResponse.model_validate(body)
