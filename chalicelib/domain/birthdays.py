"""Whose birthday is it today, in program time, and where the birthday index keeps them."""

from __future__ import annotations

import calendar
from datetime import date

from chalicelib.domain.expiry import shard_of


def birthday_keys(today: date) -> list[str]:
    """MMDD keys celebrated on `today`. Members born on 29 February are greeted on
    28 February in years without one, so nobody waits four years."""
    keys = [today.strftime("%m%d")]
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        keys.append("0229")
    return keys


def birthday_key(birthday: date, member_id: str) -> str:
    """The member's key on the sparse birthday index, '<MMDD>#<shard>': a day's birthdays
    spread over the shards, so the daily job runs one task per shard."""
    return f"{birthday.strftime('%m%d')}#{shard_of(member_id)}"


def shard_keys(today: date, shard: int) -> list[str]:
    """The index keys one shard's task reads for `today`. Shard 0 also reads the bare MMDD
    keys of members written before the key carried a shard."""
    keys = [f"{mmdd}#{shard}" for mmdd in birthday_keys(today)]
    return keys + birthday_keys(today) if shard == 0 else keys
