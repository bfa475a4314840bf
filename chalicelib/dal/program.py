"""Program configuration, stores and POS keys; short-lived guards (POS nonces)."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib.dal.tables import GuardItem, ProgramItem, StoreKeyItem
from chalicelib.domain.clock import rfc3339, utc_now
from chalicelib.domain.program import (
    DEFAULT_PROGRAM,
    ProgramConfig,
    config_from_dict,
    config_to_dict,
)
from chalicelib.domain.stores import Store, StoreKey
from chalicelib.domain.tiers import DEFAULT_TIERS, Tier, TierBenefits
from chalicelib.errors import Conflict

TIERS_PK, TIERS_SK = "PROGRAM", "TIERS"
CONFIG_PK, CONFIG_SK = "PROGRAM", "CONFIG"
# Configuration changes rarely and is read by every request: a container keeps what it
# read for a short while instead of paying a read each time.
CACHE_SECONDS = 30.0


class _TtlCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: str, value: Any, seconds: float = CACHE_SECONDS) -> None:
        self._entries[key] = (time.monotonic() + seconds, value)

    def clear(self) -> None:
        self._entries.clear()


class DynamoProgramRepository:
    def __init__(self) -> None:
        self._cache = _TtlCache()

    def tiers(self) -> tuple[Tier, ...]:
        cached = self._cache.get("tiers")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(TIERS_PK, TIERS_SK)
            data = item.data.as_dict() if item.data is not None else {}
            tiers = tuple(_tier_from_dict(raw) for raw in data.get("tiers", []))
            self._cache.put("tiers_version", int(data.get("version", 1)))
        except DoesNotExist:
            tiers = ()
        tiers = tiers or DEFAULT_TIERS
        self._cache.put("tiers", tiers)
        return tiers

    def config(self) -> ProgramConfig:
        cached = self._cache.get("config")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(CONFIG_PK, CONFIG_SK)
            config = config_from_dict(item.data.as_dict() if item.data is not None else {})
        except DoesNotExist:
            config = DEFAULT_PROGRAM
        self._cache.put("config", config)
        return config

    def save_config(
        self, config: ProgramConfig, expected_version: int | None = None
    ) -> ProgramConfig:
        """Ops edit the whole document; `expected_version` guards against lost updates."""
        saved = replace(config, version=config.version + 1)
        item = ProgramItem(
            pk=CONFIG_PK,
            sk=CONFIG_SK,
            kind="config",
            data=config_to_dict(saved),
            updated_at=rfc3339(utc_now()),
        )
        if expected_version is None or expected_version == 0:
            condition = ProgramItem.pk.does_not_exist() if expected_version == 0 else None
        else:
            condition = ProgramItem.data["version"] == expected_version
        try:
            item.save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(
                    "the configuration changed meanwhile; reload it", code="VERSION_CONFLICT"
                ) from exc
            raise
        self._cache.clear()
        return saved

    def save_tiers(self, tiers: tuple[Tier, ...], version: int = 1) -> None:
        ProgramItem(
            pk=TIERS_PK,
            sk=TIERS_SK,
            kind="tiers",
            data={"tiers": [asdict(t) for t in tiers], "version": version},
            updated_at=rfc3339(utc_now()),
        ).save()
        self._cache.clear()

    # ---- tier rule versions: TIER_RULES / v<000001> ------------------------------------

    def create_rules_version(self, tiers: tuple[Tier, ...]) -> int:
        """A new draft version after the highest existing one (a race retries)."""
        for _ in range(5):
            latest = list(ProgramItem.query("TIER_RULES", scan_index_forward=False, limit=1))
            version = int(latest[0].sk[1:]) + 1 if latest else 2  # version 1: the seed
            empty = {"scanned": 0, "up": 0, "down": 0, "same": 0, "changed": 0}
            try:
                ProgramItem(
                    pk="TIER_RULES",
                    sk=f"v{version:06d}",
                    kind="tier_rules",
                    data={
                        "version": version,
                        "status": "draft",
                        "tiers": [asdict(t) for t in tiers],
                        "dry_run": dict(empty),
                        "apply": dict(empty),
                        # segment -> true once its counts were added (exactly once)
                        "dry_run_done": {},
                        "apply_done": {},
                        "created_at": rfc3339(utc_now()),
                    },
                    updated_at=rfc3339(utc_now()),
                ).save(condition=ProgramItem.pk.does_not_exist())
            except PutError as exc:
                if exc.cause_response_code == "ConditionalCheckFailedException":
                    continue
                raise
            return version
        raise Conflict("tier rules are being changed concurrently; retry", code="VERSION_CONFLICT")

    def rules_version(self, version: int) -> dict[str, Any] | None:
        try:
            item = ProgramItem.get("TIER_RULES", f"v{version:06d}", consistent_read=True)
        except DoesNotExist:
            return None
        data: dict[str, Any] = item.data.as_dict() if item.data is not None else {}
        return data

    def rules_tiers(self, version: int) -> tuple[Tier, ...]:
        data = self.rules_version(version)
        if data is None:
            raise KeyError(version)
        return tuple(_tier_from_dict(raw) for raw in data["tiers"])

    def set_rules_status(self, version: int, status: str) -> None:
        ProgramItem(pk="TIER_RULES", sk=f"v{version:06d}").update(
            actions=[ProgramItem.data["status"].set(status)]
        )

    def add_rules_counts(
        self, version: int, mode: str, counts: dict[str, int], segment: int
    ) -> int:
        """Add one finished scan segment's counts, once (the segment joins a set in the
        same conditional update). Returns how many segments are done."""
        item = ProgramItem(pk="TIER_RULES", sk=f"v{version:06d}")
        done_path = ProgramItem.data[f"{mode}_done"][f"s{segment}"]
        try:
            item.update(
                actions=[
                    *[ProgramItem.data[mode][name].add(value) for name, value in counts.items()],
                    done_path.set(True),
                ],
                condition=done_path.does_not_exist(),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            return -1
        data = item.data.as_dict() if item.data is not None else {}
        return len(data.get(f"{mode}_done") or {})

    def store(self, store_id: str) -> Store | None:
        key = f"store:{store_id}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(f"STORE#{store_id}", "STORE")
        except DoesNotExist:
            return None
        data = item.data.as_dict() if item.data is not None else {}
        store = Store(
            store_id=store_id,
            dealer_id=str(data.get("dealer_id", "")),
            name=str(data.get("name", store_id)),
            active=bool(data.get("active", True)),
        )
        self._cache.put(key, store)
        return store

    def save_store(self, store: Store) -> None:
        ProgramItem(
            pk=f"STORE#{store.store_id}",
            sk="STORE",
            kind="store",
            data={"dealer_id": store.dealer_id, "name": store.name, "active": store.active},
            updated_at=rfc3339(utc_now()),
        ).save()

    def save_dealer(self, dealer_id: str, name: str) -> None:
        ProgramItem(
            pk=f"DEALER#{dealer_id}",
            sk="DEALER",
            kind="dealer",
            data={"name": name},
            updated_at=rfc3339(utc_now()),
        ).save()

    def store_key(self, key_id: str) -> StoreKey | None:
        key = f"key:{key_id}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = StoreKeyItem.get(f"STOREKEY#{key_id}", "KEY")
        except DoesNotExist:
            return None
        store_key = StoreKey(
            key_id=item.key_id, store_id=item.store_id, secret=item.secret, active=item.active
        )
        # Short: a revoked key must stop working quickly.
        self._cache.put(key, store_key, seconds=10.0)
        return store_key

    def save_store_key(self, store_key: StoreKey) -> None:
        StoreKeyItem(
            pk=f"STOREKEY#{store_key.key_id}",
            sk="KEY",
            key_id=store_key.key_id,
            store_id=store_key.store_id,
            secret=store_key.secret,
            active=store_key.active,
            created_at=rfc3339(utc_now()),
        ).save(condition=StoreKeyItem.pk.does_not_exist())


class DynamoGuardRepository:
    """Conditional puts that succeed once per key: the POS nonce replay guard."""

    def claim(
        self, key: str, kind: str, ttl_seconds: int, info: dict[str, Any] | None = None
    ) -> bool:
        item = GuardItem(
            pk=key,
            sk=kind,
            kind=kind,
            expires_at=int(time.time()) + ttl_seconds,
            info=info,
        )
        try:
            item.save(condition=GuardItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _tier_from_dict(raw: dict[str, Any]) -> Tier:
    benefits = raw["benefits"]
    return Tier(
        code=str(raw["code"]),
        name=str(raw["name"]),
        name_en=str(raw["name_en"]),
        rank=int(raw["rank"]),
        qualify_spend=int(raw["qualify_spend"]),
        retain_spend=int(raw["retain_spend"]),
        benefits=TierBenefits(
            earn_multiplier=float(benefits["earn_multiplier"]),
            member_discount_pct=int(benefits["member_discount_pct"]),
            birthday_gift=bool(benefits["birthday_gift"]),
            free_shipping=bool(benefits["free_shipping"]),
            priority_service=bool(benefits["priority_service"]),
        ),
    )
