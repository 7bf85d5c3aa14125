"""How protocol messages map to items of the table (see :mod:`.schema`), and back.

A checkpoint item holds the serializer's type, the payload (or its S3 key), the metadata JSON
as sent, the parent id and the run id; a write item the channel, type, payload and task path.
Namespaces, ids, task ids and write indexes live in the sort key and are read back from it.
Only this framing is decoded here, never a payload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import SidecarError

from . import schema
from .payloads import Draft, Item, Payloads


def expiry(expires: int | None) -> Item:
    return {schema.EXPIRES: {"N": str(expires)}} if expires is not None else {}


def check_thread(thread_id: str) -> None:
    what = f"thread id {thread_id[:40]!r}"
    schema.check_key("partition key", schema.thread_pk(thread_id), schema.MAX_PK_BYTES, what)
    schema.check_key("registry key", schema.registry_sk(thread_id), schema.MAX_SK_BYTES, what)


def checkpoint_draft(request: m.PutRequest, expires: int | None) -> Draft:
    record = request.record
    check_thread(record.thread_id)
    sk = schema.checkpoint_sk(record.checkpoint_ns, record.checkpoint_id)
    schema.check_key("sort key", sk, schema.MAX_SK_BYTES, "checkpoint namespace plus id")
    item: Item = {
        schema.PK: {"S": schema.thread_pk(record.thread_id)},
        schema.SK: {"S": sk},
        schema.KIND: {"S": schema.CHECKPOINT},
        schema.TYPE: {"S": record.type},
        schema.METADATA: {"B": record.metadata},
        **expiry(expires),
    }
    if record.parent_checkpoint_id is not None:
        item[schema.PARENT] = {"S": record.parent_checkpoint_id}
    if request.run_id is not None:
        run_pk = schema.run_pk(request.run_id)
        schema.check_key("run index key", run_pk, schema.MAX_PK_BYTES, "run id")
        item[schema.RUN] = {"S": request.run_id}
    what = f"checkpoint {record.checkpoint_id[:40]!r} of thread {record.thread_id[:40]!r}"
    return Draft(item, record.checkpoint, what)


def write_drafts(request: m.PutWritesRequest, expires: int | None) -> list[Draft]:
    check_thread(request.thread_id)
    pk = schema.thread_pk(request.thread_id)
    return [_write_draft(request, pk, write, expires) for write in request.writes]


def _write_draft(
    request: m.PutWritesRequest, pk: str, write: m.PendingWrite, expires: int | None
) -> Draft:
    sk = schema.write_sk(request.checkpoint_ns, request.checkpoint_id, write.task_id, write.idx)
    schema.check_key("sort key", sk, schema.MAX_SK_BYTES, "checkpoint namespace, id and task id")
    item: Item = {
        schema.PK: {"S": pk},
        schema.SK: {"S": sk},
        schema.KIND: {"S": schema.WRITE},
        schema.CHANNEL: {"S": write.channel},
        schema.TYPE: {"S": write.type},
        **expiry(expires),
    }
    if write.task_path:
        item[schema.TASK_PATH] = {"S": write.task_path}
    what = (
        f"pending write {write.idx} of task {write.task_id[:40]!r} "
        f"in thread {request.thread_id[:40]!r}"
    )
    return Draft(item, write.value, what)


def registry_item(thread_id: str, expires: int | None) -> Item:
    pk, sk = schema.registry_key(thread_id)
    return {schema.PK: {"S": pk}, schema.SK: {"S": sk}, **expiry(expires)}


def run_item(run_id: str, location: tuple[str, str, str], expires: int | None) -> Item:
    pk, sk = schema.run_key(run_id, *location)
    thread_id, checkpoint_ns, checkpoint_id = location
    return {
        schema.PK: {"S": pk},
        schema.SK: {"S": sk},
        schema.LOC_THREAD: {"S": thread_id},
        schema.LOC_NS: {"S": checkpoint_ns},
        schema.LOC_ID: {"S": checkpoint_id},
        **expiry(expires),
    }


def marker_item(
    thread_id: str, checkpoint_ns: str, checkpoint_id: str, batch: str, expires: int | None
) -> Item:
    """The commit marker of a batch of writes (see :mod:`.schema`)."""
    return {
        schema.PK: {"S": schema.thread_pk(thread_id)},
        schema.SK: {"S": schema.marker_sk(checkpoint_ns, checkpoint_id, batch)},
        schema.KIND: {"S": schema.MARKER},
        **expiry(expires),
    }


def location_of(item: Item) -> tuple[str, str, str]:
    """The checkpoint a run index item points at."""
    try:
        return (
            item[schema.LOC_THREAD]["S"],
            item[schema.LOC_NS]["S"],
            item[schema.LOC_ID]["S"],
        )
    except KeyError:
        raise SidecarError("a run index item lacks its checkpoint's location") from None


def key_of(item: Item) -> Item:
    return {schema.PK: item[schema.PK], schema.SK: item[schema.SK]}


def optional(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None else None


async def decode_group(
    payloads: Payloads, thread_id: str, checkpoint: Item, writes: Sequence[Item]
) -> m.CheckpointRecord | None:
    """The record of a checkpoint item and its write items; None if its payload is gone."""
    key = schema.ItemKey(checkpoint[schema.SK]["S"])
    blob, *values = await asyncio.gather(
        payloads.load(checkpoint), *(payloads.load(w) for w in writes)
    )
    if blob is None:
        return None
    decoded = [
        _decode_write(item, value)
        for item, value in zip(writes, values, strict=True)
        if value is not None
    ]
    try:
        return m.CheckpointRecord(
            thread_id=thread_id,
            checkpoint_ns=key.checkpoint_ns,
            checkpoint_id=key.checkpoint_id,
            parent_checkpoint_id=optional(checkpoint, schema.PARENT),
            type=checkpoint[schema.TYPE]["S"],
            checkpoint=blob,
            metadata=checkpoint[schema.METADATA]["B"],
            writes=decoded,
        )
    except KeyError:
        raise SidecarError("a stored checkpoint lacks an attribute this backend writes") from None


def _decode_write(item: Item, value: bytes) -> m.PendingWrite:
    key = schema.ItemKey(item[schema.SK]["S"])
    if key.write is None:
        raise SidecarError("a pending write item has a checkpoint's sort key")
    task_id, idx = key.write
    try:
        return m.PendingWrite(
            task_id=task_id,
            idx=idx,
            channel=item[schema.CHANNEL]["S"],
            type=item[schema.TYPE]["S"],
            value=value,
            task_path=optional(item, schema.TASK_PATH) or "",
        )
    except KeyError:
        raise SidecarError(
            "a stored pending write lacks an attribute this backend writes"
        ) from None
