"""The DynamoDB checkpoint backend, called directly (no socket), on DynamoDB Local and moto's S3.

Semantics are checked against the memory backend (the reference) on the same operations;
DynamoDB-specific promises on the table and the bucket themselves, read back with the
backend's own clients: calls per operation (counted with botocore's ``before-call`` event),
items read per lookup, payloads offloaded to S3 with small items left behind, refusals
before any write, TTL attributes and object tags, DynamoDB's batch limits, retry settings and
the error mapping. Each test gets a table of its own and a key prefix of its own in a shared
bucket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import operator
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypedDict

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from langgraph.graph import END, START, StateGraph

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected
from agentpersistence.sidecar.backends import aws as errors
from agentpersistence.sidecar.backends.base import CheckpointBackend
from agentpersistence.sidecar.backends.dynamodb import schema
from agentpersistence.sidecar.backends.dynamodb.checkpoint import DynamoDBCheckpointBackend
from agentpersistence.sidecar.backends.dynamodb.payloads import Item, item_size
from agentpersistence.sidecar.backends.memory.checkpoint import MemoryCheckpointBackend
from agentpersistence.sidecar.inprocess import open_saver
from agentpersistence.sidecar.settings import ConfigError, DynamoDBSettings, parse_config
from rig.checkpoints import canonical, cid, list_all, positions, put_chain, record, write
from rig.dynamodb import AwsEndpoints
from rig.valkey import free_port

BUCKET = "ap-integration"

# --- helpers -----------------------------------------------------------------------------


class Calls:
    """AWS calls made through a backend's clients, counted by botocore's events."""

    def __init__(self, backend: DynamoDBCheckpointBackend) -> None:
        self.ops: list[str] = []
        self.params: list[tuple[str, dict[str, Any]]] = []
        self.items_read = 0
        self.after: Callable[[str, dict[str, Any]], None] | None = None
        clients = [backend.clients.dynamodb]
        if backend.clients.offloading:
            clients.append(backend.clients.s3)  # type: ignore[arg-type]
        for client in clients:
            client.meta.events.register("before-parameter-build", self._params)
            client.meta.events.register("before-call", self._before)
            client.meta.events.register("after-call", self._after)

    def _params(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.params.append((model.name, dict(params)))  # the API call's own parameters

    def _before(self, model: Any, **_: Any) -> None:
        self.ops.append(model.name)

    def _after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "Query":
            self.items_read += int(parsed.get("ScannedCount", 0))
        if self.after is not None:
            self.after(model.name, parsed)

    def reset(self) -> None:
        self.ops.clear()
        self.params.clear()
        self.items_read = 0

    def counts(self) -> Counter[str]:
        return Counter(self.ops)

    async def during(self, call: Awaitable[Any]) -> Counter[str]:
        self.reset()
        await call
        return self.counts()


async def thread_items(backend: DynamoDBCheckpointBackend, thread: str) -> list[Item]:
    """Every item of the thread's partition, straight from the table."""
    found: list[Item] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = await backend.clients.dynamodb.query(
            TableName=backend.settings.table_name,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": schema.thread_pk(thread)}},
            ConsistentRead=True,
            **kwargs,
        )
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


async def table_items(backend: DynamoDBCheckpointBackend) -> list[Item]:
    pages = backend.clients.dynamodb.get_paginator("scan").paginate(
        TableName=backend.settings.table_name, ConsistentRead=True
    )
    return [item async for page in pages for item in page["Items"]]


async def thread_objects(backend: DynamoDBCheckpointBackend, thread: str) -> dict[str, int]:
    """Key → size of every object under the thread's prefix."""
    assert backend.settings.s3_offload is not None
    prefix = schema.thread_prefix(backend.settings.s3_offload.key_prefix, thread)
    page = await backend.clients.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"]: o["Size"] for o in page.get("Contents", [])}


# --- fixtures ----------------------------------------------------------------------------

BackendFactory = Callable[..., Awaitable[DynamoDBCheckpointBackend]]


@pytest.fixture
async def make_backend(aws_env: AwsEndpoints) -> AsyncIterator[BackendFactory]:
    """Started, provisioned backends on a table of this test's own; closed at the end."""
    table = f"ap-it-{uuid.uuid4().hex[:12]}"
    prefix = f"it-{uuid.uuid4().hex[:12]}/"
    opened: list[DynamoDBCheckpointBackend] = []

    async def make(*, bucket: bool = True, **overrides: Any) -> DynamoDBCheckpointBackend:
        settings: dict[str, Any] = {"table_name": table, **overrides}
        if bucket:
            settings.setdefault("s3_offload", {"bucket_name": BUCKET, "key_prefix": prefix})
        backend = DynamoDBCheckpointBackend(DynamoDBSettings.model_validate(settings))
        await backend.start()
        opened.append(backend)
        await backend.provision()
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def backend(make_backend: BackendFactory) -> DynamoDBCheckpointBackend:
    return await make_backend()


# --- semantics: the memory backend is the reference --------------------------------------


async def test_get_tuple_returns_latest_or_named_checkpoint_with_its_writes(
    backend: DynamoDBCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 3)
    await put_chain(backend, "t1", 2, ns="child:1", start=10)
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(2), [write("a", 0, b"w")]))

    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest == dataclasses.replace(record("t1", 2, parent=1), writes=[write("a", 0, b"w")])
    assert await backend.get_tuple(m.GetTupleRequest("t1", "", cid(0))) == record("t1", 0)
    child = await backend.get_tuple(m.GetTupleRequest("t1", "child:1"))
    assert child == record("t1", 11, ns="child:1", parent=10)
    assert await backend.get_tuple(m.GetTupleRequest("nope")) is None
    assert await backend.get_tuple(m.GetTupleRequest("t1", "other")) is None
    assert await backend.get_tuple(m.GetTupleRequest("t1", "", cid(99))) is None


async def test_writes_keep_the_first_copy_unless_idx_is_negative(
    backend: DynamoDBCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 1)
    first = [write("task", 0, b"first"), write("task", 1, b"first-1"), write("t", -1, b"old")]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), first))
    retry = [write("task", 0, b"second"), write("task", 2, b"new"), write("t", -1, b"newer")]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), retry))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("task", 1, b"again")]))

    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert sorted(got.writes, key=lambda w: (w.task_id, w.idx)) == [
        write("t", -1, b"newer"),
        write("task", 0, b"first"),
        write("task", 1, b"first-1"),
        write("task", 2, b"new"),
    ]


async def test_writes_before_their_checkpoint_appear_once_it_is_put(
    backend: DynamoDBCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 1)
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(5), [write("a", 0, b"early")]))
    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest is not None
    assert latest.checkpoint_id == cid(0)

    await backend.put(m.PutRequest(record("t1", 5)))
    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert (got.checkpoint_id, got.writes) == (cid(5), [write("a", 0, b"early")])


async def fill_both(*backends: CheckpointBackend) -> None:
    """The same threads, namespaces, metadata and writes in each backend."""
    for store in backends:
        for thread in ("b", "a", "c d\x00é"):
            for ns in ("", "child:2", "child:1"):
                for i in range(5):
                    meta = {"step": i, "parity": i % 2, "flag": i == 3}
                    rec = record(thread, i, ns=ns, metadata=meta)
                    await store.put(m.PutRequest(rec, run_id=f"run-{i % 3}"))
            writes = [write("x", 0, b"1"), write("x", -3, b"2")]
            await store.put_writes(m.PutWritesRequest(thread, "", cid(4), writes))
            await store.put_writes(m.PutWritesRequest(thread, "child:1", cid(2), writes))


LIST_REQUESTS = [
    m.ListRequest(),
    m.ListRequest(limit=1),
    m.ListRequest(limit=4),
    m.ListRequest(thread_id="a", limit=3),
    m.ListRequest(thread_id="missing"),
    m.ListRequest(thread_id="c d\x00é", checkpoint_ns="child:1", limit=2),
    m.ListRequest(checkpoint_ns="child:2", limit=1000),
    m.ListRequest(thread_id="b", checkpoint_id=cid(4)),
    m.ListRequest(checkpoint_id=cid(2), limit=2),
    m.ListRequest(thread_id="b", before_id=cid(3), limit=2),
    m.ListRequest(thread_id="b", checkpoint_ns="", before_id=""),
    m.ListRequest(before_id=cid(2), checkpoint_ns="child:1"),
    m.ListRequest(filter=b'{"parity": 1}', limit=3),
    m.ListRequest(thread_id="a", before_id=cid(4), filter=b'{"parity": 0}', limit=1),
]


async def test_list_pages_like_the_memory_backend(backend: DynamoDBCheckpointBackend) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(backend, reference)

    for request in LIST_REQUESTS:
        expected = await list_all(reference, request)
        got = await list_all(backend, request)
        assert positions(got) == positions(expected), request
        assert canonical(got) == canonical(expected), request

    first = m.ListRequest(limit=7)
    assert (await backend.list(first)).cursor == (await reference.list(first)).cursor


async def test_deletes_copies_and_prunes_like_the_memory_backend(
    backend: DynamoDBCheckpointBackend,
) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(backend, reference)
    for store in (backend, reference):
        await store.delete_for_runs(["run-1"])
        await store.copy_thread("a", "a2")
        await store.prune(["b"], "keep_latest")
        await store.delete_thread("c d\x00é")

    expected = await list_all(reference, m.ListRequest())
    got = await list_all(backend, m.ListRequest())
    assert positions(got) == positions(expected)
    assert canonical(got) == canonical(expected)


async def test_rejects_bad_list_requests_and_keys_dynamodb_cannot_hold(
    backend: DynamoDBCheckpointBackend,
) -> None:
    with pytest.raises(RequestRejected):
        await backend.list(m.ListRequest(limit=0))
    with pytest.raises(RequestRejected):
        await backend.list(m.ListRequest(cursor=b"not a cursor"))
    with pytest.raises(RequestRejected, match=r"thread id .* is too long"):
        await backend.put(m.PutRequest(record("t" * 1100, 1)))


def test_sort_keys_keep_the_listing_order() -> None:
    ids = ["", "a", "a b", "a!", "a\x00", "a\x01z", "ab", "b", "é", "z" * 5]
    namespaces = ["", "child:1", "child:1|x:2", "child:10", "c", "é"]
    keys = [(ns, i) for ns in namespaces for i in ids]
    by_sk = sorted(keys, key=lambda k: schema.checkpoint_sk(*k), reverse=True)
    assert by_sk == sorted(keys, key=lambda k: (k[0], [-ord(c) for c in k[1]] + [1]))
    for ns, i in keys:
        write_key = schema.ItemKey(schema.write_sk(ns, i, "task x", -3))
        assert (write_key.group, write_key.write) == ((ns, i), ("task x", -3))
        assert schema.checkpoint_sk(ns, i) < schema.write_sk(ns, i, "t", 0)
        assert schema.write_sk(ns, i, "t", 0) < schema.group_upper(ns, i)


# --- calls per operation -----------------------------------------------------------------


async def test_put_and_put_writes_are_one_write_call_each(
    backend: DynamoDBCheckpointBackend,
) -> None:
    calls = Calls(backend)

    assert await calls.during(backend.put(m.PutRequest(record("t1", 1), "run"))) == {
        "TransactWriteItems": 1
    }
    one = m.PutWritesRequest("t1", "", cid(1), [write("a", 0, b"x")])
    assert await calls.during(backend.put_writes(one)) == {"PutItem": 1}
    several = m.PutWritesRequest("t1", "", cid(1), [write("b", i, b"x") for i in range(5)])
    assert await calls.during(backend.put_writes(several)) == {"TransactWriteItems": 1}


async def test_get_tuple_latest_is_one_query(backend: DynamoDBCheckpointBackend) -> None:
    await put_chain(backend, "t1", 5)
    writes = [write("task", i, b"w%d" % i) for i in range(3)]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(4), writes))
    calls = Calls(backend)

    calls.reset()
    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert calls.counts() == {"Query": 1}
    assert calls.items_read == 1 + 3  # the checkpoint and its writes, nothing else
    assert len(got.writes) == 3

    calls.reset()
    await backend.get_tuple(m.GetTupleRequest("t1", "", cid(2)))
    assert (calls.counts(), calls.items_read) == ({"Query": 1}, 1)


async def test_a_new_sidecar_finds_the_latest_in_at_most_two_queries(
    make_backend: BackendFactory,
) -> None:
    writer = await make_backend()
    await put_chain(writer, "plain", 4)
    await put_chain(writer, "written", 4)
    await writer.put_writes(m.PutWritesRequest("written", "", cid(3), [write("a", 0, b"x")]))
    reader = await make_backend()  # knows nothing of these threads
    calls = Calls(reader)

    assert await calls.during(reader.get_tuple(m.GetTupleRequest("plain"))) == {"Query": 1}
    assert calls.items_read == 1
    assert await calls.during(reader.get_tuple(m.GetTupleRequest("written"))) == {"Query": 2}
    assert await calls.during(reader.get_tuple(m.GetTupleRequest("written"))) == {"Query": 1}


async def test_latest_lookup_cost_is_independent_of_thread_length(
    make_backend: BackendFactory,
) -> None:
    writer = await make_backend()
    for thread, length in (("short", 3), ("long", 150)):
        for i in range(length):
            await writer.put(m.PutRequest(record(thread, i)))
            await writer.put_writes(
                m.PutWritesRequest(thread, "", cid(i), [write("a", 0, b"x"), write("b", 0, b"y")])
            )
    costs = []
    for reader in (writer, await make_backend()):  # with and without a hint
        calls = Calls(reader)
        for thread in ("short", "long"):
            calls.reset()
            await reader.get_tuple(m.GetTupleRequest(thread))
            costs.append((len(calls.ops), calls.items_read))
    assert costs[0] == costs[1] == (1, 3)
    assert costs[2] == costs[3]


async def test_list_limit_k_reads_about_k_checkpoints(backend: DynamoDBCheckpointBackend) -> None:
    await put_chain(backend, "t1", 120)
    calls = Calls(backend)
    for k in (1, 5, 20):
        calls.reset()
        page = await backend.list(m.ListRequest(thread_id="t1", limit=k))
        assert len(page.records) == k
        assert page.cursor is not None
        assert calls.counts() == {"Query": 1}
        assert calls.items_read <= 2 * k + 2


async def test_a_sparse_filter_pages_through_candidates_in_few_calls(
    backend: DynamoDBCheckpointBackend,
) -> None:
    for i in range(400):
        meta = {"rare": i % 150 == 0, "step": i}
        await backend.put(m.PutRequest(record("t1", i, metadata=meta)))
    calls = Calls(backend)

    request = m.ListRequest(thread_id="t1", filter=b'{"rare": true}', limit=2)
    found = await list_all(backend, request)

    assert [r.checkpoint_id for r in found] == [cid(i) for i in (300, 150, 0)]
    assert calls.counts()["Query"] <= 14  # pages double: not one call per 2k + 2 items


# --- payloads: compression, S3 offload, refusals -----------------------------------------


class Blobs(TypedDict):
    blobs: Annotated[list[bytes], operator.add]


def growing_graph(chunk: int, steps: int) -> Any:
    """A graph adding ``chunk`` random bytes to its state per step, ``steps`` times."""

    def grow(state: Blobs) -> Blobs:
        return {"blobs": [os.urandom(chunk)]}

    def again(state: Blobs) -> str:
        return "grow" if len(state["blobs"]) < steps else END

    builder = StateGraph(Blobs)
    builder.add_node("grow", grow)
    builder.add_edge(START, "grow")
    builder.add_conditional_edges("grow", again, ["grow", END])
    return builder


def sidecar_config(backend: DynamoDBCheckpointBackend) -> dict[str, Any]:
    block = backend.settings.model_dump(by_alias=True, exclude_none=True)
    return {"checkpointer": {"backend": "dynamodb", "dynamodb": block}}


async def test_state_past_2_mib_goes_to_s3_and_leaves_a_small_item(
    backend: DynamoDBCheckpointBackend,
) -> None:
    thread = f"big-{uuid.uuid4()}"
    config: Any = {"configurable": {"thread_id": thread}}
    saver = open_saver(sidecar_config(backend))
    try:
        graph = growing_graph(300 * 1024, steps=8).compile(checkpointer=saver)
        await graph.ainvoke({"blobs": []}, config)
    finally:
        saver.close()

    items = await thread_items(backend, thread)
    latest = max((i for i in items if i[schema.KIND]["S"] == "c"), key=lambda i: i[schema.SK]["S"])
    assert schema.OBJECT in latest
    assert schema.PAYLOAD not in latest
    assert item_size(latest) < 2048
    objects = await thread_objects(backend, thread)
    assert objects[latest[schema.OBJECT]["S"]] > 2 * 1024 * 1024
    assert all(item_size(i) < 360 * 1024 for i in items)

    reader = open_saver(sidecar_config(backend))
    try:
        state = growing_graph(1, steps=8).compile(checkpointer=reader).get_state(config)
    finally:
        reader.close()
    assert len(state.values["blobs"]) == 8
    assert sum(len(b) for b in state.values["blobs"]) == 8 * 300 * 1024


async def test_without_a_bucket_a_too_large_payload_is_refused_before_any_write(
    make_backend: BackendFactory,
) -> None:
    backend = await make_backend(bucket=False)
    big = os.urandom(500 * 1024)
    calls = Calls(backend)

    with pytest.raises(RequestRejected, match=r"dynamodb\.s3Offload\.bucketName") as info:
        await backend.put(m.PutRequest(record("t1", 1, blob=big)))
    assert big[:16].hex() not in str(info.value)
    assert await thread_items(backend, "t1") == []

    await backend.put(m.PutRequest(record("t1", 2)))
    calls.reset()
    writes = [write("a", 0, b"small"), write("a", 1, big), write("a", 2, b"small")]
    with pytest.raises(RequestRejected, match="s3Offload"):
        await backend.put_writes(m.PutWritesRequest("t1", "", cid(2), writes))
    assert [i[schema.KIND]["S"] for i in await thread_items(backend, "t1")] == ["c"]
    assert "PutItem" not in calls.ops
    assert "TransactWriteItems" not in calls.ops


async def test_a_graph_without_a_bucket_fails_clearly_and_stores_no_large_write(
    make_backend: BackendFactory,
) -> None:
    backend = await make_backend(bucket=False)
    thread = f"no-bucket-{uuid.uuid4()}"
    saver = open_saver(sidecar_config(backend))
    try:
        graph = growing_graph(500 * 1024, steps=1).compile(checkpointer=saver)
        with pytest.raises(RequestRejected, match=r"s3Offload\.bucketName"):
            await graph.ainvoke({"blobs": []}, {"configurable": {"thread_id": thread}})
    finally:
        saver.close()
    items = await thread_items(backend, thread)
    assert items  # the checkpoints before the large write
    assert all(item_size(i) < 4096 for i in items)  # and none of it


async def test_offloaded_payloads_round_trip_and_cost_one_get_each(
    backend: DynamoDBCheckpointBackend,
) -> None:
    big, big_write = os.urandom(400 * 1024), os.urandom(360 * 1024)
    calls = Calls(backend)
    put = await calls.during(backend.put(m.PutRequest(record("t1", 1, blob=big))))
    assert put == {"PutObject": 1, "TransactWriteItems": 1}
    writes = [write("a", 0, big_write), write("a", 1, b"small")]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), writes))

    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert calls.counts() - Counter({"PutObject": 2, "TransactWriteItems": 1}) == Counter(
        {"TransactWriteItems": 1, "Query": 1, "GetObject": 2}
    )
    assert got.checkpoint == big
    assert sorted(got.writes, key=lambda w: w.idx) == writes


async def test_compression_is_recorded_per_item_and_kept_only_when_it_saves(
    backend: DynamoDBCheckpointBackend,
) -> None:
    compressible, random = b"abc" * 5000, os.urandom(15000)
    await backend.put(m.PutRequest(record("t1", 1, blob=compressible)))
    await backend.put(m.PutRequest(record("t1", 2, blob=random)))
    await backend.put(m.PutRequest(record("t1", 3, blob=b"tiny")))

    by_id = {
        schema.ItemKey(i[schema.SK]["S"]).checkpoint_id: i
        for i in await thread_items(backend, "t1")
        if schema.KIND in i
    }
    assert by_id[cid(1)][schema.ENCODING] == {"S": "gzip"}
    assert len(by_id[cid(1)][schema.PAYLOAD]["B"]) < len(compressible) // 10
    assert schema.ENCODING not in by_id[cid(2)]
    assert schema.ENCODING not in by_id[cid(3)]
    for i, blob in ((1, compressible), (2, random), (3, b"tiny")):
        got = await backend.get_tuple(m.GetTupleRequest("t1", "", cid(i)))
        assert got is not None
        assert got.checkpoint == blob


# --- TTL, deletes, copies ----------------------------------------------------------------


async def test_ttl_attribute_on_every_item_and_objects_tagged_for_expiry(
    make_backend: BackendFactory,
) -> None:
    backend = await make_backend(ttl_seconds=3600)
    before = int(time.time())
    await backend.put(m.PutRequest(record("t1", 1, blob=os.urandom(380 * 1024)), "run-1"))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), [write("a", 0, b"x")]))
    await backend.copy_thread("t1", "t2")

    items = await table_items(backend)
    assert len(items) == 2 * 4  # per thread: checkpoint, write, registry entry, run entry
    for item in items:
        assert before + 3600 <= int(item[schema.EXPIRES]["N"]) <= time.time() + 3600
    for thread in ("t1", "t2"):
        [key] = await thread_objects(backend, thread)
        tags = await backend.clients.s3.get_object_tagging(Bucket=BUCKET, Key=key)
        assert tags["TagSet"] == [{"Key": "agentpersistence-expiry", "Value": "1d"}]
    lifecycle = await backend.clients.s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)
    assert {
        "ID": "agentpersistence-expiry-1d",
        "Filter": {"Tag": {"Key": "agentpersistence-expiry", "Value": "1d"}},
        "Status": "Enabled",
        "Expiration": {"Days": 1},
    } in lifecycle["Rules"]


async def test_no_ttl_attribute_unless_configured(backend: DynamoDBCheckpointBackend) -> None:
    await backend.put(m.PutRequest(record("t1", 1), "run-1"))
    assert all(schema.EXPIRES not in item for item in await table_items(backend))


async def test_expired_items_drop_out_of_reads(make_backend: BackendFactory) -> None:
    backend = await make_backend(ttl_seconds=1)
    await put_chain(backend, "t1", 2)
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), [write("a", 0, b"x")]))
    await asyncio.sleep(1.1)  # DynamoDB deletes expired items late: reads must skip them meanwhile
    assert await backend.get_tuple(m.GetTupleRequest("t1")) is None
    assert (await backend.list(m.ListRequest())).records == []


async def test_delete_thread_leaves_no_item_and_no_object(
    backend: DynamoDBCheckpointBackend,
) -> None:
    for thread in ("doomed", "kept"):
        await backend.put(m.PutRequest(record(thread, 1, blob=os.urandom(370 * 1024)), "r1"))
        await backend.put(m.PutRequest(record(thread, 2, ns="child:1"), "r2"))
        writes = [write("a", 0, os.urandom(370 * 1024)), write("a", 1, b"x")]
        await backend.put_writes(m.PutWritesRequest(thread, "", cid(1), writes))
    assert len(await thread_objects(backend, "doomed")) == 2

    await backend.delete_thread("doomed")

    assert await thread_items(backend, "doomed") == []
    assert await thread_objects(backend, "doomed") == {}
    remaining = await table_items(backend)
    assert all("doomed" not in json.dumps(item, default=repr) for item in remaining)
    assert len(await thread_objects(backend, "kept")) == 2
    kept = await backend.get_tuple(m.GetTupleRequest("kept"))
    assert kept is not None
    assert len(kept.writes) == 2


async def test_a_delete_of_more_than_25_items_goes_in_batches(
    backend: DynamoDBCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 30, run_id="r")  # 30 checkpoints, 30 run entries, registry
    calls = Calls(backend)

    await backend.delete_thread("t1")

    batches = [p for op, p in calls.params if op == "BatchWriteItem"]
    sizes = sorted(len(p["RequestItems"][backend.settings.table_name]) for p in batches)
    assert sizes == [11, 25, 25]
    assert await table_items(backend) == []


async def test_unprocessed_items_are_sent_again(backend: DynamoDBCheckpointBackend) -> None:
    await backend.put(m.PutRequest(record("t1", 1)))
    calls = Calls(backend)
    table = backend.settings.table_name

    def leave_one_unprocessed(op: str, parsed: dict[str, Any]) -> None:
        if op == "BatchWriteItem" and calls.ops.count("BatchWriteItem") == 1:
            sent = calls.params[-1][1]["RequestItems"][table]
            parsed["UnprocessedItems"] = {table: sent[:1]}

    calls.after = leave_one_unprocessed
    await backend.delete_thread("t1")  # the checkpoint and the thread's registry entry

    batches = [p["RequestItems"][table] for op, p in calls.params if op == "BatchWriteItem"]
    assert [len(batch) for batch in batches] == [2, 1]
    assert await table_items(backend) == []


async def test_delete_for_runs_and_prune_remove_objects_too(
    backend: DynamoDBCheckpointBackend,
) -> None:
    for i in range(3):
        blob = os.urandom(370 * 1024)
        await backend.put(m.PutRequest(record("t1", i, blob=blob), f"run-{i}"))
    assert len(await thread_objects(backend, "t1")) == 3

    await backend.delete_for_runs(["run-0"])
    assert len(await thread_objects(backend, "t1")) == 2
    await backend.prune(["t1"], "keep_latest")
    assert len(await thread_objects(backend, "t1")) == 1
    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest is not None
    assert latest.checkpoint_id == cid(2)
    assert len(await thread_items(backend, "t1")) == 1


async def test_a_copy_has_objects_of_its_own(backend: DynamoDBCheckpointBackend) -> None:
    blob = os.urandom(370 * 1024)
    await backend.put(m.PutRequest(record("src", 1, blob=blob)))

    await backend.copy_thread("src", "dst")
    await backend.delete_thread("src")

    copy = await backend.get_tuple(m.GetTupleRequest("dst"))
    assert copy is not None
    assert copy.checkpoint == blob
    assert len(await thread_objects(backend, "dst")) == 1


# --- provisioning, retries, errors -------------------------------------------------------


async def test_provision_creates_the_table_and_bucket_as_defined(
    backend: DynamoDBCheckpointBackend,
) -> None:
    await backend.provision()  # again: idempotent
    dynamodb, s3 = backend.clients.dynamodb, backend.clients.s3
    table = (await dynamodb.describe_table(TableName=backend.settings.table_name))["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    assert table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"
    ttl = await dynamodb.describe_time_to_live(TableName=backend.settings.table_name)
    assert ttl["TimeToLiveDescription"].get("AttributeName") == "expires"
    block = await s3.get_public_access_block(Bucket=BUCKET)
    assert all(block["PublicAccessBlockConfiguration"].values())
    encryption = await s3.get_bucket_encryption(Bucket=BUCKET)
    rules = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0].get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") == "AES256"
    assert (await backend.health()).ok


async def test_provision_keeps_the_encryption_an_adopted_bucket_has(
    backend: DynamoDBCheckpointBackend,
) -> None:
    s3 = backend.clients.s3
    kms: Any = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": "arn:aws:kms:us-east-1:111122223333:key/example",
                }
            }
        ]
    }
    await s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration=kms)
    try:
        await backend.provision()
        got = await s3.get_bucket_encryption(Bucket=BUCKET)
        default = got["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert (
            default.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") == "aws:kms"
        )
    finally:
        await s3.delete_bucket_encryption(Bucket=BUCKET)
        await backend.provision()  # back to the default for the tests that follow


async def test_retries_are_botocores_adaptive_mode(backend: DynamoDBCheckpointBackend) -> None:
    for client in (backend.clients.dynamodb, backend.clients.s3):
        retries = client.meta.config.retries  # type: ignore[attr-defined]
        assert retries == {"mode": "adaptive", "total_max_attempts": 8}


async def test_a_missing_table_makes_the_backend_unready_with_a_hint(
    aws_env: AwsEndpoints,
) -> None:
    backend = DynamoDBCheckpointBackend(DynamoDBSettings(table_name="never-created"))
    await backend.start()
    try:
        health = await backend.health()
        assert not health.ok
        assert "--provision" in health.message
        with pytest.raises(BackendUnavailable, match="never-created does not exist"):
            await backend.get_tuple(m.GetTupleRequest("t1"))
    finally:
        await backend.close()


async def test_an_unreachable_endpoint_is_backend_unavailable(
    aws_env: AwsEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")
    settings = DynamoDBSettings(table_name="anything", max_attempts=1, connect_timeout_seconds=1)
    backend = DynamoDBCheckpointBackend(settings)
    await backend.start()
    try:
        with pytest.raises(BackendUnavailable, match="DynamoDB table anything is unreachable"):
            await backend.put(m.PutRequest(record("t1", 1)))
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ProvisionedThroughputExceededException", 400, BackendUnavailable),
        ("ThrottlingException", 400, BackendUnavailable),
        ("InternalServerError", 500, BackendUnavailable),
        ("ResourceNotFoundException", 400, BackendUnavailable),
        ("UnrecognizedClientException", 400, BackendUnavailable),
        ("ValidationException", 400, RequestRejected),
    ],
)
def test_the_one_error_mapping(code: str, status: int, expected: type[Exception]) -> None:
    response: Any = {
        "Error": {"Code": code, "Message": "something went wrong"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    exc = ClientError(response, "Query")
    translated = errors.translate(exc, "DynamoDB table t")
    assert type(translated) is expected
    assert code in translated.message
    unreachable = errors.translate(EndpointConnectionError(endpoint_url="http://x"), "S3 bucket b")
    assert isinstance(unreachable, BackendUnavailable)


def test_the_config_block_is_camel_case_like_the_resource() -> None:
    config = parse_config(
        {
            "checkpointer": {
                "backend": "dynamodb",
                "dynamodb": {
                    "tableName": "checkpoints",
                    "s3Offload": {"bucketName": "payloads", "thresholdBytes": 100_000},
                    "compression": {"thresholdBytes": 512},
                    "ttlSeconds": 86400,
                },
            }
        }
    )
    assert config.checkpointer is not None
    settings = config.checkpointer.dynamodb
    assert settings is not None
    assert settings.s3_offload is not None
    assert (settings.table_name, settings.s3_offload.threshold_bytes) == ("checkpoints", 100_000)
    assert (settings.compression.threshold_bytes, settings.ttl_seconds) == (512, 86400)
    with pytest.raises(ConfigError, match="needs a 'dynamodb' block"):
        parse_config({"checkpointer": {"backend": "dynamodb"}})
    with pytest.raises(ConfigError, match="tableName"):
        parse_config({"checkpointer": {"backend": "dynamodb", "dynamodb": {"tableName": "x"}}})
