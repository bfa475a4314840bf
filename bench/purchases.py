"""Purchases: what one earn-only POS purchase (`POST /v1/transactions`) costs, on
DynamoDB Local (never moto).

1. Units: every DynamoDB call made while serving purchases is recorded with its
   ConsumedCapacity (bench/ddbunits.py hooks the botocore clients of pynamodb and boto3),
   converted to what AWS bills (transactional writes at 2x, index writes included).
2. Floor: the fewest write units an atomic, idempotent earn can cost with this item
   layout, from the sizes of the items actually written (DynamoDB's size rules).
3. Handler latency in-process (chalice.test.Client, signed POS requests) against a
   baseline of the bare boto3 calls such a purchase needs, interleaved in one run.
4. Throughput over HTTP through the local stack (`python -m local.stack --in-memory`),
   8 concurrent POS clients, against bare TransactWriteItems at the same concurrency.
5. Dollars per million purchases from the measured units and list prices.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import common, lambda_memory
from bench.common import local_env
from bench.ddbunits import (
    CapacityMeter,
    Consumed,
    ImageReader,
    item_size,
    probe_transactions,
    value_size,
    write_units,
)
from local.stack_process import local_stack

ROOT = Path(__file__).resolve().parent.parent
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"

# Repetitions (full, quick).
UNIT_PURCHASES = (40, 16)  # purchases whose DynamoDB calls are metered
LATENCY_PURCHASES = (300, 80)  # timed purchases of each kind (handler, baseline)
LATENCY_WARMUP = (30, 10)  # of each kind, discarded
ATTRIBUTION_PURCHASES = (60, 20)  # of each kind, each DynamoDB call timed (after the above)
HTTP_CLIENTS = 8
HTTP_EACH = (60, 20)  # purchases per HTTP client
MEMBERS_PER_KIND = 4  # in-process: handler members and baseline members
BARRIER_SECONDS = 120  # how long concurrent clients wait for each other to be ready

WRU_RATIO_GOAL = 1.25
HANDLER_RATIO_GOAL = 1.3
USD_PER_MILLION_GOAL = 6.00

# Lambda memory sizes emulated (bench/lambda_memory.py): purchases per size (full, quick),
# interleaved with uncapped ones; fresh `import app` interpreters per size.
MEMORY_SIZES_MB = (256, 512, 1024, 1769)
MEMORY_PURCHASES = (40, 16)
COLD_IMPORTS = (3, 2)

# List prices (USD; AWS us-east-1, on-demand).
USD_API_PER_M = 3.50  # API Gateway REST, per million requests
USD_HTTP_API_PER_M = 1.00  # API Gateway HTTP API, per million requests (first 300 M)
USD_WRITE_PER_M = 0.625  # DynamoDB on-demand, per million write request units
USD_READ_PER_M = 0.125  # DynamoDB on-demand, per million read request units
USD_LAMBDA_PER_M = 0.20  # Lambda, per million requests
USD_LAMBDA_GB_S = lambda_memory.USD_GB_S  # Lambda, per GB-second, by architecture
COST_STAGE = "dev"
TEMPLATE = ROOT / "infra" / "resources.json"

STORE_ID = "store-001"
BASKET: tuple[dict[str, Any], ...] = (  # a three-line earn-only basket (fen)
    {"sku": "SKU-100234", "category": "general", "quantity": 2, "unit_price": 1850},
    {"sku": "SKU-200871", "category": "general", "quantity": 1, "unit_price": 4990},
    {"sku": "SKU-310045", "category": "general", "quantity": 3, "unit_price": 690},
)
TOTAL = sum(int(line["quantity"]) * int(line["unit_price"]) for line in BASKET)


def log(message: str) -> None:
    print(f"[purchases] {message}", file=sys.stderr, flush=True)


# ---- shared pieces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PosKey:
    store_id: str
    key_id: str
    secret: str

    def headers(self, method: str, path: str, body: bytes, nonce: str) -> dict[str, str]:
        from local.pos import signed_headers

        return signed_headers(
            store_id=self.store_id,
            key_id=self.key_id,
            secret=self.secret,
            method=method,
            path=path,
            body=body,
            nonce=nonce,
        )


@dataclass
class BenchMember:
    member_id: str
    card: str
    last_txn: str = ""
    version: int = 0  # baseline members: the version the next bare commit expects
    balance: int = 0  # baseline members: the balance the next bare commit starts from
    expiry_due: str | None = None  # baseline members: the expiry-index key, if any


def new_txn_id() -> str:
    return f"bench-{uuid.uuid4().hex[:20]}"


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def purchase_body(txn_id: str, card: str) -> bytes:
    from local.pos import encode

    return encode(
        {
            "transaction_id": txn_id,
            "store_id": STORE_ID,
            "card": card,
            "occurred_at": now_text(),
            "items": list(BASKET),
            "total": TOTAL,
        }
    )


def registration_body(n: int) -> tuple[bytes, str]:
    from local.pos import encode

    digits = "".join(secrets.choice("0123456789") for _ in range(8))
    card = f"C{digits}"
    body = {
        "phone": f"+86139{digits}",
        "channel": "pos",
        "name": f"测试会员{n}",
        "birthday": f"19{70 + n % 30:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "external_ids": {"pos_card": card},
    }
    return encode(body), card


def percentile(samples: list[float], pct: int) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1]


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """This process's settings pointed at `env` and at nothing else of a local stack."""
    from local.stack import ENDPOINT_VARIABLES

    with common.environment(env, remove=ENDPOINT_VARIABLES):
        yield


def create_pos_key() -> PosKey:
    from local.tools import create_store_key

    created = create_store_key(STORE_ID)
    return PosKey(created["store_id"], created["key_id"], created["secret"])


def staff_headers() -> dict[str, str]:
    from local.tools import member_or_staff_token

    token = member_or_staff_token("ops", None)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# ---- the bare calls of a purchase (baseline) --------------------------------------------------


@dataclass
class Templates:
    """Items written by a real purchase, reused (with fresh ids) by the bare calls."""

    ledger: dict[str, Any]
    request: dict[str, Any]
    request_txn: str


class Bare:
    """The DynamoDB calls one purchase needs, as bare boto3 low-level calls: nonce
    GetItem (strong; a purchase's nonce is claimed only when it fails, see
    chalicelib/auth.PosReplay), identity GetItem (strong), member GetItem (strong),
    request-record GetItem (eventual), one TransactWriteItems (ledger entry put, request
    record put if absent, member update on its version)."""

    def __init__(self, client: Any, env: dict[str, str], templates: Templates) -> None:
        self.client = client
        self.members_table = env["MEMBERS_TABLE"]
        self.runtime_table = env["RUNTIME_TABLE"]
        self.templates = templates
        from chalicelib.dal.members import identity_pk
        from chalicelib.domain.members import IdentityHasher

        hasher = IdentityHasher(env["PII_HASH_KEY"])
        self._identity_pk: Callable[[str], str] = lambda card: identity_pk(
            hasher.identity("pos_card", card)
        )

    def purchase(self, member: BenchMember, *, reads: bool = True) -> None:
        from chalicelib.ids import ulid

        txn_id = new_txn_id()
        nonce = secrets.token_hex(16)
        client = self.client
        t = self.templates
        if reads:
            client.get_item(
                TableName=self.runtime_table,
                Key={"pk": {"S": f"NONCE#{STORE_ID}#{nonce}"}, "sk": {"S": "nonce"}},
                ConsistentRead=True,
            )
            client.get_item(
                TableName=self.members_table,
                Key={"pk": {"S": self._identity_pk(member.card)}, "sk": {"S": "ID"}},
                ConsistentRead=True,
            )
            current = client.get_item(
                TableName=self.members_table,
                Key={"pk": {"S": f"MEMBER#{member.member_id}"}, "sk": {"S": "MEMBER"}},
                ConsistentRead=True,
            )["Item"]
            member.version = int(current["version"]["N"])
            member.balance = int(current["points_balance"]["N"])
            member.expiry_due = current.get("expiry_due", {}).get("S")
            lots = current.get("lots", {"M": {}})
            client.get_item(
                TableName=self.members_table,
                Key={"pk": {"S": f"TXN#{STORE_ID}#{txn_id}"}, "sk": {"S": "TXN"}},
            )
        else:  # throughput run: the transaction only; version and balance tracked here
            lots = {"M": {}}
        points = int(t.ledger["points"]["N"])
        balance = member.balance + points
        expires_on = next(iter(lots["M"]), t.ledger["detail"]["M"]["expires_on"]["S"])
        lot_points = int(lots["M"].get(expires_on, {"N": str(member.balance)})["N"]) + points
        entry_id = ulid()
        ledger = dict(t.ledger)
        ledger.update(
            sk={"S": f"LEDGER#{entry_id}"},
            entry_id={"S": entry_id},
            source_id={"S": txn_id},
            balance_after={"N": str(balance)},
            created_at={"S": now_text()},
        )
        request = dict(t.request)
        request.update(
            pk={"S": f"TXN#{STORE_ID}#{txn_id}"},
            # the app stores its first answer compressed: the same bytes stand in here
            response=dict(t.request["response"]),
            created_at={"S": now_text()},
        )
        data = dict(request["data"]["M"])
        data["transaction_id"] = {"S": txn_id}
        request["data"] = {"M": data}
        values: dict[str, Any] = {
            ":lots": {"M": {expires_on: {"N": str(lot_points)}}},
            ":bal": {"N": str(balance)},
            ":zero": {"N": "0"},
            ":pts": {"N": str(points)},
            ":lot": {"N": str(lot_points)},
            ":none": {"L": []},
            ":exp": {"S": expires_on},
            ":at": {"S": now_text()},
            ":one": {"N": "1"},
            ":version": {"N": str(member.version)},
        }
        update = (
            "SET lots = :lots, points_balance = :bal, points_pending = :zero,"
            " points_debt = :zero, lifetime_earned = lifetime_earned + :pts,"
            " expiring_next_points = :lot, pending_lots = :none,"
            " expiring_next_date = :exp, last_purchase_at = :at"
        )
        if member.expiry_due is not None:  # the app rewrites the expiry-index key too
            update += ", expiry_due = :due"
            values[":due"] = {"S": member.expiry_due}
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.members_table, "Item": ledger}},
                {
                    "Put": {
                        "TableName": self.members_table,
                        "Item": request,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.members_table,
                        "Key": {
                            "pk": {"S": f"MEMBER#{member.member_id}"},
                            "sk": {"S": "MEMBER"},
                        },
                        "UpdateExpression": update + " ADD version :one",
                        "ConditionExpression": "version = :version",
                        "ExpressionAttributeValues": values,
                    }
                },
            ]
        )
        member.version += 1
        member.balance = balance
        member.last_txn = txn_id


def read_templates(client: Any, env: dict[str, str], member: BenchMember) -> Templates:
    """The ledger entry and request record of `member`'s last real purchase."""
    table = env["MEMBERS_TABLE"]
    ledger = newest_ledger_entry(client, table, member.member_id)
    request = client.get_item(
        TableName=table,
        Key={"pk": {"S": f"TXN#{STORE_ID}#{member.last_txn}"}, "sk": {"S": "TXN"}},
        ConsistentRead=True,
    )["Item"]
    return Templates(ledger=ledger, request=request, request_txn=member.last_txn)


def newest_ledger_entry(client: Any, table: str, member_id: str) -> dict[str, Any]:
    items = client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={
            ":pk": {"S": f"MEMBER#{member_id}"},
            ":prefix": {"S": "LEDGER#"},
        },
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
    )["Items"]
    return items[0]  # type: ignore[no-any-return]


def get_member_item(client: Any, table: str, member_id: str) -> dict[str, Any]:
    return client.get_item(  # type: ignore[no-any-return]
        TableName=table,
        Key={"pk": {"S": f"MEMBER#{member_id}"}, "sk": {"S": "MEMBER"}},
        ConsistentRead=True,
    )["Item"]


# ---- in process: units, floor, handler latency ---------------------------------------------------


@dataclass
class InProcess:
    client: Any  # chalice.test.Client
    pos: PosKey
    handler_members: list[BenchMember] = field(default_factory=list)
    baseline_members: list[BenchMember] = field(default_factory=list)
    last_cpu_ms: float = 0.0  # CPU time of this thread in the last purchase

    def register(self, n: int) -> BenchMember:
        body, card = registration_body(n)
        response = self.client.http.post("/v1/members", headers=staff_headers(), body=body)
        if response.status_code != 201:
            raise RuntimeError(f"registration answered {response.status_code}: {response.body!r}")
        return BenchMember(json.loads(response.body)["member_id"], card)

    def purchase(self, member: BenchMember) -> float:
        """One signed POS purchase through the app; returns its milliseconds."""
        txn_id = new_txn_id()
        nonce = secrets.token_hex(16)
        body = purchase_body(txn_id, member.card)
        headers = self.pos.headers("POST", "/v1/transactions", body, nonce)
        c0, t0 = time.thread_time(), time.perf_counter()
        response = self.client.http.post("/v1/transactions", headers=headers, body=body)
        elapsed = (time.perf_counter() - t0) * 1000.0
        self.last_cpu_ms = (time.thread_time() - c0) * 1000.0
        if response.status_code != 201:
            raise RuntimeError(f"purchase answered {response.status_code}: {response.body!r}")
        member.last_txn = txn_id
        return elapsed


def summarise_calls(per_purchase: list[list[Consumed]], txn_multiplier: float) -> dict[str, Any]:
    """Mean units per purchase as AWS bills them: total, by line (label), table vs index,
    with what the engine reported beside them."""
    n = len(per_purchase)
    lines: dict[str, dict[str, float]] = defaultdict(
        lambda: {"calls": 0.0, "wru": 0.0, "index_wru": 0.0, "rru": 0.0, "reported": 0.0}
    )
    totals: dict[str, float] = defaultdict(float)
    for calls in per_purchase:
        for call in calls:
            table, index = call.billed_write(txn_multiplier)
            read = call.billed_read()
            line = lines[call.label]
            line["calls"] += 1
            line["wru"] += table + index
            line["index_wru"] += index
            line["rru"] += read
            line["reported"] += call.reported_units
            totals["wru"] += table + index
            totals["rru"] += read
            totals["reported_wru"] += call.reported_units if table + index else 0.0
            if call.operation == "TransactWriteItems":
                totals["wru_txn_table"] += table
                totals["wru_txn_index"] += index
            elif call.operation == "PutItem" and "runtime/NONCE" in call.label:
                totals["wru_nonce"] += table + index
    return {
        "purchases": n,
        **{name: value / n for name, value in totals.items()},
        "calls": sum(len(calls) for calls in per_purchase) / n,
        "lines": {
            label: {k: round(v / n, 3) for k, v in values.items()}
            for label, values in sorted(lines.items())
        },
    }


def in_process(quick: bool) -> dict[str, Any]:
    import boto3
    from chalice.test import Client

    import app as app_module
    from local import ddb
    from local.infra import create_tables

    q = 1 if quick else 0
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-purchases-") as tmp:
        port = ddb.free_port()
        log(f"starting DynamoDB Local (in memory) on {port}")
        proc = ddb.start(port, None, Path(tmp) / "dynamodb.log")
        meter = CapacityMeter()
        try:
            env = local_env(f"http://127.0.0.1:{port}")
            with environment(env):
                region = env["AWS_REGION"]
                admin = boto3.client("dynamodb", region_name=region)  # never metered
                create_tables(admin, env)
                probe = probe_transactions(admin, env["RUNTIME_TABLE"])
                # Writes are priced from the items' images (bench/ddbunits.py); the engine's
                # own figures are kept beside them. Where a write could not be priced, its
                # reported units are converted: AWS bills a transactional write at 2x.
                txn_multiplier = 2.0 * probe["put_item"] / probe["transaction_1_put"]
                log(
                    "DynamoDB Local reports small puts at: PutItem {put_item:g},"
                    " 1-put transaction {transaction_1_put:g}, 3-put transaction"
                    " {transaction_3_puts:g} (AWS bills 1, 2, 6)".format(**probe)
                )
                meter.reader = ImageReader(admin)
                meter.install()
                from chalicelib.wiring import reset_services
                from local.seed import seed

                reset_services()
                seed()
                pos = create_pos_key()
                bare_client = boto3.client("dynamodb", region_name=region)  # metered too
                with Client(app_module.app, stage_name="local") as client:
                    run = InProcess(client, pos)
                    for n in range(MEMBERS_PER_KIND):
                        run.handler_members.append(run.register(n))
                        run.baseline_members.append(run.register(100 + n))
                    log(f"registered {2 * MEMBERS_PER_KIND} members; warming up")
                    first_purchases: list[list[Consumed]] = []
                    for member in run.handler_members + run.baseline_members:
                        with meter.recording() as calls:  # a member's first purchase
                            run.purchase(member)
                        first_purchases.append(calls)
                        run.purchase(member)
                    templates = read_templates(admin, env, run.baseline_members[0])
                    bare = Bare(bare_client, env, templates)

                    result.update(measure_units(run, bare, admin, env, meter, txn_multiplier, q))
                    # The very first also filled the program caches (store key, store...).
                    first = summarise_calls(first_purchases[1:], txn_multiplier)
                    result["info"]["first_purchase_of_a_member"] = {
                        "wru": round(first.get("wru", 0.0), 3),
                        "rru": round(first.get("rru", 0.0), 3),
                        "lines": first["lines"],
                    }
                    meter.pause()
                    result.update(measure_latency(run, bare, q))
                    result["info"]["time_in_dynamodb"] = attribute_time(run, bare, meter, q)
                    result["memory"] = measure_memory(run, q)
                result["info"]["local_reports_small_puts"] = probe
        finally:
            meter.uninstall()
            ddb.stop(proc)
            log("DynamoDB Local stopped")
    return result


def measure_units(
    run: InProcess,
    bare: Bare,
    admin: Any,
    env: dict[str, str],
    meter: CapacityMeter,
    txn_multiplier: float,
    q: int,
) -> dict[str, Any]:
    count = UNIT_PURCHASES[q]
    log(f"metering the DynamoDB calls of {count} purchases")
    handler_calls: list[list[Consumed]] = []
    members = run.handler_members
    member_before: dict[str, Any] = {}
    for i in range(count):
        member = members[i % len(members)]
        if i == count - 1:
            member_before = get_member_item(admin, env["MEMBERS_TABLE"], member.member_id)
        with meter.recording() as calls:
            run.purchase(member)
        handler_calls.append(calls)
    last = members[(count - 1) % len(members)]

    bare_calls: list[list[Consumed]] = []
    for i in range(min(count, 8)):
        with meter.recording() as calls:
            bare.purchase(run.baseline_members[i % len(run.baseline_members)])
        bare_calls.append(calls)

    handler = summarise_calls(handler_calls, txn_multiplier)
    baseline = summarise_calls(bare_calls, txn_multiplier)

    # The floor, from the items the last metered purchase wrote.
    table = env["MEMBERS_TABLE"]
    member_after = get_member_item(admin, table, last.member_id)
    ledger = newest_ledger_entry(admin, table, last.member_id)
    if ledger["source_id"]["S"] != last.last_txn:
        raise RuntimeError("the newest ledger entry is not the last purchase's")
    request = admin.get_item(
        TableName=table,
        Key={"pk": {"S": f"TXN#{STORE_ID}#{last.last_txn}"}, "sk": {"S": "TXN"}},
        ConsistentRead=True,
    )["Item"]
    request_attributes = {
        name: len(name.encode()) + value_size(value) for name, value in request.items()
    }
    sizes = {
        # an update is billed on the larger of the item before and after it
        "member": max(item_size(member_before), item_size(member_after)),
        "ledger_entry": item_size(ledger),
        "request_record": item_size(request),
    }
    # A purchase writes no nonce (its request record answers a replay; auth.PosReplay).
    floor = 2 * sum(write_units(size) for size in sizes.values())

    wru = handler.get("wru", 0.0)
    figures = {
        "wru_per_purchase": round(wru, 3),
        "wru_nonce": round(handler.get("wru_nonce", 0.0), 3),
        "wru_txn_table": round(handler.get("wru_txn_table", 0.0), 3),
        "wru_txn_gsi": round(handler.get("wru_txn_index", 0.0), 3),
        "wru_floor": floor,
        "wru_ratio": round(wru / floor, 3),
        "rru_per_purchase": round(handler.get("rru", 0.0), 3),
        "rru_floor": round(baseline.get("rru", 0.0), 3),
    }
    log(
        f"units: {wru:g} WRU (floor {floor}), {handler.get('rru', 0.0):g} RRU"
        f" (bare calls {baseline.get('rru', 0.0):g}) per purchase"
    )
    return {
        "figures": figures,
        "info": {
            "units": {
                "metered_purchases": count,
                "handler_lines_per_purchase": handler["lines"],
                "baseline_lines_per_purchase": baseline["lines"],
                "baseline_wru": round(baseline.get("wru", 0.0), 3),
                "wru_as_reported_by_local": round(handler.get("reported_wru", 0.0), 3),
                "ddb_calls_per_purchase": {
                    "handler": handler["calls"],
                    "baseline": baseline["calls"],
                },
                "fallback_txn_multiplier": txn_multiplier,
            },
            "item_sizes_bytes": sizes,
            "request_record_attribute_bytes": dict(
                sorted(request_attributes.items(), key=lambda kv: -kv[1])
            ),
            "item_write_units_1x": {k: write_units(v) for k, v in sizes.items()},
            "floor": "2 x (ceil(member/1KB) + ceil(ledger_entry/1KB) + ceil(request_record/1KB))",
        },
    }


def attribute_time(run: InProcess, bare: Bare, meter: CapacityMeter, q: int) -> dict[str, Any]:
    """Where the time goes: a separate, shorter interleaved run with the handlers back on
    the clients, timing each DynamoDB call (no capacity request, no image reads)."""
    count = ATTRIBUTION_PURCHASES[q]
    meter.pricing = False
    meter.resume()
    per_kind: dict[str, list[list[Consumed]]] = {"handler": [], "baseline": []}
    try:
        for i in range(count):
            with meter.recording() as calls:
                run.purchase(run.handler_members[i % MEMBERS_PER_KIND])
            per_kind["handler"].append(calls)
            with meter.recording() as calls:
                bare.purchase(run.baseline_members[i % MEMBERS_PER_KIND])
            per_kind["baseline"].append(calls)
    finally:
        meter.pause()
    summary: dict[str, Any] = {"purchases_each": count}
    for kind, purchases in per_kind.items():
        by_line: dict[str, list[float]] = defaultdict(list)
        for calls in purchases:
            for call in calls:
                by_line[call.label].append(call.ms)
        summary[kind] = {
            "calls_per_purchase": sum(len(c) for c in purchases) / count,
            "ms_per_purchase_p50": round(
                statistics.median(sum(c.ms for c in calls) for calls in purchases), 2
            ),
            "ms_per_call_p50": {k: round(statistics.median(v), 2) for k, v in by_line.items()},
        }
    log(
        "time in DynamoDB calls, p50: handler {h} ms in {hc:g} calls, bare {b} ms in {bc:g}".format(
            h=summary["handler"]["ms_per_purchase_p50"],
            hc=summary["handler"]["calls_per_purchase"],
            b=summary["baseline"]["ms_per_purchase_p50"],
            bc=summary["baseline"]["calls_per_purchase"],
        )
    )
    return summary


def measure_latency(run: InProcess, bare: Bare, q: int) -> dict[str, Any]:
    warmup, count = LATENCY_WARMUP[q], LATENCY_PURCHASES[q]
    log(f"timing {count} handler and {count} bare purchases, interleaved ({warmup} warm-up each)")
    handler_ms: list[float] = []
    bare_ms: list[float] = []

    def one_bare(member: BenchMember) -> float:
        t0 = time.perf_counter()
        bare.purchase(member)
        return (time.perf_counter() - t0) * 1000.0

    for i in range(warmup + count):
        hm = run.handler_members[i % MEMBERS_PER_KIND]
        bm = run.baseline_members[i % MEMBERS_PER_KIND]
        if i % 2 == 0:
            h = run.purchase(hm)
            b = one_bare(bm)
        else:
            b = one_bare(bm)
            h = run.purchase(hm)
        if i >= warmup:
            handler_ms.append(h)
            bare_ms.append(b)
    h50, b50 = statistics.median(handler_ms), statistics.median(bare_ms)
    h99, b99 = percentile(handler_ms, 99), percentile(bare_ms, 99)
    log(f"handler p50 {h50:.1f} ms, bare calls p50 {b50:.1f} ms")
    return {
        "latency": {
            "handler_p50_ms": round(h50, 2),
            "handler_p99_ms": round(h99, 2),
            "baseline_p50_ms": round(b50, 2),
            "baseline_p99_ms": round(b99, 2),
            "handler_ratio_p50": round(h50 / b50, 3),
        },
        "latency_info": {
            "timed_purchases_each": count,
            "warmup_discarded_each": warmup,
            "samples_ms": {
                "handler": [round(v, 2) for v in handler_ms],
                "baseline": [round(v, 2) for v in bare_ms],
            },
        },
    }


def measure_memory(run: InProcess, q: int) -> dict[str, Any]:
    """Handler time at Lambda memory sizes: each size's CPU share enforced on the serving
    thread by a cgroup quota where the machine allows it (bench/lambda_memory.py), and
    modelled from uncapped runs (io_wait + cpu x 1769/M) always. Uncapped and capped
    purchases are interleaved, the sizes' order rotating, so load falls on all alike."""
    count = MEMORY_PURCHASES[q]
    uncapped = lambda_memory.Samples()
    capped = {size: lambda_memory.Samples() for size in MEMORY_SIZES_MB}
    with lambda_memory.caps_if_possible(MEMORY_SIZES_MB) as caps:
        log(
            f"handler time at {', '.join(map(str, MEMORY_SIZES_MB))} MB: {count} purchases each"
            + (" (CPU quota per size: a cgroup)" if caps else " (no cgroup here: model only)")
        )
        kinds: tuple[int, ...] = (0, *MEMORY_SIZES_MB) if caps is not None else (0,)
        for i in range(count):
            member = run.handler_members[i % MEMBERS_PER_KIND]
            shift = i % len(kinds)
            for size in kinds[shift:] + kinds[:shift]:  # 0: uncapped
                if size == 0 or caps is None:
                    uncapped.add(run.purchase(member), run.last_cpu_ms)
                    continue
                caps.cap(size)
                try:
                    wall = run.purchase(member)
                finally:
                    caps.uncap()
                capped[size].add(wall, run.last_cpu_ms)
        cold = cold_imports(caps, COLD_IMPORTS[q])
    wall, cpu = uncapped.p50(), uncapped.cpu_p50()
    figures: dict[str, float] = {"handler_cpu_ms": round(cpu, 2)}
    sizes: dict[str, Any] = {}
    for size in MEMORY_SIZES_MB:
        model = lambda_memory.modelled_ms(wall, cpu, size)
        measured = capped[size] if caps is not None else None
        p50 = measured.p50() if measured else model
        figures[f"handler_ms_at_{size}mb"] = round(p50, 1)
        if measured:
            figures[f"handler_p99_ms_at_{size}mb"] = round(measured.p99(), 1)
        billed = measured.billed_mean_ms() if measured else uncapped.modelled_billed_mean_ms(size)
        sizes[f"{size}mb"] = {
            "billed_mean_ms": round(billed, 2),
            "measured_p50_ms": round(measured.p50(), 2) if measured else None,
            "measured_cpu_p50_ms": round(measured.cpu_p50(), 2) if measured else None,
            "measured_p99_ms": round(measured.p99(), 2) if measured else None,
            "modelled_p50_ms": round(model, 2),
            "cold_import_ms": cold.get(size),
        }
    return {
        "figures": figures,
        # Not JSON: the purchases themselves, for billing at the stage's memory size.
        "samples": {"uncapped": uncapped, **({} if caps is None else capped)},
        "info": {
            "method": (
                "cgroup v1 cpu quota of memory/1769 of a CPU per 100 ms on the serving thread"
                if caps is not None
                else "model only: io_wait + cpu x 1769/M from uncapped runs"
            ),
            "purchases_per_size": count,
            "uncapped": {
                "wall_p50_ms": round(wall, 2),
                "cpu_p50_ms": round(cpu, 2),
                "cold_import_ms": cold.get(0),
            },
            "sizes": sizes,
        },
    }


_COLD_IMPORT = """
import sys, threading, time
if sys.argv[1]:
    open(sys.argv[1], "w").write(str(threading.get_native_id()))
t0 = time.perf_counter()
import app
print("BENCH_MS=%r" % ((time.perf_counter() - t0) * 1000.0))
"""


def cold_imports(caps: lambda_memory.CpuCaps | None, runs: int) -> dict[int, float]:
    """Median `import app` in fresh interpreters, uncapped (key 0) and, with cgroups, in
    each size's (what a cold start adds before the first request, at that size)."""
    import subprocess

    from bench.coldstart import child_environment

    sizes = [0, *(MEMORY_SIZES_MB if caps is not None else ())]
    samples: dict[int, list[float]] = defaultdict(list)
    for _ in range(runs):
        for size in sizes:
            tasks = str(caps.dirs[size] / "tasks") if caps is not None and size else ""
            out = subprocess.run(
                [sys.executable, "-c", _COLD_IMPORT, tasks],
                cwd=ROOT,
                env=child_environment(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            samples[size].append(float(out.split("BENCH_MS=")[1].split()[0]))
    return {size: round(statistics.median(v), 1) for size, v in samples.items()}


# ---- over HTTP: the local stack ---------------------------------------------------------------


def over_http(quick: bool) -> dict[str, Any]:
    import boto3
    import requests

    from local.stack import stack_environment

    each = HTTP_EACH[1 if quick else 0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-purchases-stack-") as tmp,
        local_stack(Path(tmp), log) as state,
    ):
        env = stack_environment(state["ddb_port"], state["moto_port"], state["queues"])
        with environment(env):
            pos = create_pos_key()
            base = state["api"]
            members: list[BenchMember] = []
            with requests.Session() as session:
                for n in range(HTTP_CLIENTS):
                    body, card = registration_body(200 + n)
                    response = session.post(
                        f"{base}/v1/members", data=body, headers=staff_headers(), timeout=30
                    )
                    if response.status_code != 201:
                        raise RuntimeError(
                            f"registration answered {response.status_code}: {response.text}"
                        )
                    members.append(BenchMember(response.json()["member_id"], card))
            log(f"{HTTP_CLIENTS} POS clients x {each} purchases over HTTP")
            try:
                http = http_run(base, pos, members, each)
            except RuntimeError as exc:
                tail = (Path(tmp) / "stack.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{exc}\n--- stack log (tail) ---\n{tail}") from exc
            region = env["AWS_REGION"]
            admin = boto3.client("dynamodb", region_name=region)
            templates = read_templates(admin, env, members[0])
            log(f"{HTTP_CLIENTS} threads x {each} bare TransactWriteItems")
            txn_per_s = bare_txn_run(env, templates, members, each)
    return {
        "figures": {
            "http_purchases_per_s": round(http["per_s"], 1),
            "http_p50_ms": round(http["p50"], 2),
            "http_p99_ms": round(http["p99"], 2),
            "ddb_txn_per_s": round(txn_per_s, 1),
        },
        "info": {"http": {"clients": HTTP_CLIENTS, "purchases_each": each}},
    }


def together(workers: list[Callable[[threading.Barrier], None]]) -> float:
    """Run each worker on a thread of its own; a worker waits on the barrier it is given
    when it is ready to be timed. Returns the seconds from all ready to all done."""
    barrier = threading.Barrier(len(workers) + 1)
    threads = [threading.Thread(target=w, args=(barrier,), daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=BARRIER_SECONDS)
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - t0


def http_run(base: str, pos: PosKey, members: list[BenchMember], each: int) -> dict[str, float]:
    import requests

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(member: BenchMember, barrier: threading.Barrier) -> None:
        mine: list[float] = []
        with requests.Session() as session:

            def post() -> float:
                txn_id = new_txn_id()
                body = purchase_body(txn_id, member.card)
                headers = pos.headers("POST", "/v1/transactions", body, secrets.token_hex(16))
                t0 = time.perf_counter()
                response = session.post(
                    f"{base}/v1/transactions", data=body, headers=headers, timeout=60
                )
                elapsed = (time.perf_counter() - t0) * 1000.0
                if response.status_code != 201:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                member.last_txn = txn_id
                return elapsed

            try:
                for _ in range(3):  # warm-up: connection, caches
                    post()
            except Exception as exc:
                with lock:
                    errors.append(f"warm-up: {exc}")
            barrier.wait(timeout=BARRIER_SECONDS)
            try:
                for _ in range(each):
                    mine.append(post())
            except Exception as exc:
                with lock:
                    errors.append(str(exc))
        with lock:
            latencies.extend(mine)

    wall = together([functools.partial(client, m) for m in members])
    if errors:
        raise RuntimeError(f"{len(errors)} HTTP purchases failed; first: {errors[0]}")
    log(f"HTTP: {len(latencies)} purchases in {wall:.2f} s")
    return {
        "per_s": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 99),
    }


def bare_txn_run(
    env: dict[str, str], templates: Templates, members: list[BenchMember], each: int
) -> float:
    """Bare TransactWriteItems of the same three items, one thread per member."""
    import boto3

    region = env["AWS_REGION"]
    admin = boto3.client("dynamodb", region_name=region)
    bares: list[Bare] = []
    for member in members:
        current = get_member_item(admin, env["MEMBERS_TABLE"], member.member_id)
        member.version = int(current["version"]["N"])
        member.balance = int(current["points_balance"]["N"])
        member.expiry_due = current.get("expiry_due", {}).get("S")
        bares.append(Bare(boto3.client("dynamodb", region_name=region), env, templates))
    errors: list[str] = []

    def worker(bare: Bare, member: BenchMember, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=BARRIER_SECONDS)
        try:
            for _ in range(each):
                bare.purchase(member, reads=False)
        except Exception as exc:
            errors.append(str(exc))

    wall = together([functools.partial(worker, b, m) for b, m in zip(bares, members, strict=True)])
    if errors:
        raise RuntimeError(f"bare transactions failed: {errors[0]}")
    return len(members) * each / wall


# ---- dollars ---------------------------------------------------------------------------------


def stage_setting(name: str, default: Any, stage: str = COST_STAGE) -> Any:
    """The API function's setting in `stage`, looked up in Chalice's order."""
    config = json.loads(CHALICE_CONFIG.read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    for scope in (
        stage_config.get("lambda_functions", {}).get("api_handler", {}),
        stage_config,
        config.get("lambda_functions", {}).get("api_handler", {}),
        config,
    ):
        if scope.get(name) is not None:
            return scope[name]
    return default


def lambda_memory_mb(stage: str = COST_STAGE) -> int:
    return int(stage_setting("lambda_memory_size", 128, stage))


def lambda_architecture(stage: str = COST_STAGE) -> str:
    return str(stage_setting("lambda_architecture", "x86_64", stage))


def public_api() -> str:
    """The API the template exposes unless a stage's deployment overrides PublicApi."""
    template = json.loads(TEMPLATE.read_text())
    return str(template.get("Parameters", {}).get("PublicApi", {}).get("Default", "rest"))


def billed_ms_at(memory_mb: int, samples: dict[Any, lambda_memory.Samples]) -> float:
    """Mean billed milliseconds per purchase at `memory_mb`: the purchases run under that
    size's CPU quota if it was emulated, else each uncapped purchase modelled at it."""
    measured = samples.get(memory_mb)
    if measured is not None:
        return measured.billed_mean_ms()
    return samples["uncapped"].modelled_billed_mean_ms(memory_mb)


def costs(
    wru: float,
    rru: float,
    billed_ms: float,
    *,
    memory_mb: int,
    architecture: str,
    api: str,
) -> dict[str, float]:
    """`billed_ms`: the mean over purchases of each one's duration rounded up to the
    millisecond, as Lambda bills every invocation (not the p50)."""
    usd = {
        "usd_api": USD_HTTP_API_PER_M if api == "http" else USD_API_PER_M,
        "usd_ddb_write": wru * USD_WRITE_PER_M,
        "usd_ddb_read": rru * USD_READ_PER_M,
        "usd_lambda": USD_LAMBDA_PER_M
        + lambda_memory.usd_per_million(memory_mb, billed_ms, architecture),
    }
    usd["usd_per_million_purchases"] = sum(usd.values())
    return {k: round(v, 3) for k, v in usd.items()}


def lambda_choices(samples: dict[Any, lambda_memory.Samples]) -> dict[str, dict[str, float]]:
    """USD per million purchases for the Lambda part alone, at each emulated size and
    architecture (arm64 taken as fast as x86: not measured here)."""
    out: dict[str, dict[str, float]] = {}
    for size in MEMORY_SIZES_MB:
        billed = billed_ms_at(size, samples)
        out[f"{size}mb"] = {
            arch: round(USD_LAMBDA_PER_M + lambda_memory.usd_per_million(size, billed, arch), 3)
            for arch in lambda_memory.USD_GB_S
        }
    return out


# ---- the section -----------------------------------------------------------------------------


def run(quick: bool = False) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()
    local = in_process(quick)
    http = over_http(quick)
    figures: dict[str, float] = {}
    figures.update(local["figures"])
    figures.update(local["latency"])
    figures.update(local["memory"]["figures"])
    figures.update(http["figures"])
    memory_mb, architecture, api = lambda_memory_mb(), lambda_architecture(), public_api()
    billed_ms = billed_ms_at(memory_mb, local["memory"]["samples"])
    figures["lambda_memory_mb"] = memory_mb
    figures["lambda_billed_mean_ms"] = round(billed_ms, 2)
    unit_figures = (figures["wru_per_purchase"], figures["rru_per_purchase"], billed_ms)
    usd = costs(*unit_figures, memory_mb=memory_mb, architecture=architecture, api=api)
    figures.update(usd)
    other_api = "rest" if api == "http" else "http"
    figures[f"usd_per_million_purchases_{other_api}"] = costs(
        *unit_figures, memory_mb=memory_mb, architecture=architecture, api=other_api
    )["usd_per_million_purchases"]

    units = {name: "x" for name in ("wru_ratio", "handler_ratio_p50")}
    for name in figures:
        if name.startswith("wru_") and name != "wru_ratio":
            units[name] = "WRU"
        elif name.startswith("rru_"):
            units[name] = "RRU"
        elif name.endswith("_ms") or "_ms_at_" in name:
            units[name] = "ms"
        elif name.endswith("_mb"):
            units[name] = "MB"
        elif name.endswith("_per_s"):
            units[name] = "1/s"
        elif name.startswith("usd_"):
            units[name] = "USD/M"
    info = dict(local["info"])
    info.update(local["latency_info"])
    info.update(http["info"])
    info["lambda_memory"] = local["memory"]["info"]
    info["lambda_memory"]["usd_lambda_per_m_by_size_and_architecture"] = lambda_choices(
        local["memory"]["samples"]
    )
    info["prices"] = {
        "api_gateway_rest_per_m": USD_API_PER_M,
        "api_gateway_http_per_m": USD_HTTP_API_PER_M,
        "ddb_write_per_m_wru": USD_WRITE_PER_M,
        "ddb_read_per_m_rru": USD_READ_PER_M,
        "lambda_per_m_requests": USD_LAMBDA_PER_M,
        "lambda_per_gb_s": USD_LAMBDA_GB_S,
    }
    info["cost_basis"] = {
        "stage": COST_STAGE,
        "public_api": api,
        "lambda_memory_mb": memory_mb,
        "lambda_architecture": architecture,
        "lambda_billed_ms": round(billed_ms, 2),
        "lambda_billed": (
            f"mean over the {memory_mb} MB purchases of each one's handler time rounded up"
            " to the millisecond (Lambda bills every invocation, so the mean, not the p50;"
            " p50 and p99 are latency figures only)"
        ),
    }
    info["basket"] = {"lines": list(BASKET), "total_fen": TOTAL, "member_lookup": "card"}
    info["seconds"] = round(time.monotonic() - started, 1)
    # Timings share the machine: a high load average means other work ran meanwhile.
    info["load_average_1m"] = {"start": load_before[0], "end": os.getloadavg()[0]}
    log(f"done in {info['seconds']} s")
    return {
        "figures": figures,
        "units": units,
        "goals": {
            "wru_ratio": {"max": WRU_RATIO_GOAL},
            "handler_ratio_p50": {"max": HANDLER_RATIO_GOAL},
            "usd_per_million_purchases": {"max": USD_PER_MILLION_GOAL},
        },
        "info": info,
    }
