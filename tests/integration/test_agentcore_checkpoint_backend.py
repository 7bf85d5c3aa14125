"""The ``agentcore-memory`` checkpoint backend against the AgentCore Memory emulator.

What LangGraph's conformance suite cannot see: the number of AgentCore calls per operation,
idempotency when a response is lost, chunking of large checkpoints, actors, and that a
thread's every session is found again (subgraph namespaces included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from langgraph.checkpoint.base.id import uuid6

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.sidecar.backends.agentcore_memory import identity
from agentpersistence.sidecar.backends.agentcore_memory.checkpoint import (
    AgentCoreMemoryCheckpointBackend,
)
from agentpersistence.sidecar.settings import AgentCoreMemorySettings
from rig.agentcore import AgentCoreBackend
from rig.emulator import DATA, EmulatorProcess
from rig.valkey import LOOPBACK

pytestmark = pytest.mark.asyncio


def checkpoint(
    thread: str, cid: str, *, ns: str = "", parent: str | None = None, size: int = 64
) -> m.CheckpointRecord:
    return m.CheckpointRecord(
        thread_id=thread,
        checkpoint_ns=ns,
        checkpoint_id=cid,
        parent_checkpoint_id=parent,
        type="bytes",
        checkpoint=cid.encode().ljust(size, b"."),
        metadata=b'{"step": 1}',
    )


async def put_thread(
    backend: AgentCoreMemoryCheckpointBackend, thread: str, count: int, **put: Any
) -> list[str]:
    """``count`` checkpoints with LangGraph's time-based ids, each with one write."""
    ids: list[str] = []
    for _ in range(count):
        cid = str(uuid6(clock_seq=-1))
        parent = ids[-1] if ids else None
        await backend.put(m.PutRequest(checkpoint(thread, cid, parent=parent), **put))
        write = m.PendingWrite("task", 0, "ch", "bytes", cid.encode())
        await backend.put_writes(m.PutWritesRequest(thread, "", cid, [write], put.get("actor_id")))
        ids.append(cid)
    return ids


def events_of(emulator: EmulatorProcess, memory_id: str, actor: str, session: str) -> list[Any]:
    client = emulator.client(DATA)
    found: list[Any] = []
    request: dict[str, Any] = {
        "memoryId": memory_id,
        "actorId": actor,
        "sessionId": session,
        "includePayloads": False,
        "maxResults": 100,
    }
    while True:
        page = client.list_events(**request)
        found += page["events"]
        if not page.get("nextToken"):
            return found
        request["nextToken"] = page["nextToken"]


async def test_latest_checkpoint_costs_the_same_calls_on_10_and_1000_checkpoints(
    agentcore_backend: AgentCoreBackend,
) -> None:
    backend, counter = agentcore_backend.backend, agentcore_backend.counter
    short = await put_thread(backend, "short", 10)
    long = await put_thread(backend, "long", 1000)

    counter.reset()
    latest_short = await backend.get_tuple(m.GetTupleRequest("short"))
    calls_short = counter.reset()
    latest_long = await backend.get_tuple(m.GetTupleRequest("long"))
    calls_long = counter.reset()

    assert latest_short is not None
    assert latest_short.checkpoint_id == short[-1]
    assert latest_long is not None
    assert latest_long.checkpoint_id == long[-1]
    assert [w.value for w in latest_long.writes] == [long[-1].encode()]
    assert calls_short == calls_long == {"ListEvents": 2}


async def test_a_given_checkpoint_is_one_call(agentcore_backend: AgentCoreBackend) -> None:
    backend, counter = agentcore_backend.backend, agentcore_backend.counter
    ids = await put_thread(backend, "given", 30)
    counter.reset()
    found = await backend.get_tuple(m.GetTupleRequest("given", checkpoint_id=ids[3]))
    assert found is not None
    assert found.parent_checkpoint_id == ids[2]
    assert counter.reset() == {"ListEvents": 1}


async def test_put_and_put_writes_are_one_call_each(agentcore_backend: AgentCoreBackend) -> None:
    backend, counter = agentcore_backend.backend, agentcore_backend.counter
    counter.reset()
    await put_thread(backend, "calls", 1)
    assert counter.reset() == {"CreateEvent": 2}


async def test_repeated_requests_create_no_duplicate(agentcore_backend: AgentCoreBackend) -> None:
    """A client that sends a request again (its answer lost) stores nothing twice."""
    backend, emulator = agentcore_backend.backend, agentcore_backend.emulator
    cid = str(uuid6(clock_seq=-1))
    put = m.PutRequest(checkpoint("again", cid))
    writes = m.PutWritesRequest("again", "", cid, [m.PendingWrite("t", 0, "ch", "bytes", b"v")])
    for _ in range(3):
        await backend.put(put)
        await backend.put_writes(writes)
    stored = events_of(emulator, agentcore_backend.memory_id, "agentpersistence", "again")
    kinds = sorted(e["metadata"][identity.KIND]["stringValue"] for e in stored)
    assert kinds.count("checkpoint") == 1
    found = await backend.get_tuple(m.GetTupleRequest("again"))
    assert found is not None
    assert [(w.task_id, w.idx, w.value) for w in found.writes] == [("t", 0, b"v")]


@pytest_asyncio.fixture
async def lossy_proxy(agentcore_emulator: EmulatorProcess) -> AsyncIterator[LossyProxy]:
    proxy = LossyProxy(agentcore_emulator.endpoint_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


class LossyProxy:
    """Forwards to the emulator, but drops the connection instead of answering the first
    ``CreateEvent`` (after the emulator has processed it): a response lost on the way."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.create_events = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{LOOPBACK}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        url = self.upstream + request.rel_url.raw_path_qs
        async with self._session.request(request.method, url, data=body, headers=headers) as up:
            answer = await up.read()
            status, content_type = up.status, up.headers.get("Content-Type")
            error_type = up.headers.get("x-amzn-ErrorType")
        if request.method == "POST" and request.path.endswith("/events"):
            self.create_events += 1
            if self.create_events == 1:
                assert request.transport is not None
                request.transport.close()  # processed upstream, never answered
                raise asyncio.CancelledError
        response = web.Response(status=status, body=answer, content_type=None)
        if content_type:
            response.headers["Content-Type"] = content_type
        if error_type:
            response.headers["x-amzn-ErrorType"] = error_type
        return response


async def test_a_retry_after_a_lost_response_creates_no_duplicate_event(
    agentcore_emulator: EmulatorProcess,
    lossy_proxy: LossyProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in agentcore_emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE", lossy_proxy.url)
    memory_id = agentcore_emulator.create_active_memory()
    backend = AgentCoreMemoryCheckpointBackend(AgentCoreMemorySettings(memory_id=memory_id))
    await backend.start()
    try:
        cid = str(uuid6(clock_seq=-1))
        await backend.put(m.PutRequest(checkpoint("lossy", cid)))
        found = await backend.get_tuple(m.GetTupleRequest("lossy"))
    finally:
        await backend.close()
    assert lossy_proxy.create_events == 2  # botocore retried the call whose answer was lost
    assert found is not None
    assert found.checkpoint_id == cid
    stored = events_of(agentcore_emulator, memory_id, "agentpersistence", "lossy")
    assert len(stored) == 1


async def test_large_checkpoints_are_chunked_and_read_back(
    agentcore_backend: AgentCoreBackend,
) -> None:
    backend = agentcore_backend.backend
    cid = str(uuid6(clock_seq=-1))
    big = m.CheckpointRecord("big", "", cid, None, "bytes", bytes(range(256)) * 20_000, b"{}")
    await backend.put(m.PutRequest(big))
    stored = events_of(agentcore_backend.emulator, agentcore_backend.memory_id,
                       "agentpersistence", "big")  # fmt: skip
    kinds = [e["metadata"][identity.KIND]["stringValue"] for e in stored]
    assert kinds.count("checkpoint") == 1
    assert kinds.count("chunk") == 7  # 5.12 MB in base64 pieces, 675 KB per event
    found = await backend.get_tuple(m.GetTupleRequest("big"))
    assert found is not None
    assert found.checkpoint == big.checkpoint
    listed = await backend.list(m.ListRequest(thread_id="big"))
    assert [r.checkpoint for r in listed.records] == [big.checkpoint]


async def test_threads_are_scoped_by_actor(agentcore_backend: AgentCoreBackend) -> None:
    backend = agentcore_backend.backend
    alice = await put_thread(backend, "shared-id", 2, actor_id="alice")
    bob = await put_thread(backend, "shared-id", 1, actor_id="bob")
    default = await put_thread(backend, "shared-id", 1)

    for actor, ids in (("alice", alice), ("bob", bob), (None, default)):
        found = await backend.get_tuple(m.GetTupleRequest("shared-id", actor_id=actor))
        assert found is not None
        assert found.checkpoint_id == ids[-1]
        listed = await backend.list(m.ListRequest(thread_id="shared-id", actor_id=actor))
        assert [r.checkpoint_id for r in listed.records] == ids[::-1]

    with pytest.raises(RequestRejected, match="not a valid AgentCore actorId"):
        await backend.get_tuple(m.GetTupleRequest("shared-id", actor_id="no spaces"))

    await backend.delete_thread("shared-id")  # every actor's copy of the thread
    for actor in ("alice", "bob", None):
        assert await backend.get_tuple(m.GetTupleRequest("shared-id", actor_id=actor)) is None


async def test_delete_thread_empties_every_namespace_session(
    agentcore_backend: AgentCoreBackend,
) -> None:
    backend, emulator, memory = (
        agentcore_backend.backend,
        agentcore_backend.emulator,
        agentcore_backend.memory_id,
    )
    thread = "odd thread/ü"  # not a valid session id: hashed
    namespaces = ["", "child:1", "child:1|grandchild:2"]
    for ns in namespaces:
        record = checkpoint(thread, str(uuid6(clock_seq=-1)), ns=ns)
        await backend.put(m.PutRequest(record, actor_id="carol"))
    sessions = [identity.session_id(thread, ns) for ns in namespaces]
    assert all(events_of(emulator, memory, "carol", s) for s in sessions)
    listed = await backend.list(m.ListRequest(thread_id=thread, actor_id="carol"))
    assert sorted(r.checkpoint_ns for r in listed.records) == sorted(namespaces)

    await backend.delete_thread(thread)
    assert [events_of(emulator, memory, "carol", s) for s in sessions] == [[], [], []]
    listed = await backend.list(m.ListRequest(thread_id=thread, actor_id="carol"))
    assert listed.records == []
