"""One request in, one ``(status, body)`` out: the seam both framings and the in-process
transport share, and the one place where exceptions become protocol errors.

A mutating request that carries a request id is applied at most once per id: a retry is
answered from :class:`~.outcomes.Outcomes` (a dict lookup, no backend call)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Hashable
from typing import Any

from agentpersistence.client.protocol import errors
from agentpersistence.client.protocol.messages import decode
from agentpersistence.client.protocol.routes import MUTATING, ROUTES, Route

from . import deadlines
from .handlers.base import RouteHandler, RouteTable
from .metrics import Metrics, RouteRecorder
from .outcomes import Outcomes

log = logging.getLogger("agentpersistence.sidecar")

_BLOCK_OF_ROUTE = {"checkpoint": "checkpointer", "store": "store", "cache": "cache"}


class Dispatcher:
    def __init__(
        self,
        table: RouteTable,
        metrics: Metrics,
        max_deadline: float,
        outcomes: Outcomes | None = None,
    ) -> None:
        self._entries: dict[str, tuple[Route[Any, Any], RouteHandler, RouteRecorder]] = {
            name: (ROUTES[name], handler, metrics.recorder(name, handler.backend))
            for name, handler in table.items()
        }
        self.max_deadline = max_deadline
        self.routes = frozenset(table)
        self.outcomes = outcomes or Outcomes()

    async def dispatch(
        self,
        name: str,
        body: object,
        deadline_ms: int | None,
        *,
        request_id: str | None = None,
        peer: Hashable = None,
    ) -> tuple[int, Any]:
        """Serve a request in its wire form (a decoded msgpack map), within its deadline."""
        serving = self.serve(name, body, wire=True, request_id=request_id, peer=peer)
        return await self._within(name, serving, deadline_ms)

    async def dispatch_message(
        self, name: str, request: object, deadline_ms: int | None
    ) -> tuple[int, Any]:
        """Serve a request that is already a message object (the in-process transport)."""
        return await self._within(name, self.serve(name, request, wire=False), deadline_ms)

    async def _within(
        self, name: str, serving: Coroutine[Any, Any, tuple[int, Any]], deadline_ms: int | None
    ) -> tuple[int, Any]:
        budget = self.budget(deadline_ms)
        deadlines.begin(budget)
        try:
            async with asyncio.timeout(budget):
                return await serving
        except TimeoutError:
            return self.late(name)

    async def serve(
        self,
        name: str,
        body: object,
        *,
        wire: bool,
        request_id: str | None = None,
        peer: Hashable = None,
        budget: float | None = None,
    ) -> tuple[int, Any]:
        """Serve a request with no deadline of its own: the caller cancels it when its
        :meth:`budget` runs out, and answers :meth:`late`. (The frame server arms a timer
        instead of ``asyncio.timeout``: it is cheaper per request.) A mutating request
        with a ``request_id`` is applied once per ``(peer, route, id)``; read-only routes
        ignore the id. ``budget`` tells retrying backends when to stop (:mod:`.deadlines`)."""
        if budget is not None:
            deadlines.begin(budget)
        if request_id is not None and name in MUTATING:
            return await self.outcomes.once((peer, name, request_id), self._apply, name, body, wire)
        return await self._apply(name, body, wire)

    async def _apply(self, name: str, body: object, wire: bool) -> tuple[int, Any]:
        entry = self._entries.get(name)
        if entry is None:
            return _error(self._missing(name))
        route, handler, recorder = entry
        started = time.perf_counter()
        code = "ok"
        try:
            request = decode(route.request, body) if wire else _check_type(route, body)
            return 200, await handler.call(request)
        except errors.SidecarError as exc:
            code = exc.code
            _log_error(name, exc)
            return _error(exc)
        except asyncio.CancelledError:
            code = errors.DeadlineExceeded.code
            raise
        except Exception:
            log.exception("request failed", extra={"route": name})
            code = errors.SidecarError.code
            return _error(errors.SidecarError(f"{name} failed inside the sidecar"))
        finally:
            recorder.observe(time.perf_counter() - started, code)

    def budget(self, deadline_ms: int | None) -> float:
        """Seconds a request may run: the caller's deadline, capped by the sidecar's."""
        if deadline_ms is None:
            return self.max_deadline
        return min(max(deadline_ms, 1) / 1000.0, self.max_deadline)

    def late(self, name: str) -> tuple[int, Any]:
        """The answer to a request that outlived its deadline."""
        late = errors.DeadlineExceeded(f"{name} did not finish within the caller's deadline")
        _log_error(name, late)
        return _error(late)

    def _missing(self, name: str) -> errors.SidecarError:
        route = ROUTES.get(name)
        if route is None:
            return errors.UnknownRoute(f"no route named {name!r} in protocol version 1")
        block = _BLOCK_OF_ROUTE.get(route.name.split(".")[0], route.name)
        return errors.NotConfigured(f"{name} needs a {block!r} block in the sidecar config")


def _check_type(route: Route[Any, Any], request: object) -> object:
    if not isinstance(request, route.request):
        raise errors.RequestRejected(
            f"{route.name} takes a {route.request.__name__}, got {type(request).__name__}"
        )
    return request


def _error(exc: errors.SidecarError) -> tuple[int, Any]:
    return exc.status, exc.to_wire()


def _log_error(route: str, exc: errors.SidecarError) -> None:
    level = logging.WARNING if exc.status < 500 else logging.ERROR
    log.log(
        level, "request refused", extra={"route": route, "code": exc.code, "error": exc.message}
    )
