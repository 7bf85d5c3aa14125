"""One ``SidecarStore`` offers the sync and the async API: from a thread pool while an event
loop runs, from a plain script without one, and ``a``-methods on the loop itself."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from langgraph.store.base import GetOp, Item, Op, PutOp, SearchOp

from agentpersistence.client import SidecarStore
from rig.store import RANKS_ITSELF, StoreSidecar, unique_label
from store.differential import index_config

WORKERS = 8
ROUNDS = 20


def sync_worker(store: SidecarStore, root: str, worker: int) -> list[str]:
    ns = (root, f"w{worker}")
    for i in range(ROUNDS):
        store.put(ns, f"k{i}", {"text": f"apple {worker} {i}", "i": i})
        item = store.get(ns, f"k{i}")
        assert item is not None
        assert item.value["i"] == i
    found = store.search(ns, filter={"i": {"$gte": ROUNDS - 3}}, limit=10)
    return sorted(item.key for item in found)


async def async_worker(store: SidecarStore, root: str, worker: int) -> list[str]:
    ns = (root, f"a{worker}")
    for i in range(ROUNDS):
        await store.aput(ns, f"k{i}", {"text": f"banana {worker} {i}", "i": i})
        item = await store.aget(ns, f"k{i}")
        assert item is not None
        assert item.value["i"] == i
    found = await store.asearch(ns, filter={"i": {"$gte": ROUNDS - 3}}, limit=10)
    return sorted(item.key for item in found)


async def test_sync_from_threads_while_the_loop_runs_async_calls(
    store_sidecar: StoreSidecar,
) -> None:
    root = unique_label("threads")
    expected = [f"k{i}" for i in range(ROUNDS - 3, ROUNDS)]
    loop = asyncio.get_running_loop()
    with SidecarStore(store_sidecar.socket, index=index_config()) as store:
        with ThreadPoolExecutor(WORKERS) as pool:
            in_threads = [
                loop.run_in_executor(pool, sync_worker, store, root, w) for w in range(WORKERS)
            ]
            on_loop = [async_worker(store, root, w) for w in range(WORKERS)]
            results = await asyncio.gather(*in_threads, *on_loop)
        assert results == [expected] * (2 * WORKERS)
        namespaces = await store.alist_namespaces(prefix=(root,))
        assert len(namespaces) == 2 * WORKERS
        hits = await asyncio.to_thread(store.search, (root,), query="apple 3", limit=3)
        assert all(h.score is not None for h in hits)


async def test_async_api(store_sidecar: StoreSidecar) -> None:
    root = unique_label("async")
    ns = (root, "docs")
    async with SidecarStore(store_sidecar.socket, index=index_config()) as store:
        await store.aput(ns, "a", {"text": "apple banana"})
        await store.aput(ns, "b", {"text": "cherry"}, index=False)
        await store.aput((root, "other"), "c", {"text": "apple"})
        item = await store.aget(ns, "a")
        assert isinstance(item, Item)
        assert item.value == {"text": "apple banana"}
        hits = await store.asearch((root,), query="apple", limit=5)
        if store_sidecar.backend in RANKS_ITSELF:  # AgentCore's retrieval: what shares a word
            assert {h.key for h in hits} == {"a", "c"}
            assert all(h.score is not None for h in hits)
        else:  # the agent's vectors; "b" (index=False) fills the page unscored
            assert [(h.key, h.score is None) for h in hits] == [
                ("c", False),
                ("a", False),
                ("b", True),
            ]
        assert await store.alist_namespaces(prefix=(root,)) == [ns, (root, "other")]
        assert await store.alist_namespaces(prefix=(root,), max_depth=1) == [(root,)]
        await store.adelete(ns, "a")
        assert await store.aget(ns, "a") is None
        results = await store.abatch(
            [PutOp(ns, "d", {"text": "date"}), GetOp(ns, "d"), SearchOp(ns, limit=10)]
        )
        assert results[:2] == [None, None]
        found = results[2]
        assert isinstance(found, list)
        assert [i.key for i in found if isinstance(i, Item)] == ["b"]
        assert await store.aget(ns, "d") is not None


def test_sync_api_in_a_plain_script(store_sidecar: StoreSidecar) -> None:
    """No event loop anywhere; the socket comes from ``AGENTPERSISTENCE_SOCKET``."""
    root = unique_label("script")
    script = textwrap.dedent(
        f"""
        import json
        from agentpersistence.client import SidecarStore

        store = SidecarStore()
        ns = ({root!r}, "s")
        store.put(ns, "k", {{"text": "hello", "n": 1}})
        store.put(ns, "k2", {{"text": "bye", "n": 2}})
        item = store.get(ns, "k")
        found = store.search(ns, filter={{"n": {{"$gt": 1}}}})
        print(json.dumps({{
            "value": item.value,
            "found": [i.key for i in found],
            "namespaces": store.list_namespaces(prefix=({root!r},)),
        }}))
        """
    )
    env_socket = {"AGENTPERSISTENCE_SOCKET": store_sidecar.socket}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env_socket},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "value": {"text": "hello", "n": 1},
        "found": ["k2"],
        "namespaces": [[root, "s"]],
    }
    with SidecarStore(store_sidecar.socket) as store:
        assert store.get((root, "s"), "k2") is not None


def test_socket_from_the_environment(
    store_sidecar: StoreSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPERSISTENCE_SOCKET", store_sidecar.socket)
    root = unique_label("env")
    with SidecarStore() as store:
        store.put((root,), "k", {"v": 1})
    with SidecarStore(store_sidecar.socket) as store:
        assert store.get((root,), "k") is not None


def test_concurrent_writers_leave_a_consistent_store(store_sidecar: StoreSidecar) -> None:
    """Racing puts and deletes of the same items from many threads: afterwards every way of
    reading the store (get, search, ranked search, listing) agrees on what it holds."""
    root = unique_label("race")
    namespaces = [(root, f"n{i}") for i in range(3)]
    keys = [f"k{i}" for i in range(8)]

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        with SidecarStore(store_sidecar.socket, index=index_config()) as store:
            for _ in range(60):
                ns, key = rng.choice(namespaces), rng.choice(keys)
                ops: list[Op] = [
                    PutOp(ns, key, {"text": rng.choice(["apple", "fig"]), "seed": seed})
                    if rng.random() < 0.7
                    else PutOp(ns, key, None)
                    for _ in range(rng.randint(1, 3))
                ]
                store.batch(ops)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(writer, range(WORKERS)))

    with SidecarStore(store_sidecar.socket, index=index_config()) as store:
        held = {
            (ns, key): item.value
            for ns in namespaces
            for key in keys
            if (item := store.get(ns, key)) is not None
        }
        listed = {(i.namespace, i.key): i.value for i in store.search((root,), limit=1_000)}
        ranked = store.search((root,), query="apple", limit=1_000)
        assert listed == held
        if store_sidecar.backend in RANKS_ITSELF:  # AgentCore's retrieval: what shares a word
            apples = {ident: value for ident, value in held.items() if value["text"] == "apple"}
            assert {(i.namespace, i.key): i.value for i in ranked} == apples
        else:  # the agent's vectors rank every item
            assert {(i.namespace, i.key): i.value for i in ranked} == held
        assert all(i.score is not None for i in ranked)
        assert sorted({ns for ns, _ in held}) == store.list_namespaces(prefix=(root,))
