"""Coupon templates (Program table, COUPON_TEMPLATE#<id> / TEMPLATE; listed under
COUPON_TEMPLATES / <id>): what staff define and coupons are issued from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.dal.audit import update_audited
from chalicelib.dal.coupons import terms_from_data, terms_to_data
from chalicelib.dal.program import add_listed
from chalicelib.dal.tables import ProgramItem
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import CouponTemplate
from chalicelib.domain.stores import FirstAnswer

TEMPLATE_SK = "TEMPLATE"
LISTING_PK = "COUPON_TEMPLATES"


def template_pk(template_id: str) -> str:
    return f"COUPON_TEMPLATE#{template_id}"


def template_to_data(template: CouponTemplate) -> dict[str, Any]:
    return {
        "template_id": template.template_id,
        "name": template.name,
        "terms": terms_to_data(template.terms),
        **({"valid_days": template.valid_days} if template.valid_days is not None else {}),
        **({"valid_from": rfc3339(template.valid_from)} if template.valid_from else {}),
        **({"valid_to": rfc3339(template.valid_to)} if template.valid_to else {}),
        "status": template.status,
        "version": template.version,
    }


def template_from_data(data: dict[str, Any]) -> CouponTemplate:
    valid_days = data.get("valid_days")
    return CouponTemplate(
        template_id=str(data["template_id"]),
        name=str(data["name"]),
        terms=terms_from_data(dict(data["terms"])),
        valid_days=None if valid_days is None else int(valid_days),
        valid_from=datetime.fromisoformat(data["valid_from"]) if data.get("valid_from") else None,
        valid_to=datetime.fromisoformat(data["valid_to"]) if data.get("valid_to") else None,
        status=data.get("status", "active"),
        version=int(data.get("version") or 1),
    )


def find_template(template_id: str, *, consistent: bool = False) -> CouponTemplate | None:
    try:
        item = ProgramItem.get(template_pk(template_id), TEMPLATE_SK, consistent_read=consistent)
    except DoesNotExist:
        return None
    return template_from_data(item.data.as_dict() if item.data is not None else {})


# ---- saving, editing, listing (chalicelib/domain/coupon_templates.py) ---------------------
#   COUPON_TEMPLATE#<id> / TEMPLATE   the template: `data` is template_to_data(...) plus the
#                                     create's request hash and first answer
#   COUPON_TEMPLATES / <id>           listing entry (the id alone; never changes)


def add_template(
    template: CouponTemplate,
    request_hash: str,
    response: dict[str, Any],
    now: datetime,
    audit: AuditEntry | None = None,
) -> FirstAnswer | None:
    """The template and its listing entry, both only if new (one transaction). None when
    written; otherwise what the first create stored (its request hash and answer)."""
    at = rfc3339(now)
    entity = ProgramItem(
        pk=template_pk(template.template_id),
        sk=TEMPLATE_SK,
        kind="coupon_template",
        data={
            **template_to_data(template),
            "created_at": at,
            "updated_at": at,
            "request_hash": request_hash,
            "response": response,
        },
        updated_at=at,
    )
    listing = ProgramItem(pk=LISTING_PK, sk=template.template_id, kind="listing")
    return add_listed(entity, listing, audit)


def template_times(template_id: str) -> dict[str, str]:
    """When the template was created and last changed (consistent read)."""
    try:
        item = ProgramItem.get(template_pk(template_id), TEMPLATE_SK, consistent_read=True)
    except DoesNotExist:
        return {}
    data = item.data.as_dict() if item.data is not None else {}
    return {k: str(data[k]) for k in ("created_at", "updated_at") if data.get(k)}


def replace_template(
    template: CouponTemplate, expected_version: int, now: datetime, audit: AuditEntry | None = None
) -> bool:
    """Write the template's fields (its version one up), conditional on the stored version
    being `expected_version`: False, nothing written, if it changed (or is gone). The
    create's request hash and first answer stay."""
    data = template_to_data(template)
    actions = [
        *(ProgramItem.data[name].set(value) for name, value in data.items() if name != "version"),
        *(
            ProgramItem.data[name].remove()
            for name in ("valid_days", "valid_from", "valid_to")
            if name not in data
        ),
        ProgramItem.data["version"].set(expected_version + 1),
        ProgramItem.data["updated_at"].set(rfc3339(now)),
        ProgramItem.updated_at.set(rfc3339(now)),
    ]
    return update_audited(
        ProgramItem(pk=template_pk(template.template_id), sk=TEMPLATE_SK),
        actions,
        ProgramItem.data["version"] == expected_version,
        audit,
    )


def list_templates(limit: int, cursor: str | None) -> tuple[list[CouponTemplate], str | None]:
    """Templates in id order, paged with an opaque cursor: the listing partition, then the
    templates in one BatchGetItem."""
    from chalicelib.dal.program import _listing

    ids, next_cursor = _listing(LISTING_PK, "", limit, cursor)
    found = {t.template_id: t for t in find_templates(ids)}
    return [found[i] for i in ids if i in found], next_cursor


def find_templates(template_ids: Iterable[str]) -> list[CouponTemplate]:
    """The templates named (those that exist), in one BatchGetItem (100 at most)."""
    keys = [(template_pk(i), TEMPLATE_SK) for i in sorted(set(template_ids))]
    if not keys:
        return []
    return [
        template_from_data(item.data.as_dict() if item.data is not None else {})
        for item in ProgramItem.batch_get(keys)
    ]


class DynamoTemplateRepository:
    """The template store of chalicelib/domain/coupon_templates.py."""

    def find(self, template_id: str) -> CouponTemplate | None:
        return find_template(template_id, consistent=True)

    def add(
        self,
        template: CouponTemplate,
        request_hash: str,
        response: dict[str, Any],
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None:
        return add_template(template, request_hash, response, now, audit)

    def replace(
        self,
        template: CouponTemplate,
        expected_version: int,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> bool:
        return replace_template(template, expected_version, now, audit)

    def store_exists(self, store_id: str) -> bool:
        from chalicelib.wiring import services

        return services().program.store(store_id, fresh=True) is not None
