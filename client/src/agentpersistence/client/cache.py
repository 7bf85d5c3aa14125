"""``SidecarCache``: LangGraph's node cache (``BaseCache``) kept by the sidecar.

Values are serialized here with the cache's serde; a batch of keys is one request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic

from langgraph.cache.base import BaseCache, FullKey, Namespace, ValueT
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import _transport
from ._connection import DEFAULT_TIMEOUT, SidecarConnection
from .protocol import messages as m
from .protocol import routes


class SidecarCache(SidecarConnection, BaseCache[ValueT], Generic[ValueT]):
    """Node/LLM cache backed by the agentpersistence sidecar; sync and async."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        serde: SerializerProtocol | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: _transport.Transport | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._connect(socket_path, timeout, transport)

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        if not keys:
            return {}
        return self._decode(self._call(routes.CACHE_GET, _get_request(keys)))

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, ValueT]:
        if not keys:
            return {}
        return self._decode(await self._acall(routes.CACHE_GET, _get_request(keys)))

    def set(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        if pairs:
            self._call(routes.CACHE_SET, self._set_request(pairs))

    async def aset(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> None:
        if pairs:
            await self._acall(routes.CACHE_SET, self._set_request(pairs))

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self._call(routes.CACHE_CLEAR, _clear_request(namespaces))

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        await self._acall(routes.CACHE_CLEAR, _clear_request(namespaces))

    def _set_request(self, pairs: Mapping[FullKey, tuple[ValueT, int | None]]) -> m.CacheSetRequest:
        entries = []
        for (namespace, key), (value, ttl) in pairs.items():
            kind, data = self.serde.dumps_typed(value)
            entries.append(m.CacheEntry(list(namespace), key, kind, data, ttl))
        return m.CacheSetRequest(entries)

    def _decode(self, response: m.CacheGetResponse) -> dict[FullKey, ValueT]:
        loads = self.serde.loads_typed
        return {(tuple(e.namespace), e.key): loads((e.type, e.value)) for e in response.entries}


def _get_request(keys: Sequence[FullKey]) -> m.CacheGetRequest:
    return m.CacheGetRequest([m.CacheKey(list(ns), key) for ns, key in keys])


def _clear_request(namespaces: Sequence[Namespace] | None) -> m.CacheClearRequest:
    return m.CacheClearRequest(None if namespaces is None else [list(ns) for ns in namespaces])
