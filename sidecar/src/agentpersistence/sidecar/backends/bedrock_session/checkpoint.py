"""Checkpoints as invocation steps of Bedrock Agent Runtime sessions: the ``CheckpointBackend``.

Layout in :mod:`.layout`, thread → session in :mod:`.directory`. Calls per operation, for a
thread this sidecar has seen (its session cached), records of any size:

- ``get_tuple`` of the latest checkpoint: one ``ListInvocationSteps`` (the newest checkpoint
  steps of the namespace), one ``GetInvocationStep`` (the checkpoint), one
  ``ListInvocationSteps`` (its writes) and one ``GetInvocationStep`` per ``put_writes`` call
  stored for it, whatever the thread's length; of a given id, the same less the first call;
- ``put``: one ``PutInvocationStep``, plus three calls the first time this sidecar writes a
  namespace of the session (the namespace's invocation and registration);
- ``put_writes``: one ``PutInvocationStep``, plus one ``CreateInvocation`` the first time
  this sidecar writes the checkpoint's writes;
- a thread not seen yet: one ``GetInvocationStep`` in the directory; a new one also
  ``CreateSession``, ``PutInvocationStep`` and ``GetInvocationStep`` (the mapping, read back);
- ``list``, ``copy_thread``, ``prune``, ``delete_for_runs``: one ``GetInvocationStep`` per
  checkpoint read (the API lists steps without their payloads); ``delete_thread``: the
  lookup, ``EndSession``, ``DeleteSession`` and the mapping's tombstone.

Steps cannot be deleted one by one: ``prune`` and ``delete_for_runs`` overwrite a deleted
checkpoint and its writes with tombstones (:data:`layout.TOMBSTONE_TIME`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import rules

from ...settings import BedrockSessionSettings
from .. import listing, stamps
from ..base import CheckpointBackend, ListPosition
from ..client_lifecycle import ClientLifecycle
from . import layout
from .client import Missing, SessionsClient
from .directory import Directory

HEAD = 4
"""Checkpoint summaries read to find the latest (more only when they share one time)."""
READY_MAX = 65_536
"""Invocations this sidecar remembers having created (an LRU; a miss costs one call)."""
T = TypeVar("T")
Steps: TypeAlias = "list[layout.Step]"
Names: TypeAlias = "list[str]"
Writes: TypeAlias = "list[m.PendingWrite]"


class BedrockSessionCheckpointBackend(ClientLifecycle, CheckpointBackend):
    name = "bedrock-session"

    def __init__(self, settings: BedrockSessionSettings) -> None:
        self.settings = settings
        self.calls = SessionsClient(settings)
        super().__init__(self.calls, self.calls.ping)
        self.directory = Directory(self.calls, settings)
        self._ready: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._clock = stamps.Clock()

    # --- reads ---------------------------------------------------------------------------

    async def get_tuple(self, request: m.GetTupleRequest) -> m.CheckpointRecord | None:
        thread, ns = request.thread_id, request.checkpoint_ns
        session = await self.directory.session_of(thread, create=False)
        if session is None:
            return None
        if request.checkpoint_id is not None:
            step = await self._checkpoint(session, thread, ns, request.checkpoint_id)
        else:
            step = await self._latest(session, thread, ns)
        return None if step is None else await self._record(session, step)

    async def _checkpoint(self, session: str, thread: str, ns: str, cid: str) -> layout.Step | None:
        step_id = layout.checkpoint_step(thread, ns, cid)
        step = await self.calls.get_step(session, layout.checkpoints(thread, ns), step_id)
        return step if step is not None and step.kind == layout.CHECKPOINT else None

    async def _latest(self, session: str, thread: str, ns: str) -> layout.Step | None:
        """The newest live checkpoint of a namespace, from the newest step summaries."""
        invocation = layout.checkpoints(thread, ns)
        head = await self.calls.first(session, invocation, HEAD)
        live = [s for s in head if s["invocationStepTime"] > layout.TOMBSTONE_TIME]
        if not live:
            return None
        newest = live[0]["invocationStepTime"]
        tied = [s for s in live if s["invocationStepTime"] == newest]
        if len(tied) == len(head) == HEAD:  # more may share the time: read them all
            tied = []
            async for summary in self.calls.summaries(session, invocation):
                if summary["invocationStepTime"] != newest:
                    break
                tied.append(summary)
        steps = await self._steps(session, invocation, [str(s["invocationStepId"]) for s in tied])
        found = [step for step in steps if step.kind == layout.CHECKPOINT]
        return max(found, key=lambda step: str(step.header["cid"]), default=None)

    async def _steps(self, session: str, invocation: str, ids: Sequence[str]) -> Steps:
        """Steps by id, read concurrently, in the order given (missing ones left out)."""
        got = await asyncio.gather(*(self.calls.get_step(session, invocation, i) for i in ids))
        return [step for step in got if step is not None]

    async def _record(self, session: str, step: layout.Step) -> m.CheckpointRecord:
        header = step.header
        thread, ns, cid = str(header["thread"]), str(header["ns"]), str(header["cid"])
        size = int(header["size"])
        return m.CheckpointRecord(
            thread_id=thread,
            checkpoint_ns=ns,
            checkpoint_id=cid,
            parent_checkpoint_id=header.get("parent"),
            type=str(header["type"]),
            checkpoint=step.data[:size],
            metadata=step.data[size:],
            writes=await self._writes(session, thread, ns, cid),
        )

    async def _writes(self, session: str, thread: str, ns: str, cid: str) -> Writes:
        """A checkpoint's pending writes, merged oldest step first by ``(task_id, idx)``."""
        invocation = layout.writes(thread, ns, cid)
        summaries = [s async for s in self.calls.summaries(session, invocation)]
        summaries = [s for s in summaries if s["invocationStepTime"] > layout.TOMBSTONE_TIME]
        summaries.reverse()
        steps = await self._steps(session, invocation, [s["invocationStepId"] for s in summaries])
        stored: dict[tuple[str, int], m.PendingWrite] = {}
        for step in steps:
            if step.kind != layout.WRITES:
                continue
            offset = 0
            for task_id, idx, channel, kind, task_path, size in step.header["writes"]:
                value, offset = step.data[offset : offset + size], offset + size
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
        if request.thread_id is not None:
            session = await self.directory.session_of(request.thread_id, create=False)
            threads = [] if session is None else [(request.thread_id, session)]
        else:
            threads = await self.directory.threads()
        for thread, session in threads:
            if after is not None and thread < after[0]:
                continue
            for ns in await self._namespaces(session):
                if request.checkpoint_ns is not None and ns != request.checkpoint_ns:
                    continue
                if after is not None and (thread, ns) < after[:2]:
                    continue
                if request.checkpoint_id is not None:
                    step = await self._checkpoint(session, thread, ns, request.checkpoint_id)
                    steps = [] if step is None else [step]
                    async for record in self._records(session, _aiter(steps)):
                        if listing.wanted(record, request, after):
                            yield record
                    continue
                async for record in self._records(session, self._scan(session, thread, ns)):
                    if listing.wanted(record, request, after):
                        yield record

    async def _records(
        self, session: str, steps: AsyncIterator[layout.Step]
    ) -> AsyncIterator[m.CheckpointRecord]:
        async for step in steps:
            yield await self._record(session, step)

    async def _scan(self, session: str, thread: str, ns: str) -> AsyncIterator[layout.Step]:
        """A namespace's live checkpoint steps, ids descending (steps of one time are read
        together and sorted; step times follow the time in the ids)."""
        invocation = layout.checkpoints(thread, ns)
        group: list[str] = []
        group_time: Any = None
        async for summary in self.calls.summaries(session, invocation):
            at = summary["invocationStepTime"]
            if at <= layout.TOMBSTONE_TIME:
                break  # tombstones come last
            if group and at != group_time:
                for step in await self._sorted(session, invocation, group):
                    yield step
                group = []
            group_time = at
            group.append(str(summary["invocationStepId"]))
        for step in await self._sorted(session, invocation, group):
            yield step

    async def _sorted(self, session: str, invocation: str, ids: Sequence[str]) -> Steps:
        steps = await self._steps(session, invocation, ids)
        found = [step for step in steps if step.kind == layout.CHECKPOINT]
        return sorted(found, key=lambda step: str(step.header["cid"]), reverse=True)

    async def _namespaces(self, session: str) -> Names:
        """The namespaces registered in a session, ascending."""
        ids = [
            str(s["invocationStepId"])
            async for s in self.calls.summaries(session, layout.NAMESPACES)
        ]
        steps = await self._steps(session, layout.NAMESPACES, ids)
        return sorted({str(step.header["ns"]) for step in steps if step.kind == layout.NAMESPACE})

    # --- writes --------------------------------------------------------------------------

    async def put(self, request: m.PutRequest) -> None:
        record = request.record
        header = {
            "thread": record.thread_id,
            "ns": record.checkpoint_ns,
            "cid": record.checkpoint_id,
            "parent": record.parent_checkpoint_id,
            "type": record.type,
            "size": len(record.checkpoint),
            "run": request.run_id,
        }
        content = layout.payload(layout.CHECKPOINT, header, record.checkpoint + record.metadata)
        stamp = stamps.checkpoint_stamp(record.checkpoint_id, self._clock)

        async def write(session: str) -> None:
            await self._register(session, record.thread_id, record.checkpoint_ns)
            await self.calls.put_step(
                session,
                layout.checkpoints(record.thread_id, record.checkpoint_ns),
                layout.checkpoint_step(
                    record.thread_id, record.checkpoint_ns, record.checkpoint_id
                ),
                stamp,
                content,
            )

        await self._in_session(record.thread_id, write)

    async def put_writes(self, request: m.PutWritesRequest) -> None:
        if not request.writes:
            return
        thread, ns, cid = request.thread_id, request.checkpoint_ns, request.checkpoint_id
        idxs = [w.idx for w in request.writes]
        values = [w.value for w in request.writes]
        header = {
            "thread": thread,
            "ns": ns,
            "cid": cid,
            "writes": [
                [w.task_id, w.idx, w.channel, w.type, w.task_path, len(w.value)]
                for w in request.writes
            ],
        }
        content = layout.payload(layout.WRITES, header, b"".join(values))
        task_ids = sorted({w.task_id for w in request.writes})
        step_id = layout.writes_step(
            thread, ns, cid, ",".join(task_ids), idxs, layout.digest_of(idxs, values)
        )
        stamp = self._clock.now()

        async def write(session: str) -> None:
            invocation = layout.writes(thread, ns, cid)
            await self._invocation(session, invocation)
            await self.calls.put_step(session, invocation, step_id, stamp, content)

        await self._in_session(thread, write)

    async def _in_session(self, thread_id: str, write: Callable[[str], Awaitable[None]]) -> None:
        """Run ``write`` in the thread's session (created if need be); if the session or an
        invocation turns out gone (deleted by another sidecar), look it up again, once."""
        session = await self.directory.session_of(thread_id, create=True)
        assert session is not None
        try:
            await write(session)
        except Missing:
            self._forget_session(session)
            session = await self.directory.session_of(thread_id, create=True, verify=True)
            assert session is not None
            await write(session)

    async def _register(self, session: str, thread: str, ns: str) -> None:
        """Create a namespace's invocation and register it (once per sidecar)."""
        key = (session, "ns\0" + ns)
        if key in self._ready:
            self._ready.move_to_end(key)
            return
        await self._invocation(session, layout.NAMESPACES)
        content = layout.payload(layout.NAMESPACE, {"ns": ns})
        step = layout.namespace_step(ns)
        await self.calls.put_step(session, layout.NAMESPACES, step, self._clock.now(), content)
        await self._invocation(session, layout.checkpoints(thread, ns))
        self._remember(key)

    async def _invocation(self, session: str, invocation: str) -> None:
        key = (session, invocation)
        if key in self._ready:
            self._ready.move_to_end(key)
            return
        await self.calls.create_invocation(session, invocation)
        self._remember(key)

    def _remember(self, key: tuple[str, str]) -> None:
        self._ready[key] = None
        if len(self._ready) > READY_MAX:
            self._ready.popitem(last=False)

    def _forget_session(self, session: str) -> None:
        for key in [key for key in self._ready if key[0] == session]:
            del self._ready[key]

    # --- thread-wide operations ----------------------------------------------------------

    async def delete_thread(self, thread_id: str) -> None:
        session = await self.directory.session_of(thread_id, create=False)
        if session is None:
            return
        await self.calls.delete_session(session)
        self._forget_session(session)
        await self.directory.forget(thread_id)

    async def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = set(run_ids)
        if not runs:
            return
        for thread, session in await self.directory.threads():
            for ns in await self._namespaces(session):
                async for step in self._scan(session, thread, ns):
                    if step.header.get("run") in runs:
                        await self._bury(session, thread, ns, step)

    async def _bury(self, session: str, thread: str, ns: str, step: layout.Step) -> None:
        """Overwrite a checkpoint and its writes with tombstones (its writes first)."""
        cid = str(step.header["cid"])
        invocation = layout.writes(thread, ns, cid)
        async for summary in self.calls.summaries(session, invocation):
            if summary["invocationStepTime"] > layout.TOMBSTONE_TIME:
                await self.calls.put_step(
                    session,
                    invocation,
                    str(summary["invocationStepId"]),
                    layout.TOMBSTONE_TIME,
                    layout.tombstone(),
                )
        await self.calls.put_step(
            session, step.invocation_id, step.step_id, layout.TOMBSTONE_TIME, layout.tombstone()
        )

    async def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source = await self.directory.session_of(source_thread_id, create=False)
        if source is None:
            return
        target = await self.directory.session_of(target_thread_id, create=True)
        assert target is not None
        for ns in await self._namespaces(source):
            await self._register(target, target_thread_id, ns)
            async for step in self._scan(source, source_thread_id, ns):
                await self._copy(source, target, target_thread_id, ns, step)

    async def _copy(
        self, source: str, target: str, thread: str, ns: str, step: layout.Step
    ) -> None:
        """One checkpoint and its writes into the target thread (same times, same ids)."""
        cid = str(step.header["cid"])
        header = {key: v for key, v in step.header.items() if key not in ("ap", "kind")}
        await self.calls.put_step(
            target,
            layout.checkpoints(thread, ns),
            layout.checkpoint_step(thread, ns, cid),
            step.time,
            layout.payload(layout.CHECKPOINT, {**header, "thread": thread}, step.data),
        )
        invocation = layout.writes(str(step.header["thread"]), ns, cid)
        summaries = [s async for s in self.calls.summaries(source, invocation)]
        writes = await self._steps(source, invocation, [s["invocationStepId"] for s in summaries])
        target_invocation = layout.writes(thread, ns, cid)
        for write in writes:
            if write.kind != layout.WRITES:
                continue
            await self._invocation(target, target_invocation)
            header = {key: v for key, v in write.header.items() if key not in ("ap", "kind")}
            await self.calls.put_step(
                target,
                target_invocation,
                layout.copied_step(thread, write.step_id),
                write.time,
                layout.payload(layout.WRITES, {**header, "thread": thread}, write.data),
            )

    async def prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        rules.check_prune_strategy(strategy)
        for thread in thread_ids:
            if strategy == rules.DELETE:
                await self.delete_thread(thread)
                continue
            session = await self.directory.session_of(thread, create=False)
            if session is None:
                continue
            for ns in await self._namespaces(session):
                kept = False
                async for step in self._scan(session, thread, ns):
                    if kept:
                        await self._bury(session, thread, ns, step)
                    kept = True


async def _aiter(items: Sequence[T]) -> AsyncIterator[T]:
    for item in items:
        yield item
