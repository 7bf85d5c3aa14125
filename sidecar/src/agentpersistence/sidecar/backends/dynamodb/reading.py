"""Reading a thread's items newest first: the latest checkpoint, one by id, list pages.

Every read is a ``Query`` on one thread's partition with ``ScanIndexForward=False`` and
``ConsistentRead=True`` (a resumed graph must see the checkpoint it just wrote). In that order
a checkpoint's writes come right before it (see :mod:`.schema`), so :func:`next_group` turns
the item stream into checkpoints with their writes; writes whose checkpoint is missing, writes
of a batch without its commit marker and items past their ``expires`` are skipped. A batch's
marker lies among its checkpoint's writes, so honouring it costs no extra read.

The latest checkpoint: :class:`LatestHints` remembers, per thread and namespace, the newest id
this sidecar wrote or read. The key range from that id to the end of the namespace then holds
exactly the checkpoint and its writes: **one Query**, reading only them, however long the
thread. The hint is only a starting point: newer checkpoints (written by another sidecar)
are in the range too and win; a deleted or expired one is passed over. Without a hint, one
``Limit=1`` query finds the newest item, and if that is a write, one more reads exactly its
checkpoint's items.

``list(limit=k)`` reads a first page of ``2k + 2`` items, doubling later pages (when a filter
skips records or checkpoints have many writes), and stops after the ``k``-th record: ``O(k)``
items however long the thread.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from .. import listing
from ..base import ListPosition, decode_cursor, encode_cursor
from . import records, schema
from .clients import Clients
from .payloads import Item, Payloads

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef

WARM_PAGE = 100
"""Items per page when reading from a hinted id (the checkpoint and its writes, usually)."""
LIST_PAGE_MAX = 1000
THREAD_PAGE_FIRST, THREAD_PAGE = 4, 128
"""Registry entries read per shard in the first and the largest page when listing every
thread (pages double in between)."""
HINTS = 10_000
"""Threads whose latest ids are remembered."""


# --- item streams --------------------------------------------------------------------------


@dataclass
class Query:
    """A key condition on one partition, its values, and where to start."""

    pk: str
    condition: str = "#pk = :pk"
    values: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    """Sort key to continue after (exclusive), in the query's direction."""
    forward: bool = False
    projection: tuple[str, ...] = ()

    @classmethod
    def namespace(cls, pk: str, checkpoint_ns: str, start: str | None = None) -> Query:
        ns = schema.ns_prefix(checkpoint_ns)
        return cls(pk, "#pk = :pk AND begins_with(#sk, :ns)", {":ns": ns}, start)

    @classmethod
    def between(cls, pk: str, lo: str, hi: str) -> Query:
        return cls(pk, "#pk = :pk AND #sk BETWEEN :lo AND :hi", {":lo": lo, ":hi": hi})

    def args(self, table: str, limit: int | None, start: Item | None) -> QueryInputTypeDef:
        names = {"#pk": schema.PK}
        if "#sk" in self.condition:
            names["#sk"] = schema.SK
        values: dict[str, Any] = {":pk": {"S": self.pk}}
        values.update({k: {"S": v} for k, v in self.values.items()})
        args: QueryInputTypeDef = {
            "TableName": table,
            "KeyConditionExpression": self.condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": self.forward,
            "ConsistentRead": True,
        }
        if self.projection:
            names.update({f"#p{i}": name for i, name in enumerate(self.projection)})
            args["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(self.projection)))
        args["ExpressionAttributeNames"] = names
        if limit is not None:
            args["Limit"] = limit
        if start is not None:
            args["ExclusiveStartKey"] = start
        return args


class ItemStream:
    """The items a query matches, fetched a page at a time when needed."""

    def __init__(
        self,
        clients: Clients,
        query: Query,
        page_limit: int | None = None,
        *,
        grow_to: int | None = None,
    ) -> None:
        self.clients = clients
        self.query = query
        self.page_limit = page_limit
        """Items per page (None: DynamoDB's 1 MB)."""
        self.grow_to = grow_to
        """If set, each page is twice the last, up to this: few calls when more is needed
        than the first page guessed (a filter that rarely matches, many writes)."""
        self._buffer: deque[Item] = deque()
        self._next: Item | None = None
        if query.start is not None:
            self._next = {schema.PK: {"S": query.pk}, schema.SK: {"S": query.start}}
        self._fetched = False

    @property
    def exhausted(self) -> bool:
        return self._fetched and not self._buffer and self._next is None

    async def all(self) -> list[Item]:
        items: list[Item] = []
        while (item := await self.pull()) is not None:
            items.append(item)
        return items

    async def pull(self) -> Item | None:
        while not self._buffer:
            if self._fetched and self._next is None:
                return None
            await self._fetch()
        return self._buffer.popleft()

    async def _fetch(self) -> None:
        args = self.query.args(self.clients.table_name, self.page_limit, self._next)
        with self.clients.table():
            page = await self.clients.dynamodb.query(**args)
        self._fetched = True
        self._buffer.extend(page["Items"])
        self._next = page.get("LastEvaluatedKey")
        if self.grow_to is not None and self.page_limit is not None:
            self.page_limit = min(self.grow_to, 2 * self.page_limit)


def alive(item: Item, now: float) -> bool:
    """Whether an item is not past its TTL (DynamoDB deletes expired items late)."""
    expires = item.get(schema.EXPIRES)
    return expires is None or int(expires["N"]) > now


@dataclass
class Group:
    """A checkpoint item with its write items."""

    key: schema.ItemKey
    checkpoint: Item
    writes: list[Item]


async def next_group(stream: ItemStream) -> Group | None:
    """The next live checkpoint of a newest-first stream, with the visible writes that
    precede it."""
    now = time.time()
    group: tuple[str, str] | None = None
    writes: list[Item] = []
    committed: set[str] = set()
    while (item := await stream.pull()) is not None:
        if not alive(item, now):
            continue
        key = schema.ItemKey(item[schema.SK]["S"])
        if not key.is_checkpoint:
            if group != key.group:
                group, writes, committed = key.group, [], set()
            if key.batch is not None:
                committed.add(key.batch)
            else:
                writes.append(item)
            continue
        if group != key.group:
            return Group(key, item, [])
        return Group(key, item, [w for w in writes if visible(w, committed)])
    return None


def visible(write: Item, committed: set[str]) -> bool:
    """Whether a write item counts: stored alone, or by a batch whose marker was read."""
    batch = write.get(schema.BATCH)
    return batch is None or batch["S"] in committed


# --- the latest checkpoint -----------------------------------------------------------------


class LatestHints:
    """The newest checkpoint id seen per thread and namespace (bounded, least recent out)."""

    def __init__(self, size: int = HINTS) -> None:
        self.size = size
        self._threads: OrderedDict[str, dict[str, str]] = OrderedDict()

    def get(self, thread_id: str, checkpoint_ns: str) -> str | None:
        namespaces = self._threads.get(thread_id)
        if namespaces is None:
            return None
        self._threads.move_to_end(thread_id)
        return namespaces.get(checkpoint_ns)

    def offer(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> None:
        """Remember ``checkpoint_id`` if it is newer than the id remembered."""
        current = self.get(thread_id, checkpoint_ns)
        if current is None or checkpoint_id > current:
            self.set(thread_id, checkpoint_ns, checkpoint_id)

    def set(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> None:
        self._threads.setdefault(thread_id, {})[checkpoint_ns] = checkpoint_id
        self._threads.move_to_end(thread_id)
        while len(self._threads) > self.size:
            self._threads.popitem(last=False)

    def forget(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)


class Reader:
    """Answers ``get_tuple`` and ``list`` for the backend."""

    def __init__(self, clients: Clients, payloads: Payloads) -> None:
        self.clients = clients
        self.payloads = payloads
        self.hints = LatestHints()

    async def get(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        thread_id, ns = request.thread_id, request.checkpoint_ns
        records.check_thread(thread_id)
        if request.checkpoint_id is not None:
            group = await self._exact(thread_id, ns, request.checkpoint_id)
        else:
            group = await self._latest(thread_id, ns)
        if group is None:
            return None
        if request.checkpoint_id is None:
            self.hints.set(thread_id, ns, group.key.checkpoint_id)
        return await records.decode_group(self.payloads, thread_id, group.checkpoint, group.writes)

    async def _exact(self, thread_id: str, ns: str, checkpoint_id: str) -> Group | None:
        lo, hi = schema.checkpoint_sk(ns, checkpoint_id), schema.group_upper(ns, checkpoint_id)
        group = await next_group(self._stream(Query.between(schema.thread_pk(thread_id), lo, hi)))
        return group if group is not None and group.key.checkpoint_id == checkpoint_id else None

    async def _latest(self, thread_id: str, ns: str) -> Group | None:
        pk, below = schema.thread_pk(thread_id), None
        hint = self.hints.get(thread_id, ns)
        if hint is not None:
            lo = schema.checkpoint_sk(ns, hint)
            stream = self._stream(Query.between(pk, lo, schema.ns_upper(ns)), WARM_PAGE)
            group = await next_group(stream)
            if group is not None:
                return group
            below = lo  # the hinted checkpoint is gone: look below it
        return await self._latest_below(thread_id, ns, below)

    async def _latest_below(self, thread_id: str, ns: str, below: str | None) -> Group | None:
        """Probe the newest item below ``below``; read exactly its checkpoint's items."""
        pk, now = schema.thread_pk(thread_id), time.time()
        while True:
            newest = await self._stream(Query.namespace(pk, ns, below), 1).pull()
            if newest is None:
                return None
            key = schema.ItemKey(newest[schema.SK]["S"])
            if key.is_checkpoint and alive(newest, now):
                return Group(key, newest, [])
            group = await self._exact(thread_id, ns, key.checkpoint_id)
            if group is not None:
                return group
            below = schema.checkpoint_sk(ns, key.checkpoint_id)

    def _stream(self, query: Query, page_limit: int | None = None) -> ItemStream:
        return ItemStream(self.clients, query, page_limit)

    # --- list ----------------------------------------------------------------------------

    async def page(self, request: m.ListRequest) -> m.ListResponse:
        limit = rules.check_page_limit(request.limit)
        page = _Page(limit, rules.parse_filter(request.filter), request)
        after = decode_cursor(request.cursor)
        if request.thread_id is not None:
            records.check_thread(request.thread_id)
            threads: _Threads = _OneThread(request.thread_id, after)
        else:
            threads = _AllThreads(self.clients, after[0] if after else None)
        while (thread_id := await threads.next()) is not None:
            more = await self._fill(page, thread_id, after)
            if page.full:
                more = more or await threads.more()
                return m.ListResponse(page.records, _cursor(page.records[-1]) if more else None)
        return m.ListResponse(page.records, None)

    async def _fill(self, page: _Page, thread_id: str, after: ListPosition | None) -> bool:
        """Add the thread's next records to ``page``; whether the thread may have more."""
        query = _thread_query(page.request, thread_id, after)
        if query is None:
            return False
        stream = ItemStream(self.clients, query, page.page_limit(), grow_to=LIST_PAGE_MAX)
        while not page.full:
            group = await next_group(stream)
            if group is None:
                return False
            if page.wants(group.key, group.checkpoint):
                record = await records.decode_group(
                    self.payloads, thread_id, group.checkpoint, group.writes
                )
                if record is not None:
                    page.add(record)
        return not stream.exhausted


def _thread_query(
    request: m.ListRequest, thread_id: str, after: ListPosition | None
) -> Query | None:
    """The query listing a thread from ``after`` on; None if nothing of it can follow."""
    if after is not None and after[0] > thread_id:
        return None
    pk, ns = schema.thread_pk(thread_id), request.checkpoint_ns
    resume = (after[1], after[2]) if after is not None and after[0] == thread_id else None
    if ns is None:  # every namespace: id filters are applied to what the query returns
        return Query(pk, start=schema.checkpoint_sk(*resume) if resume is not None else None)
    if resume is not None and ns < resume[0]:
        return None
    bounds = [request.before_id, resume[1] if resume is not None and ns == resume[0] else None]
    below = [b for b in bounds if b is not None]
    cid = request.checkpoint_id
    if cid is not None:
        if any(cid >= b for b in below):
            return None
        return Query.between(pk, schema.checkpoint_sk(ns, cid), schema.group_upper(ns, cid))
    return Query.namespace(pk, ns, schema.checkpoint_sk(ns, min(below)) if below else None)


@dataclass
class _Page:
    limit: int
    filter: dict[str, Any] | None
    request: m.ListRequest
    records: list[m.CheckpointRecord] = field(default_factory=list)
    size: int = 0
    """Bytes of the records' blobs, against ``listing.PAGE_BYTES``."""

    @property
    def full(self) -> bool:
        return len(self.records) >= self.limit or self.size >= listing.PAGE_BYTES

    def add(self, record: m.CheckpointRecord) -> None:
        self.records.append(record)
        self.size += listing.record_bytes(record)

    def page_limit(self) -> int:
        """Items to read next: room for the records still wanted and some of their writes."""
        return min(LIST_PAGE_MAX, 2 * (self.limit - len(self.records)) + 2)

    def wants(self, key: schema.ItemKey, checkpoint: Item) -> bool:
        """The checks the query could not make: id filters across namespaces, metadata."""
        request = self.request
        if request.checkpoint_id is not None and key.checkpoint_id != request.checkpoint_id:
            return False
        if request.before_id is not None and key.checkpoint_id >= request.before_id:
            return False
        if self.filter is None:
            return True
        metadata = rules.parse_metadata(checkpoint[schema.METADATA]["B"])
        return rules.metadata_matches(metadata, self.filter)


def _cursor(record: m.CheckpointRecord) -> bytes:
    return encode_cursor((record.thread_id, record.checkpoint_ns, record.checkpoint_id))


# --- which threads a listing visits --------------------------------------------------------


class _Threads:
    async def next(self) -> str | None:
        raise NotImplementedError

    async def more(self) -> bool:
        """Whether another thread may follow the last one returned."""
        raise NotImplementedError


class _OneThread(_Threads):
    def __init__(self, thread_id: str, after: ListPosition | None) -> None:
        self._left = [thread_id] if after is None or after[0] <= thread_id else []

    async def next(self) -> str | None:
        return self._left.pop() if self._left else None

    async def more(self) -> bool:
        return False


class _AllThreads(_Threads):
    """Every registered thread from ``first`` on, ascending: the shards' pages merged."""

    def __init__(self, clients: Clients, first: str | None) -> None:
        self._streams = [
            self._shard(clients, shard, first) for shard in range(schema.REGISTRY_SHARDS)
        ]
        self._heap: list[tuple[str, int]] | None = None

    @staticmethod
    def _shard(clients: Clients, shard: int, first: str | None) -> ItemStream:
        pk = schema.registry_pk(shard)
        lo = schema.registry_sk(first or "")
        query = Query(pk, "#pk = :pk AND #sk >= :lo", {":lo": lo}, forward=True)
        return ItemStream(clients, query, THREAD_PAGE_FIRST, grow_to=THREAD_PAGE)

    async def next(self) -> str | None:
        if self._heap is None:
            heads = await asyncio.gather(*(self._head(i) for i in range(len(self._streams))))
            self._heap = [head for head in heads if head is not None]
            heapq.heapify(self._heap)
        if not self._heap:
            return None
        thread_id, shard = heapq.heappop(self._heap)
        head = await self._head(shard)
        if head is not None:
            heapq.heappush(self._heap, head)
        return thread_id

    async def _head(self, shard: int) -> tuple[str, int] | None:
        now = time.time()
        while (item := await self._streams[shard].pull()) is not None:
            if alive(item, now):
                return schema.registered_thread(item[schema.SK]["S"]), shard
        return None

    async def more(self) -> bool:
        return bool(self._heap)
