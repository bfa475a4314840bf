"""Demo program for the local stack: default tiers, a dealer with two stores, rewards.
Idempotent: running it again leaves the same items (a demo store an admin has closed or
renamed since stays as the admin left it)."""

from __future__ import annotations

import contextlib
from datetime import datetime

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
DEMO_TEMPLATE = "tpl-10off"


def seed() -> None:
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
    _seed_mall(utc_now())


def _seed_mall(now: datetime) -> None:
    """The demo rewards with their stock shards (a reward created before stays as it
    is; one of an older shape, without shards, is replaced) and the coupon template the
    coupon reward issues from."""
    from chalicelib.dal.coupon_templates import TEMPLATE_SK, template_pk, template_to_data
    from chalicelib.dal.tables import ProgramItem, save_if_new
    from chalicelib.domain.clock import rfc3339
    from chalicelib.domain.coupons import CouponTemplate, CouponTerms
    from chalicelib.domain.rewards import Reward, default_shards
    from chalicelib.ids import request_hash

    template = CouponTemplate(
        DEMO_TEMPLATE, "¥10 off 十元券", CouponTerms("amount_off", 1000, min_spend=5000), 30
    )
    save_if_new(
        ProgramItem(
            pk=template_pk(DEMO_TEMPLATE),
            sk=TEMPLATE_SK,
            kind="coupon_template",
            data=template_to_data(template),
        ),
        ProgramItem.pk.does_not_exist(),
    )
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
