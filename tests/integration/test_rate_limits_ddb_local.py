"""The rate limiter's shared counter on DynamoDB Local: concurrent requests of one caller,
as many containers would send them, never admit more than the limit in a window, and
an admitted check is one write unit."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.dal.limits import DynamoRateCounter, rate_key
from chalicelib.dal.tables import RateCounterItem
from chalicelib.domain.limits import Limiter, Subject, Window, parse_limits
from chalicelib.errors import RateLimited

pytestmark = pytest.mark.integration

THREADS = 8
EACH = 12


def hammer(take: Any, each: int = EACH) -> list[bool]:
    """THREADS threads, released together, each calling `take` `each` times."""
    barrier = threading.Barrier(THREADS)
    results: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        for _ in range(each):
            outcome = take()
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_given_concurrent_requests_of_one_store_then_exactly_the_limit_is_admitted(
    ddb_local: dict[str, str],
) -> None:
    counter = DynamoRateCounter()  # each thread as a container of its own: one shared item
    subject = Subject("store", f"s-{uuid.uuid4().hex[:8]}")
    window = Window(1_800_000_000, 1_800_000_060)
    results = hammer(lambda: counter.take(subject, window, 30))
    assert len(results) == THREADS * EACH
    assert results.count(True) == 30
    item = RateCounterItem.get(rate_key(subject, window), "RATE", consistent_read=True)
    assert item.n == 30  # refusals do not count
    assert item.expires_at == window.end + 60
    # the next window starts from nothing
    later = Window(window.end, window.end + 60)
    assert counter.take(subject, later, 30) is True


@pytest.mark.parametrize(
    ("spec", "divisor", "least"),
    [("member=20", 50, 20), ("store=100", 10, 100 - 4 * 9)],
    ids=["one-at-a-time", "leases-of-10"],
)
def test_given_limiters_in_several_containers_then_they_never_admit_beyond_the_limit(
    ddb_local: dict[str, str], spec: str, divisor: int, least: int
) -> None:
    """Each limiter stands for a container (its own leases and refusals); the counter is
    shared. With leases, what a container leased and did not use is lost for the window."""
    limits = replace(parse_limits(spec), lease_divisor=divisor)
    limit = limits.limit(spec.split("=")[0])
    clock = 1_800_000_000.0
    containers = [Limiter(limits, DynamoRateCounter(), clock=lambda: clock) for _ in range(4)]
    caller = type(
        "Caller",
        (),
        {
            "kind": spec.split("=")[0],
            "subject": "sub",
            "member_id": f"m-{uuid.uuid4().hex[:8]}",
            "store_id": f"s-{uuid.uuid4().hex[:8]}",
        },
    )()
    turn = iter(range(10**6))
    lock = threading.Lock()

    def take() -> bool:
        with lock:
            container = containers[next(turn) % len(containers)]
        try:
            container.admit(caller)
        except RateLimited:
            return False
        return True

    results = hammer(take, each=limit * 3 // THREADS)
    assert least <= results.count(True) <= limit


def test_an_admitted_check_costs_one_write_unit(ddb_local: dict[str, str]) -> None:
    """A refused one is billed the same by AWS (a failed conditional write consumes the
    units of the item's size); DynamoDB Local reports no capacity on a failure."""
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    key = {"pk": {"S": f"RATE#member#m-{uuid.uuid4().hex[:8]}#1800000000"}, "sk": {"S": "RATE"}}

    def update() -> tuple[bool, float | None]:
        try:
            response = client.update_item(
                TableName=ddb_local["RuntimeTable"],
                Key=key,
                UpdateExpression="ADD n :one SET expires_at = :exp",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":exp": {"N": "1800000120"},
                    ":limit": {"N": "1"},
                },
                ReturnConsumedCapacity="TOTAL",
            )
        except client.exceptions.ConditionalCheckFailedException:
            return False, None
        return True, float(response["ConsumedCapacity"]["CapacityUnits"])

    assert update() == (True, 1.0)
    assert update() == (False, None)
