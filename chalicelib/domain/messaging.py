"""Member messages: what may be sent when. Channels (SMS, WeChat template, email) are
adapters behind `MessageSender`; locally a log sender stands in for all of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol

from chalicelib.domain.clock import PROGRAM_TZ

QUIET_START = time(22, 0)
QUIET_END = time(8, 0)


@dataclass(frozen=True)
class Recipient:
    member_id: str
    phone: str
    name: str | None


class MessageSender(Protocol):
    def send(self, recipient: Recipient, template: str, params: dict[str, Any]) -> None: ...


def in_quiet_hours(moment: datetime) -> bool:
    local = moment.astimezone(PROGRAM_TZ).time()
    return local >= QUIET_START or local < QUIET_END


def seconds_until_quiet_hours_end(moment: datetime) -> int:
    local = moment.astimezone(PROGRAM_TZ)
    end = local.replace(hour=QUIET_END.hour, minute=0, second=0, microsecond=0)
    if local.time() >= QUIET_END:
        end += timedelta(days=1)
    return max(1, int((end - local).total_seconds()))


def may_send(category: str, marketing_consent: bool) -> bool:
    """Service messages (welcome, points and tier notices) always; marketing only with
    the member's consent."""
    return category != "marketing" or marketing_consent
