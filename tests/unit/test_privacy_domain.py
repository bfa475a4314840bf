"""Personal data rules (chalicelib/domain/privacy.py): erasure on the in-memory members
(tests/fakes.py), sign-up claims, and what the points ledger does with an erased member
or a returning phone, on both ledger stores (the `ledger` fixture: the fake, then
DynamoDB Local)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from chalicelib.domain import members as members_domain
from chalicelib.domain import privacy
from chalicelib.domain.audit import PERSONAL_FIELDS, Actor
from chalicelib.domain.expiry import expire_member
from chalicelib.domain.ledger import Wallet
from chalicelib.domain.members import IdentityHasher, Registration
from chalicelib.domain.points import (
    record_activity,
    record_adjustment,
    record_purchase,
    record_refund,
    release_pending,
)
from chalicelib.errors import BusinessRuleViolation, Conflict, NotFound, Unavailable
from chalicelib.ids import request_hash
from tests.fakes import InMemoryMembers, InMemorySignIns
from tests.unit.test_points_domain import (
    activity,
    adjustment,
    assert_ledger_matches_wallet,
    context,
    purchase,
    refund,
)

NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
ADMIN = Actor("admin-1", "admin")
PHONE = "+8613900005555"
# members registered at a till have no sign-in: nothing to close
NO_ACCOUNTS = InMemorySignIns()


@pytest.fixture
def members() -> InMemoryMembers:
    return InMemoryMembers()


@pytest.fixture
def hasher() -> IdentityHasher:
    return IdentityHasher("unit-test-pii-key")


def register(members, hasher, phone: str = PHONE, **fields) -> members_domain.Member:
    return members_domain.register(
        Registration(phone=phone, channel="pos", **fields), members, hasher, NOW
    )


def erasure(member_id: str, request_id: str = "erase-1", reason: str = "member_request"):
    return privacy.Erasure(
        member_id=member_id,
        request_id=request_id,
        reason=reason,
        actor=ADMIN,
        request_hash=request_hash({"request_id": request_id, "reason": reason}),
    )


# ---- erasure ------------------------------------------------------------------------------


def test_given_a_member_when_erased_then_every_identity_is_gone_and_it_reads_as_none(
    members, hasher
):
    member = register(members, hasher, name="韩梅梅", external_ids={"pos_card": "C1"})
    answer = privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    assert answer == {
        "member_id": member.member_id,
        "request_id": "erase-1",
        "status": "erased",
        "erased_at": "2026-03-01T04:00:00.000Z",
    }
    assert members.get(member.member_id) is None
    assert members.claims == {}  # phone and card claims deleted
    tombstone = members.tombstones[member.member_id]
    assert (tombstone.phone, tombstone.name, tombstone.external_ids) == ("", None, {})
    with pytest.raises(NotFound) as missing:
        members_domain.find_by_phone(PHONE, members, hasher)
    assert missing.value.code == "MEMBER_NOT_FOUND"


def test_given_an_erasure_then_one_audit_entry_without_personal_data(members, hasher):
    member = register(members, hasher, name="韩梅梅", external_ids={"pos_card": "C1"})
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    (entry,) = members.audit
    assert (entry.action, entry.target, entry.actor.role) == (
        "member.erase",
        f"member:{member.member_id}",
        "admin",
    )
    assert entry.request_id == "erase-1"
    assert entry.before == {"identities": ["phone", "pos_card"]}
    text = repr((entry.before, entry.after))
    assert PHONE not in text
    assert "韩梅梅" not in text
    assert "C1" not in text
    assert not PERSONAL_FIELDS & (set(entry.before or {}) | set(entry.after or {}))


def test_given_an_erased_member_when_the_same_request_comes_again_then_the_first_answer_and_nothing_more(
    members, hasher
):
    member = register(members, hasher)
    first = privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    again = privacy.erase(
        erasure(member.member_id), members, hasher, NOW + timedelta(hours=1), sign_ins=NO_ACCOUNTS
    )
    assert again == first
    assert len(members.audit) == 1


def test_given_an_erase_id_when_reused_with_another_reason_then_idempotency_conflict(
    members, hasher
):
    member = register(members, hasher)
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    with pytest.raises(Conflict) as conflict:
        privacy.erase(
            erasure(member.member_id, reason="account_closed"),
            members,
            hasher,
            NOW,
            sign_ins=NO_ACCOUNTS,
        )
    assert conflict.value.code == "IDEMPOTENCY_CONFLICT"


def test_given_an_erased_member_when_another_request_id_erases_it_then_member_not_found_and_no_entry(
    members, hasher
):
    """Nothing is left to erase: the member reads as none here as on every route, and
    nothing is written or audited a second time."""
    member = register(members, hasher)
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    with pytest.raises(NotFound) as missing:
        privacy.erase(
            erasure(member.member_id, "erase-2"), members, hasher, NOW, sign_ins=NO_ACCOUNTS
        )
    assert missing.value.code == "MEMBER_NOT_FOUND"
    assert len(members.audit) == 1


def test_given_an_unknown_member_when_erased_then_member_not_found(members, hasher):
    with pytest.raises(NotFound):
        privacy.erase(erasure("mbr_nobody"), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    assert members.audit == []


def test_given_a_card_linked_while_erasing_then_the_erasure_reads_again_and_deletes_it_too(
    members, hasher
):
    """The erase is conditional on the version read: a card linked between the read and
    the write fails it, and the next attempt sees (and deletes) the card's claim."""
    member = register(members, hasher)
    real_erase = members.erase
    linked: list[bool] = []

    def erase_after_a_link(*args, **kwargs):
        if not linked:
            linked.append(True)
            current = members.members[member.member_id]
            members.add_external_id(
                current, "pos_card", "C9", hasher.identity("pos_card", "C9"), NOW
            )
        return real_erase(*args, **kwargs)

    members.erase = erase_after_a_link  # type: ignore[method-assign]
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    assert members.claims == {}
    assert members.audit[0].before == {"identities": ["phone", "pos_card"]}


def test_given_a_member_that_never_stops_changing_then_503_contended(members, hasher):
    member = register(members, hasher)
    members.erase = lambda *args, **kwargs: False  # type: ignore[method-assign]
    with pytest.raises(Unavailable) as busy:
        privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    assert busy.value.code == "CONTENDED"


# ---- the sign-in account ---------------------------------------------------------------------


def test_given_a_member_with_a_sign_in_when_erased_then_its_account_is_closed_once_before_the_erase(
    members, hasher
):
    member = register(members, hasher, external_ids={members_domain.SIGN_IN: "sub-1"})
    sign_ins = InMemorySignIns("sub-1", "sub-other")
    real_erase = members.erase
    seen_at_erase: list[list[str]] = []

    def erase(*args, **kwargs):
        seen_at_erase.append(list(sign_ins.closed))
        return real_erase(*args, **kwargs)

    members.erase = erase  # type: ignore[method-assign]
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)

    assert sign_ins.closed == ["sub-1"]
    assert seen_at_erase == [["sub-1"]]  # closed before the store's transaction
    assert sign_ins.accounts == {"sub-other"}
    assert members.get(member.member_id) is None


def test_given_a_member_without_a_sign_in_when_erased_then_no_account_is_closed(members, hasher):
    member = register(members, hasher, external_ids={"pos_card": "C1"})
    sign_ins = InMemorySignIns("sub-other")
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    assert sign_ins.closed == []
    assert sign_ins.accounts == {"sub-other"}


def test_given_the_provider_down_when_erasing_then_503_the_member_unerased_and_a_retry_erases(
    members, hasher
):
    member = register(members, hasher, external_ids={members_domain.SIGN_IN: "sub-1"})
    sign_ins = InMemorySignIns("sub-1")
    sign_ins.down = True
    with pytest.raises(Unavailable):
        privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    assert members.get(member.member_id) == member  # as it was: nothing erased
    assert members.audit == []
    assert members.records == {}
    assert sign_ins.accounts == {"sub-1"}

    sign_ins.down = False
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    assert sign_ins.accounts == set()
    assert members.get(member.member_id) is None
    assert len(members.audit) == 1


def test_given_the_transaction_lost_after_the_close_when_read_again_then_not_closed_twice(
    members, hasher
):
    """A member changed between the read and the write: the erase reads again and writes,
    the account already closed by this request is not asked again."""
    member = register(members, hasher, external_ids={members_domain.SIGN_IN: "sub-1"})
    sign_ins = InMemorySignIns("sub-1")
    real_erase = members.erase
    lost: list[bool] = []

    def erase_once_lost(*args, **kwargs):
        if not lost:
            lost.append(True)
            return False
        return real_erase(*args, **kwargs)

    members.erase = erase_once_lost  # type: ignore[method-assign]
    privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    assert sign_ins.closed == ["sub-1"]
    assert members.get(member.member_id) is None


def test_given_an_erased_member_when_the_erase_is_replayed_then_no_close_is_asked_again(
    members, hasher
):
    member = register(members, hasher, external_ids={members_domain.SIGN_IN: "sub-1"})
    sign_ins = InMemorySignIns("sub-1")
    first = privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    again = privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=sign_ins)
    assert again == first
    assert sign_ins.closed == ["sub-1"]


def test_given_an_erased_phone_when_registered_again_then_a_new_member_not_due_a_sign_up_bonus(
    members, hasher
):
    first = register(members, hasher)
    assert first.first_registration is True
    privacy.erase(erasure(first.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
    again = register(members, hasher, phone="139 0000 5555")
    assert again.member_id != first.member_id
    assert again.first_registration is False
    assert members_domain.find_by_phone(PHONE, members, hasher).member_id == again.member_id


def test_given_the_sign_up_claim_then_it_is_a_keyed_hash_of_its_own_domain(members, hasher):
    """Not the phone's identity key: the claim cannot be joined with identity items."""
    register(members, hasher)
    (claim,) = members.signup_claims
    assert claim.key != hasher.identity("phone", PHONE).key
    assert claim.key == hasher.identity(members_domain.SIGNUP_CLAIM, PHONE).key
    assert PHONE not in claim.key
    assert claim.key != IdentityHasher("another-key").identity("signup_bonus", PHONE).key


def test_given_an_export_then_its_entry_names_the_member_and_the_reader_only():
    entry = privacy.export_entry(Actor("sub-1", "member"), "mbr_1", NOW)
    assert (entry.action, entry.target, entry.actor.role) == (
        "member.export",
        "member:mbr_1",
        "member",
    )
    assert entry.before is None
    assert entry.after is None


# ---- the ledger with an erased member (both stores) ---------------------------------------


@pytest.fixture
def repo(ledger):
    return ledger


def test_given_an_erased_member_when_a_till_or_the_member_acts_then_member_not_found_and_nothing_written(
    repo,
):
    member_id = repo.add_member()
    record_purchase(purchase(member_id, "t-before"), context(repo))
    repo.erase(member_id)
    commits = len(repo.commits)
    for attempt in (
        lambda: record_purchase(purchase(member_id, "t-after"), context(repo)),
        lambda: record_activity(activity(member_id, "c1", "checkin"), context(repo)),
        lambda: record_adjustment(adjustment(member_id, 10), context(repo)),
        lambda: release_pending(member_id, context(repo)),
    ):
        with pytest.raises(NotFound) as missing:
            attempt()
        assert missing.value.code == "MEMBER_NOT_FOUND"
    assert len(repo.commits) == commits


def test_given_an_erased_member_when_an_old_purchase_is_refunded_then_the_tombstone_keeps_the_numbers(
    repo,
):
    member_id = repo.add_member()
    record_purchase(purchase(member_id), context(repo))
    earned = repo.balance(member_id)
    repo.erase(member_id)
    status, body = record_refund(refund("rf-1", items=[("cake", 1)]), context(repo))
    assert status == 201
    assert body["points_reversed"] == 48
    assert repo.balance(member_id) == earned - 48
    assert repo.account(member_id).erased
    assert_ledger_matches_wallet(repo, member_id)


def test_given_an_erased_member_with_points_when_their_date_passes_then_the_expiry_run_expires_them(
    repo,
):
    lot = date(2026, 2, 28)
    member_id = repo.add_member(wallet=Wallet(lots={lot: 300}, lifetime_earned=300))
    repo.erase(member_id)
    expired = expire_member(member_id, lot, context(repo, now=NOW))
    assert expired.points == 300
    assert repo.balance(member_id) == 0
    assert [e.type for e in repo.entries_of(member_id)] == ["expire"]


def test_given_a_returning_phone_when_it_declares_a_referrer_then_limit_reached_and_nothing_paid(
    repo,
):
    referrer = repo.add_member()
    member_id = repo.add_member()
    repo.mark_returning(member_id)
    with pytest.raises(BusinessRuleViolation) as refused:
        record_activity(activity(member_id, "ref-1", "referral", referrer), context(repo))
    assert refused.value.code == "LIMIT_REACHED"
    assert refused.value.details["reason"] == "phone_registered_before"
    assert repo.account(member_id).referred_by is None


def test_given_a_first_registration_when_it_declares_a_referrer_then_the_welcome_is_paid(repo):
    referrer = repo.add_member()
    member_id = repo.add_member()
    status, body = record_activity(
        activity(member_id, "ref-1", "referral", referrer), context(repo)
    )
    assert status == 201
    assert body["points_earned"] > 0
    assert repo.account(member_id).referred_by == referrer


def test_given_an_erased_referrer_when_named_then_invalid_referral(repo):
    referrer = repo.add_member()
    member_id = repo.add_member()
    repo.erase(referrer)
    with pytest.raises(BusinessRuleViolation) as refused:
        record_activity(activity(member_id, "ref-1", "referral", referrer), context(repo))
    assert refused.value.code == "INVALID_REFERRAL"


def test_given_the_tombstone_then_no_personal_field_is_left_on_the_account(repo):
    member_id = repo.add_member()
    repo.erase(member_id)
    member = repo.account(member_id).member
    assert (member.name, member.gender, member.birthday, member.email) == (None,) * 4
    assert member.phone in (None, "")
    assert member.external_ids == {}
    assert member.tags == ()


def test_given_the_same_erase_committed_by_a_twin_between_the_reads_then_the_first_answer_not_404(
    members, hasher
):
    """Two deliveries of one request at once: the second finds no record, then no member
    (the twin erased it meanwhile); the record, read again, answers it."""
    member = register(members, hasher)
    real_member = members.member
    twin: list[dict] = []
    raced: list[bool] = []

    def member_read(member_id):
        if not raced:
            raced.append(True)
            twin.append(
                privacy.erase(erasure(member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
            )
        return real_member(member_id)

    members.member = member_read  # type: ignore[method-assign]
    assert (
        privacy.erase(erasure(member.member_id), members, hasher, NOW, sign_ins=NO_ACCOUNTS)
        == twin[0]
    )
    assert len(members.audit) == 1
