"""Differential testing of a store against LangGraph's ``InMemoryStore``, the reference.

:class:`Differential` runs each batch of ops on our store and on a :class:`Reference`, and
records every answer that differs (it never stops at the first), so a failing test shows
all of them at once.

The reference is LangGraph's ``InMemoryStore`` given the same ``IndexConfig``. A few of its
answers are artefacts of its dictionaries rather than store semantics; :class:`Reference`
corrects exactly these, each in one place:

1. *Namespaces without items.* A ``get`` on a missing namespace, or deleting a namespace's
   last item, leaves an empty dictionary that ``list_namespaces`` still returns. Dropped
   before every answer.
2. *Stale vectors.* A put replaces the item's value but keeps the vectors of every field
   path the new value no longer has (all of them after ``index=False``), so searches keep
   ranking the old text. Each put's vectors replace the previous ones here.
3. *Order without a query.* ``InMemoryStore`` answers in dictionary order. Ours (the
   ``StoreBackend`` contract) is ``updated_at`` descending, then namespace, then key; and a
   batch is stamped once, where ``InMemoryStore`` calls ``datetime.now()`` per put. The
   expected page is the reference's whole answer sorted by a logical clock (the batch that
   last wrote the item), then namespace and key, then cut to ``offset``/``limit``. Items
   without vectors that fill a query's page are ordered the same way.
4. *The same text twice in one batch* (two fields of an item, or two items) makes
   ``InMemoryStore.batch`` raise ``ValueError: Number of embeddings (N) does not match
   number of indices (N+1)``: it embeds each distinct text once but pairs the vectors with
   every (item, path) in order. Here each put is indexed on its own, with its own extraction
   (``_extract_texts``), one vector per distinct text given to every path that holds it.

And one documented deviation (``store_rules``): a comparison (``$gt $gte $lt $lte``) on a
missing or non-numeric field does not match, where ``InMemoryStore`` raises. Booleans count
as non-numeric (``InMemoryStore`` compares them as 0 and 1). :func:`reference_matches`
applies that rule and delegates everything else to ``InMemoryStore``'s own comparison.

Not compared: timestamps (``InMemoryStore`` resets ``created_at`` on every put; ours keeps
it, checked on its own), and a per-put ``index=["$"]`` (``InMemoryStore`` tokenizes ``"$"``
as a field name and embeds nothing; ours embeds the whole value, as the configured ``"$"``
does): the generator does not produce it.

Scores are compared within ``SCORE_TOLERANCE``. Equal scores may come back in any order, so
a page is correct when its scores match the expected page's position by position and each
item carries its own expected score.

A store whose backend ranks queries itself (``ranked_by_backend``: agentcore-memory, whose
ranking is AgentCore's semantic retrieval, documented in the README) cannot match the
reference's vector scores. Its searches *with a query* are held to what does not depend on
the ranking (:func:`backend_ranked_problems`): at most ``limit`` items, no duplicates, each
an item the reference holds under the prefix and matching the filter, with its current
value, each scored, best first. Everything else (gets, listings, searches without a query)
is compared exactly, as for every backend.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore
from langgraph.store.memory import _compare_values as reference_compare

Namespace = tuple[str, ...]
Ident = tuple[Namespace, str]

SCORE_TOLERANCE = 1e-6
COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
EVERYTHING = 1_000_000
"""A limit larger than any test's data: the reference's whole answer."""


# --- a deterministic embedding ----------------------------------------------------------


def hashed_embedding(texts: Sequence[str], dims: int = 8) -> list[list[float]]:
    """Each word adds a pseudo-random vector (from its hash); shared words mean similarity.

    A small constant keeps every vector (even of an empty text) away from zero.
    """
    return [_embed_one(text, dims) for text in texts]


def _embed_one(text: str, dims: int) -> list[float]:
    vector = [0.05] * dims
    for word in text.lower().split():
        digest = hashlib.blake2b(word.encode(), digest_size=dims).digest()
        for i, byte in enumerate(digest):
            vector[i] += (byte - 127.5) / 127.5
    return vector


def index_config(dims: int = 8, fields: list[str] | None = None) -> IndexConfig:
    """The same ``IndexConfig`` for our store and the reference."""
    return {
        "dims": dims,
        "embed": lambda texts: hashed_embedding(texts, dims),
        "fields": fields if fields is not None else ["text", "tags[*]"],
    }


# --- filters: the reference's comparison, with the documented deviation -----------------


def reference_matches(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(_matches(value.get(key), wanted) for key, wanted in filter.items())


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict) and any(k.startswith("$") for k in wanted):
        return all(_operator(actual, op, operand) for op, operand in wanted.items())
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            _matches(actual.get(k), v) for k, v in wanted.items()
        )
    return reference_compare(actual, wanted)


def _operator(actual: Any, operator: str, operand: Any) -> bool:
    if operator in COMPARISONS and not (_numeric(actual) and _numeric(operand)):
        return False  # the documented deviation: InMemoryStore raises here
    return reference_compare(actual, {operator: operand})


def _numeric(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# --- what the reference expects ---------------------------------------------------------


@dataclass(frozen=True)
class Found:
    namespace: Namespace
    key: str
    value: dict[str, Any]
    score: float | None = None

    @property
    def ident(self) -> Ident:
        return self.namespace, self.key


@dataclass(frozen=True)
class ExpectedSearch:
    """One correct page, plus what any correct page must agree with when scores tie."""

    page: list[Found]
    scores: dict[Ident, float]
    """The expected score of every scored candidate."""
    values: dict[Ident, dict[str, Any]]


Expected = Found | ExpectedSearch | list[Namespace] | None


class Reference:
    """``InMemoryStore`` with the corrections listed in this module's docstring."""

    def __init__(self, index: IndexConfig | None) -> None:
        self.store = InMemoryStore(index=index)
        self.embeds = index is not None
        self._clock = 0
        self._written: dict[Ident, int] = {}

    def batch(self, ops: Sequence[Op]) -> list[Expected]:
        """Answers as of before the batch (reads see the old store), then apply its puts."""
        answers = [self._answer(op) for op in ops]
        self._apply([op for op in ops if isinstance(op, PutOp)])
        return answers

    def _answer(self, op: Op) -> Expected:
        if isinstance(op, GetOp):
            item = self.store.batch([GetOp(op.namespace, op.key)])[0]
            self._drop_empty_namespaces()
            assert item is None or isinstance(item, Item)
            return None if item is None else Found(item.namespace, item.key, item.value)
        if isinstance(op, ListNamespacesOp):
            self._drop_empty_namespaces()
            namespaces = self.store.batch([op])[0]
            assert isinstance(namespaces, list)
            return [tuple(ns) for ns in namespaces if isinstance(ns, tuple)]
        if isinstance(op, SearchOp):
            return self._search(op)
        return None

    def _search(self, op: SearchOp) -> ExpectedSearch:
        whole = SearchOp(op.namespace_prefix, query=op.query, limit=EVERYTHING, offset=0)
        result = self.store.batch([whole])[0]
        assert isinstance(result, list)
        candidates = [c for c in result if isinstance(c, SearchItem)]
        matched = [
            Found(c.namespace, c.key, c.value, c.score)
            for c in candidates
            if not op.filter or reference_matches(c.value, op.filter)
        ]
        values = {f.ident: f.value for f in matched}
        if op.query and self.embeds:
            scored = [f for f in matched if f.score is not None]  # score descending
            unscored = sorted((f for f in matched if f.score is None), key=self._recency)
            page = scored[op.offset : op.offset + op.limit]
            if len(page) < op.limit:
                page += unscored[: op.limit - len(page)]
            scores = {f.ident: f.score for f in scored if f.score is not None}
            return ExpectedSearch(page, scores, values)
        page = sorted(matched, key=self._recency)[op.offset : op.offset + op.limit]
        return ExpectedSearch([Found(*f.ident, f.value) for f in page], {}, values)

    def _recency(self, found: Found) -> tuple[int, Namespace, str]:
        return -self._written[found.ident], found.namespace, found.key

    def _apply(self, puts: list[PutOp]) -> None:
        if not puts:
            return
        # Corrections 2 and 4: the store applies the puts, vectors are indexed below.
        self.store.batch([op._replace(index=False) for op in puts])
        self._clock += 1
        for (namespace, key), op in {(op.namespace, op.key): op for op in puts}.items():
            self.store._vectors[namespace].pop(key, None)
            if op.value is None:
                self._written.pop((namespace, key), None)
                continue
            self._written[(namespace, key)] = self._clock
            self._index(op)
        self._drop_empty_namespaces()

    def _index(self, op: PutOp) -> None:
        """Embed one put's texts with ``InMemoryStore``'s own extraction; one vector a text."""
        if self.store.embeddings is None:
            return
        to_embed = self.store._extract_texts({(op.namespace, op.key): op})
        texts = list(to_embed)
        vectors = self.store.embeddings.embed_documents(texts) if texts else []
        for text, vector in zip(texts, vectors, strict=True):
            for namespace, key, path in to_embed[text]:
                self.store._vectors[namespace][key][path] = vector

    def _drop_empty_namespaces(self) -> None:
        for namespace in [ns for ns, items in self.store._data.items() if not items]:
            del self.store._data[namespace]


# --- comparing answers ------------------------------------------------------------------


@dataclass
class Differential:
    """Run the same batches on ``ours`` and on the reference; collect every difference."""

    ours: BaseStore
    reference: Reference
    ranked_by_backend: bool = False
    """Searches with a query are ranked by the backend, not by vectors (see the module)."""
    differences: list[str] = field(default_factory=list)
    batches: int = 0
    ops: int = 0
    coverage: Counter[str] = field(default_factory=Counter)
    """What the compared answers held, so a test can check its sequence exercised enough."""

    def run(self, ops: Sequence[Op], label: str = "") -> None:
        expected = self.reference.batch(ops)
        try:
            actual = self.ours.batch(ops)
        except Exception as exc:  # recorded: the sequence goes on, to show every difference
            self._failed(ops, exc, label)
            return
        self._compare(ops, expected, actual, label)

    async def arun(self, ops: Sequence[Op], label: str = "") -> None:
        expected = self.reference.batch(ops)
        try:
            actual = await self.ours.abatch(ops)
        except Exception as exc:
            self._failed(ops, exc, label)
            return
        self._compare(ops, expected, actual, label)

    def _failed(self, ops: Sequence[Op], exc: Exception, label: str) -> None:
        self.batches += 1
        self.ops += len(ops)
        batch = "; ".join(describe(op) for op in ops)
        self.differences.append(
            f"batch {self.batches}{' ' + label if label else ''} [{batch}] raised "
            f"{type(exc).__name__}: {exc}"
        )

    def report(self) -> str:
        return (
            f"{len(self.differences)} differences in {self.batches} batches, {self.ops} ops:\n"
            + ("\n".join(self.differences))
        )

    def _compare(
        self, ops: Sequence[Op], expected: list[Expected], actual: list[Result], label: str
    ) -> None:
        self.batches += 1
        self.ops += len(ops)
        where = f"batch {self.batches}{' ' + label if label else ''}"
        if len(actual) != len(ops):
            self.differences.append(f"{where}: {len(actual)} results for {len(ops)} ops")
            return
        for i, (op, want, got) in enumerate(zip(ops, expected, actual, strict=True)):
            self.coverage.update(_covered(op, want))
            ranked_elsewhere = self.ranked_by_backend and isinstance(op, SearchOp) and op.query
            problems = backend_ranked_problems if ranked_elsewhere else _problems
            for problem in problems(op, want, got):
                self.differences.append(f"{where} op {i} {describe(op)}: {problem}")


def _covered(op: Op, want: Expected) -> list[str]:
    if isinstance(op, GetOp):
        return ["get", "get hit"] if want is not None else ["get"]
    if isinstance(op, ListNamespacesOp):
        return ["listing", "non-empty listing"] if want else ["listing"]
    if not isinstance(op, SearchOp) or not isinstance(want, ExpectedSearch):
        return ["put" if isinstance(op, PutOp) and op.value is not None else "delete"]
    kinds = ["search"]
    if want.page:
        kinds.append("non-empty search")
        if op.filter:
            kinds.append("filtered search with matches")
        if any(found.score is not None for found in want.page):
            kinds.append("ranked search")
        if op.offset:
            kinds.append("offset search with matches")
    return kinds


def _problems(op: Op, want: Expected, got: Result) -> list[str]:
    if isinstance(op, PutOp):
        return [] if got is None else [f"a put answered {got!r}"]
    if isinstance(op, GetOp):
        return _get_problems(want, got)
    if isinstance(op, ListNamespacesOp):
        got_list = [ns for ns in got if isinstance(ns, tuple)] if isinstance(got, list) else got
        return [] if got_list == want else [f"namespaces {got_list} != expected {want}"]
    assert isinstance(want, ExpectedSearch)
    if not isinstance(got, list):
        return [f"a search answered {got!r}"]
    return search_problems(want, [g for g in got if isinstance(g, SearchItem)])


def backend_ranked_problems(op: Op, want: Expected, got: Result) -> list[str]:
    """A search with a query on a backend that ranks by itself: no order or score is
    expected, only items that belong in the answer (see the module docstring)."""
    assert isinstance(op, SearchOp)
    assert isinstance(want, ExpectedSearch)
    if not isinstance(got, list):
        return [f"a search answered {got!r}"]
    found = [g for g in got if isinstance(g, SearchItem)]
    problems = []
    if len(found) > op.limit:
        problems.append(f"{len(found)} items for limit {op.limit}")
    idents = [(tuple(g.namespace), g.key) for g in found]
    if len(set(idents)) != len(idents):
        problems.append(f"duplicate items in a page: {idents}")
    for position, (g, ident) in enumerate(zip(found, idents, strict=True)):
        if ident not in want.values:
            problems.append(f"#{position}: {_brief(g)} is not an item matching the search")
        elif g.value != want.values[ident]:
            problems.append(f"#{position}: value {g.value} != {want.values[ident]}")
    scores = [g.score for g in found]
    if any(s is None for s in scores):
        problems.append(f"unscored items in a ranked page: {[_brief(g) for g in found]}")
    elif scores != sorted(scores, reverse=True):  # type: ignore[type-var]
        problems.append(f"scores not best first: {scores}")
    return problems


def _get_problems(want: Expected, got: Result) -> list[str]:
    if want is None or got is None:
        return [] if want is got else [f"got {_brief(got)}, expected {_brief(want)}"]
    assert isinstance(want, Found)
    assert isinstance(got, Item)
    if (tuple(got.namespace), got.key, got.value) != (want.namespace, want.key, want.value):
        return [f"got {_brief(got)}, expected {_brief(want)}"]
    if got.created_at > got.updated_at:
        return [f"created_at {got.created_at} after updated_at {got.updated_at}"]
    return []


def search_problems(want: ExpectedSearch, got: list[SearchItem]) -> list[str]:
    problems = []
    if len(got) != len(want.page):
        problems.append(
            f"{len(got)} items {[_brief(g) for g in got]}, "
            f"expected {len(want.page)} {[_brief(w) for w in want.page]}"
        )
    idents = [(tuple(g.namespace), g.key) for g in got]
    if len(set(idents)) != len(idents):
        problems.append(f"duplicate items in a page: {idents}")
    for position, (w, g) in enumerate(zip(want.page, got, strict=False)):
        ident = (tuple(g.namespace), g.key)
        if w.score is None:
            if g.score is not None or ident != w.ident:
                problems.append(f"#{position}: got {_brief(g)}, expected {_brief(w)}")
                continue
        elif not _score_agrees(g.score, w.score, want.scores.get(ident)):
            problems.append(
                f"#{position}: got {_brief(g)} (its expected score "
                f"{want.scores.get(ident)}), expected score {w.score} ({_brief(w)})"
            )
            continue
        if g.value != want.values.get(ident):
            problems.append(f"#{position}: value {g.value} != {want.values.get(ident)}")
    return problems


def _score_agrees(got: float | None, at_position: float, own: float | None) -> bool:
    if got is None or own is None:
        return False
    return abs(got - at_position) <= SCORE_TOLERANCE and abs(got - own) <= SCORE_TOLERANCE


def _brief(x: object) -> str:
    if isinstance(x, Item | Found):
        score = getattr(x, "score", None)
        tail = "" if score is None else f" score={score:.6f}"
        return f"{'/'.join(x.namespace)}:{x.key}{tail}"
    return repr(x)


def describe(op: Op) -> str:
    """An op, short."""
    if isinstance(op, GetOp):
        return f"get({op.namespace}, {op.key!r})"
    if isinstance(op, PutOp):
        if op.value is None:
            return f"delete({op.namespace}, {op.key!r})"
        return f"put({op.namespace}, {op.key!r}, {op.value}, index={op.index})"
    if isinstance(op, SearchOp):
        return (
            f"search({op.namespace_prefix}, filter={op.filter}, query={op.query!r}, "
            f"limit={op.limit}, offset={op.offset})"
        )
    conditions = [(c.match_type, c.path) for c in op.match_conditions or ()]
    return f"list_namespaces({conditions}, max_depth={op.max_depth}, {op.limit}, {op.offset})"


# --- random sequences -------------------------------------------------------------------

LABELS = ("users", "u", "u-1", "u 1", "u:1", "x@y", "ünï", "日本", "*", "U")
KEYS = ("k0", "k1", "k-2", "k:3", "k 4", "ключ", "K0", "k0-0")
WORDS = ("apple", "banana", "cherry", "date", "elder", "fig", "grape", "honey", "iris", "jade")
COLORS = ("red", "green", "blue")


@dataclass
class Generator:
    """Random batches of store ops under one root label; the same seed, the same ops."""

    rng: random.Random
    root: str
    namespaces: list[Namespace] = field(default_factory=list)

    def __post_init__(self) -> None:
        pool: set[Namespace] = set()
        while len(pool) < 14:
            depth = self.rng.choice((1, 1, 2, 2, 3))
            pool.add((self.root, *self.rng.choices(LABELS, k=depth)))
        # A namespace that is a prefix of another one, and its child.
        pool.update({(self.root, "u"), (self.root, "u", "u-1"), (self.root, "u-1")})
        self.namespaces = sorted(pool)

    def batches(self, count: int) -> Iterator[list[Op]]:
        for _ in range(count):
            yield self.batch()

    def batch(self) -> list[Op]:
        if self.rng.random() < 0.75:
            return [self.op()]
        ops = [self.op() for _ in range(self.rng.randint(2, 4))]
        if self.rng.random() < 0.5:  # the same item twice in one batch
            namespace, key = self.rng.choice(self.namespaces), self.rng.choice(KEYS)
            first: Op = self.put(namespace, key)
            seconds: list[Op] = [
                GetOp(namespace, key),
                self.put(namespace, key),
                PutOp(namespace, key, None),
            ]
            second = self.rng.choice(seconds)
            ops[self.rng.randrange(len(ops)) :] = [first, second]
        return ops

    def op(self) -> Op:
        roll = self.rng.random()
        namespace, key = self.rng.choice(self.namespaces), self.rng.choice(KEYS)
        if roll < 0.40:
            return self.put(namespace, key)
        if roll < 0.48:
            return PutOp(namespace, key, None)
        if roll < 0.60:
            return GetOp(namespace, key)
        if roll < 0.88:
            return self.search()
        return self.list_namespaces()

    def put(self, namespace: Namespace, key: str) -> PutOp:
        indexes: list[Literal[False] | list[str] | None] = [
            None,
            False,
            ["tags[*]"],
            ["text", "nested.b[0]"],
            ["nested"],
        ]
        index = self.rng.choices(indexes, weights=[70, 10, 10, 5, 5])[0]
        return PutOp(namespace, key, self.value(), index=index)

    def value(self) -> dict[str, Any]:
        rng = self.rng
        value: dict[str, Any] = {}
        if rng.random() < 0.85:
            value["text"] = " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
        if rng.random() < 0.5:
            value["tags"] = rng.sample(WORDS[:4], rng.randint(0, 3))
        number = rng.choice([rng.randint(0, 9), rng.randint(0, 9) + 0.5, "5", "seven", True, None])
        if number is not None:
            value["n"] = number
        if rng.random() < 0.6:
            value["color"] = rng.choice(COLORS)
        if rng.random() < 0.4:
            value["nested"] = {"a": rng.randint(0, 3), "b": [rng.choice(WORDS[:3])]}
        if rng.random() < 0.2:
            value["flag"] = rng.random() < 0.5
        return value

    def filter(self) -> dict[str, Any]:
        rng = self.rng
        operand = rng.choice([0, 3, 4.5, 7, "5", 9])
        return rng.choice(
            [
                {"color": rng.choice(COLORS)},
                {"color": {"$eq": rng.choice(COLORS)}},
                {"color": {"$ne": rng.choice(COLORS)}},
                {"n": {rng.choice(COMPARISONS): operand}},
                {"n": {"$gte": 2, "$lt": 7}},
                {"n": rng.randint(0, 9)},
                {"n": {"$ne": rng.randint(0, 9)}},
                {"nested": {"a": rng.randint(0, 3)}},
                {"nested": {"a": {"$gt": 1}}},
                {"nested": {"a": rng.randint(0, 3), "b": [rng.choice(WORDS[:3])]}},
                {"tags": rng.sample(WORDS[:4], 2)},
                {"tags": []},
                {"color": rng.choice(COLORS), "n": {"$lte": 5}},
                {"missing": {"$ne": 1}},
                {"flag": rng.random() < 0.5},
            ]
        )

    def search(self) -> SearchOp:
        rng = self.rng
        namespace = rng.choice(self.namespaces)
        prefix = namespace[: rng.randint(1, len(namespace))]
        if rng.random() < 0.05:
            prefix = (*prefix, "absent")
        return SearchOp(
            prefix,
            filter=self.filter() if rng.random() < 0.4 else None,
            limit=rng.choice([10, 10, 1, 2, 3, 5, 20]),
            offset=rng.choice([0, 0, 0, 1, 2, 5]),
            query=" ".join(rng.sample(WORDS, rng.randint(1, 2))) if rng.random() < 0.5 else None,
        )

    def list_namespaces(self) -> ListNamespacesOp:
        rng = self.rng
        namespace = rng.choice(self.namespaces)
        prefix = tuple(
            "*" if rng.random() < 0.2 else label
            for label in namespace[1 : rng.randint(1, len(namespace))]
        )
        conditions = [MatchCondition("prefix", (self.root, *prefix))]
        if rng.random() < 0.4:
            tail = rng.choice(self.namespaces)[-rng.randint(1, 2) :]
            suffix = tuple("*" if rng.random() < 0.2 else label for label in tail)
            conditions.append(MatchCondition("suffix", suffix))
        return ListNamespacesOp(
            match_conditions=tuple(conditions),
            max_depth=rng.choice([None, None, 1, 2, 3, 4]),
            limit=rng.choice([100, 100, 1, 2, 3, 5]),
            offset=rng.choice([0, 0, 0, 1, 2]),
        )
