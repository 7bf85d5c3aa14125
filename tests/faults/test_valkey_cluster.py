"""The Valkey backends on a 3-primary cluster (RediSearch loaded on every node), over a
real sidecar socket: the checkpointer passes LangGraph's conformance suite at level FULL,
the store answers the store differential suite as ``InMemoryStore`` does (vector search
through the index on the node owning the store's slot), and the cache answers as
LangGraph's ``InMemoryCache`` does, with its namespaces spread over the nodes.

The store tests are those of ``tests/store/test_store_differential.py``, imported here and
run against a sidecar on the cluster (``store_sidecar`` below replaces the per-backend one);
the paging test is left out (it pages within one slot, as on a single server, and is slow).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from valkey.crc import key_slot

from agentpersistence.client import SidecarCache, SidecarSaver, SidecarStore
from agentpersistence.sidecar.backends.valkey.schema import CacheKeys, namespace_path
from rig.sidecar import SidecarProcess
from rig.store import DIFF_DIMS, StoreSidecar
from rig.valkey import (
    CACHE_ACL,
    CHECKPOINT_ACL,
    LOOPBACK,
    STORE_ACL,
    ValkeyClusterProcesses,
    add_cluster_users,
    search_module_path,
    start_valkey_cluster,
)
from store import test_store_differential as suite
from store.differential import index_config
from store.test_store_differential import (  # run here against the cluster
    diff,
    root,
    test_batch_semantics,
    test_exotic_labels_and_keys,
    test_filter_operators,
    test_index_fields,
    test_namespace_labels,
    test_put_get_delete,
    test_query_scores_and_paging,
    test_query_without_an_index,
    test_random_sequence,
)

__all__ = [
    "diff",
    "root",
    "test_batch_semantics",
    "test_exotic_labels_and_keys",
    "test_filter_operators",
    "test_index_fields",
    "test_namespace_labels",
    "test_put_get_delete",
    "test_query_scores_and_paging",
    "test_query_without_an_index",
    "test_random_sequence",
]

BACKEND = "valkey-cluster"
PASSWORD = "cluster-pass"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyClusterProcesses]:
    workdir = tmp_path_factory.mktemp("valkey-cluster")
    args = ["--loadmodule", str(search_module_path())]
    processes = start_valkey_cluster(workdir, extra_args=args)
    yield processes
    processes.stop()


def cluster_config(url: str, prefix: str) -> dict[str, Any]:
    block = {"url": url, "keyPrefix": prefix}
    return {
        "checkpointer": {"backend": "valkey", "valkey": block},
        "store": {"backend": "valkey", "valkey": block, "index": {"dims": DIFF_DIMS}},
        "cache": {"backend": "valkey", "valkey": block},
    }


def start_sidecar(cluster: ValkeyClusterProcesses, tmp: Path) -> StoreSidecar:
    """A sidecar serving all three blocks from the cluster, under a key prefix of its own."""
    prefix = f"ap-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    process = SidecarProcess(cluster_config(cluster.url, prefix), tmp, ["--provision"])
    return StoreSidecar(BACKEND, process.start(), prefix)


@pytest.fixture(scope="module")
def store_sidecar(
    cluster: ValkeyClusterProcesses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreSidecar]:
    sidecar = start_sidecar(cluster, tmp_path_factory.mktemp("cluster-sidecar"))
    yield sidecar
    sidecar.process.stop()


async def test_checkpointer_conformance_is_full_on_a_cluster(
    store_sidecar: StoreSidecar, cluster: ValkeyClusterProcesses
) -> None:
    @checkpointer_test(name="SidecarSaver[valkey cluster]")
    async def factory() -> Any:
        with SidecarSaver(store_sidecar.socket) as saver:
            yield saver

    report = await validate(factory)
    results = report.to_dict()["results"]
    assert {cap.value for cap in ALL_CAPABILITIES} == set(results)
    failures = {name: r["failures"] for name, r in results.items() if r["tests_failed"]}
    assert failures == {}
    assert all(r["detected"] for r in results.values())
    assert sum(r["tests_passed"] for r in results.values()) >= 80
    assert report.conformance_level() == "FULL"
    assert nodes_holding(cluster, store_sidecar.key_prefix) == 3  # threads on every primary


def test_listing_namespaces_and_root_searches_on_a_cluster(
    cluster: ValkeyClusterProcesses, tmp_path: Path
) -> None:
    """The suite's listing test needs an empty store: a sidecar with a prefix of its own."""
    started: list[StoreSidecar] = []

    def factory(backend: str, **_: Any) -> StoreSidecar:
        started.append(start_sidecar(cluster, tmp_path / f"s{len(started)}"))
        return started[-1]

    try:
        suite.test_list_namespaces_and_root_searches(factory, BACKEND)
    finally:
        for sidecar in started:
            sidecar.process.stop()


def test_the_cache_answers_like_langgraphs_on_a_cluster(
    store_sidecar: StoreSidecar, cluster: ValkeyClusterProcesses
) -> None:
    reference: InMemoryCache[Any] = InMemoryCache()
    namespaces = [(f"node{i}",) for i in range(12)] + [("a", "b"), ("{x}", "y:z"), ()]
    keys = [(ns, f"k{j}") for ns in namespaces for j in range(3)]
    with SidecarCache[Any](store_sidecar.socket) as ours:
        for cache in (ours, reference):
            cache.set({key: ({"v": i, "ns": list(key[0])}, 600) for i, key in enumerate(keys)})
            cache.set({keys[0]: ("replaced", 600), keys[1]: ("gone", 0)})
        assert ours.get(keys) == reference.get(keys)
        slots = {key_slot(cache_index(store_sidecar, ns)) for ns in namespaces}
        assert len({owner(cluster, slot) for slot in slots}) == 3  # spread over every node
        for cache in (ours, reference):
            cache.clear([("node3",), ("a", "b"), ()])
        assert ours.get(keys) == reference.get(keys)
        assert len(ours.get(keys)) == len(keys) - 3 * 3 - 1
        for cache in (ours, reference):
            cache.clear()
        assert ours.get(keys) == reference.get(keys) == {}


async def test_minimal_acl_users_serve_every_block_on_a_cluster(
    cluster: ValkeyClusterProcesses, tmp_path: Path
) -> None:
    """Each block logs in as a user holding its minimal ACL and ``CLUSTER_ACL`` (made on
    every node: a cluster does not share its ACL users); nothing is refused."""
    prefix = f"acl-{uuid.uuid4().hex[:8]}"
    users = {
        "saver": CHECKPOINT_ACL,
        "store": [*STORE_ACL, "+ft.create"],
        "cache": CACHE_ACL,
    }
    add_cluster_users(cluster, PASSWORD, prefix, users)

    def block(user: str) -> dict[str, Any]:
        port = cluster.nodes[0].port
        return {"url": f"valkey://{user}:{PASSWORD}@{LOOPBACK}:{port}/0", "keyPrefix": prefix}

    config = {
        "checkpointer": {"backend": "valkey", "valkey": block("saver")},
        "store": {"backend": "valkey", "valkey": block("store"), "index": {"dims": DIFF_DIMS}},
        "cache": {"backend": "valkey", "valkey": block("cache")},
    }
    sidecar = SidecarProcess(config, tmp_path, ["--provision"]).start()
    try:

        @checkpointer_test(name="SidecarSaver[valkey cluster, ACL users]")
        async def factory() -> Any:
            with SidecarSaver(sidecar.socket) as saver:
                yield saver

        assert (await validate(factory)).conformance_level() == "FULL"
        with SidecarStore(sidecar.socket, index=index_config(DIFF_DIMS)) as store:
            await store.aput(("docs",), "k", {"text": "apple pie"})
            [found] = await store.asearch(("docs",), query="apple")
            assert found.score is not None
        with SidecarCache[Any](sidecar.socket) as cache:
            await cache.aset({(("n",), "k"): ("v", 60)})
            assert await cache.aget([(("n",), "k")]) == {(("n",), "k"): "v"}
    finally:
        sidecar.stop()
    for node in cluster.nodes:
        admin = valkey.Valkey(host=LOOPBACK, port=node.port)
        try:
            assert admin.execute_command("ACL", "LOG") == [], node.port
        finally:
            admin.close()


# --- looking behind the backends ----------------------------------------------------------


def cache_index(sidecar: StoreSidecar, namespace: tuple[str, ...]) -> bytes:
    return CacheKeys(sidecar.key_prefix).index(namespace_path(list(namespace))).encode()


def owner(cluster: ValkeyClusterProcesses, slot: int) -> int:
    """The port of the primary serving ``slot``."""
    client = valkey.Valkey(host=LOOPBACK, port=cluster.nodes[0].port)
    try:
        for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    finally:
        client.close()
    raise AssertionError(f"no node serves slot {slot}")


def nodes_holding(cluster: ValkeyClusterProcesses, prefix: str) -> int:
    """How many primaries hold keys under ``prefix``."""
    holding = 0
    for node in cluster.nodes:
        client = valkey.Valkey(host=LOOPBACK, port=node.port)
        try:
            holding += bool(next(iter(client.scan_iter(match=f"{prefix}:*", count=1000)), None))
        finally:
            client.close()
    return holding
