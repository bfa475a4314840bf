"""Pieces the benchmark sections share: the process environment pointed at DynamoDB
Local, the app's member-id format from a seeded generator, a program of members in the
shape the app writes, the template's tables, populating the Members table, the botocore
meter that records every DynamoDB call's ConsumedCapacity, and the pricing of what a
run's calls consumed as AWS bills it."""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from bench.ddbunits import READ_OPERATIONS, WRITE_OPERATIONS, Consumed

BATCH = 25  # BatchWriteItem's limit
POPULATE_THREADS = 3  # DynamoDB Local (2 cores) takes ~1,500 items/s this way; also scans

Item = dict[str, Any]
Key = tuple[str, str]  # (pk, sk)
Images = dict[Key, Item]


# ---- the process environment -----------------------------------------------------------------


@contextmanager
def environment(values: dict[str, str], remove: tuple[str, ...] = ()) -> Iterator[None]:
    """Set (and remove) environment variables for the block, then put the whole
    environment back as it was; the app's settings and clients are forgotten on the way
    in and out, so it reads the new values on first use."""
    from chalicelib.wiring import reset_services

    saved = dict(os.environ)
    try:
        for name in remove:
            os.environ.pop(name, None)
        os.environ.update(values)
        reset_services()
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_services()


def local_env(ddb_endpoint: str) -> dict[str, str]:
    """The local stage's settings with DynamoDB (and its streams) at `ddb_endpoint`, fake
    credentials, and no AWS configuration or instance metadata from this machine."""
    from local.infra import stage_environment
    from local.stack import LOCAL_CREDENTIALS

    env = stage_environment("local")
    env.update(LOCAL_CREDENTIALS)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    env["AWS_ENDPOINT_URL_DYNAMODB"] = ddb_endpoint
    env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = ddb_endpoint
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@contextmanager
def dynamodb_local(section: str) -> Iterator[str]:
    """An in-memory DynamoDB Local on a free port for the block; yields its endpoint."""
    from local import ddb

    port = ddb.free_port()
    log_file = Path(tempfile.gettempdir()) / f"bench-{section}-ddb-{port}.log"
    print(
        f"[bench] {section}: starting DynamoDB Local on port {port} (log {log_file})",
        file=sys.stderr,
        flush=True,
    )
    proc = ddb.start(port, None, log_file)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ddb.stop(proc)


def member_id_from(rng: random.Random, ms: int) -> str:
    """The app's id format (`chalicelib.ids.new_member_id`: 'mbr_' + lower-case ULID), from
    a seeded generator so each size's program is reproducible."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = (ms << 80) | rng.getrandbits(80)
    chars = []
    for _ in range(26):
        chars.append(alphabet[value & 31])
        value >>= 5
    return "mbr_" + "".join(reversed(chars))


# ---- the program ----------------------------------------------------------------------------


class _MemoryKeks:
    """A KEK store in memory (crypto.KekStore): for a cipher nothing reads back."""

    def __init__(self) -> None:
        self.items: dict[int, bytes] = {}

    def get(self, generation: int) -> bytes | None:
        return self.items.get(generation)

    def put_if_absent(self, generation: int, wrapped: bytes) -> bool:
        return self.items.setdefault(generation, wrapped) is wrapped


@contextmanager
def throwaway_cipher() -> Iterator[None]:
    """The app's cipher with a root key and KEK made for this block and then forgotten."""
    from chalicelib.dal import crypto

    with tempfile.TemporaryDirectory() as tmp:
        wrapper = crypto.LocalKeyWrapper(Path(tmp) / "root.key")
        crypto.use_cipher(crypto.PiiCipher(crypto.Keyring(wrapper, _MemoryKeks())))
        try:
            yield
        finally:
            crypto.use_cipher(None)


def member_template(
    joined: datetime, first_purchase: datetime, last_purchase: datetime, store_id: str
) -> Item:
    """A registered member as the app writes it (`chalicelib.dal.members.to_item`), with
    the wallet attributes a points commit sets (`DynamoLedgerRepository._member_actions`)
    and the purchase dates a first purchase sets."""
    from chalicelib.dal.members import to_item
    from chalicelib.domain.clock import rfc3339
    from chalicelib.domain.members import Member

    member = Member(
        member_id="mbr_template",
        phone="+8613900000000",
        channel="pos",
        created_at=joined,
        updated_at=joined,
        store_id=store_id,
    )
    # Sealed under a throwaway key: the section's tables hold no keyring, and its jobs
    # read the wallet without decrypting; the item has the size and shape of a real one.
    with throwaway_cipher():
        item: Item = to_item(member).serialize()
    item.update(
        {
            "points_pending": {"N": "0"},
            "points_debt": {"N": "0"},
            "pending_lots": {"L": []},
            "first_purchase_at": {"S": rfc3339(first_purchase)},
            "last_purchase_at": {"S": rfc3339(last_purchase)},
        }
    )
    return item


@dataclass
class Program:
    """One program size: member ids (the due members first) and the template of their
    items. A section's subclass says when its members joined and bought, and what each
    member's item is (`item`)."""

    JOINED: ClassVar[datetime]  # when every member registered
    FIRST_PURCHASE: ClassVar[datetime]
    LAST_PURCHASE: ClassVar[datetime]
    STORE_ID: ClassVar[str] = "store-001"  # where they registered

    label: str
    members: int
    due: int
    ids: list[str]
    template: Item
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {member_id: n for n, member_id in enumerate(self.ids)}

    @classmethod
    def generate(cls, label: str, members: int, due_ids: list[str], seed: int) -> Self:
        """`due_ids`, then the other members' ids drawn from `seed`, one millisecond apart
        from the start of the day they joined."""
        rng = random.Random(seed)
        day = cls.JOINED.replace(hour=0, minute=0, second=0, microsecond=0)
        ms = int(day.timestamp() * 1000)
        others = [member_id_from(rng, ms + n) for n in range(members - len(due_ids))]
        template = member_template(cls.JOINED, cls.FIRST_PURCHASE, cls.LAST_PURCHASE, cls.STORE_ID)
        return cls(label, members, len(due_ids), [*due_ids, *others], template)


# ---- tables -------------------------------------------------------------------------------------


def create_tables(client: Any, env: dict[str, str]) -> dict[str, Any]:
    """The template's tables (local/infra.py), but the Members table's stream is switched
    on only after populating (`enable_streams`): DynamoDB Local writes about three times
    slower with it, and the populate is not what is measured. Returns name -> stream spec."""
    from local.infra import create_table_kwargs, resources_of_type, table_names

    resources = resources_of_type("AWS::DynamoDB::Table")
    held_back: dict[str, Any] = {}
    for rid, name in table_names(env).items():
        properties = resources[rid]["Properties"]
        kwargs = create_table_kwargs(name, properties)
        stream = kwargs.pop("StreamSpecification", None)
        if stream is not None:
            held_back[name] = stream
        client.create_table(**kwargs)
        client.get_waiter("table_exists").wait(TableName=name)
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    return held_back


def enable_streams(client: Any, held_back: dict[str, Any]) -> None:
    for name, stream in held_back.items():
        client.update_table(TableName=name, StreamSpecification=stream)


class Populated(Protocol):
    """What `populate` needs of a program: its size and each member's item."""

    @property
    def members(self) -> int: ...

    def item(self, index: int) -> Item: ...


def populate(client: Any, table: str, program: Populated) -> float:
    """Write every member item with BatchWriteItem (25 a call, unprocessed items retried);
    returns the seconds it took."""

    def write(start: int) -> None:
        requests = [
            {"PutRequest": {"Item": program.item(n)}}
            for n in range(start, min(start + BATCH, program.members))
        ]
        for attempt in range(30):
            response = client.batch_write_item(RequestItems={table: requests})
            requests = response.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                return
            time.sleep(min(0.01 * 2**attempt, 1.0))
        raise RuntimeError(f"BatchWriteItem left {len(requests)} items unprocessed")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(POPULATE_THREADS) as pool:
        list(pool.map(write, range(0, program.members, BATCH)))
    return time.perf_counter() - t0


# ---- pricing ----------------------------------------------------------------------------------


@dataclass
class Units:
    """What a run's DynamoDB calls cost as AWS bills them, with DynamoDB Local's figures."""

    rru: float = 0.0
    wru: float = 0.0  # as AWS bills
    wru_index: float = 0.0  # the index part of wru
    wru_reported: float = 0.0  # DynamoDB Local's own write figures
    unpriced: int = 0  # transactional items without images: DynamoDB Local's figure used
    by_operation: dict[str, dict[str, float]] = field(default_factory=dict)
    by_line: dict[str, dict[str, float]] = field(default_factory=dict)  # by `Consumed.label`

    @property
    def total(self) -> float:
        return self.rru + self.wru


def price(calls: list[Consumed], spec: Any, before: Images, after: Images) -> Units:
    """Reads: DynamoDB Local's figures. Writes: TransactWriteItems priced from the items'
    images (2x item and index units), `before` the items as populated and `after` as the
    run left them, by (pk, sk); a Put of a key not in `before` is a new item. Other
    writes as DynamoDB Local reports them; other calls (DescribeTable...) are free.

    A cancelled transaction is billed too. The AWS developer guide ("DynamoDB read and
    write operations", "Amazon DynamoDB Transactions: How it works") says a
    transactional write consumes its two write units per KB of each item even when the
    transaction is cancelled, for example by a failed condition check, as a failed
    conditional PutItem/UpdateItem/DeleteItem consumes write units. Its response carries
    no ConsumedCapacity, so it is priced from the items it named: 2x the item's units
    at the larger of its populated image and a Put's new item. Nothing was written to an
    index, so no index units."""
    units = Units()
    for call in calls:
        lines = (
            units.by_operation.setdefault(call.operation, _line()),
            units.by_line.setdefault(call.label, _line()),
        )
        for line in lines:
            line["calls"] += 1
            line["failed"] += 0 if call.ok else 1
        reported = call.reported_units
        if call.operation in READ_OPERATIONS:
            units.rru += reported
            for line in lines:
                line["rru"] += reported
            continue
        if call.operation not in WRITE_OPERATIONS:
            continue
        units.wru_reported += reported
        billed, index = reported, sum(call.index_units.values())
        if call.operation == "TransactWriteItems":
            priced, index_part, unpriced = _price_transaction(call, spec, before, after)
            if unpriced:  # items without images: the engine's figure for the whole call
                units.unpriced += unpriced
            else:
                billed, index = priced, index_part
        units.wru += billed
        units.wru_index += index
        for line in lines:
            line["wru_reported"] += reported
            line["wru"] += billed
    return units


def _line() -> dict[str, float]:
    return {"calls": 0, "failed": 0, "rru": 0.0, "wru": 0.0, "wru_reported": 0.0}


def _price_transaction(
    call: Consumed, spec: Any, before: Images, after: Images
) -> tuple[float, float, int]:
    """(billed, index) write units of one TransactWriteItems, and how many of the items
    it wrote had no images to price them from."""
    from bench.ddbunits import item_size, price_write, write_units

    billed = index = 0.0
    unpriced = 0
    for action, _table, body in call.writes:
        if action == "ConditionCheck":
            continue
        key = (body["pk"]["S"], body["sk"]["S"])
        if not call.ok:  # cancelled: see `price`
            sizes = [item_size(before[key])] if key in before else []
            if action == "Put":
                sizes.append(item_size(body))
            if sizes:
                billed += 2 * write_units(max(sizes))
            else:
                unpriced += 1
            continue
        if action == "Put" and key not in before:  # a new item (a ledger or history entry)
            cost = price_write(spec, None, body)
        elif key in before and key in after:
            cost = price_write(spec, before[key], after[key] if action != "Delete" else None)
        else:
            unpriced += 1
            continue
        item_index = sum(cost.index_units.values())
        billed += 2 * (cost.item_units + item_index)
        index += 2 * item_index
    return billed, index, unpriced


# ---- reporting --------------------------------------------------------------------------------


def cost_figures(
    prefix: str, ratio: str, results: dict[str, dict[str, Any]], *, totals: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    """(figures, units) of a run at each program size (`results[label]["units"]` and
    ["seconds"]): `{prefix}_rru_{label}`, `_wru_`, `_seconds_` (`_units_` first with
    `totals`); then `ratio`, the 100k run's units over the 10k run's, and the 100k run's
    units per due member."""
    figures: dict[str, float] = {}
    units: dict[str, str] = {}
    for label, result in results.items():
        spent: Units = result["units"]
        if totals:
            figures[f"{prefix}_units_{label}"] = round(spent.total, 1)
            units[f"{prefix}_units_{label}"] = "RU+WU"
        figures[f"{prefix}_rru_{label}"] = round(spent.rru, 1)
        figures[f"{prefix}_wru_{label}"] = round(spent.wru, 1)
        figures[f"{prefix}_seconds_{label}"] = round(result["seconds"], 2)
        units[f"{prefix}_rru_{label}"] = "RRU"
        units[f"{prefix}_wru_{label}"] = "WRU"
        units[f"{prefix}_seconds_{label}"] = "s"
    small: Units = results["10k"]["units"]
    large: Units = results["100k"]["units"]
    figures[ratio] = round(large.total / small.total, 3)
    units[ratio] = "x"
    due = results["100k"]["due"]
    figures[f"{prefix}_rru_per_member"] = round(large.rru / due, 3)
    figures[f"{prefix}_wru_per_member"] = round(large.wru / due, 3)
    units[f"{prefix}_rru_per_member"] = "RRU"
    units[f"{prefix}_wru_per_member"] = "WRU"
    return figures, units


def program_info(result: dict[str, Any]) -> dict[str, Any]:
    """The program a size's run ran on, and how fast it was populated."""
    return {
        "members": result["members"],
        "due_members": result["due"],
        "populate_seconds": round(result["populate_seconds"], 1),
        "populate_items_per_s": round(result["members"] / result["populate_seconds"]),
    }


def units_info(result: dict[str, Any]) -> dict[str, Any]:
    """What a size's run consumed, billed and as DynamoDB Local reported it, and its calls."""
    spent: Units = result["units"]
    return {
        "rru": spent.rru,
        "wru": spent.wru,
        "wru_index": spent.wru_index,
        "wru_reported_by_ddb_local": spent.wru_reported,
        "unpriced_transaction_items": spent.unpriced,
        "calls": result["operations"],
    }
