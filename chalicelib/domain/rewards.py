"""The points-mall catalog (product capability 7): rewards staff define, and how their
stock is spread over shards so a flash sale does not queue every redemption on one item.

A reward's configuration changes rarely and is read by every listing (cached per
container); its stock is a counter split over `stock_shards` items, read live. A
redemption takes units from one shard (or several when none holds enough alone), each
conditional on that shard holding them: two redemptions conflict only when they pick the
same shard, and stock can never go below zero.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from chalicelib.domain.clock import rfc3339
from chalicelib.errors import BusinessRuleViolation, InvalidInput

RewardKind = Literal["gift", "coupon", "service"]
MAX_SHARDS = 32
# Units a shard should hold at least: below this a reward keeps one shard (a redemption
# reads and writes fewer items); hot stock is spread over up to DEFAULT_MAX_SHARDS.
UNITS_PER_SHARD = 50
DEFAULT_MAX_SHARDS = 16


@dataclass(frozen=True)
class MemberLimit:
    count: int
    period: Literal["day", "month", "ever"]


@dataclass(frozen=True)
class Reward:
    reward_id: str
    name: str
    kind: RewardKind
    points: int
    stock_shards: int
    cash: int = 0  # fen; > 0: points + cash, paid after the redemption reserves
    name_en: str | None = None
    description: str | None = None
    description_en: str | None = None
    image_url: str | None = None
    per_member_limit: MemberLimit | None = None
    tiers: tuple[str, ...] = ()  # empty: every tier
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    coupon_template_id: str | None = None
    status: Literal["active", "retired"] = "active"
    created_at: str = ""
    updated_at: str = ""
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def available_at(self, now: datetime) -> bool:
        """Open for new redemptions: active and inside its validity window."""
        if self.status != "active":
            return False
        if self.valid_from is not None and now < self.valid_from:
            return False
        return not (self.valid_to is not None and now > self.valid_to)

    def allows_tier(self, tier_code: str) -> bool:
        return not self.tiers or tier_code in self.tiers


def default_shards(stock: int) -> int:
    """One shard below UNITS_PER_SHARD units, then one per UNITS_PER_SHARD up to 16."""
    return max(1, min(DEFAULT_MAX_SHARDS, stock // UNITS_PER_SHARD))


def spread(total: int, shards: int) -> dict[int, int]:
    """`total` units over `shards` shards, as even as can be (the first ones one more)."""
    base, extra = divmod(total, shards)
    return {n: base + (1 if n < extra else 0) for n in range(shards)}


def check_reward(reward: Reward, template_active: bool | None) -> None:
    """What a create or an edit must satisfy (`template_active`: None when no template
    was named, else whether the named one exists and is active)."""
    if reward.kind == "coupon":
        if reward.coupon_template_id is None:
            raise InvalidInput(
                "a coupon reward names its coupon_template_id",
                code="VALIDATION_ERROR",
                details={"fields": [{"field": "coupon_template_id", "issue": "required"}]},
            )
        if not template_active:
            raise BusinessRuleViolation(
                "no active coupon template with this id",
                code="COUPON_TEMPLATE_NOT_FOUND",
                details={"coupon_template_id": reward.coupon_template_id},
            )
    elif reward.coupon_template_id is not None:
        raise InvalidInput(
            "only a coupon reward names a coupon template",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "coupon_template_id", "issue": "coupon kind only"}]},
        )
    if reward.valid_from and reward.valid_to and reward.valid_to <= reward.valid_from:
        raise InvalidInput(
            "valid_to must be after valid_from",
            code="VALIDATION_ERROR",
            details={"fields": [{"field": "valid_to", "issue": "before valid_from"}]},
        )


def pick_shards(shards: dict[int, int], quantity: int, rng: random.Random) -> dict[int, int]:
    """Shard -> units to take for `quantity` units: one shard chosen at random, weighted
    by the units it holds, among those holding enough; when none does alone, the fullest
    first until the quantity is covered. Raises OUT_OF_STOCK when all together hold
    fewer."""
    if sum(max(left, 0) for left in shards.values()) < quantity:
        raise out_of_stock(sum(max(left, 0) for left in shards.values()))
    enough = [(n, left) for n, left in sorted(shards.items()) if left >= quantity]
    if enough:
        (chosen,) = rng.choices([n for n, _ in enough], weights=[w for _, w in enough])
        return {chosen: quantity}
    taken: dict[int, int] = {}
    need = quantity
    for n, left in sorted(shards.items(), key=lambda kv: -kv[1]):
        take = min(need, left)
        if take > 0:
            taken[n] = take
            need -= take
        if need == 0:
            break
    return taken


def out_of_stock(left: int) -> BusinessRuleViolation:
    return BusinessRuleViolation(
        "this reward is out of stock", code="OUT_OF_STOCK", details={"stock_left": left}
    )


# ---- stored form (Program table data map) --------------------------------------------


def reward_to_data(reward: Reward) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reward_id": reward.reward_id,
        "name": reward.name,
        "kind": reward.kind,
        "points": reward.points,
        "cash": reward.cash,
        "stock_shards": reward.stock_shards,
        "tiers": list(reward.tiers),
        "status": reward.status,
        "created_at": reward.created_at,
        "updated_at": reward.updated_at,
        "version": reward.version,
    }
    for name in ("name_en", "description", "description_en", "image_url", "coupon_template_id"):
        value = getattr(reward, name)
        if value is not None:
            data[name] = value
    if reward.per_member_limit is not None:
        data["per_member_limit"] = {
            "count": reward.per_member_limit.count,
            "period": reward.per_member_limit.period,
        }
    if reward.valid_from is not None:
        data["valid_from"] = rfc3339(reward.valid_from)
    if reward.valid_to is not None:
        data["valid_to"] = rfc3339(reward.valid_to)
    return data


def reward_from_data(data: dict[str, Any]) -> Reward:
    limit = data.get("per_member_limit")
    return Reward(
        reward_id=str(data["reward_id"]),
        name=str(data["name"]),
        kind=data["kind"],
        points=int(data["points"]),
        cash=int(data.get("cash") or 0),
        stock_shards=int(data.get("stock_shards") or 1),
        name_en=data.get("name_en"),
        description=data.get("description"),
        description_en=data.get("description_en"),
        image_url=data.get("image_url"),
        per_member_limit=(
            MemberLimit(int(limit["count"]), limit["period"]) if limit is not None else None
        ),
        tiers=tuple(str(t) for t in data.get("tiers") or ()),
        valid_from=_when(data.get("valid_from")),
        valid_to=_when(data.get("valid_to")),
        coupon_template_id=data.get("coupon_template_id"),
        status=data.get("status", "active"),
        created_at=str(data.get("created_at") or ""),
        updated_at=str(data.get("updated_at") or ""),
        version=int(data.get("version") or 1),
    )


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def edited(reward: Reward, changes: dict[str, Any], now: datetime) -> Reward:
    """The reward with an edit's fields (already parsed to domain values) applied."""
    return replace(reward, **changes, updated_at=rfc3339(now), version=reward.version + 1)
