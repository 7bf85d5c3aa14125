"""The store on a Bedrock AgentCore Memory: the ``StoreBackend`` in two modes.

**records** (the default): each item is one memory record, laid out by :mod:`.items` (its
namespace path is the item's namespace and key; its text is the item as JSON). AgentCore
calls per operation:

- ``get``: **one** ``ListMemoryRecords`` (``namespace`` = the item's path);
- ``put``: that same call to find the item's record, then its share of one
  ``BatchUpdateMemoryRecords`` (an existing item, ``created_at`` kept) or one
  ``BatchCreateMemoryRecords`` (a new one, with a ``clientToken`` derived from the records,
  so a retried call creates nothing twice) per 100 items of the batch;
- ``delete`` (a put of None): the same find, then one ``DeleteMemoryRecord`` per record;
- ``search`` with a query: ``RetrieveMemoryRecords`` under the prefix's path (one call per
  100 records ranked): the ranking and the scores are AgentCore's semantic retrieval, not the
  agent's vectors (which are ignored). ``topK`` is ``offset + limit``, or with a filter as many
  as AgentCore ranks (100, or ``maxScan`` if lower), the filter being applied here on the
  decoded values (``store_rules``). AgentCore ranks at most 100 records: a search with a
  query never returns an item ranked lower;
- ``search`` without a query, and ``list_namespaces``: ``ListMemoryRecords`` pages (100
  records each) under the prefix's path; this sidecar filters, orders (``updated_at``
  descending, then namespace and key, as every backend does) and pages. One request examines
  at most ``maxScan`` records; past that it is refused, naming the setting.

A batch's reads (and the finds of its puts) all run first, concurrently, against the store
as it was; its puts (one per item, ``store_rules.effective_puts``) are written afterwards,
so an item too large or a namespace too long refuses the batch before anything is written.
Puts of one item through this sidecar are serialized (a lock per item path held from the find
to the write), so concurrent batches never leave it two records. Two *sidecars* creating the
same new item at once still may: reads take the one updated last, and the next put or delete
of the item removes the other.

Not supported: TTLs (AgentCore expires records in whole days, at least 31, per request, so
LangGraph's minutes cannot map onto it; a put with a TTL is refused), items whose record
would exceed 16,000 characters (refused).

**conversational**: see :mod:`.conversation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import AsyncIterator, Sequence

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected

from ...settings import AgentCoreMemoryStoreSettings
from ..base import StoreBackend
from ..client_lifecycle import ClientLifecycle
from . import items
from .client import MemoryClient
from .conversation import Conversations
from .items import Found, Namespace
from .records import Draft, Records, top_k

Finds = dict[str, list[Found]]
"""Each item path a batch reads, with the item's records (newest first)."""


class AgentCoreMemoryStoreBackend(ClientLifecycle, StoreBackend):
    name = "agentcore-memory"

    def __init__(self, settings: AgentCoreMemoryStoreSettings) -> None:
        self.settings = settings
        self.memory = MemoryClient(settings)
        self.records = Records(self.memory)
        super().__init__(self.memory, self.records.ping)
        self.conversations = (
            Conversations(self.records, settings) if settings.mode == "conversational" else None
        )
        self._locks = PathLocks()

    # --- batches -------------------------------------------------------------------------

    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]:
        for op in ops:
            rules.check_op(op)
            refuse_ttl(op)
        if self.conversations is not None:
            return await self.conversations.batch(ops)
        puts = rules.effective_puts(ops)
        writing = {items.item_path(namespace, key) for namespace, key in puts}
        paths = writing | {
            items.item_path(op.namespace, op.key) for op in ops if op.op == rules.GET
        }
        async with self._locks.holding(writing):
            finds, answers = await asyncio.gather(
                self._find(paths),
                asyncio.gather(*(self._staged(op) for op in ops if _is_staged(op))),
            )
            drafts, deletes = self._plan(puts, finds, time.time())
            await self._write(drafts, deletes)
        return _results(ops, finds, answers)

    async def _find(self, paths: set[str]) -> Finds:
        ordered = sorted(paths)
        found = await asyncio.gather(*map(self.records.exact, ordered))
        return {
            path: items.newest_first([f for s in summaries if (f := items.decode(s))])
            for path, summaries in zip(ordered, found, strict=True)
        }

    async def _staged(self, op: m.StoreOp) -> m.StoreResult:
        if op.op == rules.LIST_NAMESPACES:
            return m.StoreResult(namespaces=await self._list_namespaces(op))
        if op.limit == 0:
            return m.StoreResult(items=[])
        if op.query:
            return m.StoreResult(items=await self._ranked(op))
        return m.StoreResult(items=await self._listed(op))

    # --- writes --------------------------------------------------------------------------

    def _plan(
        self, puts: dict[tuple[Namespace, str], m.StoreOp], finds: Finds, now: float
    ) -> tuple[list[Draft], list[tuple[str, str]]]:
        """The records to write and to delete (``(record id, path)``); raises before any
        write if an item cannot be stored."""
        drafts: list[Draft] = []
        deletes: list[tuple[str, str]] = []
        for (namespace, key), op in puts.items():
            path = items.item_path(namespace, key)
            existing = finds[path]
            keep = existing[0] if existing and op.value is not None else None
            deletes += [(f.record_id, path) for f in existing if f is not keep]
            if op.value is None:
                continue
            value = rules.parse_value(op.value)
            created_at = keep.created_at if keep else now
            text = items.content(namespace, key, value, created_at, now)
            record_id = keep.record_id if keep else None
            drafts.append(Draft(path, text, items.metadata(key), items.timestamp(now), record_id))
        return drafts, deletes

    async def _write(self, drafts: list[Draft], deletes: list[tuple[str, str]]) -> None:
        creates = [d for d in drafts if d.record_id is None]
        updates = [d for d in drafts if d.record_id is not None]
        deleting = asyncio.gather(*(self.records.delete(*record) for record in deletes))
        _, gone, _ = await asyncio.gather(
            self.records.create(creates), self.records.update(updates), deleting
        )
        if gone:  # deleted since the batch found them (by another sidecar): create them again
            await self.records.create([dataclasses.replace(d, record_id=None) for d in gone])

    # --- searches ------------------------------------------------------------------------

    async def _under(self, prefix: Sequence[str], what: str) -> list[Found]:
        """Every item under ``prefix`` (its newest record), bounded by ``maxScan``."""
        path = items.prefix_path(prefix)
        refusal = functools.partial(too_many, self.settings, what, prefix, path)
        summaries = await self.records.under(path, self.settings.max_scan, refusal)
        newest: dict[tuple[Namespace, str], Found] = {}
        for summary in summaries:
            found = items.decode(summary)
            if found is None or not rules.has_prefix(found.namespace, prefix):
                continue
            held = newest.get(found.ident)
            if held is None or (found.updated_at, found.record_id) > (
                held.updated_at,
                held.record_id,
            ):
                newest[found.ident] = found
        return list(newest.values())

    async def _listed(self, op: m.StoreOp) -> list[m.StoreItem]:
        wanted = rules.parse_store_filter(op.filter)
        found = [
            f
            for f in await self._under(op.namespace, "search")
            if wanted is None or rules.filter_matches(f.value, wanted)
        ]
        found.sort(key=lambda f: f.order)
        return [f.item() for f in found[op.offset : op.offset + op.limit]]

    async def _ranked(self, op: m.StoreOp) -> list[m.StoreItem]:
        assert op.query is not None
        wanted = rules.parse_store_filter(op.filter)
        ranked = top_k(op.offset + op.limit, wanted is not None, self.settings.max_scan)
        path = items.prefix_path(op.namespace)
        summaries = await self.records.retrieve(path, op.query, ranked)
        page: list[m.StoreItem] = []
        seen: set[tuple[Namespace, str]] = set()
        for summary in summaries:
            found = items.decode(summary)
            if found is None or found.ident in seen:
                continue
            seen.add(found.ident)
            if not rules.has_prefix(found.namespace, op.namespace):
                continue
            if wanted is None or rules.filter_matches(found.value, wanted):
                page.append(found.item(float(summary.get("score", 0.0))))
        return page[op.offset : op.offset + op.limit]

    async def _list_namespaces(self, op: m.StoreOp) -> list[list[str]]:
        prefix = rules.fixed_prefix(op.conditions)
        namespaces = {f.namespace for f in await self._under(prefix, "namespace listing")}
        return rules.list_namespaces(namespaces, op)


class PathLocks:
    """One asyncio lock per item path while some batch holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def holding(self, paths: set[str]) -> AsyncIterator[None]:
        """Hold the locks of ``paths``, taken in sorted order (no two batches deadlock)."""
        ordered = sorted(paths)
        for path in ordered:
            lock, users = self._locks.get(path, (asyncio.Lock(), 0))
            self._locks[path] = (lock, users + 1)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for path in ordered:
                    await stack.enter_async_context(self._locks[path][0])
                yield
        finally:
            for path in ordered:
                lock, users = self._locks[path]
                if users == 1:
                    del self._locks[path]
                else:
                    self._locks[path] = (lock, users - 1)


def refuse_ttl(op: m.StoreOp) -> None:
    if op.op == rules.PUT and op.value is not None and op.ttl_seconds is not None:
        raise RequestRejected(
            "the agentcore-memory store does not support TTLs: AgentCore Memory expires "
            "records only in whole days (at least 31), so LangGraph's TTL cannot be kept; "
            "put without ttl (and without a TTLConfig default_ttl)"
        )


def too_many(
    settings: AgentCoreMemoryStoreSettings, what: str, prefix: Sequence[str], path: str
) -> RequestRejected:
    return RequestRejected(
        f"this {what} would examine more than {settings.max_scan} AgentCore memory records "
        f"under the namespace prefix {list(prefix)} ({path}); the store's "
        "agentcoreMemory.maxScan setting bounds it: narrow the prefix or the listing, or "
        "raise maxScan"
    )


def _is_staged(op: m.StoreOp) -> bool:
    return op.op in (rules.SEARCH, rules.LIST_NAMESPACES)


def _results(
    ops: Sequence[m.StoreOp], finds: Finds, answers: Sequence[m.StoreResult]
) -> list[m.StoreResult]:
    staged = iter(answers)
    results = []
    for op in ops:
        if op.op == rules.GET:
            found = finds[items.item_path(op.namespace, op.key)]
            results.append(m.StoreResult(item=found[0].item() if found else None))
        elif _is_staged(op):
            results.append(next(staged))
        else:
            results.append(m.StoreResult())
    return results
