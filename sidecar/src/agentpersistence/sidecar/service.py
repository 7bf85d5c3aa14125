"""Assembles the sidecar from its config: backends, route table, dispatcher, servers.

:class:`Sidecar` is also what the in-process transport and the tests build on, so the
socket is only one way in to the same dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol import routes

from . import app as app_module
from . import eventloop
from .backends import cache_backend, checkpoint_backend, store_backend
from .backends.base import Backend
from .dispatch import Dispatcher
from .embeddings import BatchEmbedder, Embedder, build_embedder
from .handlers import build_routes
from .handlers.base import RouteHandler
from .metrics import Metrics
from .server import ServerSettings, SocketServer, install_stop_signals
from .settings import SidecarConfig

log = logging.getLogger("agentpersistence.sidecar")


class Sidecar:
    def __init__(self, config: SidecarConfig, *, max_deadline: float = 60.0) -> None:
        self.config = config
        self.checkpointer = checkpoint_backend(config.checkpointer) if config.checkpointer else None
        self.store = store_backend(config.store) if config.store else None
        self.cache = cache_backend(config.cache) if config.cache else None
        self.backends: list[Backend] = [
            b for b in (self.checkpointer, self.store, self.cache) if b is not None
        ]
        self.embedder = _embedder(config)
        self.metrics = Metrics()
        table = build_routes(
            self.checkpointer,
            self.store,
            self.cache,
            BatchEmbedder(self.embedder, config.store.index)
            if self.embedder and config.store and config.store.index
            else None,
        )
        table[routes.READY.name] = RouteHandler("sidecar", self._ready)
        self.dispatcher = Dispatcher(table, self.metrics, max_deadline)

    async def _ready(self, request: m.Empty) -> m.ReadyResponse:
        return await app_module.readiness(self.backends)

    async def start(self, *, provision: bool = False) -> None:
        started: list[Backend] = []
        try:
            for backend in self.backends:
                await backend.start()
                started.append(backend)
                if provision:
                    await backend.provision()
        except BaseException:
            for backend in reversed(started):
                await backend.close()
            raise

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()
        for backend in reversed(self.backends):
            try:
                await backend.close()
            except Exception:
                log.exception("closing a backend failed", extra={"backend": backend.name})


def _embedder(config: SidecarConfig) -> Embedder | None:
    index = config.store.index if config.store else None
    if index is None or index.embed is None:
        return None
    return build_embedder(index.embed, index.dims)


async def serve(
    config: SidecarConfig, settings: ServerSettings, *, provision: bool = False
) -> None:
    """Run the sidecar until SIGTERM or SIGINT."""
    began = time.perf_counter()
    tasks = eventloop.request_tasks()
    sidecar = Sidecar(config, max_deadline=settings.max_deadline_seconds)
    await sidecar.start(provision=provision)
    try:
        http_app = app_module.build_app(
            sidecar.dispatcher,
            sidecar.metrics,
            sidecar.backends,
            settings.max_body_bytes,
            settings.max_response_bytes,
        )
        probe_app = (
            app_module.build_probe_app(sidecar.metrics, sidecar.backends)
            if settings.probe_port is not None
            else None
        )
        server = SocketServer(settings, sidecar.dispatcher, http_app, probe_app, tasks)
        stop = asyncio.Event()
        install_stop_signals(stop)
        await server.start()
        log.info(
            "ready",
            extra={
                "socket": str(settings.socket_path),
                "backends": [b.name for b in sidecar.backends],
                "python": sys.version.split()[0],
                "loop": eventloop.loop_name(asyncio.get_running_loop()),
                "eager_start": tasks.eager,
                "startup_ms": round((time.perf_counter() - began) * 1000, 1),
            },
        )
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            await server.stop()
    finally:
        await sidecar.close()
        log.info("stopped")
