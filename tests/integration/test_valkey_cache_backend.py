"""The Valkey cache backend, called directly (no socket), against a real valkey-server.

Answers are checked against the memory backend (the reference) on the same calls; the
Valkey-specific promises on the server itself: one round trip per get and set (one MGET per
namespace), real TTLs in milliseconds, exact-namespace clears without KEYS or SCAN, one
cluster slot per namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import valkey
from valkey.crc import key_slot

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.memory.cache import MemoryCacheBackend
from agentpersistence.sidecar.backends.valkey import cache as valkey_cache
from agentpersistence.sidecar.backends.valkey.cache import ValkeyCacheBackend
from agentpersistence.sidecar.backends.valkey.schema import CacheKeys, namespace_path
from agentpersistence.sidecar.settings import ValkeyCacheSettings
from rig.valkey import command_calls, start_valkey, start_valkey_cluster


def entry(
    ns: Sequence[str], key: str, value: bytes = b"v", ttl: float | None = None
) -> m.CacheEntry:
    return m.CacheEntry(list(ns), key, "bytes", value, ttl)


def key(ns: Sequence[str], name: str) -> m.CacheKey:
    return m.CacheKey(list(ns), name)


@dataclasses.dataclass
class Twin:
    """The Valkey cache and the memory cache, fed the same calls."""

    valkey: ValkeyCacheBackend
    memory: MemoryCacheBackend

    async def set(self, *entries: m.CacheEntry) -> None:
        await self.memory.set(entries)
        await self.valkey.set(entries)

    async def get(self, *keys: m.CacheKey) -> list[m.CacheEntry]:
        expected = await self.memory.get(keys)
        actual = await self.valkey.get(keys)
        assert actual == expected
        return actual

    async def clear(self, namespaces: Sequence[Sequence[str]] | None) -> None:
        await self.memory.clear(namespaces)
        await self.valkey.clear(namespaces)


def settings_for(url: str, **overrides: Any) -> ValkeyCacheSettings:
    return ValkeyCacheSettings(url=url, **{"socket_timeout_seconds": 2.0, **overrides})


@pytest.fixture
async def cache(valkey_flushed: str) -> AsyncIterator[ValkeyCacheBackend]:
    backend = ValkeyCacheBackend(settings_for(valkey_flushed))
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture
def twin(cache: ValkeyCacheBackend) -> Twin:
    return Twin(cache, MemoryCacheBackend())


def all_keys(admin: valkey.Valkey) -> list[bytes]:
    """Every key of the server (the test may use KEYS; the backend never does)."""
    return cast(list[bytes], admin.keys("*"))


# --- get and set -------------------------------------------------------------------------


async def test_get_answers_the_entries_as_set(twin: Twin) -> None:
    await twin.set(
        entry(["node", "a"], "k1", b"\x00one\xff"),
        entry(["node", "a"], "k2", b"two", ttl=60),
        entry(["node", "b"], "k1", b"three", ttl=0.5),
        entry([], "root", b"four"),
    )
    hits = await twin.get(
        key(["node", "a"], "k1"),
        key(["node", "a"], "missing"),
        key(["node", "b"], "k1"),
        key(["node"], "k1"),
        key([], "root"),
        key(["node", "a"], "k2"),
    )
    assert [e.value for e in hits] == [b"\x00one\xff", b"three", b"four", b"two"]
    assert hits[-1].ttl_seconds == 60
    assert await twin.get() == []


async def test_set_again_replaces_the_value_and_the_ttl(twin: Twin, admin: valkey.Valkey) -> None:
    await twin.set(entry(["n"], "k", b"old", ttl=60))
    await twin.set(entry(["n"], "k", b"new"))
    await twin.get(key(["n"], "k"))
    assert admin.pttl(CacheKeys("ap").entry(["n"], "k")) == -1
    await twin.set(entry(["n"], "k", b"newer", ttl=0.25), entry(["n"], "k", b"last", ttl=30))
    await twin.get(key(["n"], "k"))


async def test_entries_expire_after_fractional_ttls(twin: Twin, admin: valkey.Valkey) -> None:
    await twin.set(entry(["t"], "short", ttl=0.3), entry(["t"], "long", ttl=30))
    await twin.set(entry(["t"], "forever"))
    pttl = cast(int, admin.pttl(CacheKeys("ap").entry(["t"], "short")))
    assert 0 < pttl <= 300
    await twin.get(key(["t"], "short"), key(["t"], "long"), key(["t"], "forever"))
    await asyncio.sleep(0.4)
    hits = await twin.get(key(["t"], "short"), key(["t"], "long"), key(["t"], "forever"))
    assert [e.key for e in hits] == ["long", "forever"]


async def test_a_ttl_of_zero_or_less_leaves_no_entry(twin: Twin) -> None:
    await twin.set(entry(["z"], "k", b"there"))
    await twin.set(entry(["z"], "k", ttl=0), entry(["z"], "other", ttl=-1))
    assert await twin.get(key(["z"], "k"), key(["z"], "other")) == []


async def test_awkward_namespaces_and_keys_stay_apart(twin: Twin) -> None:
    namespaces: list[list[str]] = [[], [""], ["", ""], ["a:b"], ["a", "b"], ["{x}"], ["%3A"]]
    namespaces += [[":"], ["a b", "é"], ["a", "b:"]]
    keys = ["", ":", "a:b", "{", "}", "%", "k"]
    await twin.set(*(entry(ns, k, f"{ns}/{k}".encode()) for ns in namespaces for k in keys))
    hits = await twin.get(*(key(ns, k) for ns in namespaces for k in keys))
    assert len({e.value for e in hits}) == len(namespaces) * len(keys)
    await twin.clear([["a:b"], [""]])
    await twin.get(*(key(ns, k) for ns in namespaces for k in keys))


# --- clear -------------------------------------------------------------------------------


async def test_clear_drops_exactly_the_named_namespaces(twin: Twin) -> None:
    await twin.set(
        entry(["a"], "k1"),
        entry(["a"], "k2", ttl=60),
        entry(["a", "b"], "k1"),
        entry(["b"], "k1"),
    )
    everything = [key(["a"], "k1"), key(["a"], "k2"), key(["a", "b"], "k1"), key(["b"], "k1")]
    await twin.clear([["a"], ["never-written"]])
    hits = await twin.get(*everything)
    assert [(e.namespace, e.key) for e in hits] == [(["a", "b"], "k1"), (["b"], "k1")]
    await twin.clear([])
    assert len(await twin.get(*everything)) == 2
    await twin.set(entry(["a"], "k1", b"again"))
    assert len(await twin.get(*everything)) == 3


async def test_clear_everything_leaves_no_key_and_other_prefixes_alone(
    twin: Twin, admin: valkey.Valkey, valkey_flushed: str
) -> None:
    neighbour = ValkeyCacheBackend(settings_for(valkey_flushed, key_prefix="other"))
    await neighbour.start()
    try:
        await neighbour.set([entry(["a"], "k", b"theirs")])
        await twin.set(*(entry([f"n{i}"], f"k{j}", ttl=60) for i in range(5) for j in range(3)))
        await twin.clear(None)
        assert await twin.get(*(key([f"n{i}"], f"k{j}") for i in range(5) for j in range(3))) == []
        assert all(k.startswith(b"other:") for k in all_keys(admin))
        assert [e.value for e in await neighbour.get([key(["a"], "k")])] == [b"theirs"]
        await twin.clear(None)  # nothing left to clear
    finally:
        await neighbour.close()


async def test_a_namespace_index_forgets_entries_long_expired(
    twin: Twin, admin: valkey.Valkey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(valkey_cache, "TRIM_GRACE_MS", 0)
    await twin.set(*(entry(["n"], f"old{i}", ttl=0.05) for i in range(10)))
    await asyncio.sleep(0.1)
    await twin.set(entry(["n"], "new"))
    index = CacheKeys("ap").index(namespace_path(["n"]))
    assert cast(list[bytes], admin.zrange(index, 0, -1)) == [b"new"]


# --- cost and layout ---------------------------------------------------------------------


async def test_get_and_set_take_one_round_trip(
    twin: Twin, admin: valkey.Valkey, round_trips: list[int]
) -> None:
    entries = [entry([f"n{i % 4}"], f"k{i}", ttl=60 if i % 2 else None) for i in range(40)]
    round_trips[0] = 0
    await twin.valkey.set(entries)
    assert round_trips[0] == 1

    before = command_calls(admin)
    round_trips[0] = 0
    hits = await twin.valkey.get([key(e.namespace, e.key) for e in entries])
    assert round_trips[0] == 1
    assert len(hits) == 40
    assert command_calls(admin)["mget"] - before.get("mget", 0) == 4  # one per namespace

    round_trips[0] = 0
    await twin.valkey.clear([["n0"], ["n1"]])
    assert round_trips[0] == 1


async def test_nothing_lists_keys(twin: Twin, admin: valkey.Valkey) -> None:
    admin.config_resetstat()
    await twin.set(*(entry([f"n{i}"], "k") for i in range(3)))
    await twin.get(key(["n0"], "k"))
    await twin.clear([["n0"]])
    await twin.clear(None)
    calls = command_calls(admin)
    assert not {"keys", "scan"} & set(calls)


def test_every_key_of_a_namespace_shares_one_slot() -> None:
    keys = CacheKeys("ap")
    for ns in ([], ["a"], ["a", "b"], ["{x}", "y}"]):
        path = namespace_path(ns)
        slots = {key_slot(k.encode()) for k in (keys.index(path), keys.entry(ns, "k"))}
        slots.add(key_slot(keys.entry(ns, "{other}").encode()))
        assert len(slots) == 1


async def test_a_cluster_answers_like_the_memory_backend(tmp_path: Path) -> None:
    cluster = start_valkey_cluster(tmp_path / "cluster")
    backend = ValkeyCacheBackend(settings_for(cluster.url))
    try:
        await backend.start()
        twin = Twin(backend, MemoryCacheBackend())
        await twin.set(*(entry([f"n{i}"], f"k{j}", ttl=60) for i in range(6) for j in range(3)))
        everything = [key([f"n{i}"], f"k{j}") for i in range(6) for j in range(3)]
        assert len(await twin.get(*everything)) == 18
        await twin.clear([["n1"], ["n4"]])
        assert len(await twin.get(*everything)) == 12
        await twin.clear(None)
        assert await twin.get(*everything) == []
    finally:
        await backend.close()
        cluster.stop()


# --- errors ------------------------------------------------------------------------------


async def test_an_unreachable_server_raises_backend_unavailable(tmp_path: Path) -> None:
    server = start_valkey(tmp_path / "valkey")
    backend = ValkeyCacheBackend(settings_for(server.url))
    try:
        await backend.start()
        await backend.set([entry(["n"], "k")])
        server.stop()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await backend.get([key(["n"], "k")])
        with pytest.raises(BackendUnavailable):
            await backend.set([entry(["n"], "k")])
        with pytest.raises(BackendUnavailable):
            await backend.clear(None)
        assert not (await backend.health()).ok
    finally:
        await backend.close()
        server.stop()
