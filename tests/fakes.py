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
