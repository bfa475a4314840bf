"""Program configuration: earning rules, points-as-payment, pending window, expiry,
activities. Stored in DynamoDB, editable by ops; these are the product's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class CategoryRule:
    category: str
    multiplier: float = 1.0  # 0 excludes the category from earning
    # e.g. ("tobacco", 0) excludes; ("fresh", 2.0) doubles


@dataclass(frozen=True)
class CampaignMultiplier:
    """A double-points window (capability 9 will create these from campaigns)."""

    campaign_id: str
    multiplier: float
    starts_at: datetime
    ends_at: datetime
    store_ids: tuple[str, ...] = ()  # empty: every store

    def applies(self, at: datetime, store_id: str) -> bool:
        return self.starts_at <= at < self.ends_at and (
            not self.store_ids or store_id in self.store_ids
        )


@dataclass(frozen=True)
class ActivityRule:
    """Points for an activity and how often it may earn them."""

    points: int
    period: str  # "day" | "month" | "year" | "ever"
    limit: int = 1  # earnings per period


DEFAULT_ACTIVITIES: dict[str, ActivityRule] = {
    "checkin": ActivityRule(points=5, period="day", limit=1),
    "review": ActivityRule(points=20, period="month", limit=5),
    "share": ActivityRule(points=10, period="day", limit=3),
    "referral": ActivityRule(points=200, period="month", limit=10),
    "referral_welcome": ActivityRule(points=100, period="ever", limit=1),
    "profile_completed": ActivityRule(points=50, period="ever", limit=1),
    "birthday": ActivityRule(points=100, period="year", limit=1),
    "signup": ActivityRule(points=100, period="ever", limit=1),
}


@dataclass(frozen=True)
class CouponRules:
    """Coupons the program issues by itself (templates by id), once per member and
    occasion (chalicelib/handlers/rule_coupons.py): on registration, on the first
    purchase, on each birthday (once a year), and on each move up to a tier."""

    welcome: tuple[str, ...] = ()
    first_purchase: tuple[str, ...] = ()
    birthday: tuple[str, ...] = ()
    tier_upgrade: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tier code ->

    def template_ids(self) -> set[str]:
        ids = {*self.welcome, *self.first_purchase, *self.birthday}
        for templates in self.tier_upgrade.values():
            ids.update(templates)
        return ids


def coupon_rules_to_dict(rules: CouponRules) -> dict[str, Any]:
    return {
        "welcome": list(rules.welcome),
        "first_purchase": list(rules.first_purchase),
        "birthday": list(rules.birthday),
        "tier_upgrade": {tier: list(ids) for tier, ids in rules.tier_upgrade.items()},
    }


def coupon_rules_from_dict(raw: dict[str, Any] | None) -> CouponRules:
    raw = raw or {}
    return CouponRules(
        welcome=tuple(str(i) for i in raw.get("welcome") or ()),
        first_purchase=tuple(str(i) for i in raw.get("first_purchase") or ()),
        birthday=tuple(str(i) for i in raw.get("birthday") or ()),
        tier_upgrade={
            str(tier): tuple(str(i) for i in ids)
            for tier, ids in (raw.get("tier_upgrade") or {}).items()
        },
    )


@dataclass(frozen=True)
class ProgramConfig:
    base_points_per_yuan: float = 1.0  # 1 point per ¥1 (100 fen) of eligible spend
    category_rules: tuple[CategoryRule, ...] = ()
    campaign_multipliers: tuple[CampaignMultiplier, ...] = ()
    max_points_per_purchase: int | None = None
    pending_days: int = 0  # return window before purchase points can be spent
    points_per_yuan_payment: int = 100  # 积分抵现: 100 points = ¥1
    payment_cap_pct: int = 50  # points may pay at most this share of a bill
    expiry_policy: str = "rolling"  # or "next_year_end"
    expiry_months: int = 12
    clawback_policy: str = "negative"  # or "floor": never below zero, the loss recorded
    activities: dict[str, ActivityRule] = field(default_factory=lambda: dict(DEFAULT_ACTIVITIES))
    max_adjustment: int = 1_000_000  # one staff adjustment, either sign
    reminder_days: int = 30  # remind members this many days before points expire
    tier_grace_days: int = 0  # after a failed review, this long to make it up (0: none)
    tier_downgrade_policy: str = "one_level"  # or "to_qualified"
    # Points mall: how long a points + cash redemption holds its points and stock for
    # the payment before the release job returns them.
    payment_timeout_minutes: int = 15
    coupon_rules: CouponRules = field(default_factory=CouponRules)
    version: int = 0

    def category_multiplier(self, category: str) -> float:
        for rule in self.category_rules:
            if rule.category == category:
                return rule.multiplier
        return 1.0


DEFAULT_PROGRAM = ProgramConfig()

# Limits: what a point is worth as payment and how many points one action may move. Only
# an admin changes them; ops edit the rest of the program (README, Authentication).
LIMIT_FIELDS = (
    "max_adjustment",
    "max_points_per_purchase",
    "payment_cap_pct",
    "points_per_yuan_payment",
)


def changed_limits(current: ProgramConfig, proposed: ProgramConfig) -> list[str]:
    """The limit fields a proposed configuration changes. An activity rule that grants
    more per earning than `max_adjustment` counts as one too: otherwise ops could make a
    check-in worth more than the most an admin lets staff grant by hand."""
    changed = [name for name in LIMIT_FIELDS if getattr(current, name) != getattr(proposed, name)]
    for name, rule in sorted(proposed.activities.items()):
        if rule != current.activities.get(name) and rule.points > proposed.max_adjustment:
            changed.append(f"activities.{name}")
    return changed


def config_to_dict(config: ProgramConfig) -> dict[str, Any]:
    return {
        "base_points_per_yuan": config.base_points_per_yuan,
        "category_rules": [
            {"category": r.category, "multiplier": r.multiplier} for r in config.category_rules
        ],
        "campaign_multipliers": [
            {
                "campaign_id": c.campaign_id,
                "multiplier": c.multiplier,
                "starts_at": c.starts_at.isoformat(),
                "ends_at": c.ends_at.isoformat(),
                "store_ids": list(c.store_ids),
            }
            for c in config.campaign_multipliers
        ],
        "max_points_per_purchase": config.max_points_per_purchase,
        "pending_days": config.pending_days,
        "points_per_yuan_payment": config.points_per_yuan_payment,
        "payment_cap_pct": config.payment_cap_pct,
        "expiry_policy": config.expiry_policy,
        "expiry_months": config.expiry_months,
        "clawback_policy": config.clawback_policy,
        "activities": {
            name: {"points": r.points, "period": r.period, "limit": r.limit}
            for name, r in config.activities.items()
        },
        "max_adjustment": config.max_adjustment,
        "reminder_days": config.reminder_days,
        "tier_grace_days": config.tier_grace_days,
        "tier_downgrade_policy": config.tier_downgrade_policy,
        "payment_timeout_minutes": config.payment_timeout_minutes,
        "coupon_rules": coupon_rules_to_dict(config.coupon_rules),
        "version": config.version,
    }


def config_from_dict(raw: dict[str, Any]) -> ProgramConfig:
    defaults = ProgramConfig()
    activities = dict(defaults.activities)
    for name, rule in (raw.get("activities") or {}).items():
        activities[name] = ActivityRule(
            points=int(rule["points"]), period=str(rule["period"]), limit=int(rule["limit"])
        )
    cap = raw.get("max_points_per_purchase")
    return ProgramConfig(
        base_points_per_yuan=float(raw.get("base_points_per_yuan", defaults.base_points_per_yuan)),
        category_rules=tuple(
            CategoryRule(str(r["category"]), float(r["multiplier"]))
            for r in raw.get("category_rules") or []
        ),
        campaign_multipliers=tuple(
            CampaignMultiplier(
                campaign_id=str(c["campaign_id"]),
                multiplier=float(c["multiplier"]),
                starts_at=datetime.fromisoformat(str(c["starts_at"])),
                ends_at=datetime.fromisoformat(str(c["ends_at"])),
                store_ids=tuple(c.get("store_ids") or ()),
            )
            for c in raw.get("campaign_multipliers") or []
        ),
        max_points_per_purchase=int(cap) if cap is not None else None,
        pending_days=int(raw.get("pending_days", defaults.pending_days)),
        points_per_yuan_payment=int(
            raw.get("points_per_yuan_payment", defaults.points_per_yuan_payment)
        ),
        payment_cap_pct=int(raw.get("payment_cap_pct", defaults.payment_cap_pct)),
        expiry_policy=str(raw.get("expiry_policy", defaults.expiry_policy)),
        expiry_months=int(raw.get("expiry_months", defaults.expiry_months)),
        clawback_policy=str(raw.get("clawback_policy", defaults.clawback_policy)),
        activities=activities,
        max_adjustment=int(raw.get("max_adjustment", defaults.max_adjustment)),
        reminder_days=int(raw.get("reminder_days", defaults.reminder_days)),
        tier_grace_days=int(raw.get("tier_grace_days", defaults.tier_grace_days)),
        tier_downgrade_policy=str(raw.get("tier_downgrade_policy", defaults.tier_downgrade_policy)),
        payment_timeout_minutes=int(
            raw.get("payment_timeout_minutes", defaults.payment_timeout_minutes)
        ),
        coupon_rules=coupon_rules_from_dict(raw.get("coupon_rules")),
        version=int(raw.get("version", 0)),
    )
