"""Tier state on the member item, tier history, and the review index."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.dal.members import MEMBER_SK, member_pk
from chalicelib.dal.tables import MemberItem, RequestItem, TierHistoryItem, reason_codes
from chalicelib.domain.clock import rfc3339
from chalicelib.domain.tiering import TierChange, TierState
from chalicelib.errors import Unavailable
from chalicelib.ids import ulid
from chalicelib.retry import retry


class DynamoTierRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def count_spend(
        self, record_pk: str, record_sk: str, member_id: str, month: str, delta: int
    ) -> bool:
        """Add a purchase's or refund's qualifying spend to its month, once: the request
        record is marked in the same transaction, so a replayed stream record adds
        nothing. False when it was already counted."""
        # A member's first spend creates the month map; later ones add into it (a nested
        # ADD needs the map to exist). Each form is conditional on the case it handles.
        spend = MemberItem.qualifying_spend
        add = ([spend[month].add(delta)], spend.exists())
        create = ([spend.set({month: delta})], spend.does_not_exist())
        for _ in range(3):
            for actions, condition in (add, create):
                outcome = self._count_once(record_pk, record_sk, member_id, actions, condition)
                if outcome != "other_form":
                    return outcome == "counted"
        return False

    def _count_once(
        self, record_pk: str, record_sk: str, member_id: str, actions: list[Any], condition: Any
    ) -> str:
        """'counted', 'already' (the record was counted before), or 'other_form' (the
        member's month map is not in the state this form expects)."""
        try:
            with TransactWrite(connection=self._connection) as txn:
                txn.update(
                    RequestItem(pk=record_pk, sk=record_sk),
                    actions=[RequestItem.data["tier_counted"].set(True)],
                    condition=RequestItem.data["tier_counted"].does_not_exist(),
                )
                txn.update(
                    MemberItem(pk=member_pk(member_id), sk=MEMBER_SK),
                    actions=actions,
                    condition=MemberItem.pk.exists() & condition,
                )
        except TransactWriteError as exc:
            codes = reason_codes(exc)
            if codes[:1] == ["ConditionalCheckFailed"]:
                return "already"
            if codes[1:2] == ["ConditionalCheckFailed"]:
                return "other_form"
            raise
        return "counted"

    def state(self, member_id: str) -> TierState | None:
        try:
            item = MemberItem.get(member_pk(member_id), MEMBER_SK, consistent_read=True)
        except DoesNotExist:
            return None
        return _state(item)

    def change(self, change: TierChange, now: datetime) -> bool:
        """Apply a tier change and its history entry atomically, only if the member is
        still where the decision found them (same tier, same review key). False if not:
        someone else (a replayed record, an overlapping run) already moved them."""
        condition = MemberItem.tier_code == change.from_code
        if change.expected_review_due is not None:
            condition &= MemberItem.review_due == change.expected_review_due
        actions: list[Any] = [
            MemberItem.tier_code.set(change.to_code),
            _set_or_remove(
                MemberItem.tier_since, change.since.isoformat() if change.since else None
            ),
            _set_or_remove(
                MemberItem.tier_expires_at,
                rfc3339(change.expires_at) if change.expires_at else None,
            ),
            _set_or_remove(MemberItem.review_due, change.review_due),
            _set_or_remove(
                MemberItem.grace_until,
                change.grace_until.isoformat() if change.grace_until else None,
            ),
        ]
        history = TierHistoryItem(
            pk=member_pk(change.member_id),
            sk=f"TIER#{ulid()}",
            member_id=change.member_id,
            from_tier=change.from_code,
            to_tier=change.to_code,
            reason=change.reason,
            qualifying_spend=change.spend,
            created_at=rfc3339(now),
            expires_at=rfc3339(change.expires_at) if change.expires_at else None,
        )

        def attempt() -> bool:
            try:
                with TransactWrite(connection=self._connection) as txn:
                    txn.update(
                        MemberItem(pk=member_pk(change.member_id), sk=MEMBER_SK),
                        actions=actions,
                        condition=condition,
                    )
                    txn.save(history)
            except TransactWriteError as exc:
                # pynamodb sends puts before updates, so the member's reason is not first;
                # the history put has no condition: a failed condition is the member's.
                if "ConditionalCheckFailed" in reason_codes(exc):
                    return False  # moved meanwhile: by a replay, a rerun or an upgrade
                raise
            return True

        # Another write to the member was in flight (a purchase): the decision still
        # holds if the condition does, so try again rather than skip.
        return retry(
            attempt,
            attempts=5,
            retry_on=TransactWriteError,
            retry_if=lambda exc: "TransactionConflict" in reason_codes(exc),
            exhausted=lambda: Unavailable(
                "member too busy for a tier change; retried later", code="CONTENDED"
            ),
            base=0.02,
            cap=0.2,
        )

    def history(self, member_id: str, limit: int = 20) -> list[dict[str, Any]]:
        items = TierHistoryItem.query(
            member_pk(member_id),
            TierHistoryItem.sk.startswith("TIER#"),
            scan_index_forward=False,
            limit=limit,
        )
        return [
            {
                "from": item.from_tier,
                "to": item.to_tier,
                "reason": item.reason,
                "qualifying_spend": int(item.qualifying_spend),
                "at": item.created_at,
                "expires_at": item.expires_at,
            }
            for item in items
        ]

    def scan_members(
        self, segment: int, total: int, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[TierState], dict[str, Any] | None]:
        """One page of one parallel-scan segment, members only: recalculating every
        member is inherently a pass over all of them."""
        scan = MemberItem.scan(
            MemberItem.kind == "member",
            segment=segment,
            total_segments=total,
            limit=limit,
            last_evaluated_key=start,
        )
        states = [_state(item) for item in scan]
        return states, scan.last_evaluated_key

    def due_for_review(
        self, key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[str], dict[str, Any] | None]:
        query = MemberItem.review_index.query(key, limit=limit, last_evaluated_key=start)
        ids = [item.pk.removeprefix("MEMBER#") for item in query]
        return ids, query.last_evaluated_key


def _set_or_remove(attribute: Any, value: Any) -> Any:
    return attribute.remove() if value is None else attribute.set(value)


def _state(item: MemberItem) -> TierState:
    spend = item.qualifying_spend.as_dict() if item.qualifying_spend is not None else {}
    return TierState(
        member_id=item.member_id,
        tier_code=item.tier_code,
        tier_since=date.fromisoformat(item.tier_since) if item.tier_since else None,
        tier_expires_at=(
            datetime.fromisoformat(item.tier_expires_at) if item.tier_expires_at else None
        ),
        grace_until=date.fromisoformat(item.grace_until) if item.grace_until else None,
        review_due=item.review_due,
        monthly_spend={str(k): int(v) for k, v in spend.items()},
    )
