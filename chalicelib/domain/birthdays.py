"""Whose birthday is it today, in program time."""

from __future__ import annotations

import calendar
from datetime import date


def birthday_keys(today: date) -> list[str]:
    """MMDD keys celebrated on `today`. Members born on 29 February are greeted on
    28 February in years without one, so nobody waits four years."""
    keys = [today.strftime("%m%d")]
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        keys.append("0229")
    return keys
