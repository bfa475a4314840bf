"""Versioned tier rules (staff): propose a ladder, dry-run it, apply it to everyone."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.api.audit import actor
from chalicelib.api.http import ADMIN, JSON_HEADERS, OPS, Access, Call, operation
from chalicelib.domain import tier_rules as domain
from chalicelib.domain.audit import entry as audit_entry
from chalicelib.domain.clock import utc_now
from chalicelib.domain.tiers import Tier, TierBenefits
from chalicelib.models.tier_rules import TierRulesRequest, TierRulesView
from chalicelib.wiring import services

bp = Blueprint(__name__)
TAGS = ("admin",)
STAFF = Access(staff=OPS)


def _view(data: dict[str, Any]) -> TierRulesView:
    return TierRulesView.model_validate(
        {k: data.get(k) for k in ("version", "status", "tiers", "dry_run", "apply", "created_at")}
    )


@operation(
    bp,
    "/v1/admin/tier-rules",
    "POST",
    access=STAFF,
    body=TierRulesRequest,
    response=TierRulesView,
    status=201,
    tags=TAGS,
    summary="Propose a new tier ladder as a new version (draft)",
    error_statuses=(400, 401, 403, 422),
)
def create_rules(call: Call) -> TierRulesView:
    request: TierRulesRequest = call.body
    tiers = tuple(
        Tier(
            t.code,
            t.name,
            t.name_en,
            t.rank,
            t.qualify_spend,
            t.retain_spend,
            TierBenefits(**t.benefits.model_dump()),
        )
        for t in request.tiers
    )
    domain.validate(tiers)
    svc = services()
    entry = audit_entry(
        actor(call),
        "tier_rules.propose",
        "tier_rules",
        utc_now(),
        after={"tiers": [t.code for t in tiers]},
    )
    version = svc.program.create_rules_version(tiers, entry)
    _, data = domain.load(str(version), svc.program)
    return _view(data)


@operation(
    bp,
    "/v1/admin/tier-rules/{version}",
    "GET",
    access=STAFF,
    response=TierRulesView,
    tags=TAGS,
    summary="A tier rules version: status, dry-run and apply counts",
    error_statuses=(401, 403, 404),
)
def get_rules(call: Call) -> TierRulesView:
    return _view(domain.load(call.params["version"], services().program)[1])


@operation(
    bp,
    "/v1/admin/tier-rules/{version}/dry-run",
    "POST",
    access=STAFF,
    response=TierRulesView,
    status=202,
    tags=TAGS,
    summary="Count how many members would move up or down (asynchronous; poll the version)",
    error_statuses=(401, 403, 404, 409, 422),
)
def dry_run(call: Call) -> Response:
    svc = services()
    run = domain.start_dry_run(call.params["version"], svc.program, svc.tasks, actor(call))
    return _accepted(run)


@operation(
    bp,
    "/v1/admin/tier-rules/{version}/apply",
    "POST",
    access=Access(staff=ADMIN),  # moves every member: admin only
    response=TierRulesView,
    status=202,
    tags=TAGS,
    summary="Make this ladder current and recalculate every member (asynchronous)",
    error_statuses=(401, 403, 404, 409, 422),
)
def apply_rules(call: Call) -> Response:
    svc = services()
    applied = domain.start_apply(call.params["version"], svc.program, svc.tasks, actor(call))
    return _accepted(applied)


def _accepted(version: int) -> Response:
    _, data = domain.load(str(version), services().program)
    return Response(
        body=_view(data).model_dump(mode="json"), status_code=202, headers=dict(JSON_HEADERS)
    )
