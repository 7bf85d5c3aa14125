"""The blob-level interfaces every backend implements.

Backends receive protocol messages whose values are opaque ``(type, bytes)`` blobs and
never deserialize them. What a filter matches, which pending write wins and what a prune
strategy keeps are decided by :mod:`agentpersistence.client.protocol.rules`; a backend
decides only how to store and find things quickly.

Listing order, shared by every backend so a cursor means the same everywhere: threads by
id ascending, then namespaces ascending, then checkpoints newest first (ids descending).
The cursor is the position of the last record returned, ``[thread, namespace, id]``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from agentpersistence.client.protocol import framing
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected

ListPosition = tuple[str, str, str]


class Backend(abc.ABC):
    """Lifecycle shared by every backend: opened before the socket appears, closed last."""

    name: str
    block: ClassVar[str]
    """The config block the backend serves, as readiness reports it: checkpointer, store, cache."""

    async def start(self) -> None:
        """Connect and prepare (load scripts, check the schema); raise if impossible."""

    async def provision(self) -> None:
        """Create missing tables, buckets or indexes (``--provision``); no-op by default."""

    async def close(self) -> None:
        """Release connections; called once, after in-flight requests finished."""

    @abc.abstractmethod
    async def health(self) -> m.BackendHealth:
        """A live check of the backend, for readiness."""


class CheckpointBackend(Backend):
    block = "checkpointer"

    @abc.abstractmethod
    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None: ...

    @abc.abstractmethod
    async def list(self, request: m.ListRequest) -> m.ListResponse:
        """One page in the shared listing order, starting after ``request.cursor``."""

    @abc.abstractmethod
    async def put(self, request: m.PutRequest) -> None: ...

    @abc.abstractmethod
    async def put_writes(self, request: m.PutWritesRequest) -> None:
        """Store all writes or none; keep stored ``idx >= 0`` writes (``rules.write_replaces``)."""

    @abc.abstractmethod
    async def delete_thread(self, thread_id: str) -> None: ...

    @abc.abstractmethod
    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints written by these runs, with their pending writes."""

    @abc.abstractmethod
    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and pending write; the target's own records are kept."""

    @abc.abstractmethod
    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        """``keep_latest``: keep the newest checkpoint of each namespace; ``delete``: all."""


class StoreBackend(Backend):
    """LangGraph's ``BaseStore`` at the blob level: values are JSON objects (bytes).

    A batch's reads see the store as it was before the batch; its puts apply afterwards,
    one per item (``store_rules.effective_puts``). Vectors arrive with puts and searches
    (computed by the agent or by the sidecar's embedder); a backend stores and ranks them.
    Searches without a query are ordered by ``updated_at`` descending, then namespace and
    key; with a query, by score descending (``store_rules`` defines scores).
    """

    block = "store"

    @abc.abstractmethod
    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]: ...


class CacheBackend(Backend):
    """LangGraph's ``BaseCache`` at the blob level."""

    block = "cache"

    @abc.abstractmethod
    async def get(self, keys: Sequence[m.CacheKey]) -> list[m.CacheEntry]:
        """The live entries among ``keys``; misses are left out."""

    @abc.abstractmethod
    async def set(self, entries: Sequence[m.CacheEntry]) -> None: ...

    @abc.abstractmethod
    async def clear(self, namespaces: Sequence[Sequence[str]] | None) -> None:
        """Drop the entries of these namespaces (exact match), or of every namespace."""


def encode_cursor(position: ListPosition) -> bytes:
    return framing.pack(list(position))


def decode_cursor(cursor: bytes | None) -> ListPosition | None:
    if cursor is None:
        return None
    try:
        value = framing.unpack(cursor)
    except RequestRejected:
        value = None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise RequestRejected("cursor is not one this sidecar returned; start the listing again")
    return value[0], value[1], value[2]
