"""Cache entries in the sidecar's memory: for development and tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

from agentpersistence.client.protocol import messages as m

from ..base import CacheBackend

_Entry = tuple[m.CacheEntry, float | None]


class MemoryCacheBackend(CacheBackend):
    name = "memory"

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], dict[str, _Entry]] = {}

    async def health(self) -> m.BackendHealth:
        return m.BackendHealth("cache", self.name, True)

    async def get(self, keys: Sequence[m.CacheKey]) -> list[m.CacheEntry]:
        now = time.time()
        hits = []
        for key in keys:
            namespace = self._entries.get(tuple(key.namespace), {})
            found = namespace.get(key.key)
            if found is None:
                continue
            entry, expires_at = found
            if expires_at is not None and now >= expires_at:
                del namespace[key.key]
                continue
            hits.append(entry)
        return hits

    async def set(self, entries: Sequence[m.CacheEntry]) -> None:
        now = time.time()
        for entry in entries:
            expires_at = None if entry.ttl_seconds is None else now + entry.ttl_seconds
            self._entries.setdefault(tuple(entry.namespace), {})[entry.key] = (entry, expires_at)

    async def clear(self, namespaces: Sequence[Sequence[str]] | None) -> None:
        if namespaces is None:
            self._entries.clear()
            return
        for namespace in namespaces:
            self._entries.pop(tuple(namespace), None)
