"""Every message that crosses the socket, as frozen dataclasses.

Messages travel as msgpack maps keyed by field name (unknown keys are ignored, so a newer
peer may add optional fields). :func:`decode` checks every field's type on the way in: a
request with a wrong type is rejected with a message naming the field, never half-applied.

Values are opaque here: a checkpoint, a pending write or a stored item is ``(type, bytes)``
produced by LangGraph's serializer in the agent. Metadata and filters are JSON documents.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import RequestRejected

M = TypeVar("M")


# --- checkpoints -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """One write of a task, attached to the checkpoint it will apply to."""

    task_id: str
    idx: int
    """Position in the task's write list; LangGraph's special channels use negative indexes."""
    channel: str
    type: str
    value: bytes
    task_path: str = ""


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A stored checkpoint: the serialized checkpoint, its JSON metadata, its pending writes."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    type: str
    checkpoint: bytes
    metadata: bytes
    """A JSON object."""
    writes: list[PendingWrite] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GetTupleRequest:
    thread_id: str
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None
    """None asks for the latest checkpoint of the namespace."""
    actor_id: str | None = None
    """``configurable.actor_id``: whose thread it is, for backends that scope threads by
    actor (agentcore-memory); the others ignore it. None: the backend's default actor."""


@dataclass(frozen=True, slots=True)
class GetTupleResponse:
    record: CheckpointRecord | None


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One page of checkpoints, newest first within a namespace."""

    thread_id: str | None = None
    checkpoint_ns: str | None = None
    """None lists every namespace of the thread."""
    checkpoint_id: str | None = None
    before_id: str | None = None
    filter: bytes | None = None
    """A JSON object; a record matches when each key's metadata value equals the filter's."""
    limit: int = 100
    """Most records in this page (1..1000)."""
    cursor: bytes | None = None
    """Opaque; pass back the ``cursor`` of the previous page to continue."""
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class ListResponse:
    records: list[CheckpointRecord]
    cursor: bytes | None = None
    """None when there is nothing more to list."""


@dataclass(frozen=True, slots=True)
class PutRequest:
    record: CheckpointRecord
    run_id: str | None = None
    """The run that wrote the checkpoint (from its metadata), for ``delete_for_runs``."""
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class PutWritesRequest:
    """Writes of one task. Writes with ``idx >= 0`` are kept if already stored (first wins);
    negative ``idx`` (errors, interrupts, ...) replace what is stored."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    writes: list[PendingWrite]
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteThreadRequest:
    thread_id: str


@dataclass(frozen=True, slots=True)
class DeleteForRunsRequest:
    run_ids: list[str]


@dataclass(frozen=True, slots=True)
class CopyThreadRequest:
    source_thread_id: str
    target_thread_id: str


@dataclass(frozen=True, slots=True)
class PruneRequest:
    thread_ids: list[str]
    strategy: str = "keep_latest"
    """``keep_latest`` keeps the newest checkpoint of each namespace; ``delete`` removes all."""


# --- store (LangGraph's BaseStore) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreItem:
    namespace: list[str]
    key: str
    value: bytes
    """A JSON object: the sidecar reads values only to evaluate filters."""
    created_at: float
    """Seconds since the epoch."""
    updated_at: float
    score: float | None = None
    """Search relevance; higher is more similar, whatever the distance metric."""


@dataclass(frozen=True, slots=True)
class FieldVector:
    """The embedding of the text at one field path of an item (``"content"``, ``"tags.0"``)."""

    path: str
    vector: list[float]


@dataclass(frozen=True, slots=True)
class NamespaceCondition:
    match_type: str
    """``prefix`` or ``suffix``."""
    path: list[str]
    """Labels to match; ``"*"`` matches any label."""


@dataclass(frozen=True, slots=True)
class StoreOp:
    """One operation of a store batch; ``op`` says which fields apply.

    - ``get``: namespace, key, refresh_ttl.
    - ``put``: namespace, key, value (None deletes), index (field paths to embed in the
      sidecar; None means the configured fields), embed (False: ``index=False``), vectors
      (embeddings computed in the agent), ttl_seconds.
    - ``search``: namespace (the prefix), filter, query and/or query_vector, limit, offset,
      refresh_ttl.
    - ``list_namespaces``: conditions, max_depth, limit, offset.
    """

    op: str
    namespace: list[str] = field(default_factory=list)
    key: str = ""
    value: bytes | None = None
    index: list[str] | None = None
    embed: bool = True
    vectors: list[FieldVector] | None = None
    ttl_seconds: float | None = None
    refresh_ttl: bool = True
    filter: bytes | None = None
    query: str | None = None
    query_vector: list[float] | None = None
    limit: int = 10
    offset: int = 0
    conditions: list[NamespaceCondition] = field(default_factory=list)
    max_depth: int | None = None


@dataclass(frozen=True, slots=True)
class StoreBatchRequest:
    """Reads see the store as it was before the batch; puts apply after, last one wins."""

    ops: list[StoreOp]


@dataclass(frozen=True, slots=True)
class StoreResult:
    item: StoreItem | None = None
    """``get``"""
    items: list[StoreItem] | None = None
    """``search``"""
    namespaces: list[list[str]] | None = None
    """``list_namespaces``"""


@dataclass(frozen=True, slots=True)
class StoreBatchResponse:
    results: list[StoreResult]


# --- cache (LangGraph's BaseCache) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheKey:
    namespace: list[str]
    key: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    namespace: list[str]
    key: str
    type: str
    value: bytes
    ttl_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class CacheGetRequest:
    keys: list[CacheKey]


@dataclass(frozen=True, slots=True)
class CacheGetResponse:
    entries: list[CacheEntry]
    """Only the hits, in no particular order."""


@dataclass(frozen=True, slots=True)
class CacheSetRequest:
    entries: list[CacheEntry]


@dataclass(frozen=True, slots=True)
class CacheClearRequest:
    namespaces: list[list[str]] | None = None
    """None clears everything."""


# --- the sidecar itself ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Empty:
    """A request or response without fields."""


@dataclass(frozen=True, slots=True)
class BackendHealth:
    block: str
    """Which config block: checkpointer, store or cache."""
    backend: str
    ok: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class ReadyResponse:
    ready: bool
    backends: list[BackendHealth]


# --- decoding ----------------------------------------------------------------------------

_Check = Callable[[object, str], object]


def decode(cls: type[M], obj: object) -> M:
    """Build message ``cls`` from its wire form, or raise :class:`RequestRejected`."""
    return typing.cast(M, _checker_for(cls)(obj, cls.__name__))


def _reject(path: str, expected: str, got: object) -> typing.NoReturn:
    raise RequestRejected(f"{path}: expected {expected}, got {type(got).__name__}")


def _scalar(kind: type) -> _Check:
    name = kind.__name__

    def check(value: object, path: str) -> object:
        # bool is an int subclass: an int field must not take True.
        if type(value) is kind or (kind is float and type(value) is int):
            return value
        _reject(path, name, value)

    return check


def _optional(inner: _Check) -> _Check:
    def check(value: object, path: str) -> object:
        return None if value is None else inner(value, path)

    return check


def _list_of(inner: _Check) -> _Check:
    def check(value: object, path: str) -> object:
        if not isinstance(value, list):
            _reject(path, "a list", value)
        return [inner(item, f"{path}[{i}]") for i, item in enumerate(value)]

    return check


def _any(value: object, path: str) -> object:
    return value


_CACHE: dict[object, _Check] = {}


def _checker_for(annotation: object) -> _Check:
    cached = _CACHE.get(annotation)
    if cached is None:
        cached = _CACHE[annotation] = _build_checker(annotation)
    return cached


def _build_checker(annotation: object) -> _Check:
    if annotation is Any:
        return _any
    if annotation in (str, int, bool, bytes, float):
        return _scalar(typing.cast(type, annotation))
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_checker(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        return _list_of(_checker_for(args[0]))
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        return _optional(_checker_for(inner))
    raise TypeError(f"no wire decoder for {annotation!r}")


def _dataclass_checker(cls: type) -> _Check:
    hints = typing.get_type_hints(cls)
    fields = [
        (f.name, _checker_for(hints[f.name]), _is_required(f)) for f in dataclasses.fields(cls)
    ]

    def check(value: object, path: str) -> object:
        if not isinstance(value, dict):
            _reject(path, "a map", value)
        kwargs: dict[str, object] = {}
        for name, field_check, required in fields:
            if name in value:
                kwargs[name] = field_check(value[name], f"{path}.{name}")
            elif required:
                raise RequestRejected(f"{path}.{name}: missing")
        return cls(**kwargs)

    return check


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
