"""The node cache in Valkey: the ``CacheBackend`` on the key layout of :class:`.schema.CacheKeys`.

Entries are strings holding msgpack ``[type, value, ttl_seconds]`` (the blob as sent), so a
hit answers the entry exactly as it was set. Each namespace has its own hash tag: its
entries and its key index share one cluster slot.

Round trips: ``get`` one (an ``MGET`` per namespace, pipelined); ``set`` one (a ``SET`` with
``PX`` per entry and the index updates, pipelined); ``clear`` of given namespaces one (a
``cache_clear.lua`` per namespace); ``clear`` of everything two (the namespace registry,
then the scripts). Nothing uses ``KEYS`` or ``SCAN``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import ormsgpack

from agentpersistence.client.protocol import messages as m

from ...settings import ValkeyCacheSettings
from ..base import CacheBackend
from . import scripts
from .connection import Command, Connection, evalsha
from .schema import CacheKeys, escape, namespace_path

TRIM_GRACE_MS = 300_000
"""Index members are trimmed this long after their entry expired (room for clocks that
differ), when their namespace is written: an index holds the live keys and at most those
written within TTL + grace before the namespace's last write."""

Namespace = tuple[str, ...]


class ValkeyCacheBackend(CacheBackend):
    name = "valkey"

    def __init__(self, settings: ValkeyCacheSettings) -> None:
        self.settings = settings
        self.keys = CacheKeys(settings.key_prefix)
        self.conn = Connection(settings, scripts.CACHE)

    async def start(self) -> None:
        await self.conn.open()

    async def close(self) -> None:
        await self.conn.close()

    async def health(self) -> m.BackendHealth:
        return await self.conn.health("cache")

    # --- reads ---------------------------------------------------------------------------

    async def get(self, keys: Sequence[m.CacheKey]) -> list[m.CacheEntry]:
        by_namespace: dict[Namespace, list[str]] = defaultdict(list)
        for key in keys:
            by_namespace[tuple(key.namespace)].append(key.key)
        if not by_namespace:
            return []
        commands = [
            ("MGET", *(self.keys.entry(ns, k) for k in names)) for ns, names in by_namespace.items()
        ]
        replies = await self.conn.run(*commands)
        values: dict[tuple[Namespace, str], bytes | None] = {}
        for (ns, names), found in zip(by_namespace.items(), replies, strict=True):
            values.update(zip(((ns, k) for k in names), found, strict=True))
        hits = []
        for key in keys:
            raw = values[(tuple(key.namespace), key.key)]
            if raw is not None:
                hits.append(_decode(key, raw))
        return hits

    # --- writes --------------------------------------------------------------------------

    async def set(self, entries: Sequence[m.CacheEntry]) -> None:
        if not entries:
            return
        now_ms = int(time.time() * 1000)
        commands: list[Command] = []
        written: set[str] = set()
        for entry in entries:
            path = namespace_path(entry.namespace)
            commands += self._set_entry(entry, path, now_ms)
            written.add(path)
        for path in written:
            index = self.keys.index(path)
            commands.append(("ZREMRANGEBYSCORE", index, "-inf", now_ms - TRIM_GRACE_MS))
            commands.append(("SADD", self.keys.namespaces, path))
        await self.conn.write(*commands)

    def _set_entry(self, entry: m.CacheEntry, path: str, now_ms: int) -> list[Command]:
        key, member = self.keys.entry(entry.namespace, entry.key), escape(entry.key)
        index = self.keys.index(path)
        if entry.ttl_seconds is not None and entry.ttl_seconds <= 0:
            return [("DEL", key), ("ZREM", index, member)]  # expired as soon as written
        blob = ormsgpack.packb([entry.type, entry.value, entry.ttl_seconds])
        if entry.ttl_seconds is None:
            return [("SET", key, blob), ("ZADD", index, "+inf", member)]
        ttl_ms = max(1, round(entry.ttl_seconds * 1000))
        return [("SET", key, blob, "PX", ttl_ms), ("ZADD", index, now_ms + ttl_ms, member)]

    async def clear(self, namespaces: Sequence[Sequence[str]] | None) -> None:
        if namespaces is None:
            members = await self.conn.run_one(("SMEMBERS", self.keys.namespaces))
            paths = [raw.decode() for raw in members]
        else:
            paths = list(dict.fromkeys(namespace_path(ns) for ns in namespaces))
        if not paths:
            return
        commands = [self._clear_namespace(path) for path in paths]
        commands.append(("SREM", self.keys.namespaces, *paths))
        await self.conn.write(*commands)

    def _clear_namespace(self, path: str) -> Command:
        return evalsha(scripts.CACHE_CLEAR, [self.keys.index(path)], [self.keys.base(path)])


def _decode(key: m.CacheKey, raw: bytes) -> m.CacheEntry:
    value: Any = ormsgpack.unpackb(raw)
    kind, blob, ttl = value
    return m.CacheEntry(list(key.namespace), key.key, kind, blob, ttl)
