"""Member points (balance, schedule, ledger), activities, staff adjustments, program rules."""

from __future__ import annotations

from datetime import date

from chalice.app import Blueprint

from chalicelib.api.audit import actor
from chalicelib.api.http import ADMIN, OPS, Access, Call, operation
from chalicelib.api.members import SELF_OR_OPS
from chalicelib.api.privacy import require_member
from chalicelib.domain import audit
from chalicelib.domain import points as domain
from chalicelib.domain.clock import rfc3339, utc_now
from chalicelib.domain.program import (
    ProgramConfig,
    changed_limits,
    config_from_dict,
    config_to_dict,
)
from chalicelib.domain.records import Entry
from chalicelib.errors import Conflict, Forbidden, InvalidInput, NotFound
from chalicelib.models.points import (
    ActivityRequest,
    ActivityResponse,
    AdjustmentRequest,
    AdjustmentResponse,
    ExpiringLot,
    JobRunView,
    LedgerEntryView,
    LedgerPage,
    LedgerQuery,
    MemberTierView,
    PointsResponse,
    ProgramConfigModel,
    ProgramConfigResponse,
)
from chalicelib.wiring import points_context, services

bp = Blueprint(__name__)
TAGS = ("points",)


@operation(
    bp,
    "/v1/members/{member_id}/points",
    "GET",
    access=SELF_OR_OPS,
    response=PointsResponse,
    tags=TAGS,
    summary="Balance, pending points, the expiry schedule by date, lifetime earned",
    error_statuses=(401, 403, 404),
)
def get_points(call: Call) -> PointsResponse:
    account = domain.release_pending(call.params["member_id"], points_context())
    return PointsResponse.model_validate(domain.points_view(account))


def ledger_entry_view(e: Entry) -> LedgerEntryView:
    """A ledger entry as the ledger listing and the member's export show it."""
    return LedgerEntryView(
        entry_id=e.entry_id,
        type=e.type,
        points=e.points,
        balance_after=e.balance_after,
        reason=e.reason,
        source=e.source,
        source_id=e.source_id,
        store_id=e.store_id,
        created_at=rfc3339(e.created_at),
        lots=[ExpiringLot(date=d, points=p) for d, p in sorted(e.lots.items())],
    )


@operation(
    bp,
    "/v1/members/{member_id}/ledger",
    "GET",
    access=SELF_OR_OPS,
    query=LedgerQuery,
    response=LedgerPage,
    tags=TAGS,
    summary="Ledger entries, newest first, paged with an opaque cursor",
    error_statuses=(400, 401, 403, 404),
)
def get_ledger(call: Call) -> LedgerPage:
    query: LedgerQuery = call.query
    require_member(call.params["member_id"])
    entries, cursor = services().ledger.list_entries(
        call.params["member_id"], query.limit, query.cursor
    )
    return LedgerPage(
        entries=[ledger_entry_view(e) for e in entries],
        next_cursor=cursor,
    )


@operation(
    bp,
    "/v1/members/{member_id}/activities",
    "POST",
    # The member's own actions only: staff credit points through adjustments, which are
    # capped by max_adjustment and carry who made them.
    access=Access(member_self=True),
    body=ActivityRequest,
    response=ActivityResponse,
    status=201,
    tags=TAGS,
    summary="Points for check-in, review, share, referral, profile completion (422 LIMIT_REACHED)",
    error_statuses=(400, 401, 403, 404, 409, 422),
)
def post_activity(call: Call) -> object:
    request: ActivityRequest = call.body
    member_id = call.params["member_id"]
    # Completeness is judged on the personal fields, which the ledger does not decrypt.
    completing = request.type.value == "profile_completed"
    profile = services().members.get(member_id) if completing else None
    status, body = domain.record_activity(
        domain.Activity(
            member_id=member_id,
            activity_id=request.activity_id,
            type=request.type.value,
            request_hash=domain.request_hash(request.model_dump(mode="json")),
            referrer_member_id=request.referrer_member_id,
            reference=request.reference,
            profile=profile,
        ),
        points_context(),
    )
    return replayable(status, ActivityResponse.model_validate(body))


@operation(
    bp,
    "/v1/admin/members/{member_id}/adjustments",
    "POST",
    access=Access(staff=OPS),
    body=AdjustmentRequest,
    response=AdjustmentResponse,
    status=201,
    tags=("admin",),
    summary="Staff credit or debit with a reason; audited in the ledger (actor, id)",
    error_statuses=(400, 401, 403, 404, 409, 422),
)
def post_adjustment(call: Call) -> object:
    request: AdjustmentRequest = call.body
    assert call.principal is not None
    status, body = domain.record_adjustment(
        domain.Adjustment(
            member_id=call.params["member_id"],
            adjustment_id=request.adjustment_id,
            points=request.points,
            reason=request.reason,
            actor=call.principal.subject,
            request_hash=domain.request_hash(request.model_dump(mode="json")),
            by=actor(call),
        ),
        points_context(),
    )
    return replayable(status, AdjustmentResponse.model_validate(body))


@operation(
    bp,
    "/v1/admin/program",
    "GET",
    access=Access(staff=OPS),
    response=ProgramConfigResponse,
    tags=("admin",),
    summary="The program's earning, payment, pending, expiry and activity rules",
    error_statuses=(401, 403),
)
def get_program(call: Call) -> ProgramConfigResponse:
    return ProgramConfigResponse(config=config_to_dict(services().program.config()))


@operation(
    bp,
    "/v1/admin/program",
    "PUT",
    access=Access(staff=OPS),
    body=ProgramConfigModel,
    response=ProgramConfigResponse,
    tags=("admin",),
    summary=(
        "Replace the program rules (send the version you read; 409 if it changed); "
        "limits (max_adjustment, max_points_per_purchase, payment_cap_pct, "
        "points_per_yuan_payment) are admin only: 403 LIMITS_REQUIRE_ADMIN"
    ),
    error_statuses=(400, 401, 403, 409),
)
def put_program(call: Call) -> ProgramConfigResponse:
    request: ProgramConfigModel = call.body
    assert call.principal is not None
    document = request.model_dump(mode="json")
    config = config_from_dict(document)
    svc = services()
    # Compared with the stored version the request replaces: the save below is
    # conditional on that same version, so nothing can slip in between.
    current = svc.program.config(fresh=True)
    if not call.principal.roles & ADMIN:
        if current.version != request.version:
            raise Conflict(
                "the configuration changed meanwhile; reload it", code="VERSION_CONFLICT"
            )
        changed = changed_limits(current, config)
        if changed:
            raise Forbidden(
                "only an admin may change the program's limits",
                code="LIMITS_REQUIRE_ADMIN",
                details={"fields": changed},
            )
    _check_coupon_rules(config)
    before, after = audit.changed(config_to_dict(current), config_to_dict(config))
    before.pop("version", None)
    after.pop("version", None)
    entry = audit.entry(
        actor(call),
        "program.update",
        "program:config",
        utc_now(),
        request_id=f"v{request.version}",
        before={**before, "version": current.version},
        after={**after, "version": request.version + 1},
    )
    saved = svc.program.save_config(config, expected_version=request.version, audit=entry)
    return ProgramConfigResponse(config=config_to_dict(saved))


def _check_coupon_rules(config: ProgramConfig) -> None:
    """Coupon rules name existing templates and tiers (422 UNKNOWN_TEMPLATE/UNKNOWN_TIER)."""
    from chalicelib.dal.coupon_templates import find_templates
    from chalicelib.domain.coupon_templates import check_coupon_rules

    rules = config.coupon_rules
    named = rules.template_ids()
    existing = {t.template_id for t in find_templates(named)} if named else set()
    tiers = {t.code for t in services().program.tiers()} if rules.tier_upgrade else set()
    check_coupon_rules(rules, existing, tiers)


def replayable(status: int, body: object) -> object:
    """A replay answers with the first status and body (201 both times here)."""
    from chalice.app import Response

    from chalicelib.api.http import JSON_HEADERS

    payload = body.model_dump(mode="json", by_alias=True) if hasattr(body, "model_dump") else body
    return Response(body=payload, status_code=status, headers=dict(JSON_HEADERS))


@operation(
    bp,
    "/v1/admin/jobs/{job}/runs/{run_date}",
    "GET",
    access=Access(staff=OPS),
    response=JobRunView,
    tags=("admin",),
    summary="Progress and counts of a scheduled run (e.g. job 'expiry', date 2026-11-30)",
    error_statuses=(400, 401, 403, 404),
    path_params={"run_date": {"type": "string", "format": "date"}},
)
def get_job_run(call: Call) -> JobRunView:
    try:
        day = date.fromisoformat(call.params["run_date"])
    except ValueError as exc:
        raise InvalidInput("run_date is YYYY-MM-DD", code="VALIDATION_ERROR") from exc
    run = services().jobs.run(call.params["job"], day)
    if run is None:
        raise NotFound("no such run", code="RUN_NOT_FOUND")
    return JobRunView.model_validate(run)


@operation(
    bp,
    "/v1/members/{member_id}/tier",
    "GET",
    access=SELF_OR_OPS,
    response=MemberTierView,
    tags=("tiers",),
    summary="Current tier, progress to the next (amount missing), retention requirement, history",
    error_statuses=(401, 403, 404),
)
def get_member_tier(call: Call) -> MemberTierView:
    from chalicelib.domain.clock import program_date, utc_now
    from chalicelib.domain.tiering import tier_view

    svc = services()
    member_id = call.params["member_id"]
    require_member(member_id)
    state = svc.tiers.state(member_id)
    if state is None:
        raise NotFound("member not found", code="MEMBER_NOT_FOUND")
    view = tier_view(
        state, svc.program.tiers(), program_date(utc_now()), svc.tiers.history(member_id)
    )
    return MemberTierView.model_validate(view)
