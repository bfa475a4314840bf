"""Pieces the expiry and tiers sections share: the app's member-id format from a seeded
generator, the template's tables on DynamoDB Local, populating the Members table, and
the botocore meter that records every DynamoDB call's ConsumedCapacity."""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

BATCH = 25  # BatchWriteItem's limit
POPULATE_THREADS = 3  # DynamoDB Local (2 cores) takes ~1,500 items/s this way; also scans
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})

Item = dict[str, Any]


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


# ---- metering ---------------------------------------------------------------------------------


@dataclass
class Call:
    operation: str
    label: str  # `bench.ddbunits.label_of`: the table and key prefix the call touched
    table_units: float  # as DynamoDB Local reported them
    index_units: float
    ok: bool
    # TransactWriteItems: (action, table, Key for Update/Delete/ConditionCheck, Item for Put)
    items: list[tuple[str, str, Item]]

    @property
    def reported(self) -> float:
        return self.table_units + self.index_units


class Meter:
    """While installed, every DynamoDB client botocore creates (pynamodb's and boto3's) is
    hooked; calls are recorded only while `active`. Clients created before `install`
    (the populate/verify client) are never metered."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.active = False
        self._original: Any = None
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()  # the app drops old ones

    def install(self) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        self._original = original
        meter = self

        def create_client(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            client = original(session, service_name, *args, **kwargs)
            if service_name == "dynamodb":
                client.meta.events.register("before-parameter-build.dynamodb.*", meter._before)
                client.meta.events.register("after-call.dynamodb.*", meter._after)
                meter._clients.add(client)
            return client

        setattr(botocore.session.Session, "create_client", create_client)  # noqa: B010

    def uninstall(self) -> None:
        import botocore.session

        if self._original is not None:
            setattr(botocore.session.Session, "create_client", self._original)  # noqa: B010
            self._original = None
        for client in self._clients:
            client.meta.events.unregister("before-parameter-build.dynamodb.*", self._before)
            client.meta.events.unregister("after-call.dynamodb.*", self._after)
        self._clients.clear()

    def _before(self, params: dict[str, Any], model: Any, context: Any = None, **_: Any) -> None:
        if not self.active:
            return
        shape = model.input_shape
        if shape is not None and "ReturnConsumedCapacity" in shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        if not isinstance(context, dict):
            return
        from bench.ddbunits import label_of

        items: list[tuple[str, str, Item]] = []
        if model.name == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                ((action, body),) = entry.items()
                items.append((action, body["TableName"], body.get("Item") or body["Key"]))
        context["bench_meter"] = (label_of(model.name, params)[0], items)

    def _after(
        self,
        parsed: dict[str, Any],
        model: Any,
        http_response: Any = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        if not self.active or not isinstance(context, dict) or "bench_meter" not in context:
            return
        label, items = context["bench_meter"]
        raw = parsed.get("ConsumedCapacity") or []
        table_units = index_units = 0.0
        for entry in raw if isinstance(raw, list) else [raw]:
            indexes = entry.get("GlobalSecondaryIndexes", {}) | entry.get(
                "LocalSecondaryIndexes", {}
            )
            table = entry.get("Table", {}).get("CapacityUnits")
            if table is None and not indexes:
                table = entry.get("CapacityUnits", 0.0)
            table_units += float(table or 0.0)
            index_units += sum(float(v.get("CapacityUnits", 0.0)) for v in indexes.values())
        ok = http_response is not None and http_response.status_code < 300
        self.calls.append(Call(model.name, label, table_units, index_units, ok, items))

    @contextmanager
    def recording(self) -> Iterator[list[Call]]:
        """Record the calls made inside the block; yields the list they are added to."""
        self.calls.clear()
        taken: list[Call] = []
        self.active = True
        try:
            yield taken
        finally:
            self.active = False
            taken.extend(self.calls)
            self.calls.clear()
