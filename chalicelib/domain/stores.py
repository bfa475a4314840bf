"""Stores belong to dealers (经销商); a POS acts for exactly one store through its key.

Admins create dealers and stores, open and close stores, and issue and revoke POS keys
(api.md, Stores and dealers). Creates are idempotent on the client's id: the same id with
the same body answers what the first request answered; another body is a conflict.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.audit import Actor, AuditEntry, entry, named
from chalicelib.domain.clock import rfc3339
from chalicelib.errors import BusinessRuleViolation, Conflict, NotFound
from chalicelib.ids import request_hash
from chalicelib.retry import Again, retry


@dataclass(frozen=True)
class Dealer:
    dealer_id: str
    name: str
    created_at: str | None = None


@dataclass(frozen=True)
class Store:
    store_id: str
    dealer_id: str
    name: str
    active: bool = True
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class StoreKey:
    key_id: str
    store_id: str
    secret: str
    active: bool = True
    created_at: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class FirstAnswer:
    """What a create found already written under its id."""

    request_hash: str | None
    response: dict[str, Any]


class StoreRepository(Protocol):
    def dealer(self, dealer_id: str) -> Dealer | None: ...

    def store(self, store_id: str, *, fresh: bool = False) -> Store | None: ...

    # `audit`: the acting staff's entry, written in the same transaction as the change
    # (none when the change is not written: an id taken, a condition failed).

    def add_dealer(
        self,
        dealer: Dealer,
        request_hash: str,
        response: dict[str, Any],
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None: ...

    def add_store(
        self,
        store: Store,
        request_hash: str,
        response: dict[str, Any],
        audit: AuditEntry | None = None,
    ) -> FirstAnswer | None: ...

    def update_store(
        self, store_id: str, changes: dict[str, Any], now: str, audit: AuditEntry | None = None
    ) -> Store | None: ...

    def add_store_key(self, key: StoreKey, audit: AuditEntry | None = None) -> bool: ...

    def revoke_store_key(
        self, store_id: str, key_id: str, now: str, audit: AuditEntry | None = None
    ) -> StoreKey | None: ...


def dealer_view(dealer: Dealer) -> dict[str, Any]:
    return {"dealer_id": dealer.dealer_id, "name": dealer.name, "created_at": dealer.created_at}


def store_view(store: Store) -> dict[str, Any]:
    return {
        "store_id": store.store_id,
        "dealer_id": store.dealer_id,
        "name": store.name,
        "active": store.active,
        "created_at": store.created_at,
        "updated_at": store.updated_at,
    }


def key_view(key: StoreKey) -> dict[str, Any]:
    """Never the secret: it is shown once, when the key is issued."""
    return {
        "key_id": key.key_id,
        "store_id": key.store_id,
        "active": key.active,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def _first_answer(
    found: FirstAnswer | None, hashed: str, response: dict[str, Any]
) -> dict[str, Any]:
    if found is None:
        return response
    if found.request_hash != hashed:
        raise Conflict(
            "this id was already created with a different body", code="IDEMPOTENCY_CONFLICT"
        )
    return found.response


def create_dealer(
    dealer_id: str, name: str, repo: StoreRepository, now: datetime, by: Actor | None = None
) -> dict[str, Any]:
    hashed = request_hash({"dealer_id": dealer_id, "name": name})
    dealer = Dealer(dealer_id, name, created_at=rfc3339(now))
    response = dealer_view(dealer)
    audit = entry(
        by,
        "dealer.create",
        f"dealer:{dealer_id}",
        now,
        request_id=dealer_id,
        after=named(response, "dealer"),
    )
    return _first_answer(repo.add_dealer(dealer, hashed, response, audit), hashed, response)


def create_store(
    store_id: str,
    dealer_id: str,
    name: str,
    repo: StoreRepository,
    now: datetime,
    by: Actor | None = None,
) -> dict[str, Any]:
    hashed = request_hash({"store_id": store_id, "dealer_id": dealer_id, "name": name})
    # Dealers are never deleted, so a dealer seen here still exists when the store is written.
    if repo.dealer(dealer_id) is None:
        raise BusinessRuleViolation(
            "unknown dealer", code="UNKNOWN_DEALER", details={"dealer_id": dealer_id}
        )
    at = rfc3339(now)
    store = Store(store_id, dealer_id, name, active=True, created_at=at, updated_at=at)
    response = store_view(store)
    audit = entry(
        by,
        "store.create",
        f"store:{store_id}",
        now,
        request_id=store_id,
        after=named(response, "store"),
    )
    return _first_answer(repo.add_store(store, hashed, response, audit), hashed, response)


def update_store(
    store_id: str,
    changes: dict[str, Any],
    repo: StoreRepository,
    now: datetime,
    by: Actor | None = None,
) -> Store:
    """Only `active` and `name`; each is set on its own, so two admins changing different
    fields at once both win."""
    allowed = {k: v for k, v in changes.items() if k in ("active", "name") and v is not None}
    audit = None
    if by is not None:
        # What the fields were (read now, past the cache): the entry's `before`.
        current = existing_store(store_id, repo)
        before = {k: getattr(current, k) for k in allowed}
        audit = entry(
            by,
            "store.update",
            f"store:{store_id}",
            now,
            before=named(before, "store"),
            after=named(allowed, "store"),
        )
    store = repo.update_store(store_id, allowed, rfc3339(now), audit)
    if store is None:
        raise NotFound("no such store", code="STORE_NOT_FOUND")
    return store


def issue_key(
    store_id: str, repo: StoreRepository, now: datetime, by: Actor | None = None
) -> StoreKey:
    """A new key for a store (open or not: a closed store's keys work once it reopens).
    Not replayable by design: the secret is shown once, so a lost answer means issuing
    another key and revoking the one nobody holds."""
    existing_store(store_id, repo)

    def attempt() -> StoreKey:
        key = StoreKey(
            key_id=f"key_{secrets.token_hex(8)}",
            store_id=store_id,
            secret=secrets.token_hex(32),
            created_at=rfc3339(now),
        )
        audit = entry(
            by,
            "store_key.create",
            f"store:{store_id}",
            now,
            after={"key_id": key.key_id, "store_id": store_id},  # never the secret
        )
        if not repo.add_store_key(key, audit):
            raise Again
        return key

    # 64 random bits: a collision is all but impossible, and never silent.
    return retry(
        attempt,
        attempts=3,
        retry_on=Again,
        exhausted=lambda: Conflict("could not allocate a key id; retry", code="KEY_ID_TAKEN"),
        base=0,
    )


def existing_store(store_id: str, repo: StoreRepository) -> Store:
    """The store as stored now (past the cache), or 404 STORE_NOT_FOUND."""
    store = repo.store(store_id, fresh=True)
    if store is None:
        raise NotFound("no such store", code="STORE_NOT_FOUND")
    return store


def revoke_key(
    store_id: str, key_id: str, repo: StoreRepository, now: datetime, by: Actor | None = None
) -> StoreKey:
    """Idempotent: revoking a revoked key answers the same (first `revoked_at`), and
    writes no second audit entry."""
    audit = entry(
        by,
        "store_key.revoke",
        f"store:{store_id}",
        now,
        request_id=key_id,
        before={"key_id": key_id, "active": True},
        after={"key_id": key_id, "active": False},
    )
    key = repo.revoke_store_key(store_id, key_id, rfc3339(now), audit)
    if key is None:
        raise NotFound("no such key for this store", code="KEY_NOT_FOUND")
    return key


def open_store(store: Store | None, store_id: str) -> Store:
    """The store a staff request names must exist and be open (a POS of a closed store is
    refused before it gets here: 403 STORE_INACTIVE)."""
    if store is None:
        raise BusinessRuleViolation(
            "unknown store", code="UNKNOWN_STORE", details={"store_id": store_id}
        )
    if not store.active:
        raise BusinessRuleViolation(
            "this store is not active", code="STORE_INACTIVE", details={"store_id": store_id}
        )
    return store
