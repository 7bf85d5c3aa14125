"""The Valkey checkpoint backend, called directly (no socket) against a real valkey-server.

Semantics are checked against the memory backend (the reference) on the same operations;
Valkey-specific promises are checked on the server itself: one script call per put and
get_tuple, a latest lookup that reads a constant number of keys, TTLs, one cluster slot per
thread, no payload or password in errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import valkey

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected
from agentpersistence.sidecar.backends.base import CheckpointBackend
from agentpersistence.sidecar.backends.memory.checkpoint import MemoryCheckpointBackend
from agentpersistence.sidecar.backends.valkey import checkpoint as valkey_checkpoint
from agentpersistence.sidecar.backends.valkey import errors, listing, schema
from agentpersistence.sidecar.backends.valkey.checkpoint import ValkeyCheckpointBackend
from agentpersistence.sidecar.settings import ValkeySettings
from rig.checkpoints import canonical, cid, list_all, positions, put_chain, record, write
from rig.valkey import (
    ValkeyClusterProcesses,
    ValkeyProcess,
    command_calls,
    free_port,
    start_valkey,
    start_valkey_cluster,
)

# --- helpers -----------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC16-XMODEM, the hash of Valkey cluster slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) % 16384


def calls_during(admin: valkey.Valkey, before: dict[str, int]) -> dict[str, int]:
    """Commands run since ``before`` (leaving out the INFO calls that measure them)."""
    after = command_calls(admin)
    delta = {name: n - before.get(name, 0) for name, n in after.items()}
    return {name: n for name, n in delta.items() if n and name != "info"}


def dbsize(server: ValkeyProcess) -> int:
    client = valkey.Valkey.from_url(server.url)
    try:
        return cast(int, client.dbsize())
    finally:
        client.close()


# --- fixtures ----------------------------------------------------------------------------


def settings_for(url: str, **overrides: Any) -> ValkeySettings:
    return ValkeySettings(url=url, **{"socket_timeout_seconds": 2.0, **overrides})


@pytest.fixture
async def backend(valkey_flushed: str) -> AsyncIterator[ValkeyCheckpointBackend]:
    store = ValkeyCheckpointBackend(settings_for(valkey_flushed))
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def ttl_backend(valkey_flushed: str) -> AsyncIterator[ValkeyCheckpointBackend]:
    store = ValkeyCheckpointBackend(settings_for(valkey_flushed, ttl_seconds=3600))
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A server of this test's own, with a password, that it may stop and start."""
    server = start_valkey(tmp_path / "valkey", extra_args=["--requirepass", "s3cret"])
    yield server
    server.stop()


# --- put and get -------------------------------------------------------------------------


async def test_get_tuple_returns_latest_or_named_checkpoint(
    backend: ValkeyCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 3)
    await put_chain(backend, "t1", 2, ns="child:1", start=10)

    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest == record("t1", 2, parent=1)
    assert await backend.get_tuple(m.GetTupleRequest("t1", "", cid(0))) == record("t1", 0)
    child = await backend.get_tuple(m.GetTupleRequest("t1", "child:1"))
    assert child == record("t1", 11, ns="child:1", parent=10)


async def test_get_tuple_of_unknown_things_is_none(backend: ValkeyCheckpointBackend) -> None:
    await put_chain(backend, "t1", 1)

    assert await backend.get_tuple(m.GetTupleRequest("nope")) is None
    assert await backend.get_tuple(m.GetTupleRequest("t1", "other")) is None
    assert await backend.get_tuple(m.GetTupleRequest("t1", "", cid(99))) is None


async def test_latest_moves_only_forward(backend: ValkeyCheckpointBackend) -> None:
    await backend.put(m.PutRequest(record("t1", 5)))
    await backend.put(m.PutRequest(record("t1", 3)))

    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest is not None
    assert latest.checkpoint_id == cid(5)


async def test_put_again_replaces_the_record_and_keeps_its_writes(
    backend: ValkeyCheckpointBackend,
) -> None:
    await backend.put(m.PutRequest(record("t1", 1, parent=0), run_id="r1"))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), [write("task", 0, b"w")]))
    await backend.put(m.PutRequest(record("t1", 1, metadata={"again": True})))

    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got == dataclasses.replace(
        record("t1", 1, metadata={"again": True}), writes=[write("task", 0, b"w")]
    )
    await backend.delete_for_runs(["r1"])  # no longer this run's checkpoint
    assert await backend.get_tuple(m.GetTupleRequest("t1")) is not None


# --- pending writes ----------------------------------------------------------------------


async def test_writes_with_nonnegative_idx_keep_the_first_copy(
    backend: ValkeyCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 1)
    first = [write("task", 0, b"first"), write("task", 1, b"first-1")]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), first))
    retry = [write("task", 0, b"second"), write("task", 2, b"new")]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), retry))

    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert sorted(got.writes, key=lambda w: w.idx) == [*first, write("task", 2, b"new")]


async def test_writes_with_negative_idx_replace(backend: ValkeyCheckpointBackend) -> None:
    await put_chain(backend, "t1", 1)
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("t", -1, b"old")]))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("t", -1, b"new")]))

    got = await backend.get_tuple(m.GetTupleRequest("t1", "", cid(0)))
    assert got is not None
    assert got.writes == [write("t", -1, b"new")]


async def test_writes_belong_to_their_checkpoint_and_task(
    backend: ValkeyCheckpointBackend,
) -> None:
    await put_chain(backend, "t1", 2)
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("a", 0, b"a0")]))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), [write("a", 0, b"a1")]))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(1), [write("b", 0, b"b1")]))

    old = await backend.get_tuple(m.GetTupleRequest("t1", "", cid(0)))
    new = await backend.get_tuple(m.GetTupleRequest("t1", "", cid(1)))
    assert old is not None
    assert old.writes == [write("a", 0, b"a0")]
    assert new is not None
    assert sorted(new.writes, key=lambda w: w.task_id) == [
        write("a", 0, b"a1"),
        write("b", 0, b"b1"),
    ]


async def test_writes_before_their_checkpoint_appear_once_it_is_put(
    backend: ValkeyCheckpointBackend,
) -> None:
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("a", 0, b"early")]))
    assert await backend.get_tuple(m.GetTupleRequest("t1")) is None
    assert await list_all(backend, m.ListRequest("t1")) == []

    await put_chain(backend, "t1", 1)
    got = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert got is not None
    assert got.writes == [write("a", 0, b"early")]


# --- list --------------------------------------------------------------------------------


async def fill_both(*backends: CheckpointBackend) -> None:
    """The same threads, namespaces, metadata and writes in each backend."""
    for store in backends:
        for thread in ("b", "a", "c:{x}"):
            for ns in ("", "child:2", "child:1"):
                for i in range(7):
                    meta = {"step": i, "parity": i % 2, "source": "loop", "flag": i == 3}
                    rec = record(thread, i, ns=ns, metadata=meta)
                    await store.put(m.PutRequest(rec, run_id=f"run-{i % 3}"))
            await store.put_writes(
                m.PutWritesRequest(thread, "", cid(6), [write("x", 0, b"1"), write("x", -3, b"2")])
            )


LIST_REQUESTS = [
    m.ListRequest(),
    m.ListRequest(limit=1),
    m.ListRequest(limit=4),
    m.ListRequest(thread_id="a"),
    m.ListRequest(thread_id="a", limit=3),
    m.ListRequest(thread_id="missing"),
    m.ListRequest(thread_id="c:{x}", checkpoint_ns="child:1", limit=2),
    m.ListRequest(checkpoint_ns="", limit=5),
    m.ListRequest(checkpoint_ns="child:2", limit=1000),
    m.ListRequest(thread_id="b", checkpoint_id=cid(4)),
    m.ListRequest(checkpoint_id=cid(4), limit=2),
    m.ListRequest(thread_id="b", before_id=cid(3), limit=2),
    m.ListRequest(before_id=cid(2), checkpoint_ns="child:1"),
    m.ListRequest(filter=b'{"parity": 1}', limit=3),
    m.ListRequest(thread_id="a", filter=b'{"step": 3, "source": "loop"}'),
    m.ListRequest(filter=b'{"flag": true}', limit=2),
    m.ListRequest(filter=b'{"parity": true}', limit=5),  # Python: True == 1
    m.ListRequest(filter=b'{"step": 3.0}'),
    m.ListRequest(filter=b'{"missing": null}', limit=7),
    m.ListRequest(filter=b'{"missing": 1}'),
    m.ListRequest(filter=b"{}", limit=9),
    m.ListRequest(thread_id="a", before_id=cid(5), filter=b'{"parity": 0}', limit=1),
]


@pytest.mark.parametrize("request_", LIST_REQUESTS, ids=repr)
async def test_list_pages_like_the_memory_backend(
    backend: ValkeyCheckpointBackend, request_: m.ListRequest
) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(backend, reference)

    expected = await list_all(reference, request_)
    got = await list_all(backend, request_)

    assert positions(got) == positions(expected)
    assert canonical(got) == canonical(expected)


async def test_list_first_page_and_cursor_match_the_memory_backend(
    backend: ValkeyCheckpointBackend,
) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(backend, reference)

    request = m.ListRequest(limit=10)
    expected, got = await reference.list(request), await backend.list(request)
    assert positions(got.records) == positions(expected.records)
    assert got.cursor == expected.cursor  # the cursor means the same in every backend


async def test_list_pages_through_a_long_thread(backend: ValkeyCheckpointBackend) -> None:
    await put_chain(backend, "long", 250)

    pages = []
    request = m.ListRequest(thread_id="long", limit=100)
    while True:
        page = await backend.list(request)
        pages.append([r.checkpoint_id for r in page.records])
        if page.cursor is None:
            break
        request = dataclasses.replace(request, cursor=page.cursor)

    assert [len(p) for p in pages] == [100, 100, 50]
    assert [i for page in pages for i in page] == [cid(i) for i in reversed(range(250))]


async def test_list_without_more_returns_no_cursor(backend: ValkeyCheckpointBackend) -> None:
    await put_chain(backend, "t1", 3)

    exact = await backend.list(m.ListRequest(thread_id="t1", limit=3))
    assert len(exact.records) == 3
    assert exact.cursor is None


async def test_sparse_filter_pages_through_many_candidates(
    backend: ValkeyCheckpointBackend,
) -> None:
    count = 2 * listing.SCAN_BUDGET + 500
    for i in range(count):
        meta = {"rare": i % 900 == 0, "step": i}
        await backend.put(m.PutRequest(record("t1", i, metadata=meta)))

    request = m.ListRequest(thread_id="t1", filter=b'{"rare": true}', limit=2)
    found = await list_all(backend, request)

    assert [r.checkpoint_id for r in found] == [cid(i) for i in (1800, 900, 0)]


async def test_list_rejects_bad_requests(backend: ValkeyCheckpointBackend) -> None:
    with pytest.raises(RequestRejected):
        await backend.list(m.ListRequest(limit=0))
    with pytest.raises(RequestRejected):
        await backend.list(m.ListRequest(filter=b"[1]"))
    with pytest.raises(RequestRejected):
        await backend.list(m.ListRequest(cursor=b"not a cursor"))


# --- deletes, copies, prunes -------------------------------------------------------------


def thread_keys(admin: valkey.Valkey, store: ValkeyCheckpointBackend, thread: str) -> set[bytes]:
    base = store.keys.thread_base(thread).encode()
    return {k for k in admin.scan_iter(count=1000) if k.startswith(base)}


async def test_delete_thread_removes_every_key_of_the_thread(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await put_chain(backend, "doomed", valkey_checkpoint.DELETE_BUDGET * 2 + 7, run_id="r")
    await put_chain(backend, "doomed", 3, ns="child")
    await backend.put_writes(m.PutWritesRequest("doomed", "", cid(99999), [write("a", 0, b"")]))
    await put_chain(backend, "kept", 2)

    await backend.delete_thread("doomed")

    assert thread_keys(admin, backend, "doomed") == set()
    assert not admin.exists(backend.keys.run("r"))
    assert await list_all(backend, m.ListRequest()) == [
        record("kept", 1, parent=0),
        record("kept", 0),
    ]
    assert admin.zrange(backend.keys.threads, 0, -1) == [b"kept"]


async def test_delete_for_runs_removes_their_checkpoints_and_writes(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await backend.put(m.PutRequest(record("t1", 0), run_id="r1"))
    await backend.put(m.PutRequest(record("t1", 1, parent=0), run_id="r2"))
    await backend.put(m.PutRequest(record("t1", 2, parent=1), run_id="r3"))
    await backend.put(m.PutRequest(record("t1", 0, ns="child"), run_id="r3"))
    await backend.put(m.PutRequest(record("t2", 0), run_id="r3"))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(2), [write("a", 0, b"x")]))

    await backend.delete_for_runs(["r3", "unknown"])

    assert positions(await list_all(backend, m.ListRequest())) == [
        ("t1", "", cid(1)),
        ("t1", "", cid(0)),
    ]
    latest = await backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest == record("t1", 1, parent=0)  # the pointer moved back
    assert await backend.get_tuple(m.GetTupleRequest("t1", "", cid(2))) is None
    assert not admin.exists(backend.keys.run("r3"))
    assert thread_keys(admin, backend, "t2") == set()


async def test_delete_for_runs_with_nothing_to_delete(backend: ValkeyCheckpointBackend) -> None:
    await backend.delete_for_runs([])
    await backend.delete_for_runs(["nobody"])


async def test_copy_thread_copies_everything_under_the_new_thread_id(
    backend: ValkeyCheckpointBackend,
) -> None:
    count = valkey_checkpoint.COPY_RECORDS * 2 + 3
    await put_chain(backend, "src", count, run_id="r")
    await put_chain(backend, "src", 2, ns="child")
    await backend.put_writes(m.PutWritesRequest("src", "", cid(count - 1), [write("a", 0, b"w")]))
    await backend.put_writes(m.PutWritesRequest("src", "child", cid(0), [write("b", -1, b"v")]))
    await put_chain(backend, "dst", 1, ns="own", start=500)

    await backend.copy_thread("src", "dst")

    source = await list_all(backend, m.ListRequest("src", limit=1000))
    copied = await list_all(backend, m.ListRequest("dst", limit=1000))
    as_target = [dataclasses.replace(r, thread_id="dst") for r in source]
    assert canonical([r for r in copied if r.checkpoint_ns != "own"]) == canonical(as_target)
    assert [r.checkpoint_ns for r in copied].count("own") == 1
    assert (await backend.get_tuple(m.GetTupleRequest("dst"))) == as_target[0]

    await backend.delete_for_runs(["r"])  # copies remember the run that wrote them
    assert {r.checkpoint_ns for r in await list_all(backend, m.ListRequest())} == {"child", "own"}


async def test_copy_of_a_missing_thread_copies_nothing(backend: ValkeyCheckpointBackend) -> None:
    await backend.copy_thread("nothing", "dst")

    assert await list_all(backend, m.ListRequest()) == []


async def test_prune_keep_latest_keeps_each_namespaces_newest(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await put_chain(backend, "t1", valkey_checkpoint.DELETE_BUDGET + 20, run_id="r")
    await put_chain(backend, "t1", 3, ns="child")
    await put_chain(backend, "t2", 2)
    await backend.put_writes(m.PutWritesRequest("t1", "child", cid(2), [write("a", 0, b"kept")]))
    await backend.put_writes(m.PutWritesRequest("t1", "child", cid(1), [write("a", 0, b"gone")]))

    await backend.prune(["t1", "t2"], "keep_latest")

    assert positions(await list_all(backend, m.ListRequest())) == [
        ("t1", "", cid(valkey_checkpoint.DELETE_BUDGET + 19)),
        ("t1", "child", cid(2)),
        ("t2", "", cid(1)),
    ]
    child = await backend.get_tuple(m.GetTupleRequest("t1", "child"))
    assert child is not None
    assert child.writes == [write("a", 0, b"kept")]
    assert admin.smembers(backend.keys.run("r")) != set()  # the kept checkpoint's run
    assert admin.scard(backend.keys.run("r")) == 1
    assert len(thread_keys(admin, backend, "t1")) == 6  # ns, latest, 2 ids, 2 checkpoints


async def test_prune_delete_removes_the_threads(backend: ValkeyCheckpointBackend) -> None:
    await put_chain(backend, "t1", 3)
    await put_chain(backend, "t2", 3)
    await put_chain(backend, "t3", 1)

    await backend.prune(["t1", "t2"], "delete")

    assert positions(await list_all(backend, m.ListRequest())) == [("t3", "", cid(0))]
    with pytest.raises(RequestRejected):
        await backend.prune(["t3"], "everything")


# --- keys: TTL, slots --------------------------------------------------------------------


async def test_ttl_is_set_on_every_key_a_write_touches(
    ttl_backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await ttl_backend.put(m.PutRequest(record("t1", 0), run_id="r"))
    await ttl_backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("a", 0, b"")]))
    await ttl_backend.copy_thread("t1", "t2")

    keys = [k for k in admin.scan_iter(count=1000) if b":{g}:" not in k]
    assert len(keys) == 9  # 4 per thread, one run index
    ttls = {k: cast(int, admin.ttl(k)) for k in keys}
    assert all(0 < ttl <= 3600 for ttl in ttls.values()), ttls
    assert admin.zscore(ttl_backend.keys.thread_expiry, "t2") is not None


async def test_no_ttl_unless_configured(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await backend.put(m.PutRequest(record("t1", 0), run_id="r"))
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(0), [write("a", 0, b"")]))

    keys = list(admin.scan_iter(count=1000))
    assert keys
    assert all(admin.ttl(k) == -1 for k in keys)
    assert not admin.exists(backend.keys.thread_expiry)


async def test_expired_checkpoints_drop_out_of_reads(
    ttl_backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await put_chain(ttl_backend, "t1", 4)
    for i in (1, 3):  # as if their TTL ran out
        admin.delete(ttl_backend.keys.checkpoint("t1", "", cid(i)))

    latest = await ttl_backend.get_tuple(m.GetTupleRequest("t1"))
    assert latest is not None
    assert latest.checkpoint_id == cid(2)
    assert positions(await list_all(ttl_backend, m.ListRequest("t1"))) == [
        ("t1", "", cid(2)),
        ("t1", "", cid(0)),
    ]
    assert admin.zrange(ttl_backend.keys.ids("t1", ""), 0, -1) == [cid(0).encode(), cid(2).encode()]


async def test_threads_whose_keys_expired_leave_the_thread_index(
    ttl_backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await put_chain(ttl_backend, "old", 1)
    await put_chain(ttl_backend, "new", 1)
    admin.zadd(ttl_backend.keys.thread_expiry, {"old": 1})  # expired long ago

    await ttl_backend.list(m.ListRequest())

    assert admin.zrange(ttl_backend.keys.threads, 0, -1) == [b"new"]


AWKWARD_THREAD_IDS = ["", "{", "}", "{}", "a:b", "}{x}{", "%7B", "t:{", "ümlaut", "a" * 300]


@pytest.mark.parametrize("prefix", ["ap", "team{1}:x"])
async def test_all_keys_of_a_thread_share_one_cluster_slot(
    valkey_flushed: str, admin: valkey.Valkey, prefix: str
) -> None:
    store = ValkeyCheckpointBackend(settings_for(valkey_flushed, key_prefix=prefix))
    await store.start()
    try:
        for thread in AWKWARD_THREAD_IDS:
            admin.flushall()
            await put_chain(store, thread, 2, ns="a:{b}")
            await put_chain(store, thread, 1)
            await store.put_writes(m.PutWritesRequest(thread, "", cid(0), [write("t", 0, b"")]))
            keys = [k for k in admin.scan_iter(count=1000) if b":{g}:" not in k]
            expected = {
                store.keys.namespaces(thread),
                store.keys.latest(thread),
                store.keys.ids(thread, "a:{b}"),
                store.keys.ids(thread, ""),
                store.keys.checkpoint(thread, "a:{b}", cid(0)),
                store.keys.checkpoint(thread, "a:{b}", cid(1)),
                store.keys.checkpoint(thread, "", cid(0)),
            }
            assert {k.decode() for k in keys} == expected  # schema.py and keys.lua agree
            assert len({key_slot(k) for k in keys}) == 1, (thread, keys)
            assert key_slot(keys[0]) == key_slot(store.keys.thread_base(thread).encode())
    finally:
        await store.close()


async def test_awkward_thread_ids_stay_apart(backend: ValkeyCheckpointBackend) -> None:
    for i, thread in enumerate(AWKWARD_THREAD_IDS):
        await put_chain(backend, thread, 1, ns=thread, start=i)

    for i, thread in enumerate(AWKWARD_THREAD_IDS):
        got = await backend.get_tuple(m.GetTupleRequest(thread, thread))
        assert got == record(thread, i, ns=thread)
    listed = await list_all(backend, m.ListRequest(limit=3))
    assert [r.thread_id for r in listed] == sorted(AWKWARD_THREAD_IDS)


def test_escaped_keys_never_collide() -> None:
    keys = schema.Keys("ap")
    names = {
        keys.checkpoint("t", ns, i) for ns, i in [("a:cp:b", "c"), ("a", "b:cp:c"), ("a:", "")]
    }
    assert len(names) == 3
    assert keys.thread_base("") != keys.thread_base("%")


# --- cluster -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyClusterProcesses]:
    processes = start_valkey_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    yield processes
    processes.stop()


@pytest.fixture
async def cluster_backend(
    cluster: ValkeyClusterProcesses,
) -> AsyncIterator[ValkeyCheckpointBackend]:
    for node in cluster.nodes:
        node.flushall()
    store = ValkeyCheckpointBackend(settings_for(cluster.url, ttl_seconds=3600))
    await store.start()
    yield store
    await store.close()


async def test_a_cluster_lists_like_the_memory_backend(
    cluster_backend: ValkeyCheckpointBackend, cluster: ValkeyClusterProcesses
) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(cluster_backend, reference)

    assert sum(1 for node in cluster.nodes if dbsize(node)) >= 2  # threads on several nodes
    for request in LIST_REQUESTS:
        got = await list_all(cluster_backend, request)
        assert canonical(got) == canonical(await list_all(reference, request)), request


async def test_a_cluster_deletes_copies_and_prunes_like_the_memory_backend(
    cluster_backend: ValkeyCheckpointBackend,
) -> None:
    reference = MemoryCheckpointBackend()
    await fill_both(cluster_backend, reference)

    for store in (cluster_backend, reference):
        await store.copy_thread("a", "z")
        await store.delete_for_runs(["run-1"])
        await store.prune(["b"], "keep_latest")
        await store.prune(["z"], "delete")
        await store.delete_thread("c:{x}")

    everything = m.ListRequest(limit=1000)
    got = await list_all(cluster_backend, everything)
    assert canonical(got) == canonical(await list_all(reference, everything))
    assert {r.thread_id for r in got} == {"a", "b"}


# --- cost --------------------------------------------------------------------------------


async def test_put_and_get_tuple_take_one_round_trip_and_one_script_call(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey, round_trips: list[int]
) -> None:
    await put_chain(backend, "t1", 3, run_id="r")  # warm: pooled connection, loaded scripts

    before, round_trips[0] = command_calls(admin), 0
    await backend.put(m.PutRequest(record("t1", 3, parent=2), run_id="r"))
    assert round_trips[0] == 1
    assert calls_during(admin, before)["evalsha"] == 1

    before, round_trips[0] = command_calls(admin), 0
    await backend.get_tuple(m.GetTupleRequest("t1"))
    assert round_trips[0] == 1
    assert calls_during(admin, before)["evalsha"] == 1

    before, round_trips[0] = command_calls(admin), 0
    writes = [write("a", i, b"x") for i in range(5)]
    await backend.put_writes(m.PutWritesRequest("t1", "", cid(3), writes))
    assert round_trips[0] == 1
    assert calls_during(admin, before)["evalsha"] == 1


async def test_latest_lookup_reads_a_constant_number_of_keys(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    async def cost_of_latest() -> dict[str, int]:
        before = command_calls(admin)
        got = await backend.get_tuple(m.GetTupleRequest("t1"))
        assert got is not None
        return calls_during(admin, before)

    await put_chain(backend, "t1", 2)
    short = await cost_of_latest()
    for start in range(2, 2000, 200):
        await asyncio.gather(
            *(backend.put(m.PutRequest(record("t1", i))) for i in range(start, start + 200))
        )
    long = await cost_of_latest()

    assert short == long == {"evalsha": 1, "hget": 1, "hgetall": 1}


async def test_a_page_reads_about_as_many_keys_as_it_returns(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    for start in range(0, 2000, 200):
        await asyncio.gather(
            *(backend.put(m.PutRequest(record("t1", i))) for i in range(start, start + 200))
        )
    before = command_calls(admin)
    page = await backend.list(m.ListRequest(thread_id="t1", limit=5))

    assert len(page.records) == 5
    assert page.cursor is not None
    calls = calls_during(admin, before)
    assert calls["hgetall"] == 5
    assert sum(calls.values()) <= 12, calls


# --- Valkey unavailable ------------------------------------------------------------------


async def test_unreachable_valkey_raises_backend_unavailable_naming_the_host(
    own_server: ValkeyProcess,
) -> None:
    url = f"valkey://:s3cret@127.0.0.1:{own_server.port}/0"
    store = ValkeyCheckpointBackend(settings_for(url, socket_timeout_seconds=1.0))
    await store.start()
    try:
        await put_chain(store, "t1", 1)
        own_server.stop()

        for call in (
            store.put(m.PutRequest(record("t1", 1))),
            store.get_tuple(m.GetTupleRequest("t1")),
            store.list(m.ListRequest()),
        ):
            with pytest.raises(BackendUnavailable) as caught:
                await call
            assert f"127.0.0.1:{own_server.port}" in str(caught.value)
            assert "s3cret" not in str(caught.value)
        health = await store.health()
        assert not health.ok
        assert "s3cret" not in health.message

        own_server.start()  # empty again, and without the scripts: they are loaded again
        await put_chain(store, "t1", 1)
        assert await store.get_tuple(m.GetTupleRequest("t1")) == record("t1", 0)
        assert (await store.health()).ok
    finally:
        await store.close()


async def test_valkey_that_stops_answering_times_out_as_backend_unavailable(
    own_server: ValkeyProcess,
) -> None:
    url = f"valkey://:s3cret@127.0.0.1:{own_server.port}/0"
    store = ValkeyCheckpointBackend(settings_for(url, socket_timeout_seconds=0.3))
    await store.start()
    assert own_server.proc is not None
    try:
        await put_chain(store, "t1", 1)
        own_server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{own_server.port}"):
                await store.get_tuple(m.GetTupleRequest("t1"))
        finally:
            own_server.proc.send_signal(signal.SIGCONT)
        assert await store.get_tuple(m.GetTupleRequest("t1")) == record("t1", 0)
    finally:
        await store.close()


async def test_start_fails_clearly_without_valkey() -> None:
    port = free_port()
    store = ValkeyCheckpointBackend(settings_for(f"valkey://127.0.0.1:{port}/0"))

    with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}"):
        await store.start()


async def test_start_fails_clearly_with_a_wrong_password(own_server: ValkeyProcess) -> None:
    url = f"valkey://:hunter2@127.0.0.1:{own_server.port}/0"
    store = ValkeyCheckpointBackend(settings_for(url))

    with pytest.raises(BackendUnavailable, match="credentials") as caught:
        await store.start()
    assert "hunter2" not in str(caught.value)


async def test_scripts_flushed_from_the_server_are_loaded_again(
    backend: ValkeyCheckpointBackend, admin: valkey.Valkey
) -> None:
    await put_chain(backend, "t1", 1)
    admin.script_flush()

    await backend.put(m.PutRequest(record("t1", 1, parent=0), run_id="r"))
    admin.script_flush()
    assert await backend.get_tuple(m.GetTupleRequest("t1")) == record("t1", 1, parent=0)


def test_errors_never_name_the_password() -> None:
    assert errors.describe_url("valkeys://user:pw@cache.example:6380/3") == "cache.example:6380/3"
    assert errors.describe_url("valkey://localhost") == "localhost:6379/0"
