"""Rate limits (docs/architecture.md, "Rate limits"): the limiter with an injected clock
and an in-memory counter, then over HTTP (chalice.test.Client on moto) with low limits
set explicitly (the local stage's own limits are far above what any test sends)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.domain.limits import (
    DEFAULT_LIMITS,
    Limiter,
    RateLimits,
    Subject,
    Window,
    parse_limits,
)
from chalicelib.errors import RateLimited
from tests.conftest import auth, token_for, unique_phone
from tests.helpers import Pos

T0 = 1_796_000_000.0 - (1_796_000_000 % 60)  # the start of a window


class Caller:
    def __init__(
        self,
        kind: str,
        subject: str,
        member_id: str | None = None,
        store_id: str | None = None,
    ) -> None:
        self.kind, self.subject = kind, subject
        self.member_id, self.store_id = member_id, store_id


def member(member_id: str) -> Caller:
    return Caller("member", f"sub-{member_id}", member_id=member_id)


def store(store_id: str) -> Caller:
    return Caller("store", f"store:{store_id}", store_id=store_id)


class MemoryCounter:
    """The shared counter's contract, in memory: count if below the limit."""

    def __init__(self) -> None:
        self.counts: dict[tuple[Subject, int], int] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def take(self, subject: Subject, window: Window, limit: int, count: int = 1) -> bool:
        with self._lock:
            self.calls += 1
            key = (subject, window.start)
            if self.counts.get(key, 0) + count > limit:
                return False
            self.counts[key] = self.counts.get(key, 0) + count
            return True


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(**limits: int) -> tuple[Limiter, MemoryCounter, Clock]:
    counter, clock = MemoryCounter(), Clock(T0)
    spec = ",".join(f"{scope}={n}" for scope, n in limits.items())
    return Limiter(parse_limits(spec), counter, clock=clock), counter, clock


def outcomes(limit: Limiter, caller: Caller, n: int, rate_class: str | None = None) -> list[Any]:
    found: list[Any] = []
    for _ in range(n):
        try:
            limit.admit(caller, rate_class)
            found.append("ok")
        except RateLimited as exc:
            found.append(exc)
    return found


# ---- the limiter ----------------------------------------------------------------------------


def test_given_a_burst_under_the_limit_when_counted_then_every_request_is_admitted() -> None:
    limit, _, _ = limiter(member=5)
    assert outcomes(limit, member("m1"), 5) == ["ok"] * 5


def test_given_a_burst_above_the_limit_then_the_excess_is_refused_with_the_seconds_left() -> None:
    limit, _, clock = limiter(member=3)
    clock.now = T0 + 15.5
    found = outcomes(limit, member("m1"), 5)
    assert found[:3] == ["ok"] * 3
    for refused in found[3:]:
        assert isinstance(refused, RateLimited)
        assert refused.code == "RATE_LIMITED"
        assert refused.details == {
            "scope": "member",
            "limit": 3,
            "window_seconds": 60,
            "retry_after_seconds": 45,  # 44.5 s left, rounded up
        }


def test_given_a_full_window_when_the_next_window_starts_then_requests_are_admitted_again() -> None:
    limit, _, clock = limiter(store=2)
    assert outcomes(limit, store("s1"), 3)[2] != "ok"
    clock.now = T0 + 59.9
    assert outcomes(limit, store("s1"), 1) != ["ok"]
    clock.now = T0 + 60
    assert outcomes(limit, store("s1"), 3)[:2] == ["ok", "ok"]


def test_given_one_member_over_its_limit_then_other_members_and_stores_are_not_limited() -> None:
    limit, _, _ = limiter(member=2, store=2)
    assert outcomes(limit, member("m1"), 4)[2:] != ["ok", "ok"]
    assert outcomes(limit, member("m2"), 2) == ["ok", "ok"]
    assert outcomes(limit, store("s1"), 2) == ["ok", "ok"]
    # the store's own id is not confused with a member's of the same id
    assert outcomes(limit, store("m1"), 2) == ["ok", "ok"]


def test_given_a_route_class_then_it_counts_apart_from_the_callers_general_limit() -> None:
    limit, _, _ = limiter(member=100, member_code=2)
    found = outcomes(limit, member("m1"), 3, "member_code")
    assert found[:2] == ["ok", "ok"]
    assert isinstance(found[2], RateLimited)
    assert found[2].details["scope"] == "member_code"
    assert outcomes(limit, member("m1"), 3) == ["ok"] * 3


def test_given_a_token_not_yet_a_member_then_it_counts_as_a_registrant_by_its_sign_in() -> None:
    limit, _, _ = limiter(registrant=1)
    app_user = Caller("member", "sub-new")
    found = outcomes(limit, app_user, 2)
    assert found[0] == "ok"
    assert found[1].details["scope"] == "registrant"
    assert outcomes(limit, Caller("member", "sub-other"), 1) == ["ok"]


def test_given_staff_then_each_sign_in_has_its_own_limit() -> None:
    limit, _, _ = limiter(staff=1)
    ops = Caller("staff", "ops-1", store_id=None)
    shop = Caller("staff", "clerk-1", store_id="s1")
    assert outcomes(limit, ops, 2)[1] != "ok"
    assert outcomes(limit, shop, 1) == ["ok"]
    assert outcomes(limit, store("s1"), 1) == ["ok"]  # a clerk does not use the store's


def test_given_a_refusal_then_the_container_refuses_the_rest_of_the_window_without_a_write() -> (
    None
):
    limit, counter, clock = limiter(member=1)
    outcomes(limit, member("m1"), 2)
    assert counter.calls == 2
    outcomes(limit, member("m1"), 10)
    assert counter.calls == 2  # remembered: no counter write
    clock.now = T0 + 60
    assert outcomes(limit, member("m1"), 1) == ["ok"]
    assert counter.calls == 3


def test_given_a_store_limit_of_600_then_a_container_writes_once_per_lease_of_12() -> None:
    limit, counter, clock = limiter(store=600)
    assert outcomes(limit, store("s1"), 600) == ["ok"] * 600
    assert counter.calls == 50
    refused = outcomes(limit, store("s1"), 5)
    assert all(isinstance(o, RateLimited) for o in refused)
    assert counter.calls == 52  # a lease of 12, then one, refused; then remembered
    clock.now = T0 + 60  # a lease left over is not carried into the next window
    assert outcomes(limit, store("s1"), 1) == ["ok"]
    assert counter.counts[(Subject("store", "s1"), int(T0) + 60)] == 12


def test_given_a_window_nearly_full_then_a_container_takes_one_at_a_time() -> None:
    limit, counter, _ = limiter(store=600)
    counter.counts[(Subject("store", "s1"), int(T0))] = 595  # other containers' share
    found = outcomes(limit, store("s1"), 7)
    assert found[:5] == ["ok"] * 5
    assert all(isinstance(o, RateLimited) for o in found[5:])
    # a lease of 12 tried once, then one write per request, one refusal, then remembered
    assert counter.calls == 1 + 5 + 1
    assert counter.counts[(Subject("store", "s1"), int(T0))] == 600


def test_given_leases_in_several_containers_then_together_they_never_admit_beyond_the_limit() -> (
    None
):
    counter = MemoryCounter()
    limits = replace(parse_limits("store=100"), lease_divisor=10)  # leases of 10
    containers = [Limiter(limits, counter, clock=Clock(T0)) for _ in range(4)]
    admitted = 0
    for turn in range(400):
        try:
            containers[turn % 4].admit(store("s1"))
            admitted += 1
        except RateLimited:
            pass
    assert admitted == 100  # round robin: every lease is used up
    # a container that took a lease and went quiet strands what it did not use
    stranded = [Limiter(limits, counter, clock=Clock(T0 + 60)) for _ in range(4)]
    stranded[0].admit(store("s1"))
    others = outcomes(stranded[1], store("s1"), 200)
    assert others.count("ok") == 90
    assert counter.counts[(Subject("store", "s1"), int(T0) + 60)] == 100


def test_given_a_scope_limit_of_zero_or_limits_off_then_nothing_is_counted() -> None:
    limit, counter, _ = limiter(member=0)
    assert outcomes(limit, member("m1"), 100) == ["ok"] * 100
    off = Limiter(parse_limits("off"), counter)
    assert outcomes(off, store("s1"), 100) == ["ok"] * 100
    assert counter.calls == 0


def test_given_many_threads_in_one_container_then_no_more_than_the_limit_is_admitted() -> None:
    limit, _, _ = limiter(store=25)
    admitted: list[str] = []

    def burst() -> None:
        admitted.extend(o for o in outcomes(limit, store("s1"), 10) if o == "ok")

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 25


def test_parse_limits_defaults_overrides_off_and_mistakes() -> None:
    assert parse_limits(None) == RateLimits(dict(DEFAULT_LIMITS), 60)
    assert parse_limits("").limits == DEFAULT_LIMITS
    custom = parse_limits(" member=120 , member_code=5", 30)
    assert custom.limit("member") == 120
    assert custom.limit("member_code") == 5
    assert custom.limit("store") == DEFAULT_LIMITS["store"]
    assert custom.window_seconds == 30
    assert parse_limits("OFF").enabled is False
    for wrong, said in (
        ("members=5", "unknown"),
        ("member", "unknown"),
        ("member=lots", "whole number"),
        ("member=-1", "negative"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_limits(wrong)
    with pytest.raises(ValueError, match="at least one second"):
        parse_limits(None, 0)


def test_given_malformed_rate_limit_settings_then_loading_settings_fails(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.config import SettingsError, load_settings

    monkeypatch.setenv("RATE_LIMITS", "store=many")
    with pytest.raises(SettingsError):
        load_settings()
    monkeypatch.setenv("RATE_LIMITS", "store=7")
    monkeypatch.setenv("RATE_LIMIT_WINDOW_SECONDS", "10")
    monkeypatch.setenv("RATE_LIMIT_LEASE_DIVISOR", "5")
    limits = load_settings().rate_limits
    assert (limits.limit("store"), limits.window_seconds, limits.lease_size(7)) == (7, 10, 1)
    assert limits.lease_size(600) == 120
    monkeypatch.setenv("RATE_LIMIT_LEASE_DIVISOR", "0")
    with pytest.raises(SettingsError):
        load_settings()


def test_the_defaults_are_the_documented_ones() -> None:
    assert DEFAULT_LIMITS == {
        "store": 600,
        "member": 60,
        "registrant": 10,
        "staff": 300,
        "member_code": 10,
        "export": 5,
    }


# ---- over HTTP ------------------------------------------------------------------------------

LOW = "store=3,member=3,registrant=2,staff=1000,member_code=2,export=1"


@pytest.fixture
def limited(seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Low limits on moto, the limiter's clock at the start of a window."""
    from chalicelib.wiring import reset_services, services

    monkeypatch.setenv("RATE_LIMITS", LOW)
    reset_services()
    clock = Clock(T0)
    services().limiter.clock = clock
    yield clock
    reset_services()


@pytest.fixture
def pos(limited: Clock, app_client: Any, store_key: dict[str, str]) -> Pos:
    return Pos(app_client, store_key)


def register(client: Any, token: str) -> str:
    body = {"phone": unique_phone(), "channel": "app"}
    response = client.http.post("/v1/members", headers=auth(token), body=json.dumps(body))
    assert response.status_code == 201, response.json_body
    return str(response.json_body["member_id"])


def assert_rate_limited(response: Any, scope: str, limit: int) -> None:
    assert response.status_code == 429, response.json_body
    assert response.headers["Retry-After"] == "60"  # the clock is at the window's start
    error = response.json_body["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["message"]
    assert error["details"] == {
        "scope": scope,
        "limit": limit,
        "window_seconds": 60,
        "retry_after_seconds": 60,
    }


def scan(table: str) -> list[dict[str, Any]]:
    import boto3

    client = boto3.client("dynamodb", region_name="cn-north-1")
    return list(client.scan(TableName=table)["Items"])


def purchase(card: str) -> dict[str, Any]:
    return {
        "transaction_id": f"t-{uuid.uuid4().hex[:12]}",
        "store_id": "store-001",
        "card": card,
        "occurred_at": datetime.now(UTC).isoformat(),
        "items": [{"sku": "tea", "category": "drinks", "quantity": 1, "unit_price": 2500}],
        "total": 2500,
    }


def test_given_a_member_token_when_it_bursts_over_its_limit_then_429_with_retry_after(
    limited: Clock, app_client: Any, staff_token: str
) -> None:
    member_id = register(app_client, staff_token)
    token = token_for(member_id)
    statuses = [
        app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 200]
    assert_rate_limited(
        app_client.http.get(f"/v1/members/{member_id}", headers=auth(token)), "member", 3
    )
    # another member, and staff, are not limited by it
    other = register(app_client, staff_token)
    response = app_client.http.get(f"/v1/members/{other}", headers=auth(token_for(other)))
    assert response.status_code == 200
    response = app_client.http.get(f"/v1/members/{member_id}", headers=auth(staff_token))
    assert response.status_code == 200
    # the next window admits the member again
    limited.now += 60
    response = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert response.status_code == 200


def test_given_member_codes_then_their_own_lower_limit_applies_and_the_429_writes_no_code(
    limited: Clock, app_client: Any, staff_token: str, moto_tables: dict[str, str]
) -> None:
    member_id = register(app_client, staff_token)
    token = token_for(member_id)
    path = f"/v1/members/{member_id}/member-code"
    assert [app_client.http.post(path, headers=auth(token)).status_code for _ in range(2)] == [
        201,
        201,
    ]
    assert_rate_limited(app_client.http.post(path, headers=auth(token)), "member_code", 2)
    codes = [i for i in scan(moto_tables["RuntimeTable"]) if i["pk"]["S"].startswith("MCODE#")]
    assert len(codes) == 2
    # the member's other requests count apart
    response = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert response.status_code == 200


def test_given_an_app_user_signing_up_when_over_the_registrant_limit_then_429_and_no_member(
    limited: Clock, app_client: Any, moto_tables: dict[str, str]
) -> None:
    phone = unique_phone()
    token = token_for(None, phone=phone)
    wrong = json.dumps({"phone": unique_phone(), "channel": "app"})
    for _ in range(2):  # refused for the unverified phone, but counted
        response = app_client.http.post("/v1/members", headers=auth(token), body=wrong)
        assert response.status_code == 403
    members_before = scan(moto_tables["MembersTable"])
    body = json.dumps({"phone": phone, "channel": "app"})
    assert_rate_limited(
        app_client.http.post("/v1/members", headers=auth(token), body=body), "registrant", 2
    )
    assert scan(moto_tables["MembersTable"]) == members_before
    limited.now += 60
    assert app_client.http.post("/v1/members", headers=auth(token), body=body).status_code == 201


def test_given_a_pos_over_its_store_limit_when_purchasing_then_429_writes_nothing_and_the_retry_succeeds(
    limited: Clock, pos: Pos, app_client: Any, staff_token: str, moto_tables: dict[str, str]
) -> None:
    """The till retries the very same signed request (same nonce) after Retry-After."""
    card = f"C{uuid.uuid4().hex[:10]}"
    app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps(
            {"phone": unique_phone(), "channel": "pos", "external_ids": {"pos_card": card}}
        ),
    )
    for _ in range(3):
        assert pos.send("POST", "/v1/transactions", purchase(card)).status_code == 201
    body, headers = pos.signed("POST", "/v1/transactions", purchase(card))
    members_before = scan(moto_tables["MembersTable"])
    runtime_before = scan(moto_tables["RuntimeTable"])
    response = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert_rate_limited(response, "store", 3)
    # nothing written: no ledger entry, no request record, no nonce; only the counter
    assert scan(moto_tables["MembersTable"]) == members_before
    runtime_after = scan(moto_tables["RuntimeTable"])
    assert not [i for i in runtime_after if i["pk"]["S"].startswith("NONCE#")]
    assert [i for i in runtime_after if not i["pk"]["S"].startswith("RATE#")] == [
        i for i in runtime_before if not i["pk"]["S"].startswith("RATE#")
    ]
    # the till retries the very same signed request (same nonce) after Retry-After
    limited.now += 60
    response = app_client.http.post("/v1/transactions", headers=headers, body=body)
    assert response.status_code == 201, response.json_body


def test_given_a_pos_over_its_limit_on_a_nonce_route_then_the_nonce_is_not_spent(
    limited: Clock, pos: Pos, app_client: Any, staff_token: str
) -> None:
    phone = unique_phone()
    app_client.http.post(
        "/v1/members",
        headers=auth(staff_token),
        body=json.dumps({"phone": phone, "channel": "app"}),
    )
    path = "/v1/members/lookup?phone=" + phone.replace("+", "%2B")
    for _ in range(3):
        assert pos.send("GET", path).status_code == 200
    _, headers = pos.signed("GET", path)
    assert_rate_limited(app_client.http.get(path, headers=headers), "store", 3)
    limited.now += 60
    assert app_client.http.get(path, headers=headers).status_code == 200
    # and now it is spent: the same headers again are a replay
    response = app_client.http.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json_body["error"]["code"] == "NONCE_REUSED"


def test_given_a_forged_pos_signature_then_it_is_refused_before_any_count(
    limited: Clock, pos: Pos, app_client: Any, moto_tables: dict[str, str]
) -> None:
    _, headers = pos.signed("GET", "/v1/transactions/t-1")
    headers["X-Signature"] = "0" * 64
    for _ in range(5):
        response = app_client.http.get("/v1/transactions/t-1", headers=headers)
        assert response.status_code == 401
    assert not [i for i in scan(moto_tables["RuntimeTable"]) if i["pk"]["S"].startswith("RATE#")]


def test_given_the_counter_item_then_its_key_window_and_clean_up_time_are_as_documented(
    limited: Clock, app_client: Any, staff_token: str, moto_tables: dict[str, str]
) -> None:
    member_id = register(app_client, staff_token)
    token = token_for(member_id)
    app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    items = {
        i["pk"]["S"]: i
        for i in scan(moto_tables["RuntimeTable"])
        if i["pk"]["S"].startswith("RATE#member#")
    }
    item = items[f"RATE#member#{member_id}#{int(T0)}"]
    assert item["sk"]["S"] == "RATE"
    assert item["n"]["N"] == "2"
    assert item["expires_at"]["N"] == str(int(T0) + 60 + 60)


def test_the_openapi_document_states_429_with_retry_after_on_authenticated_routes() -> None:
    from chalicelib.api.openapi import build_openapi

    document = build_openapi("test")
    for path, methods in document["paths"].items():
        for method, spec in methods.items():
            if "security" in spec:
                assert "Retry-After" in spec["responses"]["429"]["headers"], (method, path)


def test_the_template_throttles_both_apis_and_rate_limits_each_ip_with_waf() -> None:
    resources_json = Path(__file__).resolve().parents[2] / "infra" / "resources.json"
    template = json.loads(resources_json.read_text())
    resources = template["Resources"]
    http_stage = resources["HttpApiStage"]["Properties"]["DefaultRouteSettings"]
    assert http_stage == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottleRate"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurst"},
    }
    (rest,) = resources["RestAPI"]["Properties"]["MethodSettings"]
    assert (rest["ResourcePath"], rest["HttpMethod"]) == ("/*", "*")
    assert rest["ThrottlingRateLimit"] == {"Ref": "ApiThrottleRate"}
    (rule,) = resources["ApiWebAcl"]["Properties"]["Rules"]
    assert rule["Statement"]["RateBasedStatement"] == {
        "Limit": {"Ref": "WafRequestsPerIp"},
        "AggregateKeyType": "IP",
    }
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
    # WAF cannot attach to an HTTP API: the stage only behind the REST API; the user pool
    # always (sign-up and sign-in send SMS)
    assert resources["ApiWebAclRestStage"]["Condition"] == "UseRestApi"
    assert "Condition" not in resources["ApiWebAclUserPool"]
    parameters = template["Parameters"]
    # a store's tills share one address: the per-IP rule stays above the store's limit
    per_five_minutes = 5 * DEFAULT_LIMITS["store"]
    assert parameters["WafRequestsPerIp"]["Default"] > per_five_minutes


def test_given_exports_then_their_own_lower_limit_applies_and_the_429_writes_no_audit_entry(
    limited: Clock, app_client: Any, staff_token: str, moto_tables: dict[str, str]
) -> None:
    """An export reads the member's whole history and writes an audit entry that is never
    deleted: a class of its own, a few a minute."""
    member_id = register(app_client, staff_token)
    token = token_for(member_id)
    path = f"/v1/members/{member_id}/export"
    assert app_client.http.get(path, headers=auth(token)).status_code == 200
    assert_rate_limited(app_client.http.get(path, headers=auth(token)), "export", 1)
    entries = [
        i for i in scan(moto_tables["ProgramTable"]) if i.get("kind", {}).get("S") == "audit"
    ]
    assert len([e for e in entries if e["action"]["S"] == "member.export"]) == 1
    # the member's other requests count apart
    response = app_client.http.get(f"/v1/members/{member_id}", headers=auth(token))
    assert response.status_code == 200
