"""Types shared by the handler modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple


class RouteHandler(NamedTuple):
    backend: str
    """Label of the backend serving the route, for metrics and logs."""
    call: Callable[[Any], Awaitable[Any]]


RouteTable = dict[str, RouteHandler]
