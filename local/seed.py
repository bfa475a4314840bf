"""Demo program for the local stack: default tiers, a dealer with two stores, rewards.
Idempotent: running it again leaves the same items (a demo store an admin has closed or
renamed since stays as the admin left it)."""

from __future__ import annotations

import contextlib

from chalicelib.domain.stores import Store
from chalicelib.domain.tiers import DEFAULT_TIERS
from chalicelib.wiring import services

DEMO_DEALER = ("dealer-demo", "Demo Dealer 演示经销商")
DEMO_STORES = (
    Store("store-001", "dealer-demo", "Demo Store 001 旗舰店"),
    Store("store-002", "dealer-demo", "Demo Store 002 社区店"),
)
DEMO_REWARDS = (
    {"reward_id": "rw-coffee", "name": "Coffee voucher 咖啡券", "points": 500, "stock": 1000},
    {"reward_id": "rw-tote", "name": "Canvas tote 帆布袋", "points": 1200, "stock": 200},
    {"reward_id": "rw-10off", "name": "¥10 off coupon 十元券", "points": 1000, "stock": 5000},
)


def seed() -> None:
    from chalicelib.dal.tables import ProgramItem
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
    for reward in DEMO_REWARDS:
        ProgramItem(
            pk=f"REWARD#{reward['reward_id']}", sk="REWARD", kind="reward", data=dict(reward)
        ).save()
