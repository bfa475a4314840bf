"""Helpers the test files share, whatever they run against.

- `SignedPos`    : a till's store key signing each request; a transport sends it
                   (`Pos` here over chalice.test.Client, `tests.e2e.clients.Pos` over HTTP).
- `wait_for`     : poll a condition until it holds or time runs out.
- `at_once`, `codes` : attempts raced on threads released together, and their outcomes.
- `run_machine`  : a hypothesis state machine run against the real tables.
- `stream_record`, `sqs_record` : a DynamoDB stream record, an SQS message, as Lambda
                   delivers them; `fake_queues` : the jobs and messages queues in memory.
- `register_member`, `credit`, `make_gold` : a member registered, points credited at
                   a given time, a member made gold, through the domain and the services
                   the current settings point at.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from local.pos import encode, key_headers
from tests.conftest import unique_phone


class SignedPos:
    """A till: signs every request with its store key, a fresh nonce each time.
    `store_id` makes it claim another store than its key's."""

    def __init__(self, key: Mapping[str, str], store_id: str | None = None) -> None:
        self.key = key
        self.store_id = store_id

    def signed(
        self, method: str, path: str, payload: Any = None, *, raw: bytes | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """(body, headers) of a request: `raw` bytes as they are, else `payload` encoded
        as a POS does, else no body."""
        body = raw if raw is not None else (encode(payload) if payload is not None else b"")
        return body, key_headers(self.key, method, path, body, store_id=self.store_id)


class Pos(SignedPos):
    """A till in process, through chalice.test.Client."""

    def __init__(self, client: Any, key: Mapping[str, str], store_id: str | None = None) -> None:
        super().__init__(key, store_id)
        self.client = client

    def send(self, method: str, path: str, payload: Any = None, *, raw: bytes | None = None):
        body, headers = self.signed(method, path, payload, raw=raw)
        return self.client.http.request(method, path, headers=headers, body=body)


_sequence = itertools.count(100)  # stream sequence numbers, increasing across the session


def stream_record(
    event_name: str, image: dict[str, Any], created: int = 1772366400
) -> dict[str, Any]:
    """The record the members stream delivers for a write of `image` (low-level format)
    at `created` (epoch seconds): INSERT carries it as the new image, REMOVE as the old,
    MODIFY as both."""
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": {"pk": image["pk"], "sk": image["sk"]},
        "SequenceNumber": f"{next(_sequence):021d}",
        "SizeBytes": 256,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if event_name != "REMOVE":
        dynamodb["NewImage"] = image
    if event_name != "INSERT":
        dynamodb["OldImage"] = image
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "cn-north-1",
        "dynamodb": dynamodb,
        "eventSourceARN": (
            "arn:aws:dynamodb:cn-north-1:123456789012:table/members/stream/2026-03-01T00:00"
        ),
    }


def sqs_record(body: Any, receipt_handle: str = "rh-unused") -> dict[str, Any]:
    """The record an SQS event source delivers for a first receive of `body` (as JSON)."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": receipt_handle,
        "body": json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1772366400000",
            "SenderId": "123456789012",
            "ApproximateFirstReceiveTimestamp": "1772366400000",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:cn-north-1:123456789012:unit-messages",
        "awsRegion": "cn-north-1",
    }


def fake_queues(monkeypatch: Any) -> tuple[Any, Any]:
    """(tasks, outbox): what the services send to the jobs and the messages queues,
    kept in memory for the test to deliver."""
    from chalicelib.wiring import services
    from tests.fakes import FakeQueue

    tasks, outbox = FakeQueue(), FakeQueue()
    monkeypatch.setattr(services().tasks, "send_many", tasks.send_many)
    monkeypatch.setattr(services().messages, "send_many", outbox.send_many)
    return tasks, outbox


def wait_for(condition: Callable[[], bool], seconds: float = 30.0, every: float = 0.2) -> bool:
    """True as soon as `condition()` holds; False if it still does not after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def at_once(attempts: Sequence[Callable[[], Any]]) -> list[Any]:
    """Each attempt on a thread of its own, all released together; what each returned,
    or the exception it raised, in the order they finished."""
    barrier = threading.Barrier(len(attempts))
    outcomes: list[Any] = []

    def run(attempt: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            outcomes.append(attempt())
        except BaseException as exc:  # the caller sorts them out
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(attempt,)) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def codes(outcomes: list[Any]) -> list[str]:
    """ "ok" for each attempt that returned, the code of each DomainError raised; any other
    exception is raised here."""
    from chalicelib.errors import DomainError

    found = []
    for outcome in outcomes:
        if isinstance(outcome, DomainError):
            found.append(outcome.code)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            found.append("ok")
    return found


def run_machine(machine: Any, examples: int, steps: int = 12) -> None:
    """Run a hypothesis `RuleBasedStateMachine` for `examples` programs of up to `steps`
    steps, without deadlines or health checks (DynamoDB Local is slow and shared)."""
    from hypothesis import HealthCheck, settings

    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    machine.TestCase().runTest()


def register_member(birthday: date | None = None, **fields: Any) -> str:
    """A member registered now (an app sign-up named Li with a fresh phone, unless
    `fields` say otherwise); its id."""
    from chalicelib.domain import members as members_domain
    from chalicelib.wiring import services

    svc = services()
    registration = members_domain.Registration(
        **{"phone": unique_phone(), "channel": "app", "name": "Li", "birthday": birthday, **fields}
    )
    return members_domain.register(
        registration, svc.members, svc.hasher, datetime.now(UTC)
    ).member_id


def credit(member_id: str, points: int, at: datetime, reason: str = "goodwill") -> None:
    """`points` credited to the member by an adjustment recorded at `at` (a lot earned
    then), through the services the current settings point at."""
    from chalicelib.domain import points as domain
    from chalicelib.wiring import services

    svc = services()
    domain.record_adjustment(
        domain.Adjustment(
            member_id=member_id,
            adjustment_id=f"adj-{uuid.uuid4().hex[:8]}",
            points=points,
            reason=reason,
            actor="test",
            request_hash=uuid.uuid4().hex,
        ),
        domain.Context(
            repo=svc.ledger, program=svc.program.config(), tiers=svc.program.tiers(), now=at
        ),
    )


def make_gold(member_id: str, since: date, review_day: date, key: str | None = None) -> None:
    """The member gold since `since` without spend, its review due on `review_day` and
    filed under `key` (that day's review key unless given)."""
    from chalicelib.domain.tiering import TierChange, review_key, start_of_day
    from chalicelib.wiring import services

    assert services().tiers.change(
        TierChange(
            member_id,
            "member",
            "gold",
            "upgrade",
            0,
            since,
            start_of_day(review_day),
            key or review_key(review_day, member_id),
            None,
        ),
        datetime.now(UTC),
    )
