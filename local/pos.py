"""A minimal POS client: how a store integration signs its requests (api.md)."""

from __future__ import annotations

import json
import secrets
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


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
