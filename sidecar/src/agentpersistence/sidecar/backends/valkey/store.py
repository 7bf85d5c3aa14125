"""The store in Valkey: the ``StoreBackend`` on the key layout of :mod:`.store_schema`.

A batch's reads see the store as it was before the batch; its puts (one per item,
``store_rules.effective_puts``) are sent after every read has its answer. Round trips:

- puts and deletes only, or with gets: **1** (the gets' scripts, a sweep of expired index
  entries, then one ``store_put.lua`` per item, in one pipeline);
- ``list_namespaces``: 1 (one more per 1000 namespaces in the listed range);
- search without a query: 1 without a filter (the page is read and refreshed by the script);
  with a filter, 1 per 200 items examined;
- search with a query vector: 2 through the index (``FT.SEARCH``, then one read of the
  candidates; more when a filter or ties make the KNN over-fetch); without an index, 1 per
  1000 items under the prefix;
- then, if the batch has searches or listings, one more round trip for its puts and for
  refreshing the TTLs of the searched items that have one.

Vector search needs a search module. RediSearch 2.10 (what the tests load) and valkey-search
(what AWS runs) differ; queries keep to what both accept: ``FT.CREATE ... ON HASH`` with TAG
and VECTOR fields, ``FT.SEARCH`` with ``DIALECT 2``, a KNN clause behind a TAG pre-filter
whose values are escaped, ``PARAMS``, ``RETURN`` and ``LIMIT``, no ``SORTBY`` (the sidecar
sorts). Without a module (``FT._LIST`` is an unknown command) or without ``index`` settings,
vector search runs exactly in the sidecar, bounded by ``maxExactSearch`` (a WARNING at
start says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules

from ...settings import IndexSettings, ValkeyStoreSettings
from ..base import StoreBackend
from . import errors, scripts, store_records, store_schema
from .connection import Arg, Command, Connection, Refusal, evalsha
from .store_records import decode
from .store_schema import StoreKeys
from .store_search import Page, Searcher

NAMESPACE_BUDGET = 1000
"""Namespaces one ``store_namespaces.lua`` call examines."""
SWEEP_CAP = 100
"""Most expired items whose index entries one batch's sweep drops."""

Answer = Page | list[list[str]]
"""What a search (a page) or a namespace listing answers."""

log = logging.getLogger("agentpersistence.sidecar.valkey")


class ValkeyStoreBackend(StoreBackend):
    name = "valkey"

    def __init__(self, settings: ValkeyStoreSettings, index: IndexSettings | None) -> None:
        self.settings = settings
        self.index = index
        self.keys = StoreKeys(settings.key_prefix)
        self.distance = index.distance if index else "cosine"
        self.conn = Connection(settings, scripts.STORE)
        self.has_search_module = False
        self.searcher = self._searcher()

    def _searcher(self) -> Searcher:
        knn = self.has_search_module and self.index is not None
        return Searcher(self.conn, self.keys, self.settings, self.index, self.distance, knn)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.conn.open()
        try:
            self.has_search_module = await self._detect_search_module()
            if self.has_search_module and self.index is not None:
                await self._check_index(self.index)
        except BaseException:
            await self.conn.close()
            raise
        self.searcher = self._searcher()
        self._log_search_mode()

    async def _detect_search_module(self) -> bool:
        reply = await self.conn.ask(("FT._LIST",), route=self.keys.base)
        if isinstance(reply, Refusal):
            if not errors.is_unknown_command(reply.message):
                log.warning("cannot list search indexes", extra={"valkey": self.conn.where})
            return False
        return True

    async def _check_index(self, index: IndexSettings) -> None:
        """Raise if the index exists with another definition; warn if it does not exist."""
        name = store_schema.index_name(self.settings)
        reply = await self.conn.ask(("FT.INFO", name), route=self.keys.base)
        if isinstance(reply, Refusal):
            if not errors.is_unknown_index(reply.message):
                raise errors.search_refused(reply.message, name, self.conn.where)
            log.warning(
                "the store's search index does not exist: searches with a query vector fail "
                "until it is created (--provision, or the operator)",
                extra={"index": name},
            )
            return
        expected = store_schema.expected_shape(self.settings, index)
        problems = store_schema.differences(store_schema.parse_info(reply), expected)
        if problems:
            raise errors.IndexMismatch(name, problems)

    def _log_search_mode(self) -> None:
        where = {"valkey": self.conn.where, "max_exact_search": self.settings.max_exact_search}
        if self.index is None:
            log.info("no index configured: vector search runs exactly in the sidecar", extra=where)
        elif not self.has_search_module:
            log.warning(
                "Valkey has no search module: vector search runs exactly in the sidecar, over "
                "at most maxExactSearch items per search (more are refused)",
                extra=where,
            )

    async def provision(self) -> None:
        """Create the search index, or adopt an identical one (no-op without a module)."""
        index = self.index
        if index is None or not self.has_search_module:
            return
        outcome = await self.conn.call(
            lambda client: store_schema.ensure_index(client, self.settings, index)
        )
        log.info("store index ready", extra={"outcome": outcome})

    async def close(self) -> None:
        await self.conn.close()

    async def health(self) -> m.BackendHealth:
        return await self.conn.health("store")

    # --- batches -------------------------------------------------------------------------

    async def batch(self, ops: Sequence[m.StoreOp]) -> list[m.StoreResult]:
        for op in ops:
            self._check(op)
        writes = self._writes(ops, time.time())
        gets = [self._get_command(op) for op in ops if op.op == rules.GET]
        staged = [op for op in ops if op.op in (rules.SEARCH, rules.LIST_NAMESPACES)]
        if not staged:  # gets and writes share one round trip; the gets run first
            replies = await self._run(*gets, *writes, durable=bool(writes))
            return _results(ops, replies[: len(gets)], [])
        get_replies, answers = await asyncio.gather(self._run(*gets), self._staged_all(staged))
        touch = [
            member for answer in answers if isinstance(answer, Page) for member in answer.touch
        ]
        await self._run(*self._touch_commands(touch), *writes, durable=bool(writes))
        return _results(ops, get_replies, answers)

    def _check(self, op: m.StoreOp) -> None:
        rules.check_op(op)
        dims = self.index.dims if self.index else None
        if op.op == rules.PUT and op.value is not None:
            for vector in op.vectors or []:
                store_records.check_vector(vector.vector, dims, f"the vector of {vector.path!r}")
        if op.op == rules.SEARCH and op.query_vector is not None:
            store_records.check_vector(op.query_vector, dims, "the query vector")

    async def _run(self, *commands: Command, durable: bool = False) -> list[Any]:
        """Send ``commands`` (none: no round trip); ``durable`` for a batch with writes."""
        if not commands:
            return []
        return await (self.conn.write(*commands) if durable else self.conn.run(*commands))

    def _get_command(self, op: m.StoreOp) -> Command:
        member = store_schema.item_member(op.namespace, op.key)
        args: list[Arg] = ["1" if op.refresh_ttl else "0", "0", member]
        return evalsha(scripts.STORE_READ, [self.keys.base], args)

    def _writes(self, ops: Sequence[m.StoreOp], now: float) -> list[Command]:
        puts = rules.effective_puts(ops)
        if not puts:
            return []
        base = [self.keys.base]
        commands = [evalsha(scripts.STORE_SWEEP, base, [SWEEP_CAP])]
        for op in puts.values():
            commands.append(evalsha(scripts.STORE_PUT, base, store_records.put_args(op, now)))
        return commands

    def _touch_commands(self, members: list[str]) -> list[Command]:
        if not members:
            return []
        return [evalsha(scripts.STORE_TOUCH, [self.keys.base], members)]

    async def _staged_all(self, ops: Sequence[m.StoreOp]) -> list[Answer]:
        return list(await asyncio.gather(*map(self._staged, ops)))

    async def _staged(self, op: m.StoreOp) -> Answer:
        if op.op == rules.SEARCH:
            return await self.searcher.search(op)
        return await self._list_namespaces(op)

    # --- namespaces ----------------------------------------------------------------------

    async def _list_namespaces(self, op: m.StoreOp) -> list[list[str]]:
        low, high = store_schema.lex_range(rules.fixed_prefix(op.conditions))
        found: list[tuple[str, ...]] = []
        while True:
            args: list[Arg] = [low, high, NAMESPACE_BUDGET]
            call = evalsha(scripts.STORE_NAMESPACES, [self.keys.base], args)
            more, last, live = await self.conn.run_one(call)
            found += [store_schema.split_namespace_member(store_records.text(x)) for x in live]
            if not more:
                return rules.list_namespaces(found, op)
            low = "(" + store_records.text(last)


def _get_result(reply: Any) -> m.StoreResult:
    [raw] = reply  # one member per read
    found = decode(raw)
    return m.StoreResult(item=found.item() if found else None)


def _results(
    ops: Sequence[m.StoreOp], get_replies: Sequence[Any], answers: Sequence[Answer]
) -> list[m.StoreResult]:
    gets, staged = iter(get_replies), iter(answers)
    results = []
    for op in ops:
        if op.op == rules.GET:
            results.append(_get_result(next(gets)))
        elif op.op == rules.PUT:
            results.append(m.StoreResult())
        else:
            answer = next(staged)
            if isinstance(answer, Page):
                results.append(m.StoreResult(items=answer.items))
            else:
                results.append(m.StoreResult(namespaces=answer))
    return results
