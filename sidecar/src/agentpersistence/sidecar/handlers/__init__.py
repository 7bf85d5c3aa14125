"""Route handlers: thin functions from a decoded request to a backend call and a response.

:func:`build_routes` gives the table the dispatcher serves; a route whose block is not
configured is absent from it and answers ``not_configured``.
"""

from __future__ import annotations

from ..backends.base import CheckpointBackend
from .base import RouteTable
from .checkpoint import checkpoint_routes


def build_routes(checkpointer: CheckpointBackend | None) -> RouteTable:
    table: RouteTable = {}
    if checkpointer is not None:
        table.update(checkpoint_routes(checkpointer))
    return table
