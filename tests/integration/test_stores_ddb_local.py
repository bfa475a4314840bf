"""Stores and POS keys on DynamoDB Local: conditional creates and revocations for real."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.domain import stores as domain
from chalicelib.errors import Conflict, NotFound, Unavailable
from chalicelib.wiring import services

pytestmark = pytest.mark.integration


def at_once(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            results.append(work(index))
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def test_given_10_threads_creating_one_store_with_one_body_then_one_store_and_one_answer(
    ddb_local,
):
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    repo = services().program

    def create(_: int) -> dict[str, Any]:
        return domain.create_store(store_id, "dealer-demo", "Kiosk", repo, datetime.now(UTC))

    answers, errors = at_once(10, create)
    # A request still in flight makes a loser answer CONTENDED (503, retry), never a 500.
    assert all(isinstance(e, Unavailable) for e in errors), errors
    assert answers
    assert all(a == answers[0] for a in answers)
    retried = create(0)
    assert retried == answers[0]
    listed, _ = repo.stores(100, None)
    assert [s.store_id for s in listed].count(store_id) == 1


def test_given_10_threads_creating_one_store_with_different_names_then_one_wins_the_rest_409(
    ddb_local,
):
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    repo = services().program

    def create(index: int) -> dict[str, Any]:
        return domain.create_store(
            store_id, "dealer-demo", f"Kiosk {index}", repo, datetime.now(UTC)
        )

    answers, errors = at_once(10, create)
    assert len(answers) == 1
    assert all(isinstance(e, Conflict | Unavailable) for e in errors), errors
    stored = repo.store(store_id, fresh=True)
    assert stored is not None
    assert stored.name == answers[0]["name"]


def test_given_a_key_when_revoked_twice_at_once_then_one_revocation_time_and_other_stores_cannot(
    ddb_local,
):
    repo = services().program
    key = domain.issue_key("store-001", repo, datetime.now(UTC))
    with pytest.raises(NotFound):
        domain.revoke_key("store-002", key.key_id, repo, datetime.now(UTC))
    revoked, errors = at_once(
        2, lambda _: domain.revoke_key("store-001", key.key_id, repo, datetime.now(UTC))
    )
    assert errors == []
    assert revoked[0].revoked_at == revoked[1].revoked_at
    keys, _ = repo.store_keys("store-001", 100, None)
    [listed] = [k for k in keys if k.key_id == key.key_id]
    assert (listed.active, listed.revoked_at) == (False, revoked[0].revoked_at)


def test_given_a_closed_store_when_renamed_at_the_same_time_then_both_changes_stay(ddb_local):
    store_id = f"s-{uuid.uuid4().hex[:8]}"
    repo = services().program
    domain.create_store(store_id, "dealer-demo", "Kiosk", repo, datetime.now(UTC))
    changes = [{"active": False}, {"name": "Kiosk 2"}]
    _, errors = at_once(
        2, lambda i: domain.update_store(store_id, changes[i], repo, datetime.now(UTC))
    )
    assert errors == []
    stored = repo.store(store_id, fresh=True)
    assert stored is not None
    assert (stored.active, stored.name) == (False, "Kiosk 2")


@pytest.mark.parametrize("sk", ["", "x" * 1100])
def test_given_a_crafted_listing_cursor_whose_key_dynamodb_refuses_when_listing_stores_then_400_invalid_cursor(
    ddb_local, app_client, sk
):
    import base64
    import json

    from local.tools import member_or_staff_token

    raw = json.dumps({"pk": {"S": "STORES"}, "sk": {"S": sk}}).encode()
    cursor = base64.urlsafe_b64encode(raw).decode()
    response = app_client.http.get(
        f"/v1/admin/stores?cursor={cursor}",
        headers={"Authorization": f"Bearer {member_or_staff_token('ops', None)}"},
    )
    assert response.status_code == 400, response.json_body
    # (a cursor too long for the query's schema is refused before it is decoded)
    assert response.json_body["error"]["code"] in ("INVALID_CURSOR", "VALIDATION_ERROR")
