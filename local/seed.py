"""Demo program for the local stack: default tiers, a dealer with two stores, rewards.
Idempotent: running it again leaves the same items (a demo store an admin has closed or
renamed since stays as the admin left it)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from chalicelib.domain.stores import Store
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.wiring import services

DEMO_DEALER = ("dealer-demo", "Demo Dealer 演示经销商")
DEMO_STORES = (
    Store("store-001", "dealer-demo", "Demo Store 001 旗舰店"),
    Store("store-002", "dealer-demo", "Demo Store 002 社区店"),
)
DEMO_REWARDS = (
    # (reward id, name, kind, points, cash in fen, stock)
    ("rw-coffee", "Coffee voucher 咖啡券", "service", 500, 0, 1000),
    ("rw-tote", "Canvas tote 帆布袋", "gift", 1200, 0, 200),
    ("rw-10off", "¥10 off coupon 十元券", "coupon", 1000, 0, 5000),
    ("rw-bottle", "Water bottle 保温杯 (points + ¥20)", "gift", 800, 2000, 100),
)
# the coupon reward issues the ¥10 coupon
DEMO_TEMPLATE = "tpl-welcome-10"


# Coupon templates (chalicelib/domain/coupon_templates.py): ¥10 off a bill of ¥100, and
# 8.5折 (15% off) capped at ¥50 off; both valid 30 days from issue.
DEMO_COUPON_TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "template_id": "tpl-welcome-10",
        "name": "满100减10 ¥10 off ¥100",
        "kind": "amount_off",
        "value": 1000,
        "min_spend": 10000,
    },
    {
        "template_id": "tpl-85-off",
        "name": "8.5折 最高减50 15% off, up to ¥50",
        "kind": "percent_off",
        "value": 15,
        "max_off": 5000,
    },
)
# With `demo_rules`: every new member gets the ¥10 welcome coupon, a gold member the 8.5折.
DEMO_WELCOME = ("tpl-welcome-10",)
DEMO_UPGRADE = {"gold": ("tpl-85-off",)}


def seed(demo_rules: bool = False) -> None:
    from chalicelib.domain import stores
    from chalicelib.domain.clock import utc_now
    from chalicelib.errors import Conflict

    svc = services()
    svc.program.save_tiers(DEFAULT_TIERS)
    # The same domain functions as the admin routes, so the demo stores are listed and
    # replaying them is harmless; a conflict is an item changed since (or seeded by an
    # older version of this file): it stays.
    with contextlib.suppress(Conflict):
        stores.create_dealer(*DEMO_DEALER, svc.program, utc_now())
    for store in DEMO_STORES:
        with contextlib.suppress(Conflict):
            stores.create_store(store.store_id, store.dealer_id, store.name, svc.program, utc_now())
    # templates first: the coupon reward names one
    _seed_coupons(demo_rules)
    _seed_mall(utc_now())


def _seed_mall(now: datetime) -> None:
    """The demo rewards with their stock shards (a reward created before stays as it
    is; one of an older shape, without shards, is replaced)."""
    from chalicelib.dal.tables import ProgramItem
    from chalicelib.domain.clock import rfc3339
    from chalicelib.domain.rewards import Reward, default_shards
    from chalicelib.ids import request_hash

    rewards = services().rewards
    for reward_id, name, kind, points, cash, stock in DEMO_REWARDS:
        if rewards.reward(reward_id, fresh=True) is not None:
            continue
        ProgramItem(pk=f"REWARD#{reward_id}", sk="REWARD").delete()  # an older demo shape
        reward = Reward(
            reward_id=reward_id,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            points=points,
            cash=cash,
            stock_shards=default_shards(stock),
            coupon_template_id=DEMO_TEMPLATE if kind == "coupon" else None,
            created_at=rfc3339(now),
            updated_at=rfc3339(now),
        )
        rewards.create(reward, stock, request_hash({"seed": reward_id}))


def _seed_coupons(demo_rules: bool) -> None:
    from dataclasses import replace

    from chalicelib.dal.coupon_templates import DynamoTemplateRepository
    from chalicelib.domain.clock import utc_now
    from chalicelib.domain.coupon_templates import create_template, terms_of
    from chalicelib.domain.coupons import CouponTemplate
    from chalicelib.domain.program import CouponRules
    from chalicelib.errors import Conflict

    for raw in DEMO_COUPON_TEMPLATES:
        template = CouponTemplate(
            template_id=str(raw["template_id"]),
            name=str(raw["name"]),
            terms=terms_of(
                str(raw["kind"]),
                int(raw["value"]),
                int(raw["max_off"]) if "max_off" in raw else None,
                int(raw.get("min_spend", 0)),
                [],
                [],
                False,
            ),
            valid_days=30,
        )
        with contextlib.suppress(Conflict):  # edited by staff since: it stays
            create_template(template, DynamoTemplateRepository(), utc_now())
    if not demo_rules:
        return
    program = services().program
    config = program.config(fresh=True)
    if config.coupon_rules == CouponRules():  # rules ops set are theirs
        rules = CouponRules(welcome=DEMO_WELCOME, tier_upgrade=dict(DEMO_UPGRADE))
        with contextlib.suppress(Conflict):
            program.save_config(replace(config, coupon_rules=rules), config.version)
