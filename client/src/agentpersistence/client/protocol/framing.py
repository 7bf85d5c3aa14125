"""The lean framing used on the hot path, beside HTTP on the same socket.

A connection that starts with :data:`PREFACE` (a zero byte, ``AP`` and the protocol
version) carries length-prefixed msgpack frames; any other first byte is HTTP/1.1.

    request:  u32 length | msgpack [route name, deadline in ms, body(, request id)]
    response: u32 length | msgpack [status, body]

The request id (a string of 1 to 128 characters) is optional: the client sends one with
every mutating request, the same on each retry of a call, so the sidecar can answer a
retry with the reply it already gave instead of applying the request twice (the sidecar's
``outcomes`` module). Three-element frames, from clients that predate it, are served as
before.

``status`` is the HTTP status the same request would get over HTTP, and an error body is
the same ``{"code", "message"}`` map, so both framings share one error mapping.
"""

from __future__ import annotations

import struct
from typing import Any

import ormsgpack

from .errors import RequestRejected
from .routes import PROTOCOL_VERSION

MAGIC = b"\x00AP"
PREFACE = MAGIC + bytes([PROTOCOL_VERSION])
HEADER = struct.Struct(">I")
MAX_REQUEST_ID = 128
"""Longest request id accepted, in characters (the client sends 32)."""


def pack(obj: Any) -> bytes:
    return ormsgpack.packb(obj)


def unpack(data: bytes) -> Any:
    try:
        return ormsgpack.unpackb(data)
    except (ormsgpack.MsgpackDecodeError, ValueError) as exc:
        raise RequestRejected(f"body is not valid msgpack: {exc}") from None


def frame(obj: Any) -> bytes:
    body = ormsgpack.packb(obj)
    return HEADER.pack(len(body)) + body


def request_frame(route: str, deadline_ms: int, body: Any, request_id: str | None = None) -> bytes:
    if request_id is None:
        return frame([route, deadline_ms, body])
    return frame([route, deadline_ms, body, request_id])


def parse_request(payload: bytes) -> tuple[str, int, Any, str | None]:
    """``(route, deadline in ms, body, request id or None)`` of a request frame."""
    obj = unpack(payload)
    if (
        not isinstance(obj, list)
        or not 3 <= len(obj) <= 4
        or not isinstance(obj[0], str)
        or type(obj[1]) is not int
    ):
        raise RequestRejected(
            "frame must be [route name, deadline in ms, body], optionally followed by a request id"
        )
    if len(obj) == 3:
        return obj[0], obj[1], obj[2], None
    return obj[0], obj[1], obj[2], check_request_id(obj[3])


def check_request_id(request_id: object) -> str | None:
    """A request id as sent (frame element or HTTP header), or a typed refusal."""
    if request_id is None or (
        isinstance(request_id, str) and 0 < len(request_id) <= MAX_REQUEST_ID
    ):
        return request_id
    raise RequestRejected(
        f"a request id must be a string of 1 to {MAX_REQUEST_ID} characters, or be left out"
    )


def parse_response(payload: bytes) -> tuple[int, Any]:
    obj = ormsgpack.unpackb(payload)
    if not isinstance(obj, list) or len(obj) != 2 or type(obj[0]) is not int:
        raise ValueError("response frame must be [status, body]")
    return obj[0], obj[1]
