"""Pure domain rules: phones, birthdays, messaging windows, member registration/profile."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from chalicelib.domain import members as domain
from chalicelib.domain.birthdays import birthday_keys
from chalicelib.domain.members import (
    Identity,
    IdentityHasher,
    Member,
    Registration,
    with_changes,
)
from chalicelib.domain.messaging import (
    in_quiet_hours,
    may_send,
    seconds_until_quiet_hours_end,
)
from chalicelib.domain.phone import mask_phone, normalise_phone
from chalicelib.domain.tiers import BASE_TIER
from chalicelib.errors import (
    BusinessRuleViolation,
    InvalidInput,
    MemberExists,
    NotFound,
)

# ---- phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13900001111", "+8613900001111"),
        ("139 0000 1111", "+8613900001111"),
        ("139-0000-1111", "+8613900001111"),
        ("  13900001111  ", "+8613900001111"),
        ("+86 139 0000 1111", "+8613900001111"),
        ("+8613900001111", "+8613900001111"),
        ("008613900001111", "+8613900001111"),
        ("0086 139-0000-1111", "+8613900001111"),
        ("8613900001111", "+8613900001111"),  # country code typed without the plus
        ("(139) 0000-1111", "+8613900001111"),
        ("１３９００００１１１１", "+8613900001111"),  # full-width digits from a CJK keyboard
        ("+1 650-253-0000", "+16502530000"),
        ("+852 9123 4567", "+85291234567"),
        ("0044 7911 123456", "+447911123456"),
    ],
)
def test_given_a_typed_phone_when_normalising_then_e164(raw, expected):
    assert normalise_phone(raw) == expected


def test_given_two_spellings_of_one_number_when_normalising_then_they_are_equal():
    spellings = {"139 0000 1111", "+86-139-0000-1111", "008613900001111", "13900001111"}
    assert {normalise_phone(s) for s in spellings} == {"+8613900001111"}


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "12345",
        "139 0000 111",  # one digit short
        "+86 123",
        "1390000111122",  # too long
        "+999 1234 5678",  # no such country code
    ],
)
def test_given_an_invalid_phone_when_normalising_then_invalid_input_invalid_phone(raw):
    with pytest.raises(InvalidInput) as excinfo:
        normalise_phone(raw)
    assert excinfo.value.code == "INVALID_PHONE"


def test_given_a_foreign_number_without_plus_when_normalising_then_it_is_read_as_cn_and_refused():
    # "650 253 0000" is a US number only with its country code; as a CN number it is invalid.
    with pytest.raises(InvalidInput):
        normalise_phone("650 253 0000")


def test_given_another_default_region_when_normalising_a_national_number_then_that_region():
    assert normalise_phone("(650) 253-0000", default_region="US") == "+16502530000"


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+8613812345678", "+86138****5678"),
        ("+16502530000", "+165****0000"),
        ("+123456", "*******"),
        ("", ""),
    ],
)
def test_given_a_phone_when_masking_then_only_prefix_and_last_four_remain(e164, masked):
    assert mask_phone(e164) == masked


def test_given_a_masked_phone_then_it_keeps_the_length_and_hides_four_digits():
    masked = mask_phone("+8613812345678")
    assert len(masked) == len("+8613812345678")
    assert "1234" not in masked


# ---- birthdays --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "keys"),
    [
        (date(2025, 2, 28), ["0228", "0229"]),  # not a leap year: 29 Feb folks today
        (date(2100, 2, 28), ["0228", "0229"]),  # century, not a leap year
        (date(2024, 2, 28), ["0228"]),  # leap year: they wait until tomorrow
        (date(2000, 2, 28), ["0228"]),  # 400-year leap year
        (date(2024, 2, 29), ["0229"]),
        (date(2025, 3, 1), ["0301"]),  # not greeted twice
        (date(2024, 3, 1), ["0301"]),
        (date(2025, 12, 31), ["1231"]),
        (date(2025, 1, 5), ["0105"]),
    ],
)
def test_given_a_day_when_listing_birthday_keys_then_29_feb_falls_on_28_feb_in_common_years(
    today, keys
):
    assert birthday_keys(today) == keys


def test_given_every_day_of_a_common_year_then_0229_is_celebrated_exactly_once():
    days = [
        date.fromordinal(n)
        for n in range(date(2025, 1, 1).toordinal(), date(2026, 1, 1).toordinal())
    ]
    assert sum(birthday_keys(d).count("0229") for d in days) == 1


# ---- messaging --------------------------------------------------------------------------


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "quiet"),
    [
        (utc(2025, 1, 1, 13, 59, 59), False),  # 21:59:59 Shanghai
        (utc(2025, 1, 1, 14, 0, 0), True),  # 22:00 Shanghai
        (utc(2025, 1, 1, 15, 59, 59), True),  # 23:59:59 Shanghai, still 1 Jan there
        (utc(2025, 1, 1, 16, 0, 0), True),  # 00:00 2 Jan in Shanghai, 1 Jan in UTC
        (utc(2025, 1, 1, 23, 59, 59), True),  # 07:59:59 Shanghai
        (utc(2025, 1, 2, 0, 0, 0), False),  # 08:00 Shanghai: quiet hours over
        (utc(2025, 1, 2, 4, 0, 0), False),  # noon Shanghai
    ],
)
def test_given_a_utc_moment_when_checking_quiet_hours_then_shanghai_time_decides(moment, quiet):
    assert in_quiet_hours(moment) is quiet


@pytest.mark.parametrize(
    ("moment", "seconds"),
    [
        (utc(2025, 1, 1, 14, 0, 0), 10 * 3600),  # 22:00 -> 08:00 next day
        (utc(2025, 1, 1, 15, 0, 0), 9 * 3600),  # 23:00 -> 08:00 across the local midnight
        (utc(2025, 1, 1, 15, 59, 59), 8 * 3600 + 1),
        (utc(2025, 1, 1, 16, 0, 0), 8 * 3600),  # local midnight, UTC still the day before
        (utc(2025, 1, 1, 16, 30, 0), 7 * 3600 + 30 * 60),
        (utc(2025, 1, 1, 23, 0, 0), 3600),  # 07:00 Shanghai
        (utc(2025, 1, 1, 23, 59, 59, 500000), 1),  # never zero
    ],
)
def test_given_a_quiet_moment_when_asking_how_long_until_08_00_then_seconds(moment, seconds):
    assert seconds_until_quiet_hours_end(moment) == seconds


def test_given_a_moment_in_another_zone_when_computing_quiet_hours_then_it_is_converted():
    from zoneinfo import ZoneInfo

    # 07:00 in Shanghai expressed in Berlin time (00:00 CET).
    berlin = datetime(2025, 1, 2, 0, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert in_quiet_hours(berlin)
    assert seconds_until_quiet_hours_end(berlin) == 3600


@pytest.mark.parametrize(
    ("category", "consent", "allowed"),
    [
        ("service", False, True),
        ("service", True, True),
        ("marketing", True, True),
        ("marketing", False, False),
    ],
)
def test_given_a_category_and_consent_when_asking_may_send_then(category, consent, allowed):
    assert may_send(category, consent) is allowed


# ---- members ----------------------------------------------------------------------------

NOW = utc(2026, 3, 1, 12, 0, 0)  # 20:00 in Shanghai, same calendar day


class InMemoryMemberRepository:
    """The MemberRepository protocol over dicts: claims are unique, like the table's."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.claims: dict[Identity, str] = {}
        self.signup_claims: dict[Identity, str] = {}
        self.updates: list[tuple[str, dict[str, Any]]] = []

    def create(
        self,
        member: Member,
        identities: list[Identity],
        audit: Any = None,
        signup_claim: Identity | None = None,
    ) -> None:
        for identity in identities:
            if identity in self.claims:
                raise MemberExists(self.claims[identity], identity.kind)
        self.members[member.member_id] = member
        for identity in identities:
            self.claims[identity] = member.member_id
        if signup_claim is not None:
            self.signup_claims[signup_claim] = member.member_id

    def signup_claimed(self, claim: Identity) -> bool:
        return claim in self.signup_claims

    def get(self, member_id: str) -> Member | None:
        return self.members.get(member_id)

    def find_member_id(self, identity: Identity) -> str | None:
        return self.claims.get(identity)

    def update_profile(
        self, member_id: str, changes: dict[str, Any], now: datetime, audit: Any = None
    ) -> Member:
        current = self.members.get(member_id)
        if current is None:
            raise NotFound("member not found", code="MEMBER_NOT_FOUND")
        self.updates.append((member_id, dict(changes)))
        updated = with_changes(current, changes, now)
        self.members[member_id] = updated
        return updated


@pytest.fixture
def repo() -> InMemoryMemberRepository:
    return InMemoryMemberRepository()


@pytest.fixture
def hasher() -> IdentityHasher:
    return IdentityHasher("unit-test-pii-key")


def registered(
    repo: InMemoryMemberRepository,
    hasher: IdentityHasher,
    now: datetime = NOW,
    **fields: Any,
) -> Member:
    registration = Registration(**{"phone": "139 0000 1111", "channel": "app", **fields})
    return domain.register(registration, repo, hasher, now)


def test_given_a_registration_when_registering_then_a_base_member_with_normalised_phone(
    repo, hasher
):
    member = registered(repo, hasher, name="李雷", external_ids={"pos_card": "CARD1"})
    assert member.phone == "+8613900001111"
    assert member.member_id.startswith("mbr_")
    assert member.tier_code == BASE_TIER
    assert member.points_balance == 0
    assert member.lifecycle_stage == "potential"
    assert member.created_at == member.updated_at == NOW
    assert repo.get(member.member_id) == member


def test_given_external_ids_when_registering_then_phone_and_every_id_are_claimed(repo, hasher):
    member = registered(repo, hasher, external_ids={"pos_card": "CARD1", "wechat_unionid": "U1"})
    assert set(repo.claims) == {
        hasher.identity("phone", "+8613900001111"),
        hasher.identity("pos_card", "CARD1"),
        hasher.identity("wechat_unionid", "U1"),
    }
    assert set(repo.claims.values()) == {member.member_id}
    assert domain.find_by_external_id("pos_card", "CARD1", repo, hasher) == member
    assert domain.find_by_phone("+86 139-0000-1111", repo, hasher) == member


def test_given_a_registered_phone_when_registering_another_spelling_then_member_exists(
    repo, hasher
):
    first = registered(repo, hasher, phone="13900001111")
    with pytest.raises(MemberExists) as excinfo:
        registered(repo, hasher, phone="0086 139 0000 1111")
    assert excinfo.value.member_id == first.member_id
    assert len(repo.members) == 1


def test_given_an_invalid_phone_when_registering_then_invalid_phone_and_nothing_stored(
    repo, hasher
):
    with pytest.raises(InvalidInput) as excinfo:
        registered(repo, hasher, phone="12345")
    assert excinfo.value.code == "INVALID_PHONE"
    assert repo.members == {}


def test_given_a_birthday_in_the_future_when_registering_then_invalid_birthday(repo, hasher):
    with pytest.raises(BusinessRuleViolation) as excinfo:
        registered(repo, hasher, birthday=date(2026, 3, 2))
    assert excinfo.value.code == "INVALID_BIRTHDAY"
    assert repo.members == {}


def test_given_a_birthday_of_today_when_registering_then_it_is_accepted(repo, hasher):
    assert registered(repo, hasher, birthday=date(2026, 3, 1)).birthday == date(2026, 3, 1)


def test_given_shanghai_is_already_on_the_next_day_when_registering_that_birthday_then_ok(
    repo, hasher
):
    late_utc = utc(2026, 3, 1, 17, 0, 0)  # 01:00 on 2 March in Shanghai
    member = registered(repo, hasher, now=late_utc, birthday=date(2026, 3, 2))
    assert member.birthday == date(2026, 3, 2)


def test_given_shanghai_is_still_on_the_day_before_when_registering_the_utc_date_then_future(
    repo, hasher
):
    early_utc = utc(2026, 3, 1, 15, 0, 0)  # 23:00 on 1 March in Shanghai
    with pytest.raises(BusinessRuleViolation) as excinfo:
        registered(repo, hasher, now=early_utc, birthday=date(2026, 3, 2))
    assert excinfo.value.code == "INVALID_BIRTHDAY"


@pytest.mark.parametrize(
    ("birthday", "allowed"), [(date(2026, 3, 2), True), (date(2026, 3, 3), False)]
)
def test_given_program_time_when_updating_a_birthday_then_the_shanghai_date_is_today(
    repo, hasher, birthday, allowed
):
    member = registered(repo, hasher)
    late_utc = utc(2026, 3, 1, 17, 0, 0)  # 01:00 on 2 March in Shanghai
    if allowed:
        updated = domain.update_profile(
            member.member_id, {"birthday": birthday}, repo, late_utc, by_staff=False
        )
        assert updated.birthday == birthday
    else:
        with pytest.raises(BusinessRuleViolation, match="future"):
            domain.update_profile(
                member.member_id, {"birthday": birthday}, repo, late_utc, by_staff=False
            )


def test_given_ids_when_hashing_then_deterministic_and_keyed_and_kind_separated():
    a = IdentityHasher("secret-a")
    assert a.identity("phone", "+8613900001111") == a.identity("phone", "+8613900001111")
    assert IdentityHasher("secret-a").identity("phone", "+8613900001111") == a.identity(
        "phone", "+8613900001111"
    )
    assert (
        IdentityHasher("secret-b").identity("phone", "+8613900001111").key
        != a.identity("phone", "+8613900001111").key
    )
    assert a.identity("pos_card", "X1").key != a.identity("wechat_unionid", "X1").key
    identity = a.identity("phone", "+8613900001111")
    assert identity.kind == "phone"
    assert "13900001111" not in identity.key
    assert len(identity.key) == 64  # hex SHA-256


def test_given_a_member_when_changing_profile_fields_then_they_are_applied(repo, hasher):
    member = registered(repo, hasher, name="A")
    later = utc(2026, 3, 2, 0, 0, 0)
    updated = domain.update_profile(
        member.member_id,
        {"name": "B", "tags": ["vip"], "marketing_consent": True},
        repo,
        later,
        by_staff=False,
    )
    assert (updated.name, updated.tags, updated.marketing_consent) == ("B", ("vip",), True)
    assert updated.updated_at == later
    assert updated.version == member.version + 1


@pytest.mark.parametrize("by_staff", [False, True])
def test_given_unknown_fields_when_updating_then_field_not_writable_and_nothing_changes(
    repo, hasher, by_staff
):
    member = registered(repo, hasher, name="A")
    with pytest.raises(InvalidInput) as excinfo:
        domain.update_profile(
            member.member_id,
            {"name": "B", "tier_code": "gold", "points_balance": 10},
            repo,
            NOW,
            by_staff=by_staff,
        )
    assert excinfo.value.code == "FIELD_NOT_WRITABLE"
    assert excinfo.value.details == {"fields": ["points_balance", "tier_code"]}
    assert repo.updates == []
    assert repo.get(member.member_id) == member


def test_given_a_member_without_birthday_when_the_member_sets_it_then_ok(repo, hasher):
    member = registered(repo, hasher)
    updated = domain.update_profile(
        member.member_id, {"birthday": date(1990, 5, 6)}, repo, NOW, by_staff=False
    )
    assert updated.birthday == date(1990, 5, 6)


@pytest.mark.parametrize("new_birthday", [date(1991, 5, 6), None])
def test_given_a_set_birthday_when_the_member_changes_or_clears_it_then_birthday_locked(
    repo, hasher, new_birthday
):
    member = registered(repo, hasher, birthday=date(1990, 5, 6))
    with pytest.raises(BusinessRuleViolation) as excinfo:
        domain.update_profile(
            member.member_id, {"birthday": new_birthday}, repo, NOW, by_staff=False
        )
    assert excinfo.value.code == "BIRTHDAY_LOCKED"
    assert repo.get(member.member_id).birthday == date(1990, 5, 6)


def test_given_a_set_birthday_when_the_member_sends_the_same_date_then_ok(repo, hasher):
    member = registered(repo, hasher, birthday=date(1990, 5, 6))
    updated = domain.update_profile(
        member.member_id, {"birthday": date(1990, 5, 6), "name": "N"}, repo, NOW, by_staff=False
    )
    assert (updated.birthday, updated.name) == (date(1990, 5, 6), "N")


def test_given_a_set_birthday_when_staff_changes_it_then_ok(repo, hasher):
    member = registered(repo, hasher, birthday=date(1990, 5, 6))
    updated = domain.update_profile(
        member.member_id, {"birthday": date(1990, 6, 5)}, repo, NOW, by_staff=True
    )
    assert updated.birthday == date(1990, 6, 5)


@pytest.mark.parametrize("by_staff", [False, True])
def test_given_a_future_birthday_when_updating_then_invalid_birthday_even_for_staff(
    repo, hasher, by_staff
):
    member = registered(repo, hasher)
    with pytest.raises(BusinessRuleViolation) as excinfo:
        domain.update_profile(
            member.member_id, {"birthday": date(2026, 3, 2)}, repo, NOW, by_staff=by_staff
        )
    assert excinfo.value.code == "INVALID_BIRTHDAY"
    assert repo.updates == []


def test_given_an_unknown_member_when_updating_then_member_not_found(repo):
    with pytest.raises(NotFound) as excinfo:
        domain.update_profile("mbr_missing", {"name": "X"}, repo, NOW, by_staff=True)
    assert excinfo.value.code == "MEMBER_NOT_FOUND"


def test_given_no_changes_when_updating_then_the_member_is_returned_unwritten(repo, hasher):
    member = registered(repo, hasher)
    assert domain.update_profile(member.member_id, {}, repo, NOW, by_staff=False) == member
    assert repo.updates == []


def test_given_nulls_when_applying_changes_then_tags_and_consent_get_their_empty_values():
    member = Member(
        member_id="mbr_1",
        phone="+8613900001111",
        channel="app",
        created_at=NOW,
        updated_at=NOW,
        tags=("a",),
        marketing_consent=True,
    )
    changed = with_changes(member, {"tags": None, "marketing_consent": None, "name": None}, NOW)
    assert changed == replace(
        member, tags=(), marketing_consent=False, name=None, version=2, updated_at=NOW
    )


def test_given_an_unknown_phone_when_finding_then_member_not_found(repo, hasher):
    with pytest.raises(NotFound) as excinfo:
        domain.find_by_phone("13900009999", repo, hasher)
    assert excinfo.value.code == "MEMBER_NOT_FOUND"


@pytest.mark.parametrize("number", ["010 1234 5678", "+86 400 812 3456", "0044 20 7946 0958"])
def test_given_a_landline_or_service_number_when_normalising_then_invalid_phone(number):
    with pytest.raises(InvalidInput) as excinfo:
        normalise_phone(number)
    assert excinfo.value.code == "INVALID_PHONE"
