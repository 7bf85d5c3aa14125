"""The HTTP server: route → parse → validate the input → state → validate the output → answer.

A request is routed by the signing service of its SigV4 credential scope (``bedrock-agentcore``
for both AgentCore planes, ``bedrock`` for Bedrock Agent Runtime sessions), then by
``(method, requestUri)``; an unsigned request, or one signed for a service not served, is
refused with a 403 that says so.

:class:`Emulator` is the whole request path without sockets (``answer`` takes the parts of
a request, returns a ``wire.Response``); :func:`make_app` puts it behind aiohttp. A request
its model forbids is refused with a ValidationException naming every problem; an answer
that breaks its own model is a bug, answered as a 500 naming the problems, never sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence

from aiohttp import web
from botocore.model import NoShapeFoundError, OperationModel, ServiceModel, Shape, StructureShape

from . import wire
from .errors import ApiError, invalid
from .model import (
    AGENT_RUNTIME,
    CONTROL_PLANE,
    DATA_PLANE,
    describe,
    load_services,
    signed_routes,
    validate,
)
from .operations import HANDLERS, Handler
from .state import State

__all__ = ["EMULATOR", "MAX_BODY_BYTES", "SERVICES", "Emulator", "make_app"]

log = logging.getLogger("agentpersistence.emulator")

SERVICES = (DATA_PLANE, CONTROL_PLANE, AGENT_RUNTIME)
MAX_BODY_BYTES = 10 * 1024 * 1024  # larger request bodies are refused (ValidationException)
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # how much of a refused body is read before hanging up
CHUNK_BYTES = 64 * 1024
INTERNAL_ERRORS = ("InternalServerException", "ServiceException")


class Emulator:
    """The served operations of the given service models, on one :class:`State`."""

    def __init__(
        self,
        state: State,
        models: Mapping[str, ServiceModel] | None = None,
        handlers: Mapping[tuple[str, str], Handler] = HANDLERS,
    ) -> None:
        self.state = state
        self.models = dict(models) if models is not None else load_services(SERVICES)
        self.handlers = dict(handlers)
        self.routes = signed_routes(
            self.models[service].operation_model(name) for service, name in self.handlers
        )
        namespace = self.models[DATA_PLANE].shape_for("Namespace")
        state.namespace_ok = lambda value: not validate(namespace, value)

    def answer(
        self,
        method: str,
        raw_path: str,
        query: Mapping[str, Sequence[str]],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> tuple[str, wire.Response]:
        """The operation's name and the response; ``body`` is None when it was too large."""
        signed_for = wire.signing_service(headers)
        routes = self.routes.get(signed_for or "")
        if routes is None:
            return "-", _unsigned(signed_for, sorted(self.routes))
        match = routes.match(method, raw_path, query)
        if match is None:
            return "-", _unknown_operation(method, raw_path)
        operation = match.target
        if body is None:
            too_large = f"The request body is larger than {MAX_BODY_BYTES} bytes"
            return operation.name, self._error(operation, invalid(too_large))
        try:
            params = wire.parse_request(operation, match.labels, query, headers, body)
        except wire.CannotParse as error:
            return operation.name, self._error(operation, invalid(str(error), reason="CannotParse"))
        return operation.name, self._call(operation, params)

    def _call(self, operation: OperationModel, params: dict[str, object]) -> wire.Response:
        if operation.input_shape is not None:
            problems = validate(operation.input_shape, params)
            if problems:
                fields = [(p.path, p.constraint) for p in problems]
                return self._error(operation, invalid(describe(problems), fields=fields))
        handler = self.handlers[(operation.service_model.service_name, operation.name)]
        try:
            output = handler(self.state, params)
        except ApiError as error:
            return self._error(operation, error)
        except Exception:
            log.exception("operation failed", extra={"operation": operation.name})
            return self._internal(operation, "The emulator failed on this request (see its log)")
        if operation.output_shape is not None:
            problems = validate(operation.output_shape, output)
            if problems:
                log.error("invalid output", extra={"operation": operation.name})
                return self._internal(
                    operation,
                    "The emulator built a response its model forbids (an emulator bug): "
                    + describe(problems),
                )
        return wire.output_response(operation, output)

    def _error(self, operation: OperationModel, error: ApiError) -> wire.Response:
        shape = _error_shape(operation, error.code)
        if shape is None:
            return self._internal(operation, f"Unmodelled error {error.code}: {error.message}")
        # Members the shape lacks are dropped: one service's ValidationException has
        # ``reason`` and ``fieldList``, another's only ``message``.
        members = shape.members if isinstance(shape, StructureShape) else {}
        fields = {k: v for k, v in error.fields.items() if v is not None and k in members}
        problems = validate(shape, {"message": error.message, **fields})
        if problems and error.code not in INTERNAL_ERRORS:
            return self._internal(operation, f"Invalid {error.code}: {describe(problems)}")
        return wire.error_response(shape, error.message, fields)

    def _internal(self, operation: OperationModel, message: str) -> wire.Response:
        """A 500 under the operation's own name for one (InternalServerException or
        ServiceException, as its error list says)."""
        own = [shape for shape in operation.error_shapes if shape.name in INTERNAL_ERRORS]
        if own:
            shape: Shape | None = min(own, key=lambda s: INTERNAL_ERRORS.index(s.name))
        else:
            shape = _error_shape(operation, INTERNAL_ERRORS[0])
        if shape is None:
            raise AssertionError(f"{operation.service_model.service_name} models no 500 error")
        return wire.error_response(shape, message, {})


def _error_shape(operation: OperationModel, code: str) -> Shape | None:
    for shape in operation.error_shapes:
        if shape.name == code:
            return shape
    try:
        return operation.service_model.shape_for(code)
    except NoShapeFoundError:
        return None


def _unknown_operation(method: str, raw_path: str) -> wire.Response:
    body = json.dumps({"message": f"No operation serves {method} {raw_path}"}).encode()
    headers = {"Content-Type": wire.JSON_TYPE, wire.ERROR_TYPE_HEADER: "UnknownOperationException"}
    return wire.Response(404, body, headers)


def _unsigned(service: str | None, served: Sequence[str]) -> wire.Response:
    """403 for a request the emulator cannot route to a service: unsigned (as AWS answers
    MissingAuthenticationTokenException) or signed for a service it does not serve."""
    names = ", ".join(served)
    if service is None:
        code = "MissingAuthenticationTokenException"
        message = (
            "The request is not SigV4-signed; the emulator routes by the signing service of "
            f"the Authorization header's credential scope (one of: {names}). Send it through "
            "an AWS SDK client with any credentials"
        )
    else:
        code = "InvalidSignatureException"
        message = (
            f"The credential scope names the service {service!r}, which the emulator does not "
            f"serve (it serves: {names})"
        )
    body = json.dumps({"message": message}).encode()
    headers = {"Content-Type": wire.JSON_TYPE, wire.ERROR_TYPE_HEADER: code}
    return wire.Response(403, body, headers)


# --- aiohttp --------------------------------------------------------------------------------

EMULATOR = web.AppKey("emulator", Emulator)


def make_app(emulator: Emulator) -> web.Application:
    app = web.Application()
    app[EMULATOR] = emulator
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def _handle(request: web.Request) -> web.Response:
    started = time.perf_counter()
    body = await _read_body(request)
    query = {key: request.query.getall(key) for key in set(request.query.keys())}
    raw_path = request.raw_path.partition("?")[0]
    operation, response = request.app[EMULATOR].answer(
        request.method, raw_path, query, request.headers, body
    )
    log.info(
        "request",
        extra={
            "operation": operation,
            "status": response.status,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return web.Response(status=response.status, body=response.body, headers=response.headers)


async def _read_body(request: web.Request) -> bytes | None:
    """The body, or None (read and dropped, up to a limit) when it is over the limit."""
    declared = request.content_length
    chunks: list[bytes] = []
    size = 0
    if declared is None or declared <= MAX_BODY_BYTES:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    while size < DRAIN_LIMIT_BYTES:
        chunk = await request.content.read(CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
    return None
