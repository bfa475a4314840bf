"""Tiers: what the daily tier review (保级) costs, and how soon a purchase that crosses a
threshold shows as an upgrade.

Review cost. For each program size (10,000 and 100,000 members; 2,000 and 20,000 with
--quick), a fresh set of tables is created on one in-memory DynamoDB Local (own free port,
stopped at the end), the demo program is seeded, and the Members table is filled with
member items in the shape the app writes, every one of them above the base tier. The
same DUE members are due for review on DAY at both sizes: a mix of tiers and spends, so
the run keeps some and moves others down (one of them to the base tier, off the index).
Every other member's review date is one of the SPREAD_DAYS days after DAY, so it sits on
the sparse `review-index` under other dates' keys, as in a real program. A first review
on a 200-member program is run and discarded (DynamoDB Local's JIT warms up on it).

The run is the scheduled handler itself, `run_tier_review`, fired at 16:10 UTC the day
before DAY (00:10 on DAY in Asia/Shanghai), with the job's state advanced to the day
before DAY so only DAY is processed, then the jobs worker's `task_handler` on each of the
16 (date, shard) tasks it queued (an in-memory queue; without a Lambda context, so no
task stops early), in one cold services container (the program configuration and tiers
are read inside the run, as in a fresh Lambda). Every DynamoDB
call made during the run is metered (botocore handlers ask for
ReturnConsumedCapacity=INDEXES). Reads and non-transactional writes are DynamoDB Local's
figures. Transactional writes are priced from the items they touched (the populated item
before, the scanned item after, the history item put) by the AWS rules, with
`bench.ddbunits.price_write`, at 2x: DynamoDB Local's own transaction figures are not what
AWS bills (see docs/benchmarks.md). Then a scan checks that exactly the due members were
reviewed as the program's rules say, each with one history entry, and that no other item
changed (a parallel scan).

Upgrade lag. `python -m local.stack --in-memory` on free ports (DynamoDB Local, moto, the
stream pipeline, `chalice local`). Members registered over HTTP each get one signed POS
purchase of 5,200 yuan (the gold threshold is 5,000); the lag runs from the purchase's 201
to the first `GET /v1/members/{id}/tier` that shows gold, polled every 20 ms. One more
member's purchase comes first and is not measured (the pipeline's and the app's first use).
The stack's dead-letter queues are counted at the end (info only).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common
from bench.ddbunits import CapacityMeter, Consumed
from local.stack_process import local_stack
from local.tools import bearer

JOB = "tier_review"
DAY = date(2026, 12, 15)  # the review date the run processes
SIZES: tuple[tuple[str, int], ...] = (("10k", 10_000), ("100k", 100_000))
QUICK_SIZES: tuple[tuple[str, int], ...] = (("10k", 2_000), ("100k", 20_000))
WARM_UP_SIZE = 200  # a first review on a small program, discarded
DUE = 100  # members whose review is on DAY, the same members at every size
SPREAD_DAYS = 365  # every other member's review is on one of the days after DAY
RATIO_GOAL = 1.05  # a 10x larger program may cost at most 5% more to review the same members

# The due members' cases, in turn: (tier before, qualifying spend in DAY's rolling window,
# tier after, outcome). With the demo program: retention gold 4,000 yuan, platinum 8,000,
# no grace days, down one level at a time; the base tier is not reviewed.
CASES: tuple[tuple[str, int, str, str], ...] = (
    ("gold", 450_000, "gold", "kept"),
    ("gold", 120_000, "silver", "downgraded"),
    ("silver", 50_000, "member", "downgraded"),
    ("platinum", 900_000, "platinum", "kept"),
)
OLD_MONTH = ("2025-11", 250_000)  # spend outside DAY's rolling window: must not count
OTHER_TIERS = ("silver", "gold", "platinum")

SCAN_SEGMENTS = 4

UPGRADE_MEMBERS = 20
QUICK_UPGRADE_MEMBERS = 5
STORE_ID = "store-001"
UPGRADE_PURCHASE = 520_000  # fen: crosses gold (500,000) from the base tier
POLL_SECONDS = 0.02
UPGRADE_TIMEOUT = 20.0
WARM_UP_TIMEOUT = 60.0  # the warm-up purchase (first use of the pipeline)


def log(message: str) -> None:
    print(f"[bench] tiers: {message}", file=sys.stderr, flush=True)


# ---- the program ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tiering:
    """One member's tier attributes."""

    code: str
    since: date | None
    review_day: date | None
    monthly: dict[str, int]


def tier_item_fields(member_id: str, tiering: Tiering) -> tuple[common.Item, tuple[str, ...]]:
    """The tier attributes as `DynamoTierRepository.change` leaves them: (set, removed)."""
    from chalicelib.domain.clock import rfc3339
    from chalicelib.domain.tiering import review_key, start_of_day

    values: common.Item = {
        "tier_code": {"S": tiering.code},
        "qualifying_spend": {"M": {m: {"N": str(v)} for m, v in sorted(tiering.monthly.items())}},
    }
    removed = ["grace_until"]
    if tiering.since is not None:
        values["tier_since"] = {"S": tiering.since.isoformat()}
    else:
        removed.append("tier_since")
    if tiering.review_day is not None:
        values["tier_expires_at"] = {"S": rfc3339(start_of_day(tiering.review_day))}
        values["review_due"] = {"S": review_key(tiering.review_day, member_id)}
    else:
        removed += ["tier_expires_at", "review_due"]
    return values, tuple(removed)


@dataclass
class TierProgram(common.Program):
    """Each member's tier, and what the review must leave."""

    JOINED = datetime(2025, 3, 14, 2, 30, tzinfo=UTC)
    FIRST_PURCHASE = datetime(2025, 4, 3, 11, 15, tzinfo=UTC)
    LAST_PURCHASE = datetime(2026, 10, 26, 9, 40, tzinfo=UTC)
    STORE_ID = STORE_ID

    def case(self, index: int) -> tuple[str, int, str, str]:
        return CASES[index % len(CASES)]

    def tiering(self, index: int, *, reviewed: bool = False) -> Tiering:
        """Member `index`'s tier as populated, or (reviewed=True, due members only) as the
        review must leave it."""
        from chalicelib.domain.tiers import add_years

        if index < self.due:
            before, spend, after, _ = self.case(index)
            monthly = {
                OLD_MONTH[0]: OLD_MONTH[1],
                "2026-04": spend // 2,
                "2026-09": spend - spend // 2,
            }
            if not reviewed:
                return Tiering(before, add_years(DAY, -1), DAY, monthly)
            moved = after != before
            return Tiering(
                after,
                DAY if moved else add_years(DAY, -1),
                add_years(DAY) if after != "member" else None,
                monthly,
            )
        other = index - self.due
        review_day = DAY + timedelta(days=1 + other % SPREAD_DAYS)
        monthly = {"2026-05": 100_000 + (other * 7919) % 400_000, "2026-10": 150_000}
        return Tiering(
            OTHER_TIERS[other % len(OTHER_TIERS)], add_years(review_day, -1), review_day, monthly
        )

    def item(self, index: int, *, reviewed: bool = False) -> common.Item:
        """Member `index`'s item as populated, or (reviewed=True) as the review leaves it."""
        from chalicelib.dal.ledger import expiry_key

        member_id = self.ids[index]
        lot_day = date(2027, 12, 31)
        points = 200 + (index * 37) % 5_000
        item = dict(self.template)
        item.update(
            {
                "pk": {"S": f"MEMBER#{member_id}"},
                "member_id": {"S": member_id},
                "phone": {"S": f"+86139{index:08d}"},
                "lots": {"M": {lot_day.isoformat(): {"N": str(points)}}},
                "points_balance": {"N": str(points)},
                "lifetime_earned": {"N": str(points + 1_200)},
                "expiring_next_points": {"N": str(points)},
                "expiring_next_date": {"S": lot_day.isoformat()},
                "expiry_due": {"S": expiry_key(lot_day, member_id)},
                "version": {"N": str(3 + index % 7)},
                "lifecycle_stage": {"S": "active"},
            }
        )
        values, removed = tier_item_fields(
            member_id, self.tiering(index, reviewed=reviewed and index < self.due)
        )
        item.update(values)
        for name in removed:
            item.pop(name, None)
        return item


# ---- logs -------------------------------------------------------------------------------------


@contextmanager
def app_logs_to_stderr() -> Iterator[None]:
    """The app's JSON log lines go to stdout (as in Lambda); here stdout is the table."""
    from chalicelib.observability import SERVICE

    moved = []
    for handler in logging.getLogger(SERVICE).handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
            moved.append(handler)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(sys.stdout)


# ---- the run ----------------------------------------------------------------------------------


def fired_at() -> datetime:
    """The schedule's firing time for DAY: 16:10 UTC the day before (00:10 in Shanghai)."""
    from chalicelib.domain.tiering import start_of_day

    return start_of_day(DAY) + timedelta(minutes=10)


def run_review(meter: CapacityMeter) -> tuple[float, list[Consumed], dict[str, Any]]:
    """The scheduled review for DAY, metered: the schedule, then every task it queued
    run by the jobs worker in this process (one container, tasks one after another);
    (seconds, calls, the schedule's answer)."""
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.handlers.jobs import task_handler
    from chalicelib.handlers.tiers import run_tier_review
    from chalicelib.observability import metrics
    from chalicelib.wiring import reset_services, services

    services().jobs.advance(JOB, DAY - timedelta(days=1))  # earlier days are done
    reset_services()  # a cold container: the run reads the program and tiers itself
    queued: list[dict[str, Any]] = []
    # the jobs queue, in memory: its SQS calls are not what is measured
    services().tasks.send_many = queued.extend  # type: ignore[method-assign]
    event = {"time": fired_at().strftime("%Y-%m-%dT%H:%M:%SZ")}
    with app_logs_to_stderr(), meter.recording() as calls:
        try:
            t0 = time.perf_counter()
            answer = run_tier_review(event)
            while queued:
                body = json.dumps(queued.pop(0))
                task_handler(SQSRecord({"messageId": "bench", "body": body}), None)
            seconds = time.perf_counter() - t0
        finally:
            metrics.clear_metrics()  # nothing flushes them outside a Lambda handler
    return seconds, calls, answer


# ---- checking and pricing ---------------------------------------------------------------------


@dataclass
class Check:
    reviewed_members: int = 0  # due members left exactly as expected, with one history entry
    wrong: list[str] = field(default_factory=list)
    # the due members' items after the run, by (pk, sk)
    after: common.Images = field(default_factory=dict)
    history: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def scan(client: Any, table: str) -> Iterator[common.Item]:
    """Every item, strongly consistent: a parallel scan (SCAN_SEGMENTS threads fetch pages,
    the caller checks items as they come)."""
    # Unbounded: a worker never blocks, so the pool can always be joined.
    pages: queue.Queue[list[common.Item] | BaseException | None] = queue.Queue()

    def segment(number: int) -> None:
        try:
            for page in client.get_paginator("scan").paginate(
                TableName=table,
                ConsistentRead=True,
                Segment=number,
                TotalSegments=SCAN_SEGMENTS,
            ):
                pages.put(page.get("Items", []))
        except BaseException as exc:  # handed to the caller
            pages.put(exc)
        finally:
            pages.put(None)

    with ThreadPoolExecutor(SCAN_SEGMENTS) as pool:
        for number in range(SCAN_SEGMENTS):
            pool.submit(segment, number)
        running = SCAN_SEGMENTS
        while running:
            page = pages.get()
            if page is None:
                running -= 1
            elif isinstance(page, BaseException):
                raise page
            else:
                yield from page


def check(client: Any, table: str, program: TierProgram) -> Check:
    """Scan the Members table: every member must be exactly as populated, except the due
    members, which must be exactly as their review leaves them, each with one history
    entry saying so. Nothing else may be there."""
    from chalicelib.domain.clock import rfc3339
    from chalicelib.domain.tiering import start_of_day
    from chalicelib.domain.tiers import rolling_spend

    result = Check()
    seen: set[str] = set()
    due_ok: set[str] = set()
    history: dict[str, list[common.Item]] = {}
    for item in scan(client, table):
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        member_id = pk.removeprefix("MEMBER#")
        index = program.index.get(member_id)
        if index is None or not (sk == "MEMBER" or sk.startswith("TIER#")):
            result.wrong.append(f"unexpected item {pk} / {sk}")
        elif sk.startswith("TIER#"):
            history.setdefault(member_id, []).append(item)
        else:
            seen.add(member_id)
            due = index < program.due
            if due:
                result.after[(pk, sk)] = item
            if item == program.item(index, reviewed=due):
                if due:
                    due_ok.add(member_id)
            else:
                expected = program.item(index, reviewed=due)
                differs = sorted(
                    name
                    for name in set(item) | set(expected)
                    if item.get(name) != expected.get(name)
                )
                result.wrong.append(
                    f"member #{index} ({'due' if due else 'not due'}) differs in {differs}"
                )
    missing = program.members - len(seen)
    if missing:
        result.wrong.append(f"{missing} members missing")
    for index, member_id in enumerate(program.ids[: program.due]):
        found = history.pop(member_id, [])
        result.history += len(found)
        before, _, after, outcome = program.case(index)
        tiering = program.tiering(index, reviewed=True)
        spend = rolling_spend(tiering.monthly, DAY)
        expected = {
            "kind": {"S": "tier_change"},
            "member_id": {"S": member_id},
            "from_tier": {"S": before},
            "to_tier": {"S": after},
            "reason": {"S": outcome},
            "qualifying_spend": {"N": str(spend)},
        }
        if tiering.review_day is not None:
            expected["expires_at"] = {"S": rfc3339(start_of_day(tiering.review_day))}
        if (
            len(found) == 1
            and all(found[0].get(k) == v for k, v in expected.items())
            and ("expires_at" in found[0]) == ("expires_at" in expected)
        ):
            result.outcomes[f"{before}->{after} {outcome}"] += 1
            if member_id in due_ok:
                result.reviewed_members += 1
            continue
        result.wrong.append(f"member #{index} (due) has history {found!r}"[:300])
    for member_id, found in history.items():  # what is left: members not due
        result.wrong.append(
            f"member #{program.index[member_id]} (not due) has {len(found)} history entries"
        )
    return result


# ---- one size --------------------------------------------------------------------------------


def measure_size(
    admin: Any, meter: CapacityMeter, program: TierProgram, env: dict[str, str]
) -> dict[str, Any]:
    from bench.ddbunits import ImageReader
    from chalicelib.wiring import reset_services, services
    from local.seed import seed

    tag = f"loyalty-bench-tiers-{program.label}-{uuid.uuid4().hex[:6]}"
    tables = {
        "MEMBERS_TABLE": f"{tag}-members",
        "PROGRAM_TABLE": f"{tag}-program",
        "RUNTIME_TABLE": f"{tag}-runtime",
        "IDEMPOTENCY_TABLE": f"{tag}-idempotency",
    }
    members_table = tables["MEMBERS_TABLE"]
    with common.environment(tables):
        try:
            held_back = common.create_tables(admin, {**env, **tables})
            seed()  # the demo program: the default tiers
            log(f"{program.label}: populating {program.members:,} members ({program.due} due)")
            populate_s = common.populate(admin, members_table, program)
            common.enable_streams(admin, held_back)
            log(
                f"{program.label}: populated in {populate_s:.1f} s "
                f"({program.members / populate_s:,.0f} items/s); running the review for {DAY}"
            )
            before = {
                (f"MEMBER#{program.ids[n]}", "MEMBER"): program.item(n) for n in range(program.due)
            }
            reset_services()
            seconds, calls, answer = run_review(meter)
            log(f"{program.label}: {len(calls)} DynamoDB calls in {seconds:.2f} s; checking")
            run_record = services().jobs.run(JOB, DAY) or {}
            last_date = services().jobs.last_date(JOB)
            t0 = time.perf_counter()
            result = check(admin, members_table, program)
            check_s = time.perf_counter() - t0
            units = common.price(
                calls, ImageReader(admin).spec(members_table), before, result.after
            )
        finally:
            reset_services()
            for name in tables.values():
                try:
                    admin.delete_table(TableName=name)
                except Exception as exc:  # the instance is stopped at the end anyway
                    log(f"could not delete {name}: {exc}")
    if answer.get("dates") != [DAY.isoformat()]:
        result.wrong.append(f"the run processed {answer.get('dates')}, expected [{DAY}]")
    if last_date != DAY:
        result.wrong.append(f"job state last_date = {last_date}, expected {DAY}")
    # one task per shard
    expected_run = {"members": program.due, "tasks_done": 16, "tasks": 16}
    for name, value in expected_run.items():
        if run_record.get(name) != value:
            result.wrong.append(f"run record {name} = {run_record.get(name)}, expected {value}")
    if not run_record.get("finished_at"):
        result.wrong.append("run record not finished")
    if result.wrong:
        log(f"{program.label}: {len(result.wrong)} problems, first: {result.wrong[:3]}")
    log(
        f"{program.label}: {units.rru:g} RRU + {units.wru:g} WRU; "
        f"{result.reviewed_members}/{program.due} reviewed (scan {check_s:.1f} s)"
    )
    return {
        "members": program.members,
        "due": program.due,
        "seconds": seconds,
        "populate_seconds": populate_s,
        "check_seconds": check_s,
        "units": units,
        "check": result,
        "run_record": run_record,
        "answer": answer,
        "operations": dict(Counter(call.operation for call in calls)),
    }


def review_cost(quick: bool) -> dict[str, dict[str, Any]]:
    import boto3
    import botocore.config

    sizes = QUICK_SIZES if quick else SIZES
    meter = CapacityMeter()
    with common.dynamodb_local("tiers") as endpoint:
        env = common.local_env(endpoint)
        with common.environment(env, remove=("AWS_PROFILE", "AWS_DEFAULT_PROFILE")):
            admin = boto3.client(
                "dynamodb",
                region_name=env["AWS_REGION"],
                config=botocore.config.Config(max_pool_connections=8),
            )  # created before the meter: never metered
            with meter.installed():
                rng = random.Random(20261215)
                ms = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp() * 1000)
                due_ids = [common.member_id_from(rng, ms + n) for n in range(DUE)]
                # Discarded: DynamoDB Local's first transactions and queries run cold (JIT),
                # which would make the first size look slower than the second.
                warm = measure_size(
                    admin, meter, TierProgram.generate("warm-up", WARM_UP_SIZE, due_ids, 0), env
                )
                if warm["check"].wrong:
                    raise RuntimeError(f"the warm-up review went wrong: {warm['check'].wrong[:3]}")
                results = {
                    label: measure_size(
                        admin, meter, TierProgram.generate(label, size, due_ids, seed), env
                    )
                    for seed, (label, size) in enumerate(sizes, start=1)
                }
    log("DynamoDB Local stopped")
    return results


# ---- upgrade lag over HTTP ----------------------------------------------------------------------


@dataclass
class Upgrade:
    member_id: str
    lag_ms: float | None = None  # None: not gold within the timeout
    polls: int = 0
    written_after_ms: float | None = None  # the history entry's time after the 201


class Till:
    """Registers members and posts their purchases over HTTP, as a POS and the app do."""

    def __init__(self, session: Any, base: str, key: dict[str, str]) -> None:
        self.session, self.base, self.key = session, base, key
        self.tokens: dict[str, str] = {}  # member id -> the token of its app sign-in

    def register(self) -> str:
        """An app sign-up with the phone the identity provider verified; that sign-in's
        token then acts as the member."""
        from local.tools import member_or_staff_token

        phone = "+86138" + "".join(secrets.choice("0123456789") for _ in range(8))
        token = member_or_staff_token("member", None, phone=phone)
        response = self.session.post(
            f"{self.base}/v1/members",
            data=json.dumps({"phone": phone, "channel": "app"}),
            headers=bearer(token),
            timeout=30,
        )
        if response.status_code != 201:
            raise RuntimeError(f"registration answered {response.status_code}: {response.text}")
        member_id = str(response.json()["member_id"])
        self.tokens[member_id] = token
        return member_id

    def upgrade(self, member_id: str, timeout: float) -> Upgrade:
        """One purchase over the gold threshold; polls the member's tier until gold."""
        from local.pos import encode, key_headers

        path = "/v1/transactions"
        body = encode(
            {
                "transaction_id": f"tier-{uuid.uuid4().hex[:16]}",
                "store_id": STORE_ID,
                "member_id": member_id,
                "occurred_at": datetime.now(UTC).isoformat(),
                "items": [
                    {
                        "sku": "watch",
                        "category": "jewellery",
                        "quantity": 1,
                        "unit_price": UPGRADE_PURCHASE,
                    }
                ],
                "total": UPGRADE_PURCHASE,
            }
        )
        headers = key_headers(self.key, "POST", path, body)
        member_headers = bearer(self.tokens[member_id])
        response = self.session.post(f"{self.base}{path}", data=body, headers=headers, timeout=30)
        accepted = time.perf_counter()
        accepted_wall = time.time()
        if response.status_code != 201:
            raise RuntimeError(f"purchase answered {response.status_code}: {response.text}")
        result = Upgrade(member_id)
        while True:
            result.polls += 1
            view = self.session.get(
                f"{self.base}/v1/members/{member_id}/tier", headers=member_headers, timeout=30
            )
            seen = time.perf_counter()
            if view.status_code != 200:
                raise RuntimeError(f"tier answered {view.status_code}: {view.text}")
            data = view.json()
            if data["tier"]["code"] == "gold":
                result.lag_ms = (seen - accepted) * 1000.0
                history = data.get("history") or []
                if history and history[0].get("to") == "gold":
                    at = str(history[0]["at"]).replace("Z", "+00:00")
                    written = datetime.fromisoformat(at).timestamp()
                    result.written_after_ms = (written - accepted_wall) * 1000.0
                return result
            if seen - accepted > timeout:
                log(f"{member_id} not gold {timeout:g} s after its purchase")
                return result
            time.sleep(POLL_SECONDS)


def dead_letters(env: dict[str, str], queues: dict[str, str]) -> dict[str, int]:
    """Messages waiting in each of the stack's dead-letter queues (moto)."""
    import boto3

    sqs = boto3.client(
        "sqs",
        region_name=env["AWS_REGION"],
        endpoint_url=env["AWS_ENDPOINT_URL_SQS"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    counts: dict[str, int] = {}
    for name, url in queues.items():
        if name.endswith("DLQ"):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            counts[name] = int(attributes.get("ApproximateNumberOfMessages", 0))
    return counts


def upgrade_lag(quick: bool) -> dict[str, Any]:
    import requests

    from local.stack import stack_environment
    from local.tools import create_store_key

    count = QUICK_UPGRADE_MEMBERS if quick else UPGRADE_MEMBERS
    with (
        tempfile.TemporaryDirectory(prefix="bench-tiers-stack-") as tmp,
        local_stack(Path(tmp), log) as state,
    ):
        env = stack_environment(state["ddb_port"], state["moto_port"], state["queues"])
        with common.environment(env):
            key = create_store_key(STORE_ID)
        with requests.Session() as session:
            till = Till(session, state["api"], key)
            members = [till.register() for _ in range(count)]
            warm_up = till.register()
            # Not measured: the first purchase also pays the pipeline's and the app's first
            # use of everything, and waits for whatever registering queued on the stream.
            log(f"{count + 1} members registered; a warm-up purchase first")
            t0 = time.perf_counter()
            warm = till.upgrade(warm_up, WARM_UP_TIMEOUT)
            drain_s = time.perf_counter() - t0
            if warm.lag_ms is None:
                raise RuntimeError(f"the warm-up member was not gold within {WARM_UP_TIMEOUT:g} s")
            log(
                f"warm-up gold after {drain_s:.1f} s; "
                f"one purchase of {UPGRADE_PURCHASE / 100:,.0f} yuan per member"
            )
            upgrades = [till.upgrade(member_id, UPGRADE_TIMEOUT) for member_id in members]
        dlq = dead_letters(env, state["queues"])
    lags = [u.lag_ms for u in upgrades if u.lag_ms is not None]
    if lags:
        log(f"upgrade lag median {statistics.median(lags):.0f} ms over {len(lags)} members")
    if any(dlq.values()):
        log(f"dead-lettered by the stack: {dlq}")
    return {
        "members": count,
        "upgrades": upgrades,
        "warm_up_s": drain_s,
        "dead_letters": dlq,
    }


# ---- the section -----------------------------------------------------------------------------


def p90(samples: list[float]) -> float:
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=10, method="inclusive")[-1]


def run(quick: bool = False) -> dict[str, Any]:
    review = review_cost(quick)
    upgrade = upgrade_lag(quick)
    return report(review, upgrade, quick)


def report(
    results: dict[str, dict[str, Any]], upgrade: dict[str, Any], quick: bool
) -> dict[str, Any]:
    from chalicelib.domain.expiry import EXPIRY_SHARDS

    figures, units = common.cost_figures(
        "tier_review", "review_cost_ratio_100k_vs_10k", results, totals=True
    )
    due = results["100k"]["due"]
    figures["tier_reviewed_members"] = min(r["check"].reviewed_members for r in results.values())
    units["tier_reviewed_members"] = "members"
    figures["tier_review_wrong_items"] = sum(len(r["check"].wrong) for r in results.values())
    units["tier_review_wrong_items"] = "items"

    upgrades: list[Upgrade] = upgrade["upgrades"]
    lags = [u.lag_ms for u in upgrades if u.lag_ms is not None]
    if lags:
        figures["upgrade_lag_ms"] = round(statistics.median(lags), 1)
        figures["upgrade_lag_p90_ms"] = round(p90(lags), 1)
        figures["upgrade_lag_max_ms"] = round(max(lags), 1)
        for name in ("upgrade_lag_ms", "upgrade_lag_p90_ms", "upgrade_lag_max_ms"):
            units[name] = "ms"
    figures["upgrade_timeouts"] = len(upgrades) - len(lags)
    units["upgrade_timeouts"] = "members"

    info: dict[str, Any] = {
        "quick": quick,
        "date": DAY.isoformat(),
        "fired_at": fired_at().isoformat().replace("+00:00", "Z"),
        "shards": EXPIRY_SHARDS,
        "ratio": "(rru + wru at 100k) / (rru + wru at 10k)",
        "due_cases": [{"before": b, "spend": s, "after": a, "outcome": o} for b, s, a, o in CASES],
        "sizes": {},
        "upgrade": {
            "members": upgrade["members"],
            "purchase_fen": UPGRADE_PURCHASE,
            "poll_ms": POLL_SECONDS * 1000,
            "timeout_s": UPGRADE_TIMEOUT,
            "warm_up_seconds": round(upgrade["warm_up_s"], 2),
            "lags_ms": [round(v, 1) for v in lags],
            "polls": [u.polls for u in upgrades],
            "history_written_after_201_ms": [
                round(u.written_after_ms, 1) for u in upgrades if u.written_after_ms is not None
            ],
            "timeouts": [u.member_id for u in upgrades if u.lag_ms is None],
            "stack_dead_letters": upgrade["dead_letters"],
        },
    }
    for label, result in results.items():
        spent: common.Units = result["units"]
        checked: Check = result["check"]
        info["sizes"][label] = {
            **common.program_info(result),
            "review_seconds": round(result["seconds"], 3),
            "check_seconds": round(result["check_seconds"], 1),
            **common.units_info(result),
            "by_line": spent.by_line,
            "run_record": result["run_record"],
            "handler_answer": result["answer"],
            "reviewed_members": checked.reviewed_members,
            "history_entries": checked.history,
            "outcomes": dict(checked.outcomes),
            "problems": checked.wrong[:20],
        }
    goals: dict[str, dict[str, float]] = {
        "review_cost_ratio_100k_vs_10k": {"max": RATIO_GOAL},
        "tier_reviewed_members": {"min": due, "max": due},
        "tier_review_wrong_items": {"max": 0},
        "upgrade_timeouts": {"max": 0},
    }
    return {"figures": figures, "units": units, "goals": goals, "info": info}
