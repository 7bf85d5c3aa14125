"""The aiohttp application: every protocol route over HTTP, plus health and metrics.

HTTP shares the unix socket with the lean framing (see :mod:`.server`): curl, probes and
debugging use it, and every error has the same typed body as on the hot path. A second,
smaller app serves only health and metrics on an optional TCP port, for kubelet probes
and Prometheus; checkpoint data never leaves the unix socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentpersistence.client.protocol import errors, framing
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.routes import (
    CONTENT_TYPE,
    IDEMPOTENCY_HEADER,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ROUTES,
)

from . import deadlines
from .backends.base import Backend
from .dispatch import Dispatcher
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .peers import peer_of
from .server import ServerSettings, response_too_large

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
METRICS = web.AppKey("metrics", Metrics)
BACKENDS = web.AppKey("backends", list[Backend])
MAX_BODY = web.AppKey("max_body", int)
MAX_RESPONSE = web.AppKey("max_response", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


HEALTH_TIMEOUT_S = 1.5
"""Longest a backend's health check may take: inside the 2 s timeout of the readiness probe
the operator injects, so a backend that does not answer is reported down, with a reason,
instead of the probe timing out."""


async def readiness(backends: list[Backend]) -> m.ReadyResponse:
    """Ask every backend for a live health check, all at once, each bounded in time."""
    health = list(await asyncio.gather(*(_health(backend) for backend in backends)))
    return m.ReadyResponse(all(h.ok for h in health), health)


async def _health(backend: Backend) -> m.BackendHealth:
    deadlines.begin(HEALTH_TIMEOUT_S)  # its own task: AWS retries stop in time to say why
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            return await backend.health()
    except TimeoutError:
        late = f"no answer within {HEALTH_TIMEOUT_S:g}s"
        return m.BackendHealth(backend.block, backend.name, False, late)


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
        request_id = framing.check_request_id(request.headers.get(IDEMPOTENCY_HEADER))
    except errors.SidecarError as exc:
        return _typed(exc)
    peer = None if request_id is None or request.transport is None else peer_of(request.transport)
    status, result = await request.app[DISPATCHER].dispatch(
        name, body, None, request_id=request_id, peer=peer
    )
    payload = framing.pack(result)
    if len(payload) > request.app[MAX_RESPONSE]:
        return _typed(response_too_large(len(payload), request.app[MAX_RESPONSE]))
    return web.Response(status=status, body=payload, content_type=CONTENT_TYPE)


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
    dispatcher: Dispatcher,
    metrics: Metrics,
    backends: list[Backend],
    max_body: int,
    max_response: int = ServerSettings.max_response_bytes,
) -> web.Application:
    app = web.Application(client_max_size=max_body, middlewares=[_errors])
    app[DISPATCHER], app[METRICS], app[BACKENDS], app[MAX_BODY] = (
        dispatcher,
        metrics,
        backends,
        max_body,
    )
    app[MAX_RESPONSE] = max_response
    _probe_routes(app)
    for route in ROUTES.values():
        app.router.add_post(route.path, _protocol_route(route.name))
    return app


def build_probe_app(metrics: Metrics, backends: list[Backend]) -> web.Application:
    app = web.Application()
    app[METRICS], app[BACKENDS] = metrics, backends
    _probe_routes(app)
    return app
