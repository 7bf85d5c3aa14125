"""Every backend in-process: the client adapters over a transport that skips the socket.

``InProcessTransport`` runs a :class:`~.service.Sidecar` (backends and dispatcher) on a
private event-loop thread; sync calls block on it, async calls from any loop await it.
Requests and responses stay Python objects, but go through the same dispatcher, error
mapping and metrics as on the socket::

    from agentpersistence.sidecar.inprocess import open_saver

    saver = open_saver({"checkpointer": {"backend": "valkey", "valkey": {"url": "valkey://..."}}})
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol.errors import DeadlineExceeded, error_for
from agentpersistence.client.protocol.routes import Route

from .service import Sidecar
from .settings import SidecarConfig, parse_config

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")


class InProcessTransport:
    def __init__(self, config: SidecarConfig, *, provision: bool = False) -> None:
        self._sidecar = Sidecar(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="agentpersistence-inprocess", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._sidecar.start(provision=provision)).result()
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _dispatch(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        ms = max(1, int(timeout * 1000))
        status, body = await self._sidecar.dispatcher.dispatch_message(route.name, request, ms)
        if status == 200:
            result: Resp = body
            return result
        raise error_for(status, body)

    def call(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        future = self._run(self._dispatch(route, request, timeout))
        try:
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeadlineExceeded(f"{route.name} did not finish within {timeout:g}s") from None

    async def acall(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        return await asyncio.wrap_future(self._run(self._dispatch(route, request, timeout)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._sidecar.close()).result()
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def open_saver(
    config: SidecarConfig | dict[str, Any], *, provision: bool = False, timeout: float = 10.0
) -> SidecarSaver:
    """A ``SidecarSaver`` whose backends run in this process; ``close()`` releases them."""
    parsed = config if isinstance(config, SidecarConfig) else parse_config(config)
    return SidecarSaver(transport=InProcessTransport(parsed, provision=provision), timeout=timeout)
