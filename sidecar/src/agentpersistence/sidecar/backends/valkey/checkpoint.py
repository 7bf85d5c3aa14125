"""Checkpoints in Valkey: the ``CheckpointBackend`` on the key layout of :mod:`.schema`.

Round trips: ``put``, ``put_writes`` and ``get_tuple`` take one each (one script, plus the
cross-slot index updates in the same pipeline); ``list`` one per thread it reads (more only
when a filter skips over many checkpoints); ``delete_thread`` and ``prune`` one per
:data:`DELETE_BUDGET` checkpoints; ``delete_for_runs`` two; ``copy_thread`` one per batch of
copied checkpoints plus one.

:meth:`ValkeyCheckpointBackend.scope` says where a request's namespaces are stored; here,
as sent. ``agentcore-valkey`` subclasses this backend to store each actor's apart.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from ...settings import ValkeySettings
from ..base import CheckpointBackend
from . import records, scripts
from .connection import Arg, Command, Connection, evalsha
from .listing import Lister
from .schema import Keys, Scope

DELETE_BUDGET = 500
"""Most checkpoints one delete or prune script call removes (bounds its time on the server)."""
DELETE_BATCH = 500
"""Most checkpoints named in one ``delete_checkpoints`` call of ``delete_for_runs``."""
COPY_RECORDS, COPY_BYTES, COPY_SCAN = 100, 8 << 20, 1000
"""Per ``export.lua`` call of ``copy_thread``: most checkpoints, bytes and ids examined."""

Commands = list[Command]  # spelled out here: inside the class, ``list`` is the method


class ValkeyCheckpointBackend(CheckpointBackend):
    name = "valkey"
    script_set: Sequence[scripts.Script] = scripts.CHECKPOINT
    """The scripts the connection loads."""

    def __init__(self, settings: ValkeySettings) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.ttl = settings.ttl_seconds or 0
        """0 keeps keys forever; scripts take it as an argument."""
        self.conn = Connection(settings, self.script_set)
        self.lister = Lister(self.conn, self.keys, self.ttl)

    def scope(self, actor_id: str | None) -> Scope:
        """Where the namespaces of a request by ``actor_id`` are stored: as sent."""
        return Scope()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.conn.open()

    async def close(self) -> None:
        await self.conn.close()

    async def health(self) -> m.BackendHealth:
        return await self.conn.health("checkpointer", self.name)

    # --- reads ---------------------------------------------------------------------------

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        reply = await self.conn.run_one(self._get(request))
        return self._decode_get(request, reply)

    def _get(self, request: m.GetTupleRequest) -> Command:
        base = self.keys.thread_base(request.thread_id)
        ns = self.scope(request.actor_id).stored(request.checkpoint_ns)
        args: list[Arg] = [ns, scripts.optional(request.checkpoint_id)]
        return evalsha(scripts.GET, [base], args)

    @staticmethod
    def _decode_get(request: m.GetTupleRequest, reply: Any) -> m.CheckpointRecord | None:
        if reply is None:
            return None
        checkpoint_id, flat = reply
        location = (request.thread_id, request.checkpoint_ns, records.text(checkpoint_id))
        return records.decode_record(location, flat)

    async def list(self, request: m.ListRequest) -> m.ListResponse:
        return await self.lister.page(request, self.scope(request.actor_id))

    # --- writes --------------------------------------------------------------------------

    async def put(self, request: m.PutRequest) -> None:
        record = request.record
        ns = self.scope(request.actor_id).stored(record.checkpoint_ns)
        location = (record.thread_id, ns, record.checkpoint_id)
        args: list[Arg] = [
            ns,
            record.checkpoint_id,
            *records.record_args(request),
            self.ttl,
        ]
        commands = [evalsha(scripts.PUT, [self.keys.thread_base(record.thread_id)], args)]
        if request.run_id is not None:
            commands += self._index_run(request.run_id, location)
        commands += self._index_thread(record.thread_id)
        await self.conn.write(*commands)

    async def put_writes(self, request: m.PutWritesRequest) -> None:
        if not request.writes:
            return
        ns = self.scope(request.actor_id).stored(request.checkpoint_ns)
        args: list[str | bytes | int] = [ns, request.checkpoint_id, self.ttl]
        for write in request.writes:
            replace = "1" if rules.write_replaces(write.idx) else "0"
            args += [records.write_field(write), records.write_value(write), replace]
        base = self.keys.thread_base(request.thread_id)
        commands = [evalsha(scripts.PUT_WRITES, [base], args)]
        if self.ttl:  # the writes extend the thread's life: so must its expiry in the index
            commands += self._index_thread(request.thread_id)
        await self.conn.write(*commands)

    def _index_thread(self, thread_id: str) -> Commands:
        """Index updates for a write to the thread; the expiry first (see sweep_threads.lua)."""
        commands: list[Command] = []
        if self.ttl:
            expires = int(time.time()) + self.ttl
            commands.append(("ZADD", self.keys.thread_expiry, expires, thread_id))
        commands.append(("ZADD", self.keys.threads, 0, thread_id))
        return commands

    def _index_run(self, run_id: str, location: records.Location) -> Commands:
        key = self.keys.run(run_id)
        commands: list[Command] = [("SADD", key, records.encode_location(location))]
        if self.ttl:
            commands.append(("EXPIRE", key, self.ttl))
        return commands

    # --- deletes -------------------------------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        # Out of the thread index first: a put racing this delete leaves at worst a stale
        # index entry (listing skips it), never a stored thread missing from the index.
        unindex: list[Command] = [
            ("ZREM", self.keys.threads, thread_id),
            ("ZREM", self.keys.thread_expiry, thread_id),
        ]
        await self._drain(thread_id, scripts.DELETE_THREAD, unindex)

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        rules.check_prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == rules.DELETE:
                await self.delete_thread(thread_id)
            else:
                await self._drain(thread_id, scripts.PRUNE, [])

    async def _drain(self, thread_id: str, script: scripts.Script, first: Commands) -> None:
        """Call a budgeted delete script until it is done, unindexing the runs it deleted.

        Both delete scripts take ``budget, resume namespace`` and answer ``{more, resume
        namespace, ns, id, run, ...}`` with the runs of the checkpoints they deleted.
        """
        base = self.keys.thread_base(thread_id)
        pending, resume = first, None
        while True:
            args: list[Arg] = [DELETE_BUDGET, scripts.optional(resume)]
            *_, reply = await self.conn.write(*pending, evalsha(script, [base], args))
            more, raw_resume, *runs = reply
            pending = self._unindex_runs(thread_id, runs)
            if not more:
                break
            resume = records.text(raw_resume)
        if pending:
            await self.conn.write(*pending)

    def _unindex_runs(self, thread_id: str, triples: Sequence[bytes]) -> Commands:
        commands: list[Command] = []
        for i in range(0, len(triples), 3):
            ns, cid, run = (records.text(v) for v in triples[i : i + 3])
            location = records.encode_location((thread_id, ns, cid))
            commands.append(("SREM", self.keys.run(run), location))
        return commands

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Read the runs' indexes, then delete per thread and unindex in one more round trip."""
        if not run_ids:
            return
        members = await self.conn.run(*[("SMEMBERS", self.keys.run(r)) for r in run_ids])
        by_thread: dict[str, list[str]] = defaultdict(list)
        unindex: Commands = []
        for run_id, found in zip(run_ids, members, strict=True):
            for raw in found:
                unindex.append(("SREM", self.keys.run(run_id), raw))
                location = records.decode_location(raw)
                if location is not None:
                    by_thread[location[0]] += [location[1], location[2]]
        deletes = [
            self._delete_checkpoints(thread_id, run_ids, pairs[i : i + 2 * DELETE_BATCH])
            for thread_id, pairs in by_thread.items()
            for i in range(0, len(pairs), 2 * DELETE_BATCH)
        ]
        if deletes or unindex:
            await self.conn.write(*deletes, *unindex)

    def _delete_checkpoints(
        self, thread_id: str, run_ids: Sequence[str], pairs: Sequence[str]
    ) -> Command:
        """Delete these ``ns, id`` pairs of the thread if one of ``run_ids`` wrote them."""
        args: list[Arg] = [len(run_ids), *run_ids, *pairs]
        return evalsha(scripts.DELETE_CHECKPOINTS, [self.keys.thread_base(thread_id)], args)

    # --- copies --------------------------------------------------------------------------

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Export batches from the source and import each while exporting the next."""
        source = self.keys.thread_base(source_thread_id)
        after: tuple[str | None, str | None] = (None, None)
        pending: Commands = []
        while True:
            export = evalsha(scripts.EXPORT, [source], self._export_args(after))
            *_, reply = await self.conn.write(*pending, export)
            more, last_ns, last_id, *found = reply
            pending = self._import(target_thread_id, found)
            if not more:
                break
            after = (records.text(last_ns), records.text(last_id))
        if pending:
            await self.conn.write(*pending)

    @staticmethod
    def _export_args(after: tuple[str | None, str | None]) -> Sequence[str | int]:
        ns, cid = after
        return [
            scripts.optional(ns),
            scripts.optional(cid),
            COPY_RECORDS,
            COPY_BYTES,
            COPY_SCAN,
        ]

    def _import(self, thread_id: str, found: Sequence[Sequence[Any]]) -> Commands:
        """The commands writing exported checkpoints into ``thread_id``, with their indexes."""
        if not found:
            return []
        args: list[str | bytes | int] = [self.ttl]
        commands: list[Command] = []
        for raw_ns, raw_id, flat in found:
            ns, cid = records.text(raw_ns), records.text(raw_id)
            args += [ns, cid, len(flat), *flat]
            run = records.run_of(flat)
            if run is not None:
                commands += self._index_run(run, (thread_id, ns, cid))
        target = self.keys.thread_base(thread_id)
        return [evalsha(scripts.IMPORT, [target], args), *commands, *self._index_thread(thread_id)]
