"""Sidecars serving the long-term store and the node cache, one per store backend.

Backends under test (``STORE_BACKENDS``):

- ``memory``: the sidecar's in-process dictionaries;
- ``valkey-search``: Valkey with the RediSearch module loaded, so vector search runs in an
  HNSW index (``FT.SEARCH ... KNN``);
- ``valkey-exact``: plain Valkey, without a search module: the sidecar's exact-search fallback;
- ``agentcore-memory``: memory records of an AgentCore Memory on the project's emulator
  (``rig.emulator``), a memory of its own per sidecar, with the memory cache backend beside
  it. It ranks queries with AgentCore's retrieval (the emulator's text stand-in), not with the
  agent's vectors, and has no TTLs: tests that assert either say so for this backend
  (``RANKS_ITSELF``, ``NO_TTL``);
- ``dynamodb``: a table of its own on DynamoDB Local (``rig.dynamodb``), created by the
  sidecar's ``--provision``, with the memory cache backend beside it. DynamoDB Local has no
  vector index: vector search runs exactly in the sidecar.

``store_sidecar`` runs a test once per backend on a session-scoped sidecar configured with
``store`` and ``cache`` blocks (index of ``DIFF_DIMS`` dimensions, except on agentcore-memory,
which takes no index). The sidecars are shared by the whole session, so every test writes
under namespaces of its own (``unique_label``).
Tests that need other index settings (dimensions, distance, HNSW parameters) or an empty
store start sidecars of their own with ``store_sidecar_factory``: on Valkey each gets its own
key prefix, hence its own keys and its own search index, on the session's servers.

The Valkey servers here belong to the store rig, not to ``rig.valkey``'s session servers:
other tests flush those (``valkey_flushed``, the search backend's tests), and ``FLUSHALL``
drops the search index of a sidecar that lives for the whole session.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rig.dynamodb import AwsEndpoints
from rig.emulator import EmulatorProcess, unique_name
from rig.sidecar import SidecarProcess
from rig.valkey import ValkeyProcess, search_module_path, start_valkey

__all__ = [
    "CLOCKED_TTL",
    "DIFF_DIMS",
    "NO_TTL",
    "RANKS_ITSELF",
    "STORE_BACKENDS",
    "StoreSidecar",
    "StoreSidecarFactory",
    "agentcore_store_config",
    "dynamodb_store_config",
    "start_agentcore_store_sidecar",
    "start_dynamodb_store_sidecar",
    "start_store_sidecar",
    "store_cache_config",
    "store_exact_valkey",
    "store_search_valkey",
    "store_sidecar",
    "store_sidecar_agentcore_memory",
    "store_sidecar_dynamodb",
    "store_sidecar_factory",
    "store_sidecar_memory",
    "store_sidecar_valkey_exact",
    "store_sidecar_valkey_search",
    "unique_label",
]

STORE_BACKENDS = ("memory", "valkey-search", "valkey-exact", "agentcore-memory", "dynamodb")
RANKS_ITSELF = frozenset({"agentcore-memory"})
"""Backends whose searches with a query are ranked by the storage service itself (AgentCore's
semantic retrieval: the emulator's stand-in here), not by the agent's vectors: see the
README's agentcore-memory section. Tests of vector-ranked order and scores skip them, and
``tests/integration/test_agentcore_store_backend.py`` shows what they do instead."""
NO_TTL = frozenset({"agentcore-memory"})
"""Backends that refuse puts with a TTL (AgentCore expires records only in whole days)."""
CLOCKED_TTL = frozenset({"dynamodb"})
"""Backends whose TTLs are shown against a clock the test moves, not against real time with
0.4 s margins: DynamoDB Local's latency (a cold table's first calls take most of a second)
exceeds them. ``tests/integration/test_dynamodb_store_backend.py`` shows expiry (with items
DynamoDB still holds) and refresh on reads there."""
DIFF_DIMS = 8
"""Dimensions of the session sidecars' index: small, for the differential suite."""


@dataclass(frozen=True)
class StoreSidecar:
    """A running sidecar with store and cache blocks, and the backend it was configured with."""

    backend: str
    process: SidecarProcess
    key_prefix: str
    """On Valkey, the prefix of the store's keys and of its search index; on dynamodb, the
    table's name."""
    memory_id: str = ""
    """On agentcore-memory, the emulator's memory holding the store's records."""

    @property
    def socket(self) -> str:
        return self.process.socket


StoreSidecarFactory = Callable[..., StoreSidecar]
"""``(backend, *, index=None) -> StoreSidecar``: a fresh, empty sidecar for one test."""


def unique_label(prefix: str) -> str:
    """A namespace label no other test uses (the sidecars live for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def store_cache_config(
    url: str | None, *, index: dict[str, Any] | None, key_prefix: str = "ap"
) -> dict[str, Any]:
    """The sidecar config: memory backends without ``url``, Valkey ones with it."""
    store: dict[str, Any]
    cache: dict[str, Any]
    if url is None:
        store, cache = {"backend": "memory"}, {"backend": "memory"}
    else:
        store = {"backend": "valkey", "valkey": {"url": url, "keyPrefix": key_prefix}}
        cache = {"backend": "valkey", "valkey": {"url": url, "keyPrefix": key_prefix}}
    if index is not None:
        store["index"] = index
    return {"store": store, "cache": cache}


def start_store_sidecar(
    backend: str,
    request: pytest.FixtureRequest,
    *,
    index: dict[str, Any] | None,
    key_prefix: str | None = None,
) -> StoreSidecar:
    """Start a sidecar for ``backend`` on the rig's servers; the caller stops it.

    On Valkey, a new ``key_prefix`` (the default) means empty keys and a search index of its
    own; a sidecar given another one's prefix serves the same store (and adopts its index).
    """
    workdir = Path(tempfile.mkdtemp(prefix="ap-store-sidecar-"))
    if backend == "agentcore-memory":
        emulator: EmulatorProcess = request.getfixturevalue("agentcore_emulator")
        return start_agentcore_store_sidecar(emulator, workdir)
    if backend == "dynamodb":
        endpoints: AwsEndpoints = request.getfixturevalue("aws_endpoints")
        return start_dynamodb_store_sidecar(endpoints, workdir, index=index)
    url = _server_url(backend, request)
    prefix = key_prefix or f"ap-{uuid.uuid4().hex[:8]}"
    config = store_cache_config(url, index=index, key_prefix=prefix)
    args = [] if url is None else ["--provision"]
    return StoreSidecar(backend, SidecarProcess(config, workdir, args).start(), prefix)


def agentcore_store_config(memory_id: str, **settings: Any) -> dict[str, Any]:
    """A store on an AgentCore memory (no index: AgentCore ranks), the memory cache beside."""
    block = {"memoryId": memory_id, **settings}
    return {
        "store": {"backend": "agentcore-memory", "agentcoreMemory": block},
        "cache": {"backend": "memory"},
    }


def start_agentcore_store_sidecar(emulator: EmulatorProcess, workdir: Path) -> StoreSidecar:
    """A sidecar on a new memory of ``emulator`` (so an empty store); the caller stops it."""
    memory_id = emulator.create_active_memory(unique_name("store"))
    process = SidecarProcess(agentcore_store_config(memory_id), workdir, [], emulator.env())
    return StoreSidecar("agentcore-memory", process.start(), "", memory_id)


def dynamodb_store_config(
    table: str, *, index: dict[str, Any] | None = None, **settings: Any
) -> dict[str, Any]:
    """A store on a DynamoDB table, the memory cache beside it."""
    store: dict[str, Any] = {"backend": "dynamodb", "dynamodb": {"tableName": table, **settings}}
    if index is not None:
        store["index"] = index
    return {"store": store, "cache": {"backend": "memory"}}


def start_dynamodb_store_sidecar(
    endpoints: AwsEndpoints, workdir: Path, *, index: dict[str, Any] | None
) -> StoreSidecar:
    """A sidecar on a new table of DynamoDB Local (so an empty store), made by --provision."""
    table = f"ap-store-{uuid.uuid4().hex[:8]}"
    config = dynamodb_store_config(table, index=index)
    process = SidecarProcess(config, workdir, ["--provision"], endpoints.env())
    return StoreSidecar("dynamodb", process.start(), table)


def _server_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "memory":
        return None
    if backend == "valkey-search":
        server: ValkeyProcess = request.getfixturevalue("store_search_valkey")
        return server.url
    if backend == "valkey-exact":
        server = request.getfixturevalue("store_exact_valkey")
        return server.url
    raise ValueError(f"unknown store backend {backend!r}; use one of {STORE_BACKENDS}")


@pytest.fixture(scope="session")
def store_exact_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    """Plain Valkey (no search module) for the store rig's sidecars."""
    server = start_valkey(tmp_path_factory.mktemp("store-valkey-exact"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def store_search_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyProcess]:
    """Valkey with RediSearch loaded, for the store rig's sidecars."""
    workdir = tmp_path_factory.mktemp("store-valkey-search")
    server = start_valkey(workdir, extra_args=["--loadmodule", str(search_module_path())])
    yield server
    server.stop()


def _session_sidecar(backend: str, request: pytest.FixtureRequest) -> Iterator[StoreSidecar]:
    sidecar = start_store_sidecar(backend, request, index={"dims": DIFF_DIMS})
    yield sidecar
    sidecar.process.stop()


@pytest.fixture(scope="session")
def store_sidecar_memory(request: pytest.FixtureRequest) -> Iterator[StoreSidecar]:
    yield from _session_sidecar("memory", request)


@pytest.fixture(scope="session")
def store_sidecar_valkey_search(request: pytest.FixtureRequest) -> Iterator[StoreSidecar]:
    yield from _session_sidecar("valkey-search", request)


@pytest.fixture(scope="session")
def store_sidecar_valkey_exact(request: pytest.FixtureRequest) -> Iterator[StoreSidecar]:
    yield from _session_sidecar("valkey-exact", request)


@pytest.fixture(scope="session")
def store_sidecar_agentcore_memory(agentcore_emulator: EmulatorProcess) -> Iterator[StoreSidecar]:
    workdir = Path(tempfile.mkdtemp(prefix="ap-store-sidecar-"))
    sidecar = start_agentcore_store_sidecar(agentcore_emulator, workdir)
    yield sidecar
    sidecar.process.stop()


@pytest.fixture(scope="session")
def store_sidecar_dynamodb(request: pytest.FixtureRequest) -> Iterator[StoreSidecar]:
    yield from _session_sidecar("dynamodb", request)


@pytest.fixture(params=STORE_BACKENDS)
def store_sidecar(request: pytest.FixtureRequest) -> StoreSidecar:
    """The same test against each store backend, over a real socket (session sidecars)."""
    fixture = "store_sidecar_" + str(request.param).replace("-", "_")
    sidecar: StoreSidecar = request.getfixturevalue(fixture)
    return sidecar


@pytest.fixture
def store_sidecar_factory(request: pytest.FixtureRequest) -> Iterator[StoreSidecarFactory]:
    """Start empty sidecars with the index settings a test needs; stopped after the test."""
    started: list[StoreSidecar] = []

    def start(backend: str, *, index: dict[str, Any] | None = None) -> StoreSidecar:
        index = index if index is not None else {"dims": DIFF_DIMS}
        sidecar = start_store_sidecar(backend, request, index=index)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.process.stop()
