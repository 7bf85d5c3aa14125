"""Writes within DynamoDB's limits: batches of 25, transactions of 100 items and 4 MB.

``BatchWriteItem`` may leave items unprocessed (throttling, partition limits): they are sent
again, with a short backoff, until none is left; that loop and the resending of cancelled
transactions are the only retries here, botocore retries everything else. Conditional puts
make pending writes idempotent: a write with ``idx >= 0`` is only put where no item has its
key, so the first stored copy wins; a transaction cancelled because such a write exists is
sent again without it.

Puts that must land together go in one transaction. A batch of writes too large for one is
sent as several, made atomic by a commit marker in the last (see :mod:`.schema`): its items
are invisible until then, and removed again if the last transaction is refused. Writes that
replace (``idx < 0``) go in the last transaction, so that a refused batch hides nothing that
was visible before.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected

from .. import aws as errors
from . import records, schema
from .clients import Clients
from .payloads import Item, item_size
from .reading import ItemStream, Query

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import PutTypeDef, WriteRequestTypeDef

BATCH_ITEMS = 25
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 4 * 1024 * 1024 - 64 * 1024
"""DynamoDB's 4 MB per transaction, less room for its own accounting."""
BATCH_CONCURRENCY = 4
"""Batches of one operation in flight at once."""
UNPROCESSED_ATTEMPTS = 10
UNPROCESSED_BACKOFF_S = 0.05
TRANSACTION_ATTEMPTS = 5
_RETRY_REASONS = frozenset({"TransactionConflict", *errors.THROTTLING, "ThrottlingError"})
_FIRST_WINS = "attribute_not_exists(#sk)"
_SAME_BATCH = "#batch = :batch"
CLEANUP_CONCURRENCY = 8
"""Conditional deletes of a refused batch's items in flight at once."""

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


class Writer:
    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.table = clients.table_name

    # --- batches -------------------------------------------------------------------------

    async def put_items(self, items: Sequence[Item]) -> None:
        """Put (replace) ``items`` in batches; not atomic, but every item lands or this raises."""
        await self._batches([{"PutRequest": {"Item": item}} for item in items])

    async def delete_keys(self, items: Sequence[Item]) -> None:
        """Delete the items with these keys (other attributes of ``items`` are ignored)."""
        unique = {(i[schema.PK]["S"], i[schema.SK]["S"]): i for i in items}
        keys = [{schema.PK: i[schema.PK], schema.SK: i[schema.SK]} for i in unique.values()]
        await self._batches([{"DeleteRequest": {"Key": key}} for key in keys])

    async def _batches(self, requests: Sequence[WriteRequestTypeDef]) -> None:
        chunks = [requests[i : i + BATCH_ITEMS] for i in range(0, len(requests), BATCH_ITEMS)]
        for i in range(0, len(chunks), BATCH_CONCURRENCY):
            await asyncio.gather(*(self._batch(c) for c in chunks[i : i + BATCH_CONCURRENCY]))

    async def _batch(self, requests: Sequence[WriteRequestTypeDef]) -> None:
        pending = list(requests)
        for attempt in range(UNPROCESSED_ATTEMPTS):
            if attempt:
                await asyncio.sleep(UNPROCESSED_BACKOFF_S * 2 ** (attempt - 1))
            with self.clients.table():
                response = await self.clients.dynamodb.batch_write_item(
                    RequestItems={self.table: pending}
                )
            unprocessed = response.get("UnprocessedItems", {}).get(self.table, [])
            pending = cast("list[WriteRequestTypeDef]", unprocessed)  # output → input shape
            if not pending:
                return
        raise BackendUnavailable(
            f"{self.clients.where_table} left {len(pending)} items unprocessed after "
            f"{UNPROCESSED_ATTEMPTS} attempts; it is throttling, retry later"
        )

    # --- transactions --------------------------------------------------------------------

    async def put_together(self, items: Sequence[Item]) -> None:
        """Put (replace) a few items in one transaction: all of them or none (100, 4 MB)."""
        await self._transact([_Put(item) for item in items])

    async def put_first_wins(
        self, items: Sequence[tuple[Item, bool]], group: WriteGroup
    ) -> list[Item]:
        """Put ``(item, replace)`` pairs of one checkpoint's writes, all or none; an item
        with ``replace`` False is skipped where one with its key exists. Returns the skipped
        items."""
        puts = [_Put(item) if replace else _Put.first_wins(item) for item, replace in items]
        if len(puts) == 1:
            return await self._put_one(puts[0])
        chunks = _transaction_chunks(puts)
        if len(chunks) == 1:
            return await self._transact(chunks[0])
        return await self._put_batch(items, group)

    async def _put_one(self, put: _Put) -> list[Item]:
        with self.clients.table():
            try:
                await self.clients.dynamodb.put_item(TableName=self.table, **put.args())
                return []
            except self.clients.dynamodb.exceptions.ConditionalCheckFailedException as exc:
                old = cast("Item | None", exc.response.get("Item"))
        batch = await self._uncommitted(put, old)
        return [put.item] if batch is None else await self._put_one(put.over(batch))

    async def _uncommitted(self, put: _Put, old: Item | None) -> str | None:
        """The batch of the item that made a first-wins ``put`` fail, if that batch never
        committed: then the item is no stored write, and ``put`` may replace it."""
        if put.condition != _FIRST_WINS or old is None or schema.BATCH not in old:
            return None
        batch = old[schema.BATCH]["S"]
        key = schema.ItemKey(old[schema.SK]["S"])
        marker = schema.marker_sk(key.checkpoint_ns, key.checkpoint_id, batch)
        query = Query.between(old[schema.PK]["S"], marker, marker)
        query.projection = (schema.SK,)
        found = await ItemStream(self.clients, query).all()
        return None if found else batch

    async def _transact(self, puts: Sequence[_Put]) -> list[Item]:
        """Send one transaction (again without the first-wins items found to exist, and again
        after conflicts); returns the items skipped."""
        pending, retries = list(puts), 0
        skipped: list[Item] = []
        while pending:
            try:
                with self.clients.table():
                    try:
                        await self.clients.dynamodb.transact_write_items(
                            TransactItems=[{"Put": self._put(p)} for p in pending],
                            ClientRequestToken=str(uuid.uuid4()),
                        )
                        return skipped
                    except self.clients.dynamodb.exceptions.TransactionCanceledException as exc:
                        pending, dropped = _without_existing(pending, exc)
                for put, old in dropped:
                    batch = await self._uncommitted(put, old)
                    if batch is None:
                        skipped.append(put.item)
                    else:
                        pending.append(put.over(batch))
            except _Retry:
                retries += 1
                if retries == TRANSACTION_ATTEMPTS:
                    raise BackendUnavailable(
                        f"{self.clients.where_table} kept cancelling a transaction "
                        f"(conflicts or throttling) {retries} times; retry later"
                    ) from None
                await asyncio.sleep(UNPROCESSED_BACKOFF_S * 2 ** (retries - 1))
        return skipped

    def _put(self, put: _Put) -> PutTypeDef:
        return cast("PutTypeDef", {"TableName": self.table, **put.args()})

    # --- batches larger than one transaction ---------------------------------------------

    async def _put_batch(self, items: Sequence[tuple[Item, bool]], group: WriteGroup) -> list[Item]:
        """Several transactions, the marker in the last; its items removed if that one is
        certainly refused."""
        batch = schema.batch_id(time.time())
        marker = records.marker_item(*group.location, batch, group.expires)
        what = "checkpoint namespace plus id"
        schema.check_key("sort key", marker[schema.SK]["S"], schema.MAX_SK_BYTES, what)
        visible, invisible = await self._group_keys(group)
        skipped: list[Item] = []
        puts: list[_Put] = []
        replacing: list[_Put] = []
        for item, replace in items:
            stamped: Item = {**item, schema.BATCH: {"S": batch}}
            sk = item[schema.SK]["S"]
            if replace:
                replacing.append(_Put(stamped))
            elif sk in visible:
                skipped.append(item)
            elif sk in invisible:  # left by a refused batch: not a stored write
                puts.append(_Put.same_batch(stamped, invisible[sk]))
            else:
                puts.append(_Put.first_wins(stamped))
        *staged, last = _chunks_ending_with([*puts, *replacing, _Put(marker)])
        sent: list[_Put] = []
        try:
            for chunk in staged:
                sent += chunk
                skipped += await self._transact(chunk)
        except Exception:
            await self._remove_batch(sent, batch)
            raise
        try:
            skipped += await self._transact(last)
        except Exception as exc:
            if refused(exc):
                await self._remove_batch(sent, batch)
            raise
        return skipped

    async def _group_keys(self, group: WriteGroup) -> tuple[set[str], dict[str, str]]:
        """Sort keys of the checkpoint's visible writes, and of invisible ones with their
        batch: one consistent read of its run of items (keys only)."""
        ns, cid = group.location[1:]
        pk = schema.thread_pk(group.location[0])
        query = Query.between(pk, schema.checkpoint_sk(ns, cid), schema.group_upper(ns, cid))
        query.projection = (schema.SK, schema.BATCH)
        markers: set[str] = set()
        batched: dict[str, str] = {}
        visible: set[str] = set()
        for item in await ItemStream(self.clients, query).all():
            sk = item[schema.SK]["S"]
            key = schema.ItemKey(sk)
            if key.batch is not None:
                markers.add(key.batch)
            elif key.write is not None:
                if schema.BATCH in item:
                    batched[sk] = item[schema.BATCH]["S"]
                else:
                    visible.add(sk)
        visible.update(sk for sk, b in batched.items() if b in markers)
        return visible, {sk: b for sk, b in batched.items() if b not in markers}

    async def _remove_batch(self, puts: Sequence[_Put], batch: str) -> None:
        """Best effort: delete what a batch that will never commit stored (only items still
        of that batch). What is left stays invisible until the sweep removes it."""
        limit = asyncio.Semaphore(CLEANUP_CONCURRENCY)

        async def remove(item: Item) -> None:
            async with limit:
                await self.remove_uncommitted(item, batch)

        results = await asyncio.gather(*(remove(p.item) for p in puts), return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning(
                "items of a refused batch of writes are left for the sweep (invisible)",
                extra={"table": self.table, "left": len(failed), "error": type(failed[0]).__name__},
            )

    async def remove_uncommitted(self, item: Item, batch: str) -> None:
        """Delete an item of a batch that never committed, if it is still of that batch."""
        with self.clients.table():
            try:
                await self.clients.dynamodb.delete_item(
                    TableName=self.table,
                    Key=records.key_of(item),
                    ConditionExpression=_SAME_BATCH,
                    ExpressionAttributeNames={"#batch": schema.BATCH},
                    ExpressionAttributeValues={":batch": {"S": batch}},
                )
            except self.clients.dynamodb.exceptions.ConditionalCheckFailedException:
                return


@dataclass(frozen=True)
class WriteGroup:
    """Where a checkpoint's writes go, and their expiry (for a batch's marker)."""

    location: tuple[str, str, str]
    """(thread id, checkpoint namespace, checkpoint id)."""
    expires: int | None = None


@dataclass(frozen=True)
class _Put:
    """One put of a transaction: the item, and the condition under which it may be put."""

    item: Item
    condition: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def first_wins(cls, item: Item) -> _Put:
        return cls(item, _FIRST_WINS, {"#sk": schema.SK})

    @classmethod
    def same_batch(cls, item: Item, batch: str) -> _Put:
        """Replace an invisible item of a refused batch (unless it changed meanwhile)."""
        return cls(item, _SAME_BATCH, {"#batch": schema.BATCH}, {":batch": {"S": batch}})

    def over(self, batch: str) -> _Put:
        """This put, over an item of a batch that never committed."""
        return _Put.same_batch(self.item, batch)

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"Item": self.item}
        if self.condition is not None:
            args["ConditionExpression"] = self.condition
            args["ExpressionAttributeNames"] = self.names
            if self.values:
                args["ExpressionAttributeValues"] = self.values
        if self.condition == _FIRST_WINS:  # to tell a stored write from a batch's leftover
            args["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return args


class _Retry(Exception):
    """A transaction was cancelled for a reason worth sending it again unchanged."""


def refused(exc: BaseException) -> bool:
    """Whether a write that raised ``exc`` certainly stored nothing: DynamoDB answered with a
    refusal (a 4xx, a cancelled transaction), or it was refused before it was sent. After a
    timeout, a lost connection or a 5xx answer the outcome is unknown."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return 400 <= int(status or 0) < 500
        if isinstance(seen, _Retry):
            return True
        seen = seen.__context__
    return isinstance(exc, RequestRejected)


def _without_existing(
    pending: list[_Put], exc: ClientError
) -> tuple[list[_Put], list[tuple[_Put, Item | None]]]:
    """What to send again after a cancellation, and the first-wins puts whose item exists
    (with that item, as DynamoDB returned it).

    Raises :class:`_Retry` for conflicts and throttling, re-raises anything else.
    """
    reasons = exc.response.get("CancellationReasons", [])
    codes = [str(r.get("Code", "None")) for r in reasons]
    if len(codes) != len(pending):
        raise exc
    if any(code in _RETRY_REASONS for code in codes):
        raise _Retry
    if any(code not in ("None", "ConditionalCheckFailed") for code in codes):
        raise exc
    if any(code != "None" and p.condition is None for p, code in zip(pending, codes, strict=True)):
        raise exc
    kept = [p for p, code in zip(pending, codes, strict=True) if code == "None"]
    dropped = [
        (p, cast("Item | None", reason.get("Item")))
        for p, reason, code in zip(pending, reasons, codes, strict=True)
        if code != "None"
    ]
    return kept, dropped


def _transaction_chunks(puts: Sequence[_Put]) -> list[list[_Put]]:
    """Consecutive chunks within the transaction limits (one chunk in the usual case)."""
    chunks: list[list[_Put]] = [[]]
    size = 0
    for put in puts:
        item_bytes = item_size(put.item)
        if chunks[-1] and (
            len(chunks[-1]) == TRANSACTION_ITEMS or size + item_bytes > TRANSACTION_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(put)
        size += item_bytes
    return chunks


def _chunks_ending_with(puts: Sequence[_Put]) -> list[list[_Put]]:
    """Chunks as :func:`_transaction_chunks` makes them, the last one as full as it can be
    (it holds what must land last: the replacing writes and the marker)."""
    backwards = _transaction_chunks(puts[::-1])
    return [chunk[::-1] for chunk in backwards[::-1]]
