"""Bad store input gets a typed error naming what is wrong, and the sidecar keeps serving.

Three layers refuse it: LangGraph's ``BaseStore`` methods (``InvalidNamespaceError``, as
for ``InMemoryStore``), our client before sending (``RequestRejected``), and the sidecar for
ops that reach it raw (``RequestRejected`` through the socket): the last is what protects a
backend from a client of another release.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.store.base import InvalidNamespaceError, PutOp, SearchOp

from agentpersistence.client import SidecarStore
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes
from agentpersistence.client.protocol.errors import RequestRejected
from rig.store import StoreSidecar, unique_label


@pytest.fixture
def store(store_sidecar: StoreSidecar) -> Iterator[SidecarStore]:
    with SidecarStore(store_sidecar.socket) as store:
        yield store


def send_raw(store: SidecarStore, *ops: m.StoreOp) -> m.StoreBatchResponse:
    """Ops straight onto the socket, past the client's own checks."""
    return store.transport.call(routes.STORE_BATCH, m.StoreBatchRequest(list(ops)), 5.0)


def still_serving(store: SidecarStore) -> None:
    ns = (unique_label("alive"),)
    store.put(ns, "k", {"ok": True})
    item = store.get(ns, "k")
    assert item is not None
    assert item.value == {"ok": True}


@pytest.mark.parametrize(
    "namespace",
    [("a.b",), ("ok", "x.y"), ("",), ("nul\x00",)],
    ids=["dot", "nested-dot", "empty-label", "nul"],
)
def test_bad_labels(store: SidecarStore, namespace: tuple[str, ...]) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", {"v": 1})
    with pytest.raises(RequestRejected, match=r"(?i)namespace"):
        store.batch([PutOp(namespace, "k", {"v": 1})])
    with pytest.raises(RequestRejected, match=r"(?i)namespace"):
        store.batch([SearchOp(namespace)])
    with pytest.raises(RequestRejected, match=r"(?i)namespace") as raw:
        send_raw(store, m.StoreOp("put", list(namespace), "k", value=b'{"v": 1}'))
    assert raw.value.code == "invalid_request"
    with pytest.raises(RequestRejected, match=r"(?i)namespace"):
        send_raw(store, m.StoreOp("search", list(namespace)))
    still_serving(store)


def test_empty_namespace(store: SidecarStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        store.put((), "k", {"v": 1})
    with pytest.raises(RequestRejected, match="namespace cannot be empty"):
        store.batch([PutOp((), "k", {"v": 1})])
    with pytest.raises(RequestRejected, match="namespace cannot be empty"):
        send_raw(store, m.StoreOp("get", [], "k"))
    still_serving(store)


@pytest.mark.parametrize(
    "filter",
    [{"n": {"$regex": "x"}}, {"n": {"$in": [1]}}, {"a": {"b": {"$exists": True}}}],
    ids=["regex", "in", "nested-exists"],
)
def test_unknown_filter_operator(store: SidecarStore, filter: dict[str, Any]) -> None:
    """Refused even where no item would be compared (``InMemoryStore`` raises only then)."""
    ns = (unique_label("filters"),)
    with pytest.raises(RequestRejected, match="unsupported filter operator"):
        store.search(ns, filter=filter)
    store.put(ns, "k", {"n": 1, "a": {"b": 1}})
    with pytest.raises(RequestRejected, match="unsupported filter operator"):
        store.search(ns, filter=filter)
    still_serving(store)


@pytest.mark.parametrize(
    "value",
    [{"x": object()}, {"x": b"bytes"}, {"x": float("nan")}, {"x": {1, 2}}],
    ids=["object", "bytes", "nan", "set"],
)
def test_value_not_json(store: SidecarStore, value: dict[str, Any]) -> None:
    ns = (unique_label("values"),)
    with pytest.raises(RequestRejected, match="JSON"):
        store.put(ns, "k", value)
    assert store.get(ns, "k") is None
    with pytest.raises(RequestRejected, match="JSON"):
        store.search(ns, filter={"x": value["x"]})
    still_serving(store)


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (m.StoreOp("put", ["ns"], "k", value=b"not json"), "not valid JSON"),
        (m.StoreOp("put", ["ns"], "k", value=b"[1, 2]"), "must be a JSON object"),
        (m.StoreOp("search", ["ns"], filter=b"{"), "not valid JSON"),
        (m.StoreOp("search", ["ns"], filter=b'"text"'), "JSON object"),
        (m.StoreOp("search", ["ns"], limit=-1), "negative"),
        (m.StoreOp("search", ["ns"], offset=-1), "negative"),
        (m.StoreOp("truncate", ["ns"]), "unknown store op"),
        (
            m.StoreOp("list_namespaces", conditions=[m.NamespaceCondition("infix", ["a"])]),
            "prefix or suffix",
        ),
        (m.StoreOp("list_namespaces", max_depth=0), "max_depth"),
    ],
    ids=[
        "value-not-json",
        "value-not-object",
        "filter-not-json",
        "filter-not-object",
        "negative-limit",
        "negative-offset",
        "unknown-op",
        "unknown-match-type",
        "max-depth-0",
    ],
)
def test_raw_ops_refused_by_the_sidecar(store: SidecarStore, op: m.StoreOp, message: str) -> None:
    with pytest.raises(RequestRejected, match=message):
        send_raw(store, op)
    still_serving(store)


def test_a_bad_op_refuses_its_whole_batch(store: SidecarStore) -> None:
    ns = unique_label("atomic")
    with pytest.raises(RequestRejected):
        send_raw(
            store,
            m.StoreOp("put", [ns], "k", value=b'{"v": 1}'),
            m.StoreOp("search", [ns], filter=b'{"v": {"$nope": 1}}'),
        )
    assert store.get((ns,), "k") is None
