"""``SidecarSaver``: a LangGraph checkpointer whose storage lives in the sidecar.

All of LangGraph's checkpoint semantics that a backend must not re-decide live here:
values are serialized with the saver's serde before they leave the process, metadata is
sent as JSON, pending-write indexes come from ``WRITES_IDX_MAP``, and pending writes come
back in ``writes_sort_key`` order. The sidecar only ever sees ``(type, bytes)`` blobs.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from . import _transport
from ._connection import DEFAULT_TIMEOUT, SidecarConnection, json_bytes
from .protocol import messages as m
from .protocol import routes
from .protocol.errors import RequestRejected

_PAGE = 100

_last_actor: ContextVar[tuple[str, str] | None] = ContextVar("agentpersistence_actor", default=None)
"""``(thread_id, actor_id)`` of the last read that named an actor, in this context."""


class SidecarSaver(SidecarConnection, BaseCheckpointSaver[str]):
    """Checkpointer backed by the agentpersistence sidecar; sync and async on one object.

    Args:
        socket_path: the sidecar's unix socket; defaults to ``$AGENTPERSISTENCE_SOCKET``,
            then ``/var/run/agentpersistence/sidecar.sock``.
        timeout: the deadline of each call, in seconds. A call that cannot reach the
            sidecar keeps retrying until then and raises ``SidecarUnavailable``.
        serde: LangGraph serializer for checkpoints and writes (the default is LangGraph's).
        transport: where calls go; by default a unix-socket transport to ``socket_path``.
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        serde: SerializerProtocol | None = None,
        transport: _transport.Transport | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._connect(socket_path, timeout, transport)

    # --- sync API ------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        request = _get_request(config)
        resp = self._call(routes.CHECKPOINT_GET_TUPLE, request)
        return None if resp.record is None else self._tuple(resp.record, request.actor_id)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        request: m.ListRequest | None = _list_request(config, filter, before, limit)
        remaining = limit
        while request is not None:
            page = self._call(routes.CHECKPOINT_LIST, request)
            for record in page.records:
                yield self._tuple(record, request.actor_id)
            request, remaining = _next_page(request, page, remaining)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        request = self._put_request(config, checkpoint, metadata)
        self._call(routes.CHECKPOINT_PUT, request)
        return _stored_config(request)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        request = self._writes_request(config, writes, task_id, task_path)
        self._call(routes.CHECKPOINT_PUT_WRITES, request)

    def delete_thread(self, thread_id: str) -> None:
        request = m.DeleteThreadRequest(_thread_id(thread_id))
        self._call(routes.CHECKPOINT_DELETE_THREAD, request)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        request = m.DeleteForRunsRequest([str(r) for r in run_ids])
        self._call(routes.CHECKPOINT_DELETE_FOR_RUNS, request)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        request = m.CopyThreadRequest(_thread_id(source_thread_id), _thread_id(target_thread_id))
        self._call(routes.CHECKPOINT_COPY_THREAD, request)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        request = m.PruneRequest([_thread_id(t) for t in thread_ids], strategy)
        self._call(routes.CHECKPOINT_PRUNE, request)

    # --- async API -----------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        request = _get_request(config)
        resp = await self._acall(routes.CHECKPOINT_GET_TUPLE, request)
        return None if resp.record is None else self._tuple(resp.record, request.actor_id)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        request: m.ListRequest | None = _list_request(config, filter, before, limit)
        remaining = limit
        while request is not None:
            page = await self._acall(routes.CHECKPOINT_LIST, request)
            for record in page.records:
                yield self._tuple(record, request.actor_id)
            request, remaining = _next_page(request, page, remaining)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        request = self._put_request(config, checkpoint, metadata)
        await self._acall(routes.CHECKPOINT_PUT, request)
        return _stored_config(request)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        request = self._writes_request(config, writes, task_id, task_path)
        await self._acall(routes.CHECKPOINT_PUT_WRITES, request)

    async def adelete_thread(self, thread_id: str) -> None:
        request = m.DeleteThreadRequest(_thread_id(thread_id))
        await self._acall(routes.CHECKPOINT_DELETE_THREAD, request)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        request = m.DeleteForRunsRequest([str(r) for r in run_ids])
        await self._acall(routes.CHECKPOINT_DELETE_FOR_RUNS, request)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        request = m.CopyThreadRequest(_thread_id(source_thread_id), _thread_id(target_thread_id))
        await self._acall(routes.CHECKPOINT_COPY_THREAD, request)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        request = m.PruneRequest([_thread_id(t) for t in thread_ids], strategy)
        await self._acall(routes.CHECKPOINT_PRUNE, request)

    # --- versions ------------------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """Zero-padded integer versions with a random suffix: ordered as strings."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # --- conversions ---------------------------------------------------------------------

    def _put_request(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata
    ) -> m.PutRequest:
        conf = config["configurable"]
        kind, data = self.serde.dumps_typed(checkpoint)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        run_id = meta.get("run_id")
        record = m.CheckpointRecord(
            thread_id=_thread_id(conf["thread_id"]),
            checkpoint_ns=conf.get("checkpoint_ns", ""),
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=conf.get("checkpoint_id"),
            type=kind,
            checkpoint=data,
            metadata=json_bytes(meta, "checkpoint metadata"),
        )
        run = run_id if isinstance(run_id, str) else None
        return m.PutRequest(record, run, _actor(config, record.thread_id, remember=False))

    def _writes_request(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> m.PutWritesRequest:
        conf = config["configurable"]
        items = []
        for i, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            idx = WRITES_IDX_MAP.get(channel, i)
            items.append(m.PendingWrite(task_id, idx, channel, kind, data, task_path))
        thread_id = _thread_id(conf["thread_id"])
        return m.PutWritesRequest(
            thread_id=thread_id,
            checkpoint_ns=conf.get("checkpoint_ns", ""),
            checkpoint_id=conf["checkpoint_id"],
            writes=items,
            actor_id=_actor(config, thread_id, remember=False),
        )

    def _tuple(self, record: m.CheckpointRecord, actor_id: str | None) -> CheckpointTuple:
        loads = self.serde.loads_typed
        writes = sorted(record.writes, key=lambda w: writes_sort_key(w.task_path, w.task_id, w.idx))
        parent = record.parent_checkpoint_id
        thread, ns = record.thread_id, record.checkpoint_ns
        return CheckpointTuple(
            config=_config(thread, ns, record.checkpoint_id, actor_id),
            checkpoint=loads((record.type, record.checkpoint)),
            metadata=json.loads(record.metadata),
            parent_config=_config(thread, ns, parent, actor_id) if parent else None,
            pending_writes=[(w.task_id, w.channel, loads((w.type, w.value))) for w in writes],
        )


def _config(
    thread_id: str, checkpoint_ns: str, checkpoint_id: str, actor_id: str | None
) -> RunnableConfig:
    """A checkpoint's config; it keeps the actor, so resuming from it stays on that actor."""
    configurable = {
        "thread_id": thread_id,
        "checkpoint_ns": checkpoint_ns,
        "checkpoint_id": checkpoint_id,
    }
    if actor_id is not None:
        configurable["actor_id"] = actor_id
    return {"configurable": configurable}


def _stored_config(request: m.PutRequest) -> RunnableConfig:
    record = request.record
    return _config(record.thread_id, record.checkpoint_ns, record.checkpoint_id, request.actor_id)


def _thread_id(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RequestRejected(f"thread_id must be a string, got {type(value).__name__}")


def _actor(config: RunnableConfig, thread_id: str, *, remember: bool) -> str | None:
    """The thread's actor: ``configurable.actor_id``, else (for a subgraph read) the actor of
    this context's last read of the same thread, else None (the backend's default).

    LangGraph builds the configs of subgraph state reads (``get_state(subgraphs=True)``) from
    ``thread_id`` and ``checkpoint_ns`` alone, dropping ``actor_id``; inheriting it from the
    parent read that just happened in the same context keeps such reads on the right actor.
    Writes and root reads never inherit.
    """
    conf = config["configurable"]
    actor = conf.get("actor_id")
    if actor is not None:
        if not isinstance(actor, str) or not actor:
            raise RequestRejected(
                f"configurable.actor_id must be a non-empty string, got {actor!r}"
            )
        if remember:
            _last_actor.set((thread_id, actor))
        return actor
    last = _last_actor.get()
    if remember and conf.get("checkpoint_ns") and last is not None and last[0] == thread_id:
        return last[1]
    return None


def _get_request(config: RunnableConfig) -> m.GetTupleRequest:
    conf = config["configurable"]
    thread_id = _thread_id(conf["thread_id"])
    return m.GetTupleRequest(
        thread_id=thread_id,
        checkpoint_ns=conf.get("checkpoint_ns", ""),
        checkpoint_id=get_checkpoint_id(config),
        actor_id=_actor(config, thread_id, remember=True),
    )


def _list_request(
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> m.ListRequest | None:
    if limit is not None and limit <= 0:
        return None
    conf = config["configurable"] if config else {}
    thread_id = _thread_id(conf["thread_id"]) if "thread_id" in conf else None
    return m.ListRequest(
        thread_id=thread_id,
        checkpoint_ns=conf.get("checkpoint_ns"),
        checkpoint_id=conf.get("checkpoint_id"),
        before_id=get_checkpoint_id(before) if before else None,
        filter=json_bytes(filter, "a list filter") if filter else None,
        limit=min(limit, _PAGE) if limit is not None else _PAGE,
        actor_id=_actor(config, thread_id, remember=True) if config and thread_id else None,
    )


def _next_page(
    request: m.ListRequest, page: m.ListResponse, remaining: int | None
) -> tuple[m.ListRequest | None, int | None]:
    """The request for the page after ``page``, and how much of the caller's limit is left."""
    if remaining is not None:
        remaining -= len(page.records)
    if page.cursor is None or (remaining is not None and remaining <= 0):
        return None, remaining
    size = _PAGE if remaining is None else min(remaining, _PAGE)
    return dataclasses.replace(request, limit=size, cursor=page.cursor), remaining
