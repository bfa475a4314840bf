"""Program configuration, stores and POS keys; short-lived guards (POS nonces)."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import asdict, replace
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal import crypto
from chalicelib.dal.audit import append as append_audit
from chalicelib.dal.audit import put_audited, update_audited
from chalicelib.dal.cursors import decode_cursor, encode_cursor
from chalicelib.dal.tables import (
    GuardItem,
    ProgramItem,
    StoreKeyItem,
    reason_codes,
    save_if_new,
    update_if,
)
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.clock import rfc3339, utc_now
from chalicelib.domain.program import (
    DEFAULT_PROGRAM,
    ProgramConfig,
    config_from_dict,
    config_to_dict,
)
from chalicelib.domain.stores import Dealer, FirstAnswer, Store, StoreKey
from chalicelib.domain.tiers import DEFAULT_TIERS, Tier, TierBenefits
from chalicelib.errors import Conflict, Unavailable
from chalicelib.retry import Again, retry

TIERS_PK, TIERS_SK = "PROGRAM", "TIERS"
CONFIG_PK, CONFIG_SK = "PROGRAM", "CONFIG"
# Configuration changes rarely and is read by every request: a container keeps what it
# read for a short while instead of paying a read each time.
CACHE_SECONDS = 30.0
# Short: a closed store or a revoked key must stop working within seconds in every
# container (the container that made the change sees it at once).
STORE_CACHE_SECONDS = 10.0
KEY_CACHE_SECONDS = 10.0


def _clock() -> float:
    """Seconds on a monotonic clock (tests move it instead of waiting)."""
    return time.monotonic()


class _TtlCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        hit = self._entries.get(key)
        if hit is None or hit[0] < _clock():
            return None
        return hit[1]

    def put(self, key: str, value: Any, seconds: float = CACHE_SECONDS) -> None:
        self._entries[key] = (_clock() + seconds, value)

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

    def config(self, *, fresh: bool = False) -> ProgramConfig:
        """`fresh`: a consistent read past the cache (to compare before replacing)."""
        cached = None if fresh else self._cache.get("config")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(CONFIG_PK, CONFIG_SK, consistent_read=fresh)
            config = config_from_dict(item.data.as_dict() if item.data is not None else {})
        except DoesNotExist:
            config = DEFAULT_PROGRAM
        self._cache.put("config", config)
        return config

    def save_config(
        self,
        config: ProgramConfig,
        expected_version: int | None = None,
        audit: AuditEntry | None = None,
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
        if not put_audited(item, condition, audit):
            raise Conflict(
                "the configuration changed meanwhile; reload it", code="VERSION_CONFLICT"
            )
        self._cache.clear()
        return saved

    def save_tiers(self, tiers: tuple[Tier, ...], version: int = 1) -> None:
        _tiers_item(tiers, version).save()
        self._cache.clear()

    # ---- tier rule versions: TIER_RULES / v<000001> ------------------------------------

    def create_rules_version(self, tiers: tuple[Tier, ...], audit: AuditEntry | None = None) -> int:
        """A new draft version after the highest existing one (a race retries), with the
        proposing staff's entry (its target and `after` name the version) in one
        transaction."""

        def attempt() -> int:
            latest = list(
                ProgramItem.query(
                    "TIER_RULES", scan_index_forward=False, limit=1, consistent_read=True
                )
            )
            version = int(latest[0].sk[1:]) + 1 if latest else 2  # version 1: the seed
            draft = ProgramItem(
                pk="TIER_RULES",
                sk=f"v{version:06d}",
                kind="tier_rules",
                data={
                    "version": version,
                    "status": "draft",
                    "tiers": [asdict(t) for t in tiers],
                    "dry_run": dict(EMPTY_COUNTS),
                    "apply": dict(EMPTY_COUNTS),
                    # segment -> true once its counts were added (exactly once)
                    "dry_run_done": {},
                    "apply_done": {},
                    "created_at": rfc3339(utc_now()),
                },
                updated_at=rfc3339(utc_now()),
            )
            numbered = audit and replace(
                audit,
                target=f"tier_rules:v{version}",
                after={**(audit.after or {}), "version": version, "status": "draft"},
            )
            if not put_audited(draft, ProgramItem.pk.does_not_exist(), numbered):
                raise Again  # another version took this number meanwhile
            return version

        return retry(
            attempt,
            attempts=5,
            retry_on=Again,
            exhausted=lambda: Conflict(
                "tier rules are being changed concurrently; retry", code="VERSION_CONFLICT"
            ),
        )

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

    def change_rules_status(self, version: int, status: str, expected: Collection[str]) -> bool:
        """Set the version's status if it is one of `expected` (and the version exists);
        False, nothing written, if not."""
        return update_if(
            _rules_item(version), [ProgramItem.data["status"].set(status)], _status_in(expected)
        )

    def apply_rules(
        self,
        version: int,
        tiers: tuple[Tier, ...],
        expected: Collection[str],
        audit: AuditEntry | None = None,
    ) -> bool:
        """The ladder becomes current and the version `applying`, in one transaction
        conditional on the version's status: of two applies at once, one writes both and
        the other nothing (False)."""

        def attempt() -> bool:
            try:
                with TransactWrite(connection=_connection()) as txn:
                    txn.save(_tiers_item(tiers, version))
                    txn.update(
                        _rules_item(version),
                        actions=[ProgramItem.data["status"].set("applying")],
                        condition=_status_in(expected),
                    )
                    append_audit(txn, audit)
            except TransactWriteError as exc:
                if "ConditionalCheckFailed" in reason_codes(exc):
                    return False
                raise
            return True

        # Two transactions on the same items at once: one is cancelled with
        # TransactionConflict; the retry then finds the status moved (False).
        applied = retry(
            attempt,
            attempts=4,
            retry_on=TransactWriteError,
            retry_if=lambda exc: "TransactionConflict" in reason_codes(exc),
            exhausted=lambda: Unavailable("tier rules contended; retry", code="CONTENDED"),
        )
        self._cache.clear()
        return applied

    def start_dry_run(
        self, version: int, expected: Collection[str], audit: AuditEntry | None = None
    ) -> int | None:
        """Status dry_run_running, the dry-run counts at zero and the run number one up,
        in one update conditional on the status (with the staff's entry, one
        transaction); the new run number, or None."""
        item = _rules_item(version)
        started = update_audited(
            item,
            [
                ProgramItem.data["status"].set("dry_run_running"),
                ProgramItem.data["dry_run"].set(dict(EMPTY_COUNTS)),
                ProgramItem.data["dry_run_runs"].add(1),
            ],
            _status_in(expected),
            audit,
        )
        if not started:
            return None
        if audit is not None:  # a transaction returns no image: read the run number
            item = ProgramItem.get(item.pk, item.sk, consistent_read=True)
        return int((item.data.as_dict() if item.data is not None else {})["dry_run_runs"])

    def add_rules_counts(
        self, version: int, mode: str, counts: dict[str, int], segment: int, run: int
    ) -> int:
        """Add one finished scan segment's counts to run `run`, once (the segment joins
        that run's set in the same conditional update). Returns how many of the run's
        segments are done, -1 if this one was added before."""
        item = _rules_item(version)
        prefix = _run_prefix(run)
        done_path = ProgramItem.data[f"{mode}_done"][f"{prefix}{segment}"]
        added = update_if(
            item,
            [
                *[ProgramItem.data[mode][name].add(value) for name, value in counts.items()],
                done_path.set(True),
            ],
            done_path.does_not_exist(),
        )
        if not added:
            return -1
        data = item.data.as_dict() if item.data is not None else {}
        done = data.get(f"{mode}_done") or {}
        return sum(1 for key in done if key.startswith(prefix) and key[len(prefix) :].isdigit())

    # ---- dealers, stores and POS keys (domain/stores.py) --------------------------------
    #   DEALER#<id> / DEALER        the dealer            DEALERS / <id>   listing entry
    #   STORE#<id>  / STORE         the store             STORES  / <id>   listing entry
    #   STOREKEY#<key> / KEY        the key and secret    STORE#<id> / KEY#<key>  listing
    # Listing entries hold nothing but the id and never change, so nothing keeps them in
    # step; each is written in the same transaction as what it lists.

    def dealer(self, dealer_id: str) -> Dealer | None:
        try:
            item = ProgramItem.get(f"DEALER#{dealer_id}", "DEALER", consistent_read=True)
        except DoesNotExist:
            return None
        return _dealer(dealer_id, _data(item))

    def store(self, store_id: str, *, fresh: bool = False) -> Store | None:
        key = f"store:{store_id}"
        cached = None if fresh else self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(f"STORE#{store_id}", "STORE", consistent_read=fresh)
        except DoesNotExist:
            return None
        store = _store(store_id, _data(item))
        self._cache.put(key, store, seconds=STORE_CACHE_SECONDS)
        return store

    def add_dealer(
        self,
        dealer: Dealer,
        request_hash: str,
        response: dict[str, Any],
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None:
        data = {
            "name": dealer.name,
            "created_at": dealer.created_at,
            "request_hash": request_hash,
            "response": response,
        }
        entity = ProgramItem(
            pk=f"DEALER#{dealer.dealer_id}",
            sk="DEALER",
            kind="dealer",
            data=data,
            updated_at=dealer.created_at,
        )
        listing = ProgramItem(pk="DEALERS", sk=dealer.dealer_id, kind="listing")
        return add_listed(entity, listing, audit)

    def add_store(
        self,
        store: Store,
        request_hash: str,
        response: dict[str, Any],
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None:
        data = {
            "dealer_id": store.dealer_id,
            "name": store.name,
            "active": store.active,
            "created_at": store.created_at,
            "updated_at": store.updated_at,
            "request_hash": request_hash,
            "response": response,
        }
        entity = ProgramItem(
            pk=f"STORE#{store.store_id}",
            sk="STORE",
            kind="store",
            data=data,
            updated_at=store.updated_at,
        )
        listing = ProgramItem(pk="STORES", sk=store.store_id, kind="listing")
        found = add_listed(entity, listing, audit)
        if found is None:
            self._cache.put(f"store:{store.store_id}", store, seconds=STORE_CACHE_SECONDS)
        return found

    def update_store(
        self, store_id: str, changes: dict[str, Any], now: str, audit: AuditEntry | None = None
    ) -> Store | None:
        item = ProgramItem(pk=f"STORE#{store_id}", sk="STORE")
        actions = [ProgramItem.data[name].set(value) for name, value in changes.items()]
        actions += [ProgramItem.data["updated_at"].set(now), ProgramItem.updated_at.set(now)]
        if not update_audited(item, actions, ProgramItem.pk.exists(), audit):
            return None
        if audit is not None:  # a transaction returns no image: read it back
            item = ProgramItem.get(item.pk, item.sk, consistent_read=True)
        store = _store(store_id, _data(item))
        # This container sees the change at once; others within STORE_CACHE_SECONDS.
        self._cache.put(f"store:{store_id}", store, seconds=STORE_CACHE_SECONDS)
        return store

    def stores(self, limit: int, cursor: str | None) -> tuple[list[Store], str | None]:
        ids, next_cursor = _listing("STORES", "", limit, cursor)
        return [_store(i, data) for i, data in _listed_data("STORE", ids)], next_cursor

    def dealers(self, limit: int, cursor: str | None) -> tuple[list[Dealer], str | None]:
        ids, next_cursor = _listing("DEALERS", "", limit, cursor)
        return [_dealer(i, data) for i, data in _listed_data("DEALER", ids)], next_cursor

    def store_keys(
        self, store_id: str, limit: int, cursor: str | None
    ) -> tuple[list[StoreKey], str | None]:
        ids, next_cursor = _listing(f"STORE#{store_id}", "KEY#", limit, cursor)
        items = {
            item.key_id: item
            for item in StoreKeyItem.batch_get([(f"STOREKEY#{i}", "KEY") for i in ids])
        }
        return [_store_key(items[i]) for i in ids if i in items], next_cursor

    def store_key(self, key_id: str) -> StoreKey | None:
        key = f"key:{key_id}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = StoreKeyItem.get(f"STOREKEY#{key_id}", "KEY")
        except DoesNotExist:
            return None
        store_key = _store_key(item)
        # Short: a revoked key must stop working quickly.
        self._cache.put(key, store_key, seconds=KEY_CACHE_SECONDS)
        return store_key

    def add_store_key(self, key: StoreKey, audit: AuditEntry | None = None) -> bool:
        """The key and its listing entry under the store; False if the key id is taken."""
        assert key.created_at is not None
        item = StoreKeyItem(
            pk=f"STOREKEY#{key.key_id}",
            sk="KEY",
            key_id=key.key_id,
            store_id=key.store_id,
            sealed_secret=crypto.cipher().seal_secret(key.key_id, key.secret),
            active=key.active,
            created_at=key.created_at,
        )
        listing = ProgramItem(pk=f"STORE#{key.store_id}", sk=f"KEY#{key.key_id}", kind="listing")
        try:
            with TransactWrite(connection=_connection()) as txn:
                txn.save(item, condition=StoreKeyItem.pk.does_not_exist())
                txn.save(listing, condition=ProgramItem.pk.does_not_exist())
                append_audit(txn, audit)
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" in reason_codes(exc):
                return False
            raise
        return True

    def revoke_store_key(
        self, store_id: str, key_id: str, now: str, audit: AuditEntry | None = None
    ) -> StoreKey | None:
        """Only a key of this store; the first revocation time stays. With `audit`, the
        revocation and its entry are one transaction, conditional on the key being active
        too: revoking a revoked key again writes nothing (and no second entry)."""
        item = StoreKeyItem(pk=f"STOREKEY#{key_id}", sk="KEY")
        revoking = [
            StoreKeyItem.active.set(False),
            StoreKeyItem.revoked_at.set(StoreKeyItem.revoked_at | now),
        ]
        if audit is not None:
            ours = StoreKeyItem.store_id == store_id
            update_audited(item, revoking, ours & (StoreKeyItem.active == True), audit)  # noqa: E712
            try:
                item = StoreKeyItem.get(item.pk, item.sk, consistent_read=True)
            except DoesNotExist:
                return None
            if item.store_id != store_id:
                return None
        elif not update_if(item, revoking, StoreKeyItem.store_id == store_id):
            return None
        revoked = _store_key(item)
        self._cache.put(f"key:{key_id}", revoked, seconds=KEY_CACHE_SECONDS)
        return revoked


def add_listed(
    entity: ProgramItem, listing: ProgramItem, audit: AuditEntry | None = None
) -> FirstAnswer | None:
    """Write an entity and its listing entry, both only if new (stores, dealers, coupon
    templates), with the staff's audit entry. None when written; otherwise what the first
    create stored (its request hash and answer), and nothing written (no entry either)."""
    try:
        with TransactWrite(connection=_connection()) as txn:
            txn.save(entity, condition=ProgramItem.pk.does_not_exist())
            txn.save(listing, condition=ProgramItem.pk.does_not_exist())
            append_audit(txn, audit)
    except TransactWriteError as exc:
        try:
            existing = ProgramItem.get(entity.pk, entity.sk, consistent_read=True)
        except DoesNotExist:
            if "TransactionConflict" in reason_codes(exc):
                # The same id being created by a request still in flight.
                raise Unavailable("contended; retry", code="CONTENDED") from exc
            raise exc from None
        data = _data(existing)
        hashed = data.get("request_hash")
        return FirstAnswer(str(hashed) if hashed else None, dict(data.get("response") or {}))
    return None


def _tiers_item(tiers: tuple[Tier, ...], version: int) -> ProgramItem:
    return ProgramItem(
        pk=TIERS_PK,
        sk=TIERS_SK,
        kind="tiers",
        data={"tiers": [asdict(t) for t in tiers], "version": version},
        updated_at=rfc3339(utc_now()),
    )


EMPTY_COUNTS = {"scanned": 0, "up": 0, "down": 0, "same": 0, "changed": 0}


def _run_prefix(run: int) -> str:
    """Done markers of run 1 are `s<segment>` (as stored before runs were numbered), of a
    later run `r<run>s<segment>`."""
    return "s" if run == 1 else f"r{run}s"


def _rules_item(version: int) -> ProgramItem:
    return ProgramItem(pk="TIER_RULES", sk=f"v{version:06d}")


def _status_in(expected: Collection[str]) -> Any:
    return ProgramItem.data["status"].is_in(*expected)


def _connection() -> Connection:
    """The Program table's own connection (and session), for transactions."""
    return ProgramItem._get_connection().connection


def _data(item: ProgramItem) -> dict[str, Any]:
    data: dict[str, Any] = item.data.as_dict() if item.data is not None else {}
    return data


def _dealer(dealer_id: str, data: dict[str, Any]) -> Dealer:
    created = data.get("created_at")
    return Dealer(dealer_id, str(data.get("name", dealer_id)), str(created) if created else None)


def _store(store_id: str, data: dict[str, Any]) -> Store:
    created, updated = data.get("created_at"), data.get("updated_at")
    return Store(
        store_id=store_id,
        dealer_id=str(data.get("dealer_id", "")),
        name=str(data.get("name", store_id)),
        active=bool(data.get("active", True)),
        created_at=str(created) if created else None,
        updated_at=str(updated) if updated else None,
    )


def _store_key(item: StoreKeyItem) -> StoreKey:
    return StoreKey(
        key_id=item.key_id,
        store_id=item.store_id,
        secret=crypto.cipher().open_secret(item.key_id, item.sealed_secret),
        active=item.active,
        created_at=item.created_at,
        revoked_at=item.revoked_at,
    )


def _listing(pk: str, prefix: str, limit: int, cursor: str | None) -> tuple[list[str], str | None]:
    """Ids from a listing partition, in id order, paged with an opaque cursor."""
    start = decode_cursor(cursor, pk, prefix) if cursor else None
    query = ProgramItem.query(
        pk,
        ProgramItem.sk.startswith(prefix) if prefix else None,
        limit=limit,
        last_evaluated_key=start,
        consistent_read=True,
    )
    ids = [item.sk.removeprefix(prefix) for item in query]
    last = query.last_evaluated_key
    return ids, encode_cursor(last) if last else None


def _listed_data(kind: str, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The `<KIND>#<id>/<KIND>` items of a page of listed ids, in the listing's order, in
    one BatchGetItem (an id whose item is missing is left out)."""
    items = {
        item.pk.removeprefix(f"{kind}#"): item
        for item in ProgramItem.batch_get([(f"{kind}#{i}", kind) for i in ids])
    }
    return [(i, _data(items[i])) for i in ids if i in items]


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
        return save_if_new(item, GuardItem.pk.does_not_exist())

    def claimed(self, key: str, kind: str) -> bool:
        # Strongly consistent: a request that failed a moment ago has claimed its nonce,
        # and its replay must see that claim. An expired marker TTL has not removed yet
        # still counts: by then the request's timestamp is long outside the window.
        try:
            GuardItem.get(key, kind, consistent_read=True, attributes_to_get=["pk"])
        except DoesNotExist:
            return False
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
