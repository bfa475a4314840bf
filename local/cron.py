"""EventBridge schedule expressions (`cron(...)`, `rate(...)`), evaluated in UTC."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """None means 'any' (`*` or `?`)."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-")
            start, end = _value(a, names), _value(b, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    return int(text)


@dataclass(frozen=True)
class ScheduleExpression:
    rate: timedelta | None = None
    minutes: set[int] | None = None
    hours: set[int] | None = None
    days: set[int] | None = None
    months: set[int] | None = None
    weekdays: set[int] | None = None  # 1 = Sunday, as EventBridge counts
    years: set[int] | None = None

    @classmethod
    def parse(cls, expression: str) -> ScheduleExpression:
        rate = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
        if rate:
            amount, unit = int(rate.group(1)), rate.group(2).rstrip("s")
            return cls(rate=timedelta(**{unit + "s": amount}))
        cron = re.fullmatch(r"cron\((.+)\)", expression)
        if not cron:
            raise ValueError(f"not a schedule expression: {expression}")
        parts = cron.group(1).split()
        if len(parts) != 6:
            raise ValueError("cron() takes six fields: minutes hours day month weekday year")
        return cls(
            minutes=_field(parts[0], 0, 59),
            hours=_field(parts[1], 0, 23),
            days=_field(parts[2], 1, 31),
            months=_field(parts[3], 1, 12, _MONTHS),
            weekdays=_field(parts[4], 1, 7, _DAYS),
            years=_field(parts[5], 1970, 2199),
        )

    def matches(self, moment: datetime) -> bool:
        weekday = (moment.isoweekday() % 7) + 1  # Monday=2 ... Sunday=1
        checks = (
            (self.minutes, moment.minute),
            (self.hours, moment.hour),
            (self.days, moment.day),
            (self.months, moment.month),
            (self.weekdays, weekday),
            (self.years, moment.year),
        )
        return all(allowed is None or value in allowed for allowed, value in checks)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after `moment` (minute resolution)."""
        if self.rate is not None:
            return moment + self.rate
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches(candidate):
                return candidate
            candidate += timedelta(minutes=1)
        raise ValueError("schedule never fires within a year")
