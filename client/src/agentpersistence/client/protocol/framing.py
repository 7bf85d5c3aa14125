"""The lean framing used on the hot path, beside HTTP on the same socket.

A connection that starts with :data:`PREFACE` (a zero byte, ``AP`` and the protocol
version) carries length-prefixed msgpack frames; any other first byte is HTTP/1.1.

    request:  u32 length | msgpack [route name, deadline in ms, body]
    response: u32 length | msgpack [status, body]

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


def request_frame(route: str, deadline_ms: int, body: Any) -> bytes:
    return frame([route, deadline_ms, body])


def parse_request(payload: bytes) -> tuple[str, int, Any]:
    obj = unpack(payload)
    if (
        not isinstance(obj, list)
        or len(obj) != 3
        or not isinstance(obj[0], str)
        or type(obj[1]) is not int
    ):
        raise RequestRejected("frame must be [route name, deadline in ms, body]")
    return obj[0], obj[1], obj[2]


def parse_response(payload: bytes) -> tuple[int, Any]:
    obj = ormsgpack.unpackb(payload)
    if not isinstance(obj, list) or len(obj) != 2 or type(obj[0]) is not int:
        raise ValueError("response frame must be [status, body]")
    return obj[0], obj[1]
