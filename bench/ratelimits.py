"""Rate limits: what the per-caller check adds to a request, on DynamoDB Local (never moto).

In one process (chalice.test.Client), the container's limiter is swapped between two
that differ only in being on (the documented defaults: chalicelib/domain/limits.py) or
off, request by request, so caches and connections are the same for both:

1. Units: every DynamoDB call recorded with its ConsumedCapacity (bench/ddbunits.py).
   Member reads (`GET /v1/members/{id}`, member tokens: a member's limit is 60 a minute,
   a lease of 1, so one counter write each) and POS earning purchases (one store: 600 a
   minute, a lease of 12). The difference per request is the limit's cost.
2. Latency: p50 of those member reads on and off, interleaved, and of the counter's
   UpdateItem alone (the meter's per-call time).
3. Refusals: one member sends far beyond its limit; counter writes per refused request
   (a container remembers a full window: about one write per container and window).
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from typing import Any

from bench import common
from bench.common import local_env
from bench.ddbunits import CapacityMeter, Consumed
from bench.purchases import (
    create_pos_key,
    environment,
    percentile,
    purchase_body,
    registration_body,
    staff_headers,
)

# Repetitions (full, quick).
READS = (240, 60)  # member reads, each limiter (8 members: 30 each, half their limit)
PURCHASES = (240, 60)  # each limiter (the store's limit, 600 a minute, is not reached)
WARMUP = 10
MEMBERS = 8
REFUSED = 200


def log(message: str) -> None:
    print(f"[ratelimits] {message}", file=sys.stderr, flush=True)


def counter_calls(calls: list[Consumed]) -> list[Consumed]:
    return [c for c in calls if "RATE/RATE" in c.label]


def units(calls: list[Consumed]) -> tuple[float, float]:
    """(WRU, RRU) as AWS bills these calls: the counter's UpdateItem is 1 unit, admitted
    or refused (DynamoDB Local reports nothing for a failed condition; AWS bills it)."""
    wru = rru = 0.0
    for call in calls:
        if call.operation in ("UpdateItem", "PutItem") and not call.transactional:
            wru += call.reported_units if call.ok else 1.0
        elif call.operation == "TransactWriteItems":
            wru += call.reported_units  # the engine's figure: already 2x
        else:
            rru += call.reported_units
    return wru, rru


def run(quick: bool = False) -> dict[str, Any]:
    import boto3
    from chalice.test import Client

    import app as app_module
    from local.infra import create_tables

    q = 1 if quick else 0
    with common.dynamodb_local("ratelimits") as endpoint:
        meter = CapacityMeter()
        try:
            env = local_env(endpoint)
            env.pop("RATE_LIMITS", None)  # the documented defaults, not the local stage's
            with environment(env):
                admin = boto3.client("dynamodb", region_name=env["AWS_REGION"])
                create_tables(admin, env)
                meter.install()
                from chalicelib.dal.limits import DynamoRateCounter
                from chalicelib.domain.limits import Limiter, parse_limits
                from chalicelib.wiring import reset_services, services
                from local.seed import seed
                from local.tools import bearer, member_or_staff_token

                reset_services()
                seed()
                svc = services()
                on = svc.limiter
                off = Limiter(parse_limits("off"), DynamoRateCounter())
                with Client(app_module.app, stage_name="local") as client:
                    pos = create_pos_key()
                    cards: list[str] = []
                    members: list[tuple[str, dict[str, str]]] = []
                    for n in range(MEMBERS):
                        body, card = registration_body(n)
                        response = client.http.post(
                            "/v1/members", headers=staff_headers(), body=body
                        )
                        member_id = response.json_body["member_id"]
                        token = member_or_staff_token("member", member_id)
                        members.append((member_id, bearer(token)))
                        cards.append(card)

                    def read(i: int, limiter: Limiter) -> tuple[float, list[Consumed]]:
                        member_id, headers = members[i % MEMBERS]
                        object.__setattr__(svc, "limiter", limiter)
                        with meter.recording() as calls:
                            t0 = time.perf_counter()
                            response = client.http.get(f"/v1/members/{member_id}", headers=headers)
                            ms = (time.perf_counter() - t0) * 1000.0
                        assert response.status_code == 200, response.json_body
                        return ms, calls

                    def purchase(i: int, limiter: Limiter) -> list[Consumed]:
                        body = purchase_body(f"bench-{uuid.uuid4().hex[:20]}", cards[i % MEMBERS])
                        headers = pos.headers("POST", "/v1/transactions", body, uuid.uuid4().hex)
                        object.__setattr__(svc, "limiter", limiter)
                        with meter.recording() as calls:
                            response = client.http.post(
                                "/v1/transactions", headers=headers, body=body
                            )
                        assert response.status_code == 201, response.json_body
                        return calls

                    result = measure(q, read, purchase, on, off)
                    result["refusals"] = refusals(client, svc, on, meter)
                    object.__setattr__(svc, "limiter", on)
        finally:
            meter.uninstall()
    return report(result)


def measure(q: int, read: Any, purchase: Any, on: Any, off: Any) -> dict[str, Any]:
    count = READS[q]
    log(f"{count} member reads with the limit on and {count} off, interleaved")
    for i in range(WARMUP):
        read(i, off)
    timings: dict[str, list[float]] = {"on": [], "off": []}
    calls: dict[str, list[Consumed]] = {"on": [], "off": []}
    for i in range(count):
        for name, limiter in (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on)):
            ms, recorded = read(i, limiter)
            timings[name].append(ms)
            calls[name].extend(recorded)
    checks = counter_calls(calls["on"])
    reads = {
        name: dict(zip(("wru", "rru"), (u / count for u in units(calls[name])), strict=True))
        for name in calls
    }
    count_p = PURCHASES[q]
    log(f"{count_p} POS purchases of one store with the limit on and {count_p} off")
    bought: dict[str, list[Consumed]] = {"on": [], "off": []}
    for i in range(count_p):
        for name, limiter in (("on", on), ("off", off)):
            bought[name].extend(purchase(i, limiter))
    purchases = {
        name: dict(zip(("wru", "rru"), (u / count_p for u in units(bought[name])), strict=True))
        for name in bought
    }
    return {
        "reads": reads,
        "purchases": purchases,
        # the counter's own writes: the rest of a request is the same on and off
        "read_counter_wru": units(checks)[0] / count,
        "purchase_counter_wru": units(counter_calls(bought["on"]))[0] / count_p,
        "purchase_counter_writes": len(counter_calls(bought["on"])),
        "read_p50_ms": {name: statistics.median(t) for name, t in timings.items()},
        "read_p99_ms": {name: percentile(t, 99) for name, t in timings.items()},
        "check_ms": [c.ms for c in checks],
        "counts": {"reads": count, "purchases": count_p},
    }


def refusals(client: Any, svc: Any, on: Any, meter: CapacityMeter) -> dict[str, Any]:
    from local.tools import bearer, member_or_staff_token

    body, _ = registration_body(99)
    member_id = client.http.post("/v1/members", headers=staff_headers(), body=body).json_body[
        "member_id"
    ]
    headers = bearer(member_or_staff_token("member", member_id))
    object.__setattr__(svc, "limiter", on)
    statuses: list[int] = []
    with meter.recording() as calls:
        for _ in range(on.limits.limit("member") + REFUSED):
            response = client.http.get(f"/v1/members/{member_id}", headers=headers)
            statuses.append(response.status_code)
    refused, admitted = statuses.count(429), statuses.count(200)
    writes = len(counter_calls(calls))
    log(f"{admitted} admitted, {refused} refused; {writes} counter writes")
    return {
        "requests": len(statuses),
        "admitted": admitted,
        "refused": refused,
        "counter_writes": writes,
        # a member's lease is 1: one write per admitted request; the rest were refusals
        "writes_on_refusals": writes - admitted,
    }


def report(result: dict[str, Any]) -> dict[str, Any]:
    reads, purchases = result["reads"], result["purchases"]
    p50 = result["read_p50_ms"]
    refused = result["refusals"]
    figures = {
        "ratelimit_wru_per_member_read": round(result["read_counter_wru"], 3),
        "ratelimit_wru_per_purchase": round(result["purchase_counter_wru"], 3),
        "ratelimit_check_p50_ms": round(statistics.median(result["check_ms"]), 2),
        "member_read_p50_ms_limited": round(p50["on"], 2),
        "member_read_p50_ms_unlimited": round(p50["off"], 2),
        "ratelimit_added_p50_ms": round(p50["on"] - p50["off"], 2),
        "ratelimit_writes_per_refused": round(
            refused["writes_on_refusals"] / max(1, refused["refused"]), 4
        ),
    }
    log(", ".join(f"{k}={v}" for k, v in figures.items()))
    return {
        "figures": figures,
        "units": {
            "ratelimit_wru_per_member_read": "WRU",
            "ratelimit_wru_per_purchase": "WRU",
            "ratelimit_check_p50_ms": "ms",
            "member_read_p50_ms_limited": "ms",
            "member_read_p50_ms_unlimited": "ms",
            "ratelimit_added_p50_ms": "ms",
            "ratelimit_writes_per_refused": "WRU",
        },
        "goals": {},
        "info": {
            "reads": reads,
            "purchases": purchases,
            "purchase_counter_writes": result["purchase_counter_writes"],
            "read_p99_ms": result["read_p99_ms"],
            "counts": result["counts"],
            "refusals": refused,
        },
    }
