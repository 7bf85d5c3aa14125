"""Real LangGraph graphs on the sidecar's store and cache.

- Memories: a node of a graph compiled with ``store=SidecarStore(...)`` writes a memory in
  one thread and reads it in another (and from another store object and graph).
- Node cache: a node with ``cache_policy=CachePolicy(ttl=...)`` in a graph compiled with
  ``cache=SidecarCache(...)`` runs once per input until its entry expires or is cleared.

Cache namespaces are the node's identity, so each test caches inputs no other test uses.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.cache.base import FullKey
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_store
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import CachePolicy

from agentpersistence.client import SidecarCache, SidecarStore
from rig.store import STORE_BACKENDS, StoreSidecar, StoreSidecarFactory, unique_label

CACHE_TTL_SECONDS = 1


class Chat(TypedDict, total=False):
    message: str
    reply: str


def memory_graph(store: BaseStore) -> CompiledStateGraph[Chat, None, Chat, Chat]:
    """Remembers what follows "remember ", answers with everything the user asked to remember."""

    def respond(state: Chat, config: RunnableConfig, *, store: BaseStore) -> Chat:
        ns = ("memories", config["configurable"]["user_id"])
        message = state["message"]
        if message.startswith("remember "):
            store.put(ns, str(uuid.uuid4()), {"text": message.removeprefix("remember ")})
        memories = sorted(item.value["text"] for item in store.search(ns, limit=100))
        return {"reply": ", ".join(memories)}

    builder = StateGraph(Chat)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    return builder.compile(checkpointer=InMemorySaver(), store=store)


def chat_config(thread: str, user: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "user_id": user}}


def test_memories_cross_threads(store_sidecar: StoreSidecar) -> None:
    user = unique_label("user")
    with SidecarStore(store_sidecar.socket) as store:
        graph = memory_graph(store)
        graph.invoke({"message": "remember tea, no sugar"}, chat_config("thread-1", user))
        graph.invoke({"message": "remember window seat"}, chat_config("thread-1", user))
        other = graph.invoke({"message": "what do you know?"}, chat_config("thread-2", user))
        assert other["reply"] == "tea, no sugar, window seat"
        stranger = graph.invoke({"message": "hi"}, chat_config("thread-2", unique_label("u")))
        assert stranger["reply"] == ""
    # A new store object and graph (as another process would have) sees the same memories.
    with SidecarStore(store_sidecar.socket) as store:
        later = memory_graph(store).invoke({"message": "and?"}, chat_config("thread-3", user))
        assert later["reply"] == "tea, no sugar, window seat"
        assert len(store.search(("memories", user))) == 2


async def test_memories_async_with_get_store(store_sidecar: StoreSidecar) -> None:
    user = unique_label("user")

    async def respond(state: Chat, config: RunnableConfig) -> Chat:
        store = get_store()
        ns = ("memories", config["configurable"]["user_id"])
        if state["message"].startswith("remember "):
            await store.aput(ns, "fact", {"text": state["message"].removeprefix("remember ")})
        item = await store.aget(ns, "fact")
        return {"reply": "" if item is None else item.value["text"]}

    builder = StateGraph(Chat)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    async with SidecarStore(store_sidecar.socket) as store:
        graph = builder.compile(checkpointer=InMemorySaver(), store=store)
        await graph.ainvoke({"message": "remember blue"}, chat_config("t1", user))
        out = await graph.ainvoke({"message": "favourite colour?"}, chat_config("t2", user))
        assert out["reply"] == "blue"


# --- the node cache ---------------------------------------------------------------------


class Numbers(TypedDict, total=False):
    x: int
    doubled: int
    tripled: int


def cached_graph(
    cache: SidecarCache[Any], calls: Counter[str], ttl: int | None
) -> CompiledStateGraph[Numbers, None, Numbers, Numbers]:
    def double(state: Numbers) -> Numbers:
        calls["double"] += 1
        return {"doubled": state["x"] * 2}

    def triple(state: Numbers) -> Numbers:
        calls["triple"] += 1
        return {"tripled": state["x"] * 3}

    builder = StateGraph(Numbers)
    builder.add_node("double", double, cache_policy=CachePolicy(ttl=ttl))
    builder.add_node("triple", triple, cache_policy=CachePolicy(ttl=ttl))
    builder.add_edge(START, "double")
    builder.add_edge(START, "triple")
    return builder.compile(cache=cache)


def fresh_input() -> int:
    """An input no other test (or earlier run on a session sidecar) has cached."""
    return uuid.uuid4().int % 10**12


def test_cached_node_skipped_until_ttl_expires(store_sidecar: StoreSidecar) -> None:
    calls: Counter[str] = Counter()
    x = fresh_input()
    with SidecarCache[Any](store_sidecar.socket) as cache:
        graph = cached_graph(cache, calls, ttl=CACHE_TTL_SECONDS)
        cached_at = time.monotonic()
        assert graph.invoke({"x": x}) == {"x": x, "doubled": 2 * x, "tripled": 3 * x}
        assert graph.invoke({"x": x}) == {"x": x, "doubled": 2 * x, "tripled": 3 * x}
        assert calls == {"double": 1, "triple": 1}
        graph.invoke({"x": x + 1})
        assert calls == {"double": 2, "triple": 2}
        time.sleep(max(0.0, cached_at + CACHE_TTL_SECONDS + 0.3 - time.monotonic()))
        assert graph.invoke({"x": x}) == {"x": x, "doubled": 2 * x, "tripled": 3 * x}
        assert calls == {"double": 3, "triple": 3}


async def test_cached_node_async(store_sidecar: StoreSidecar) -> None:
    calls: Counter[str] = Counter()
    x = fresh_input()
    async with SidecarCache[Any](store_sidecar.socket) as cache:
        graph = cached_graph(cache, calls, ttl=CACHE_TTL_SECONDS)
        cached_at = time.monotonic()
        await graph.ainvoke({"x": x})
        assert await graph.ainvoke({"x": x}) == {"x": x, "doubled": 2 * x, "tripled": 3 * x}
        assert calls == {"double": 1, "triple": 1}
        await asyncio.sleep(max(0.0, cached_at + CACHE_TTL_SECONDS + 0.3 - time.monotonic()))
        await graph.ainvoke({"x": x})
        assert calls == {"double": 2, "triple": 2}


def test_clear_cache_of_one_node(store_sidecar: StoreSidecar) -> None:
    """``graph.clear_cache(nodes=[...])`` clears exactly those nodes' namespaces."""
    calls: Counter[str] = Counter()
    x = fresh_input()
    with SidecarCache[Any](store_sidecar.socket) as cache:
        graph = cached_graph(cache, calls, ttl=None)
        graph.invoke({"x": x})
        graph.invoke({"x": x})
        assert calls == {"double": 1, "triple": 1}
        graph.clear_cache(nodes=["double"])
        graph.invoke({"x": x})
        assert calls == {"double": 2, "triple": 1}


def test_cache_clear_by_namespace(store_sidecar: StoreSidecar) -> None:
    label = unique_label("cache")
    one, two = (label, "one"), (label, "two")
    keys: list[FullKey] = [(one, "a"), (one, "b"), (two, "a"), ((label,), "a")]
    with SidecarCache[Any](store_sidecar.socket) as cache:
        cache.set({key: ({"value": i, "bytes": b"\x00\xff"}, None) for i, key in enumerate(keys)})
        assert cache.get(keys) == {
            key: {"value": i, "bytes": b"\x00\xff"} for i, key in enumerate(keys)
        }
        cache.clear([one])
        assert set(cache.get(keys)) == {(two, "a"), ((label,), "a")}
        cache.clear([(label,)])  # exact namespaces: not a prefix of ``two``
        assert set(cache.get(keys)) == {(two, "a")}
        cache.set({(one, "c"): ("short", 1), (one, "d"): ("long", None)})
        time.sleep(1.3)
        assert cache.get([(one, "c"), (one, "d")]) == {(one, "d"): "long"}
        assert cache.get([]) == {}


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_cache_clear_everything(
    store_sidecar_factory: StoreSidecarFactory, backend: str
) -> None:
    """``clear()`` without namespaces empties the cache (on a sidecar of this test's own)."""
    sidecar = store_sidecar_factory(backend)
    keys: list[FullKey] = [(("a",), "1"), (("b", "c"), "2")]
    async with SidecarCache[Any](sidecar.socket) as cache:
        await cache.aset({key: (key[1], None) for key in keys})
        assert await cache.aget(keys) == {keys[0]: "1", keys[1]: "2"}
        await cache.aclear()
        assert await cache.aget(keys) == {}


def test_cache_namespaces_stay_distinct(store_sidecar: StoreSidecar) -> None:
    """Namespaces that a naive key encoding would merge keep their own entries and clears
    (LangGraph's cache namespaces hold dotted module paths)."""
    label = unique_label("distinct")
    namespaces: list[tuple[str, ...]] = [
        (label, "a.b"),
        (label, "a", "b"),
        (label, "a:b"),
        (label, "a%3Ab"),
        (label, "a", ""),
        (label, ""),
        (label, "{c}"),
        (label, "a"),
        (label,),
    ]
    keys: list[FullKey] = [(ns, k) for ns in namespaces for k in ("k", "", "k:1", "{k}")]
    with SidecarCache[Any](store_sidecar.socket) as cache:
        cache.set({key: (repr(key), None) for key in keys})
        assert cache.get(keys) == {key: repr(key) for key in keys}
        for cleared in range(len(namespaces)):
            cache.clear([namespaces[cleared]])
            kept = [key for key in keys if key[0] in namespaces[cleared + 1 :]]
            assert cache.get(keys) == {key: repr(key) for key in kept}, namespaces[cleared]
