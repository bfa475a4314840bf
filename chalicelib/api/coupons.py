"""Coupon templates (ops), coupons issued by staff, a member's coupons, and redeeming a
coupon at a till outside a purchase (api.md, Rewards, coupons, redemptions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice.app import Blueprint

from chalicelib.api.audit import actor
from chalicelib.api.http import (
    ALL_STAFF,
    OPS,
    Access,
    Call,
    acting_store,
    operation,
    store_scoped,
)
from chalicelib.api.privacy import require_member
from chalicelib.auth import ID_SHAPE, PosReplay
from chalicelib.domain.clock import utc_now
from chalicelib.domain.coupons import CouponTemplate
from chalicelib.domain.stores import open_store
from chalicelib.errors import NotFound
from chalicelib.lazy import LazyModule
from chalicelib.wiring import services

if TYPE_CHECKING:
    from chalicelib.domain import coupon_issue, coupon_templates
    from chalicelib.models import coupons as models
    from chalicelib.models.coupons import (
        CouponList,
        CouponQuery,
        CouponView,
        IssueRequest,
        RedeemRequest,
        RedeemResponse,
        TemplateList,
        TemplatePageQuery,
        TemplatePatch,
        TemplateRequest,
        TemplateView,
    )
else:
    models = LazyModule("chalicelib.models.coupons")
    coupon_issue = LazyModule("chalicelib.domain.coupon_issue")
    coupon_templates = LazyModule("chalicelib.domain.coupon_templates")

bp = Blueprint(__name__)
TAGS = ("coupons",)
OPS_ONLY = Access(staff=OPS)
# Issuing mints value: ops and admin only, not store staff (who could issue to friends).
# A member's coupons: the member and any staff (store staff with masked codes); a POS
# sees them when they are used.
SELF_OR_STAFF = Access(member_self=True, staff=ALL_STAFF)
# Redeeming at a till: a POS for its own store, or ops keying one in.
POS_OR_OPS = Access(store=True, staff=OPS)


def _templates() -> coupon_templates.TemplateRepository:
    from chalicelib.dal.coupon_templates import DynamoTemplateRepository

    return DynamoTemplateRepository()


def _coupons() -> coupon_issue.CouponStore:
    from chalicelib.dal.coupons import DynamoCouponRepository

    return DynamoCouponRepository()


def _template_id(call: Call) -> str:
    value = call.params["template_id"]
    if not ID_SHAPE.fullmatch(value):
        raise NotFound("no such coupon template", code="TEMPLATE_NOT_FOUND")
    return value


@operation(
    bp,
    "/v1/admin/coupon-templates",
    "POST",
    access=OPS_ONLY,
    body="chalicelib.models.coupons:TemplateRequest",
    response="chalicelib.models.coupons:TemplateView",
    status=201,
    tags=TAGS,
    summary=(
        "Create a coupon template (amount or percent off, cap, minimum spend, validity, "
        "stores, categories); the same id and body again answers the same"
    ),
    error_statuses=(400, 401, 403, 409, 422),
)
def create_template(call: Call) -> TemplateView:
    request: TemplateRequest = call.body
    template = CouponTemplate(
        template_id=request.template_id,
        name=request.name,
        terms=coupon_templates.terms_of(
            request.kind,
            request.value,
            request.max_off,
            request.min_spend,
            request.stores,
            request.categories,
            request.stackable,
        ),
        valid_days=request.valid_days,
        valid_from=request.valid_from,
        valid_to=request.valid_to,
    )
    body = coupon_templates.create_template(template, _templates(), utc_now(), actor(call))
    return models.TemplateView.model_validate(body)


@operation(
    bp,
    "/v1/admin/coupon-templates",
    "GET",
    access=OPS_ONLY,
    query="chalicelib.models.coupons:TemplatePageQuery",
    response="chalicelib.models.coupons:TemplateList",
    tags=TAGS,
    summary="Coupon templates in id order, paged",
    error_statuses=(400, 401, 403),
)
def list_templates(call: Call) -> TemplateList:
    from chalicelib.dal.coupon_templates import list_templates as page

    query: TemplatePageQuery = call.query
    templates, cursor = page(query.limit, query.cursor)
    return models.TemplateList(
        templates=[
            models.TemplateView.model_validate(coupon_templates.template_view(t)) for t in templates
        ],
        next_cursor=cursor,
    )


@operation(
    bp,
    "/v1/admin/coupon-templates/{template_id}",
    "GET",
    access=OPS_ONLY,
    response="chalicelib.models.coupons:TemplateView",
    tags=TAGS,
    summary="A coupon template",
    error_statuses=(401, 403, 404),
)
def get_template(call: Call) -> TemplateView:
    template = coupon_templates.get_template(_template_id(call), _templates())
    return models.TemplateView.model_validate(coupon_templates.template_view(template))


@operation(
    bp,
    "/v1/admin/coupon-templates/{template_id}",
    "PATCH",
    access=OPS_ONLY,
    body="chalicelib.models.coupons:TemplatePatch",
    response="chalicelib.models.coupons:TemplateView",
    tags=TAGS,
    summary=(
        "Edit or retire a template (send the version you read: 409 VERSION_CONFLICT); "
        "coupons already issued keep their terms"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422),
    not_writable=frozenset({"template_id", "kind", "value"}),
)
def patch_template(call: Call) -> TemplateView:
    request: TemplatePatch = call.body
    changes = request.model_dump(exclude_unset=True, exclude={"version"})
    # null for a field means "unchanged", except max_off: null removes the cap
    changes = {k: v for k, v in changes.items() if v is not None or k == "max_off"}
    for name in ("valid_from", "valid_to"):
        if name in changes:
            changes[name] = getattr(request, name)
    edited = coupon_templates.edit_template(
        _template_id(call), request.version, changes, _templates(), utc_now(), actor(call)
    )
    return models.TemplateView.model_validate(coupon_templates.template_view(edited))


@operation(
    bp,
    "/v1/admin/members/{member_id}/coupons",
    "POST",
    access=OPS_ONLY,
    body="chalicelib.models.coupons:IssueRequest",
    response="chalicelib.models.coupons:CouponView",
    status=201,
    tags=TAGS,
    summary=(
        "Issue a coupon of a template to a member (staff); idempotent on issue_id. "
        "422 TEMPLATE_RETIRED / TEMPLATE_EXPIRED"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422),
)
def issue_coupon(call: Call) -> CouponView:
    request: IssueRequest = call.body
    body = coupon_issue.staff_issue(
        _coupons(),
        call.params["member_id"],
        request.issue_id,
        request.template_id,
        utc_now(),
        actor(call),
    )
    return models.CouponView.model_validate(body)


@operation(
    bp,
    "/v1/members/{member_id}/coupons",
    "GET",
    access=SELF_OR_STAFF,
    query="chalicelib.models.coupons:CouponQuery",
    response="chalicelib.models.coupons:CouponList",
    tags=TAGS,
    summary=(
        "The member's coupons, newest first (status: active, used, expired, void); a page "
        "filtered by status may hold fewer than limit"
    ),
    error_statuses=(400, 401, 403, 404),
)
def list_coupons(call: Call) -> CouponList:
    query: CouponQuery = call.query
    require_member(call.params["member_id"])
    coupons, cursor = coupon_issue.member_coupons(
        _coupons(), call.params["member_id"], query.status, query.limit, query.cursor, utc_now()
    )
    assert call.principal is not None
    if store_scoped(call.principal):
        # A code is a bearer secret (a till redeems it with no owner check): store staff,
        # of any store, see which coupons a member holds, never what to type.
        coupons = [{**c, "code": masked_code(c["code"])} for c in coupons]
    return models.CouponList(
        coupons=[models.CouponView.model_validate(c) for c in coupons], next_cursor=cursor
    )


def masked_code(shown: str) -> str:
    """`7KQ2-M9XD-4HRT-ZC1B` -> `****-****-****-ZC1B`: enough to tell coupons apart."""
    groups = shown.split("-")
    return "-".join(["****"] * (len(groups) - 1) + groups[-1:])


@operation(
    bp,
    "/v1/coupons/{code}/redeem",
    "POST",
    access=POS_OR_OPS,
    body="chalicelib.models.coupons:RedeemRequest",
    response="chalicelib.models.coupons:RedeemResponse",
    tags=TAGS,
    summary=(
        "Use a coupon for a till's transaction, outside a purchase: exactly once (the same "
        "transaction again answers the same; another: 409 COUPON_USED)"
    ),
    error_statuses=(400, 401, 403, 404, 409, 422),
    # Recorded on the coupon itself (used_by names store + transaction, in the signed
    # body); it spends member value, so a POS request claims its nonce before running.
    pos_replay=PosReplay.RECORDED_ANSWER,
)
def redeem_coupon(call: Call) -> RedeemResponse:
    request: RedeemRequest = call.body
    assert call.principal is not None
    store_id = acting_store(call.principal, request.store_id)
    open_store(services().program.store(store_id), store_id)
    body = coupon_issue.redeem(
        _coupons(),
        coupon_issue.Redemption(call.params["code"], store_id, request.transaction_id),
        utc_now(),
        actor(call),
    )
    return models.RedeemResponse.model_validate(body)
