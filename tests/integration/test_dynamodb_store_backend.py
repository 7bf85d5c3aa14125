"""The dynamodb store on DynamoDB Local, in process, with a clock the tests move.

DynamoDB deletes expired items late (DynamoDB Local within seconds, AWS within days), so
every read compares the item's expiry with the clock. Here the backend's clock runs ahead of
the real one: the items it considers expired are still in the table (their ``expires`` is in
DynamoDB's future), and the tests show them there and hidden from every read. No sleeps.

Also shown: the calls a namespace listing makes (about ``offset + limit``, not one per
namespace stored), the exact vector search's bound, and the vector index's requests (table
definition and ``SearchVectors``) checked against botocore's model, since DynamoDB Local
has no vector index.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.sidecar.backends.dynamodb import store_schema
from agentpersistence.sidecar.backends.dynamodb.store import DynamoDBStoreBackend
from agentpersistence.sidecar.settings import (
    ConfigError,
    DynamoDBStoreSettings,
    IndexSettings,
    parse_config,
)
from rig.dynamodb import AwsEndpoints

TTL = 60.0


class Clock:
    """The backend's clock: the real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.start = time.time()
        self.offset = 0.0

    def __call__(self) -> float:
        return self.start + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def open_backend(
    clock: Clock, index: IndexSettings | None = None, **settings: Any
) -> DynamoDBStoreBackend:
    config = DynamoDBStoreSettings(table_name=f"ap-store-{uuid.uuid4().hex[:8]}", **settings)
    backend = DynamoDBStoreBackend(config, index, clock)
    await backend.start()
    await backend.provision()
    return backend


@pytest.fixture
async def store(aws_env: AwsEndpoints, clock: Clock) -> AsyncIterator[DynamoDBStoreBackend]:
    backend = await open_backend(clock, IndexSettings(dims=2))
    yield backend
    await backend.close()


def put(
    ns: list[str], key: str, value: dict[str, Any] | None, ttl: float | None = TTL, **more: Any
) -> m.StoreOp:
    raw = None if value is None else json.dumps(value).encode()
    return m.StoreOp("put", ns, key, raw, ttl_seconds=ttl, **more)


def get(ns: list[str], key: str, refresh: bool = True) -> m.StoreOp:
    return m.StoreOp("get", ns, key, refresh_ttl=refresh)


def search(ns: list[str], refresh: bool = True, **more: Any) -> m.StoreOp:
    return m.StoreOp("search", ns, refresh_ttl=refresh, **more)


def listing(prefix: list[str] | None = None, **more: Any) -> m.StoreOp:
    conditions = [m.NamespaceCondition("prefix", prefix)] if prefix else []
    return m.StoreOp("list_namespaces", conditions=conditions, **more)


async def keys(backend: DynamoDBStoreBackend, op: m.StoreOp) -> list[str]:
    [result] = await backend.batch([op])
    return [item.key for item in result.items or []]


async def present(backend: DynamoDBStoreBackend, ns: list[str], key: str) -> bool:
    [result] = await backend.batch([get(ns, key, refresh=False)])
    return result.item is not None


async def raw_item(backend: DynamoDBStoreBackend, ns: list[str], key: str) -> dict[str, Any]:
    """The item as DynamoDB holds it, whatever its expiry."""
    found = await backend.clients.dynamodb.get_item(
        TableName=backend.table,
        Key={"PK": {"S": store_schema.item_pk(ns)}, "SK": {"S": store_schema.item_sk(key)}},
        ConsistentRead=True,
    )
    return dict(found.get("Item", {}))


# --- TTL ------------------------------------------------------------------------------------


async def test_expired_items_are_hidden_before_dynamodb_deletes_them(
    store: DynamoDBStoreBackend, clock: Clock
) -> None:
    ns = ["ttl", "hidden"]
    await store.batch([put(ns, "short", {"v": 1}), put(ns, "forever", {"v": 2}, ttl=None)])
    clock.offset = TTL + 1
    assert not await present(store, ns, "short")
    assert await keys(store, search(ns)) == ["forever"]
    assert await keys(store, search(["ttl"], filter=b'{"v": 1}')) == []
    await store.batch([put(ns, "forever", {"v": 2}, ttl=None)])
    [listed] = await store.batch([listing(["ttl"])])
    assert listed.namespaces == [ns]
    raw = await raw_item(store, ns, "short")
    assert raw, "DynamoDB has not deleted it (its expires is in the real future)"
    assert int(raw["expires"]["N"]) >= clock.start + TTL
    await store.batch([put(ns, "forever", None)])
    [listed] = await store.batch([listing(["ttl"])])
    assert listed.namespaces == [], "a namespace holding only expired items is not listed"


async def test_reads_refresh_the_ttl_when_asked(store: DynamoDBStoreBackend, clock: Clock) -> None:
    ns = ["ttl", "refresh"]
    await store.batch(
        [
            put(ns, "got", {"v": 1}),
            put(ns, "got-without-refresh", {"v": 2}),
            put(ns, "searched", {"v": 3}),
            put(ns, "untouched", {"v": 4}),
        ]
    )
    clock.offset = TTL * 2 / 3
    await store.batch([get(ns, "got"), get(ns, "got-without-refresh", refresh=False)])
    assert await keys(store, search(ns, filter=b'{"v": 3}')) == ["searched"]
    clock.offset = TTL * 4 / 3
    alive = {k for k in ("got", "got-without-refresh", "searched", "untouched")}
    assert {k for k in alive if await present(store, ns, k)} == {"got", "searched"}
    clock.offset = TTL * 2 + 1
    assert await keys(store, search(ns)) == []


async def test_a_put_over_an_expired_item_starts_it_anew(
    store: DynamoDBStoreBackend, clock: Clock
) -> None:
    ns = ["ttl", "anew"]
    await store.batch([put(ns, "k", {"v": 1})])
    clock.offset = TTL + 1
    await store.batch([put(ns, "k", {"v": 2}, ttl=None)])
    [result] = await store.batch([get(ns, "k")])
    assert result.item is not None
    assert result.item.created_at == pytest.approx(clock(), abs=1e-3)
    raw = await raw_item(store, ns, "k")
    assert "expires" not in raw
    assert "ttl" not in raw


# --- costs ----------------------------------------------------------------------------------


def count_calls(backend: DynamoDBStoreBackend) -> Counter[str]:
    calls: Counter[str] = Counter()

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    backend.clients.dynamodb.meta.events.register("before-call.dynamodb", seen)
    return calls


async def test_a_listing_reads_about_offset_plus_limit_namespaces(
    store: DynamoDBStoreBackend,
) -> None:
    namespaces = [["cost", f"n{i:03d}"] for i in range(60)]
    await store.batch([put(ns, "k", {"v": 1}, ttl=None) for ns in namespaces])
    calls = count_calls(store)
    [listed] = await store.batch([listing(["cost"], limit=5, offset=2)])
    assert listed.namespaces == namespaces[2:7]
    assert calls == {"Query": 1 + 7}, "one registry query, one probe per namespace listed"
    calls.clear()
    await store.batch([get(["cost", "n000"], "k"), get(["cost", "n001"], "k")])
    assert calls == {"BatchGetItem": 1}
    calls.clear()
    await store.batch([put(["cost", "n000"], "k", {"v": 2}, ttl=None)])
    assert calls == {"UpdateItem": 1, "BatchWriteItem": 1}
    calls.clear()
    assert await keys(store, search(["cost", "n000"])) == ["k"]
    assert calls == {"Query": 2}, "the registry, then the namespace"


async def test_empty_namespaces_leave_the_registry(store: DynamoDBStoreBackend) -> None:
    ns = ["gone", "a"]
    await store.batch([put(ns, "k", {"v": 1}, ttl=None)])
    await store.batch([put(ns, "k", None)])
    [listed] = await store.batch([listing(["gone"])])
    assert listed.namespaces == []
    entry = await store.clients.dynamodb.get_item(
        TableName=store.table, Key=store_schema.registry_key(ns), ConsistentRead=True
    )
    assert "Item" not in entry, "the listing dropped the entry of the empty namespace"
    await store.batch([put(ns, "k", {"v": 1}, ttl=None)])
    [listed] = await store.batch([listing(["gone"])])
    assert listed.namespaces == [ns]


# --- vector search ---------------------------------------------------------------------------


async def test_exact_vector_search_is_bounded(aws_env: AwsEndpoints, clock: Clock) -> None:
    backend = await open_backend(clock, IndexSettings(dims=2), max_exact_search=3)
    try:
        ns = ["bound"]
        vectors = [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]
        await backend.batch(
            [
                put(ns, f"k{i}", {"i": i}, ttl=None, vectors=[m.FieldVector("$", v)])
                for i, v in enumerate(vectors)
            ]
        )
        [found] = await backend.batch([search(ns, query_vector=[1.0, 0.1], limit=2)])
        assert [i.key for i in found.items or []] == ["k0", "k2"]
        await backend.batch([put(ns, "k3", {"i": 3}, ttl=None)])
        with pytest.raises(RequestRejected, match="maxExactSearch"):
            await backend.batch([search(ns, query_vector=[1.0, 0.1])])
        with pytest.raises(RequestRejected, match="3 dimensions; the index has 2"):
            await backend.batch([search(ns, query_vector=[1.0, 0.1, 0.0])])
    finally:
        await backend.close()


def validator_for(operation: str) -> Any:
    model = botocore.session.get_session().get_service_model("dynamodb")
    shape = model.operation_model(operation).input_shape
    assert shape is not None

    def validate(params: dict[str, Any]) -> None:
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), report.generate_report()

    return validate


@pytest.mark.parametrize("distance", ["cosine", "l2", "ip"])
def test_the_vector_index_table_matches_botocores_model(distance: str) -> None:
    definition = store_schema.table_definition("ap-store", (384, distance))
    validator_for("CreateTable")(dict(definition))
    [index] = definition["VectorIndexes"]
    assert index["Dimensions"] == 384
    assert index["VectorAttribute"] == {"AttributeName": store_schema.VECTOR}
    assert {"cosine": "COSINE", "l2": "EUCLIDEAN", "ip": "DOT_PRODUCT"}[distance] == index[
        "DistanceFunction"
    ]


@pytest.mark.parametrize("prefix", [[], ["users"], ["users", "u.1", "a b"]])
def test_search_vectors_requests_match_botocores_model(prefix: list[str]) -> None:
    request = store_schema.search_vectors_request("ap-store", prefix, [0.5, -1.0, 2.0], 30)
    validator_for("SearchVectors")(request)
    if prefix:
        low = request["ExpressionAttributeValues"][":lo"]["S"]
        high = request["ExpressionAttributeValues"][":hi"]["S"]
        inside = store_schema.encode_namespace([*prefix, "x"])
        beside = store_schema.encode_namespace([prefix[0] + "x"])
        assert low <= inside < high
        assert not low <= beside < high


async def test_vector_index_search_through_search_vectors(
    aws_env: AwsEndpoints, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index path end to end: DynamoDB Local stores the vector items; its missing
    ``SearchVectors`` is stood in for by a scan of them that validates each request."""
    index = IndexSettings(dims=2, distance="cosine")
    backend = await open_backend(clock, index, vector_index=True)
    validate = validator_for("SearchVectors")
    requests: list[dict[str, Any]] = []

    stored: list[dict[str, Any]] = []

    async def snapshot() -> None:
        """The vector items, read by the test itself (calls made inside the backend's
        ``search_vectors`` would count as the sidecar's, for IAM)."""
        page = await backend.clients.dynamodb.scan(TableName=backend.table)
        stored[:] = [item for item in page["Items"] if "vec" in item]

    async def search_vectors(**request: Any) -> dict[str, Any]:
        validate(request)
        requests.append(request)
        low = request.get("ExpressionAttributeValues", {}).get(":lo", {}).get("S", "")
        high = request.get("ExpressionAttributeValues", {}).get(":hi", {}).get("S", "\U0010ffff")
        query = [float(x["N"]) for x in request["SearchVector"]]
        results = []
        for item in stored:
            if low <= item["nsf"]["S"] < high:
                vector = [float(x["N"]) for x in item["vec"]["L"]]
                dot = sum(a * b for a, b in zip(query, vector, strict=True))
                norms = (sum(a * a for a in query) * sum(b * b for b in vector)) ** 0.5
                keys = {"PK": item["PK"], "SK": item["SK"]}
                results.append({"Item": keys, "Score": 1 - dot / norms})  # COSINE: 1 - cos
        results.sort(key=lambda r: r["Score"])
        return {"SearchResults": results[: request["TopK"]]}

    monkeypatch.setattr(backend.clients.dynamodb, "search_vectors", search_vectors)
    try:
        ns = ["vec", "a"]
        await backend.batch(
            [
                put(ns, "east", {"n": 1}, ttl=None, vectors=[m.FieldVector("$", [1.0, 0.0])]),
                put(
                    ns,
                    "both",
                    {"n": 2},
                    ttl=None,
                    vectors=[m.FieldVector("a", [0.0, 1.0]), m.FieldVector("b", [0.9, 0.1])],
                ),
                put(
                    ["vec", "b"], "other", {"n": 3}, ttl=None, vectors=[m.FieldVector("$", [1, 0])]
                ),
                put(ns, "plain", {"n": 4}, ttl=None),
            ]
        )
        await snapshot()
        [found] = await backend.batch([search(ns, query_vector=[1.0, 0.0], limit=3)])
        assert [(i.key, round(i.score, 4) if i.score else None) for i in found.items or []] == [
            ("east", 1.0),
            ("both", round(0.9 / (0.81 + 0.01) ** 0.5, 4)),
            ("plain", None),
        ]
        # An update with fewer vectors drops the old vector items.
        await backend.batch([put(ns, "both", {"n": 2}, ttl=None, vectors=[])])
        await snapshot()
        assert {i["SK"]["S"] for i in stored} == {
            store_schema.vector_sk("east", 0),
            store_schema.vector_sk("other", 0),
        }
        [found] = await backend.batch([search(ns, query_vector=[1.0, 0.0], filter=b'{"n": 2}')])
        assert [(i.key, i.score) for i in found.items or []] == [("both", None)]
        assert requests[0]["SearchConditionExpression"] == "#ns >= :lo AND #ns < :hi"
    finally:
        await backend.close()


def test_vector_index_needs_an_index_block() -> None:
    config = {
        "store": {"backend": "dynamodb", "dynamodb": {"tableName": "t-1", "vectorIndex": True}}
    }
    with pytest.raises(ConfigError, match="vectorIndex needs an index block"):
        parse_config(config)
