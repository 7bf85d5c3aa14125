"""``SidecarStore``: LangGraph's long-term memory (``BaseStore``) kept by the sidecar.

Values are JSON objects, encoded here; the sidecar reads them only to evaluate filters.
Embeddings are computed here when the store is given an ``index`` with an ``embed``
function, and sent with each put and search; without one, a sidecar configured with an
embedding provider computes them. TTLs follow LangGraph's ``TTLConfig`` (minutes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    BaseStore,
    Embeddings,
    GetOp,
    IndexConfig,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    validate_op_namespace,
)

from . import _transport
from ._connection import DEFAULT_TIMEOUT, SidecarConnection, json_bytes
from .protocol import messages as m
from .protocol import routes, store_rules
from .protocol.errors import RequestRejected


class SidecarStore(SidecarConnection, BaseStore):
    """Long-term memory backed by the agentpersistence sidecar; sync and async.

    Args:
        socket_path: as for ``SidecarSaver``.
        index: LangGraph's ``IndexConfig`` (``dims``, ``embed``, ``fields``) to embed in
            this process; leave it out to let the sidecar embed (if configured to).
        ttl: LangGraph's ``TTLConfig``: ``default_ttl`` (minutes), ``refresh_on_read``.
        timeout: the deadline of each call, in seconds.
    """

    supports_ttl = True

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: _transport.Transport | None = None,
    ) -> None:
        self._connect(socket_path, timeout, transport)
        self.index_config = index
        self.ttl_config = ttl
        self.embeddings: Embeddings | None = None
        self._fields: store_rules.Fields = []
        if index is not None:
            self.embeddings = ensure_embeddings(index.get("embed"))
            self._fields = store_rules.tokenize_fields(index.get("fields") or ["$"])

    # --- BaseStore -----------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        request = [_to_wire(op) for op in ops]
        if self.embeddings is not None:
            docs, queries = store_rules.texts_to_embed(request, self._fields, _value_of(ops))
            doc_vectors = self.embeddings.embed_documents([t for _, _, t in docs]) if docs else []
            query_vectors = [self.embeddings.embed_query(t) for _, _, t in queries]
            request = store_rules.attach_vectors(request, docs, doc_vectors, queries, query_vectors)
        response = self._call(routes.STORE_BATCH, m.StoreBatchRequest(request))
        return _results(ops, response)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        request = [_to_wire(op) for op in ops]
        if self.embeddings is not None:
            docs, queries = store_rules.texts_to_embed(request, self._fields, _value_of(ops))
            texts = [t for _, _, t in docs]
            doc_vectors = await self.embeddings.aembed_documents(texts) if docs else []
            query_vectors = [await self.embeddings.aembed_query(t) for _, _, t in queries]
            request = store_rules.attach_vectors(request, docs, doc_vectors, queries, query_vectors)
        response = await self._acall(routes.STORE_BATCH, m.StoreBatchRequest(request))
        return _results(ops, response)


def _value_of(ops: list[Op]) -> Callable[[int], Any]:
    def value(i: int) -> Any:
        op = ops[i]
        return op.value if isinstance(op, PutOp) else None

    return value


# --- LangGraph ops ↔ wire ----------------------------------------------------------------


def _to_wire(op: Op) -> m.StoreOp:
    _validate(op)
    if isinstance(op, GetOp):
        return m.StoreOp("get", list(op.namespace), op.key, refresh_ttl=op.refresh_ttl)
    if isinstance(op, PutOp):
        return m.StoreOp(
            "put",
            list(op.namespace),
            op.key,
            value=None if op.value is None else json_bytes(dict(op.value), "a store value"),
            index=list(op.index) if isinstance(op.index, list) else None,
            embed=op.index is not False,
            ttl_seconds=None if op.ttl is None else op.ttl * 60.0,
        )
    if isinstance(op, SearchOp):
        return m.StoreOp(
            "search",
            list(op.namespace_prefix),
            filter=json_bytes(op.filter, "a search filter") if op.filter else None,
            query=op.query,
            limit=op.limit,
            offset=op.offset,
            refresh_ttl=op.refresh_ttl,
        )
    if isinstance(op, ListNamespacesOp):
        return m.StoreOp(
            "list_namespaces",
            conditions=[
                m.NamespaceCondition(c.match_type, list(c.path)) for c in op.match_conditions or ()
            ],
            max_depth=op.max_depth,
            limit=op.limit,
            offset=op.offset,
        )
    raise RequestRejected(f"unknown store operation {type(op).__name__}")


def _validate(op: Op) -> None:
    try:
        validate_op_namespace(op)
    except ValueError as exc:
        raise RequestRejected(str(exc)) from None


def _results(ops: Sequence[Op], response: m.StoreBatchResponse) -> list[Result]:
    if len(response.results) != len(ops):
        raise RequestRejected(
            f"the sidecar answered {len(response.results)} results for {len(ops)} store ops"
        )
    out: list[Result] = []
    for op, result in zip(ops, response.results, strict=True):
        if isinstance(op, GetOp):
            out.append(None if result.item is None else _item(result.item))
        elif isinstance(op, SearchOp):
            out.append([_search_item(i) for i in result.items or []])
        elif isinstance(op, ListNamespacesOp):
            out.append([tuple(ns) for ns in result.namespaces or []])
        else:
            out.append(None)
    return out


def _item(item: m.StoreItem) -> Item:
    return Item(
        value=json.loads(item.value),
        key=item.key,
        namespace=tuple(item.namespace),
        created_at=datetime.fromtimestamp(item.created_at, tz=UTC),
        updated_at=datetime.fromtimestamp(item.updated_at, tz=UTC),
    )


def _search_item(item: m.StoreItem) -> SearchItem:
    return SearchItem(
        namespace=tuple(item.namespace),
        key=item.key,
        value=json.loads(item.value),
        created_at=datetime.fromtimestamp(item.created_at, tz=UTC),
        updated_at=datetime.fromtimestamp(item.updated_at, tz=UTC),
        score=item.score,
    )
