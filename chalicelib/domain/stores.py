"""Stores belong to dealers (经销商); a POS acts for exactly one store through its key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Store:
    store_id: str
    dealer_id: str
    name: str
    active: bool = True


@dataclass(frozen=True)
class StoreKey:
    key_id: str
    store_id: str
    secret: str
    active: bool = True
