"""The ``agentcore-memory`` store backend against the AgentCore Memory emulator.

What the store tier (``tests/store``, run on this backend too) cannot see: how items are laid
out as memory records, the AgentCore calls per operation, the limits (16,000 characters a
record, no TTL, ``maxScan``), what a search with a query does here instead of ranking the
agent's vectors (AgentCore's retrieval: the emulator's text stand-in, ``topK``, the filter
applied afterwards), records of others in the memory, and the conversational mode.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import RequestRejected
from agentpersistence.emulator import retrieval
from agentpersistence.sidecar.backends.agentcore_memory import items
from agentpersistence.sidecar.backends.agentcore_memory.records import Draft
from agentpersistence.sidecar.backends.agentcore_memory.store import AgentCoreMemoryStoreBackend
from agentpersistence.sidecar.settings import AgentCoreMemoryStoreSettings
from rig.agentcore import CallCounter
from rig.emulator import DATA, EmulatorProcess, unique_name

pytestmark = pytest.mark.asyncio

FACTS = "/users/{actorId}/facts"
SEMANTIC = {"semanticMemoryStrategy": {"name": "facts", "namespaceTemplates": [FACTS]}}


@dataclass(eq=False)  # hashable: botocore keys its handlers by them
class ParamsRecorder:
    """The parameters of each AgentCore call, in order: ``(operation, params)``, as the
    backend passed them (botocore's ``before-parameter-build`` event)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: object) -> None:
        self.calls.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


@dataclass
class Store:
    backend: AgentCoreMemoryStoreBackend
    counter: CallCounter
    recorder: ParamsRecorder
    memory_id: str
    emulator: EmulatorProcess

    async def run(self, *ops: m.StoreOp) -> list[m.StoreResult]:
        return await self.backend.batch(list(ops))

    async def one(self, op: m.StoreOp) -> m.StoreResult:
        [result] = await self.backend.batch([op])
        return result

    async def get(self, namespace: tuple[str, ...], key: str) -> m.StoreItem | None:
        return (await self.one(get(namespace, key))).item

    async def search(self, prefix: tuple[str, ...], **kwargs: Any) -> list[m.StoreItem]:
        return (await self.one(search(prefix, **kwargs))).items or []

    def records(self, path: str = "/") -> list[dict[str, Any]]:
        """Every record under ``path``, as the emulator holds them (newest first)."""
        client = self.emulator.client(DATA)
        request: dict[str, Any] = {
            "memoryId": self.memory_id,
            "namespacePath": path,
            "maxResults": 100,
        }
        found: list[dict[str, Any]] = []
        while True:
            page = client.list_memory_records(**request)
            found += page["memoryRecordSummaries"]
            if not page.get("nextToken"):
                return found
            request["nextToken"] = page["nextToken"]


OpenStore = Callable[..., Awaitable[Store]]


@pytest_asyncio.fixture
async def open_store(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenStore]:
    """Open backends on new memories (``strategies=`` for CreateMemory, other keywords are
    settings); each counts and records its AgentCore calls."""
    for name, value in agentcore_emulator.env().items():
        monkeypatch.setenv(name, value)
    opened: list[AgentCoreMemoryStoreBackend] = []

    async def open_(strategies: list[dict[str, Any]] | None = None, **settings: Any) -> Store:
        memory_id = settings.pop("memory_id", None) or agentcore_emulator.create_active_memory(
            unique_name("store"), strategies
        )
        backend = AgentCoreMemoryStoreBackend(
            AgentCoreMemoryStoreSettings(memory_id=memory_id, **settings)
        )
        await backend.start()
        opened.append(backend)
        counter, recorder = CallCounter(), ParamsRecorder()
        backend.memory.client.meta.events.register("before-call.bedrock-agentcore", counter)
        backend.memory.client.meta.events.register(
            "before-parameter-build.bedrock-agentcore", recorder
        )
        return Store(backend, counter, recorder, memory_id, agentcore_emulator)

    yield open_
    for backend in opened:
        await backend.close()


@pytest_asyncio.fixture
async def store(open_store: OpenStore) -> Store:
    return await open_store()


def put(namespace: tuple[str, ...], key: str, value: Any, **kwargs: Any) -> m.StoreOp:
    raw = None if value is None else json.dumps(value).encode()
    return m.StoreOp("put", list(namespace), key, value=raw, **kwargs)


def get(namespace: tuple[str, ...], key: str) -> m.StoreOp:
    return m.StoreOp("get", list(namespace), key)


def search(prefix: tuple[str, ...], *, filter: Any = None, **kwargs: Any) -> m.StoreOp:
    raw = None if filter is None else json.dumps(filter).encode()
    return m.StoreOp("search", list(prefix), filter=raw, **kwargs)


def listing(
    prefix: tuple[str, ...] | None = None, suffix: tuple[str, ...] | None = None, **kwargs: Any
) -> m.StoreOp:
    conditions = []
    if prefix is not None:
        conditions.append(m.NamespaceCondition("prefix", list(prefix)))
    if suffix is not None:
        conditions.append(m.NamespaceCondition("suffix", list(suffix)))
    return m.StoreOp("list_namespaces", conditions=conditions, **kwargs)


def value_of(item: m.StoreItem | None) -> Any:
    assert item is not None
    return json.loads(item.value)


# --- layout and round trips -----------------------------------------------------------

ODD_LABELS = ("a b", "ünï", "日本", "*", "x_y", "_k", "a/b", "-", "%41", "\x01", "😀", "L" * 300)
ODD_KEYS = ("", "k:1", "😀", "x" * 500, "_h", "mem-0", "a/b", "k\x00", "K")


async def test_namespace_and_key_round_trip_exactly(store: Store) -> None:
    ops = [
        put(("odd", label), key, {"label": label, "key": key})
        for label in ODD_LABELS
        for key in ODD_KEYS
    ]
    await store.run(*ops)
    for label in ODD_LABELS:
        answers = await store.run(*(get(("odd", label), key) for key in ODD_KEYS))
        for key, answer in zip(ODD_KEYS, answers, strict=True):
            assert answer.item is not None, (label, key)
            assert (answer.item.namespace, answer.item.key) == (["odd", label], key)
            assert value_of(answer.item) == {"label": label, "key": key}
        found = await store.search(("odd", label), limit=100)
        assert sorted(i.key for i in found) == sorted(ODD_KEYS)
    assert len(store.records("/odd")) == len(ODD_LABELS) * len(ODD_KEYS)


async def test_an_item_is_one_record_at_its_namespace_and_key(store: Store) -> None:
    await store.one(put(("users", "alice"), "prefs", {"tea": "green"}))
    await store.one(put(("a b", "ünï"), "k:1", {"v": 1}))
    by_path = {r["namespaces"][0]: r for r in store.records()}
    assert set(by_path) == {"/users/alice/_kprefs", "/a_20b/_c3_bcn_c3_af/_kk_3a1"}
    record = by_path["/users/alice/_kprefs"]
    document = json.loads(record["content"]["text"])
    assert document["namespace"] == ["users", "alice"]
    assert document["key"] == "prefs"
    assert document["value"] == {"tea": "green"}
    assert document["created_at"] == document["updated_at"]
    assert record["metadata"] == {
        "ap.kind": {"stringValue": "item"},
        "ap.key": {"stringValue": "prefs"},
    }
    long_key = items.item_path(("users",), "x" * 500)
    assert long_key.startswith("/users/_k_h")
    assert len(long_key) == len("/users/_k_h") + 64


async def test_calls_per_operation(store: Store) -> None:
    ns = ("calls",)
    store.counter.reset()
    await store.one(put(ns, "k", {"v": 1}))
    assert store.counter.reset() == {"ListMemoryRecords": 1, "BatchCreateMemoryRecords": 1}
    assert await store.get(ns, "k") is not None
    assert store.counter.reset() == {"ListMemoryRecords": 1}
    assert [p["namespace"] for p in store.recorder.of("ListMemoryRecords")][-1] == "/calls/_kk"
    await store.one(put(ns, "k", {"v": 2}))
    assert store.counter.reset() == {"ListMemoryRecords": 1, "BatchUpdateMemoryRecords": 1}
    await store.one(put(ns, "k", None))
    assert store.counter.reset() == {"ListMemoryRecords": 1, "DeleteMemoryRecord": 1}
    await store.run(*(put(ns, f"many{i}", {"i": i}) for i in range(150)))
    assert store.counter.reset() == {"ListMemoryRecords": 150, "BatchCreateMemoryRecords": 2}
    await store.run(get(ns, "many1"), put(ns, "many1", {"i": -1}), get(ns, "many2"))
    assert store.counter.reset() == {"ListMemoryRecords": 2, "BatchUpdateMemoryRecords": 1}


async def test_update_keeps_created_at_and_one_record(store: Store) -> None:
    ns = ("updates",)
    await store.one(put(ns, "k", {"v": 1}))
    first = await store.get(ns, "k")
    await store.one(put(ns, "k", {"v": 2}))
    second = await store.get(ns, "k")
    assert first is not None
    assert second is not None
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert value_of(second) == {"v": 2}
    assert len(store.records("/updates")) == 1


async def test_delete(store: Store) -> None:
    ns = ("deletes",)
    await store.run(put(ns, "a", {"v": 1}), put(ns, "b", {"v": 2}))
    await store.one(put(ns, "a", None))
    await store.one(put(ns, "never", None))
    assert await store.get(ns, "a") is None
    assert [i.key for i in await store.search(ns)] == ["b"]
    assert len(store.records("/deletes")) == 1


async def test_a_batch_reads_the_store_as_it_was(store: Store) -> None:
    ns = ("batch",)
    await store.one(put(ns, "k", {"v": 0}))
    answers = await store.run(
        put(ns, "k", {"v": 1}), get(ns, "k"), search(ns), put(ns, "k", {"v": 2})
    )
    assert value_of(answers[1].item) == {"v": 0}
    assert [value_of(i) for i in answers[2].items or []] == [{"v": 0}]
    assert value_of(await store.get(ns, "k")) == {"v": 2}


async def test_racing_creates_are_read_as_one_and_cleaned_by_the_next_put(store: Store) -> None:
    """Two sidecars creating one new item at once leave two records: the newer is read,
    and the next put keeps only the one it updates."""
    ns, key = ("race",), "k"
    path = items.item_path(ns, key)
    for updated, v in [(1000.0, "older"), (2000.0, "newer")]:
        text = items.content(ns, key, {"v": v}, 1000.0, updated)
        draft = Draft(path, text, items.metadata(key), items.timestamp(updated))
        await store.backend.records.create([draft])
    assert value_of(await store.get(ns, key)) == {"v": "newer"}
    assert [value_of(i) for i in await store.search(ns)] == [{"v": "newer"}]
    await store.one(put(ns, key, {"v": "put"}))
    [record] = store.records(path)
    assert json.loads(record["content"]["text"])["value"] == {"v": "put"}
    item = await store.get(ns, key)
    assert item is not None
    assert item.created_at == 1000.0


async def test_concurrent_puts_of_one_new_item_leave_one_record(store: Store) -> None:
    """Batches racing to create the same item through one backend are serialized per item:
    one record, holding the last value written (a second record would be ranked by
    AgentCore's retrieval even though reads take the newest)."""
    ns, key = ("race", "one"), "k"
    values = [{"v": i} for i in range(12)]
    await asyncio.gather(*(store.one(put(ns, key, value)) for value in values))
    [record] = store.records(items.item_path(ns, key))
    assert json.loads(record["content"]["text"])["value"] in values
    assert value_of(await store.get(ns, key)) == json.loads(record["content"]["text"])["value"]


async def test_a_repeated_create_call_creates_nothing_twice(store: Store) -> None:
    """BatchCreateMemoryRecords carries a clientToken derived from its records: a call
    repeated after a lost answer is answered without creating anything."""
    ns, key = ("again",), "k"
    text = items.content(ns, key, {"v": 1}, 1.0, 1.0)
    draft = Draft(items.item_path(ns, key), text, items.metadata(key), items.timestamp(1.0))
    for _ in range(3):
        await store.backend.records.create([draft])
    assert len(store.records("/again")) == 1
    tokens = {p["clientToken"] for p in store.recorder.of("BatchCreateMemoryRecords")}
    assert len(tokens) == 1


async def test_records_that_are_not_items_are_left_alone(store: Store) -> None:
    """Records others write into the memory (a strategy's, an agent's own) are skipped."""
    store.emulator.client(DATA).batch_create_memory_records(
        memoryId=store.memory_id,
        records=[
            {
                "requestIdentifier": "1",
                "namespaces": ["/shared/_kk"],
                "content": {"text": "apple facts from elsewhere"},
                "timestamp": 1.0,
            }
        ],
    )
    await store.one(put(("shared",), "mine", {"text": "apple"}))
    assert await store.get(("shared",), "k") is None
    assert [i.key for i in await store.search(("shared",))] == ["mine"]
    assert [i.key for i in await store.search(("shared",), query="apple")] == ["mine"]
    assert (await store.one(listing())).namespaces == [["shared"]]


# --- searches without a query -----------------------------------------------------------


async def test_search_without_a_query_orders_filters_and_pages(store: Store) -> None:
    root = ("order",)
    await store.run(put((*root, "b"), "k2", {"n": 2}), put((*root, "a"), "k1", {"n": 1}))
    await store.run(put((*root, "a"), "k3", {"n": 3, "color": "red"}))
    await store.run(put((*root, "b"), "k2", {"n": 4, "color": "red"}))

    async def keys(**kwargs: Any) -> list[str]:
        return [i.key for i in await store.search(root, **kwargs)]

    assert await keys() == ["k2", "k3", "k1"]  # updated_at descending
    assert await keys(limit=1, offset=1) == ["k3"]
    assert await keys(offset=3) == []
    assert await keys(filter={"color": "red"}) == ["k2", "k3"]
    assert await keys(filter={"n": {"$lt": 4}}) == ["k3", "k1"]
    assert await keys(filter={"n": {"$gt": 1}}, limit=1, offset=1) == ["k3"]
    assert [i.key for i in await store.search((*root, "a"))] == ["k3", "k1"]
    assert await store.search((*root, "absent")) == []
    assert all(i.score is None for i in await store.search(root))
    # One batch: one updated_at, then namespace (as tuples: ("order",) first) and key.
    await store.run(put((*root, "a"), "y", {}), put((*root, "a"), "x", {}), put(root, "z", {}))
    assert (await keys())[:3] == ["z", "x", "y"]


async def test_list_namespaces(store: Store) -> None:
    namespaces = [("a",), ("a", "b"), ("a", "b", "c"), ("a", "x", "c"), ("b", "c"), ("日本", "c")]
    await store.run(*(put(ns, "k", {}) for ns in namespaces))

    async def listed(*args: Any, **kwargs: Any) -> list[tuple[str, ...]]:
        return [tuple(ns) for ns in (await store.one(listing(*args, **kwargs))).namespaces or []]

    assert await listed() == sorted(namespaces)
    assert await listed(("a",)) == [("a",), ("a", "b"), ("a", "b", "c"), ("a", "x", "c")]
    assert await listed(("a", "*", "c")) == [("a", "b", "c"), ("a", "x", "c")]
    assert await listed(None, ("c",)) == [
        ("a", "b", "c"),
        ("a", "x", "c"),
        ("b", "c"),
        ("日本", "c"),
    ]
    assert await listed(("a",), ("c",), max_depth=2) == [("a", "b"), ("a", "x")]
    assert await listed(max_depth=1) == [("a",), ("b",), ("日本",)]
    assert await listed(limit=2, offset=1) == [("a", "b"), ("a", "b", "c")]
    listings = [p["namespacePath"] for p in store.recorder.of("ListMemoryRecords")[-7:]]
    assert listings == ["/", "/a", "/a", "/", "/a", "/", "/"]


# --- limits -----------------------------------------------------------------------------


async def test_an_item_larger_than_a_record_is_refused_with_its_batch(store: Store) -> None:
    ns = ("large",)
    fits = {"text": "x" * (items.CONTENT_MAX - 200)}
    await store.one(put(ns, "fits", fits))
    assert value_of(await store.get(ns, "fits")) == fits
    too_large = {"text": "é" * items.CONTENT_MAX}
    with pytest.raises(RequestRejected, match="at most 16000") as refused:
        await store.run(put(ns, "other", {"v": 1}), put(ns, "large", too_large))
    assert "agentcore-memory store's limit" in refused.value.message
    assert await store.get(ns, "other") is None  # nothing of the batch was written
    astral = {"text": "😀" * (items.CONTENT_MAX // 2)}  # 2 UTF-16 units each, as AWS counts
    with pytest.raises(RequestRejected, match="at most 16000"):
        await store.one(put(ns, "astral", astral))


async def test_a_put_with_a_ttl_is_refused(store: Store) -> None:
    with pytest.raises(RequestRejected, match=r"does not support TTLs.*whole days"):
        await store.run(put(("ttl",), "a", {"v": 1}), put(("ttl",), "b", {"v": 1}, ttl_seconds=60))
    assert await store.get(("ttl",), "a") is None
    await store.one(put(("ttl",), "a", None, ttl_seconds=60))  # a delete has nothing to expire
    found = await store.one(m.StoreOp("get", ["ttl"], "a", refresh_ttl=True))
    assert found.item is None


async def test_max_scan_bounds_listings_and_searches(open_store: OpenStore) -> None:
    store = await open_store(max_scan=5)
    await store.run(*(put(("big", "x"), f"k{i}", {"text": f"apple {i}"}) for i in range(6)))
    await store.run(*(put(("big", "y"), f"k{i}", {"text": f"apple {i}"}) for i in range(2)))
    with pytest.raises(RequestRejected, match=r"more than 5 .*agentcoreMemory\.maxScan") as refused:
        await store.search(("big",))
    assert "['big']" in refused.value.message
    with pytest.raises(RequestRejected, match="maxScan"):
        await store.search(("big",), filter={"text": "apple 1"})
    with pytest.raises(RequestRejected, match=r"namespace listing .*maxScan"):
        await store.one(listing(("big",)))
    assert len(await store.search(("big", "y"))) == 2
    assert (await store.one(listing(("big", "y")))).namespaces == [["big", "y"]]
    # A query is ranked by AgentCore: topK is bounded by maxScan, nothing is refused.
    ranked = await store.search(("big",), query="apple", filter={"text": {"$ne": "x"}}, limit=10)
    assert len(ranked) == 5
    assert store.recorder.of("RetrieveMemoryRecords")[-1]["searchCriteria"]["topK"] == 5


# --- searches with a query: AgentCore ranks ---------------------------------------------


async def test_a_query_is_ranked_by_agentcore_not_by_the_agents_vectors(store: Store) -> None:
    """RetrieveMemoryRecords ranks the records' texts (the emulator's stand-in: cosine of
    token counts); vectors sent with the puts (here ranking the other way round) are not
    used; scores are AgentCore's; records sharing no word are not returned."""
    ns = ("ranked",)
    texts = {"one": "green tea", "two": "green tea with lemon", "three": "black coffee"}
    vectors = {"one": [0.0, 1.0], "two": [1.0, 0.0], "three": [1.0, 0.0]}
    await store.run(
        *(
            put(ns, key, {"text": text}, vectors=[m.FieldVector("text", vectors[key])])
            for key, text in texts.items()
        )
    )
    found = await store.one(search(ns, query="green tea", query_vector=[1.0, 0.0], limit=10))
    hits = found.items or []
    by_key = {r["namespaces"][0]: r["content"]["text"] for r in store.records("/ranked")}
    query = retrieval.tokens("green tea")
    expected = sorted(
        (
            (retrieval.score(query, retrieval.tokens(by_key[items.item_path(ns, k)])), k)
            for k in ("one", "two")
        ),
        reverse=True,
    )
    assert [h.key for h in hits] == [k for _, k in expected]
    assert [h.score for h in hits] == pytest.approx([s for s, _ in expected])
    assert [h.key for h in hits] == ["one", "two"]  # the vectors would rank "two" first
    [retrieve] = store.recorder.of("RetrieveMemoryRecords")
    assert retrieve["namespacePath"] == "/ranked"
    assert retrieve["searchCriteria"] == {"searchQuery": "green tea", "topK": 10}


async def test_top_k_is_the_page_and_a_filter_applies_to_agentcores_ranking(
    store: Store,
) -> None:
    ns = ("topk",)
    await store.run(
        *(put(ns, f"k{i}", {"text": "tea " * (i + 1), "i": i}) for i in range(8)),
        put((*ns, "sub"), "s", {"text": "tea", "i": 100}),
        put(("topk-sibling",), "t", {"text": "tea"}),
    )
    everything = await store.search(ns, query="tea", limit=20)
    assert {h.key for h in everything} == {f"k{i}" for i in range(8)} | {"s"}
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    page = await store.search(ns, query="tea", limit=2, offset=3)
    assert [h.key for h in page] == [h.key for h in everything[3:5]]
    assert store.recorder.of("RetrieveMemoryRecords")[-1]["searchCriteria"]["topK"] == 5
    even = await store.search(ns, query="tea", filter={"i": {"$lt": 7}}, limit=3, offset=1)
    expected = [h.key for h in everything if value_of(h)["i"] < 7][1:4]
    assert [h.key for h in even] == expected
    assert store.recorder.of("RetrieveMemoryRecords")[-1]["searchCriteria"]["topK"] == 100
    assert await store.search(ns, query="zebra") == []


# --- health -----------------------------------------------------------------------------


async def test_health(store: Store, open_store: OpenStore) -> None:
    assert (await store.backend.health()).ok
    missing = await open_store(memory_id="gone-0123456789")
    health = await missing.backend.health()
    assert (health.block, health.backend, health.ok) == ("store", "agentcore-memory", False)
    assert "gone-0123456789" in health.message
    with pytest.raises(Exception, match="does not exist"):
        await missing.get(("x",), "k")


# --- conversational mode ----------------------------------------------------------------


async def test_conversational_puts_become_events_and_searches_read_extracted_records(
    open_store: OpenStore,
) -> None:
    store = await open_store(strategies=[SEMANTIC], mode="conversational", namespace_template=FACTS)
    chat = {
        "messages": [
            {"role": "user", "content": "I live in Lisbon"},
            {"role": "assistant", "content": "Noted, Lisbon."},
            {"type": "human", "content": [{"type": "text", "text": "I drink green tea"}]},
            {"role": "tool", "content": ""},
        ]
    }
    store.counter.reset()
    await store.one(put(("alice",), "chat-1", chat))
    await store.one(put(("bob", "work"), "chat 2", {"role": "user", "content": "I like tea too"}))
    assert store.counter.reset() == {"CreateEvent": 2}
    events = store.emulator.client(DATA).list_events(
        memoryId=store.memory_id, actorId="alice", sessionId="chat-1", includePayloads=True
    )["events"]
    [event] = events
    said = [item["conversational"] for item in event["payload"]]
    assert [(c["role"], c["content"]["text"]) for c in said] == [
        ("USER", "I live in Lisbon"),
        ("ASSISTANT", "Noted, Lisbon."),
        ("USER", "I drink green tea"),
    ]
    bob_create = store.recorder.of("CreateEvent")[-1]
    assert bob_create["actorId"] == "bob"
    assert bob_create["sessionId"].startswith("s")
    assert len(bob_create["sessionId"]) == 65

    hits = await store.search(("alice",), query="where does she live? Lisbon?", limit=5)
    assert [value_of(h)["content"] for h in hits] == ["I live in Lisbon"]
    [hit] = hits
    assert (hit.namespace, hit.score is not None) == (["alice"], True)
    assert value_of(hit)["namespace"] == "/users/alice/facts"
    assert store.recorder.of("RetrieveMemoryRecords")[-1]["namespacePath"] == "/users/alice/facts"
    listed = await store.search(("alice",))
    assert sorted(value_of(h)["content"] for h in listed) == [
        "I drink green tea",
        "I live in Lisbon",
    ]
    tea = await store.search(("alice",), query="tea", filter={"content": {"$ne": "x"}})
    assert [value_of(h)["content"] for h in tea] == ["I drink green tea"]
    everyone = await store.search((), query="tea", limit=10)
    assert sorted(h.namespace[0] for h in everyone) == ["alice", "bob"]
    assert (await store.one(listing())).namespaces == [["alice"], ["bob"]]

    assert value_of(await store.get(("alice",), hit.key))["content"] == "I live in Lisbon"
    assert await store.get(("bob",), hit.key) is None  # not bob's
    assert await store.get(("alice",), "chat-1") is None  # messages are not read back
    await store.one(put(("bob",), hit.key, None))  # not bob's to forget
    assert await store.get(("alice",), hit.key) is not None
    await store.one(put(("alice",), hit.key, None))  # alice's agent forgets it
    assert await store.get(("alice",), hit.key) is None
    assert [value_of(h)["content"] for h in await store.search(("alice",))] == ["I drink green tea"]


async def test_conversational_mode_refuses_what_is_not_messages(open_store: OpenStore) -> None:
    store = await open_store(mode="conversational", namespace_template=FACTS)
    for value in [
        {"text": "hello"},
        {"messages": []},
        {"messages": "hi"},
        {"role": "x", "content": "y"},
    ]:
        with pytest.raises(RequestRejected, match="conversational store takes messages"):
            await store.one(put(("alice",), "k", value))
    with pytest.raises(RequestRejected, match="first label is the AgentCore actorId"):
        await store.one(put(("not an actor!",), "k", {"role": "user", "content": "hi"}))
    with pytest.raises(RequestRejected, match="does not support TTLs"):
        await store.one(put(("alice",), "k", {"role": "user", "content": "hi"}, ttl_seconds=1))
    assert store.counter.reset() == {}


async def test_conversational_sessions_under_a_session_template(open_store: OpenStore) -> None:
    """A template with {sessionId} (summaries): an actor's search covers all its sessions;
    memoryStrategyId narrows to one strategy."""
    template = "/summaries/{memoryStrategyId}/{actorId}/{sessionId}"
    strategy = {"summaryMemoryStrategy": {"name": "sums", "namespaceTemplates": [template]}}
    probe = await open_store(strategies=[strategy, SEMANTIC])
    control = probe.emulator.client("bedrock-agentcore-control")
    strategies = control.get_memory(memoryId=probe.memory_id)["memory"]["strategies"]
    sums = next(s["strategyId"] for s in strategies if s["name"] == "sums")
    store = await open_store(
        memory_id=probe.memory_id,
        mode="conversational",
        namespace_template=template,
        memory_strategy_id=sums,
    )
    await store.one(put(("carol",), "s1", {"role": "user", "content": "first session tea"}))
    await store.one(put(("carol",), "s2", {"role": "user", "content": "second session tea"}))
    hits = await store.search(("carol",), query="tea", limit=10)
    assert sorted(value_of(h)["namespace"] for h in hits) == [
        f"/summaries/{sums}/carol/s1",
        f"/summaries/{sums}/carol/s2",
    ]
    assert store.recorder.of("RetrieveMemoryRecords")[-1]["namespacePath"] == (
        f"/summaries/{sums}/carol"
    )
    assert all(value_of(h)["memoryStrategyId"] == sums for h in hits)
