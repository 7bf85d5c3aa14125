"""Transports carry one request to the sidecar and bring back its response.

:class:`SocketTransport` speaks the lean framing over a unix socket. Sync and async calls
share one pool of plain sockets: a call takes one, sets its blocking mode for the API it
serves, and gives it back once a whole response is read, so no socket is tied to an
event loop that may be gone by the next call.

A call whose connection fails — the socket is missing or refuses, or the connection
closes before the whole reply is read — is retried on a fresh connection until its
deadline; then :class:`SidecarUnavailable` is raised. The first attempt may have been
applied, so a mutating call (``routes.MUTATING``) carries a request id, made once per call
and sent again with each retry: the sidecar answers a retry of a request it has completed
with the reply it gave, and holds one that arrives while the first attempt still runs
until that attempt's reply, so a retried put never overwrites a newer value another
client wrote in between. That memory is the sidecar process's: a retry that reaches a
restarted sidecar is applied again. A stopping sidecar closes its connections at request
boundaries and never reads a request it will not answer (see the sidecar's ``server``
module), so such a failure is safe to retry. A pooled connection that fails means the
sidecar it led to is gone: the other idle ones are dropped with it and the call is retried
at once on a new connection. Replies, typed errors included, are never retried: the
sidecar answered.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time
import weakref
from typing import Any, Protocol, TypeVar

from .protocol import framing
from .protocol.errors import (
    DeadlineExceeded,
    ProtocolMismatch,
    RequestRejected,
    SidecarError,
    SidecarUnavailable,
    error_for,
)
from .protocol.messages import StoreBatchRequest, decode
from .protocol.routes import MUTATING, Route

Req = TypeVar("Req")
Resp = TypeVar("Resp")

DEFAULT_SOCKET = "/var/run/agentpersistence/sidecar.sock"
SOCKET_ENV = "AGENTPERSISTENCE_SOCKET"

_BACKOFF_FIRST = 0.01
_BACKOFF_MAX = 0.25
_RECV_CHUNK = 65536
_HEADER = framing.HEADER


def resolve_socket_path(socket_path: str | os.PathLike[str] | None) -> str:
    if socket_path is not None:
        return os.fspath(socket_path)
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


class Transport(Protocol):
    """What the client adapters need: one call, sync or async, bounded by a timeout."""

    def call(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp: ...

    async def acall(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp: ...

    def close(self) -> None: ...


class _Retry(Exception):
    """The connection failed before a reply; the call may be tried again on a new one.
    ``pooled``: the connection came from the pool (its sidecar has closed or gone)."""

    def __init__(self, *, pooled: bool) -> None:
        super().__init__()
        self.pooled = pooled


def _result(route: Route[Req, Resp], status: int, body: Any) -> Resp:
    if status == 200:
        return decode(route.response, body)
    raise error_for(status, body)


class _RequestIds:
    """Request ids unique across processes: a random prefix (drawn again in a forked child,
    which would otherwise repeat its parent's ids) and a counter."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


_IDS = _RequestIds()


def _request_id(route: Route[Any, Any], request: object) -> str | None:
    """An id for a call that changes state (a store batch only if it puts or deletes)."""
    if route.name not in MUTATING:
        return None
    if isinstance(request, StoreBatchRequest) and all(op.op != "put" for op in request.ops):
        return None
    return _IDS.next()


_OLD_FRAME_REFUSAL = "frame must be [route name, deadline in ms, body]"
"""How a sidecar that predates request ids refuses a frame carrying one, before applying
anything: the call is sent again without the id."""


def _refuses_ids(status: int, body: Any) -> bool:
    return (
        status == RequestRejected.status
        and isinstance(body, dict)
        and body.get("message") == _OLD_FRAME_REFUSAL
    )


def _deadline_ms(deadline: float) -> int:
    return max(1, int((deadline - time.monotonic()) * 1000))


class _Conn:
    """A pooled socket and the kernel send/receive timeout set on it (sync pool only)."""

    __slots__ = ("sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.timeout: float | None = None

    def bound(self, remaining: float) -> None:
        """Let blocking I/O wait at most about ``remaining`` seconds.

        The kernel enforces it (SO_RCVTIMEO/SO_SNDTIMEO), so a call costs no extra poll;
        it is reset only when the remaining time has dropped by more than a tenth.
        """
        if self.timeout is not None and 0.9 * self.timeout <= remaining <= self.timeout:
            return
        remaining = max(remaining, 0.001)
        seconds = int(remaining)
        value = struct.pack("ll", seconds, int((remaining - seconds) * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        self.timeout = remaining


class SocketTransport:
    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[_Conn] = []
        self._aidle: list[socket.socket] = []
        self.send_ids = True
        """False once the sidecar has refused a request id: one that predates them, whose
        calls are then sent as it reads them (and retried without deduplication)."""
        _ALL.add(self)

    # --- sync ----------------------------------------------------------------------------

    def call(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        deadline = time.monotonic() + timeout
        request_id = _request_id(route, request)
        backoff = _BACKOFF_FIRST
        last: BaseException | None = None
        while True:
            try:
                sent_id = request_id if self.send_ids else None
                status, body = self._exchange(route.name, request, deadline, sent_id)
                if sent_id is not None and _refuses_ids(status, body):
                    self.send_ids = False
                    continue
                return _result(route, status, body)
            except _Retry as exc:
                last = exc.__cause__
                if exc.pooled:
                    self._drop_idle()
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unavailable(timeout, last)
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _exchange(
        self, route: str, request: object, deadline: float, request_id: str | None
    ) -> tuple[int, Any]:
        fresh = not self._idle
        conn = self._connect_sync(deadline) if fresh else self._idle.pop()
        keep = False
        try:
            conn.bound(deadline - time.monotonic())
            out = framing.request_frame(route, _deadline_ms(deadline), request, request_id)
            conn.sock.sendall(framing.PREFACE + out if fresh else out)
            status, body = framing.parse_response(_recv_frame(conn.sock))
            keep = status != ProtocolMismatch.status
            return status, body
        except (TimeoutError, BlockingIOError):
            raise self._late(fresh=False) from None
        except (OSError, EOFError) as exc:
            raise _Retry(pooled=not fresh) from exc
        finally:
            if keep:
                self._idle.append(conn)
            else:
                conn.sock.close()

    def _connect_sync(self, deadline: float) -> _Conn:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(self.path)
            sock.settimeout(None)  # blocking from now on, bounded by _Conn.bound
        except TimeoutError:
            sock.close()
            raise self._late(fresh=True) from None
        except OSError as exc:
            sock.close()
            raise _Retry(pooled=False) from exc
        return _Conn(sock)

    # --- async ---------------------------------------------------------------------------

    async def acall(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        deadline = time.monotonic() + timeout
        request_id = _request_id(route, request)
        backoff = _BACKOFF_FIRST
        last: BaseException | None = None
        while True:
            try:
                sent_id = request_id if self.send_ids else None
                status, body = await self._aexchange(route.name, request, deadline, sent_id)
                if sent_id is not None and _refuses_ids(status, body):
                    self.send_ids = False
                    continue
                return _result(route, status, body)
            except _Retry as exc:
                last = exc.__cause__
                if exc.pooled:
                    self._drop_aidle()
                    continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unavailable(timeout, last)
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _aexchange(
        self, route: str, request: object, deadline: float, request_id: str | None
    ) -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        fresh = not self._aidle
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) if fresh else self._aidle.pop()
        keep = False
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                if fresh:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, self.path)
                out = framing.request_frame(route, _deadline_ms(deadline), request, request_id)
                await loop.sock_sendall(sock, framing.PREFACE + out if fresh else out)
                status, body = framing.parse_response(await _arecv_frame(loop, sock))
            keep = status != ProtocolMismatch.status
            return status, body
        except TimeoutError:
            raise self._late(fresh) from None
        except (OSError, EOFError) as exc:
            raise _Retry(pooled=not fresh) from exc
        finally:
            if keep:
                self._aidle.append(sock)
            else:
                sock.close()

    # --- the pools -----------------------------------------------------------------------

    def _late(self, fresh: bool) -> DeadlineExceeded:
        if fresh:
            return DeadlineExceeded(f"connecting to the sidecar at {self.path} timed out")
        return DeadlineExceeded(f"no answer from the sidecar at {self.path} in time")

    def _unavailable(self, timeout: float, cause: BaseException | None) -> SidecarError:
        reason = f": {cause}" if cause else ""
        return SidecarUnavailable(
            f"cannot reach the sidecar at {self.path} within {timeout:g}s{reason}"
        )

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()

    def _drop_aidle(self) -> None:
        aidle, self._aidle = self._aidle, []
        for sock in aidle:
            sock.close()

    def close(self) -> None:
        self._drop_idle()
        self._drop_aidle()


_ALL: weakref.WeakSet[SocketTransport] = weakref.WeakSet()


def _after_fork() -> None:
    """A forked child must not share its parent's connections (drop its copies) nor repeat
    its request ids."""
    _IDS.renew()
    for transport in list(_ALL):
        transport.close()


os.register_at_fork(after_in_child=_after_fork)


def _recv_frame(sock: socket.socket) -> bytes:
    first = sock.recv(_RECV_CHUNK)
    frame = _split_frame(first)
    if frame is not None:
        return frame
    data = bytearray(first)
    while (need := _needed(data)) > 0:
        more = sock.recv(min(need, _RECV_CHUNK))
        if not more:
            raise EOFError("sidecar closed the connection")
        data += more
    return bytes(data[_HEADER.size :])


async def _arecv_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    first = await loop.sock_recv(sock, _RECV_CHUNK)
    frame = _split_frame(first)
    if frame is not None:
        return frame
    data = bytearray(first)
    while (need := _needed(data)) > 0:
        more = await loop.sock_recv(sock, min(need, _RECV_CHUNK))
        if not more:
            raise EOFError("sidecar closed the connection")
        data += more
    return bytes(data[_HEADER.size :])


def _needed(data: bytearray) -> int:
    """How many more bytes complete the frame begun in ``data`` (the header counts)."""
    if not data:
        raise EOFError("sidecar closed the connection")
    if len(data) < _HEADER.size:
        return _HEADER.size - len(data)
    length: int = _HEADER.unpack_from(data)[0]
    return _HEADER.size + length - len(data)


def _split_frame(buf: bytes) -> bytes | None:
    """The frame's payload if ``buf`` holds exactly all of it, else None. The client sends
    one request at a time per connection, so nothing can follow the response."""
    if len(buf) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack_from(buf)
    end = _HEADER.size + length
    return buf[_HEADER.size : end] if len(buf) >= end else None
