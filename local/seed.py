"""Demo program for the local stack: default tiers, a dealer with two stores, rewards.
Idempotent: running it again rewrites the same items."""

from __future__ import annotations

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

    svc = services()
    svc.program.save_tiers(DEFAULT_TIERS)
    svc.program.save_dealer(*DEMO_DEALER)
    for store in DEMO_STORES:
        svc.program.save_store(store)
    for reward in DEMO_REWARDS:
        ProgramItem(
            pk=f"REWARD#{reward['reward_id']}", sk="REWARD", kind="reward", data=dict(reward)
        ).save()
