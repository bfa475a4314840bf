"""Test doubles shared by unit and integration tests."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any


class FakeLambdaContext:
    """A Lambda context whose deadline is `remaining_ms` from its creation, on the wall
    clock (powertools compares in-progress expiries with the wall clock). `script`
    (optional) lists the remaining times to report, one per call, instead: the last one
    repeats."""

    function_name = "test"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:cn-north-1:123456789012:function:test"
    aws_request_id = "test-request"

    def __init__(self, remaining_ms: int = 300_000, script: list[int] | None = None) -> None:
        self.deadline = time.time() + remaining_ms / 1000
        self._script = list(script or [])
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        if self._script:
            return self._script.pop(0) if len(self._script) > 1 else self._script[0]
        return max(0, int((self.deadline - time.time()) * 1000))

    def wait_past_deadline(self) -> None:
        """Until the wall clock is past the deadline (by more than its millisecond)."""
        while time.time() <= self.deadline + 0.002:
            time.sleep(0.001)


def set_last_scheduled(job: str, day: date) -> None:
    """Put a job's state at `day` (the app's `advance` never moves it backwards; tests on
    a shared DynamoDB Local choose their own stretch of dates)."""
    from chalicelib.dal.tables import JobRunItem
    from chalicelib.wiring import services

    services()  # binds the item classes to the stage's tables
    JobRunItem(pk=f"JOB#{job}", sk="STATE", last_date=day.isoformat()).save()


class FakeQueue:
    """Stands in for an SQS queue (`send_many`): what was sent, in order; thread-safe, as
    workers on threads share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[Any] = []

    def send_many(self, items: list[Any]) -> None:
        with self._lock:
            self.sent.extend(items)

    def take(self) -> list[Any]:
        with self._lock:
            taken, self.sent = self.sent, []
        return taken


class InMemoryMembers:
    """Members in memory, as the Members table keeps them for registration and erasure
    (chalicelib/domain/members.MemberRepository, chalicelib/domain/privacy.ErasureStore):
    identity claims unique, sign-up claims kept for good, an erasure all or nothing under
    its conditions (the version read, not erased yet, its request record and audit entry
    new), erased members kept as tombstones that read as none."""

    def __init__(self) -> None:
        from chalicelib.domain.members import Identity, Member

        self.members: dict[str, Member] = {}
        self.tombstones: dict[str, Member] = {}
        self.claims: dict[Identity, str] = {}
        self.signup_claims: dict[Identity, str] = {}
        self.records: dict[Any, Any] = {}
        self.audit: list[Any] = []

    # -- MemberRepository --

    def create(
        self, member: Any, identities: list[Any], audit: Any = None, signup_claim: Any = None
    ) -> None:
        from chalicelib.errors import MemberExists

        for identity in identities:
            if identity in self.claims:
                raise MemberExists(self.claims[identity], identity.kind)
        self.members[member.member_id] = member
        for identity in identities:
            self.claims[identity] = member.member_id
        if signup_claim is not None:
            self.signup_claims[signup_claim] = member.member_id

    def signup_claimed(self, claim: Any) -> bool:
        return claim in self.signup_claims

    def get(self, member_id: str) -> Any:
        return self.members.get(member_id)

    def find_member_id(self, identity: Any) -> str | None:
        return self.claims.get(identity)

    def update_profile(self, member_id: str, changes: dict[str, Any], now: Any) -> Any:
        from chalicelib.domain.members import with_changes
        from chalicelib.errors import NotFound

        current = self.members.get(member_id)
        if current is None:
            raise NotFound("member not found", code="MEMBER_NOT_FOUND")
        self.members[member_id] = with_changes(current, changes, now)
        return self.members[member_id]

    def add_external_id(self, member: Any, kind: str, value: str, identity: Any, now: Any) -> Any:
        from dataclasses import replace

        from chalicelib.errors import MemberExists, Unavailable

        if identity in self.claims and self.claims[identity] != member.member_id:
            raise MemberExists(self.claims[identity], kind)
        if self.members[member.member_id].version != member.version:
            raise Unavailable("member changed while linking; retry")
        updated = replace(
            member,
            external_ids={**member.external_ids, kind: value},
            version=member.version + 1,
        )
        self.members[member.member_id] = updated
        self.claims[identity] = member.member_id
        return updated

    # -- ErasureStore --

    def member(self, member_id: str) -> Any:
        return self.members.get(member_id)

    def erase_record(self, ref: Any) -> Any:
        return self.records.get(ref)

    def erase(self, member: Any, identities: list[Any], record: Any, entry: Any, now: Any) -> bool:
        current = self.members.get(member.member_id)
        if current is None or current.version != member.version or record.ref in self.records:
            return False
        if any(self.claims.get(i, member.member_id) != member.member_id for i in identities):
            return False
        for identity in identities:
            self.claims.pop(identity, None)
        # what the tombstone keeps: no personal field (chalicelib/dal/members.erase_member)
        from dataclasses import replace

        self.tombstones[member.member_id] = replace(
            member,
            phone="",
            name=None,
            gender=None,
            birthday=None,
            email=None,
            tags=(),
            external_ids={},
            marketing_consent=False,
            version=member.version + 1,
        )
        del self.members[member.member_id]
        self.records[record.ref] = record
        self.audit.append(entry)
        return True


class InMemorySignIns:
    """Sign-in accounts at an identity provider (chalicelib/domain/privacy.SignInAccounts):
    `accounts` open, `closed` every close asked for, in order; `down` makes the provider
    unreachable (Unavailable, nothing closed)."""

    def __init__(self, *accounts: str) -> None:
        self.accounts: set[str] = set(accounts)
        self.closed: list[str] = []
        self.down = False

    def close(self, subject: str) -> None:
        from chalicelib.errors import Unavailable

        if self.down:
            raise Unavailable("the identity provider did not answer")
        self.closed.append(subject)
        self.accounts.discard(subject)  # one already gone counts as closed
