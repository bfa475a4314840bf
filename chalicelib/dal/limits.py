"""The rate limiter's shared counter (chalicelib/domain/limits.py) on the Runtime table.

One item per caller, scope and window: `RATE#<scope>#<caller>#<window start>` / `RATE`,
`n` the requests counted and `expires_at` (TTL, clean-up only) a minute after the window.
Counting is one `UpdateItem`: `ADD n :count`, on condition `n` absent or
`n <= limit - count` (a lease of `count` requests, domain/limits.Limiter). Under
1 KB, so 1 write unit, admitted or refused (a failed conditional write is billed too);
no read. Each window is a new partition key, so a busy store's counter is one key for one
minute (10 writes/s at 600/min, far below a partition's 1,000/s).
"""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from chalicelib.dal.tables import RateCounterItem
from chalicelib.domain.limits import Subject, Window
from chalicelib.observability import logger, metrics

RATE_SK = "RATE"
CLEAN_UP_AFTER_SECONDS = 60  # TTL slack past the window's end (TTL is not punctual anyway)


def rate_key(subject: Subject, window: Window) -> str:
    return f"RATE#{subject.scope}#{subject.caller}#{window.start}"


class DynamoRateCounter:
    def take(self, subject: Subject, window: Window, limit: int, count: int = 1) -> bool:
        item = RateCounterItem(pk=rate_key(subject, window), sk=RATE_SK)
        if count > limit:
            return False
        try:
            item.update(
                actions=[
                    RateCounterItem.n.add(count),
                    RateCounterItem.expires_at.set(window.end + CLEAN_UP_AFTER_SECONDS),
                ],
                condition=RateCounterItem.n.does_not_exist() | (RateCounterItem.n <= limit - count),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            # Fail open: a limiter that cannot count must not stop the program (the
            # gateway's throttling and the WAF rule still stand); logged and counted.
            logger.warning(
                "rate limit not checked", extra={"scope": subject.scope, "error": str(exc)}
            )
            metrics.add_metric(name="RateLimitUnchecked", unit="Count", value=1)
        return True
