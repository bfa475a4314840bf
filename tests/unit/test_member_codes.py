"""Member presence (会员码): issuing codes, and purchases that spend points with one, on the
ledger of test_points_domain, once on the in-memory fake and once on DynamoDB Local (the
`ledger` fixture, tests/ledgers.py): a purchase consumes its code in its own commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from chalicelib.domain import member_codes
from chalicelib.domain.ledger import Wallet
from chalicelib.domain.member_codes import MemberCode
from chalicelib.domain.points import Purchase, record_purchase
from chalicelib.domain.records import Commit, MemberCodeTaken
from chalicelib.errors import BusinessRuleViolation, DomainError, Forbidden, Unavailable
from tests.ledgers import Ledger
from tests.unit.test_points_domain import NOW, context, purchase

LOTS = Wallet(lots={date(2026, 1, 31): 5000})


def at_till(cmd: Purchase, code: str | None, *, by_code_only: bool = False) -> Purchase:
    """The purchase as the POS route sends it: a code required to spend points."""
    return replace(
        cmd,
        member_code=code,
        member_code_required=True,
        member_id=None if by_code_only else cmd.member_id,
    )


def issue(repo: Ledger, member_id: str, now: datetime = NOW) -> str:
    return member_codes.issue(member_id, repo, now).code


@pytest.fixture
def repo(ledger: Ledger) -> Ledger:
    """The ledger of the test, on each store in turn (tests/conftest.py)."""
    return ledger


@pytest.fixture
def member(repo: Ledger) -> str:
    return repo.add_member(wallet=LOTS)


def error_of(call) -> DomainError:
    with pytest.raises(DomainError) as excinfo:
        call()
    return excinfo.value


# ---- issuing ------------------------------------------------------------------------------


class CountingStore:
    """A code store that refuses the first `collisions` codes, as if they existed."""

    def __init__(self, collisions: int) -> None:
        self.collisions = collisions
        self.puts: list[MemberCode] = []

    def put_new(self, code: MemberCode) -> bool:
        self.puts.append(code)
        return len(self.puts) > self.collisions

    def get(self, code: str) -> MemberCode | None:  # pragma: no cover - not read here
        return None


def test_given_a_member_when_a_code_is_issued_then_18_digits_valid_at_most_120_seconds_one_put():
    store = CountingStore(collisions=0)
    code = member_codes.issue("mbr_1", store, NOW + timedelta(microseconds=999_999))
    assert len(code.code) == 18
    assert code.code.isdigit()
    assert code.member_id == "mbr_1"
    assert code.used_by is None
    assert NOW + timedelta(seconds=119) < code.expires_at <= NOW + timedelta(seconds=120)
    assert code.expires_at.microsecond == 0
    assert store.puts == [code]


def test_given_a_configured_validity_over_120_seconds_when_issuing_then_120_seconds_at_most():
    code = member_codes.issue("mbr_1", CountingStore(0), NOW, valid_seconds=3600)
    assert code.expires_at == NOW + timedelta(seconds=120)


def test_given_two_codes_when_issued_then_they_differ():
    codes = {member_codes.new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(code) == 18 and code.isdigit() for code in codes)


def test_given_a_drawn_code_that_exists_when_issuing_then_another_code_is_drawn():
    store = CountingStore(collisions=1)
    code = member_codes.issue("mbr_1", store, NOW)
    assert len(store.puts) == 2
    assert store.puts[1] == code
    assert store.puts[0].code != code.code


def test_given_every_draw_collides_then_contended_instead_of_looping():
    store = CountingStore(collisions=10**6)
    with pytest.raises(Unavailable) as excinfo:
        member_codes.issue("mbr_1", store, NOW)
    assert excinfo.value.code == "CONTENDED"
    assert len(store.puts) == member_codes.ISSUE_ATTEMPTS


def test_given_a_code_when_looked_up_then_its_member_and_it_stays_usable(repo, member):
    code = issue(repo, member)
    assert member_codes.member_of(code, repo, NOW) == member
    assert repo.code(code).used_by is None


@pytest.mark.parametrize("when", ["unknown", "expired", "at_expiry", "used"])
def test_given_an_unusable_code_when_looked_up_then_member_code_invalid(repo, member, when):
    code = issue(repo, member)
    now = NOW
    if when == "unknown":
        code = "0" * 18 if code != "0" * 18 else "1" * 18
    elif when == "expired":
        now = NOW + timedelta(seconds=121)
    elif when == "at_expiry":
        now = repo.code(code).expires_at
    else:
        repo.put_code(replace(repo.code(code), used_by="TXN#store-001#t0"))
    error = error_of(lambda: member_codes.member_of(code, repo, now))
    assert isinstance(error, Forbidden)
    assert error.code == "MEMBER_CODE_INVALID"


# ---- purchases at the till ------------------------------------------------------------------


def test_given_points_spent_at_the_till_without_a_code_then_member_code_required_and_nothing_written(
    repo, member
):
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, pay_with_points=1000), None), context(repo)
        )
    )
    assert isinstance(error, Forbidden)
    assert error.code == "MEMBER_CODE_REQUIRED"
    assert repo.commits == []
    assert repo.balance(member) == 5000


def test_given_earning_only_at_the_till_without_a_code_then_no_code_is_needed(repo, member):
    status, body = record_purchase(at_till(purchase(member), None), context(repo))
    assert status == 201
    assert body["points_earned"] == 98


def test_given_the_members_code_when_paying_with_points_then_spent_and_the_code_used_in_the_same_commit(
    repo, member
):
    code = issue(repo, member)
    status, body = record_purchase(
        at_till(purchase(member, pay_with_points=1000), code), context(repo)
    )
    assert status == 201
    assert body["points_spent"] == 1000
    [commit] = repo.commits
    assert commit.member_code is not None
    assert (commit.member_code.code, commit.member_code.member_id) == (code, member)
    assert repo.code(code).used_by == "TXN#store-001#t1"
    assert repo.balance(member) == 5000 - 1000 + body["points_earned"]


def test_given_only_a_code_when_buying_then_the_code_identifies_the_member(repo, member):
    code = issue(repo, member)
    status, body = record_purchase(
        at_till(purchase(member, pay_with_points=1000), code, by_code_only=True), context(repo)
    )
    assert status == 201
    assert body["member_id"] == member
    assert repo.code(code).used_by is not None


def test_given_a_code_on_an_earning_only_purchase_then_it_is_consumed_too(repo, member):
    code = issue(repo, member)
    record_purchase(at_till(purchase(member), code, by_code_only=True), context(repo))
    assert repo.code(code).used_by == "TXN#store-001#t1"
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, "t2", pay_with_points=1000), code), context(repo)
        )
    )
    assert error.code == "MEMBER_CODE_INVALID"


def test_given_a_used_code_when_another_purchase_pays_with_it_then_member_code_invalid_and_nothing_written(
    repo, member
):
    code = issue(repo, member)
    record_purchase(at_till(purchase(member, "t1", pay_with_points=1000), code), context(repo))
    balance = repo.balance(member)
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, "t2", pay_with_points=1000), code), context(repo)
        )
    )
    assert isinstance(error, Forbidden)
    assert error.code == "MEMBER_CODE_INVALID"
    assert len(repo.commits) == 1
    assert repo.balance(member) == balance


@pytest.mark.parametrize("seconds", [120, 121, 3600])
def test_given_an_expired_code_when_paying_then_member_code_invalid(repo, member, seconds):
    code = issue(repo, member)
    later = NOW + timedelta(seconds=seconds)
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, pay_with_points=1000, occurred_at=later), code),
            context(repo, now=later),
        )
    )
    assert error.code == "MEMBER_CODE_INVALID"
    assert repo.commits == []
    assert repo.code(code).used_by is None


def test_given_another_members_code_when_paying_for_this_member_then_member_code_invalid(
    repo, member
):
    other = repo.add_member(wallet=LOTS)
    code = issue(repo, other)
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, pay_with_points=1000), code), context(repo)
        )
    )
    assert error.code == "MEMBER_CODE_INVALID"
    assert repo.commits == []
    assert repo.balance(member) == repo.balance(other) == 5000
    assert repo.code(code).used_by is None


def test_given_an_unknown_code_when_paying_then_member_code_invalid(repo, member):
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, pay_with_points=1000), "1" * 18), context(repo)
        )
    )
    assert error.code == "MEMBER_CODE_INVALID"


@pytest.mark.parametrize("stale", [False, True])
def test_given_a_purchase_that_consumed_its_code_when_replayed_then_the_first_answer(
    repo, member, stale
):
    code = issue(repo, member)
    cmd = at_till(purchase(member, pay_with_points=1000), code)
    first = record_purchase(cmd, context(repo))
    # stale: the first read of the request record misses it, so the replay is planned
    # again and finds its own code used
    repo.stale_reads = stale
    again = record_purchase(cmd, context(repo, now=NOW + timedelta(minutes=10)))
    assert again == first
    assert len(repo.commits) == 1


def test_given_insufficient_points_when_paying_with_a_code_then_the_code_is_not_consumed(
    repo,
):
    member_id = repo.add_member(wallet=Wallet(lots={date(2026, 1, 31): 500}))
    code = issue(repo, member_id)
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member_id, pay_with_points=1000), code), context(repo)
        )
    )
    assert isinstance(error, BusinessRuleViolation)
    assert error.code == "INSUFFICIENT_POINTS"
    assert repo.code(code).used_by is None


def test_given_two_tills_with_one_code_when_the_other_commits_first_then_exactly_one_spends(
    repo, member
):
    code = issue(repo, member)

    class RacingLedger(Ledger):
        raced = False

        def commit(self, commit: Commit) -> None:
            if not self.raced:
                self.raced = True
                # the other till, planned at the same moment, commits first
                record_purchase(
                    at_till(purchase(member, "till-2", pay_with_points=1000), code), context(self)
                )
            super().commit(commit)

    racing = RacingLedger(repo.store, repo.kind)
    error = error_of(
        lambda: record_purchase(
            at_till(purchase(member, "till-1", pay_with_points=1000), code), context(racing)
        )
    )
    assert isinstance(error, Forbidden)
    assert error.code == "MEMBER_CODE_INVALID"
    assert len(racing.entries_of(member, "redeem")) == 1
    assert racing.code(code).used_by == "TXN#store-001#till-2"


def test_given_only_the_codes_condition_reported_when_the_winner_was_this_request_then_the_first_answer(
    repo, member
):
    code = issue(repo, member)
    cmd = at_till(purchase(member, pay_with_points=1000), code)

    class CodeFirstLedger(Ledger):
        """Reports the code's condition and not the request's (DynamoDB may report either)."""

        def commit(self, commit: Commit) -> None:
            if commit.member_code is not None and self.code(code).used_by is not None:
                raise MemberCodeTaken()
            super().commit(commit)

    ledger = CodeFirstLedger(repo.store, repo.kind)
    first = record_purchase(cmd, context(ledger))
    ledger.stale_reads = True
    # the plan sees the code as unused (as a read racing the first commit would)
    shown = ledger.code(code)
    ledger.member_code = lambda c: replace(shown, used_by=None)  # type: ignore[method-assign]
    assert record_purchase(cmd, context(ledger)) == first
