"""The DynamoDB checkpointer's writes are all or nothing, and leave no orphaned S3 object.

On DynamoDB Local and moto's S3, the backend called directly. Failures are refusals of the
real server: a botocore ``before-parameter-build`` hook corrupts the condition expression of
the N-th ``TransactWriteItems`` (or ``PutItem``) call, and DynamoDB Local answers
``ValidationException``. An interrupted write (the sidecar dying between two calls) is a hook
raising before the call is sent: nothing is cleaned up then, as after a crash, and the
sweep removes what is left.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.sidecar.backends.dynamodb import records, schema
from agentpersistence.sidecar.backends.dynamodb.checkpoint import DynamoDBCheckpointBackend
from agentpersistence.sidecar.backends.dynamodb.payloads import Item
from agentpersistence.sidecar.settings import DynamoDBSettings
from rig.checkpoints import cid, record, write
from rig.dynamodb import AwsEndpoints

pytestmark = pytest.mark.filterwarnings(
    # aiohttp warns of request bodies over 1 MiB sent as bytes, as aiobotocore sends a
    # transaction of up to 4 MB; Python ignores ResourceWarning unless asked not to.
    "ignore:Sending a large body directly:ResourceWarning"
)

BUCKET = "ap-faults-atomic"
OFFLOAD_ABOVE = 40 * 1024
SMALL, LARGE = 30 * 1024, 48 * 1024
"""Sizes of a write kept in its item and of one offloaded to S3 (above OFFLOAD_ABOVE)."""

Factory = Callable[[], Awaitable[DynamoDBCheckpointBackend]]


class Crash(Exception):
    """Stands for the sidecar dying before a call reaches DynamoDB."""


class Faults:
    """Counts a backend's DynamoDB calls and spoils chosen ones on their way to the server."""

    def __init__(self, backend: DynamoDBCheckpointBackend) -> None:
        self.ops: list[str] = []
        self.refuse: tuple[str, int] | None = None
        """(operation, n): DynamoDB refuses the n-th such call (a corrupt condition)."""
        self.crash: tuple[str, int] | None = None
        """(operation, n): the n-th such call is never sent."""
        events = backend.clients.dynamodb.meta.events
        events.register("before-parameter-build.dynamodb", self._spoil)

    def _spoil(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops.append(model.name)
        nth = (model.name, self.ops.count(model.name))
        if nth == self.crash:
            raise Crash(model.name)
        if nth == self.refuse:
            target = params["TransactItems"][0]["Put"] if "TransactItems" in params else params
            target["ConditionExpression"] = "attribute_not_exists("  # a syntax error
            target.setdefault("ExpressionAttributeNames", {"#sk": schema.SK})

    def counts(self) -> Counter[str]:
        return Counter(self.ops)


@pytest.fixture
async def make_backend(aws_env: AwsEndpoints) -> AsyncIterator[Factory]:
    """Started, provisioned backends on a table and key prefix of this test's own."""
    table, prefix = f"ap-atomic-{uuid.uuid4().hex[:12]}", f"atomic-{uuid.uuid4().hex[:8]}/"
    opened: list[DynamoDBCheckpointBackend] = []

    async def make() -> DynamoDBCheckpointBackend:
        offload = {"bucket_name": BUCKET, "key_prefix": prefix, "threshold_bytes": OFFLOAD_ABOVE}
        settings = DynamoDBSettings.model_validate({"table_name": table, "s3_offload": offload})
        backend = DynamoDBCheckpointBackend(settings)
        await backend.start()
        opened.append(backend)
        await backend.provision()
        return backend

    yield make
    for backend in opened:
        await backend.close()


async def thread_items(backend: DynamoDBCheckpointBackend, thread: str) -> list[Item]:
    pages = backend.clients.dynamodb.get_paginator("query").paginate(
        TableName=backend.settings.table_name,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": schema.thread_pk(thread)}},
        ConsistentRead=True,
    )
    return [item async for page in pages for item in page["Items"]]


async def thread_objects(backend: DynamoDBCheckpointBackend, thread: str) -> set[str]:
    assert backend.settings.s3_offload is not None
    prefix = schema.thread_prefix(backend.settings.s3_offload.key_prefix, thread)
    pages = backend.clients.s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=prefix
    )
    return {obj["Key"] async for page in pages for obj in page.get("Contents", [])}


def big_batch(thread: str, item_bytes: int = SMALL) -> m.PutWritesRequest:
    """150 writes, the last 3 offloaded to S3: two transactions (and 4.4 MB in items)."""
    writes = [write("task", i, os.urandom(item_bytes)) for i in range(147)]
    writes += [write("task", i, os.urandom(LARGE)) for i in range(147, 150)]
    return m.PutWritesRequest(thread, "", cid(1), writes)


def by_idx(writes: list[m.PendingWrite]) -> list[m.PendingWrite]:
    return sorted(writes, key=lambda w: w.idx)


async def latest(backend: DynamoDBCheckpointBackend, thread: str) -> m.CheckpointRecord:
    got = await backend.get_tuple(m.GetTupleRequest(thread))
    assert got is not None
    return got


# --- all or nothing --------------------------------------------------------------------------


async def test_a_batch_whose_last_transaction_is_refused_stores_nothing_and_a_retry_all(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    await backend.put(m.PutRequest(record("t", 1)))
    batch = big_batch("t")
    faults = Faults(backend)
    faults.refuse = ("TransactWriteItems", 2)

    with pytest.raises(RequestRejected, match="ValidationException"):
        await backend.put_writes(batch)

    assert faults.counts()["TransactWriteItems"] == 2  # the first one was stored
    assert (await latest(backend, "t")).writes == []
    assert [i[schema.KIND]["S"] for i in await thread_items(backend, "t")] == ["c"]
    assert await thread_objects(backend, "t") == set()

    faults.refuse = None
    await backend.put_writes(batch)
    got = await latest(backend, "t")
    assert by_idx(got.writes) == batch.writes
    assert len(await thread_objects(backend, "t")) == 3


async def test_an_interrupted_batch_stays_invisible_until_the_sweep_removes_it(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    await backend.put(m.PutRequest(record("t", 1)))
    batch = big_batch("t", 100)
    faults = Faults(backend)
    faults.crash = ("TransactWriteItems", 2)

    with pytest.raises(Crash):
        await backend.put_writes(batch)

    left = await thread_items(backend, "t")
    staged = [i for i in left if schema.BATCH in i]
    assert 40 < len(staged) < 150  # the first transaction's items: not cleaned, as in a crash
    assert len(await thread_objects(backend, "t")) == 3
    assert (await latest(backend, "t")).writes == []
    assert (await backend.list(m.ListRequest(thread_id="t"))).records[0].writes == []
    other = await make_backend()  # no hint: reads the thread's items afresh
    assert (await latest(other, "t")).writes == []

    # The leftovers are no stored writes: writes of their keys are stored, not skipped.
    alone, pair = [write("task", 0, b"alone")], [write("task", 1, b"a"), write("task", 2, b"b")]
    faults.crash = None
    for writes in (alone, pair):  # one PutItem, then one transaction
        await backend.put_writes(m.PutWritesRequest("t", "", cid(1), writes))
    assert by_idx((await latest(other, "t")).writes) == alone + pair

    assert await backend.sweep() == 0  # an hour's grace: the batch may still be in flight
    assert len(await thread_objects(backend, "t")) == 3
    assert await backend.sweep(age_s=0) == 3
    kinds = Counter(i[schema.KIND]["S"] for i in await thread_items(backend, "t"))
    assert kinds == {"c": 1, "w": 3}

    await backend.put_writes(batch)
    assert by_idx((await latest(other, "t")).writes) == alone + pair + batch.writes[3:]


async def test_a_batch_keeps_first_copies_and_replaces_only_when_it_commits(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    await backend.put(m.PutRequest(record("t", 1)))
    stored = [write("task", 0, b"first"), write("task", -1, b"error one")]
    await backend.put_writes(m.PutWritesRequest("t", "", cid(1), stored))
    batch = big_batch("t", 100).writes[1:]
    batch += [write("task", 0, b"second"), write("task", -1, b"two")]
    request = m.PutWritesRequest("t", "", cid(1), batch)
    faults = Faults(backend)
    faults.refuse = ("TransactWriteItems", 2)

    with pytest.raises(RequestRejected):
        await backend.put_writes(request)
    assert by_idx((await latest(backend, "t")).writes) == by_idx(stored)

    faults.refuse = None
    await backend.put_writes(request)
    writes = {w.idx: w.value for w in (await latest(backend, "t")).writes}
    assert (len(writes), writes[0], writes[-1]) == (151, b"first", b"two")


async def test_put_stores_checkpoint_registry_and_run_entry_in_one_transaction(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    faults = Faults(backend)
    faults.refuse = ("TransactWriteItems", 1)

    with pytest.raises(RequestRejected):
        await backend.put(m.PutRequest(record("t", 1), run_id="run"))
    assert await thread_items(backend, "t") == []
    assert (await backend.list(m.ListRequest())).records == []

    await backend.put(m.PutRequest(record("t", 1), run_id="run"))
    assert faults.counts()["TransactWriteItems"] == 2
    await backend.delete_for_runs(["run"])  # found through the run entry
    assert await backend.get_tuple(m.GetTupleRequest("t")) is None


async def test_reading_a_committed_batch_costs_no_extra_call(make_backend: Factory) -> None:
    backend = await make_backend()
    small = [write("task", i, b"x" * 100) for i in range(150)]
    for thread in ("batch", "halves"):
        await backend.put(m.PutRequest(record(thread, 1)))
    faults = Faults(backend)
    await backend.put_writes(m.PutWritesRequest("batch", "", cid(1), small))
    assert faults.counts() == {"Query": 1, "TransactWriteItems": 2}  # 150 items: two
    for half in (small[:75], small[75:]):  # the same writes, stored without a marker
        await backend.put_writes(m.PutWritesRequest("halves", "", cid(1), half))

    costs = []
    for thread in ("batch", "halves"):
        faults.ops.clear()
        assert by_idx((await latest(backend, thread)).writes) == small
        costs.append(faults.counts())
    assert costs[0] == costs[1] == {"Query": 2}  # pages of 100 items, marker or not


# --- no orphaned objects ---------------------------------------------------------------------


async def test_objects_of_refused_puts_and_skipped_writes_are_deleted(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    faults = Faults(backend)
    faults.refuse = ("TransactWriteItems", 1)
    with pytest.raises(RequestRejected):
        await backend.put(m.PutRequest(record("t", 1, blob=os.urandom(LARGE))))
    assert await thread_objects(backend, "t") == set()

    faults.refuse = None
    await backend.put(m.PutRequest(record("t", 1, blob=os.urandom(LARGE))))
    faults.refuse = ("PutItem", 1)
    big = m.PutWritesRequest("t", "", cid(1), [write("task", 0, os.urandom(LARGE))])
    with pytest.raises(RequestRejected):
        await backend.put_writes(big)
    assert len(await thread_objects(backend, "t")) == 1  # the checkpoint's

    faults.refuse = None
    await backend.put_writes(big)
    again = m.PutWritesRequest("t", "", cid(1), [write("task", 0, os.urandom(LARGE))])
    await backend.put_writes(again)  # its first copy exists: skipped, its upload deleted
    objects = await thread_objects(backend, "t")
    items = await thread_items(backend, "t")
    assert objects == {i[schema.OBJECT]["S"] for i in items if schema.OBJECT in i}
    assert len(objects) == 2
    assert (await latest(backend, "t")).writes == big.writes


async def test_the_sweep_deletes_only_old_objects_no_item_refers_to(
    make_backend: Factory,
) -> None:
    backend = await make_backend()
    await backend.put(m.PutRequest(record("t", 1, blob=os.urandom(LARGE))))
    kept = await thread_objects(backend, "t")
    draft = records.checkpoint_draft(m.PutRequest(record("t", 2, blob=os.urandom(LARGE))), None)
    await backend.payloads.place("t", [draft])  # uploaded, then the sidecar died
    assert len(await thread_objects(backend, "t")) == 2

    assert await backend.sweep() == 0
    assert await backend.sweep(age_s=0) == 1
    assert await thread_objects(backend, "t") == kept
    assert len((await latest(backend, "t")).checkpoint) == LARGE
