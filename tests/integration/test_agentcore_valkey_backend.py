"""The ``agentcore-valkey`` checkpoint backend against a real valkey-server (and a cluster).

It is the ``valkey`` backend in AgentCore's data model: checked here are what that adds
(actors keep threads apart, threads ``langgraph-checkpoint-aws``'s ``AgentCoreValkeySaver``
wrote are read whole) and the promises it keeps from the ``valkey`` backend (one round trip
per operation, retried writes change nothing, TTL refreshed on writes, one cluster slot per
thread).
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, TypedDict, cast

import pytest
import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from langgraph_checkpoint_aws import AgentCoreValkeySaver

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.sidecar.backends.agentcore_valkey.checkpoint import (
    AgentCoreValkeyCheckpointBackend,
)
from agentpersistence.sidecar.backends.base import CheckpointBackend
from agentpersistence.sidecar.backends.memory.checkpoint import MemoryCheckpointBackend
from agentpersistence.sidecar.settings import AgentCoreValkeySettings
from rig.agentcore_valkey import agentcore_valkey_checkpointer
from rig.checkpoints import canonical, cid, list_all, put_chain, record, write
from rig.valkey import ValkeyClusterProcesses, start_valkey_cluster

# --- helpers -----------------------------------------------------------------------------


def settings_for(url: str, **overrides: Any) -> AgentCoreValkeySettings:
    return AgentCoreValkeySettings(url=url, **{"socket_timeout_seconds": 2.0, **overrides})


def snapshot(client: valkey.Valkey) -> dict[bytes, Any]:
    """Every key's content (not its TTL), to compare the server before and after."""
    found: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"hash":
            found[key] = client.hgetall(key)
        elif kind == b"zset":
            found[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            found[key] = client.smembers(key)
        else:
            found[key] = (kind, client.dump(key))
    return found


def crc_slot(key: bytes) -> int:
    """The cluster slot of a key (CRC16-XMODEM of its hash tag)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % 16384


async def fill(store: CheckpointBackend, actors: Sequence[str | None]) -> None:
    """Two threads of two namespaces each, written by each of ``actors``."""
    for actor in actors:
        for thread in ("a", "b"):
            for ns in ("", "child:1"):
                for i in range(4):
                    meta = {"step": i, "parity": i % 2}
                    rec = record(thread, i, ns=ns, parent=i - 1 if i else None, metadata=meta)
                    await store.put(m.PutRequest(rec, run_id=f"run-{i % 2}", actor_id=actor))
            writes = [write("x", 0, b"1"), write("x", -3, b"2")]
            await store.put_writes(m.PutWritesRequest(thread, "", cid(3), writes, actor))


LIST_REQUESTS = [
    m.ListRequest(),
    m.ListRequest(limit=3),
    m.ListRequest(thread_id="a", limit=3),
    m.ListRequest(thread_id="b", checkpoint_ns="child:1", limit=2),
    m.ListRequest(thread_id="a", before_id=cid(2)),
    m.ListRequest(thread_id="a", checkpoint_id=cid(1)),
    m.ListRequest(filter=b'{"parity": 1}', limit=2),
    m.ListRequest(thread_id="a", actor_id="actor-2", limit=3),
]


# --- fixtures ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(url: str, **settings: Any) -> AsyncIterator[AgentCoreValkeyCheckpointBackend]:
    store = AgentCoreValkeyCheckpointBackend(settings_for(url, **settings))
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def backend(valkey_flushed: str) -> AsyncIterator[AgentCoreValkeyCheckpointBackend]:
    async with opened(valkey_flushed) as store:
        yield store


@pytest.fixture
async def ttl_backend(valkey_flushed: str) -> AsyncIterator[AgentCoreValkeyCheckpointBackend]:
    async with opened(valkey_flushed, ttl_seconds=3600) as store:
        yield store


# --- the data model ----------------------------------------------------------------------


@pytest.mark.parametrize("request_", LIST_REQUESTS, ids=repr)
async def test_each_actor_lists_like_the_memory_backend_of_its_own(
    backend: AgentCoreValkeyCheckpointBackend, request_: m.ListRequest
) -> None:
    """Per actor, the backend answers as the memory backend holding only that actor's puts."""
    reference = MemoryCheckpointBackend()
    await fill(backend, [None, "actor-2"])
    await fill(reference, [None])

    plain = dataclasses.replace(request_, actor_id=None)
    got = await list_all(backend, request_)
    assert canonical(got) == canonical(await list_all(reference, plain))


async def test_actors_keep_threads_apart_and_deletes_cover_every_actor(
    backend: AgentCoreValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await backend.put(m.PutRequest(record("t", 0), actor_id="alice"))
    await backend.put(m.PutRequest(record("t", 1, metadata={"who": "bob"}), actor_id="bob"))

    alice = await backend.get_tuple(m.GetTupleRequest("t", actor_id="alice"))
    bob = await backend.get_tuple(m.GetTupleRequest("t", actor_id="bob"))
    assert alice == record("t", 0)
    assert bob == record("t", 1, metadata={"who": "bob"})
    assert await backend.get_tuple(m.GetTupleRequest("t")) is None  # the default actor's

    await backend.copy_thread("t", "u")
    assert await backend.get_tuple(m.GetTupleRequest("u", actor_id="bob")) is not None
    await backend.delete_thread("t")
    await backend.delete_thread("u")
    assert [k for k in admin.scan_iter() if b"{g}" not in k] == []


async def test_an_actor_id_agentcore_refuses_is_rejected_saying_what_to_use(
    backend: AgentCoreValkeyCheckpointBackend,
) -> None:
    with pytest.raises(RequestRejected, match="actorId"):
        await backend.put(m.PutRequest(record("t", 0), actor_id="no spaces"))


# --- the valkey backend's promises -------------------------------------------------------


async def test_each_operation_takes_one_round_trip(
    backend: AgentCoreValkeyCheckpointBackend, round_trips: list[int]
) -> None:
    """With the saver's keys read too: its script rides in the same round trip."""
    await put_chain(backend, "t1", 3, run_id="r")  # warm: connection open, scripts loaded
    operations = [
        backend.put(m.PutRequest(record("t1", 3, parent=2), run_id="r", actor_id="a")),
        backend.put_writes(m.PutWritesRequest("t1", "", cid(3), [write("a", 0, b"x")], "a")),
        backend.get_tuple(m.GetTupleRequest("t1", actor_id="a")),
        backend.get_tuple(m.GetTupleRequest("t1", checkpoint_id=cid(1))),
        backend.list(m.ListRequest(thread_id="t1", limit=2)),
    ]
    for operation in operations:
        round_trips[0] = 0
        await operation
        assert round_trips[0] == 1


async def test_retried_writes_change_nothing(
    backend: AgentCoreValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    put = m.PutRequest(record("t", 1, parent=0), run_id="r", actor_id="a")
    writes = m.PutWritesRequest("t", "", cid(1), [write("x", 0, b"1"), write("x", -1, b"e")], "a")
    await backend.put(put)
    await backend.put_writes(writes)
    before = snapshot(admin)

    await backend.put(put)
    await backend.put_writes(writes)
    await backend.put_writes(writes)

    assert snapshot(admin) == before
    got = await backend.get_tuple(m.GetTupleRequest("t", actor_id="a"))
    assert got is not None
    assert len(got.writes) == 2


async def test_writes_refresh_the_ttl_of_every_key_they_touch(
    ttl_backend: AgentCoreValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await ttl_backend.put(m.PutRequest(record("t", 0), run_id="r", actor_id="a"))
    keys = [k for k in admin.scan_iter() if b"{g}" not in k]
    assert keys
    assert all(0 < cast(int, admin.ttl(k)) <= 3600 for k in keys)

    for key in keys:
        admin.expire(key, 10)
    await ttl_backend.put_writes(m.PutWritesRequest("t", "", cid(0), [write("x", 0, b"")], "a"))
    thread_keys = [k for k in keys if b":run:" not in k]
    assert all(cast(int, admin.ttl(k)) > 10 for k in thread_keys)


async def test_no_ttl_unless_configured(
    backend: AgentCoreValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await backend.put(m.PutRequest(record("t", 0), run_id="r"))
    assert all(admin.ttl(k) == -1 for k in admin.scan_iter())


async def test_all_keys_of_a_thread_share_one_slot_whatever_the_actor(
    backend: AgentCoreValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    for actor in ("a", "b:c/d"):
        await put_chain(backend, "t{x}", 2)
        await backend.put(m.PutRequest(record("t{x}", 5, ns="n:{1}"), actor_id=actor))
    keys = [k for k in admin.scan_iter() if b"{g}" not in k]
    assert len({crc_slot(k) for k in keys}) == 1
    assert all(k.startswith(b"agentcore:{t:") for k in keys)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyClusterProcesses]:
    processes = start_valkey_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    yield processes
    processes.stop()


async def test_a_cluster_of_three_round_trips_like_the_memory_backend(
    cluster: ValkeyClusterProcesses,
) -> None:
    async with opened(cluster.url, ttl_seconds=3600) as store:
        reference = MemoryCheckpointBackend()
        await fill(store, [None, "actor-2"])
        for thread in ("a", "b"):
            await store.put(m.PutRequest(record(thread, 9), actor_id="third"))
            await reference.put(m.PutRequest(record(thread, 9)))
        got = await store.get_tuple(m.GetTupleRequest("a", actor_id="third"))
        assert got == await reference.get_tuple(m.GetTupleRequest("a"))
        listed = await list_all(store, m.ListRequest(actor_id="third", limit=1))
        assert listed == await list_all(reference, m.ListRequest(limit=1))

        await store.copy_thread("a", "z")
        await store.delete_thread("a")
        assert await store.get_tuple(m.GetTupleRequest("a", actor_id="third")) is None
        copied = await store.get_tuple(m.GetTupleRequest("z", actor_id="actor-2"))
        assert copied is not None
        assert copied.checkpoint_id == cid(3)


# --- threads AgentCoreValkeySaver wrote ---------------------------------------------------


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def approval_graph() -> StateGraph[State]:
    """draft -> approve (interrupts for an answer) -> publish."""

    def draft(state: State) -> dict[str, list[str]]:
        return {"steps": ["draft"]}

    def approve(state: State) -> dict[str, list[str]]:
        answer = interrupt("approve?")
        return {"steps": [f"approved:{answer}"]}

    def publish(state: State) -> dict[str, list[str]]:
        return {"steps": ["publish"]}

    graph = StateGraph(State).add_sequence([draft, approve, publish])
    graph.add_edge(START, "draft")
    graph.add_edge("publish", END)
    return graph


def same_tuple(ours: CheckpointTuple | None, theirs: CheckpointTuple | None) -> None:
    assert ours is not None
    assert theirs is not None
    assert (
        ours.config["configurable"]["checkpoint_id"]
        == theirs.config["configurable"]["checkpoint_id"]
    )
    assert ours.checkpoint == theirs.checkpoint
    assert ours.metadata == theirs.metadata
    parent = (ours.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    assert parent == (theirs.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    assert sorted(ours.pending_writes or [], key=repr) == sorted(
        theirs.pending_writes or [], key=repr
    )


def test_threads_the_saver_wrote_are_read_whole_and_continued(
    valkey_flushed: str, sidecar_factory: Any
) -> None:
    """Shows: a thread langgraph-checkpoint-aws's AgentCoreValkeySaver wrote (an interrupted
    graph) reads back through SidecarSaver on agentcore-valkey exactly as the saver's own
    get_tuple and list return it (every checkpoint, metadata, parent link, pending write,
    the interrupt included); and the sidecar then resumes the thread to its end."""
    config: RunnableConfig = {"configurable": {"thread_id": "order-7", "actor_id": "clerk"}}
    client = valkey.Valkey.from_url(valkey_flushed)
    try:
        theirs = AgentCoreValkeySaver(client)
        interrupted = approval_graph().compile(checkpointer=theirs).invoke({"steps": []}, config)
        assert "__interrupt__" in interrupted
        their_list = list(theirs.list(config))
        their_latest = theirs.get_tuple(config)

        sidecar = sidecar_factory(agentcore_valkey_checkpointer(valkey_flushed))
        with SidecarSaver(sidecar.socket) as ours:
            our_list = list(ours.list(config))
            assert len(our_list) == len(their_list) >= 3
            for mine, other in zip(our_list, their_list, strict=True):
                same_tuple(mine, other)
            same_tuple(ours.get_tuple(config), their_latest)
            newest, oldest = their_list[0].config, their_list[-1]
            before = [t.config for t in ours.list(config, before=newest, limit=2)]
            assert before == [t.config for t in their_list[1:3]]
            step = {"step": oldest.metadata["step"]}
            assert [t.config for t in ours.list(config, filter=step)] == [oldest.config]
            assert any(w[1] == "__interrupt__" for w in their_latest.pending_writes)

            graph = approval_graph().compile(checkpointer=ours)
            done = graph.invoke(Command(resume="yes"), config)
            assert done["steps"] == ["draft", "approved:yes", "publish"]
            assert len(list(ours.list(config))) > len(their_list)
    finally:
        client.close()
