"""Program time: days, months and birthdays are counted in the program's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

PROGRAM_TZ = ZoneInfo("Asia/Shanghai")


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, second precision with milliseconds, 'Z' suffix: what api.md promises."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def program_date(moment: datetime, tz: ZoneInfo = PROGRAM_TZ) -> date:
    return moment.astimezone(tz).date()
