"""Coupon items (Members table, COUPON#<code> / COUPON): how a coupon is stored, and the
conditional changes a points commit makes to one (chalicelib/dal/ledger.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib.dal.tables import CouponItem
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import Coupon, CouponChange, CouponTerms

COUPON_SK = "COUPON"


def coupon_pk(code: str) -> str:
    return f"COUPON#{code}"


def terms_to_data(terms: CouponTerms) -> dict[str, Any]:
    return {
        "kind": terms.kind,
        "value": terms.value,
        **({"max_off": terms.max_off} if terms.max_off is not None else {}),
        "min_spend": terms.min_spend,
        "stores": list(terms.stores),
        "categories": list(terms.categories),
        "stackable": terms.stackable,
    }


def terms_from_data(data: dict[str, Any]) -> CouponTerms:
    max_off = data.get("max_off")
    return CouponTerms(
        kind=data["kind"],
        value=int(data["value"]),
        max_off=None if max_off is None else int(max_off),
        min_spend=int(data.get("min_spend") or 0),
        stores=tuple(str(s) for s in data.get("stores") or ()),
        categories=tuple(str(c) for c in data.get("categories") or ()),
        stackable=bool(data.get("stackable")),
    )


def coupon_item(coupon: Coupon) -> CouponItem:
    return CouponItem(
        pk=coupon_pk(coupon.code),
        sk=COUPON_SK,
        code=coupon.code,
        coupon_owner=coupon.member_id,
        template_id=coupon.template_id,
        terms=terms_to_data(coupon.terms),
        valid_from=rfc3339(coupon.valid_from),
        valid_to=rfc3339(coupon.valid_to),
        issued_at=rfc3339(coupon.issued_at),
        source=coupon.source,
        source_id=coupon.source_id,
        status=coupon.status,
        used_by=coupon.used_by,
        used_at=rfc3339(coupon.used_at) if coupon.used_at else None,
    )


def coupon_from_item(item: CouponItem) -> Coupon:
    return Coupon(
        code=item.code,
        member_id=item.coupon_owner,
        template_id=item.template_id,
        terms=terms_from_data(item.terms.as_dict()),
        valid_from=datetime.fromisoformat(item.valid_from),
        valid_to=datetime.fromisoformat(item.valid_to),
        issued_at=datetime.fromisoformat(item.issued_at),
        source=item.source,
        source_id=item.source_id,
        status=item.status,  # type: ignore[arg-type]
        used_by=item.used_by,
        used_at=datetime.fromisoformat(item.used_at) if item.used_at else None,
    )


def coupon_change(change: CouponChange) -> tuple[CouponItem, list[Any], Condition]:
    """The update a commit makes to a coupon, conditional on the state it needs: a use
    only of an active coupon of this member (two tills at once: one wins), a restore only
    of the coupon this purchase used, a void only of an active one."""
    item = CouponItem(pk=coupon_pk(change.code), sk=COUPON_SK)
    owner = CouponItem.coupon_owner == change.member_id
    if change.action == "use":
        return (
            item,
            [
                CouponItem.status.set("used"),
                CouponItem.used_by.set(change.ref),
                CouponItem.used_at.set(rfc3339(change.at)),
                CouponItem.version.add(1),
            ],
            owner & (CouponItem.status == "active"),
        )
    if change.action == "restore":
        return (
            item,
            [
                CouponItem.status.set("active"),
                CouponItem.used_by.remove(),
                CouponItem.used_at.remove(),
                CouponItem.version.add(1),
            ],
            owner & (CouponItem.status == "used") & (CouponItem.used_by == change.ref),
        )
    return (
        item,
        [
            CouponItem.status.set("void"),
            CouponItem.used_by.set(change.ref),
            CouponItem.version.add(1),
        ],
        owner & (CouponItem.status == "active"),
    )
