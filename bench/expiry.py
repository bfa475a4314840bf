"""Points expiry: what one day's expiry run costs, and that the cost follows the members
due that day, not the size of the program.

Two programs (10,000 and 100,000 members; 2,000 and 20,000 with --quick), each on tables
of its own in one in-memory DynamoDB Local (own free port, stopped at the end), are
filled with member items in the shape the app writes. The same members are due in both
(1,000; 200 with --quick): each holds a lot expiring on DAY, most also later lots. Every
other member holds only later lots, so it sits on the sparse `expiry-index` under other
dates' keys, as in a real program.

The run is the worker's own path: the run record (`jobs.start_run`, the daily schedule's
part, not measured), then `chalicelib.handlers.expiry.expiry_task` once per shard with a
hand-built SQS record. The two programs' tasks alternate (shard by shard, the order
flipping each shard), after a discarded warm-up program, so DynamoDB Local's JIT and
machine noise fall on both alike. Before each task the app is pointed at that program's
tables as a warm container would be (clients created, program configuration cached).

Every DynamoDB call inside the tasks is metered (botocore handlers ask for
ReturnConsumedCapacity=INDEXES). Reads are DynamoDB Local's figures. Transactional
writes are priced from the items they touched (sizes before and after, index entries)
by the AWS rules, with `bench.ddbunits.price_write`; other writes use DynamoDB Local's
figures. Afterwards the check reads what changed: exactly the due members, each exactly
as an expiry leaves it and with one `expire` ledger entry, and nothing else (a sample of
the other members is compared in full).
"""

from __future__ import annotations

import calendar
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from bench import common
from bench.ddbunits import CapacityMeter, Consumed

DAY = date(2026, 10, 31)  # the expiry date the run processes
SIZES: tuple[tuple[str, int], ...] = (("10k", 10_000), ("100k", 100_000))
QUICK_SIZES: tuple[tuple[str, int], ...] = (("10k", 2_000), ("100k", 20_000))
DUE = 1_000  # members holding a lot dated DAY, the same members at every size
QUICK_DUE = 200
DUE_POINTS = 120  # each due member's DAY lot
WARM_UP = 500  # due members of the discarded warm-up program (at most the measured count)
LATER_MONTHS = 12  # other lots expire at the ends of the 12 months after DAY
RATIO_GOAL = 1.05  # a 10x larger program may cost at most 5% more to expire the same lots

SAMPLE = 1_000  # members not due that the check reads back in full


def log(message: str) -> None:
    print(f"[bench] expiry: {message}", file=sys.stderr, flush=True)


# ---- the program ----------------------------------------------------------------------------


def month_end(day: date, months_later: int) -> date:
    month0 = day.month - 1 + months_later
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, calendar.monthrange(year, month)[1])


LATER = tuple(month_end(DAY, n) for n in range(1, LATER_MONTHS + 1))


def lots_of(index: int, due: int) -> dict[date, int]:
    """Member `index`'s wallet. Due members (index < due) hold DUE_POINTS on DAY plus 0 to
    11 later lots (those with none leave the index when DAY expires; the others move to
    their next date). Every other member's earliest lot is one of the 12 later month
    ends, with 1 to 12 lots from there (at most LATER_MONTHS)."""
    lots: dict[date, int] = {}
    if index < due:
        lots[DAY] = DUE_POINTS
        later = LATER[: index % LATER_MONTHS]
    else:
        other = index - due
        start = other % LATER_MONTHS
        later = LATER[start : start + 1 + (other // LATER_MONTHS) % LATER_MONTHS]
    for n, day in enumerate(later):
        lots[day] = 40 + (index * 7 + n * 13) % 160
    return lots


@dataclass
class ExpiryProgram(common.Program):
    """What the run must leave of each member."""

    JOINED = datetime(2025, 9, 14, 2, 30, tzinfo=UTC)
    FIRST_PURCHASE = datetime(2025, 10, 3, 11, 15, tzinfo=UTC)
    LAST_PURCHASE = datetime(2025, 10, 26, 9, 40, tzinfo=UTC)

    def item(self, index: int, *, expired: bool = False) -> common.Item:
        """Member `index`'s item as populated, or (expired=True) as the run must leave it."""
        from chalicelib.dal.ledger import expiry_key

        member_id = self.ids[index]
        lots = lots_of(index, self.due)
        lifetime = sum(lots.values()) + 300  # some points were spent earlier
        version = 1
        if expired:
            lots = {d: p for d, p in lots.items() if d > DAY}
            version = 2
        item = dict(self.template)
        item.update(
            {
                "pk": {"S": f"MEMBER#{member_id}"},
                "member_id": {"S": member_id},
                "phone": {"S": f"+86139{index:08d}"},
                "lots": {"M": {d.isoformat(): {"N": str(p)} for d, p in sorted(lots.items())}},
                "points_balance": {"N": str(sum(lots.values()))},
                "lifetime_earned": {"N": str(lifetime)},
                "version": {"N": str(version)},
            }
        )
        if lots:
            first = min(lots)
            item["expiring_next_points"] = {"N": str(lots[first])}
            item["expiring_next_date"] = {"S": first.isoformat()}
            item["expiry_due"] = {"S": expiry_key(first, member_id)}
        else:
            item["expiring_next_points"] = {"N": "0"}
            item.pop("expiring_next_date", None)
            item.pop("expiry_due", None)
        return item


# ---- botocore ---------------------------------------------------------------------------------


@contextmanager
def one_botocore_session() -> Iterator[None]:
    """pynamodb gives each of its connections a new botocore session, and each new session
    parses botocore's endpoint and service data again (about 150 ms a client here). The
    section points the app at another program's tables before each task; sharing one
    session keeps that out of the section's wall time. The clients and their calls are the
    same, and clients are created before the timed window in any case."""
    import pynamodb.connection.base as pynamodb_base

    original = vars(pynamodb_base)["get_session"]
    session = original()
    setattr(pynamodb_base, "get_session", lambda: session)  # noqa: B010
    try:
        yield
    finally:
        setattr(pynamodb_base, "get_session", original)  # noqa: B010


# ---- the run ------------------------------------------------------------------------------------


def sqs_record(task: dict[str, Any], region: str) -> Any:
    """The SQS record a task arrives in, as Lambda's SQS event source delivers it."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    sent = str(int(time.time() * 1000))
    return SQSRecord(
        {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": "bench",
            "body": json.dumps(task),
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": sent,
                "SenderId": "bench",
                "ApproximateFirstReceiveTimestamp": sent,
            },
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{region}:000000000000:bench-jobs",
            "awsRegion": region,
        }
    )


@dataclass
class Setup:
    """One program on its own tables, and what its run has measured so far."""

    program: ExpiryProgram
    tables: dict[str, str]  # environment variable -> table name
    populate_seconds: float = 0.0
    records: list[Any] = field(default_factory=list)  # one SQS record per shard
    seconds: float = 0.0  # inside expiry_task, summed over the shards
    calls: list[Consumed] = field(default_factory=list)

    @property
    def members_table(self) -> str:
        return self.tables["MEMBERS_TABLE"]


@contextmanager
def bound(setup: Setup) -> Iterator[Any]:
    """The app pointed at this program's tables, as a warm container: its DynamoDB clients
    exist and the program configuration is cached (nothing of this is metered). Yields
    services()."""
    from chalicelib.handlers.expiry import JOB
    from chalicelib.wiring import points_context, services

    with common.environment(setup.tables):  # the app's services are made afresh for the block
        svc = services()
        points_context()  # program config and tiers, cached per container
        svc.ledger.load("mbr_bench_warm_up")  # the Members table's client
        svc.jobs.run(JOB, DAY)  # the Runtime table's client
        connection = getattr(svc.ledger, "_connection", None)  # TransactWriteItems' client
        if connection is not None:
            _ = connection.client
        yield svc


def prepare(admin: Any, program: ExpiryProgram, env: dict[str, str], region: str) -> Setup:
    """Tables, members, the stream, and the run record the daily schedule would create."""
    from chalicelib.domain.expiry import EXPIRY_SHARDS
    from chalicelib.handlers.expiry import JOB

    tag = f"loyalty-bench-expiry-{program.label}-{uuid.uuid4().hex[:6]}"
    setup = Setup(
        program,
        {
            "MEMBERS_TABLE": f"{tag}-members",
            "PROGRAM_TABLE": f"{tag}-program",
            "RUNTIME_TABLE": f"{tag}-runtime",
            "IDEMPOTENCY_TABLE": f"{tag}-idempotency",
        },
    )
    held_back = common.create_tables(admin, {**env, **setup.tables})
    log(f"{program.label}: populating {program.members:,} members ({program.due:,} due)")
    setup.populate_seconds = common.populate(admin, setup.members_table, program)
    common.enable_streams(admin, held_back)
    log(
        f"{program.label}: populated in {setup.populate_seconds:.1f} s "
        f"({program.members / setup.populate_seconds:,.0f} items/s)"
    )
    with bound(setup) as svc:
        if not svc.jobs.start_run(JOB, DAY, EXPIRY_SHARDS):
            raise RuntimeError(f"the {JOB} run for {DAY} already existed")
    setup.records = [
        sqs_record({"job": JOB, "date": DAY.isoformat(), "shard": shard}, region)
        for shard in range(EXPIRY_SHARDS)
    ]
    return setup


def run_task(meter: CapacityMeter, setup: Setup, shard: int) -> None:
    """One (DAY, shard) task of the run, timed and metered."""
    from chalicelib.handlers.jobs import task_handler
    from chalicelib.observability import metrics

    with bound(setup), meter.recording() as calls:
        try:
            t0 = time.perf_counter()
            task_handler(setup.records[shard])  # the jobs worker runs expiry_task
            setup.seconds += time.perf_counter() - t0
        finally:
            metrics.clear_metrics()  # nothing flushes them outside a Lambda handler
    setup.calls += calls


# ---- checking and pricing ---------------------------------------------------------------------


@dataclass
class Check:
    expired_members: int = 0  # due members left exactly as expected, with one expire entry
    wrong: list[str] = field(default_factory=list)  # what differs, for the report
    # the due members' items after the run, by (pk, sk)
    after: dict[tuple[str, str], common.Item] = field(default_factory=dict)
    entries: int = 0
    scanned: int = 0
    sampled: int = 0  # members not due, read back and compared attribute by attribute


def changed_items(client: Any, table: str, members: int) -> tuple[list[common.Item], int]:
    """Every item that is not a member at version 1 (a points commit adds 1 to the version),
    through a filtered scan: DynamoDB Local still reads the whole table, but only what
    changed is sent and parsed. The scan is split into segments of about 5,000 items:
    DynamoDB Local reads everything after a page's start key to serve each page, so one
    long scan costs quadratic time (two minutes for 100,000 members). Returns (items,
    items scanned)."""
    segments = max(1, members // 5_000)

    def segment(number: int) -> tuple[list[common.Item], int]:
        found: list[common.Item] = []
        scanned = 0
        pages = client.get_paginator("scan").paginate(
            TableName=table,
            Segment=number,
            TotalSegments=segments,
            FilterExpression="version <> :one OR sk <> :member",
            ExpressionAttributeValues={":one": {"N": "1"}, ":member": {"S": "MEMBER"}},
        )
        for page in pages:
            found += page.get("Items", [])
            scanned += page["ScannedCount"]
        return found, scanned

    with ThreadPoolExecutor(common.POPULATE_THREADS) as pool:
        parts = list(pool.map(segment, range(segments)))
    return [item for found, _ in parts for item in found], sum(n for _, n in parts)


def sample_unchanged(client: Any, table: str, program: ExpiryProgram, result: Check) -> None:
    """Read back SAMPLE members that were not due and compare them with what was written."""
    rng = random.Random(program.members)
    others = range(program.due, program.members)
    chosen = rng.sample(others, min(SAMPLE, len(others)))
    for start in range(0, len(chosen), 100):
        keys = {program.ids[n]: n for n in chosen[start : start + 100]}
        request: dict[str, Any] = {
            table: {"Keys": [{"pk": {"S": f"MEMBER#{m}"}, "sk": {"S": "MEMBER"}} for m in keys]}
        }
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(table, []):
                index = keys[item["member_id"]["S"]]
                result.sampled += 1
                if item != program.item(index):
                    result.wrong.append(f"member #{index} (not due) differs")
            request = response.get("UnprocessedKeys") or {}
    if result.sampled != len(chosen):
        result.wrong.append(f"{len(chosen) - result.sampled} sampled members not found")


def check(client: Any, table: str, program: ExpiryProgram) -> Check:
    """After the run: each due member must be exactly as an expiry leaves it (DAY lot gone,
    balance, next expiry, index key, version 2), with exactly one `expire` entry of
    DUE_POINTS from its DAY lot. No other member may have changed (version still 1; a
    sample compared in full), and nothing else may have appeared or disappeared."""
    result = Check()
    due_ok: set[str] = set()  # due members whose item is as expected
    entries: dict[str, list[common.Item]] = {}
    items, result.scanned = changed_items(client, table, program.members)
    extra = 0  # items other than member items
    for item in items:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        member_id = pk.removeprefix("MEMBER#")
        index = program.index.get(member_id)
        extra += sk != "MEMBER"
        if index is None or not (sk == "MEMBER" or sk.startswith("LEDGER#")):
            result.wrong.append(f"unexpected item {pk} / {sk}")
        elif sk.startswith("LEDGER#"):
            entries.setdefault(member_id, []).append(item)
        elif index >= program.due:
            result.wrong.append(f"member #{index} (not due) changed: version {item['version']}")
        else:
            result.after[(pk, sk)] = item
            if item == program.item(index, expired=True):
                due_ok.add(member_id)
            else:
                result.wrong.append(f"member #{index} (due) is not as expected")
    if result.scanned != program.members + extra:
        result.wrong.append(f"{result.scanned - extra} member items, expected {program.members}")
    expected_lots = {"M": {DAY.isoformat(): {"N": str(-DUE_POINTS)}}}
    for index, member_id in enumerate(program.ids[: program.due]):
        found = entries.pop(member_id, [])
        result.entries += len(found)
        if (
            len(found) == 1
            and found[0].get("type") == {"S": "expire"}
            and found[0].get("points") == {"N": str(-DUE_POINTS)}
            and found[0].get("lots") == expected_lots
        ):
            if member_id in due_ok:
                result.expired_members += 1
        else:
            result.wrong.append(f"member #{index} (due) has ledger entries {found!r}"[:300])
        if (f"MEMBER#{member_id}", "MEMBER") not in result.after:
            result.wrong.append(f"member #{index} (due) was not expired")
    for member_id, found in entries.items():  # what is left: members not due
        result.wrong.append(
            f"member #{program.index[member_id]} (not due) has {len(found)} ledger entries"
        )
    sample_unchanged(client, table, program, result)
    return result


# ---- results of one program --------------------------------------------------------------------


def finish(admin: Any, setup: Setup) -> dict[str, Any]:
    """Check the program's tables after its run and price what the run spent."""
    from bench.ddbunits import ImageReader
    from chalicelib.domain.expiry import EXPIRY_SHARDS
    from chalicelib.handlers.expiry import JOB

    program = setup.program
    with bound(setup) as svc:
        run_record = svc.jobs.run(JOB, DAY) or {}
    log(f"{program.label}: checking the {program.members:,} members")
    result = check(admin, setup.members_table, program)
    before = {(f"MEMBER#{program.ids[n]}", "MEMBER"): program.item(n) for n in range(program.due)}
    spec = ImageReader(admin).spec(setup.members_table)
    units = common.price(setup.calls, spec, before, result.after)
    expected_run = {
        "members": program.due,
        "lots": program.due,
        "points": program.due * DUE_POINTS,
        "tasks_done": EXPIRY_SHARDS,
    }
    for name, value in expected_run.items():
        if run_record.get(name) != value:
            result.wrong.append(f"run record {name} = {run_record.get(name)}, expected {value}")
    if not run_record.get("finished_at"):
        result.wrong.append("run record not finished")
    log(
        f"{program.label}: {len(setup.calls)} DynamoDB calls in {setup.seconds:.1f} s, "
        f"{result.expired_members:,} members expired, {len(result.wrong)} problems"
        + (f"; first: {result.wrong[:3]}" if result.wrong else "")
    )
    for name in setup.tables.values():  # frees DynamoDB Local's memory for the next program
        admin.delete_table(TableName=name)
    return {
        "members": program.members,
        "due": program.due,
        "seconds": setup.seconds,
        "populate_seconds": setup.populate_seconds,
        "units": units,
        "check": result,
        "run_record": run_record,
        "operations": dict(Counter(call.operation for call in setup.calls)),
    }


# ---- the section -----------------------------------------------------------------------------


def run(quick: bool = False) -> dict[str, Any]:
    import boto3
    import botocore.config

    from chalicelib.domain.expiry import EXPIRY_SHARDS

    sizes = QUICK_SIZES if quick else SIZES
    due_count = QUICK_DUE if quick else DUE
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    meter = CapacityMeter()
    with common.dynamodb_local("expiry") as endpoint:
        env = common.local_env(endpoint)
        region = env["AWS_REGION"]
        with (
            common.environment(env, remove=("AWS_PROFILE", "AWS_DEFAULT_PROFILE")),
            one_botocore_session(),
        ):
            admin = boto3.client(
                "dynamodb",
                region_name=region,
                config=botocore.config.Config(max_pool_connections=common.POPULATE_THREADS * 2),
            )  # created before the meter is installed: never metered
            with meter.installed():
                rng = random.Random(20261031)
                ms = int(datetime(2025, 9, 1, tzinfo=UTC).timestamp() * 1000)
                due_ids = [common.member_id_from(rng, ms + n) for n in range(due_count)]
                warm_ids = [
                    common.member_id_from(rng, ms + n) for n in range(min(due_count, WARM_UP))
                ]

                # Warm-up, discarded: DynamoDB Local's JIT needs a few hundred transactions
                # before its latency settles.
                warm = prepare(
                    admin,
                    ExpiryProgram.generate("warm-up", 2 * len(warm_ids), warm_ids, 0),
                    env,
                    region,
                )
                log(f"warm-up: expiring {len(warm_ids):,} members (discarded)")
                for shard in range(EXPIRY_SHARDS):
                    run_task(meter, warm, shard)
                warm_result = finish(admin, warm)

                setups = [
                    prepare(admin, ExpiryProgram.generate(label, size, due_ids, seed), env, region)
                    for seed, (label, size) in enumerate(sizes, start=1)
                ]
                log(f"running the expiry for {DAY}: {EXPIRY_SHARDS} tasks per program, interleaved")
                for shard in range(EXPIRY_SHARDS):
                    for setup in setups if shard % 2 == 0 else setups[::-1]:
                        run_task(meter, setup, shard)
                log("run done")
                results = {setup.program.label: finish(admin, setup) for setup in setups}
    elapsed = time.perf_counter() - started
    return report(results, warm_result, quick, elapsed, (load_start, os.getloadavg()[0]))


def size_info(result: dict[str, Any]) -> dict[str, Any]:
    spent: common.Units = result["units"]
    checked: Check = result["check"]
    return {
        **common.program_info(result),
        "expiry_seconds": round(result["seconds"], 3),
        **common.units_info(result),
        "by_operation": spent.by_operation,
        "run_record": result["run_record"],
        "expired_members": checked.expired_members,
        "expire_entries": checked.entries,
        "problems": checked.wrong[:20],
    }


def report(
    results: dict[str, dict[str, Any]],
    warm: dict[str, Any],
    quick: bool,
    total_s: float,
    load: tuple[float, float],
) -> dict[str, Any]:
    from chalicelib.domain.expiry import EXPIRY_SHARDS

    figures, units = common.cost_figures("expiry", "expiry_cost_ratio_100k_vs_10k", results)
    due = results["100k"]["due"]
    lots = results["100k"]["run_record"].get("lots", 0)
    figures["expiry_lots_per_s"] = round(lots / results["100k"]["seconds"], 1)
    units["expiry_lots_per_s"] = "1/s"
    figures["expired_members"] = results["100k"]["check"].expired_members
    units["expired_members"] = "members"
    figures["expiry_wrong_items"] = sum(len(r["check"].wrong) for r in (*results.values(), warm))
    units["expiry_wrong_items"] = "items"

    return {
        "figures": figures,
        "units": units,
        "goals": {
            "expiry_cost_ratio_100k_vs_10k": {"max": RATIO_GOAL},
            "expired_members": {"min": due, "max": due},
            "expiry_wrong_items": {"max": 0},
        },
        "info": {
            "quick": quick,
            "date": DAY.isoformat(),
            "shards": EXPIRY_SHARDS,
            "ratio": "(rru + wru at 100k) / (rru + wru at 10k)",
            "section_seconds": round(total_s, 1),
            "load_average_1m": {"start": round(load[0], 2), "end": round(load[1], 2)},
            "sizes": {label: size_info(result) for label, result in results.items()},
            "warm_up": size_info(warm),
        },
    }
