"""Coupon items (Members table, COUPON#<code> / COUPON): how a coupon is stored, and the
conditional changes a points commit makes to one (chalicelib/dal/ledger.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib.dal.cursors import encode_cursor
from chalicelib.dal.tables import CouponItem
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.coupons import Coupon, CouponChange, CouponTemplate, CouponTerms
from chalicelib.domain.records import MemberRequestRef, PurchaseRef, RequestRecord

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


# ---- issuing, listing and redeeming outside a purchase (chalicelib/domain/coupon_issue.py) --


class DynamoCouponRepository:
    """The coupon store of chalicelib/domain/coupon_issue.py on the Members table (coupons,
    their issue records) and the Program table (templates)."""

    def member_exists(self, member_id: str) -> bool:
        from pynamodb.exceptions import DoesNotExist

        from chalicelib.dal.members import MEMBER_SK, member_pk
        from chalicelib.dal.tables import MemberItem

        try:
            item = MemberItem.get(
                member_pk(member_id),
                MEMBER_SK,
                consistent_read=True,
                attributes_to_get=["pk", "erased_at"],
            )
        except DoesNotExist:
            return False
        return item.erased_at is None  # an erased member gets no coupons

    def template(self, template_id: str) -> CouponTemplate | None:
        from chalicelib.dal.coupon_templates import find_template

        return find_template(template_id, consistent=True)

    def template_names(self, template_ids: Iterable[str]) -> dict[str, str]:
        from chalicelib.dal.coupon_templates import find_templates

        return {t.template_id: t.name for t in find_templates(template_ids)}

    def issue_record(self, ref: MemberRequestRef) -> RequestRecord | None:
        from chalicelib.dal.ledger import find_request

        return find_request(ref, consistent=True)

    def add_issued(
        self, coupon: Coupon, record: RequestRecord, audit: AuditEntry | None = None
    ) -> None:
        from pynamodb.exceptions import TransactWriteError
        from pynamodb.transactions import TransactWrite

        from chalicelib.dal.audit import append as append_audit
        from chalicelib.dal.ledger import request_item
        from chalicelib.dal.tables import RequestItem, reason_codes
        from chalicelib.domain.coupon_issue import CodeTaken
        from chalicelib.domain.records import RequestExists
        from chalicelib.errors import Unavailable
        from chalicelib.retry import retry

        def attempt() -> None:
            try:
                with TransactWrite(connection=_connection()) as txn:
                    txn.save(request_item(record), condition=RequestItem.pk.does_not_exist())
                    txn.save(coupon_item(coupon), condition=CouponItem.pk.does_not_exist())
                    append_audit(txn, audit)  # after the two above: their reasons stay 0, 1
            except TransactWriteError as exc:
                reasons = reason_codes(exc)
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    raise RequestExists() from exc
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    raise CodeTaken() from exc
                raise

        # Two deliveries of the same issue at once: one is cancelled with
        # TransactionConflict; its retry finds the record (RequestExists).
        retry(
            attempt,
            attempts=4,
            retry_on=TransactWriteError,
            retry_if=lambda exc: "TransactionConflict" in reason_codes(exc),
            exhausted=lambda: Unavailable("coupon issue contended; retry", code="CONTENDED"),
        )

    def coupon(self, code: str) -> Coupon | None:
        from pynamodb.exceptions import DoesNotExist

        try:
            item = CouponItem.get(coupon_pk(code), COUPON_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return coupon_from_item(item)

    def use(self, code: str, used_by: str, at: datetime, audit: AuditEntry | None = None) -> bool:
        from chalicelib.dal.audit import update_audited

        return update_audited(
            CouponItem(pk=coupon_pk(code), sk=COUPON_SK),
            [
                CouponItem.status.set("used"),
                CouponItem.used_by.set(used_by),
                CouponItem.used_at.set(rfc3339(at)),
                CouponItem.version.add(1),
            ],
            # the one condition that decides between two tills: still active
            CouponItem.status == "active",
            audit,
        )

    def reference(self, purchase: PurchaseRef) -> str:
        from chalicelib.dal.ledger import purchase_pk

        return purchase_pk(purchase)

    def member_coupons(
        self, member_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Coupon], str | None]:
        """A page of the coupon index (newest issued first), then the coupons themselves in
        one BatchGetItem: the index holds only what a glance needs, not the terms."""
        start = _decode_cursor(cursor, member_id) if cursor else None
        query = CouponItem.coupon_index.query(
            member_id, scan_index_forward=False, limit=limit, last_evaluated_key=start
        )
        codes = [item.code if item.code else item.pk.removeprefix("COUPON#") for item in query]
        last = query.last_evaluated_key
        found = (
            {
                item.pk: coupon_from_item(item)
                for item in CouponItem.batch_get([(coupon_pk(c), COUPON_SK) for c in codes])
            }
            if codes
            else {}
        )
        coupons = [found[coupon_pk(c)] for c in codes if coupon_pk(c) in found]
        return coupons, encode_cursor(last) if last else None


def _connection() -> Any:
    """The Members table's own connection, for transactions."""
    return CouponItem._get_connection().connection


def _decode_cursor(cursor: str, member_id: str) -> dict[str, Any]:
    """Only a cursor of this member's listing: the index key must name the member, the
    item key a coupon."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        pk, sk = str(key["pk"]["S"]), str(key["sk"]["S"])
        owner, issued = str(key["coupon_owner"]["S"]), str(key["issued_at"]["S"])
        if (
            owner != member_id
            or sk != COUPON_SK
            or not pk.startswith("COUPON#")
            or not 0 < len(pk.encode()) <= 1024
            or not 0 < len(issued.encode()) <= 64
        ):
            raise ValueError("cursor of another listing")
        return {
            "pk": {"S": pk},
            "sk": {"S": sk},
            "coupon_owner": {"S": owner},
            "issued_at": {"S": issued},
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        from chalicelib.errors import InvalidInput

        raise InvalidInput("invalid cursor", code="INVALID_CURSOR") from exc
