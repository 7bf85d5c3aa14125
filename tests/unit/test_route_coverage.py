"""Every route of the protocol has a sidecar handler and a client method."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarCache, SidecarSaver, SidecarStore
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.routes import ROUTES, Route
from agentpersistence.sidecar.service import Sidecar
from agentpersistence.sidecar.settings import parse_config

_CANNED: dict[type[Any], Any] = {
    m.Empty: m.Empty(),
    m.GetTupleResponse: m.GetTupleResponse(None),
    m.ListResponse: m.ListResponse([], None),
    m.ReadyResponse: m.ReadyResponse(True, []),
    m.StoreBatchResponse: None,
    m.CacheGetResponse: m.CacheGetResponse([]),
}


def _store_response(request: m.StoreBatchRequest) -> m.StoreBatchResponse:
    return m.StoreBatchResponse([m.StoreResult() for _ in request.ops])


class RecordingTransport:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def call(self, route: Route[Any, Any], request: Any, timeout: float) -> Any:
        assert isinstance(request, route.request)
        self.seen.add(route.name)
        if isinstance(request, m.StoreBatchRequest):
            return _store_response(request)
        return _CANNED[route.response]

    async def acall(self, route: Route[Any, Any], request: Any, timeout: float) -> Any:
        return self.call(route, request, timeout)

    def close(self) -> None:
        pass


def _exercise_sync(saver: SidecarSaver) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    stored = saver.put(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
    saver.put_writes(stored, [("a", 1)], "task")
    saver.get_tuple(config)
    list(saver.list(config))
    saver.delete_thread("t")
    saver.delete_for_runs(["r"])
    saver.copy_thread("t", "u")
    saver.prune(["t"])
    saver.wait_ready(1)
    store = SidecarStore(transport=saver.transport)
    store.put(("users", "u1"), "k", {"a": 1})
    cache: SidecarCache[Any] = SidecarCache(transport=saver.transport)
    cache.set({(("node",), "k"): (1, None)})
    cache.get([(("node",), "k")])
    cache.clear()


async def _exercise_async(saver: SidecarSaver) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    stored = await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
    await saver.aput_writes(stored, [("a", 1)], "task")
    await saver.aget_tuple(config)
    _ = [t async for t in saver.alist(config)]
    await saver.adelete_thread("t")
    await saver.adelete_for_runs(["r"])
    await saver.acopy_thread("t", "u")
    await saver.aprune(["t"])
    await saver.await_ready(1)
    store = SidecarStore(transport=saver.transport)
    await store.aput(("users", "u1"), "k", {"a": 1})
    cache: SidecarCache[Any] = SidecarCache(transport=saver.transport)
    await cache.aset({(("node",), "k"): (1, None)})
    await cache.aget([(("node",), "k")])
    await cache.aclear()


def test_every_route_has_a_sync_and_an_async_client_method() -> None:
    sync, async_ = RecordingTransport(), RecordingTransport()
    _exercise_sync(SidecarSaver(transport=sync))
    asyncio.run(_exercise_async(SidecarSaver(transport=async_)))
    assert sync.seen == set(ROUTES)
    assert async_.seen == set(ROUTES)


def test_every_route_has_a_sidecar_handler() -> None:
    config = {b: {"backend": "memory"} for b in ("checkpointer", "store", "cache")}
    sidecar = Sidecar(parse_config(config))
    assert sidecar.dispatcher.routes == set(ROUTES)
