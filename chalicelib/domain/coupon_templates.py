"""Coupon templates staff define (api.md, Rewards, coupons, redemptions): what a coupon
is worth, where and how long it is valid. Creates are idempotent on the template id (the
same body answers the first answer; another body is 409 IDEMPOTENCY_CONFLICT); edits are
conditional on the version the editor read (409 VERSION_CONFLICT). Coupons already
issued keep the terms they were issued with: each carries a copy.

A template's kind and value are its face ("¥10 off", "15% off") and never change: staff
retire it and create another. Its name, status, validity, cap, minimum spend, stores,
categories and stackability may be edited; the edit applies to coupons issued after it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.audit import Actor, AuditEntry, changed, entry, named
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import CouponTemplate, CouponTerms
from chalicelib.domain.program import CouponRules
from chalicelib.domain.stores import FirstAnswer
from chalicelib.errors import BusinessRuleViolation, Conflict, InvalidInput, NotFound
from chalicelib.ids import request_hash

MAX_VALID_DAYS = 3650


class TemplateRepository(Protocol):
    def find(self, template_id: str) -> CouponTemplate | None:
        """Read consistently."""
        ...

    # `audit`: the staff's entry, written in the same transaction as the change.

    def add(
        self,
        template: CouponTemplate,
        request_hash: str,
        response: dict[str, Any],
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None: ...

    def replace(
        self,
        template: CouponTemplate,
        expected_version: int,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> bool: ...

    def store_exists(self, store_id: str) -> bool: ...


def template_view(template: CouponTemplate) -> dict[str, Any]:
    terms = template.terms
    return {
        "template_id": template.template_id,
        "name": template.name,
        "kind": terms.kind,
        "value": terms.value,
        "max_off": terms.max_off,
        "min_spend": terms.min_spend,
        "valid_days": template.valid_days,
        "valid_from": rfc3339(template.valid_from) if template.valid_from else None,
        "valid_to": rfc3339(template.valid_to) if template.valid_to else None,
        "stores": list(terms.stores),
        "categories": list(terms.categories),
        "stackable": terms.stackable,
        "status": template.status,
        "version": template.version,
    }


def _invalid(field: str, issue: str) -> InvalidInput:
    return InvalidInput(
        "the template's terms do not hold together",
        code="VALIDATION_ERROR",
        details={"fields": [{"field": field, "issue": issue}]},
    )


def check_terms(template: CouponTemplate) -> None:
    """Rules across fields (400 VALIDATION_ERROR): the request models check the same on a
    create; an edit is checked again once merged with what it edits."""
    terms = template.terms
    if terms.value < 1:
        raise _invalid("value", "must be at least 1")
    if terms.kind == "percent_off" and terms.value > 100:
        raise _invalid("value", "a percent off is at most 100")
    if terms.max_off is not None and terms.kind != "percent_off":
        raise _invalid("max_off", "only a percent_off coupon has a cap")
    if terms.max_off is not None and terms.max_off < 1:
        raise _invalid("max_off", "must be at least 1")
    if terms.min_spend < 0:
        raise _invalid("min_spend", "must not be negative")
    window = template.valid_from is not None or template.valid_to is not None
    if (template.valid_days is None) == (not window) or (
        window and (template.valid_from is None or template.valid_to is None)
    ):
        raise _invalid("valid_days", "give either valid_days or both valid_from and valid_to")
    if template.valid_days is not None and not 1 <= template.valid_days <= MAX_VALID_DAYS:
        raise _invalid("valid_days", f"must be 1 to {MAX_VALID_DAYS}")
    if (
        template.valid_from is not None
        and template.valid_to is not None
        and template.valid_from >= template.valid_to
    ):
        raise _invalid("valid_to", "must be after valid_from")


def _check_stores(template: CouponTemplate, repo: TemplateRepository) -> None:
    """Stores named must exist (422 UNKNOWN_STORE): a typo would make a coupon usable
    nowhere. Stores are never deleted, so one seen here still exists when it is used."""
    unknown = [s for s in template.terms.stores if not repo.store_exists(s)]
    if unknown:
        raise BusinessRuleViolation(
            "unknown store", code="UNKNOWN_STORE", details={"store_ids": unknown}
        )


def create_template(
    template: CouponTemplate, repo: TemplateRepository, now: datetime, by: Actor | None = None
) -> dict[str, Any]:
    template = replace(template, status="active", version=1)
    check_terms(template)
    hashed = request_hash(template_view(template))
    _check_stores(template, repo)
    response = template_view(template)
    audit = entry(
        by,
        "coupon_template.create",
        f"coupon_template:{template.template_id}",
        now,
        request_id=template.template_id,
        after=named(response, "template"),
    )
    found = repo.add(template, hashed, response, now, audit)
    if found is None:
        return response
    if found.request_hash != hashed:
        raise Conflict(
            "this template id was already created with a different body",
            code="IDEMPOTENCY_CONFLICT",
            details={"template_id": template.template_id},
        )
    return found.response


def get_template(template_id: str, repo: TemplateRepository) -> CouponTemplate:
    template = repo.find(template_id)
    if template is None:
        raise NotFound(
            "no such coupon template",
            code="TEMPLATE_NOT_FOUND",
            details={"template_id": template_id},
        )
    return template


# What an edit may change; kind and value are the template's face and stay.
EDITABLE = (
    "name",
    "status",
    "max_off",
    "min_spend",
    "valid_days",
    "valid_from",
    "valid_to",
    "stores",
    "categories",
    "stackable",
)


def edit_template(
    template_id: str,
    version: int,
    changes: dict[str, Any],
    repo: TemplateRepository,
    now: datetime,
    by: Actor | None = None,
) -> CouponTemplate:
    """Apply `changes` (fields given in the request, None meaning "remove" for max_off)
    to the template as of `version`. Giving `valid_days` drops the fixed window and the
    reverse. 409 VERSION_CONFLICT if the template changed since it was read."""
    current = get_template(template_id, repo)
    if current.version != version:
        raise Conflict(
            "the template changed meanwhile; reload it",
            code="VERSION_CONFLICT",
            details={"version": current.version},
        )
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(
            "these fields cannot be changed", code="FIELD_NOT_WRITABLE", details={"fields": unknown}
        )
    terms = current.terms
    term_changes: dict[str, Any] = {
        name: changes[name] for name in ("max_off", "min_spend", "stackable") if name in changes
    }
    if "stores" in changes:
        term_changes["stores"] = tuple(changes["stores"])
    if "categories" in changes:
        term_changes["categories"] = tuple(changes["categories"])
    edited = replace(
        current,
        terms=replace(terms, **term_changes) if term_changes else terms,
        name=changes.get("name", current.name),
        status=changes.get("status", current.status),
    )
    if "valid_days" in changes:
        edited = replace(edited, valid_days=changes["valid_days"], valid_from=None, valid_to=None)
    if "valid_from" in changes or "valid_to" in changes:
        edited = replace(
            edited,
            valid_days=None if "valid_days" not in changes else edited.valid_days,
            valid_from=changes.get("valid_from", current.valid_from),
            valid_to=changes.get("valid_to", current.valid_to),
        )
    check_terms(edited)
    if "stores" in changes:
        _check_stores(edited, repo)
    before, after = changed(
        named(template_view(current), "template"), named(template_view(edited), "template")
    )
    audit = entry(
        by,
        "coupon_template.update",
        f"coupon_template:{template_id}",
        now,
        before={**before, "version": version},
        after={**after, "version": version + 1},
    )
    if not repo.replace(edited, version, now, audit):
        raise Conflict("the template changed meanwhile; reload it", code="VERSION_CONFLICT")
    return replace(edited, version=version + 1)


def terms_of(
    kind: str,
    value: int,
    max_off: int | None,
    min_spend: int,
    stores: list[str],
    categories: list[str],
    stackable: bool,
) -> CouponTerms:
    return CouponTerms(
        kind=kind,  # type: ignore[arg-type]
        value=value,
        max_off=max_off,
        min_spend=min_spend,
        stores=tuple(stores),
        categories=tuple(categories),
        stackable=stackable,
    )


def check_coupon_rules(
    rules: CouponRules, existing_templates: set[str], tier_codes: set[str]
) -> None:
    """The program's coupon rules name templates that exist (422 UNKNOWN_TEMPLATE) and,
    for upgrades, tiers of the ladder (422 UNKNOWN_TIER): a typo would otherwise issue
    nothing, silently. A template retired later stays named: the rule then issues
    nothing (logged and counted) until ops change it."""
    unknown = sorted(rules.template_ids() - existing_templates)
    if unknown:
        raise BusinessRuleViolation(
            "coupon rules name unknown templates",
            code="UNKNOWN_TEMPLATE",
            details={"template_ids": unknown},
        )
    tiers = sorted(set(rules.tier_upgrade) - tier_codes)
    if tiers:
        raise BusinessRuleViolation(
            "coupon rules name unknown tiers", code="UNKNOWN_TIER", details={"tiers": tiers}
        )
