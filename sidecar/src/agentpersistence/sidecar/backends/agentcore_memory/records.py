"""Memory records of one AgentCore Memory: the calls the store makes, paged and bounded.

Listings (``ListMemoryRecords``) and retrievals (``RetrieveMemoryRecords``) ask for pages of
:data:`PAGE` records, the most AgentCore returns. A listing stops and is refused once it
has examined more than its bound (the store's ``maxScan``). Creates and updates go 100
records per call (AgentCore's batch limit); a create carries a ``clientToken`` derived from
its records, so a retried call creates nothing twice. A record a batch update cannot find
is reported back (it was deleted meanwhile); any other failed record fails the call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from agentpersistence.client.protocol.errors import (
    BackendUnavailable,
    RequestRejected,
    SidecarError,
)

from .. import aws
from .client import MemoryClient

PAGE = 100
"""Records per ListMemoryRecords/RetrieveMemoryRecords call (the most AgentCore returns)."""
BATCH = 100
"""Records per BatchCreateMemoryRecords/BatchUpdateMemoryRecords call (AgentCore's limit)."""
TOP_K_MAX = 100
"""The most records one RetrieveMemoryRecords ranks (``topK``)."""
HEALTH_NAMESPACE = "/agentpersistence-health"
"""An exact namespace no item uses: listing it is the cheapest call that needs the memory."""

Summary = Mapping[str, Any]
"""A record as ListMemoryRecords, RetrieveMemoryRecords and GetMemoryRecord answer it."""
TooMany = Callable[[], RequestRejected]
"""Builds the refusal of a listing that would examine more records than its bound."""


@dataclass(frozen=True)
class Draft:
    """A record to create (``record_id`` None) or to update."""

    namespace: str
    text: str
    metadata: Mapping[str, Any]
    timestamp: dt.datetime
    record_id: str | None = None


class Records:
    """The record calls of the store, on a :class:`MemoryClient`."""

    def __init__(self, memory: MemoryClient) -> None:
        self.memory = memory

    async def ping(self) -> None:
        """One cheap call that fails if the memory is missing or unreachable."""
        with self.memory.translated():
            await self.memory.client.list_memory_records(
                memoryId=self.memory.memory_id, namespace=HEALTH_NAMESPACE, maxResults=1
            )

    # --- reading -------------------------------------------------------------------------

    async def exact(self, namespace: str) -> list[Summary]:
        """The records in exactly ``namespace`` (one call unless it holds over 100)."""
        return await self._list({"namespace": namespace}, None)

    async def under(
        self, path: str, bound: int, too_many: TooMany, strategy_id: str | None = None
    ) -> list[Summary]:
        """The records in ``path`` and every namespace under it (of one strategy, if given);
        refused past ``bound``."""
        where = {"namespacePath": path}
        if strategy_id is not None:
            where["memoryStrategyId"] = strategy_id
        return await self._list(where, (bound, too_many))

    async def _list(
        self, where: Mapping[str, str], bounded: tuple[int, TooMany] | None
    ) -> list[Summary]:
        request: dict[str, Any] = {"memoryId": self.memory.memory_id, "maxResults": PAGE, **where}
        found: list[Summary] = []
        while True:
            with self.memory.translated():
                answer = await self.memory.client.list_memory_records(**request)
            found += answer.get("memoryRecordSummaries", [])
            if bounded is not None and len(found) > bounded[0]:
                raise bounded[1]()
            token = answer.get("nextToken")
            if not token:
                return found
            request["nextToken"] = token

    async def retrieve(
        self, path: str, query: str, top_k: int, strategy_id: str | None = None
    ) -> list[Summary]:
        """AgentCore's best ``top_k`` records under ``path`` for ``query``, best first."""
        criteria: dict[str, Any] = {"searchQuery": query, "topK": top_k}
        if strategy_id is not None:
            criteria["memoryStrategyId"] = strategy_id
        request: dict[str, Any] = {
            "memoryId": self.memory.memory_id,
            "namespacePath": path,
            "searchCriteria": criteria,
            "maxResults": PAGE,
        }
        found: list[Summary] = []
        while True:
            with self.memory.translated():
                answer = await self.memory.client.retrieve_memory_records(**request)
            found += answer.get("memoryRecordSummaries", [])
            token = answer.get("nextToken")
            if not token or len(found) >= top_k:
                return found[:top_k]
            request["nextToken"] = token

    async def get(self, record_id: str) -> Summary | None:
        with self.memory.translated():
            try:
                answer = await self.memory.client.get_memory_record(
                    memoryId=self.memory.memory_id, memoryRecordId=record_id
                )
            except ClientError as exc:
                if aws.code_of(exc) == "ResourceNotFoundException":
                    return None
                raise
        record: Summary = answer["memoryRecord"]
        return record

    # --- writing -------------------------------------------------------------------------

    async def create(self, drafts: Sequence[Draft]) -> None:
        chunks = [drafts[i : i + BATCH] for i in range(0, len(drafts), BATCH)]
        await asyncio.gather(*map(self._create, chunks))

    async def _create(self, drafts: Sequence[Draft]) -> None:
        records: list[Any] = [
            {
                "requestIdentifier": str(i),
                "namespaces": [draft.namespace],
                "content": {"text": draft.text},
                "timestamp": draft.timestamp,
                "metadata": dict(draft.metadata),
            }
            for i, draft in enumerate(drafts)
        ]
        with self.memory.translated():
            answer = await self.memory.client.batch_create_memory_records(
                memoryId=self.memory.memory_id, records=records, clientToken=_token(drafts)
            )
        for failed in answer.get("failedRecords", []):
            raise self._failed("BatchCreateMemoryRecords", failed)

    async def update(self, drafts: Sequence[Draft]) -> list[Draft]:
        """Update the records; answers the drafts whose record no longer exists."""
        chunks = [drafts[i : i + BATCH] for i in range(0, len(drafts), BATCH)]
        gone = await asyncio.gather(*map(self._update, chunks))
        return [draft for chunk in gone for draft in chunk]

    async def _update(self, drafts: Sequence[Draft]) -> list[Draft]:
        records: list[Any] = [
            {
                "memoryRecordId": draft.record_id,
                "timestamp": draft.timestamp,
                "content": {"text": draft.text},
                "metadata": dict(draft.metadata),
            }
            for draft in drafts
        ]
        with self.memory.translated():
            answer = await self.memory.client.batch_update_memory_records(
                memoryId=self.memory.memory_id, records=records
            )
        by_id = {draft.record_id: draft for draft in drafts}
        gone = []
        for failed in answer.get("failedRecords", []):
            if failed.get("errorCode") != 404:
                raise self._failed("BatchUpdateMemoryRecords", failed)
            gone.append(by_id[failed["memoryRecordId"]])
        return gone

    async def delete(self, record_id: str, namespace: str) -> None:
        """Delete a record; one already gone is deleted."""
        with self.memory.translated():
            try:
                await self.memory.client.delete_memory_record(
                    memoryId=self.memory.memory_id, memoryRecordId=record_id, namespace=namespace
                )
            except ClientError as exc:
                if aws.code_of(exc) != "ResourceNotFoundException":
                    raise

    def _failed(self, operation: str, failed: Mapping[str, Any]) -> SidecarError:
        code = int(failed.get("errorCode") or 0)
        detail = str(failed.get("errorMessage", ""))[:200]
        message = f"{self.memory.where}: {operation} failed a record ({code}): {detail}"
        if code == 429 or code >= 500:
            return BackendUnavailable(message + "; retry later")
        if 400 <= code < 500:
            return RequestRejected(message)
        return SidecarError(message)


def top_k(need: int, filtered: bool, max_scan: int) -> int:
    """How many records a search with a query asks AgentCore to rank: the page (``offset +
    limit``), or with a filter (applied in the sidecar) as many as it may: 100 (AgentCore's
    most), or ``maxScan`` if lower."""
    cap = min(TOP_K_MAX, max_scan)
    return cap if filtered else max(1, min(cap, need))


def _token(drafts: Sequence[Draft]) -> str:
    """The idempotency token of a create: equal records at equal times, equal tokens."""
    h = hashlib.sha256()
    for draft in drafts:
        part = [draft.namespace, draft.text, draft.timestamp.isoformat(), dict(draft.metadata)]
        h.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()
