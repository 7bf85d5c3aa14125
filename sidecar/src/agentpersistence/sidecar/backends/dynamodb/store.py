"""The store in DynamoDB: the ``StoreBackend`` on the layout of :mod:`.store_schema`.

A batch's reads see the store as it was before the batch; the TTLs of what they read are
refreshed next; its puts (one per item, ``store_rules.effective_puts``) apply last. Every
read is consistent and compares each item's ``exp_ms`` with the clock: an expired item that
DynamoDB has not deleted yet is never returned. Calls per operation:

- ``get``: one ``BatchGetItem`` for every get of the batch (per 100 keys); a refresh is one
  ``UpdateItem`` per item read that has a TTL;
- ``put``: one ``UpdateItem`` per item (two when it replaces an expired item: a ``PutItem``
  follows), then one ``BatchWriteItem`` per 25 namespaces written (their registry entries);
  a delete is a ``DeleteRequest`` in a ``BatchWriteItem`` (per 25); with ``vectorIndex``, one
  ``BatchGetItem`` first (how many vector items the old items had) and the vector items in
  the batches;
- ``search``: one ``Query`` of the registry (one per shard, 8, for the empty prefix) per 1 MB
  of entries, then one ``Query`` per namespace under the prefix per 1 MB of its items: every
  item under the prefix is read (at most ``maxExactSearch`` of them, or the search is
  refused), filtered and ordered here; a query vector is ranked exactly
  (:mod:`..exact_search`), or with ``vectorIndex`` by ``SearchVectors`` (one call per
  over-fetch round) and one ``BatchGetItem`` of the candidates;
- ``list_namespaces``: the registry ``Query`` as for a search, then, in listing order, one
  ``Query`` (``Limit`` 50, keys only) per namespace until ``offset + limit`` namespaces are
  known to hold a live item: about ``offset + limit`` calls, not one per namespace stored.
  A namespace found without any item loses its registry entry (a conditional ``DeleteItem``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import SidecarError

from ...settings import DynamoDBStoreSettings, IndexSettings
from .. import exact_search
from ..base import StoreBackend
from . import provisioning
from . import store_schema as s
from .clients import Clients
from .store_records import Item, Stored, check_vector, stored_value, vector_attribute
from .writing import Writer

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import QueryInputTypeDef, QueryOutputTypeDef

Namespace = tuple[str, ...]
Clock = Callable[[], float]

CONCURRENCY = 16
"""Calls of one batch in flight at once (namespace reads, updates)."""
GET_KEYS = 100
"""DynamoDB's most keys per ``BatchGetItem``."""
PROBE_LIMIT = 50
"""Items one liveness probe of a namespace examines per call."""
KNN_START, KNN_OVERFETCH, KNN_GROWTH = 10, 3, 4
"""TopK of the first ``SearchVectors``: max(KNN_START, KNN_OVERFETCH * (offset + limit)),
then x4 until the page is settled."""
_LIVE = "(attribute_not_exists(#x) OR #x > :now)"

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


class DynamoDBStoreBackend(StoreBackend):
    name = "dynamodb"

    def __init__(
        self,
        settings: DynamoDBStoreSettings,
        index: IndexSettings | None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.index = index
        self.distance = index.distance if index else "cosine"
        self.bound = settings.max_exact_search
        self.use_index = settings.vector_index and index is not None
        self.clock = clock
        self.clients = Clients(settings)
        self.writer = Writer(self.clients)
        self.table = settings.table_name
        self._limit = asyncio.Semaphore(CONCURRENCY)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.clients.open()
        if not self.use_index and self.index is not None:
            log.info(
                "vector search runs exactly in the sidecar (vectorIndex is off), over at most "
                "maxExactSearch items per search",
                extra={"table": self.table, "max_exact_search": self.bound},
            )

    async def close(self) -> None:
        await self.clients.close()

    async def provision(self) -> None:
        with self.clients.table():
            await provisioning.ensure_store_table(
                self.clients.dynamodb, self.table, self.vector_index()
            )

    def vector_index(self) -> tuple[int, str] | None:
        """(dimensions, distance) of the table's vector index; None without one."""
        if not self.use_index or self.index is None:
            return None
        return self.index.dims, self.index.distance

    async def health(self) -> m.BackendHealth:
        try:
            with self.clients.table():
                table = await self.clients.dynamodb.describe_table(TableName=self.table)
            status = table["Table"].get("TableStatus", "")
            if status not in ("ACTIVE", "UPDATING"):
                raise SidecarError(f"{self.clients.where_table} is {status}, not ACTIVE")
        except SidecarError as exc:
            return m.BackendHealth("store", self.name, False, exc.message)
        return m.BackendHealth("store", self.name, True)

    # --- batches -------------------------------------------------------------------------

    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]:
        for op in ops:
            self._check(op)
        now = self.clock()
        gets, answers = await asyncio.gather(
            self._get_all([op for op in ops if op.op == rules.GET], now),
            asyncio.gather(*(self._staged(op, now) for op in ops if op.op in _STAGED)),
        )
        touch = [found for op, found in gets if op.refresh_ttl and found is not None]
        touch += [found for a in answers if a.op.refresh_ttl for found, _ in a.page]
        await self._refresh(touch, now)
        await self._write(rules.effective_puts(ops), now)
        return _results(ops, gets, answers)

    def _check(self, op: m.StoreOp) -> None:
        rules.check_op(op)
        if op.op in (rules.GET, rules.PUT):
            s.check_item_key(op.namespace, op.key)
        dims = self.index.dims if self.index else None
        if op.op == rules.PUT and op.value is not None:
            for vector in op.vectors or []:
                check_vector(vector.vector, dims, f"the vector of {vector.path!r}")
        if op.op == rules.SEARCH and op.query_vector is not None:
            check_vector(op.query_vector, dims, "the query vector")

    async def _staged(self, op: m.StoreOp, now: float) -> Answer:
        if op.op == rules.SEARCH:
            return Answer(op, page=await self._search(op, now))
        return Answer(op, namespaces=await self._list_namespaces(op, now))

    # --- gets ----------------------------------------------------------------------------

    async def _get_all(
        self, ops: Sequence[m.StoreOp], now: float
    ) -> list[tuple[m.StoreOp, Stored | None]]:
        keys = {(tuple(op.namespace), op.key) for op in ops}
        found = await self._read_items(keys, now)
        return [(op, found.get((tuple(op.namespace), op.key))) for op in ops]

    async def _read_items(
        self, keys: Iterable[tuple[Namespace, str]], now: float
    ) -> dict[tuple[Namespace, str], Stored]:
        wanted = [{s.PK: {"S": s.item_pk(ns)}, s.SK: {"S": s.item_sk(key)}} for ns, key in keys]
        items = await self._batch_get(wanted)
        found = (Stored.of(item) for item in items if s.live(item, now))
        return {(f.namespace, f.key): f for f in found}

    async def _batch_get(self, keys: list[Item], projection: str | None = None) -> list[Item]:
        chunks = [keys[i : i + GET_KEYS] for i in range(0, len(keys), GET_KEYS)]
        pages = await asyncio.gather(*(self._batch_get_chunk(c, projection) for c in chunks))
        return [item for page in pages for item in page]

    async def _batch_get_chunk(self, keys: list[Item], projection: str | None) -> list[Item]:
        out: list[Item] = []
        request: dict[str, Any] = {"Keys": keys, "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        while request.get("Keys"):
            async with self._limit:
                with self.clients.table():
                    page = await self.clients.dynamodb.batch_get_item(
                        RequestItems={self.table: request}  # type: ignore[dict-item]
                    )
            out += page.get("Responses", {}).get(self.table, [])
            left = page.get("UnprocessedKeys", {}).get(self.table)
            request = dict(left) if left else {}
        return out

    # --- searches ------------------------------------------------------------------------

    async def _search(self, op: m.StoreOp, now: float) -> list[tuple[Stored, float | None]]:
        if op.limit == 0:
            return []
        wanted = rules.parse_store_filter(op.filter)
        if op.query_vector is not None and self.use_index:
            return await self._search_index(op, wanted, now)
        found = [f for f in await self._items_under(op.namespace, now) if f.matches(wanted)]
        found.sort(key=lambda f: f.order)
        if op.query_vector is None:
            return [(f, None) for f in found[op.offset : op.offset + op.limit]]
        ranked = exact_search.rank(
            found, _vectors, op.query_vector, self.distance, op.offset, op.limit
        )
        return [(f, score) for score, f in ranked]

    async def _items_under(self, prefix: Sequence[str], now: float) -> list[Stored]:
        """Every live item under ``prefix`` (refused past ``maxExactSearch``)."""
        namespaces = await self._registered(prefix)
        counted = [0]

        async def read(namespace: Namespace) -> list[Stored]:
            out = []
            async for item in self._query(self._namespace_query(namespace)):
                if s.live(item, now):
                    counted[0] += 1
                    if counted[0] > self.bound:
                        raise self._too_many(prefix)
                    out.append(Stored.of(item))
            return out

        pages = await asyncio.gather(*map(read, namespaces))
        return [f for page in pages for f in page]

    def _too_many(self, prefix: Sequence[str]) -> SidecarError:
        how = "by DynamoDB's vector index" if self.use_index else "exactly in the sidecar"
        return exact_search.too_many(self.bound, prefix, how)

    def _namespace_query(self, namespace: Namespace) -> QueryInputTypeDef:
        return {
            "TableName": self.table,
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :k)",
            "ExpressionAttributeNames": {"#pk": s.PK, "#sk": s.SK},
            "ExpressionAttributeValues": {
                ":pk": {"S": s.item_pk(namespace)},
                ":k": {"S": s.ITEM_SK_PREFIX},
            },
            "ConsistentRead": True,
        }

    async def _query(self, request: QueryInputTypeDef) -> AsyncIterator[Item]:
        """The items of a query."""
        async for page in self._pages(request):
            for item in page["Items"]:
                yield item

    async def _pages(self, request: QueryInputTypeDef) -> AsyncGenerator[QueryOutputTypeDef, None]:
        """The pages of a query, each fetched when the last one is used."""
        start: dict[str, Any] | None = None
        while True:
            args = dict(request)
            if start is not None:
                args["ExclusiveStartKey"] = start
            async with self._limit:
                with self.clients.table():
                    page = await self.clients.dynamodb.query(**args)  # type: ignore[arg-type]
            yield page
            start = page.get("LastEvaluatedKey")
            if start is None:
                return

    # --- the registry --------------------------------------------------------------------

    async def _registered(self, prefix: Sequence[str]) -> list[Namespace]:
        return [ns for ns, _ in await self._registry(prefix)]

    async def _registry(self, prefix: Sequence[str]) -> list[tuple[Namespace, str]]:
        """(namespace, at) of every registry entry under ``prefix``."""
        encoded = s.encode_namespace(prefix)

        async def shard(number: int) -> list[tuple[Namespace, str]]:
            condition = "#pk = :pk"
            names = {"#pk": s.PK}
            values: dict[str, Any] = {":pk": {"S": s.registry_pk(number)}}
            if encoded:
                condition += " AND begins_with(#sk, :ns)"
                names["#sk"] = s.SK
                values[":ns"] = {"S": encoded}
            request: QueryInputTypeDef = {
                "TableName": self.table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ConsistentRead": True,
            }
            return [
                (s.decode_namespace(item[s.SK]["S"]), item.get(s.AT, {}).get("S", ""))
                async for item in self._query(request)
            ]

        shards = await asyncio.gather(*map(shard, s.shards_under(prefix)))
        return [entry for entries in shards for entry in entries]

    # --- namespaces ----------------------------------------------------------------------

    async def _list_namespaces(self, op: m.StoreOp, now: float) -> list[list[str]]:
        if op.limit == 0:
            return []
        entries = await self._registry(rules.fixed_prefix(op.conditions))
        matching = sorted(
            (ns, at)
            for ns, at in entries
            if all(rules.namespace_matches(ns, c) for c in op.conditions)
        )
        groups: dict[Namespace, list[tuple[Namespace, str]]] = {}
        for ns, at in matching:
            groups.setdefault(ns[: op.max_depth] if op.max_depth else ns, []).append((ns, at))
        live: list[Namespace] = []
        wanted = op.offset + op.limit
        pending = list(groups.values())
        while pending and len(live) < wanted:
            chunk, pending = pending[: wanted - len(live)], pending[wanted - len(live) :]
            found = await asyncio.gather(*(self._live_member(g, now) for g in chunk))
            live += [ns for ns in found if ns is not None]
        return rules.list_namespaces(live, op)

    async def _live_member(
        self, group: list[tuple[Namespace, str]], now: float
    ) -> Namespace | None:
        for namespace, at in group:
            if await self._holds_live_item(namespace, at, now):
                return namespace
        return None

    async def _holds_live_item(self, namespace: Namespace, at: str, now: float) -> bool:
        request = self._namespace_query(namespace)
        request["FilterExpression"] = _LIVE
        request["ExpressionAttributeNames"] = {
            **request["ExpressionAttributeNames"],
            "#x": s.EXPIRY_MS,
        }
        request["ExpressionAttributeValues"] = {
            **request["ExpressionAttributeValues"],
            ":now": {"N": str(int(now * 1000))},
        }
        request["ProjectionExpression"] = "#pk"
        request["Limit"] = PROBE_LIMIT
        examined = 0
        async with contextlib.aclosing(self._pages(request)) as pages:
            async for page in pages:
                if page["Items"]:
                    return True
                examined += page.get("ScannedCount", 0)
        if examined == 0:
            await self._unregister(namespace, at)
        return False

    async def _unregister(self, namespace: Namespace, at: str) -> None:
        """Drop an empty namespace's entry, unless a put registered it again since ``at``."""
        gone = self.clients.dynamodb.exceptions.ConditionalCheckFailedException
        with self.clients.table(), contextlib.suppress(gone):
            await self.clients.dynamodb.delete_item(
                TableName=self.table,
                Key=s.registry_key(namespace),
                ConditionExpression="#at = :at",
                ExpressionAttributeNames={"#at": s.AT},
                ExpressionAttributeValues={":at": {"S": at}},
            )

    # --- TTL refresh ---------------------------------------------------------------------

    async def _refresh(self, read: Sequence[Stored], now: float) -> None:
        """Restart the TTL of what the batch read (items with one), before its puts."""
        unique = {(f.namespace, f.key): f for f in read if f.ttl is not None}
        await asyncio.gather(*(self._touch(f, now) for f in unique.values()))

    async def _touch(self, found: Stored, now: float) -> None:
        assert found.ttl is not None
        expiry = s.expiry_attributes(now, found.ttl)
        # A condition failure: replaced or deleted since it was read, nothing to refresh.
        moved = self.clients.dynamodb.exceptions.ConditionalCheckFailedException
        async with self._limit:
            with self.clients.table(), contextlib.suppress(moved):
                await self.clients.dynamodb.update_item(
                    TableName=self.table,
                    Key={s.PK: found.raw[s.PK], s.SK: found.raw[s.SK]},
                    UpdateExpression="SET #x = :x, #e = :e",
                    ConditionExpression="#u = :u",
                    ExpressionAttributeNames={
                        "#x": s.EXPIRY_MS,
                        "#e": s.EXPIRES,
                        "#u": s.UPDATED,
                    },
                    ExpressionAttributeValues={
                        ":x": expiry[s.EXPIRY_MS],
                        ":e": expiry[s.EXPIRES],
                        ":u": found.raw[s.UPDATED],
                    },
                )

    # --- writes --------------------------------------------------------------------------

    async def _write(self, puts: dict[tuple[Namespace, str], m.StoreOp], now: float) -> None:
        if not puts:
            return
        old_vectors = await self._old_vector_counts(puts) if self.use_index else {}
        deletes: list[Item] = []
        writes: list[Item] = []
        for (namespace, key), op in puts.items():
            pk = s.item_pk(namespace)
            deletes += [
                {s.PK: {"S": pk}, s.SK: {"S": s.vector_sk(key, i)}}
                for i in range(
                    len(op.vectors or []) if op.value is not None else 0,
                    old_vectors.get((namespace, key), 0),
                )
            ]
            if op.value is None:
                deletes.append({s.PK: {"S": pk}, s.SK: {"S": s.item_sk(key)}})
            elif self.use_index:
                writes += _vector_items(namespace, key, op)
        updates = [(ident, op) for ident, op in puts.items() if op.value is not None]
        await asyncio.gather(*(self._put(ns, key, op, now) for (ns, key), op in updates))
        await self.writer.put_items(writes)
        await self.writer.delete_keys(deletes)
        registered = {ns for (ns, _), _ in updates}
        stamp = uuid.uuid4().hex
        await self.writer.put_items(
            [{**s.registry_key(ns), s.AT: {"S": stamp}} for ns in sorted(registered)]
        )

    async def _old_vector_counts(
        self, puts: dict[tuple[Namespace, str], m.StoreOp]
    ) -> dict[tuple[Namespace, str], int]:
        keys = [{s.PK: {"S": s.item_pk(ns)}, s.SK: {"S": s.item_sk(key)}} for ns, key in puts]
        items = await self._batch_get(keys, f"{s.PK}, {s.SK}, {s.VECTOR_COUNT}")
        return {
            (s.namespace_of_pk(i[s.PK]["S"]), s.key_of_sk(i[s.SK]["S"])): int(
                i.get(s.VECTOR_COUNT, {"N": "0"})["N"]
            )
            for i in items
        }

    async def _put(self, namespace: Namespace, key: str, op: m.StoreOp, now: float) -> None:
        """Update the item in place (keeping ``created`` of a live item), or replace an
        expired one."""
        values = {**stored_value(op), **vector_attribute(op)}
        if self.use_index:
            values[s.VECTOR_COUNT] = {"N": str(len(op.vectors or []))}
        if op.ttl_seconds is not None:
            values[s.TTL] = {"N": repr(float(op.ttl_seconds))}
            values.update(s.expiry_attributes(now, op.ttl_seconds))
        stamp = {"N": repr(now)}
        names = {f"#a{i}": name for i, name in enumerate(values)}
        removed = [a for a in _OPTIONAL if a not in values]
        names.update({f"#r{i}": name for i, name in enumerate(removed)})
        names.update({"#u": s.UPDATED, "#c": s.CREATED, "#x": s.EXPIRY_MS})
        expression = "SET " + ", ".join(
            [f"#a{i} = :a{i}" for i in range(len(values))]
            + ["#u = :now_s", "#c = if_not_exists(#c, :now_s)"]
        )
        if removed:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
        attribute_values = {f":a{i}": v for i, v in enumerate(values.values())}
        attribute_values.update({":now_s": stamp, ":now": {"N": str(int(now * 1000))}})
        key_item = {s.PK: {"S": s.item_pk(namespace)}, s.SK: {"S": s.item_sk(key)}}
        async with self._limit:
            with self.clients.table():
                try:
                    await self.clients.dynamodb.update_item(
                        TableName=self.table,
                        Key=key_item,
                        UpdateExpression=expression,
                        ConditionExpression=_LIVE,
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=attribute_values,
                    )
                    return
                except self.clients.dynamodb.exceptions.ConditionalCheckFailedException:
                    pass  # an expired item not yet deleted by DynamoDB: replace it
                item = {**key_item, **values, s.UPDATED: stamp, s.CREATED: stamp}
                await self.clients.dynamodb.put_item(TableName=self.table, Item=item)

    # --- vector index --------------------------------------------------------------------

    async def _search_index(
        self, op: m.StoreOp, wanted: dict[str, Any] | None, now: float
    ) -> list[tuple[Stored, float | None]]:
        """KNN by ``SearchVectors``, the candidates read and filtered here (bounded)."""
        assert op.query_vector is not None
        need = op.offset + op.limit
        k = min(max(KNN_START, KNN_OVERFETCH * need), self.bound)
        fetched: dict[tuple[Namespace, str], Stored | None] = {}
        while True:
            request = s.search_vectors_request(self.table, op.namespace, op.query_vector, k)
            async with self._limit:
                with self.clients.table():
                    answer = await self.clients.dynamodb.search_vectors(**request)
            results = answer.get("SearchResults", [])
            best: dict[tuple[Namespace, str], float] = {}
            for result in results:
                item = result.get("Item", {})
                ident = (
                    s.namespace_of_pk(item[s.PK]["S"]),
                    s.key_of_vector_sk(item[s.SK]["S"]),
                )
                score = s.score_of(self.distance, float(result.get("Score", 0)))
                best[ident] = max(score, best.get(ident, score))
            missing = [i for i in best if i not in fetched]
            read = await self._read_items(missing, now)
            fetched.update({i: read.get(i) for i in missing})
            ranked = [
                (score, f)
                for ident, score in best.items()
                if (f := fetched[ident]) is not None and f.matches(wanted)
            ]
            if len(results) < k or len(ranked) >= need:
                break
            if k >= self.bound:
                raise self._too_many(op.namespace)
            k = min(k * KNN_GROWTH, self.bound)
        ranked.sort(key=lambda pair: (-pair[0], *pair[1].order))
        page: list[tuple[Stored, float | None]] = [
            (f, score) for score, f in ranked[op.offset : need]
        ]
        if len(page) < op.limit:
            rest = [f for f in await self._items_under(op.namespace, now) if f.matches(wanted)]
            rest = sorted((f for f in rest if not f.vectors), key=lambda f: f.order)
            page += [(f, None) for f in rest[: op.limit - len(page)]]
        return page


@dataclass
class Answer:
    """What a search (a page, refreshed when asked) or a listing (namespaces) answers."""

    op: m.StoreOp
    page: list[tuple[Stored, float | None]] = field(default_factory=list)
    namespaces: list[list[str]] | None = None


_STAGED = (rules.SEARCH, rules.LIST_NAMESPACES)
_OPTIONAL = (s.ENCODING, s.VECTORS, s.TTL, s.EXPIRY_MS, s.EXPIRES)
"""Attributes a put removes when its item has none."""


def _vectors(found: Stored) -> list[list[float]]:
    return found.vectors


def _vector_items(namespace: Namespace, key: str, op: m.StoreOp) -> list[Item]:
    """The items DynamoDB's vector index reads: one per field vector."""
    pk, encoded = s.item_pk(namespace), s.encode_namespace(namespace)
    return [
        {
            s.PK: {"S": pk},
            s.SK: {"S": s.vector_sk(key, i)},
            s.VECTOR: {"L": [{"N": repr(float(x))} for x in vector.vector]},
            s.NAMESPACE_FILTER: {"S": encoded},
        }
        for i, vector in enumerate(op.vectors or [])
    ]


def _results(
    ops: Sequence[m.StoreOp],
    gets: Sequence[tuple[m.StoreOp, Stored | None]],
    answers: Sequence[Answer],
) -> list[m.StoreResult]:
    got, staged = iter(gets), iter(answers)
    results = []
    for op in ops:
        if op.op == rules.GET:
            _, found = next(got)
            results.append(m.StoreResult(item=found.item() if found else None))
        elif op.op == rules.PUT:
            results.append(m.StoreResult())
        else:
            answer = next(staged)
            if answer.namespaces is not None:
                results.append(m.StoreResult(namespaces=answer.namespaces))
            else:
                results.append(m.StoreResult(items=[f.item(sc) for f, sc in answer.page]))
    return results
