"""Store items in the sidecar's memory: for development and tests, lost on restart.

The reference for the store backends: the plainest code for every rule.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules

from ..base import StoreBackend

Namespace = tuple[str, ...]


@dataclasses.dataclass
class _Stored:
    item: m.StoreItem
    value: dict[str, object]
    vectors: list[m.FieldVector]
    ttl_seconds: float | None
    expires_at: float | None

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def touch(self, now: float) -> None:
        if self.ttl_seconds is not None:
            self.expires_at = now + self.ttl_seconds


class MemoryStoreBackend(StoreBackend):
    name = "memory"

    def __init__(self, distance: str = "cosine") -> None:
        self._items: dict[tuple[Namespace, str], _Stored] = {}
        self._distance = distance

    async def health(self) -> m.BackendHealth:
        return m.BackendHealth("store", self.name, True)

    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]:
        for op in ops:
            rules.check_op(op)
        now = time.time()
        self._expire(now)
        results = [self._read(op, now) for op in ops]
        for (namespace, key), op in rules.effective_puts(ops).items():
            self._put(namespace, key, op, now)
        return results

    def _expire(self, now: float) -> None:
        for ident in [i for i, stored in self._items.items() if not stored.live(now)]:
            del self._items[ident]

    def _read(self, op: m.StoreOp, now: float) -> m.StoreResult:
        if op.op == rules.GET:
            stored = self._items.get((tuple(op.namespace), op.key))
            if stored is None:
                return m.StoreResult()
            if op.refresh_ttl:
                stored.touch(now)
            return m.StoreResult(item=stored.item)
        if op.op == rules.SEARCH:
            return m.StoreResult(items=self._search(op, now))
        if op.op == rules.LIST_NAMESPACES:
            namespaces = {namespace for namespace, _ in self._items}
            return m.StoreResult(namespaces=rules.list_namespaces(namespaces, op))
        return m.StoreResult()

    def _search(self, op: m.StoreOp, now: float) -> list[m.StoreItem]:
        wanted = rules.parse_store_filter(op.filter)
        found = [
            stored
            for (namespace, _), stored in self._items.items()
            if rules.has_prefix(namespace, op.namespace)
            and (wanted is None or rules.filter_matches(stored.value, wanted))
        ]
        found.sort(key=lambda s: (s.item.namespace, s.item.key))
        found.sort(key=lambda s: s.item.updated_at, reverse=True)
        if op.query_vector is not None:
            page = self._ranked(found, op.query_vector, op.offset, op.limit)
        else:
            page = [(s, None) for s in found[op.offset : op.offset + op.limit]]
        if op.refresh_ttl:
            for stored, _ in page:
                stored.touch(now)
        return [dataclasses.replace(s.item, score=score) for s, score in page]

    def _ranked(
        self, found: list[_Stored], query: list[float], offset: int, limit: int
    ) -> list[tuple[_Stored, float | None]]:
        scored = [
            (max(rules.similarity(self._distance, query, v.vector) for v in s.vectors), s)
            for s in found
            if s.vectors
        ]
        scored.sort(key=lambda pair: pair[0], reverse=True)
        page: list[tuple[_Stored, float | None]] = [
            (s, score) for score, s in scored[offset : offset + limit]
        ]
        if len(page) < limit:
            # As LangGraph's stores do: items without vectors fill what is left of the page.
            unscored = [s for s in found if not s.vectors]
            page.extend((s, None) for s in unscored[: limit - len(page)])
        return page

    def _put(self, namespace: Namespace, key: str, op: m.StoreOp, now: float) -> None:
        if op.value is None:
            self._items.pop((namespace, key), None)
            return
        previous = self._items.get((namespace, key))
        item = m.StoreItem(
            list(namespace),
            key,
            op.value,
            previous.item.created_at if previous else now,
            now,
        )
        stored = _Stored(
            item, rules.parse_value(op.value), list(op.vectors or []), op.ttl_seconds, None
        )
        stored.touch(now)
        self._items[(namespace, key)] = stored
