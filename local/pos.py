"""A minimal POS client: how a store integration signs its requests (api.md)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.auth import sign


def signed_headers(
    *,
    store_id: str,
    key_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    nonce = nonce or secrets.token_hex(16)
    return {
        "Content-Type": "application/json",
        "X-Store-Id": store_id,
        "X-Key-Id": key_id,
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Signature": sign(secret, method, path, ts, nonce, body),
    }


def key_headers(
    key: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    *,
    store_id: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """`signed_headers` with a store key as `local.tools.create_store_key` returns it
    (store_id, key_id, secret). The path is signed without its query string; `store_id`
    names another store than the key's (the signature stays the key's)."""
    return signed_headers(
        store_id=store_id or key["store_id"],
        key_id=key["key_id"],
        secret=key["secret"],
        method=method,
        path=path.split("?")[0],
        body=body,
        timestamp=timestamp,
        nonce=nonce,
    )


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
