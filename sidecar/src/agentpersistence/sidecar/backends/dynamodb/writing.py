"""Writes within DynamoDB's limits: batches of 25, transactions of 100 items and 4 MB.

``BatchWriteItem`` may leave items unprocessed (throttling, partition limits): they are sent
again, with a short backoff, until none is left; that loop is the only retry here, botocore
retries everything else. Conditional puts make pending writes idempotent: a write with
``idx >= 0`` is only put where no item has its key, so the first stored copy wins; a
transaction cancelled because such a write exists is sent again without it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from agentpersistence.client.protocol.errors import BackendUnavailable

from .. import aws as errors
from . import schema
from .clients import Clients
from .payloads import Item, item_size

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef, WriteRequestTypeDef

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

    # --- conditional puts ----------------------------------------------------------------

    async def put_first_wins(self, items: Sequence[tuple[Item, bool]]) -> None:
        """Put ``(item, replace)`` pairs atomically (per transaction); an item with
        ``replace`` False is skipped where one with its key exists."""
        if len(items) == 1:
            await self._put_one(*items[0])
            return
        for chunk in _transaction_chunks(items):
            await self._transact(chunk)

    async def _put_one(self, item: Item, replace: bool) -> None:
        with self.clients.table():
            try:
                if replace:
                    await self.clients.dynamodb.put_item(TableName=self.table, Item=item)
                else:
                    await self.clients.dynamodb.put_item(
                        TableName=self.table,
                        Item=item,
                        ConditionExpression=_FIRST_WINS,
                        ExpressionAttributeNames={"#sk": schema.SK},
                    )
            except self.clients.dynamodb.exceptions.ConditionalCheckFailedException:
                return

    async def _transact(self, items: Sequence[tuple[Item, bool]]) -> None:
        pending, retries = list(items), 0
        while pending:
            try:
                with self.clients.table():
                    try:
                        await self.clients.dynamodb.transact_write_items(
                            TransactItems=[self._put(item, replace) for item, replace in pending],
                            ClientRequestToken=str(uuid.uuid4()),
                        )
                        return
                    except self.clients.dynamodb.exceptions.TransactionCanceledException as exc:
                        pending = _without_existing(pending, exc)
            except _Retry:
                retries += 1
                if retries == TRANSACTION_ATTEMPTS:
                    raise BackendUnavailable(
                        f"{self.clients.where_table} kept cancelling a transaction of pending "
                        f"writes (conflicts or throttling) {retries} times; retry later"
                    ) from None
                await asyncio.sleep(UNPROCESSED_BACKOFF_S * 2 ** (retries - 1))

    def _put(self, item: Item, replace: bool) -> TransactWriteItemTypeDef:
        if replace:
            return {"Put": {"TableName": self.table, "Item": item}}
        return {
            "Put": {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": _FIRST_WINS,
                "ExpressionAttributeNames": {"#sk": schema.SK},
            }
        }


class _Retry(Exception):
    """A transaction was cancelled for a reason worth sending it again unchanged."""


def _without_existing(
    pending: list[tuple[Item, bool]], exc: ClientError
) -> list[tuple[Item, bool]]:
    """What to send again after a cancellation: without the first-wins items that exist.

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
    return [pair for pair, code in zip(pending, codes, strict=True) if code == "None"]


def _transaction_chunks(items: Sequence[tuple[Item, bool]]) -> list[list[tuple[Item, bool]]]:
    """Consecutive chunks within the transaction limits (one chunk in the usual case)."""
    chunks: list[list[tuple[Item, bool]]] = [[]]
    size = 0
    for pair in items:
        item_bytes = item_size(pair[0])
        if chunks[-1] and (
            len(chunks[-1]) == TRANSACTION_ITEMS or size + item_bytes > TRANSACTION_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(pair)
        size += item_bytes
    return chunks
