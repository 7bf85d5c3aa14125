"""Slots move between primaries while clients write: nothing acknowledged is lost.

Writers (asyncio tasks in this process, sharing a ``SidecarSaver``, a ``SidecarStore`` and
a ``SidecarCache`` on one sidecar whose Valkey URL is a 3-primary cluster) put checkpoints
with pending writes, each to a thread of its own, store items and cache entries, each to a
namespace of its own. Every thread's slot, each cache namespace's and the store's are on one
primary (the *source*). Once the writers have had ``START_AFTER`` writes acknowledged, each
of those slots is moved to another primary (the *target*) as ``valkey-cli --cluster
reshard`` does: ``CLUSTER SETSLOT … IMPORTING`` on the target, ``MIGRATING`` on the source,
``MIGRATE … KEYS`` a few keys at a time, then ``CLUSTER SETSLOT … NODE`` on every node.
Between two ``MIGRATE`` calls the migration waits until the servers have redirected or
refused more client commands (``ASK``, ``TRYAGAIN``: their error counters), so writes meet
every half-moved state. The writers go on until every slot has moved.

The sidecar logs in as users holding only the backends' minimal ACLs. Then the servers'
counters show that the clients met ``ASK`` and ``MOVED``, and their ``ACL LOG`` that
nothing was refused; every write was acknowledged (none failed); every acknowledged
checkpoint reads back whole with its pending writes, ``list`` returns exactly the
acknowledged checkpoints newest first, every acknowledged store item and cache entry reads
back as last written; the source holds no key of the moved slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from valkey import exceptions as vx
from valkey.crc import key_slot

from agentpersistence.client import SidecarCache, SidecarSaver, SidecarStore
from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.valkey import errors
from agentpersistence.sidecar.backends.valkey.schema import CacheKeys, Keys, namespace_path
from agentpersistence.sidecar.backends.valkey.store_schema import StoreKeys
from rig.sidecar import SidecarProcess
from rig.valkey import (
    CACHE_ACL,
    CHECKPOINT_ACL,
    LOOPBACK,
    STORE_ACL,
    ValkeyClusterProcesses,
    add_cluster_users,
    start_valkey_cluster,
)

CHECKPOINT_WRITERS = 6
STORE_WRITERS = 2
CACHE_WRITERS = 2
PUTS = 30
"""Checkpoints (each followed by a ``put_writes``) per checkpoint writer, items per store
writer, entries per cache writer, at least: each goes on until every slot has moved."""
START_AFTER = 20
"""Acknowledged writes before the first slot starts moving."""
KEYS_PER_MIGRATE = 10
EVENT_TIMEOUT_S = 60.0
"""A safety net only: how long one wait for the writers' progress may take."""
POLL_S = 0.005
"""How often the servers' counters are read while waiting for clients to meet a slot."""
PREFIX = "mig"
PASSWORD = "migration-pass"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyClusterProcesses]:
    processes = start_valkey_cluster(tmp_path_factory.mktemp("valkey-cluster-migration"))
    yield processes
    processes.stop()


@pytest.fixture
def sidecar(
    cluster: ValkeyClusterProcesses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    """A sidecar whose blocks log in as users holding their minimal ACLs (``+asking``
    included: the clients follow ``ASK`` as those users)."""
    no_search = [c for c in STORE_ACL if not c.startswith("+ft.")]  # no module loaded here
    users = {"saver": CHECKPOINT_ACL, "store": no_search, "cache": CACHE_ACL}
    add_cluster_users(cluster, PASSWORD, PREFIX, users)

    def block(user: str) -> dict[str, str]:
        port = cluster.nodes[0].port
        return {"url": f"valkey://{user}:{PASSWORD}@{LOOPBACK}:{port}/0", "keyPrefix": PREFIX}

    config = {
        "checkpointer": {"backend": "valkey", "valkey": block("saver")},
        "store": {"backend": "valkey", "valkey": block("store")},
        "cache": {"backend": "valkey", "valkey": block("cache")},
    }
    process = SidecarProcess(config, tmp_path_factory.mktemp("migration-sidecar"))
    yield process.start()
    process.stop()


# --- the servers ----------------------------------------------------------------------------


class Node:
    """A plain client of one primary, for administering it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = valkey.Valkey(host=LOOPBACK, port=port, decode_responses=True)
        self.id: str = self.client.execute_command("CLUSTER MYID")

    def redirections(self) -> dict[str, int]:
        """How many ``ASK``, ``MOVED`` and ``TRYAGAIN`` replies this node has sent."""
        stats = cast(dict[str, Any], self.client.info("errorstats"))
        counts = {kind: 0 for kind in ("ASK", "MOVED", "TRYAGAIN")}
        for kind in counts:
            entry = stats.get(f"errorstat_{kind}")
            if entry:
                counts[kind] = int(entry["count"])
        return counts

    def close(self) -> None:
        self.client.close()


def slot_of(key: str) -> int:
    return key_slot(key.encode())


def owner(nodes: list[Node], slot: int) -> Node:
    for start, end, primary, *_ in nodes[0].client.execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return next(node for node in nodes if node.port == int(primary[1]))
    raise AssertionError(f"no node serves slot {slot}")


async def move_slot(
    slot: int, source: Node, target: Node, nodes: list[Node], progress: Progress
) -> None:
    """Move ``slot`` from ``source`` to ``target`` key by key, as a resharding tool does,
    waiting after each ``MIGRATE`` until clients have met the half-moved slot again."""

    def run(node: Node, *args: Any) -> Any:
        return asyncio.to_thread(node.client.execute_command, *args)

    await run(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source.id)
    await run(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target.id)
    while keys := await run(source, "CLUSTER", "GETKEYSINSLOT", slot, KEYS_PER_MIGRATE):
        await run(source, "MIGRATE", LOOPBACK, target.port, "", 0, 5000, "KEYS", *keys)
        await progress.redirected_again([source, target])
    for node in [target, source, *(n for n in nodes if n not in (source, target))]:
        await run(node, "CLUSTER", "SETSLOT", slot, "NODE", target.id)


# --- the writers -------------------------------------------------------------------------


@dataclass
class Progress:
    """Acknowledged writes, and the waits of the migration on the writers."""

    acknowledged: int = 0
    moved: bool = False
    """Set once every slot has moved (or the move failed): writers stop after that."""
    writers_left: int = CHECKPOINT_WRITERS + STORE_WRITERS + CACHE_WRITERS
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def acknowledge(self) -> None:
        async with self.changed:
            self.acknowledged += 1
            self.changed.notify_all()

    async def writer_done(self) -> None:
        async with self.changed:
            self.writers_left -= 1
            self.changed.notify_all()

    async def reached(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: self.acknowledged >= count), EVENT_TIMEOUT_S
            )

    async def redirected_again(self, nodes: list[Node]) -> None:
        """Until the nodes have refused another client command (``ASK``, ``TRYAGAIN``),
        or every writer is done. Writers held off a moving slot acknowledge nothing, so
        the event is read from the servers' counters, a few milliseconds apart."""

        def met() -> int:
            return sum(n.redirections()["ASK"] + n.redirections()["TRYAGAIN"] for n in nodes)

        before = await asyncio.to_thread(met)
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while self.writers_left:
                if await asyncio.to_thread(met) != before:
                    return
                await asyncio.sleep(POLL_S)


@dataclass
class Thread:
    thread_id: str
    sent: dict[str, tuple[Checkpoint, list[tuple[str, Any]]]] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)


def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def write_thread(saver: SidecarSaver, thread: Thread, progress: Progress) -> None:
    try:
        for i in itertools.count():
            if i >= PUTS and progress.moved:
                break
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"step": i, "pad": f"{thread.thread_id}-{i}-" * 40}
            checkpoint["channel_versions"] = {"step": i + 1, "pad": i + 1}
            writes = [("out", {"task": i, "thread": thread.thread_id})]
            thread.sent[checkpoint["id"]] = (checkpoint, writes)
            versions: dict[str, str | int | float] = {"step": i + 1, "pad": i + 1}
            stored = await saver.aput(config(thread.thread_id), checkpoint, {"step": i}, versions)
            await saver.aput_writes(stored, writes, task_id=f"task-{i}")
            thread.acknowledged.append(checkpoint["id"])
            await progress.acknowledge()
    finally:
        await progress.writer_done()


async def write_items(
    store: SidecarStore, label: str, acknowledged: dict[str, Any], progress: Progress
) -> None:
    try:
        for i in itertools.count():
            if i >= PUTS and progress.moved:
                break
            value = {"i": i, "text": f"{label}-{i}"}
            await store.aput(("migration", label), f"k{i % 7}", value)
            acknowledged[f"k{i % 7}"] = value
            await progress.acknowledge()
    finally:
        await progress.writer_done()


async def write_entries(
    cache: SidecarCache[Any],
    namespace: tuple[str, ...],
    acknowledged: dict[str, Any],
    progress: Progress,
) -> None:
    try:
        for i in itertools.count():
            if i >= PUTS and progress.moved:
                break
            key, value = f"k{i % 5}", {"i": i, "ns": list(namespace)}
            await cache.aset({(namespace, key): (value, 600)})
            acknowledged[key] = value
            await progress.acknowledge()
    finally:
        await progress.writer_done()


def names_on(source: Node, nodes: list[Node], count: int, base: Callable[[str], str]) -> list[str]:
    """Names (``moving-<i>``) whose keys, ``base(name)`` and on, are in slots ``source``
    serves, each in a slot of its own."""
    found: dict[int, str] = {}
    for i in range(10_000):
        slot = slot_of(base(f"moving-{i}"))
        if slot not in found and owner(nodes, slot) is source:
            found[slot] = f"moving-{i}"
            if len(found) == count:
                return list(found.values())
    raise AssertionError("no names found whose slots are on the source node")


@contextlib.asynccontextmanager
async def clients(
    sidecar: SidecarProcess,
) -> AsyncIterator[tuple[SidecarSaver, SidecarStore, SidecarCache[Any]]]:
    with (
        SidecarSaver(sidecar.socket) as saver,
        SidecarStore(sidecar.socket) as store,
        SidecarCache[Any](sidecar.socket) as cache,
    ):
        yield saver, store, cache


async def test_slots_moving_under_writers_lose_nothing_acknowledged(
    cluster: ValkeyClusterProcesses, sidecar: SidecarProcess
) -> None:
    nodes = [Node(node.port) for node in cluster.nodes]
    try:
        store_slot = slot_of(StoreKeys(PREFIX).base)
        source = owner(nodes, store_slot)
        target = next(node for node in nodes if node is not source)
        thread_base = Keys(PREFIX).thread_base

        def cache_base(label: str) -> str:
            return CacheKeys(PREFIX).base(namespace_path([label]))

        threads = [Thread(t) for t in names_on(source, nodes, CHECKPOINT_WRITERS, thread_base)]
        namespaces = [(n,) for n in names_on(source, nodes, CACHE_WRITERS, cache_base)]
        slots = [  # without repeats: a thread and a namespace may share a slot
            *{
                store_slot: None,
                **{slot_of(thread_base(t.thread_id)): None for t in threads},
                **{slot_of(cache_base(label)): None for (label,) in namespaces},
            }
        ]
        before = [node.redirections() for node in nodes]
        progress = Progress()
        items: list[dict[str, Any]] = [{} for _ in range(STORE_WRITERS)]
        entries: list[dict[str, Any]] = [{} for _ in namespaces]

        async with clients(sidecar) as (saver, store, cache):
            writers = [
                *(write_thread(saver, thread, progress) for thread in threads),
                *(write_items(store, f"w{i}", items[i], progress) for i in range(STORE_WRITERS)),
                *(
                    write_entries(cache, ns, entries[i], progress)
                    for i, ns in enumerate(namespaces)
                ),
            ]
            running = asyncio.gather(*writers)
            try:
                await progress.reached(START_AFTER)
                for slot in slots:
                    await move_slot(slot, source, target, nodes, progress)
            finally:
                progress.moved = True
                [outcome] = await asyncio.gather(running, return_exceptions=True)
            assert outcome == [None] * len(writers), outcome  # no write failed

            for slot in slots:
                assert owner(nodes, slot) is target
                assert source.client.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
            after = [node.redirections() for node in nodes]
            met = {
                k: sum(a[k] - b[k] for a, b in zip(after, before, strict=True)) for k in after[0]
            }
            assert met["ASK"] > 0, met
            assert met["MOVED"] > 0, met
            for node in nodes:  # the ACL users were enough, redirections included
                assert node.client.execute_command("ACL", "LOG") == [], node.port

            for thread in threads:
                await check_thread(saver, thread)
            for i, acknowledged in enumerate(items):
                for key, value in acknowledged.items():
                    item = await store.aget(("migration", f"w{i}"), key)
                    assert item is not None
                    assert item.value == value
            for ns, acknowledged in zip(namespaces, entries, strict=True):
                keys = [(ns, key) for key in acknowledged]
                assert await cache.aget(keys) == {(ns, k): v for k, v in acknowledged.items()}
    finally:
        for node in nodes:
            node.close()


async def check_thread(saver: SidecarSaver, thread: Thread) -> None:
    assert len(thread.acknowledged) >= PUTS
    listed = [t.checkpoint["id"] async for t in saver.alist(config(thread.thread_id))]
    assert listed == thread.acknowledged[::-1]
    latest = await saver.aget_tuple(config(thread.thread_id))
    assert latest is not None
    assert latest.checkpoint["id"] == thread.acknowledged[-1]
    for checkpoint_id in thread.acknowledged:
        sent, writes = thread.sent[checkpoint_id]
        got = await saver.aget_tuple(config(thread.thread_id, checkpoint_id))
        assert got is not None, (thread.thread_id, checkpoint_id)
        assert got.checkpoint["channel_values"] == sent["channel_values"]
        assert [(channel, value) for _, channel, value in got.pending_writes or []] == writes


@pytest.mark.parametrize(
    "refusal",
    [vx.ClusterError("TTL exhausted."), vx.TryAgainError("TRYAGAIN Multiple keys request")],
)
def test_a_slot_still_moving_after_the_retries_is_a_retriable_error(
    refusal: vx.ValkeyError,
) -> None:
    """What a call gets when a slot's move outlasts ``socketTimeoutSeconds``."""
    error = errors.translate(refusal, "127.0.0.1:7000/0")
    assert type(error) is BackendUnavailable
    assert "is moving a slot this call needs" in error.message
    assert "retry the call" in error.message
