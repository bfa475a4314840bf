"""The rewards catalog (Program table) and what the mall reads beside the ledger.

REWARD#<id> / REWARD       the reward's configuration (`data`: domain/rewards.py)
REWARD#<id> / STOCK#<nn>   its stock shards (StockShardItem, `left`): dal/mall.py
REWARDS     / <id>         listing entry (the catalog pages by reward id)
MEMBER#<id> / REQ#redeem#<redemption_id>   a redemption (its request record)
HOLD#<n>    / <due_at>#<member>#<redemption>  a points + cash redemption's payment hold
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal.audit import append as append_audit
from chalicelib.dal.audit import put_audited
from chalicelib.dal.cursors import decode_cursor, encode_cursor
from chalicelib.dal.mall import hold_pk, read_stock, reward_pk, stock_sk
from chalicelib.dal.members import member_pk
from chalicelib.dal.program import CACHE_SECONDS, _connection, _listing, _TtlCache
from chalicelib.dal.tables import HoldItem, ProgramItem, RequestItem, StockShardItem, reason_codes
from chalicelib.domain.audit import AuditEntry
from chalicelib.domain.rewards import Reward, reward_from_data, reward_to_data, spread
from chalicelib.errors import Conflict, Unavailable
from chalicelib.retry import Again, retry

REWARD_SK = "REWARD"
LISTING_PK = "REWARDS"
REDEEM_PREFIX = "REQ#redeem#"
STOCK_ATTEMPTS = 8


class DynamoRewardRepository:
    def __init__(self) -> None:
        self._cache = _TtlCache()

    def reward(self, reward_id: str, *, fresh: bool = False) -> Reward | None:
        """The reward's configuration (cached CACHE_SECONDS per container unless fresh)."""
        key = f"reward:{reward_id}"
        cached = None if fresh else self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        try:
            item = ProgramItem.get(reward_pk(reward_id), REWARD_SK, consistent_read=fresh)
        except DoesNotExist:
            return None
        reward = _reward(item)
        if reward is not None:
            self._cache.put(key, reward, CACHE_SECONDS)
        return reward

    def request_hash(self, reward_id: str) -> str | None:
        """The hash of the request that created the reward (idempotent creates)."""
        try:
            item = ProgramItem.get(reward_pk(reward_id), REWARD_SK, consistent_read=True)
        except DoesNotExist:
            return None
        data = item.data.as_dict() if item.data is not None else {}
        return str(data["request_hash"]) if data.get("request_hash") else None

    def create(
        self, reward: Reward, stock: int, request_hash: str, audit: AuditEntry | None = None
    ) -> bool:
        """The reward, its listing entry and its stock shards, each only if new, and the
        staff's audit entry, in one transaction. False when the reward id is taken
        (nothing written)."""
        entity = ProgramItem(
            pk=reward_pk(reward.reward_id),
            sk=REWARD_SK,
            kind="reward",
            data={**reward_to_data(reward), "request_hash": request_hash},
            updated_at=reward.updated_at,
        )
        listing = ProgramItem(pk=LISTING_PK, sk=reward.reward_id, kind="listing")
        try:
            with TransactWrite(connection=_connection()) as txn:
                txn.save(entity, condition=ProgramItem.pk.does_not_exist())
                txn.save(listing, condition=ProgramItem.pk.does_not_exist())
                for shard, left in spread(stock, reward.stock_shards).items():
                    txn.save(
                        _shard(reward.reward_id, shard, left),
                        condition=StockShardItem.pk.does_not_exist(),
                    )
                append_audit(txn, audit)
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" in reason_codes(exc):
                return False
            if "TransactionConflict" in reason_codes(exc):
                raise Unavailable("contended; retry", code="CONTENDED") from exc
            raise
        self._cache.put(f"reward:{reward.reward_id}", reward, CACHE_SECONDS)
        return True

    def save(self, reward: Reward, expected_version: int, audit: AuditEntry | None = None) -> bool:
        """The edited reward, conditional on the version read (False: changed since), with
        the staff's audit entry in one transaction."""
        current = ProgramItem.get(reward_pk(reward.reward_id), REWARD_SK, consistent_read=True)
        hashed = (current.data.as_dict() if current.data is not None else {}).get("request_hash")
        item = ProgramItem(
            pk=reward_pk(reward.reward_id),
            sk=REWARD_SK,
            kind="reward",
            data={**reward_to_data(reward), **({"request_hash": hashed} if hashed else {})},
            updated_at=reward.updated_at,
        )
        if not put_audited(item, ProgramItem.data["version"] == expected_version, audit):
            return False
        self._cache.put(f"reward:{reward.reward_id}", reward, CACHE_SECONDS)
        return True

    def stock(self, reward_id: str) -> dict[int, int]:
        return read_stock(reward_id)

    def set_stock(
        self, reward_id: str, total: int, audit: AuditEntry | None = None
    ) -> dict[int, int]:
        """Make the units available now `total`, spread over the reward's shards: every
        shard written conditional on the value just read (consistently), in one
        transaction with the staff's audit entry (its `before` the units read); a
        redemption in between makes it read and try again."""

        def attempt() -> dict[int, int]:
            current = read_stock(reward_id)
            if not current:
                raise Conflict("the reward has no stock counter", code="REWARD_NOT_FOUND")
            target = dict(zip(sorted(current), spread(total, len(current)).values(), strict=True))
            try:
                with TransactWrite(connection=_connection()) as txn:
                    for shard, left in current.items():
                        txn.update(
                            StockShardItem(pk=reward_pk(reward_id), sk=stock_sk(shard)),
                            actions=[StockShardItem.left.set(target[shard])],
                            condition=StockShardItem.left == left,
                        )
                    append_audit(
                        txn,
                        audit and replace(audit, before={"stock": sum(current.values())}),
                    )
            except TransactWriteError as exc:
                codes = reason_codes(exc)
                if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
                    raise Again from exc
                raise
            return target

        return retry(
            attempt,
            attempts=STOCK_ATTEMPTS,
            retry_on=Again,
            exhausted=lambda: Unavailable("stock is changing; retry", code="CONTENDED"),
        )

    def stock_left(self, rewards: list[Reward]) -> dict[str, int]:
        """Units left per reward, all shards of the page in one batch read (eventually
        consistent: a listing, not a reservation)."""
        keys = [
            (reward_pk(r.reward_id), stock_sk(shard))
            for r in rewards
            for shard in range(r.stock_shards)
        ]
        left = {r.reward_id: 0 for r in rewards}
        for item in StockShardItem.batch_get(keys):
            left[item.reward_id] = left.get(item.reward_id, 0) + max(int(item.left), 0)
        return left

    def page(self, limit: int, cursor: str | None) -> tuple[list[Reward], str | None]:
        """A page of the catalog by reward id: configurations (cached) of the listed ids."""
        ids, next_cursor = _listing(LISTING_PK, "", limit, cursor)
        rewards: list[Reward] = []
        missing: list[str] = []
        for reward_id in ids:
            cached = self._cache.get(f"reward:{reward_id}")
            if cached is not None:
                rewards.append(cached)
            else:
                missing.append(reward_id)
        if missing:
            for item in ProgramItem.batch_get([(reward_pk(i), REWARD_SK) for i in missing]):
                reward = _reward(item)
                if reward is not None:
                    self._cache.put(f"reward:{reward.reward_id}", reward, CACHE_SECONDS)
                    rewards.append(reward)
        order = {reward_id: n for n, reward_id in enumerate(ids)}
        rewards.sort(key=lambda r: order.get(r.reward_id, 0))
        return rewards, next_cursor

    def clear_cache(self) -> None:
        self._cache.clear()


def _reward(item: ProgramItem) -> Reward | None:
    data = item.data.as_dict() if item.data is not None else {}
    if "kind" not in data or "stock_shards" not in data:
        return None  # not a reward of this shape (an older demo item)
    return reward_from_data(data)


def _shard(reward_id: str, shard: int, left: int) -> StockShardItem:
    return StockShardItem(
        pk=reward_pk(reward_id), sk=stock_sk(shard), reward_id=reward_id, shard=shard, left=left
    )


# ---- a member's redemptions (their request records) -----------------------------------


def redemption_page(
    member_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The member's redemption records' data, by redemption id, paged."""
    start = decode_cursor(cursor, member_pk(member_id), REDEEM_PREFIX) if cursor else None
    query = RequestItem.query(
        member_pk(member_id),
        RequestItem.sk.startswith(REDEEM_PREFIX),
        limit=limit,
        last_evaluated_key=start,
    )
    records = [
        {**(item.data.as_dict() if item.data is not None else {}), "_version": int(item.version)}
        for item in query
    ]
    last = query.last_evaluated_key
    return records, encode_cursor(last) if last else None


# ---- payment holds due (the release job) ------------------------------------------------


def holds_due(shard: int, until: str, limit: int = 100) -> list[tuple[str, str, str]]:
    """(member id, redemption id, due_at) of the shard's holds due at or before `until`
    (RFC 3339): a key-range query reading only what is due."""
    query = HoldItem.query(
        hold_pk(shard), HoldItem.sk <= f"{until}#\uffff", limit=limit, consistent_read=True
    )
    return [(item.member_id, item.redemption_id, item.due_at) for item in query]


def delete_hold(member_id: str, redemption_id: str, due_at: str) -> None:
    """Drop a hold whose redemption is no longer awaiting payment (left by a crash)."""
    from datetime import datetime

    from chalicelib.dal.mall import hold_item
    from chalicelib.domain.records import HoldChange

    hold_item(
        HoldChange(member_id, redemption_id, datetime.fromisoformat(due_at), "delete")
    ).delete()
