"""Members (api.md, Members, Member presence): register, read, change profile, POS/staff
look-up, and the member code (会员码) the app shows at the till."""

from __future__ import annotations

from chalice.app import Blueprint

from chalicelib.api.audit import actor
from chalicelib.api.http import (
    ALL_STAFF,
    OPS,
    Access,
    Call,
    operation,
    store_named,
    store_scoped,
)
from chalicelib.auth import Principal
from chalicelib.domain import member_codes
from chalicelib.domain import members as domain
from chalicelib.domain.clock import rfc3339, utc_now
from chalicelib.domain.members import Member
from chalicelib.domain.phone import mask_name, mask_phone
from chalicelib.domain.stores import open_store
from chalicelib.domain.tiers import tier_by_code
from chalicelib.errors import MemberExists
from chalicelib.models.members import (
    NOT_WRITABLE_FIELDS,
    ClaimMemberRequest,
    ExpiringNext,
    LookupQuery,
    MemberCodeResponse,
    MemberResponse,
    PointsSummary,
    Profile,
    RegisterMemberRequest,
    TierSummary,
    UpdateMemberRequest,
)
from chalicelib.wiring import services

bp = Blueprint(__name__)
TAGS = ("members",)
# Store staff see a member as a POS does (masked): profile yes, points history no.
SELF_OR_STAFF = Access(member_self=True, staff=ALL_STAFF)
SELF_OR_OPS = Access(member_self=True, staff=OPS)


@operation(
    bp,
    "/v1/members",
    "POST",
    access=Access(registrant=True, staff=ALL_STAFF, store=True),
    body=RegisterMemberRequest,
    response=MemberResponse,
    status=201,
    tags=TAGS,
    summary=(
        "Register a member from any channel; 409 MEMBER_EXISTS names the existing one "
        "(not to a member token). An app sign-up registers only its verified phone "
        "(403 PHONE_NOT_VERIFIED) and no card or WeChat id (403 EXTERNAL_ID_NOT_VERIFIED)"
    ),
    error_statuses=(400, 401, 403, 409, 422),
)
def register_member(call: Call) -> MemberResponse:
    request: RegisterMemberRequest = call.body
    principal = call.principal
    assert principal is not None
    svc = services()
    # A POS and store staff register members for their own store only.
    store_id = store_named(principal, request.store_id)
    external_ids = (
        request.external_ids.model_dump(exclude_none=True) if request.external_ids else {}
    )
    if principal.kind == "member":
        # Self sign-up: only what the identity provider vouches for; the sign-in itself
        # becomes one of the member's ids, and from then on decides the member.
        domain.check_self_sign_up(request.phone, external_ids, principal.verified_phone)
        external_ids[domain.SIGN_IN] = principal.subject
    if store_id is not None:
        open_store(svc.program.store(store_id), store_id)
    registration = domain.Registration(
        phone=request.phone,
        channel=request.channel.value,
        name=request.name,
        gender=request.gender.value if request.gender else None,
        birthday=request.birthday,
        email=request.email,
        tags=tuple(dict.fromkeys(request.tags)),
        marketing_consent=request.marketing_consent,
        store_id=store_id,
        external_ids=external_ids,
    )
    try:
        member = domain.register(registration, svc.members, svc.hasher, utc_now(), actor(call))
    except MemberExists as exc:
        if principal.kind == "member":
            # A member id is a key to someone's account: an app user learns only that
            # the phone is taken, never whose it is.
            raise exc.unnamed() from None
        raise
    return member_view(member, principal)


@operation(
    bp,
    "/v1/members/me",
    "GET",
    access=Access(member=True),
    response=MemberResponse,
    tags=TAGS,
    summary=(
        "The member the token is signed in as: how an app on a new device learns its "
        "member_id (the token carries none)"
    ),
    error_statuses=(401, 403, 404),
)
def get_signed_in_member(call: Call) -> MemberResponse:
    assert call.principal is not None
    assert call.principal.member_id is not None
    member = domain.get_member(call.principal.member_id, services().members)
    return member_view(member, call.principal)


@operation(
    bp,
    "/v1/members/claim",
    "POST",
    access=Access(registrant=True),
    body=ClaimMemberRequest,
    response=MemberResponse,
    tags=TAGS,
    summary=(
        "An app user takes over the member registered with their verified phone (at a "
        "till or by staff): the sign-in is linked to it; 404 when no member has that phone"
    ),
    error_statuses=(400, 401, 403, 404, 409),
)
def claim_member(call: Call) -> MemberResponse:
    request: ClaimMemberRequest = call.body
    principal = call.principal
    assert principal is not None
    svc = services()
    member = domain.claim_by_verified_phone(
        request.phone,
        principal.verified_phone,
        principal.subject,
        svc.members,
        svc.hasher,
        utc_now(),
    )
    return member_view(member, principal)


@operation(
    bp,
    "/v1/members/lookup",
    "GET",
    access=Access(staff=ALL_STAFF, store=True),
    query=LookupQuery,
    response=MemberResponse,
    tags=TAGS,
    summary=(
        "Find a member by phone, POS card, WeChat unionid or member code (POS, staff); "
        "a POS sees the masked view; a member code is not consumed"
    ),
    error_statuses=(400, 401, 403, 404),
)
def lookup_member(call: Call) -> MemberResponse:
    query: LookupQuery = call.query  # exactly one key given (LookupQuery checks it)
    svc = services()
    if query.member_code:
        member_id = member_codes.member_of(query.member_code, svc.codes, utc_now())
        member = domain.get_member(member_id, svc.members)
    elif query.phone:
        member = domain.find_by_phone(query.phone, svc.members, svc.hasher)
    elif query.card:
        member = domain.find_by_external_id("pos_card", query.card, svc.members, svc.hasher)
    else:
        assert query.wechat_unionid is not None
        member = domain.find_by_external_id(
            "wechat_unionid", query.wechat_unionid, svc.members, svc.hasher
        )
    assert call.principal is not None
    return member_view(member, call.principal)


@operation(
    bp,
    "/v1/members/{member_id}",
    "GET",
    access=SELF_OR_STAFF,
    response=MemberResponse,
    tags=TAGS,
    summary="A member: profile, tier, points summary, lifecycle stage",
    error_statuses=(401, 403, 404),
)
def get_member(call: Call) -> MemberResponse:
    member = domain.get_member(call.params["member_id"], services().members)
    assert call.principal is not None
    return member_view(member, call.principal)


@operation(
    bp,
    "/v1/members/{member_id}",
    "PATCH",
    access=SELF_OR_STAFF,
    body=UpdateMemberRequest,
    response=MemberResponse,
    tags=TAGS,
    not_writable=NOT_WRITABLE_FIELDS,
    summary="Change profile fields (tier, points and ids are refused with FIELD_NOT_WRITABLE)",
    error_statuses=(400, 401, 403, 404, 422),
)
def update_member(call: Call) -> MemberResponse:
    request: UpdateMemberRequest = call.body
    assert call.principal is not None
    changes = {
        name: (value.value if hasattr(value, "value") else value)
        for name, value in request.model_dump(exclude_unset=True).items()
    }
    member = domain.update_profile(
        call.params["member_id"],
        changes,
        services().members,
        utc_now(),
        # Only ops and admin may change a set birthday: it is worth points.
        by_staff=bool(call.principal.roles & OPS),
        # Store staff change the members of their own store only.
        for_store=call.principal.store_id if store_scoped(call.principal) else None,
        by=actor(call),
    )
    return member_view(member, call.principal)


@operation(
    bp,
    "/v1/members/{member_id}/member-code",
    "POST",
    access=Access(member_self=True),
    response=MemberCodeResponse,
    status=201,
    tags=TAGS,
    summary=(
        "A dynamic member code (会员码) for the app to show: digits, single use, valid "
        "≤ 120 s; a POS needs it to spend the member's points"
    ),
    error_statuses=(401, 403),
    # Each code is a write: a lower limit of its own (domain/limits.py).
    rate_class="member_code",
)
def issue_member_code(call: Call) -> MemberCodeResponse:
    # Only the member's own token reaches here (Access): staff and POS cannot mint a
    # presence they do not have. No read of the member: one write per code.
    svc = services()
    code = member_codes.issue(
        call.params["member_id"], svc.codes, utc_now(), svc.settings.member_code_seconds
    )
    return MemberCodeResponse(code=code.code, expires_at=rfc3339(code.expires_at))


# Staff roles that see a member's personal data; store staff see what a POS sees.
PERSONAL_DATA_ROLES = frozenset({"ops", "admin"})


def sees_personal_data(viewer: Principal) -> bool:
    """The member themself, ops and admin see the whole member; a POS and store staff
    see the masked view (a masked phone and name, tier and balance): a till confirms the
    person, it has no need for a birthday, an email or tags."""
    if viewer.kind == "member":
        return True  # a member token only ever reaches its own member (or a sign-up)
    if viewer.kind == "staff":
        return bool(viewer.roles & PERSONAL_DATA_ROLES)
    return False


def member_view(member: Member, viewer: Principal) -> MemberResponse:
    tier = tier_by_code(member.tier_code, services().program.tiers())
    expiring = (
        ExpiringNext(points=member.expiring_next_points, date=member.expiring_next_date)
        if member.expiring_next_date is not None and member.expiring_next_points > 0
        else None
    )
    full = sees_personal_data(viewer)
    profile = (
        Profile(
            name=member.name,
            gender=member.gender,
            birthday=member.birthday,
            email=member.email,
            tags=list(member.tags),
            marketing_consent=member.marketing_consent,
            channel=member.channel,
            store_id=member.store_id,
        )
        if full
        else Profile(
            name=mask_name(member.name) if member.name else None,
            gender=None,
            birthday=None,
            email=None,
            tags=[],
            marketing_consent=None,
            channel=member.channel,
            store_id=member.store_id,
        )
    )
    return MemberResponse(
        member_id=member.member_id,
        phone=member.phone if full else mask_phone(member.phone),
        masked=not full,
        profile=profile,
        external_ids=dict(member.external_ids) if full else {},
        tier=TierSummary(
            code=tier.code,
            name=tier.name,
            expires_at=rfc3339(member.tier_expires_at) if member.tier_expires_at else None,
        ),
        points=PointsSummary(
            balance=member.points_balance, pending=member.points_pending, expiring_next=expiring
        ),
        lifecycle_stage=member.lifecycle_stage,
        created_at=rfc3339(member.created_at),
        updated_at=rfc3339(member.updated_at),
    )
