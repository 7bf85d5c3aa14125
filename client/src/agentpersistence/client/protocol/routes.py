"""The routes of protocol version 1: the one list both ends are built from.

A route has a dotted name (used in frames), an HTTP path (``/v1/<name with slashes>``) and
its request and response message types. The sidecar registers a handler for every route
and the client has a method for every route; a test holds both to this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from . import messages as m

PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "X-AgentPersistence-Protocol"
IDEMPOTENCY_HEADER = "Idempotency-Key"
"""The HTTP twin of a request frame's request id (see ``framing``)."""
CONTENT_TYPE = "application/msgpack"

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Route(Generic[Req, Resp]):
    name: str
    request: type[Req]
    response: type[Resp]

    @property
    def path(self) -> str:
        return f"/v{PROTOCOL_VERSION}/" + self.name.replace(".", "/")


READY = Route("sidecar.ready", m.Empty, m.ReadyResponse)

CHECKPOINT_GET_TUPLE = Route("checkpoint.get_tuple", m.GetTupleRequest, m.GetTupleResponse)
CHECKPOINT_LIST = Route("checkpoint.list", m.ListRequest, m.ListResponse)
CHECKPOINT_PUT = Route("checkpoint.put", m.PutRequest, m.Empty)
CHECKPOINT_PUT_WRITES = Route("checkpoint.put_writes", m.PutWritesRequest, m.Empty)
CHECKPOINT_DELETE_THREAD = Route("checkpoint.delete_thread", m.DeleteThreadRequest, m.Empty)
CHECKPOINT_DELETE_FOR_RUNS = Route("checkpoint.delete_for_runs", m.DeleteForRunsRequest, m.Empty)
CHECKPOINT_COPY_THREAD = Route("checkpoint.copy_thread", m.CopyThreadRequest, m.Empty)
CHECKPOINT_PRUNE = Route("checkpoint.prune", m.PruneRequest, m.Empty)

STORE_BATCH = Route("store.batch", m.StoreBatchRequest, m.StoreBatchResponse)

CACHE_GET = Route("cache.get", m.CacheGetRequest, m.CacheGetResponse)
CACHE_SET = Route("cache.set", m.CacheSetRequest, m.Empty)
CACHE_CLEAR = Route("cache.clear", m.CacheClearRequest, m.Empty)

ROUTES: dict[str, Route[object, object]] = {
    r.name: r  # type: ignore[misc]
    for r in (
        READY,
        CHECKPOINT_GET_TUPLE,
        CHECKPOINT_LIST,
        CHECKPOINT_PUT,
        CHECKPOINT_PUT_WRITES,
        CHECKPOINT_DELETE_THREAD,
        CHECKPOINT_DELETE_FOR_RUNS,
        CHECKPOINT_COPY_THREAD,
        CHECKPOINT_PRUNE,
        STORE_BATCH,
        CACHE_GET,
        CACHE_SET,
        CACHE_CLEAR,
    )
}

MUTATING = frozenset(ROUTES) - {
    r.name for r in (READY, CHECKPOINT_GET_TUPLE, CHECKPOINT_LIST, CACHE_GET)
}
"""Routes that change stored state. Their requests carry a request id, and the sidecar
answers a retry of one with the reply it already gave: even the ones keyed by id (a
checkpoint, a write) would otherwise be applied again after another client's delete, and
a retried store or cache put would overwrite a newer value. A ``store.batch`` carries an
id only when it holds a put or delete."""
