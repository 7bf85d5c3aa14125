"""Checkpoint routes: each one decoded request → one backend call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes as r
from agentpersistence.client.protocol import rules

from ..backends import listing
from ..backends.base import CheckpointBackend
from .base import RouteHandler, RouteTable

_EMPTY = m.Empty()


def checkpoint_routes(backend: CheckpointBackend) -> RouteTable:
    async def get_tuple(req: m.GetTupleRequest) -> m.GetTupleResponse:
        return m.GetTupleResponse(await backend.get_tuple(req))

    async def list_(req: m.ListRequest) -> m.ListResponse:
        return listing.capped(await backend.list(req))

    async def put(req: m.PutRequest) -> m.Empty:
        rules.parse_metadata(req.record.metadata)
        await backend.put(req)
        return _EMPTY

    async def put_writes(req: m.PutWritesRequest) -> m.Empty:
        await backend.put_writes(req)
        return _EMPTY

    async def delete_thread(req: m.DeleteThreadRequest) -> m.Empty:
        await backend.delete_thread(req.thread_id)
        return _EMPTY

    async def delete_for_runs(req: m.DeleteForRunsRequest) -> m.Empty:
        await backend.delete_for_runs(req.run_ids)
        return _EMPTY

    async def copy_thread(req: m.CopyThreadRequest) -> m.Empty:
        await backend.copy_thread(req.source_thread_id, req.target_thread_id)
        return _EMPTY

    async def prune(req: m.PruneRequest) -> m.Empty:
        await backend.prune(req.thread_ids, rules.check_prune_strategy(req.strategy))
        return _EMPTY

    handlers: dict[r.Route[Any, Any], Callable[[Any], Awaitable[Any]]] = {
        r.CHECKPOINT_GET_TUPLE: get_tuple,
        r.CHECKPOINT_LIST: list_,
        r.CHECKPOINT_PUT: put,
        r.CHECKPOINT_PUT_WRITES: put_writes,
        r.CHECKPOINT_DELETE_THREAD: delete_thread,
        r.CHECKPOINT_DELETE_FOR_RUNS: delete_for_runs,
        r.CHECKPOINT_COPY_THREAD: copy_thread,
        r.CHECKPOINT_PRUNE: prune,
    }
    return {route.name: RouteHandler(backend.name, call) for route, call in handlers.items()}
