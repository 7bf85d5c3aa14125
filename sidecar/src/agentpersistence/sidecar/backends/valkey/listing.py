"""List pages in the shared listing order (see :mod:`..base`), one thread at a time.

Within a thread, ``list.lua`` walks namespaces ascending and ids descending from the cursor,
reading about as many checkpoints as the page needs: a page of ``k`` costs ``O(k)`` reads
however long the thread. With a filter it examines at most :data:`SCAN_BUDGET` ids per call
and says where it stopped, so a sparse filter pages through candidates in bounded calls
instead of blocking the server. Across threads (``thread_id=None``) the thread index is
read in batches; with a TTL, threads whose keys expired are forgotten first.

A :class:`.schema.Scope` confines a listing to one owner's namespaces (``agentcore-valkey``'s
actors); commands ``along`` a page ride in the round trip of its first script call.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from .. import listing
from ..base import ListPosition, decode_cursor, encode_cursor
from . import records, scripts
from .connection import Arg, Command, Connection, evalsha
from .schema import Keys, Scope

UNSCOPED = Scope()
"""Namespaces stored as sent."""
SCAN_BUDGET = 1000
"""Most ids one ``list.lua`` call examines (bounds the time a sparse filter holds the server)."""
THREAD_BATCH = 100
"""Thread ids read from the thread index per round trip when listing every thread."""
SWEEP_BATCH = 1000
"""Most expired threads forgotten per listing of every thread."""
SWEEP_GRACE_S = 300
"""Seconds past a thread's expiry before it is forgotten: room for clocks that disagree."""


@dataclass
class _Page:
    limit: int
    filter: dict[str, Any] | None
    scope: Scope
    along: list[Command]
    """Commands still to send with the next script call."""
    along_replies: list[Any] | None = None
    records: list[m.CheckpointRecord] = field(default_factory=list)
    size: int = 0
    """Bytes of the records' blobs, against ``listing.PAGE_BYTES``."""

    @property
    def full(self) -> bool:
        return len(self.records) >= self.limit or self.size >= listing.PAGE_BYTES

    def offer(self, record: m.CheckpointRecord) -> None:
        """Keep ``record`` if it matches the filter (the exact rule; the script's is looser)."""
        if self.filter is None or rules.metadata_matches(
            rules.parse_metadata(record.metadata), self.filter
        ):
            self.records.append(record)
            self.size += listing.record_bytes(record)


class Lister:
    """Answers ``list`` requests for the backend."""

    def __init__(self, conn: Connection, keys: Keys, ttl: int) -> None:
        self.conn = conn
        self.keys = keys
        self.ttl = ttl

    async def page(self, request: m.ListRequest, scope: Scope = UNSCOPED) -> m.ListResponse:
        response, _ = await self.page_along(request, scope, ())
        return response

    async def page_along(
        self, request: m.ListRequest, scope: Scope, along: Sequence[Command]
    ) -> tuple[m.ListResponse, list[Any] | None]:
        """A page, and the replies of ``along`` (None if the page needed no script call)."""
        limit = rules.check_page_limit(request.limit)
        page = _Page(limit, rules.parse_filter(request.filter), scope, list(along))
        after = decode_cursor(request.cursor)
        async with contextlib.aclosing(self._thread_batches(request, after)) as batches:
            async for batch in batches:
                for i, thread_id in enumerate(batch):
                    status = await self._fill_from_thread(request, thread_id, after, page)
                    if page.full:
                        more = status != "done" or i + 1 < len(batch) or len(batch) == THREAD_BATCH
                        cursor = _cursor(page.records[-1]) if more else None
                        return m.ListResponse(page.records, cursor), page.along_replies
        return m.ListResponse(page.records, None), page.along_replies

    async def _thread_batches(
        self, request: m.ListRequest, after: ListPosition | None
    ) -> AsyncGenerator[list[str], None]:
        if request.thread_id is not None:
            if after is None or after[0] <= request.thread_id:
                yield [request.thread_id]
            return
        # With a TTL, forget expired threads first, in the round trip of the first batch.
        pending = [self._sweep_expired_threads()] if self.ttl else []
        low = f"[{after[0]}" if after is not None else "-"
        while True:
            read = ("ZRANGEBYLEX", self.keys.threads, low, "+", "LIMIT", 0, THREAD_BATCH)
            *_, found = await self.conn.run(*pending, read)
            pending = []
            batch = [records.text(t) for t in found]
            if batch:
                yield batch
            if len(batch) < THREAD_BATCH:
                return
            low = f"({batch[-1]}"

    def _sweep_expired_threads(self) -> Command:
        now = int(time.time()) - SWEEP_GRACE_S
        keys = [self.keys.threads, self.keys.thread_expiry]
        return evalsha(scripts.SWEEP_THREADS, keys, [now, SWEEP_BATCH])

    async def _fill_from_thread(
        self, request: m.ListRequest, thread_id: str, after: ListPosition | None, page: _Page
    ) -> str:
        """Add the thread's next records to ``page``; the script's last status."""
        scope = page.scope
        start = _start_in(thread_id, after, scope)
        filter_json = json.dumps(page.filter) if page.filter is not None else None
        only_ns = None if request.checkpoint_ns is None else scope.stored(request.checkpoint_ns)
        while True:
            args: list[Arg] = [
                scripts.optional(only_ns),
                scripts.optional(start[0]),
                scripts.optional(start[1]),
                scripts.optional(request.checkpoint_id),
                scripts.optional(request.before_id),
                scripts.optional(filter_json),
                page.limit - len(page.records),
                SCAN_BUDGET,
                scripts.optional(scope.below),
                listing.PAGE_BYTES - page.size,
            ]
            script = evalsha(scripts.LIST, [self.keys.thread_base(thread_id)], args)
            *along, reply = await self.conn.run(*page.along, script)
            if page.along:
                page.along, page.along_replies = [], along
            status, last_ns, last_id, *found = reply
            for ns, cid, flat in found:
                location = (thread_id, scope.public(records.text(ns)), records.text(cid))
                page.offer(records.decode_record(location, flat))
            status = records.text(status)
            if status == "done" or page.full:
                return status
            start = (records.text(last_ns), records.text(last_id))


def _start_in(
    thread_id: str, after: ListPosition | None, scope: Scope
) -> tuple[str | None, str | None]:
    """Where listing resumes inside the thread: after stored ``(ns, id)``, or from the start
    of the scope (its first namespace, whole)."""
    if after is None or after[0] != thread_id:
        return scope.prefix or None, None
    return scope.stored(after[1]), after[2]


def _cursor(record: m.CheckpointRecord) -> bytes:
    return encode_cursor((record.thread_id, record.checkpoint_ns, record.checkpoint_id))
