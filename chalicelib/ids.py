"""Time-sortable identifiers (ULID layout: 48-bit ms timestamp + 80 random bits), and the
hash that makes a client id's request idempotent."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last: tuple[int, int] = (0, 0)
_lock = threading.Lock()


def ulid(now_ms: int | None = None) -> str:
    """Monotonic within a process: ids made in the same millisecond still sort in the
    order they were made (a purchase writes its redeem entry before its earn entry, and
    the ledger lists entries by id)."""
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last
        if ms <= last_ms:
            ms, randomness = last_ms, (last_random + 1) % (1 << 80)
        else:
            randomness = int.from_bytes(os.urandom(10), "big")
        _last = (ms, randomness)
    value = (ms << 80) | randomness
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_member_id() -> str:
    return "mbr_" + ulid().lower()


def request_hash(document: Any) -> str:
    """The same request, however formatted, hashes the same."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
