"""What every client adapter shares: a transport, a deadline per call, readiness, closing."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from . import _transport
from .protocol import messages as m
from .protocol import routes
from .protocol.errors import SidecarUnavailable

DEFAULT_TIMEOUT = 10.0

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self", bound="SidecarConnection")


class SidecarConnection:
    """Mixin: ``socket_path`` → transport, ``timeout`` → the deadline of each call."""

    timeout: float
    transport: _transport.Transport

    def _connect(
        self,
        socket_path: str | None,
        timeout: float,
        transport: _transport.Transport | None,
    ) -> None:
        self.timeout = timeout
        self.transport = transport or _transport.SocketTransport(
            _transport.resolve_socket_path(socket_path)
        )

    def _call(self, route: routes.Route[Req, Resp], request: Req) -> Resp:
        return self.transport.call(route, request, self.timeout)

    async def _acall(self, route: routes.Route[Req, Resp], request: Req) -> Resp:
        return await self.transport.acall(route, request, self.timeout)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: Self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the sidecar reports ready, or raise ``SidecarUnavailable``."""
        deadline = time.monotonic() + timeout
        while True:
            ready = self._poll_ready(deadline)
            if ready is not None and ready.ready:
                return
            if time.monotonic() >= deadline:
                raise SidecarUnavailable(_not_ready_message(timeout, ready))
            time.sleep(min(0.05, max(deadline - time.monotonic(), 0)))

    async def await_ready(self, timeout: float = 30.0) -> None:
        """Async twin of :meth:`wait_ready`."""
        deadline = time.monotonic() + timeout
        while True:
            ready = await self._apoll_ready(deadline)
            if ready is not None and ready.ready:
                return
            if time.monotonic() >= deadline:
                raise SidecarUnavailable(_not_ready_message(timeout, ready))
            await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0)))

    def _poll_ready(self, deadline: float) -> m.ReadyResponse | None:
        try:
            return self.transport.call(routes.READY, m.Empty(), _left(deadline))
        except SidecarUnavailable:
            return None

    async def _apoll_ready(self, deadline: float) -> m.ReadyResponse | None:
        try:
            return await self.transport.acall(routes.READY, m.Empty(), _left(deadline))
        except SidecarUnavailable:
            return None


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _not_ready_message(timeout: float, ready: m.ReadyResponse | None) -> str:
    if ready is None:
        return f"the sidecar did not answer within {timeout:g}s"
    failing = [f"{b.block}/{b.backend}: {b.message}" for b in ready.backends if not b.ok]
    return f"the sidecar is up but not ready after {timeout:g}s ({'; '.join(failing)})"


def json_bytes(value: Any, what: str) -> bytes:
    """Compact JSON, or a typed error naming what could not be encoded."""
    import json

    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        from .protocol.errors import RequestRejected

        raise RequestRejected(
            f"{what} must be JSON-serializable ({exc}); "
            "keep it to strings, numbers, booleans, lists and dicts"
        ) from None
