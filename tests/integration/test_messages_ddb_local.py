"""Message delivery records on DynamoDB Local (powertools idempotency, real conditional
writes): concurrent duplicates send once; a worker that died mid-send holds the message
only until its deadline."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

from chalicelib.dal.senders import LogSender
from chalicelib.handlers import messages
from tests.fakes import FakeLambdaContext
from tests.helpers import sqs_record
from tests.integration.test_ledger_ddb_local import new_member

pytestmark = pytest.mark.integration
DAYTIME = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def welcome(member_id: str) -> dict[str, Any]:
    return {
        "message_id": f"welcome#{member_id}#{uuid.uuid4().hex[:6]}",
        "member_id": member_id,
        "template": "welcome",
        "category": "service",
        "params": {},
    }


@pytest.fixture
def daytime(monkeypatch):
    monkeypatch.setattr(messages, "utc_now", lambda: DAYTIME)


def test_given_eight_deliveries_of_one_message_at_once_then_one_sends_and_seven_wait(
    ddb_local, daytime, monkeypatch
):
    workers = 8
    waited: list[str] = []
    others_done = threading.Event()
    lock = threading.Lock()

    class HeldSender(LogSender):
        """Sends only once every other delivery has tried: they all overlap it."""

        def send(self, recipient, template, params):
            assert others_done.wait(60), "another delivery did not come back"
            super().send(recipient, template, params)

    held = HeldSender()
    monkeypatch.setattr(messages, "_sender", held)
    member_id = new_member()
    body = welcome(member_id)
    messages._delivery().config.register_lambda_context(FakeLambdaContext())
    start = threading.Barrier(workers)
    outcomes: list[str] = []

    def deliver() -> None:
        start.wait()
        try:
            outcomes.append(messages.record_handler(SQSRecord(sqs_record(body))))
        except IdempotencyAlreadyInProgressError:
            with lock:
                waited.append("in progress")
                if len(waited) == workers - 1:
                    others_done.set()

    threads = [threading.Thread(target=deliver) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    assert outcomes == ["sent"]
    assert len(waited) == workers - 1
    assert held.sent == [(member_id, "welcome")]
    # the seven come back after the visibility timeout: the message is already sent
    again = messages.handle({"Records": [sqs_record(body) for _ in range(3)]}, FakeLambdaContext())
    assert again == {"batchItemFailures": []}
    assert held.sent == [(member_id, "welcome")]
    assert messages.delivered(body["message_id"])


class FunctionTimedOut(BaseException):
    pass


def test_given_a_worker_that_timed_out_mid_send_then_the_redelivery_after_its_deadline_sends(
    ddb_local, daytime, monkeypatch
):
    attempts: list[int] = []

    class DyingSender(LogSender):
        def send(self, recipient, template, params):
            attempts.append(1)
            if len(attempts) == 1:
                raise FunctionTimedOut()
            super().send(recipient, template, params)

    sender = DyingSender()
    monkeypatch.setattr(messages, "_sender", sender)
    member_id = new_member()
    body = welcome(member_id)
    dying = FakeLambdaContext(remaining_ms=0)
    with pytest.raises(FunctionTimedOut):
        messages.handle({"Records": [sqs_record(body)]}, dying)
    assert not messages.delivered(body["message_id"])
    dying.wait_past_deadline()

    first, second = sqs_record(body), sqs_record(body)
    assert messages.handle({"Records": [first]}, FakeLambdaContext()) == {"batchItemFailures": []}
    assert messages.handle({"Records": [second]}, FakeLambdaContext()) == {"batchItemFailures": []}
    assert sender.sent == [(member_id, "welcome")]
    assert len(attempts) == 2
