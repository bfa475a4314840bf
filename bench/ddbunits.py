"""DynamoDB capacity accounting for the benchmarks: what each call consumed as DynamoDB
(Local) reports it, and what AWS bills for it, from the items' sizes.

- `CapacityMeter` hooks every DynamoDB client created while it is installed (pynamodb's
  and boto3's alike: both create clients through `botocore.session.Session.create_client`).
  While recording, a `before-parameter-build` handler asks for
  `ReturnConsumedCapacity="INDEXES"` and an `after-call` handler records the response's
  `ConsumedCapacity`, labelled with the items the call touched.
- With an `ImageReader` (its own client, never metered), the meter also reads every item a
  write touches just before and just after the call, and prices the write by the AWS
  rules: per item, ceil(max(size before, size after) / 1 KB) write units; per global
  secondary index, the index entry's writes (none when neither its keys nor its projected
  attributes change, two when its key changes); transactional writes at twice that.
  DynamoDB Local's own transaction figures cannot be used for this: it already applies
  the 2x, and it adds the per-item units of a transaction as a *set*, so items with the
  same number of KB are counted once (three 500-byte puts report 2 units, not 6).
- `item_size()` applies the item size rules of the DynamoDB developer guide ("DynamoDB item
  sizes and formats") to an item in the low-level wire format.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
TRANSACTIONAL = frozenset({"TransactWriteItems", "TransactGetItems"})

Item = dict[str, dict[str, Any]]


# ---- item sizes ---------------------------------------------------------------------------


def number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1 (leading and trailing zeroes trimmed)."""
    mantissa = text.strip().lstrip("+-").lower().split("e")[0]
    digits = mantissa.replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def value_size(value: dict[str, Any]) -> int:
    """Size of one attribute value (without its name) in the low-level format."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return number_size(str(raw))
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in raw)
    if kind == "NS":
        return sum(number_size(str(n)) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "L":  # 3 bytes for the list, 1 per element
        return 3 + sum(1 + value_size(element) for element in raw)
    if kind == "M":  # 3 bytes for the map, 1 per element, element names count
        return 3 + sum(1 + len(name.encode()) + value_size(v) for name, v in raw.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item: Item) -> int:
    """Bytes DynamoDB counts for an item: sum of (UTF-8 name length + value size)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size_bytes: int) -> int:
    """Standard write request units for one item write: 1 per started KB (at least 1)."""
    return max(1, math.ceil(size_bytes / 1024))


# ---- pricing a write from the item's images ------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    keys: tuple[str, ...]
    indexes: tuple[IndexSpec, ...]

    def key_of(self, item: Item) -> Item:
        return {name: item[name] for name in self.keys}

    def index_entry(self, index: IndexSpec, image: Item | None) -> Item | None:
        """What the index holds for this item image (None: the item is not in the index)."""
        if image is None or any(name not in image for name in index.keys):
            return None
        if index.projection == "ALL":
            return image
        names = set(self.keys) | set(index.keys) | set(index.include)
        return {name: value for name, value in image.items() if name in names}


@dataclass(frozen=True)
class WriteCost:
    """Standard (1x) write units of one item write: the item's, and each index's."""

    item_units: int
    index_units: dict[str, int]
    sizes: tuple[int, int]  # (before, after), 0 when absent


def price_write(spec: TableSpec, before: Item | None, after: Item | None) -> WriteCost:
    size_before = item_size(before) if before else 0
    size_after = item_size(after) if after else 0
    index_units: dict[str, int] = {}
    for index in spec.indexes:
        old, new = spec.index_entry(index, before), spec.index_entry(index, after)
        if old is None and new is None:
            units = 0
        elif old is None or new is None:
            units = write_units(item_size(old or new or {}))
        elif any(old[k] != new[k] for k in index.keys):  # moved: delete + put
            units = write_units(item_size(old)) + write_units(item_size(new))
        elif old == new:  # neither keys nor projected attributes changed: no index write
            units = 0
        else:
            units = write_units(max(item_size(old), item_size(new)))
        if units:
            index_units[index.name] = units
    return WriteCost(
        write_units(max(size_before, size_after)), index_units, (size_before, size_after)
    )


class ImageReader:
    """Reads items (strongly consistent) with a client of its own, which must not be
    metered; caches each table's key schema and global secondary indexes."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._specs: dict[str, TableSpec] = {}

    def spec(self, table: str) -> TableSpec:
        if table not in self._specs:
            description = self.client.describe_table(TableName=table)["Table"]
            indexes = tuple(
                IndexSpec(
                    name=gsi["IndexName"],
                    keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                    projection=gsi["Projection"]["ProjectionType"],
                    include=tuple(gsi["Projection"].get("NonKeyAttributes", ())),
                )
                for gsi in description.get("GlobalSecondaryIndexes", [])
            )
            keys = tuple(k["AttributeName"] for k in description["KeySchema"])
            self._specs[table] = TableSpec(keys, indexes)
        return self._specs[table]

    def image(self, table: str, key: Item) -> Item | None:
        found = self.client.get_item(TableName=table, Key=key, ConsistentRead=True)
        return found.get("Item")  # type: ignore[no-any-return]


def written_items(operation: str, params: dict[str, Any], reader: ImageReader) -> list[Any]:
    """(table, key) of every item a write call touches."""
    targets: list[tuple[str, Item]] = []

    def add(table: str, body: dict[str, Any]) -> None:
        key = body.get("Key") or reader.spec(table).key_of(body["Item"])
        targets.append((table, key))

    if operation == "TransactWriteItems":
        for entry in params.get("TransactItems", []):
            ((action, body),) = entry.items()
            if action != "ConditionCheck":  # priced as a read, not a write
                add(body["TableName"], body)
    elif operation == "BatchWriteItem":
        for table, requests in params.get("RequestItems", {}).items():
            for request in requests:
                ((_, body),) = request.items()
                add(table, body)
    else:
        add(params["TableName"], params)
    return targets


# ---- consumed capacity ----------------------------------------------------------------------


@dataclass
class Consumed:
    operation: str
    label: str
    table_units: float  # as the engine reported them
    index_units: dict[str, float] = field(default_factory=dict)
    consistent: bool | None = None
    # Writes, priced from the items' images at 1x (None: not priced).
    items: list[WriteCost] | None = None
    ms: float = 0.0  # parameter build to parsed response (image reads excluded)
    ok: bool = True  # False: the call failed (a cancelled transaction, a failed condition)
    # TransactWriteItems: (action, table, Key for Update/Delete/ConditionCheck, Item for Put)
    writes: list[tuple[str, str, Item]] = field(default_factory=list)

    @property
    def reported_units(self) -> float:
        return self.table_units + sum(self.index_units.values())

    @property
    def transactional(self) -> bool:
        return self.operation in TRANSACTIONAL

    def billed_write(self, fallback_txn_multiplier: float) -> tuple[float, float]:
        """(table, index) write units as AWS bills them."""
        if self.operation not in WRITE_OPERATIONS:
            return 0.0, 0.0
        factor = 2.0 if self.transactional else 1.0
        if self.items is not None:
            table = sum(c.item_units for c in self.items) * factor
            index = sum(sum(c.index_units.values()) for c in self.items) * factor
            return table, index
        factor = fallback_txn_multiplier if self.transactional else 1.0
        return self.table_units * factor, sum(self.index_units.values()) * factor

    def billed_read(self) -> float:
        """Read units: the engine's figures (eventual 0.5, strong 1 per 4 KB)."""
        return 0.0 if self.operation in WRITE_OPERATIONS else self.reported_units


def _short_table(name: str) -> str:
    return name.rsplit("-", 1)[-1]


def _key_label(key: dict[str, Any] | None) -> str:
    """`MEMBER/LEDGER`: the prefixes (before `#`) of the item's pk and sk."""
    if not key:
        return "?"
    parts = []
    for name in ("pk", "sk"):
        if name in key:
            parts.append(str(next(iter(key[name].values()), "")).split("#", 1)[0])
    return "/".join(parts)


def label_of(operation: str, params: dict[str, Any]) -> tuple[str, bool | None]:
    """`GetItem members/ID strong`: what the call touched, by table and key prefix."""
    consistent: bool | None = None
    if operation == "TransactWriteItems":
        parts = []
        for entry in params.get("TransactItems", []):
            ((action, body),) = entry.items()
            key = body.get("Key") or body.get("Item")
            parts.append(f"{action} {_short_table(body['TableName'])}/{_key_label(key)}")
        return f"{operation} [{', '.join(parts)}]", None
    table = _short_table(str(params.get("TableName", "?")))
    key = params.get("Key") or params.get("Item")
    label = f"{operation} {table}/{_key_label(key)}"
    if operation in READ_OPERATIONS:
        consistent = bool(params.get("ConsistentRead", False))
        label += " strong" if consistent else " eventual"
    return label, consistent


def parse_consumed(operation: str, label: str, consistent: bool | None, raw: Any) -> Consumed:
    entries = raw if isinstance(raw, list) else [raw]
    table_units = 0.0
    index_units: dict[str, float] = {}
    for entry in entries:
        if not entry:
            continue
        table = entry.get("Table", {}).get("CapacityUnits")
        indexes = entry.get("GlobalSecondaryIndexes", {}) | entry.get("LocalSecondaryIndexes", {})
        if table is None and not indexes:
            table = entry.get("CapacityUnits", 0.0)
        table_units += float(table or 0.0)
        for name, value in indexes.items():
            index_units[name] = index_units.get(name, 0.0) + float(value.get("CapacityUnits", 0.0))
    return Consumed(operation, label, table_units, index_units, consistent)


class CapacityMeter:
    """Records the ConsumedCapacity of every DynamoDB call of clients created while
    installed, only inside `with meter.recording(): ...`. With a `reader`, writes are
    also priced from the before/after images of the items they touch (single-threaded
    use: another writer between the reads and the call would skew the images)."""

    def __init__(self, reader: ImageReader | None = None) -> None:
        self.calls: list[Consumed] = []
        self.active = False
        self.reader = reader
        # False: only label and time the calls (no capacity request, no image reads).
        self.pricing = True
        self._paused = False  # handlers off every client (attach waits for resume)
        self._lock = threading.Lock()
        self._original: Callable[..., Any] | None = None
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()  # the app drops old ones

    def install(self) -> CapacityMeter:
        import botocore.session

        if self._original is not None:
            return self
        original = botocore.session.Session.create_client
        self._original = original
        meter = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                meter.attach(client)
            return client

        setattr(botocore.session.Session, "create_client", create_client)  # noqa: B010
        return self

    def uninstall(self) -> None:
        import botocore.session

        if self._original is not None:
            setattr(botocore.session.Session, "create_client", self._original)  # noqa: B010
            self._original = None
        self.pause()
        self._clients.clear()

    def pause(self) -> None:
        """Take the handlers off every client (they cost nothing while timing)."""
        for client in self._clients:
            client.meta.events.unregister("before-parameter-build.dynamodb.*", self._before)
            client.meta.events.unregister("after-call.dynamodb.*", self._after)
        self.active = False
        self._paused = True

    def resume(self) -> None:
        """Put the handlers back on the clients seen so far."""
        self._paused = False
        for client in self._clients:
            self._register(client)

    def attach(self, client: Any) -> None:
        if self.reader is not None and client is self.reader.client:
            return
        # A client created while paused gets its handlers on resume (never twice: a call
        # would then be recorded twice).
        if not self._paused:
            self._register(client)
        self._clients.add(client)

    def _register(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    @contextmanager
    def installed(self) -> Iterator[CapacityMeter]:
        """Installed for the block (clients created before it are never metered)."""
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    @contextmanager
    def recording(self) -> Iterator[list[Consumed]]:
        """Record the calls made inside the block; yields the list they are added to."""
        with self._lock:
            start = len(self.calls)
            self.active = True
        taken: list[Consumed] = []
        try:
            yield taken
        finally:
            with self._lock:
                self.active = False
                taken.extend(self.calls[start:])

    def _before(self, params: dict[str, Any], model: Any, context: Any = None, **_: Any) -> None:
        if not self.active:
            return
        shape = model.input_shape
        if shape is None or "ReturnConsumedCapacity" not in shape.members:
            return
        if self.pricing:
            params["ReturnConsumedCapacity"] = "INDEXES"
        if not isinstance(context, dict):
            return
        context["bench_label"] = label_of(model.name, params)
        if model.name == "TransactWriteItems":
            context["bench_writes"] = [
                (action, body["TableName"], body.get("Item") or body["Key"])
                for entry in params.get("TransactItems", [])
                for action, body in entry.items()
            ]
        if self.pricing and self.reader is not None and model.name in WRITE_OPERATIONS:
            targets = written_items(model.name, params, self.reader)
            context["bench_images"] = [
                (table, key, self.reader.image(table, key)) for table, key in targets
            ]
        context["bench_t0"] = time.perf_counter()

    def _after(
        self,
        parsed: dict[str, Any],
        model: Any,
        http_response: Any = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        t1 = time.perf_counter()
        if not self.active or not isinstance(context, dict) or "bench_label" not in context:
            return
        label, consistent = context["bench_label"]
        consumed = parse_consumed(model.name, label, consistent, parsed.get("ConsumedCapacity"))
        consumed.ms = (t1 - context.get("bench_t0", t1)) * 1000.0
        ok = http_response is not None and http_response.status_code < 300
        consumed.ok = ok
        consumed.writes = context.get("bench_writes", [])
        if self.pricing and self.reader is not None and "bench_images" in context and ok:
            reader = self.reader
            consumed.items = [
                price_write(reader.spec(table), before, reader.image(table, key))
                for table, key, before in context["bench_images"]
            ]
        with self._lock:
            self.calls.append(consumed)


# ---- how the engine reports transactions ---------------------------------------------------


def probe_transactions(client: Any, table: str) -> dict[str, float]:
    """How the engine reports transactional writes of small (< 1 KB) items, against what
    AWS bills: one PutItem (1), a one-put transaction (2), a three-put transaction (6)."""
    probe = f"BENCHPROBE#{uuid.uuid4().hex}"
    items = [
        {"pk": {"S": f"{probe}#{n}"}, "sk": {"S": "probe"}, "expires_at": {"N": "1"}}
        for n in range(5)
    ]

    def units(response: dict[str, Any]) -> float:
        consumed = response["ConsumedCapacity"]
        entries = consumed if isinstance(consumed, list) else [consumed]
        return sum(float(c["CapacityUnits"]) for c in entries)

    plain = client.put_item(TableName=table, Item=items[0], ReturnConsumedCapacity="TOTAL")
    one = client.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": items[1]}}],
        ReturnConsumedCapacity="TOTAL",
    )
    three = client.transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": item}} for item in items[2:]],
        ReturnConsumedCapacity="TOTAL",
    )
    for item in items:
        client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
    return {
        "put_item": units(plain),
        "transaction_1_put": units(one),
        "transaction_3_puts": units(three),
    }
