"""Member codes (会员码) on the Runtime table: issued with one conditional put, read
consistently, consumed by a purchase inside its own transaction (chalicelib/dal/ledger.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition

from chalicelib.dal.tables import MemberCodeItem, save_if_new
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.member_codes import CodeUse, MemberCode

CODE_SK = "MCODE"


def code_pk(code: str) -> str:
    return "MCODE#" + hashlib.sha256(code.encode()).hexdigest()


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def find_member_code(code: str) -> MemberCode | None:
    try:
        # Consistent: a code shown a moment ago must be found at the till.
        item = MemberCodeItem.get(code_pk(code), CODE_SK, consistent_read=True)
    except DoesNotExist:
        return None
    return MemberCode(
        code=code,
        member_id=item.member_id,
        expires_at=datetime.fromtimestamp(int(item.expires_at), tz=UTC),
        used_by=item.used_by,
    )


def consume_code(use: CodeUse) -> tuple[MemberCodeItem, list[Any], Condition]:
    """The update a purchase's transaction carries: mark the code used, on condition that
    it exists, names the member, is unused and has not expired (TTL may not have run)."""
    condition = (
        MemberCodeItem.pk.exists()
        & (MemberCodeItem.member_id == use.member_id)
        & (MemberCodeItem.expires_at > epoch(use.at))
        & MemberCodeItem.used_by.does_not_exist()
    )
    actions = [MemberCodeItem.used_by.set(use.used_by), MemberCodeItem.used_at.set(rfc3339(use.at))]
    return MemberCodeItem(pk=code_pk(use.code), sk=CODE_SK), actions, condition


class DynamoMemberCodeRepository:
    def put_new(self, code: MemberCode) -> bool:
        item = MemberCodeItem(
            pk=code_pk(code.code),
            sk=CODE_SK,
            member_id=code.member_id,
            expires_at=epoch(code.expires_at),
        )
        return save_if_new(item, MemberCodeItem.pk.does_not_exist())

    def get(self, code: str) -> MemberCode | None:
        return find_member_code(code)
