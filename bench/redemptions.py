"""Redemptions in the points mall: what one `POST /v1/members/{id}/redemptions` costs, and
a flash sale of one reward, on DynamoDB Local (never moto).

1. Units: every DynamoDB call made while serving redemptions is recorded with its
   ConsumedCapacity (bench/ddbunits.py), priced as AWS bills them (transactional writes
   at 2x, index writes included), beside the floor: the write units of the four items a
   redemption must write atomically (member, ledger entry, request record, stock shard).
2. Handler latency in-process (chalice.test.Client, member tokens) against a baseline of
   the bare boto3 calls such a redemption needs (member GetItem, stock Query, one
   TransactWriteItems of the same four items), interleaved in one run.
3. Flash sale over HTTP through the local stack (`python -m local.stack --in-memory`):
   200 members, each with points for it, redeem one reward holding 100 units at the same
   moment (one thread and connection each, released together). Success ratio =
   redemptions accepted / min(stock, attempts); every other answer must be 422
   OUT_OF_STOCK, and the units sold must equal the stock exactly (never more).
"""

from __future__ import annotations

import functools
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench.common import local_env
from bench.ddbunits import (
    CapacityMeter,
    Consumed,
    ImageReader,
    item_size,
    probe_transactions,
    write_units,
)
from bench.purchases import (
    BARRIER_SECONDS,
    environment,
    percentile,
    registration_body,
    staff_headers,
    summarise_calls,
    together,
)
from local.stack_process import local_stack

# Repetitions (full, quick).
UNIT_REDEMPTIONS = (40, 16)
LATENCY_REDEMPTIONS = (200, 60)
LATENCY_WARMUP = (20, 8)
MEMBERS_PER_KIND = 4
FLASH_ATTEMPTS = 200
FLASH_STOCK = 100

REWARD_POINTS = 100
OPENING_POINTS = 1_000_000  # enough for every redemption a member makes here
WRU_RATIO_GOAL = 1.25
HANDLER_RATIO_GOAL = 1.5
FLASH_SUCCESS_GOAL = 0.9


def log(message: str) -> None:
    print(f"[redemptions] {message}", file=sys.stderr, flush=True)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def encode(body: dict[str, Any]) -> bytes:
    from local.pos import encode as pos_encode

    return pos_encode(body)


def reward_body(reward_id: str, stock: int, points: int = REWARD_POINTS) -> bytes:
    return encode(
        {
            "reward_id": reward_id,
            "name": f"Bench reward {reward_id}",
            "kind": "gift",
            "points": points,
            "stock": stock,
        }
    )


def member_headers(member_id: str) -> dict[str, str]:
    from local.tools import bearer, member_or_staff_token

    return bearer(member_or_staff_token("member", member_id))


@dataclass
class Redeemer:
    member_id: str
    headers: dict[str, str]
    version: int = 0  # baseline members: the version the next bare commit expects
    balance: int = 0
    last_redemption: str = ""


def expect(response: Any, status: int, what: str) -> dict[str, Any]:
    code = getattr(response, "status_code", None)
    body = response.body if hasattr(response, "body") else response.content
    if code != status:
        raise RuntimeError(f"{what} answered {code}: {body[:300]!r}")
    return json.loads(body) if body else {}


# ---- in process: units and latency ------------------------------------------------------


class InProcess:
    def __init__(self, client: Any, reward_id: str) -> None:
        self.client = client
        self.reward_id = reward_id

    def register(self, n: int) -> Redeemer:
        body, _card = registration_body(n)
        created = expect(
            self.client.http.post("/v1/members", headers=staff_headers(), body=body),
            201,
            "registration",
        )
        member_id = created["member_id"]
        adjustment = encode(
            {"adjustment_id": new_id("adj"), "points": OPENING_POINTS, "reason": "bench"}
        )
        expect(
            self.client.http.post(
                f"/v1/admin/members/{member_id}/adjustments",
                headers=staff_headers(),
                body=adjustment,
            ),
            201,
            "adjustment",
        )
        return Redeemer(member_id, member_headers(member_id))

    def redeem(self, member: Redeemer) -> float:
        redemption_id = new_id("rdm")
        body = encode({"redemption_id": redemption_id, "reward_id": self.reward_id, "quantity": 1})
        t0 = time.perf_counter()
        response = self.client.http.post(
            f"/v1/members/{member.member_id}/redemptions", headers=member.headers, body=body
        )
        elapsed = (time.perf_counter() - t0) * 1000.0
        expect(response, 201, "redemption")
        member.last_redemption = redemption_id
        return elapsed


class Bare:
    """The calls one redemption needs as bare boto3 low-level calls: the member
    (GetItem, strong), the reward's stock shards (Query, strong), and one
    TransactWriteItems: the member's wallet (conditional on its version), a ledger entry,
    the request record (conditional on not existing), one stock shard (conditional on
    holding a unit). The items are copies of what a real redemption wrote, with fresh
    ids, so they are the same size."""

    def __init__(
        self,
        client: Any,
        env: dict[str, str],
        reward_id: str,
        ledger: dict[str, Any],
        request: dict[str, Any],
    ) -> None:
        self.client = client
        self.members = env["MEMBERS_TABLE"]
        self.program = env["PROGRAM_TABLE"]
        self.reward_id = reward_id
        self.ledger = ledger
        self.request = request

    def redeem(self, member: Redeemer) -> None:
        key = {"pk": {"S": f"MEMBER#{member.member_id}"}, "sk": {"S": "MEMBER"}}
        item = self.client.get_item(TableName=self.members, Key=key, ConsistentRead=True)["Item"]
        version = int(item["version"]["N"])
        balance = int(item["points_balance"]["N"])
        shards = self.client.query(
            TableName=self.program,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :stock)",
            ExpressionAttributeValues={
                ":pk": {"S": f"REWARD#{self.reward_id}"},
                ":stock": {"S": "STOCK#"},
            },
            ConsistentRead=True,
        )["Items"]
        shard = secrets.choice([s for s in shards if int(s["left"]["N"]) > 0])
        redemption_id = new_id("bare")
        ledger = dict(self.ledger)
        ledger["pk"] = {"S": f"MEMBER#{member.member_id}"}
        ledger["sk"] = {"S": f"LEDGER#{uuid.uuid4().hex.upper()[:26]}"}
        request = dict(self.request)
        request["pk"] = {"S": f"MEMBER#{member.member_id}"}
        request["sk"] = {"S": f"REQ#redeem#{redemption_id}"}
        self.client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.members, "Item": ledger}},
                {
                    "Put": {
                        "TableName": self.members,
                        "Item": request,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.members,
                        "Key": key,
                        "UpdateExpression": "SET points_balance = :b, version = :v",
                        "ConditionExpression": "version = :old",
                        "ExpressionAttributeValues": {
                            ":b": {"N": str(balance - REWARD_POINTS)},
                            ":v": {"N": str(version + 1)},
                            ":old": {"N": str(version)},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self.program,
                        "Key": {"pk": shard["pk"], "sk": shard["sk"]},
                        "UpdateExpression": "ADD #left :minus",
                        "ConditionExpression": "#left >= :one",
                        "ExpressionAttributeNames": {"#left": "left"},
                        "ExpressionAttributeValues": {":minus": {"N": "-1"}, ":one": {"N": "1"}},
                    }
                },
            ]
        )


def newest(client: Any, table: str, pk: str, prefix: str) -> dict[str, Any]:
    items = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":p": {"S": prefix}},
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
    )["Items"]
    if not items:
        raise RuntimeError(f"nothing under {pk} / {prefix}")
    return dict(items[0])


def in_process(quick: bool) -> dict[str, Any]:
    import boto3
    from chalice.test import Client

    import app as app_module
    from local.infra import create_tables

    q = 1 if quick else 0
    with common.dynamodb_local("redemptions") as endpoint:
        meter = CapacityMeter()
        try:
            env = local_env(endpoint)
            with environment(env):
                region = env["AWS_REGION"]
                admin = boto3.client("dynamodb", region_name=region)  # never metered
                create_tables(admin, env)
                probe = probe_transactions(admin, env["RUNTIME_TABLE"])
                txn_multiplier = 2.0 * probe["put_item"] / probe["transaction_1_put"]
                meter.reader = ImageReader(admin)
                meter.install()
                from chalicelib.wiring import reset_services
                from local.seed import seed

                reset_services()
                seed()
                reward_id = "bench-gift"
                with Client(app_module.app, stage_name="local") as client:
                    expect(
                        client.http.post(
                            "/v1/admin/rewards",
                            headers=staff_headers(),
                            body=reward_body(reward_id, 1_000_000),
                        ),
                        201,
                        "reward",
                    )
                    run = InProcess(client, reward_id)
                    handler = [run.register(n) for n in range(MEMBERS_PER_KIND)]
                    baseline = [run.register(100 + n) for n in range(MEMBERS_PER_KIND)]
                    for member in handler + baseline:  # a first redemption each: warm
                        run.redeem(member)
                    last = handler[0]
                    table = env["MEMBERS_TABLE"]
                    ledger = newest(admin, table, f"MEMBER#{last.member_id}", "LEDGER#")
                    request = admin.get_item(
                        TableName=table,
                        Key={
                            "pk": {"S": f"MEMBER#{last.member_id}"},
                            "sk": {"S": f"REQ#redeem#{last.last_redemption}"},
                        },
                        ConsistentRead=True,
                    )["Item"]
                    bare = Bare(
                        boto3.client("dynamodb", region_name=region),
                        env,
                        reward_id,
                        ledger,
                        request,
                    )
                    units = measure_units(
                        run, bare, handler, baseline, admin, env, meter, txn_multiplier, q
                    )
                    meter.pause()
                    latency = measure_latency(run, bare, handler, baseline, q)
        finally:
            meter.uninstall()
    return {"units": units, "latency": latency, "probe": probe}


def measure_units(
    run: InProcess,
    bare: Bare,
    handler: list[Redeemer],
    baseline: list[Redeemer],
    admin: Any,
    env: dict[str, str],
    meter: CapacityMeter,
    txn_multiplier: float,
    q: int,
) -> dict[str, Any]:
    count = UNIT_REDEMPTIONS[q]
    log(f"metering the DynamoDB calls of {count} redemptions")
    table = env["MEMBERS_TABLE"]
    handler_calls: list[list[Consumed]] = []
    member_before: dict[str, Any] = {}
    last = handler[(count - 1) % len(handler)]
    for i in range(count):
        member = handler[i % len(handler)]
        if i == count - 1:
            member_before = admin.get_item(
                TableName=table,
                Key={"pk": {"S": f"MEMBER#{member.member_id}"}, "sk": {"S": "MEMBER"}},
                ConsistentRead=True,
            )["Item"]
        with meter.recording() as calls:
            run.redeem(member)
        handler_calls.append(calls)
    bare_calls: list[list[Consumed]] = []
    for i in range(min(count, 8)):
        with meter.recording() as calls:
            bare.redeem(baseline[i % len(baseline)])
        bare_calls.append(calls)
    mine = summarise_calls(handler_calls, txn_multiplier)
    theirs = summarise_calls(bare_calls, txn_multiplier)

    member_after = admin.get_item(
        TableName=table,
        Key={"pk": {"S": f"MEMBER#{last.member_id}"}, "sk": {"S": "MEMBER"}},
        ConsistentRead=True,
    )["Item"]
    ledger = newest(admin, table, f"MEMBER#{last.member_id}", "LEDGER#")
    request = admin.get_item(
        TableName=table,
        Key={
            "pk": {"S": f"MEMBER#{last.member_id}"},
            "sk": {"S": f"REQ#redeem#{last.last_redemption}"},
        },
        ConsistentRead=True,
    )["Item"]
    shard = newest(admin, env["PROGRAM_TABLE"], f"REWARD#{run.reward_id}", "STOCK#")
    sizes = {
        "member": max(item_size(member_before), item_size(member_after)),
        "ledger_entry": item_size(ledger),
        "request_record": item_size(request),
        "stock_shard": item_size(shard),
    }
    floor = 2 * sum(write_units(size) for size in sizes.values())
    wru = mine.get("wru", 0.0)
    log(f"units: {wru:g} WRU (floor {floor}), {mine.get('rru', 0.0):g} RRU per redemption")
    return {
        "wru": wru,
        "rru": mine.get("rru", 0.0),
        "floor": floor,
        "baseline_wru": theirs.get("wru", 0.0),
        "baseline_rru": theirs.get("rru", 0.0),
        "lines": mine["lines"],
        "baseline_lines": theirs["lines"],
        "calls": mine["calls"],
        "item_sizes_bytes": sizes,
    }


def measure_latency(
    run: InProcess, bare: Bare, handler: list[Redeemer], baseline: list[Redeemer], q: int
) -> dict[str, Any]:
    warmup, count = LATENCY_WARMUP[q], LATENCY_REDEMPTIONS[q]
    log(f"timing {count} handler and {count} bare redemptions, interleaved")
    mine: list[float] = []
    theirs: list[float] = []

    def one_bare(member: Redeemer) -> float:
        t0 = time.perf_counter()
        bare.redeem(member)
        return (time.perf_counter() - t0) * 1000.0

    for i in range(warmup + count):
        h_member, b_member = handler[i % len(handler)], baseline[i % len(baseline)]
        if i % 2 == 0:
            h, b = run.redeem(h_member), one_bare(b_member)
        else:
            b, h = one_bare(b_member), run.redeem(h_member)
        if i >= warmup:
            mine.append(h)
            theirs.append(b)
    return {
        "p50": statistics.median(mine),
        "p99": percentile(mine, 99),
        "baseline_p50": statistics.median(theirs),
        "baseline_p99": percentile(theirs, 99),
        "count": count,
    }


# ---- over HTTP: the flash sale ----------------------------------------------------------


def flash_sale(quick: bool) -> dict[str, Any]:
    import requests

    from local.stack import stack_environment

    attempts, stock = FLASH_ATTEMPTS, FLASH_STOCK
    with (
        tempfile.TemporaryDirectory(prefix="bench-redemptions-stack-") as tmp,
        local_stack(Path(tmp), log) as state,
    ):
        env = stack_environment(state["ddb_port"], state["moto_port"], state["queues"])
        base = state["api"]
        with environment(env), requests.Session() as session:
            reward_id = "flash-sale"
            created = session.post(
                f"{base}/v1/admin/rewards",
                data=reward_body(reward_id, stock),
                headers=staff_headers(),
                timeout=30,
            )
            expect(created, 201, "flash reward")
            log(f"registering {attempts} members with points over HTTP")
            members: list[Redeemer] = []
            for n in range(attempts):
                body, _card = registration_body(1000 + n)
                member_id = expect(
                    session.post(
                        f"{base}/v1/members", data=body, headers=staff_headers(), timeout=30
                    ),
                    201,
                    "registration",
                )["member_id"]
                expect(
                    session.post(
                        f"{base}/v1/admin/members/{member_id}/adjustments",
                        data=encode(
                            {"adjustment_id": new_id("adj"), "points": 1000, "reason": "bench"}
                        ),
                        headers=staff_headers(),
                        timeout=30,
                    ),
                    201,
                    "adjustment",
                )
                members.append(Redeemer(member_id, member_headers(member_id)))
            log(f"{attempts} members redeem one reward of {stock} units at once")
            outcome = _storm(base, reward_id, members)
            left = expect(
                session.get(
                    f"{base}/v1/admin/rewards/{reward_id}", headers=staff_headers(), timeout=30
                ),
                200,
                "reward read",
            )
    sold = outcome["statuses"].get("201", 0)
    stock_left = int(left.get("stock_left", left.get("stock", -1)))
    return {
        "attempts": attempts,
        "stock": stock,
        "sold": sold,
        "stock_left": stock_left,
        "oversold": max(0, sold - stock) + max(0, -stock_left),
        "success_ratio": sold / min(stock, attempts),
        **outcome,
    }


def _storm(base: str, reward_id: str, members: list[Redeemer]) -> dict[str, Any]:
    import requests

    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    retries = 0
    lock = threading.Lock()

    def client(member: Redeemer, barrier: threading.Barrier) -> None:
        nonlocal retries
        body = encode({"redemption_id": new_id("flash"), "reward_id": reward_id, "quantity": 1})
        url = f"{base}/v1/members/{member.member_id}/redemptions"
        with requests.Session() as session:
            barrier.wait(timeout=BARRIER_SECONDS)
            t0 = time.perf_counter()
            for attempt in range(5):
                try:
                    # the same redemption_id: a client retrying a reset connection
                    response = session.post(url, data=body, headers=member.headers, timeout=120)
                    break
                except requests.ConnectionError:
                    with lock:
                        retries += 1
                    time.sleep(0.2 * (attempt + 1))
            else:
                with lock:
                    statuses["connection_failed"] += 1
                return
            elapsed = (time.perf_counter() - t0) * 1000.0
        code = ""
        if response.status_code != 201:
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError):
                code = response.text[:80]
        with lock:
            statuses[str(response.status_code)] += 1
            if code:
                codes[code] += 1
            latencies.append(elapsed)

    wall = together([functools.partial(client, m) for m in members])
    log(f"flash sale: {dict(statuses)} {dict(codes)} in {wall:.2f} s")
    return {
        "statuses": dict(statuses),
        "error_codes": dict(codes),
        "connection_retries": retries,
        "wall_s": round(wall, 3),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2) if latencies else None,
    }


def run(quick: bool = False) -> dict[str, Any]:
    measured = in_process(quick)
    units, latency = measured["units"], measured["latency"]
    flash = flash_sale(quick)
    figures = {
        "wru_per_redemption": round(units["wru"], 3),
        "wru_redemption_floor": units["floor"],
        "wru_redemption_ratio": round(units["wru"] / units["floor"], 3),
        "rru_per_redemption": round(units["rru"], 3),
        "redemption_p50_ms": round(latency["p50"], 2),
        "redemption_p99_ms": round(latency["p99"], 2),
        "redemption_baseline_p50_ms": round(latency["baseline_p50"], 2),
        "redemption_ratio_p50": round(latency["p50"] / latency["baseline_p50"], 3),
        "flash_sale_success_ratio": round(flash["success_ratio"], 3),
        "flash_sale_oversold": flash["oversold"],
    }
    return {
        "figures": figures,
        "units": {
            "wru_per_redemption": "WRU",
            "wru_redemption_floor": "WRU",
            "wru_redemption_ratio": "x",
            "rru_per_redemption": "RRU",
            "redemption_p50_ms": "ms",
            "redemption_p99_ms": "ms",
            "redemption_baseline_p50_ms": "ms",
            "redemption_ratio_p50": "x",
            "flash_sale_success_ratio": "x",
            "flash_sale_oversold": "units",
        },
        "goals": {
            "wru_redemption_ratio": {"max": WRU_RATIO_GOAL},
            "redemption_ratio_p50": {"max": HANDLER_RATIO_GOAL},
            "flash_sale_success_ratio": {"min": FLASH_SUCCESS_GOAL},
            "flash_sale_oversold": {"max": 0},
        },
        "info": {
            "units": {
                "lines_per_redemption": units["lines"],
                "baseline_lines": units["baseline_lines"],
                "baseline_wru": round(units["baseline_wru"], 3),
                "baseline_rru": round(units["baseline_rru"], 3),
                "ddb_calls_per_redemption": units["calls"],
                "item_sizes_bytes": units["item_sizes_bytes"],
                "floor": "2 x (member + ledger_entry + request_record + stock_shard), 1 KB units",
                "local_reports_small_puts": measured["probe"],
            },
            "latency": {
                "timed_each": latency["count"],
                "baseline": "member GetItem + stock Query + TransactWriteItems of the 4 items",
                "baseline_p99_ms": round(latency["baseline_p99"], 2),
            },
            "flash_sale": flash,
        },
    }
