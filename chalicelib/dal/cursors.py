"""Listing cursors: a query's LastEvaluatedKey as opaque text, and back, only for the
listing it came from."""

from __future__ import annotations

import base64
import json
from typing import Any

from chalicelib.errors import InvalidInput


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, pk: str, prefix: str) -> dict[str, Any]:
    """The table key a cursor names, if it is one of the `pk` partition's items whose sort
    key starts with `prefix`; else 400 INVALID_CURSOR."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        sk = key["sk"]["S"]
        # Only a string is a key, and one DynamoDB would refuse (empty, over its 1,024-byte
        # sort-key limit) is a client's error, not ours: refuse it before the query.
        if (
            key["pk"]["S"] != pk
            or not isinstance(sk, str)
            or not sk.startswith(prefix)
            or not 0 < len(sk.encode()) <= 1024
        ):
            raise ValueError("cursor of another listing")
        return {"pk": {"S": pk}, "sk": {"S": sk}}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("invalid cursor", code="INVALID_CURSOR") from exc
