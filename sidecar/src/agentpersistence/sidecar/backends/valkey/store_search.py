"""Searches of the Valkey store, each answering exactly as the memory backend does.

Three ways to one answer:

- **No query vector**: walk the namespace prefix's sorted set (``store_scan.lua``), whose
  rank order is the search order. Without a filter the script skips ``offset`` items,
  returns the page and refreshes it: one round trip. With a filter the sidecar reads chunks
  and keeps the items ``store_rules.filter_matches`` accepts until the page is full.
- **Query vector, search index**: KNN over the field-vector documents with the namespace as
  a TAG pre-filter (``FT.SEARCH``), then one read of the candidate items. An item scores as
  its best field vector (max pooling; the first ``n`` distinct items of the KNN order are the
  ``n`` best items). The JSON filter is applied here: K starts at three times
  ``offset + limit`` and grows fourfold until enough distinct items match, the index has
  nothing more, or the bound is reached. Items tied with the last one kept are fetched too.
- **Query vector, no index** (no search module, or no ``index`` configured): every item under
  the prefix is read and scored here with ``store_rules.similarity``.

As in the memory backend, when fewer than ``limit`` items with vectors match, items without
vectors (in search order) fill the page.

**Bound**: a search examines at most ``maxExactSearch`` items in the sidecar (K of the KNN,
items read by the exact path or by a filtered walk). A search that needs more is refused
with ``RequestRejected`` naming the setting; it is never answered differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import RequestRejected

from ...settings import IndexSettings, ValkeyStoreSettings
from .. import exact_search
from . import errors, scripts, store_schema
from .connection import Arg, Connection, Refusal, evalsha
from .store_records import Found, decode, pack_vector, text
from .store_schema import StoreKeys

SCAN_BUDGET = 1000
"""Most sorted-set members one ``store_scan.lua`` call examines (bounds its time)."""
FILTER_CHUNK = 200
"""Items a filtered walk asks for per call."""
KNN_START, KNN_OVERFETCH, KNN_GROWTH = 10, 3, 4
"""K of the first KNN query: max(KNN_START, KNN_OVERFETCH * (offset + limit)); then x4."""

Scored = tuple[float | None, Found]


@dataclass
class Page:
    """A search's answer and the members to refresh once the batch's reads are done."""

    items: list[m.StoreItem] = field(default_factory=list)
    touch: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Searcher:
    conn: Connection
    keys: StoreKeys
    settings: ValkeyStoreSettings
    index: IndexSettings | None
    distance: str
    knn: bool
    """Whether vectors are searched by the index (a search module and ``index`` settings)."""

    @property
    def bound(self) -> int:
        return self.settings.max_exact_search

    async def search(self, op: m.StoreOp) -> Page:
        if op.limit == 0:
            return Page()
        wanted = rules.parse_store_filter(op.filter)
        if op.query_vector is None:
            if wanted is None:
                return await self._listed(op)
            found = await self._collect(op.namespace, "", wanted, op.offset + op.limit)
            return _page(op, [(None, f) for f in found[op.offset :]])
        if self.knn:
            return _page(op, await self._ranked_by_index(op, wanted))
        return _page(op, await self._ranked_exactly(op, wanted))

    # --- walks in search order -----------------------------------------------------------

    async def _listed(self, op: m.StoreOp) -> Page:
        """No query, no filter: the script skips, pages and refreshes."""
        walk = _Walk(self, op.namespace, "r" if op.refresh_ttl else "", skip=op.offset)
        found: list[Found] = []
        while walk.more and len(found) < op.limit:
            found += await walk.next(op.limit - len(found))
        return Page([f.item() for f in found])

    async def _collect(
        self, prefix: Sequence[str], flags: str, wanted: dict[str, Any] | None, count: int
    ) -> list[Found]:
        """The first ``count`` items under ``prefix`` that match, in search order (bounded)."""
        walk = _Walk(self, prefix, flags)
        out: list[Found] = []
        examined = 0
        while walk.more and len(out) < count:
            for found in await walk.next(min(FILTER_CHUNK, self.bound + 1 - examined)):
                examined += 1
                if examined > self.bound:
                    raise self._too_many(prefix)
                if found.matches(wanted):
                    out.append(found)
                    if len(out) >= count:
                        break
        return out

    def _too_many(self, prefix: Sequence[str]) -> RequestRejected:
        how = "by the index" if self.knn else "exactly in the sidecar (no search index)"
        return exact_search.too_many(self.bound, prefix, how)

    # --- exact vector search -------------------------------------------------------------

    async def _ranked_exactly(self, op: m.StoreOp, wanted: dict[str, Any] | None) -> list[Scored]:
        """Every item under the prefix, scored here: the memory backend's ranking."""
        assert op.query_vector is not None
        found = await self._collect(op.namespace, "v", wanted, self.bound + 1)
        return exact_search.rank(
            found, _vectors, op.query_vector, self.distance, op.offset, op.limit
        )

    # --- KNN through the index -----------------------------------------------------------

    async def _ranked_by_index(self, op: m.StoreOp, wanted: dict[str, Any] | None) -> list[Scored]:
        assert op.query_vector is not None
        need = op.offset + op.limit
        k = min(max(KNN_START, KNN_OVERFETCH * need), self.bound)
        fetched: dict[str, Found | None] = {}
        while True:
            docs = await self._knn(op.namespace, op.query_vector, k)
            best: dict[str, float] = {}
            for member, distance in sorted(docs, key=lambda doc: doc[1]):
                best.setdefault(member, distance)
            await self._fetch(fetched, [x for x in best if x not in fetched])
            ranked = [
                (distance, found)
                for member, distance in best.items()
                if (found := fetched[member]) is not None and found.matches(wanted)
            ]
            exhausted = len(docs) < k
            if exhausted or _settled(ranked, docs, need):
                break
            if k >= self.bound:
                raise self._too_many(op.namespace)
            k = min(k * KNN_GROWTH, self.bound)
        return await self._with_unscored(op, wanted, ranked)

    async def _with_unscored(
        self, op: m.StoreOp, wanted: dict[str, Any] | None, ranked: list[tuple[float, Found]]
    ) -> list[Scored]:
        scores = [(rules.score_from_distance(self.distance, d), f) for d, f in ranked]
        scores.sort(key=lambda pair: (-pair[0], *pair[1].order))
        page: list[Scored] = list(scores[op.offset : op.offset + op.limit])
        if len(page) < op.limit:  # every item with vectors is in `ranked`
            fill = await self._collect(op.namespace, "n", wanted, op.limit - len(page))
            page += [(None, f) for f in fill]
        return page

    async def _knn(
        self, prefix: Sequence[str], query: list[float], k: int
    ) -> list[tuple[str, float]]:
        """(member, distance) of the ``k`` field vectors nearest ``query`` under ``prefix``."""
        assert self.index is not None
        name = store_schema.index_name(self.settings)
        command: tuple[Arg, ...] = (
            *("FT.SEARCH", name, store_schema.knn_query(prefix, k, self.index)),
            *("PARAMS", 2, "BLOB", pack_vector(query)),
            *("RETURN", 2, store_schema.MEMBER_FIELD, store_schema.DISTANCE_FIELD),
            *("LIMIT", 0, k, "DIALECT", 2),
        )
        reply = await self.conn.ask(command, route=self.keys.base)
        if isinstance(reply, Refusal):
            raise errors.search_refused(reply.message, name, self.conn.where)
        return _documents(reply)

    async def _fetch(self, fetched: dict[str, Found | None], members: list[str]) -> None:
        if not members:
            return
        read = evalsha(scripts.STORE_READ, [self.keys.base], ["0", "0", *members])
        replies = await self.conn.run_one(read)
        for member, reply in zip(members, replies, strict=True):
            fetched[member] = decode(reply)


def _vectors(found: Found) -> list[list[float]]:
    return found.vectors if found.vector_count else []


def _settled(ranked: list[tuple[float, Found]], docs: list[tuple[str, float]], need: int) -> bool:
    """Whether the first ``need`` matching items are known, with every item tied to the last."""
    if len(ranked) < need:
        return False
    return max(distance for _, distance in docs) > ranked[need - 1][0]


def _documents(reply: list[Any]) -> list[tuple[str, float]]:
    """(member, distance) pairs of an ``FT.SEARCH ... RETURN 2 m dist`` reply."""
    docs = []
    for fields in reply[2::2]:
        values = {text(fields[i]): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
        member, distance = values.get(store_schema.MEMBER_FIELD), values.get("dist")
        if member is not None and distance is not None:
            docs.append((text(member), float(distance)))
    return docs


def _page(op: m.StoreOp, scored: list[Scored]) -> Page:
    found = scored[: op.limit]
    touch = [f.member for _, f in found if op.refresh_ttl and f.ttl_ms > 0]
    return Page([f.item(score) for score, f in found], touch)


class _Walk:
    """Successive ``store_scan.lua`` calls over one namespace prefix."""

    def __init__(self, searcher: Searcher, prefix: Sequence[str], flags: str, skip: int = 0):
        self.conn = searcher.conn
        self.base = searcher.keys.base
        self.index = searcher.keys.prefix_index(prefix)
        self.flags = flags
        self.rank, self.skip, self.more = 0, skip, True

    async def next(self, want: int) -> list[Found]:
        args: list[Arg] = [self.index, self.rank, self.skip, want, SCAN_BUDGET, self.flags]
        reply = await self.conn.run_one(evalsha(scripts.STORE_SCAN, [self.base], args))
        more, rank, skip, items = reply
        self.more, self.rank, self.skip = bool(more), int(rank), int(skip)
        return [found for found in map(decode, items) if found is not None]
