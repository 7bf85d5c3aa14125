"""Store and cache routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes as r

from ..backends.base import CacheBackend, StoreBackend
from ..embeddings import BatchEmbedder
from .base import RouteHandler, RouteTable

_EMPTY = m.Empty()


def store_routes(backend: StoreBackend, embedder: BatchEmbedder | None = None) -> RouteTable:
    async def batch(req: m.StoreBatchRequest) -> m.StoreBatchResponse:
        ops = req.ops if embedder is None else await embedder.complete(req.ops)
        return m.StoreBatchResponse(await backend.batch(ops))

    return {r.STORE_BATCH.name: RouteHandler(backend.name, batch)}


def cache_routes(backend: CacheBackend) -> RouteTable:
    async def get(req: m.CacheGetRequest) -> m.CacheGetResponse:
        return m.CacheGetResponse(await backend.get(req.keys))

    async def set_(req: m.CacheSetRequest) -> m.Empty:
        await backend.set(req.entries)
        return _EMPTY

    async def clear(req: m.CacheClearRequest) -> m.Empty:
        await backend.clear(req.namespaces)
        return _EMPTY

    handlers: dict[r.Route[Any, Any], Callable[[Any], Awaitable[Any]]] = {
        r.CACHE_GET: get,
        r.CACHE_SET: set_,
        r.CACHE_CLEAR: clear,
    }
    return {route.name: RouteHandler(backend.name, call) for route, call in handlers.items()}
