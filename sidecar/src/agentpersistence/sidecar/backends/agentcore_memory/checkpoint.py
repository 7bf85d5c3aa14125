"""Checkpoints as events of a Bedrock AgentCore Memory: the ``CheckpointBackend``.

Layout (:mod:`.identity`): a thread's namespace is a session of the thread's actor. In it,
each checkpoint is a ``checkpoint`` event and each ``put_writes`` a ``writes`` event, both
tagged with the checkpoint id, so one filtered ``ListEvents`` returns a checkpoint with all
its writes. A checkpoint event's timestamp is the time inside its (time-based) id, so
AgentCore's newest-first order is the checkpoints' order; writes are stamped after their
checkpoint. The root session also registers the thread's other namespaces (``namespace``
events), which is how a thread's sessions are found again.

Calls per operation (records under 675 KB, pages of 100 events):

- ``get_tuple`` of the latest checkpoint: two ``ListEvents`` (the newest checkpoint's id,
  then everything tagged with it), whatever the thread's length; of a given id: one;
- ``put``: one ``CreateEvent`` (one more per 675 KB), plus one the first time this sidecar
  writes a subgraph namespace of the thread;
- ``put_writes``: one ``CreateEvent``;
- ``list(limit=k)``: ``ListEvents`` pages until ``k`` checkpoints, newest first;
- ``delete_thread``, ``copy_thread``, ``prune``: one ``ListActors`` page per 100 actors and
  one ``ListEvents`` per actor (the thread's actor is not part of these requests), then one
  call per event deleted or copied;
- ``delete_for_runs`` and ``list`` without a thread read every session of the memory.

Re-putting a checkpoint id appends an event; the newest one is read. Every event is created
with a client token derived from its content, so a retried call never duplicates an event;
pending writes stored twice are merged by ``(task_id, idx)`` when read.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeAlias

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from ...settings import AgentCoreMemorySettings
from .. import listing, stamps
from ..base import CheckpointBackend, ListPosition
from ..client_lifecycle import ClientLifecycle
from . import identity
from .events import Event, EventLog

CHECKPOINT, WRITES, NAMESPACE, CHUNK = "checkpoint", "writes", "namespace", "chunk"
HEAD = 4
"""Checkpoint events read to find the latest (more only when they share one timestamp)."""
REGISTERED_MAX = 65_536
"""Namespaces this sidecar remembers having registered (an LRU; a miss costs one call)."""

Records: TypeAlias = "list[m.CheckpointRecord]"  # spelled out: inside the class, list is a method
_Sessions: TypeAlias = "list[tuple[str, str]]"
Threads: TypeAlias = "list[tuple[str, _Sessions]]"
"""``(checkpoint_ns, session_id)`` pairs of one thread, namespaces ascending."""


class AgentCoreMemoryCheckpointBackend(ClientLifecycle, CheckpointBackend):
    name = "agentcore-memory"

    def __init__(self, settings: AgentCoreMemorySettings) -> None:
        self.settings = settings
        self.log = EventLog(settings)
        super().__init__(self.log, self.log.ping)
        self._registered: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._clock = stamps.Clock()

    def _actor(self, requested: str | None) -> str:
        return identity.actor_id(requested, self.settings.default_actor_id)

    # --- reads ---------------------------------------------------------------------------

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        actor = self._actor(request.actor_id)
        session = identity.session_id(request.thread_id, request.checkpoint_ns)
        cid = request.checkpoint_id or await self._latest(actor, session)
        if cid is None:
            return None
        return await self._read(actor, session, cid)

    async def _latest(self, actor: str, session: str) -> str | None:
        """The newest checkpoint id of a session, from event metadata (no payloads)."""
        head = await self.log.first(actor, session, {identity.KIND: CHECKPOINT}, count=HEAD)
        if not head:
            return None
        newest = head[0].timestamp
        tied = [event for event in head if event.timestamp == newest]
        if len(tied) == len(head) == HEAD:  # more may share the timestamp: read them all
            tied = []
            async for event in self.log.events(
                actor, session, {identity.KIND: CHECKPOINT}, payloads=False
            ):
                if event.timestamp != newest:
                    break
                tied.append(event)
        tags = {event.metadata.get(identity.CHECKPOINT, "") for event in tied}
        if all(identity.is_exact(t) for t in tags):
            return max(tags)
        ids = []  # ids too odd for metadata: read them from the events themselves
        async for event in self.log.events(actor, session, {identity.KIND: CHECKPOINT}):
            if event.timestamp != newest:
                break
            ids.append(str(event.header.get("cid", "")))
        return max(ids)

    async def _read(self, actor: str, session: str, cid: str) -> m.CheckpointRecord | None:
        where = {identity.CHECKPOINT: identity.tag(cid)}
        events = [event async for event in self.log.events(actor, session, where)]
        return self._record(cid, events)

    def _record(self, cid: str, events: Sequence[Event]) -> m.CheckpointRecord | None:
        """The checkpoint ``cid`` from its events (newest first: the first header wins)."""
        head = next((e for e in events if e.kind == CHECKPOINT and e.header["cid"] == cid), None)
        if head is None:
            return None
        chunks = {(e.header["key"], int(e.header["part"])): e for e in events if e.kind == CHUNK}
        data = self.log.assemble(head, chunks)
        writes = [e for e in events if e.kind == WRITES and e.header["cid"] == cid]
        return _checkpoint(head, data, self._writes(writes, chunks))

    def _writes(
        self, events: Sequence[Event], chunks: dict[tuple[str, int], Event]
    ) -> list[m.PendingWrite]:
        """Pending writes of newest-first ``events``, merged by ``(task_id, idx)``."""
        stored: dict[tuple[str, int], m.PendingWrite] = {}
        for event in reversed(events):
            data = self.log.assemble(event, chunks)
            offset = 0
            for task_id, idx, channel, kind, task_path, size in event.header["writes"]:
                value, offset = data[offset : offset + size], offset + size
                if (task_id, idx) not in stored or rules.write_replaces(idx):
                    stored[(task_id, idx)] = m.PendingWrite(
                        task_id, idx, channel, kind, value, task_path
                    )
        return list(stored.values())

    async def list(self, request: m.ListRequest) -> m.ListResponse:
        return await listing.page(request, self._listing)

    async def _listing(
        self, request: m.ListRequest, after: ListPosition | None
    ) -> AsyncIterator[m.CheckpointRecord]:
        """Records in the shared listing order, from after ``after``."""
        if request.thread_id is None:
            for record in await self._everything():
                if listing.wanted(record, request, after):
                    yield record
            return
        actor = self._actor(request.actor_id)
        for ns, session in await self._sessions(actor, request.thread_id):
            if request.checkpoint_ns is not None and ns != request.checkpoint_ns:
                continue
            if after is not None and (request.thread_id, ns) < after[:2]:
                continue
            if request.checkpoint_id is not None:
                found = await self._read(actor, session, request.checkpoint_id)
                if found is not None and listing.wanted(found, request, after):
                    yield found
                continue
            async for record in self._scan(actor, session):
                if listing.wanted(record, request, after):
                    yield record

    async def _scan(self, actor: str, session: str) -> AsyncIterator[m.CheckpointRecord]:
        """A session's checkpoints, newest first, reading its events once, in order."""
        writes: dict[str, list[Event]] = {}
        chunks: dict[tuple[str, int], Event] = {}
        seen: set[str] = set()
        async for event in self.log.events(actor, session):
            if event.kind == WRITES:
                writes.setdefault(event.header["cid"], []).append(event)
            elif event.kind == CHUNK:
                chunks[(event.header["key"], int(event.header["part"]))] = event
            elif event.kind == CHECKPOINT and event.header["cid"] not in seen:
                cid = event.header["cid"]
                seen.add(cid)
                if event.header.get("chunks"):  # its chunks come later in this order
                    record = await self._read(actor, session, cid)
                    if record is not None:
                        yield record
                    continue
                data = self.log.assemble(event, chunks)
                yield _checkpoint(event, data, self._writes(writes.pop(cid, []), chunks))

    async def _everything(self) -> Records:
        """Every checkpoint of the memory, in the listing order (a full read)."""
        found: Records = []
        for actor in await self.log.actors():
            for session in await self.log.sessions(actor):
                found += [record async for record in self._scan(actor, session)]
        found.sort(key=lambda r: r.checkpoint_id, reverse=True)
        found.sort(key=lambda r: (r.thread_id, r.checkpoint_ns))
        return found

    async def _sessions(self, actor: str, thread_id: str) -> _Sessions:
        """The thread's namespaces and their sessions, from the root session's registry."""
        root = identity.session_id(thread_id, "")
        namespaces = {""}
        async for event in self.log.events(actor, root, {identity.KIND: NAMESPACE}):
            if event.header.get("thread") == thread_id:
                namespaces.add(str(event.header["ns"]))
        return [(ns, identity.session_id(thread_id, ns)) for ns in sorted(namespaces)]

    # --- writes --------------------------------------------------------------------------

    async def put(self, request: m.PutRequest) -> None:
        record = request.record
        actor = self._actor(request.actor_id)
        if record.checkpoint_ns:
            await self._register(actor, record.thread_id, record.checkpoint_ns)
        tags = {identity.CHECKPOINT: identity.tag(record.checkpoint_id)}
        if request.run_id is not None:
            tags[identity.RUN] = identity.tag(request.run_id)
        header = {
            "thread": record.thread_id,
            "ns": record.checkpoint_ns,
            "cid": record.checkpoint_id,
            "parent": record.parent_checkpoint_id,
            "type": record.type,
            "size": len(record.checkpoint),
        }
        await self.log.create(
            actor,
            identity.session_id(record.thread_id, record.checkpoint_ns),
            kind=CHECKPOINT,
            header=header,
            data=record.checkpoint + record.metadata,
            metadata=tags,
            timestamp=stamps.checkpoint_stamp(record.checkpoint_id, self._clock),
        )

    async def put_writes(self, request: m.PutWritesRequest) -> None:
        if not request.writes:
            return
        actor = self._actor(request.actor_id)
        header = {
            "thread": request.thread_id,
            "ns": request.checkpoint_ns,
            "cid": request.checkpoint_id,
            "writes": [
                [w.task_id, w.idx, w.channel, w.type, w.task_path, len(w.value)]
                for w in request.writes
            ],
        }
        await self.log.create(
            actor,
            identity.session_id(request.thread_id, request.checkpoint_ns),
            kind=WRITES,
            header=header,
            data=b"".join(w.value for w in request.writes),
            metadata={identity.CHECKPOINT: identity.tag(request.checkpoint_id)},
            timestamp=self._writes_stamp(request.checkpoint_id),
        )

    async def _register(self, actor: str, thread_id: str, ns: str) -> None:
        """Record a subgraph namespace in the thread's root session (once per sidecar)."""
        key = (actor, thread_id, ns)
        if key in self._registered:
            self._registered.move_to_end(key)
            return
        await self.log.create(
            actor,
            identity.session_id(thread_id, ""),
            kind=NAMESPACE,
            header={"thread": thread_id, "ns": ns},
            timestamp=self._clock.now(),
        )
        self._registered[key] = None
        if len(self._registered) > REGISTERED_MAX:
            self._registered.popitem(last=False)

    def _writes_stamp(self, cid: str) -> dt.datetime:
        """Now, and never before the checkpoint the writes belong to."""
        seconds = stamps.checkpoint_time(cid)
        now = self._clock.now()
        return now if seconds is None else max(now, stamps.at(seconds) + stamps.ONE_US)

    # --- thread-wide operations ----------------------------------------------------------

    async def _threads(self, thread_id: str) -> Threads:
        """Every actor that has this thread, with the thread's sessions under it."""
        found: Threads = []
        root = identity.session_id(thread_id, "")
        for actor in await self.log.actors():
            if await self.log.first(actor, root, {}, count=1):
                found.append((actor, await self._sessions(actor, thread_id)))
        return found

    async def delete_thread(self, thread_id: str) -> None:
        for actor, sessions in await self._threads(thread_id):
            # The root session (with the registry) goes last: an interrupted delete can be
            # retried and still finds every namespace.
            for _, session in sorted(sessions, key=lambda pair: pair[0] == ""):
                events = [e async for e in self.log.events(actor, session, payloads=False)]
                events.sort(key=lambda e: e.kind == NAMESPACE)
                await self.log.delete(events)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = {identity.tag(run) for run in run_ids}
        if not runs:
            return
        for actor in await self.log.actors():
            for session in await self.log.sessions(actor):
                doomed = {
                    event.metadata[identity.CHECKPOINT]
                    async for event in self.log.events(
                        actor, session, {identity.KIND: CHECKPOINT}, payloads=False
                    )
                    if event.metadata.get(identity.RUN) in runs
                }
                for cid_tag in sorted(doomed):
                    await self._delete_tagged(actor, session, cid_tag)

    async def _delete_tagged(self, actor: str, session: str, cid_tag: str) -> None:
        where = {identity.CHECKPOINT: cid_tag}
        events = [e async for e in self.log.events(actor, session, where, payloads=False)]
        events.sort(key=lambda e: e.kind == CHECKPOINT)  # the header last
        await self.log.delete(events)

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        for actor, sessions in await self._threads(source_thread_id):
            for ns, session in sessions:
                if ns:
                    await self._register(actor, target_thread_id, ns)
                events = [event async for event in self.log.events(actor, session)]
                chunks = {
                    (e.header["key"], int(e.header["part"])): e for e in events if e.kind == CHUNK
                }
                target = identity.session_id(target_thread_id, ns)
                for event in reversed(events):  # oldest first, as they were written
                    if event.kind not in (CHECKPOINT, WRITES):
                        continue
                    header = {
                        key: value
                        for key, value in event.header.items()
                        if key not in ("ap", "kind", "key", "chunks")
                    }
                    header["thread"] = target_thread_id
                    tags = {
                        key: value for key, value in event.metadata.items() if key != identity.KIND
                    }
                    await self.log.create(
                        actor,
                        target,
                        kind=event.kind,
                        header=header,
                        data=self.log.assemble(event, chunks),
                        metadata=tags,
                        timestamp=event.timestamp,
                    )

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        rules.check_prune_strategy(strategy)
        for thread_id in thread_ids:
            if strategy == rules.DELETE:
                await self.delete_thread(thread_id)
                continue
            for actor, sessions in await self._threads(thread_id):
                for _, session in sessions:
                    latest = await self._latest(actor, session)
                    if latest is None:
                        continue
                    keep = identity.tag(latest)
                    doomed = [
                        event
                        async for event in self.log.events(actor, session, payloads=False)
                        if event.kind in (CHECKPOINT, WRITES, CHUNK)
                        and event.metadata.get(identity.CHECKPOINT) != keep
                    ]
                    doomed.sort(key=lambda e: e.kind == CHECKPOINT)
                    await self.log.delete(doomed)


def _checkpoint(head: Event, data: bytes, writes: list[m.PendingWrite]) -> m.CheckpointRecord:
    header: dict[str, Any] = head.header
    size = int(header["size"])
    return m.CheckpointRecord(
        thread_id=str(header["thread"]),
        checkpoint_ns=str(header["ns"]),
        checkpoint_id=str(header["cid"]),
        parent_checkpoint_id=header.get("parent"),
        type=str(header["type"]),
        checkpoint=data[:size],
        metadata=data[size:],
        writes=writes,
    )
