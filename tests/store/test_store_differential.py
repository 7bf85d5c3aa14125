"""``SidecarStore`` through a real socket answers as LangGraph's ``InMemoryStore`` does.

Every test runs the same batches on our store (each backend, over the sidecar's socket) and
on the reference (``store.differential``: ``InMemoryStore`` with its dictionary artefacts
corrected), collects every difference, and asserts there are none, showing all of them.
The session sidecars are shared, so each test writes under a root label of its own; tests
that need an empty store (listing every namespace, searching from the root) start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.store.base import (
    GetOp,
    IndexConfig,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchOp,
)

from agentpersistence.client import SidecarStore
from agentpersistence.client.protocol.errors import RequestRejected
from rig.store import (
    RANKS_ITSELF,
    STORE_BACKENDS,
    StoreSidecar,
    StoreSidecarFactory,
    unique_label,
)
from store.differential import Differential, Generator, Reference, index_config

RANDOM_BATCHES = 300
SEED = 20260301
MIN_COVERAGE = {
    "get hit": 10,
    "delete": 20,
    "non-empty listing": 20,
    "ranked search": 20,
    "filtered search with matches": 10,
    "offset search with matches": 10,
}
"""What the random sequence must have exercised (so a change to it cannot hollow it out)."""


@contextlib.contextmanager
def differential(sidecar: StoreSidecar, index: IndexConfig | None = None) -> Iterator[Differential]:
    """Our store against the reference; searches with a query held to ranking-independent
    checks on backends that rank by themselves (``Differential.ranked_by_backend``)."""
    with SidecarStore(sidecar.socket, index=index) as ours:
        yield Differential(ours, Reference(index), sidecar.backend in RANKS_ITSELF)


@pytest.fixture
def diff(store_sidecar: StoreSidecar) -> Iterator[Differential]:
    """Our store on the backend under test against the reference, both indexed alike."""
    with differential(store_sidecar, index_config()) as diff:
        yield diff


def skip_if_ranked_by_backend(sidecar: StoreSidecar) -> None:
    """For tests whose subject is the vector ranking itself."""
    if sidecar.backend in RANKS_ITSELF:
        pytest.skip(
            f"{sidecar.backend} ranks queries with AgentCore's semantic retrieval, not the "
            "agent's vectors (README, agentcore-memory); its ranking is tested in "
            "tests/integration/test_agentcore_store_backend.py"
        )


@pytest.fixture
def root() -> str:
    return unique_label("diff")


def assert_no_differences(diff: Differential) -> None:
    assert not diff.differences, diff.report()


# --- a random sequence ------------------------------------------------------------------


async def test_random_sequence(diff: Differential, root: str) -> None:
    """A few hundred seeded random batches, half through the sync API, half async."""
    generator = Generator(random.Random(SEED), root)
    pick = random.Random(SEED + 1)
    for ops in generator.batches(RANDOM_BATCHES):
        if pick.random() < 0.5:
            await diff.arun(ops)
        else:
            await asyncio.to_thread(diff.run, ops)
    assert_no_differences(diff)
    assert diff.ops > RANDOM_BATCHES
    exercised = {kind: diff.coverage[kind] for kind in MIN_COVERAGE}
    assert all(exercised[kind] >= least for kind, least in MIN_COVERAGE.items()), exercised


# --- hand-written cases -----------------------------------------------------------------


RECORD_SIZED = {"agentcore-memory": 16_000}
"""Backends whose items must fit a record of so many characters (README: agentcore-memory)."""


def test_put_get_delete(diff: Differential, root: str, store_sidecar: StoreSidecar) -> None:
    ns = (root, "users", "alice")
    large: dict[str, Any] = {"text": "apple " * 40_000, "blob": "x" * 300_000}
    limit = RECORD_SIZED.get(store_sidecar.backend)
    if limit is not None:  # the documented difference: refused, and the largest item that fits
        with pytest.raises(RequestRejected, match=f"at most {limit}"):
            diff.ours.put(ns, "large", large)
        large = {"text": "apple " * ((limit - 400) // 6)}
    for ops in (
        [GetOp(ns, "missing")],
        [PutOp(ns, "a", {"text": "apple"})],
        [GetOp(ns, "a")],
        [PutOp(ns, "a", {"text": "banana", "n": 2})],
        [GetOp(ns, "a"), GetOp(ns, "b"), GetOp((root, "users"), "a")],
        [PutOp(ns, "a", None)],
        [GetOp(ns, "a")],
        [PutOp(ns, "never-existed", None)],
        [PutOp(ns, "a", {})],
        [GetOp(ns, "a")],
        [PutOp(ns, "a", {"deep": {"x": [1, 2.5, "three", None, True, {"y": []}]}})],
        [GetOp(ns, "a")],
        [PutOp(ns, "odd", {"big": 2**70, "neg": -0.0, "max": 1e308, "": {"": ""}, "😀": "ü"})],
        [PutOp(ns, "large", large)],
        [GetOp(ns, "odd"), GetOp(ns, "large")],
        [SearchOp(ns, filter={"big": 2**70}), SearchOp(ns, filter={"big": {"$gt": 2**69}})],
    ):
        diff.run(ops)
    assert_no_differences(diff)


def test_created_at_is_kept_and_updated_at_moves(store_sidecar: StoreSidecar, root: str) -> None:
    """Our store keeps ``created_at`` on update (``InMemoryStore`` resets it: not compared)."""
    with SidecarStore(store_sidecar.socket) as store:
        store.put((root,), "k", {"v": 1})
        first = store.get((root,), "k")
        store.put((root,), "k", {"v": 2})
        second = store.get((root,), "k")
    assert first is not None
    assert second is not None
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at


NAMESPACE_LABELS = ("a", "a b", "a-b", "a:b", "a@b", "ab", "A", "ä", "日本語", "*", "a" * 200)


def test_namespace_labels(diff: Differential, root: str) -> None:
    """Labels with ``-``, ``:``, ``@``, spaces and unicode; nested; prefix boundaries.

    The labels sort differently as tuples than joined with a separator, so both listing and
    the (namespace, key) tie-break of searches are checked against tuple order.
    """
    namespaces: list[tuple[str, ...]] = [(root, label) for label in NAMESPACE_LABELS]
    namespaces += [(root, "a", "b"), (root, "a", "b", "c"), (root, "a b", "c")]
    diff.run([PutOp(ns, "k", {"text": "same"}) for ns in namespaces])
    diff.run([PutOp(ns, "k2", {"text": "same"}) for ns in reversed(namespaces)])
    for prefix in [(root,), (root, "a"), (root, "a b"), (root, "a", "b"), (root, "*"), (root, "ä")]:
        diff.run([SearchOp(prefix, limit=100)])
        diff.run([SearchOp(prefix, limit=3, offset=2)])
        diff.run([SearchOp(prefix, query="same", limit=100)])
        diff.run([ListNamespacesOp((MatchCondition("prefix", prefix),))])
    for ns in namespaces:
        diff.run([GetOp(ns, "k"), GetOp(ns, "k2")])
    assert_no_differences(diff)


def test_filter_operators(diff: Differential, root: str) -> None:
    """Each operator, at its boundaries; nested dicts, lists; missing and odd values."""
    ns = (root, "filters")
    values: dict[str, dict[str, Any]] = {
        "i1": {"n": 1, "color": "red", "tags": ["a", "b"], "nested": {"a": 1, "b": ["x"]}},
        "i2": {"n": 2, "color": "green", "tags": ["b", "a"], "nested": {"a": 2, "b": ["y"]}},
        "f25": {"n": 2.5, "color": "blue", "tags": [], "nested": {"a": 1, "c": {"d": 1}}},
        "s3": {"n": "3", "color": "red", "tags": ["a"]},
        "word": {"n": "seven", "color": "Red"},
        "none": {"n": None, "color": None},
        "bool": {"n": True, "flag": False},
        "list": {"n": [1], "color": ["red"]},
        "dict": {"n": {"v": 1}, "nested": {"a": 1, "b": ["x"], "extra": True}},
        "empty": {},
    }
    diff.run([PutOp(ns, key, value) for key, value in values.items()])
    filters: list[dict[str, object]] = [
        {"color": "red"},
        {"color": {"$eq": "red"}},
        {"color": {"$ne": "red"}},
        {"color": None},
        {"color": ["red"]},
        {"n": 2},
        {"n": 2.0},
        {"n": "3"},
        {"n": {"$eq": 1}},
        {"n": {"$ne": 1}},
        {"missing": {"$ne": 1}},
        {"missing": {"$eq": None}},
        {"flag": False},
        {"flag": 0},
        {"tags": ["a", "b"]},
        {"tags": []},
        {"nested": {"a": 1}},
        {"nested": {"a": 1, "b": ["x"]}},
        {"nested": {"b": ["x", "y"]}},
        {"nested": {"c": {"d": 1}}},
        {"nested": {"a": {"$gt": 1}}},
        {"nested": {"a": {"$lte": 1}, "b": ["x"]}},
        {"color": "red", "n": {"$lt": 3}},
        {"n": {"$gte": 2, "$lt": 3}},
        {"n": {"$gt": 2, "$ne": 2.5}},
    ]
    for operator in ("$gt", "$gte", "$lt", "$lte"):
        for operand in (0, 1, 2, 2.5, 3, "2", 100, -1):
            filters.append({"n": {operator: operand}})
    for f in filters:
        diff.run([SearchOp(ns, filter=f, limit=100)])
        diff.run([SearchOp(ns, filter=f, limit=2, offset=1)])
        diff.run([SearchOp(ns, filter=f, query="apple", limit=100)])
    assert_no_differences(diff)


def test_query_scores_and_paging(
    diff: Differential, root: str, store_sidecar: StoreSidecar
) -> None:
    """Scores and order of natural-language queries; limit/offset across every page."""
    skip_if_ranked_by_backend(store_sidecar)
    ns = (root, "docs")
    texts = [
        "apple banana",
        "apple",
        "banana cherry",
        "cherry date elder",
        "fig",
        "apple banana",  # a tie with the first
        "grape honey iris",
        "jade",
    ]
    diff.run([PutOp(ns, f"d{i}", {"text": t}) for i, t in enumerate(texts)])
    diff.run([PutOp((root, "docs", "sub"), "s", {"text": "apple cherry"})])
    diff.run([PutOp(ns, "unindexed", {"text": "apple"}, index=False)])
    diff.run([PutOp(ns, "no-text", {"other": "apple"})])
    for query in ("apple", "apple banana", "cherry", "zebra", "jade grape"):
        for limit, offset in [(100, 0), (1, 0), (3, 0), (3, 3), (3, 6), (3, 9), (2, 11), (5, 20)]:
            diff.run([SearchOp((root,), query=query, limit=limit, offset=offset)])
        diff.run([SearchOp(ns, query=query, filter={"text": {"$ne": "jade"}}, limit=4)])
    assert_no_differences(diff)


def test_index_fields(diff: Differential, root: str, store_sidecar: StoreSidecar) -> None:
    """``index=False``, ``index=[fields]``, multi-valued ``tags[*]``; re-indexing on update."""
    skip_if_ranked_by_backend(store_sidecar)
    ns = (root, "fields")
    diff.run(
        [
            PutOp(ns, "tags", {"text": "zzz", "tags": ["apple", "banana", "cherry"]}),
            PutOp(ns, "own", {"text": "fig", "title": "apple"}, index=["title"]),
            PutOp(ns, "off", {"text": "apple"}, index=False),
            PutOp(ns, "nested", {"doc": {"parts": ["banana", "apple"]}}, index=["doc.parts[*]"]),
            PutOp(ns, "last", {"tags": ["jade", "apple"]}, index=["tags[-1]"]),
            PutOp(ns, "whole", {"text": "apple"}, index=["text", "missing"]),
        ]
    )
    queries = ("apple", "banana", "cherry", "fig", "jade")
    for query in queries:
        diff.run([SearchOp(ns, query=query, limit=10)])
    # Updates replace the vectors: fewer tags, then unindexed, then indexed again.
    diff.run([PutOp(ns, "tags", {"text": "zzz", "tags": ["fig"]})])
    diff.run([PutOp(ns, "own", {"text": "fig", "title": "apple"}, index=False)])
    diff.run([PutOp(ns, "off", {"text": "cherry"})])
    for query in queries:
        diff.run([SearchOp(ns, query=query, limit=10)])
        diff.run([SearchOp(ns, query=query, limit=2, offset=1)])
    assert_no_differences(diff)


def test_batch_semantics(diff: Differential, root: str) -> None:
    """Reads see the store as before the batch; of two puts of one item the last wins."""
    ns = (root, "batch")
    diff.run([PutOp(ns, "k", {"text": "old", "v": 0})])
    diff.run([PutOp(ns, "k", {"text": "new", "v": 1}), GetOp(ns, "k")])
    diff.run([GetOp(ns, "k")])
    diff.run([PutOp(ns, "k", {"v": 2}), PutOp(ns, "k", {"v": 3}), GetOp(ns, "k")])
    diff.run([GetOp(ns, "k")])
    diff.run([PutOp(ns, "k", {"v": 4}), PutOp(ns, "k", None)])
    diff.run([GetOp(ns, "k")])
    diff.run([PutOp(ns, "k", None), PutOp(ns, "k", {"text": "back", "v": 5})])
    diff.run(
        [
            PutOp(ns, "new", {"text": "apple"}),
            SearchOp(ns, query="apple"),
            SearchOp(ns),
            ListNamespacesOp((MatchCondition("prefix", (root,)),)),
            GetOp(ns, "new"),
        ]
    )
    diff.run([SearchOp(ns, query="apple"), SearchOp(ns), GetOp(ns, "new")])
    diff.run(
        [
            PutOp((root, "other"), "x", {"v": 1}),
            ListNamespacesOp((MatchCondition("prefix", (root,)),)),
            PutOp((root, "other"), "x", None),
        ]
    )
    diff.run([ListNamespacesOp((MatchCondition("prefix", (root,)),))])
    assert_no_differences(diff)


def test_query_without_an_index(store_sidecar: StoreSidecar, root: str) -> None:
    """Without an ``index`` (and no embedder in the sidecar) a query is ignored, unscored."""
    with differential(store_sidecar, index=None) as diff:
        ns = (root, "plain")
        diff.run([PutOp(ns, f"k{i}", {"text": f"apple {i}", "n": i}) for i in range(5)])
        diff.run([PutOp(ns, "k1", {"text": "apple again", "n": 1})])
        diff.run([SearchOp(ns, query="apple", limit=3)])
        diff.run([SearchOp(ns, query="apple", filter={"n": {"$gte": 2}}, limit=10)])
        assert_no_differences(diff)


# --- an empty sidecar of our own --------------------------------------------------------

LISTED = [
    ("a",),
    ("a", "b"),
    ("a", "b", "c"),
    ("a", "b", "d"),
    ("a", "x", "c"),
    ("a-b", "c"),
    ("a b", "c"),
    ("b", "c"),
    ("users", "u1", "memories"),
    ("users", "u2", "memories"),
    ("users", "u2", "prefs"),
    ("日本", "c"),
]


def listings() -> list[ListNamespacesOp]:
    def op(
        prefix: tuple[str, ...] | None = None,
        suffix: tuple[str, ...] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> ListNamespacesOp:
        conditions = [MatchCondition("prefix", prefix)] if prefix is not None else []
        if suffix is not None:
            conditions.append(MatchCondition("suffix", suffix))
        return ListNamespacesOp(tuple(conditions) or None, max_depth, limit, offset)

    return [
        op(),
        op(prefix=("a",)),
        op(prefix=("a", "b")),
        op(prefix=("a", "*", "c")),
        op(prefix=("*",)),
        op(prefix=("*", "b")),
        op(prefix=("users", "*", "memories")),
        op(prefix=("zzz",)),
        op(prefix=("a", "b", "c", "d")),
        op(suffix=("c",)),
        op(suffix=("memories",)),
        op(suffix=("*", "memories")),
        op(suffix=("b", "*")),
        op(suffix=("a", "b", "c", "d")),
        op(prefix=("a",), suffix=("c",)),
        op(prefix=("users",), suffix=("prefs",)),
        op(max_depth=1),
        op(max_depth=2),
        op(prefix=("a",), max_depth=2),
        op(prefix=("users",), max_depth=1),
        op(suffix=("c",), max_depth=1),
        op(limit=3),
        op(limit=3, offset=3),
        op(limit=3, offset=11),
        op(offset=100),
        op(limit=0),
        op(max_depth=2, limit=2, offset=1),
    ]


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_list_namespaces_and_root_searches(
    store_sidecar_factory: StoreSidecarFactory, backend: str
) -> None:
    """Listing on an empty store and on a known one, unprefixed; searches from the root."""
    sidecar = store_sidecar_factory(backend)
    with differential(sidecar, index_config()) as diff:
        empty: list[Op] = [*listings(), SearchOp(()), SearchOp((), query="apple")]
        diff.run(empty, "empty store")
        diff.run(
            [PutOp(ns, "k", {"text": " ".join(ns)}) for ns in LISTED],
            "puts",
        )
        for op in listings():
            diff.run([op])
        for prefix in [(), ("a",), ("users", "u2")]:
            diff.run([SearchOp(prefix, limit=100)])
            diff.run([SearchOp(prefix, query="a c", limit=5, offset=1)])
        diff.run([PutOp(ns, "k", None) for ns in LISTED[::2]], "deletes")
        for op in listings():
            diff.run([op])
        assert_no_differences(diff)


EXOTIC_LABELS = (
    "%",
    "%41",
    "A",
    "{x}",
    "}{",
    "a,b",
    "a|b",
    "back\\slash",
    "new\nline",
    "tab\t",
    "quote'\"",
    "😀",
    "\x01",
    "-",
    "$",
    "@nsp:{x}",
    " ",
    "ǅ",
)
EXOTIC_KEYS = ("", "a.b", "k\x00", "k\x00\x00x", "%", "{k}", ":", "😀", "x" * 500)


def test_exotic_labels_and_keys(diff: Differential, root: str) -> None:
    """Characters that delimit keys, hash tags, TAG values and query syntax, in labels and
    keys; a prefix search and a listing must still see exactly their own namespaces."""
    namespaces: list[tuple[str, ...]] = [(root, label) for label in EXOTIC_LABELS]
    namespaces += [(root, "a", "b"), (root, "a:b"), (root, "a%3Ab"), (root, "{x}", "y")]
    for ns in namespaces:
        diff.run(
            [PutOp(ns, key, {"text": f"apple {i}", "i": i}) for i, key in enumerate(EXOTIC_KEYS)]
        )
    for ns in namespaces:
        diff.run([SearchOp(ns, limit=100)], "listed under its own prefix")
        diff.run([SearchOp(ns, query="apple 3", limit=3)], "ranked under its own prefix")
        diff.run([ListNamespacesOp((MatchCondition("prefix", ns),))])
        diff.run([GetOp(ns, key) for key in EXOTIC_KEYS])
    diff.run([SearchOp((root,), limit=1000)])
    diff.run([ListNamespacesOp((MatchCondition("prefix", (root,)),), limit=1000)])
    diff.run([PutOp(ns, key, None) for ns in namespaces[::2] for key in EXOTIC_KEYS])
    diff.run([ListNamespacesOp((MatchCondition("prefix", (root,)),), limit=1000)])
    diff.run([SearchOp((root,), query="apple 1", limit=1000)])
    assert_no_differences(diff)


def test_filter_on_a_field_named_like_an_operator(diff: Differential, root: str) -> None:
    """A filter's top-level keys are field names, even one starting with ``$``; and an
    ``$eq`` operand is a value, whatever its keys. (Once refused with "unsupported filter
    operator '$type'" where ``InMemoryStore`` answers.)
    """
    ns = (root, "dollar")
    diff.run([PutOp(ns, "k", {"$type": "note", "meta": {"$ref": "x"}, "n": 1})])
    diff.run([PutOp(ns, "other", {"$type": "task", "meta": {"$ref": "y"}, "n": 2})])
    diff.run([SearchOp(ns, filter={"$type": "note"})])
    diff.run([SearchOp(ns, filter={"$type": {"$ne": "note"}})])
    diff.run([SearchOp(ns, filter={"meta": {"$eq": {"$ref": "x"}}})])
    assert_no_differences(diff)


def test_pages_beyond_one_scan(diff: Differential, root: str) -> None:
    """More namespaces and items than one server-side scan examines (1,000): listings,
    and searches paged, filtered and ranked across those boundaries."""
    namespaces = [(root, f"n{i % 7}", f"m{i:04d}") for i in range(1_200)]
    puts = [
        PutOp(ns, key, {"text": f"apple {i % 13}", "i": i, "even": i % 2 == 0})
        for i, ns in enumerate(namespaces)
        for key in ("a", "b")
    ]
    for start in range(0, len(puts), 500):
        diff.run(puts[start : start + 500])
    diff.run([PutOp(ns, "a", {"text": "late", "i": -1}) for ns in namespaces[::97]])
    diff.run([PutOp(ns, "b", None) for ns in namespaces[::5]])
    listings = [
        ListNamespacesOp((MatchCondition("prefix", (root,)),), limit=2_000),
        ListNamespacesOp((MatchCondition("prefix", (root,)),), limit=50, offset=990),
        ListNamespacesOp((MatchCondition("prefix", (root, "n3")),), limit=30, offset=150),
        ListNamespacesOp((MatchCondition("prefix", (root, "*", "m0999")),)),
        ListNamespacesOp((MatchCondition("prefix", (root,)),), max_depth=2),
    ]
    for op in listings:
        diff.run([op])
    for limit, offset in [(20, 0), (20, 990), (50, 1_990), (100, 2_300), (10, 5_000)]:
        diff.run([SearchOp((root,), limit=limit, offset=offset)])
        diff.run([SearchOp((root,), filter={"even": True}, limit=limit, offset=offset // 2)])
    diff.run([SearchOp((root, "n2"), filter={"i": {"$gte": 1_100}}, limit=100)])
    diff.run([SearchOp((root,), query="apple 7", limit=10, offset=150)])
    diff.run([SearchOp((root, "n4"), query="late", filter={"i": {"$lt": 0}}, limit=20)])
    assert_no_differences(diff)
