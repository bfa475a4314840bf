"""Points-mall items: rewards' stock shards (Program table) and the payment holds of
points + cash redemptions (Runtime table), as a points commit writes them."""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any

from pynamodb.expressions.condition import Condition

from chalicelib.dal.tables import HoldItem, StockShardItem
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.records import HoldChange, StockMove

# Payment holds are spread over a few partitions; the release job reads each.
HOLD_SHARDS = 4
# TTL only cleans up: the release job deletes a hold long before (correctness never
# relies on TTL).
HOLD_TTL = timedelta(days=7)


def reward_pk(reward_id: str) -> str:
    return f"REWARD#{reward_id}"


def stock_sk(shard: int) -> str:
    return f"STOCK#{shard:02d}"


def stock_move(move: StockMove) -> tuple[StockShardItem, list[Any], Condition]:
    """Take (conditional on the shard holding enough) or return units of one shard."""
    item = StockShardItem(pk=reward_pk(move.reward_id), sk=stock_sk(move.shard))
    taking = move.delta < 0
    condition = StockShardItem.left >= -move.delta if taking else StockShardItem.pk.exists()
    return item, [StockShardItem.left.add(move.delta)], condition


def read_stock(reward_id: str) -> dict[int, int]:
    """Every shard of a reward's stock, consistently: shard -> units left (one Query)."""
    query = StockShardItem.query(
        reward_pk(reward_id), StockShardItem.sk.startswith("STOCK#"), consistent_read=True
    )
    return {int(item.shard): int(item.left) for item in query}


def stock_item(reward_id: str, shard: int, left: int) -> StockShardItem:
    return StockShardItem(
        pk=reward_pk(reward_id), sk=stock_sk(shard), reward_id=reward_id, shard=shard, left=left
    )


def hold_shard(member_id: str) -> int:
    return zlib.crc32(member_id.encode()) % HOLD_SHARDS


def hold_pk(shard: int) -> str:
    return f"HOLD#{shard}"


def hold_item(hold: HoldChange) -> HoldItem:
    return HoldItem(
        pk=hold_pk(hold_shard(hold.member_id)),
        sk=f"{rfc3339(hold.due_at)}#{hold.member_id}#{hold.redemption_id}",
        member_id=hold.member_id,
        redemption_id=hold.redemption_id,
        due_at=rfc3339(hold.due_at),
        expires_at=int((hold.due_at + HOLD_TTL).timestamp()),
    )
