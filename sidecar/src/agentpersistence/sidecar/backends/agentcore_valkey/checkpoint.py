"""Checkpoints in Valkey in AgentCore's data model: the ``agentcore-valkey`` backend.

It is the ``valkey`` backend (:mod:`..valkey.checkpoint`: its scripts, connection, TTL and
cluster behaviour) with the keys of ``langgraph-checkpoint-aws``'s ``AgentCoreValkeySaver``'s
data model: a thread belongs to an actor (``configurable.actor_id``, else
``defaultActorId``), and its root session id is the thread id. Keys written, with ``P`` the
``keyPrefix`` (``agentcore``), ``T`` the escaped thread id, ``A`` the escaped actor id and
``N`` a namespace (layout of :mod:`..valkey.schema`)::

    P:{t:T}:ns           ZSET  the thread's stored namespaces "A:N", of every actor
    P:{t:T}:latest       HASH  "A:N" -> newest checkpoint id
    P:{t:T}:ids:A%3AN    ZSET  checkpoint ids of actor A's namespace N
    P:{t:T}:cp:A%3AN:I   HASH  checkpoint I with its pending writes
    P:{g}:threads, P:{g}:expiry, P:run:R    the thread and run indexes

All actors of a thread share the thread's hash tag (one cluster slot), so one script reads or
writes any of it and a delete, copy or prune (which name no actor) covers every actor. The
saver's own keys (``agentcore:session:...``, no hash tag: see :mod:`.saver_layout`) cannot
share a slot and so are not written: threads written here are read by this backend only.
Threads the saver wrote are read (``readSaverKeys``, standalone servers): ``get_tuple``
and ``list`` of a named thread also run ``saver_read.lua`` in the same round trip and merge
its records (ours win on equal ids), so a thread the saver started can be continued here.
The saver's namespaces are found only when named, except the root namespace, which is
always read; ``list`` of every thread and deletes see only this backend's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from ...settings import AgentCoreValkeySettings
from .. import listing
from ..agentcore_memory import identity
from ..base import ListPosition, decode_cursor, encode_cursor
from ..valkey import scripts
from ..valkey.checkpoint import ValkeyCheckpointBackend
from ..valkey.schema import Scope, escape
from . import saver_layout


class AgentCoreValkeyCheckpointBackend(ValkeyCheckpointBackend):
    name = "agentcore-valkey"
    script_set = (*scripts.CHECKPOINT, saver_layout.READ)

    def __init__(self, settings: AgentCoreValkeySettings) -> None:
        super().__init__(settings)
        self.default_actor = settings.default_actor_id
        self.read_saver_keys = settings.read_saver_keys

    def scope(self, actor_id: str | None) -> Scope:
        """An actor's namespaces, stored as ``escaped actor:namespace``."""
        return Scope(escape(self._actor(actor_id)) + ":")

    def _actor(self, requested: str | None) -> str:
        return identity.actor_id(requested, self.default_actor)

    def _reads_saver(self) -> bool:
        return self.read_saver_keys and not self.conn.cluster

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        if not self._reads_saver():
            return await super().get_tuple(request)
        actor = self._actor(request.actor_id)
        theirs = saver_layout.read(
            actor, request.thread_id, request.checkpoint_ns, request.checkpoint_id
        )
        reply, found = await self.conn.run(self._get(request), theirs)
        ours = self._decode_get(request, reply)
        records = saver_layout.decode(request.thread_id, request.checkpoint_ns, found)
        if not records or (ours is not None and ours.checkpoint_id >= records[0].checkpoint_id):
            return ours
        return records[0]

    async def list(self, request: m.ListRequest) -> m.ListResponse:
        scope = self.scope(request.actor_id)
        if request.thread_id is None or not self._reads_saver():
            return await self.lister.page(request, scope)
        actor, thread_id = self._actor(request.actor_id), request.thread_id
        namespaces = [request.checkpoint_ns or ""]
        along = [
            saver_layout.read(actor, thread_id, ns, request.checkpoint_id, every=True)
            for ns in namespaces
        ]
        response, replies = await self.lister.page_along(request, scope, along)
        if replies is None:  # the cursor is past the thread
            return response
        theirs = [
            record
            for ns, reply in zip(namespaces, replies, strict=True)
            for record in saver_layout.decode(thread_id, ns, reply)
        ]
        return _merge(request, response, theirs)


def _merge(
    request: m.ListRequest, ours: m.ListResponse, theirs: Sequence[m.CheckpointRecord]
) -> m.ListResponse:
    """A page of ``ours`` (this backend's records) and the saver's records of the same thread,
    in the shared listing order; ours win on equal positions."""
    limit = rules.check_page_limit(request.limit)
    after = decode_cursor(request.cursor)
    metadata_filter = rules.parse_filter(request.filter)
    seen = {listing.position(r) for r in ours.records}
    wanted = [
        r
        for r in theirs
        if listing.position(r) not in seen and _wanted(request, metadata_filter, r, after)
    ]
    merged = sorted([*ours.records, *wanted], key=lambda r: r.checkpoint_id, reverse=True)
    merged.sort(key=lambda r: r.checkpoint_ns)  # stable: namespaces up, ids down
    more = ours.cursor is not None or len(merged) > limit
    page = merged[:limit]
    cursor = encode_cursor(listing.position(page[-1])) if more and page else None
    return m.ListResponse(page, cursor)


def _wanted(
    request: m.ListRequest,
    metadata_filter: dict[str, Any] | None,
    record: m.CheckpointRecord,
    after: ListPosition | None,
) -> bool:
    """Whether the saver's ``record`` belongs in the listing ``request`` continues."""
    if after is not None and not listing.follows(listing.position(record), after):
        return False
    if request.before_id is not None and record.checkpoint_id >= request.before_id:
        return False
    if metadata_filter is None:
        return True
    return rules.metadata_matches(rules.parse_metadata(record.metadata), metadata_filter)
