"""Coupon templates (Program table, COUPON_TEMPLATE#<id> / TEMPLATE; listed under
COUPON_TEMPLATES / <id>): what staff define and coupons are issued from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist

from chalicelib.dal.coupons import terms_from_data, terms_to_data
from chalicelib.dal.tables import ProgramItem
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import CouponTemplate

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
