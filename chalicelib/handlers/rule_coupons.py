"""Coupons the program issues by itself (`coupon_rules` in the program configuration):
the welcome pack on registration, the first purchase, each birthday, each move up to a
tier. Called by the members stream and the birthday job.

Each coupon is issued once per member, occasion and template (its request record names
them: `REQ#coupon#rule:<occasion>-<template>`), so a redelivered stream record or a
rerun job issues nothing new. A coupon that can never be issued (the template retired,
missing or over, the member erased) is logged and counted (`RuleCouponsRefused`), not
raised: a failing stream record is retried and holds up its whole shard. Transient
failures (CONTENDED, throttling) raise, so the record or task is retried and the coupon,
idempotent, is issued then.
"""

from __future__ import annotations

from collections.abc import Iterable

from chalicelib.errors import BusinessRuleViolation, Conflict, NotFound
from chalicelib.observability import logger, metrics


def issue_rule_coupons(member_id: str, occasion: str, template_ids: Iterable[str]) -> int:
    """Issue each template's coupon for this occasion; how many were issued or already
    had been (a replay answers the first issue)."""
    from chalicelib.dal.coupons import DynamoCouponRepository
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.coupon_issue import rule_issue

    store = DynamoCouponRepository()
    issued = 0
    for template_id in template_ids:
        try:
            rule_issue(store, member_id, occasion, template_id, utc_now())
        except (NotFound, BusinessRuleViolation, Conflict) as exc:
            logger.error(
                "rule coupon refused",
                extra={
                    "member_id": member_id,
                    "occasion": occasion,
                    "template_id": template_id,
                    "code": exc.code,
                },
            )
            metrics.add_metric(name="RuleCouponsRefused", unit="Count", value=1)
            continue
        issued += 1
    if issued:
        metrics.add_metric(name="RuleCouponsIssued", unit="Count", value=issued)
    return issued
