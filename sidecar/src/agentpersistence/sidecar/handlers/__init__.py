"""Route handlers: thin functions from a decoded request to a backend call and a response.

:func:`build_routes` gives the table the dispatcher serves; a route whose block is not
configured is absent from it and answers ``not_configured``.
"""

from __future__ import annotations

from ..backends.base import CacheBackend, CheckpointBackend, StoreBackend
from ..embeddings import BatchEmbedder
from .base import RouteTable
from .checkpoint import checkpoint_routes
from .store import cache_routes, store_routes


def build_routes(
    checkpointer: CheckpointBackend | None,
    store: StoreBackend | None = None,
    cache: CacheBackend | None = None,
    embedder: BatchEmbedder | None = None,
) -> RouteTable:
    table: RouteTable = {}
    if checkpointer is not None:
        table.update(checkpoint_routes(checkpointer))
    if store is not None:
        table.update(store_routes(store, embedder))
    if cache is not None:
        table.update(cache_routes(cache))
    return table
