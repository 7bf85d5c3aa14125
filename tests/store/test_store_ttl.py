"""Store items expire after their TTL, and reads refresh it when asked (``InMemoryStore``
has no TTL: these are checked on their own, against a clock).

TTLs are LangGraph's, in minutes; the tests use 1.5 s. Each check is timed from the moment
of the put or the refresh it depends on, with 0.4 s of margin either side.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from langgraph.store.base import BaseStore, TTLConfig

from agentpersistence.client import SidecarStore
from agentpersistence.client.protocol.errors import RequestRejected
from rig.store import CLOCKED_TTL, NO_TTL, StoreSidecar, unique_label
from store.differential import index_config

TTL_SECONDS = 1.5
TTL_MINUTES = TTL_SECONDS / 60
MARGIN = 0.4


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def present(store: BaseStore, namespace: tuple[str, ...], key: str) -> bool:
    return store.get(namespace, key, refresh_ttl=False) is not None


def test_supports_ttl() -> None:
    assert SidecarStore.supports_ttl is True


def refuses_ttls(sidecar: StoreSidecar) -> bool:
    """On a backend without TTLs (README: agentcore-memory), a put with one is refused."""
    if sidecar.backend in CLOCKED_TTL:
        pytest.skip(f"{sidecar.backend}: TTLs shown against a moved clock (rig.store.CLOCKED_TTL)")
    if sidecar.backend not in NO_TTL:
        return False
    with SidecarStore(sidecar.socket, ttl={"default_ttl": TTL_MINUTES}) as store:
        with pytest.raises(RequestRejected, match="does not support TTLs"):
            store.put((unique_label("ttl"),), "k", {"v": 1})
        with pytest.raises(RequestRejected, match="does not support TTLs"):
            store.put((unique_label("ttl"),), "k", {"v": 1}, ttl=60)
        store.put((unique_label("ttl"),), "k", {"v": 1}, ttl=None)  # explicitly none: stored
    return True


def test_items_expire_and_reads_refresh_them(store_sidecar: StoreSidecar) -> None:
    if refuses_ttls(store_sidecar):
        return
    root = unique_label("ttl")
    refreshing: TTLConfig = {"default_ttl": TTL_MINUTES, "refresh_on_read": True}
    plain: TTLConfig = {"default_ttl": TTL_MINUTES, "refresh_on_read": False}
    with (
        SidecarStore(store_sidecar.socket, ttl=refreshing, index=index_config()) as store,
        SidecarStore(store_sidecar.socket, ttl=plain) as other,
    ):
        ns, searched = (root, "items"), (root, "searched")
        filtered, queried = (root, "filtered"), (root, "queried")
        start = time.monotonic()
        store.put(ns, "get-refreshed", {"v": 1})
        store.put(ns, "read-without-refresh", {"v": 2})
        store.put(searched, "search-refreshed", {"v": 3})
        store.put(filtered, "filter-refreshed", {"v": 9})
        store.put(filtered, "filtered-out", {"v": 10})
        store.put(queried, "query-refreshed", {"text": "apple"})
        store.put(ns, "untouched", {"v": 4})
        store.put(ns, "no-ttl", {"v": 5}, ttl=None)
        store.put(ns, "longer", {"v": 6}, ttl=TTL_MINUTES * 4)
        other.put(ns, "read-by-default-no-refresh", {"v": 7})
        other.put(ns, "read-asked-to-refresh", {"v": 8})
        written = time.monotonic()
        assert written - start < MARGIN, "puts too slow for the timing of this test"

        sleep_until(start + TTL_SECONDS / 2)
        assert store.get(ns, "get-refreshed") is not None
        assert store.get(ns, "read-without-refresh", refresh_ttl=False) is not None
        assert [i.key for i in store.search(searched)] == ["search-refreshed"]
        assert [i.key for i in store.search(filtered, filter={"v": 9})] == ["filter-refreshed"]
        assert [i.key for i in store.search(queried, query="apple")] == ["query-refreshed"]
        assert other.get(ns, "read-by-default-no-refresh") is not None
        assert other.get(ns, "read-asked-to-refresh", refresh_ttl=True) is not None
        refreshed = time.monotonic()

        sleep_until(written + TTL_SECONDS + MARGIN)
        assert time.monotonic() < refreshed + TTL_SECONDS - MARGIN / 2, "the machine is too slow"
        keys = (
            "get-refreshed",
            "read-without-refresh",
            "untouched",
            "read-by-default-no-refresh",
            "read-asked-to-refresh",
        )
        alive = {k for k in keys if present(store, ns, k)}
        assert alive == {"get-refreshed", "read-asked-to-refresh"}
        assert present(store, searched, "search-refreshed")
        assert present(store, filtered, "filter-refreshed")
        assert not present(store, filtered, "filtered-out")
        assert present(store, queried, "query-refreshed")
        assert present(store, ns, "no-ttl")
        assert present(store, ns, "longer")

        sleep_until(refreshed + TTL_SECONDS + MARGIN)
        assert {i.key for i in store.search(ns)} == {"no-ttl", "longer"}
        assert store.search(searched) == []
        assert store.search(filtered, filter={"v": 9}) == []
        assert store.search(queried, query="apple") == []
        everything = store.search((root,), query="apple", limit=100)
        assert sorted((i.key, i.score) for i in everything) == [("longer", None), ("no-ttl", None)]
        assert store.list_namespaces(prefix=(root,)) == [ns]


async def test_async_ttl(store_sidecar: StoreSidecar) -> None:
    if await asyncio.to_thread(refuses_ttls, store_sidecar):
        return
    root = unique_label("ttl-async")
    ttl: TTLConfig = {"default_ttl": TTL_MINUTES, "refresh_on_read": True}
    async with SidecarStore(store_sidecar.socket, ttl=ttl) as store:
        ns = (root,)
        start = time.monotonic()
        await store.aput(ns, "refreshed", {"v": 1})
        await store.aput(ns, "expires", {"v": 2})
        await asyncio.sleep(max(0.0, start + TTL_SECONDS / 2 - time.monotonic()))
        assert await store.aget(ns, "refreshed") is not None
        await asyncio.sleep(max(0.0, start + TTL_SECONDS + MARGIN - time.monotonic()))
        assert await store.aget(ns, "expires", refresh_ttl=False) is None
        assert await store.aget(ns, "refreshed", refresh_ttl=False) is not None
