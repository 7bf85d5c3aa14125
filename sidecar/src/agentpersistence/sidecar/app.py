"""The aiohttp application: every protocol route over HTTP, plus health and metrics.

HTTP shares the unix socket with the lean framing (see :mod:`.server`): curl, probes and
debugging use it, and every error has the same typed body as on the hot path. A second,
smaller app serves only health and metrics on an optional TCP port, for kubelet probes
and Prometheus; checkpoint data never leaves the unix socket.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentpersistence.client.protocol import errors, framing
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.routes import (
    CONTENT_TYPE,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ROUTES,
)

from .backends.base import Backend
from .dispatch import Dispatcher
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
METRICS = web.AppKey("metrics", Metrics)
BACKENDS = web.AppKey("backends", list[Backend])
MAX_BODY = web.AppKey("max_body", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def readiness(backends: list[Backend]) -> m.ReadyResponse:
    """Ask every backend for a live health check."""
    health = [await backend.health() for backend in backends]
    return m.ReadyResponse(all(h.ok for h in health), health)


def _typed(exc: errors.SidecarError) -> web.Response:
    return web.Response(
        status=exc.status, body=framing.pack(exc.to_wire()), content_type=CONTENT_TYPE
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The HTTP side's one error mapping: aiohttp's own refusals become typed bodies."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY]
        return _typed(errors.PayloadTooLarge(f"request body is over the {limit}-byte limit"))
    except web.HTTPNotFound:
        return _typed(errors.UnknownRoute(f"no route at {request.path}"))
    except web.HTTPMethodNotAllowed:
        return _typed(errors.RequestRejected(f"{request.method} is not allowed on {request.path}"))


def _protocol_route(name: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        return await _serve_protocol(name, request)

    return handle


async def _serve_protocol(name: str, request: web.Request) -> web.Response:
    version = request.headers.get(PROTOCOL_HEADER)
    if version != str(PROTOCOL_VERSION):
        return _typed(
            errors.ProtocolMismatch(
                f"the sidecar speaks protocol {PROTOCOL_VERSION}, the request says "
                f"{version or 'nothing'} (header {PROTOCOL_HEADER})"
            )
        )
    try:
        body = framing.unpack(await request.read())
    except errors.SidecarError as exc:
        return _typed(exc)
    status, result = await request.app[DISPATCHER].dispatch(name, body, None)
    return web.Response(status=status, body=framing.pack(result), content_type=CONTENT_TYPE)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    ready = await readiness(request.app[BACKENDS])
    body: dict[str, Any] = {
        "ready": ready.ready,
        "backends": [
            {"block": h.block, "backend": h.backend, "ok": h.ok, "message": h.message}
            for h in ready.backends
        ],
    }
    return web.Response(
        status=200 if ready.ready else 503, text=json.dumps(body), content_type="application/json"
    )


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def _probe_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)


def build_app(
    dispatcher: Dispatcher, metrics: Metrics, backends: list[Backend], max_body: int
) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[_errors])
    app[DISPATCHER], app[METRICS], app[BACKENDS], app[MAX_BODY] = (
        dispatcher,
        metrics,
        backends,
        max_body,
    )
    _probe_routes(app)
    for route in ROUTES.values():
        app.router.add_post(route.path, _protocol_route(route.name))
    return app


def build_probe_app(metrics: Metrics, backends: list[Backend]) -> web.Application:
    app = web.Application()
    app[METRICS], app[BACKENDS] = metrics, backends
    _probe_routes(app)
    return app
