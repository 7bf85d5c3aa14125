"""Checkpoints in DynamoDB (payloads over the threshold in S3): the ``CheckpointBackend``.

Calls per operation, with payloads small enough to stay in the items:

- ``put``: one ``TransactWriteItems`` (the checkpoint, the thread's registry entry and, with a
  run id, the run's index entry: all or none), plus one S3 ``PutObject`` when the payload is
  offloaded;
- ``put_writes``: one ``PutItem`` (one write) or one ``TransactWriteItems`` (up to 100 writes
  and 4 MB), plus one ``PutObject`` per offloaded value; a larger batch, one ``Query`` (the
  keys of the checkpoint's writes) and one ``TransactWriteItems`` per 100 items or 4 MB, still
  all or none (see :mod:`.writing`);
- ``get_tuple``: one ``Query`` (two for the latest checkpoint of a thread this sidecar has not
  seen, when that checkpoint has writes; see :mod:`.reading`), plus one ``GetObject`` per
  offloaded payload;
- ``list(limit=k)``: one ``Query`` of ``2k + 2`` items when that holds ``k`` records;
- ``delete_thread``, ``prune``, ``copy_thread``: one ``Query`` per 1 MB of the thread, one
  ``BatchWriteItem`` per 25 items, and for the bucket one listing and one ``DeleteObjects``
  per 1000 objects (or a ``CopyObject`` per copied object);
- ``delete_for_runs``: one ``Query`` per run and one per checkpoint found, then batches.

Objects of items that were not written are deleted at once; what a crash leaves (an object
uploaded but never referred to, the invisible items of a batch that never committed) is
removed by :meth:`DynamoDBCheckpointBackend.sweep`, which each sidecar runs every
:data:`SWEEP_INTERVAL_S` or so, sparing anything younger than :data:`SWEEP_AGE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TypeAlias

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules
from agentpersistence.client.protocol.errors import SidecarError

from ...settings import DynamoDBSettings
from .. import aws
from ..base import CheckpointBackend
from . import provisioning, records, schema
from .clients import Clients
from .payloads import Item, Payloads
from .reading import ItemStream, Query, Reader, alive
from .writing import WriteGroup, Writer, refused

Items: TypeAlias = "list[Item]"  # spelled out here: inside the class, ``list`` is the method
Location = tuple[str, str, str]

FLUSH_ITEMS = 500
"""Items collected by a thread-wide delete or copy before they are written."""
RUN_CONCURRENCY = 8
"""Checkpoints of ``delete_for_runs`` looked up at once."""
_KEYS = (schema.PK, schema.SK, schema.OBJECT, schema.RUN, schema.EXPIRES)
"""What deletes read of an item: its key, object, run and expiry."""
SWEEP_AGE_S = 3600.0
"""Objects and unfinished batches younger than this are spared by the sweep: their write may
still be in flight (requests last seconds; the margin also covers clock skew)."""
SWEEP_INTERVAL_S = 6 * 3600.0
"""How often each sidecar sweeps (at a random point of each interval, so that sidecars
started together do not sweep together)."""

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


class DynamoDBCheckpointBackend(CheckpointBackend):
    name = "dynamodb"

    def __init__(self, settings: DynamoDBSettings) -> None:
        self.settings = settings
        self.ttl = settings.ttl_seconds
        self.clients = Clients(settings)
        self.payloads = Payloads(settings, self.clients)
        self.reader = Reader(self.clients, self.payloads)
        self.writer = Writer(self.clients)
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.clients.open()
        if self.clients.offloading:
            self._sweeper = asyncio.create_task(self._sweep_now_and_then())

    async def close(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await self.clients.close()

    async def provision(self) -> None:
        with self.clients.table():
            await provisioning.ensure_table(self.clients.dynamodb, self.settings.table_name)
        if self.settings.s3_offload is not None:
            region = aws.region(self.settings) or self.clients.s3.meta.region_name
            with self.clients.bucket():
                await provisioning.ensure_bucket(
                    self.clients.s3, self.settings.s3_offload, self.ttl, region
                )

    async def health(self) -> m.BackendHealth:
        try:
            await self._check_resources()
        except SidecarError as exc:
            return m.BackendHealth("checkpointer", self.name, False, exc.message)
        return m.BackendHealth("checkpointer", self.name, True)

    async def _check_resources(self) -> None:
        with self.clients.table():
            table = await self.clients.dynamodb.describe_table(TableName=self.clients.table_name)
        status = table["Table"].get("TableStatus", "")
        if status not in ("ACTIVE", "UPDATING"):
            raise SidecarError(f"{self.clients.where_table} is {status}, not ACTIVE")
        if self.clients.bucket_name is not None:
            with self.clients.bucket():
                await self.clients.s3.head_bucket(Bucket=self.clients.bucket_name)

    def _expires(self) -> int | None:
        return int(time.time()) + self.ttl if self.ttl else None

    # --- reads ---------------------------------------------------------------------------

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        return await self.reader.get(request)

    async def list(self, request: m.ListRequest) -> m.ListResponse:
        return await self.reader.page(request)

    # --- writes --------------------------------------------------------------------------

    async def put(self, request: m.PutRequest) -> None:
        record, expires = request.record, self._expires()
        draft = records.checkpoint_draft(request, expires)
        [item] = await self.payloads.place(record.thread_id, [draft])
        items = [item, records.registry_item(record.thread_id, expires)]
        if request.run_id is not None:
            location = (record.thread_id, record.checkpoint_ns, record.checkpoint_id)
            items.append(records.run_item(request.run_id, location, expires))
        try:
            await self.writer.put_together(items)
        except Exception as exc:
            if refused(exc):
                await self.payloads.discard([item])
            raise
        self.reader.hints.offer(record.thread_id, record.checkpoint_ns, record.checkpoint_id)

    async def put_writes(self, request: m.PutWritesRequest) -> None:
        writes = _deduplicated(request.writes)
        if not writes:
            return
        request = m.PutWritesRequest(
            request.thread_id, request.checkpoint_ns, request.checkpoint_id, writes
        )
        expires = self._expires()
        drafts = records.write_drafts(request, expires)
        items = await self.payloads.place(request.thread_id, drafts)
        replace = [rules.write_replaces(write.idx) for write in writes]
        location = (request.thread_id, request.checkpoint_ns, request.checkpoint_id)
        try:
            skipped = await self.writer.put_first_wins(
                list(zip(items, replace, strict=True)), WriteGroup(location, expires)
            )
        except Exception as exc:
            if refused(exc):
                await self.payloads.discard(items)
            raise
        await self.payloads.discard(skipped)

    # --- deletes -------------------------------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        self.reader.hints.forget(thread_id)
        stream = self._thread_items(thread_id, _KEYS)
        doomed: list[Item] = [records.registry_item(thread_id, None)]
        while (item := await stream.pull()) is not None:
            doomed += [item, *_run_entry(thread_id, item, None)]
            if len(doomed) >= FLUSH_ITEMS:
                await self.writer.delete_keys(doomed)
                doomed = []
        await self.writer.delete_keys(doomed)
        await self.payloads.delete_thread(thread_id)

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        rules.check_prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == rules.DELETE:
                await self.delete_thread(thread_id)
            else:
                await self._keep_latest(thread_id)

    async def _keep_latest(self, thread_id: str) -> None:
        """Delete everything of each namespace below its newest live checkpoint."""
        self.reader.hints.forget(thread_id)
        stream, now = self._thread_items(thread_id, (*_KEYS, schema.KIND)), time.time()
        kept: set[str] = set()
        doomed: list[Item] = []
        while (item := await stream.pull()) is not None:
            key = schema.ItemKey(item[schema.SK]["S"])
            if key.checkpoint_ns not in kept:
                if key.is_checkpoint and alive(item, now):
                    kept.add(key.checkpoint_ns)
                continue
            doomed += [item, *_run_entry(thread_id, item, None)]
            if len(doomed) >= FLUSH_ITEMS:
                await self._delete_items(doomed)
                doomed = []
        await self._delete_items(doomed)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = set(run_ids)
        if not runs:
            return
        entries: Items = []
        for found in await asyncio.gather(*(self._run_entries(run) for run in sorted(runs))):
            entries += found
        locations = sorted({records.location_of(e) for e in entries})
        limit = asyncio.Semaphore(RUN_CONCURRENCY)

        async def items_of(location: Location) -> Items:
            async with limit:
                return await self._items_if_run(location, runs)

        doomed = entries
        for found in await asyncio.gather(*(items_of(loc) for loc in locations)):
            doomed += found
        for thread_id, _, _ in locations:
            self.reader.hints.forget(thread_id)
        await self._delete_items(doomed)

    async def _run_entries(self, run_id: str) -> Items:
        return await ItemStream(self.clients, Query(schema.run_pk(run_id))).all()

    async def _items_if_run(self, location: Location, runs: set[str]) -> Items:
        """The items of a checkpoint (with its writes) if one of ``runs`` wrote it."""
        thread_id, ns, cid = location
        lo, hi = schema.checkpoint_sk(ns, cid), schema.group_upper(ns, cid)
        query = Query.between(schema.thread_pk(thread_id), lo, hi)
        query.projection = _KEYS
        items = await ItemStream(self.clients, query).all()
        checkpoint = next((i for i in items if i[schema.SK]["S"] == lo), None)
        if checkpoint is None or records.optional(checkpoint, schema.RUN) not in runs:
            return []
        return items

    async def _delete_items(self, items: Sequence[Item]) -> None:
        """Delete items and the objects they refer to, objects last."""
        await self.writer.delete_keys(items)
        await self.payloads.delete(i[schema.OBJECT]["S"] for i in items if schema.OBJECT in i)

    def _thread_items(self, thread_id: str, projection: tuple[str, ...] = ()) -> ItemStream:
        return ItemStream(self.clients, Query(schema.thread_pk(thread_id), projection=projection))

    # --- what interrupted writes leave ---------------------------------------------------

    async def sweep(self, age_s: float = SWEEP_AGE_S) -> int:
        """Delete objects no item refers to and the items of batches that never committed,
        in every thread with an object older than ``age_s``, sparing anything younger;
        returns how many objects were deleted."""
        offload = self.settings.s3_offload
        if offload is None:
            return 0
        before = time.time() - age_s
        prefixes = await self.payloads.prefixes_with_objects(before)
        deleted = 0
        async for thread_id in self._registered_threads():
            if schema.thread_prefix(offload.key_prefix, thread_id) in prefixes:
                deleted += await self._sweep_thread(thread_id, before)
        return deleted

    async def _sweep_thread(self, thread_id: str, before: float) -> int:
        stream = self._thread_items(thread_id, (schema.PK, schema.SK, schema.OBJECT, schema.BATCH))
        items = await stream.all()
        markers = {
            key.batch
            for item in items
            if (key := schema.ItemKey(item[schema.SK]["S"])).batch is not None
        }
        referenced: set[str] = set()
        for item in items:
            batch = records.optional(item, schema.BATCH)
            if batch is not None and batch not in markers and schema.batch_time(batch) < before:
                await self.writer.remove_uncommitted(item, batch)
            elif schema.OBJECT in item:
                referenced.add(item[schema.OBJECT]["S"])
        return await self.payloads.sweep_thread(thread_id, referenced, before)

    async def _registered_threads(self) -> AsyncIterator[str]:
        for shard in range(schema.REGISTRY_SHARDS):
            query = Query(schema.registry_pk(shard), projection=(schema.SK,))
            stream = ItemStream(self.clients, query)
            while (item := await stream.pull()) is not None:
                yield schema.registered_thread(item[schema.SK]["S"])

    async def _sweep_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(random.uniform(0.5, 1.0) * SWEEP_INTERVAL_S)
            try:
                deleted = await self.sweep()
            except SidecarError as exc:
                log.warning("the sweep of orphaned objects failed", extra={"error": exc.code})
            else:
                log.info("swept orphaned objects", extra={"deleted": deleted})

    # --- copies --------------------------------------------------------------------------

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        records.check_thread(target_thread_id)
        self.reader.hints.forget(target_thread_id)
        stream, now = self._thread_items(source_thread_id), time.time()
        expires, copied = self._expires(), False
        batch: list[Item] = []
        while (item := await stream.pull()) is not None:
            if not alive(item, now):
                continue
            batch.append(item)
            if len(batch) >= FLUSH_ITEMS // 5:  # whole items: keep a batch's bytes bounded
                copied |= await self._copy_items(batch, target_thread_id, expires)
                batch = []
        copied |= await self._copy_items(batch, target_thread_id, expires)
        if copied:
            await self.writer.put_items([records.registry_item(target_thread_id, expires)])

    async def _copy_items(self, items: Sequence[Item], thread_id: str, expires: int | None) -> bool:
        """Write copies of ``items`` into ``thread_id``; whether one was a checkpoint."""
        copies = [_retarget(item, thread_id, expires) for item in items]
        await asyncio.gather(*(self.payloads.copy(c, thread_id) for c in copies))
        entries = [e for c in copies for e in _run_entry(thread_id, c, expires)]
        await self.writer.put_items([*copies, *entries])
        return any(c[schema.KIND]["S"] == schema.CHECKPOINT for c in copies)


def _run_entry(thread_id: str, item: Item, expires: int | None) -> list[Item]:
    """The run index entry of a checkpoint item written by a run (none for other items)."""
    run = records.optional(item, schema.RUN)
    if run is None:
        return []
    location = schema.ItemKey(item[schema.SK]["S"]).group
    return [records.run_item(run, (thread_id, *location), expires)]


def _retarget(item: Item, thread_id: str, expires: int | None) -> Item:
    copy = {k: v for k, v in item.items() if k != schema.EXPIRES}
    copy[schema.PK] = {"S": schema.thread_pk(thread_id)}
    copy.update(records.expiry(expires))
    return copy


def _deduplicated(writes: Iterable[m.PendingWrite]) -> list[m.PendingWrite]:
    """One write per ``(task_id, idx)``, as storing them one by one would leave it."""
    kept: dict[tuple[str, int], m.PendingWrite] = {}
    for write in writes:
        key = (write.task_id, write.idx)
        if key not in kept or rules.write_replaces(write.idx):
            kept[key] = write
    return list(kept.values())
