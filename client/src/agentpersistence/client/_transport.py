"""Transports carry one request to the sidecar and bring back its response.

:class:`SocketTransport` speaks the lean framing over a unix socket, with a pool of
blocking sockets for the sync API and one pool of stream pairs per event loop for the
async API. Every operation of the protocol is idempotent (puts are keyed by id, writes by
``(task_id, idx)``), so a call whose connection fails is retried on a fresh connection
until its deadline; then :class:`SidecarUnavailable` is raised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import weakref
from typing import Any, Protocol, TypeVar

from .protocol import framing
from .protocol.errors import (
    DeadlineExceeded,
    ProtocolMismatch,
    SidecarError,
    SidecarUnavailable,
    error_for,
)
from .protocol.messages import decode
from .protocol.routes import Route

Req = TypeVar("Req")
Resp = TypeVar("Resp")

DEFAULT_SOCKET = "/var/run/agentpersistence/sidecar.sock"
SOCKET_ENV = "AGENTPERSISTENCE_SOCKET"

_BACKOFF_FIRST = 0.01
_BACKOFF_MAX = 0.25
_RECV_CHUNK = 262144
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
    """The connection failed; the call may be tried again on a new one."""


def _result(route: Route[Req, Resp], status: int, body: Any) -> Resp:
    if status == 200:
        return decode(route.response, body)
    raise error_for(status, body)


def _deadline_ms(deadline: float) -> int:
    return max(1, int((deadline - time.monotonic()) * 1000))


class SocketTransport:
    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[socket.socket] = []
        self._aidle: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        ] = weakref.WeakKeyDictionary()
        self._pid = os.getpid()

    # --- sync ----------------------------------------------------------------------------

    def call(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        deadline = time.monotonic() + timeout
        backoff = _BACKOFF_FIRST
        last: BaseException | None = None
        while True:
            try:
                status, body = self._exchange(route.name, request, deadline)
                return _result(route, status, body)
            except _Retry as exc:
                last = exc.__cause__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unavailable(timeout, last)
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _exchange(self, route: str, request: object, deadline: float) -> tuple[int, Any]:
        self._check_fork()
        try:
            sock, fresh = self._idle.pop(), False
        except IndexError:
            sock, fresh = self._connect(deadline), True
        keep = False
        try:
            out = framing.request_frame(route, _deadline_ms(deadline), request)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(framing.PREFACE + out if fresh else out)
            status, body = framing.parse_response(_recv_frame(sock))
            keep = status != ProtocolMismatch.status
            return status, body
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from the sidecar at {self.path} in time") from None
        except (OSError, EOFError) as exc:
            raise _Retry() from exc
        finally:
            if keep:
                self._idle.append(sock)
            else:
                sock.close()

    def _connect(self, deadline: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(self.path)
        except TimeoutError:
            sock.close()
            raise DeadlineExceeded(f"connecting to the sidecar at {self.path} timed out") from None
        except OSError as exc:
            sock.close()
            raise _Retry() from exc
        return sock

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._idle = []
            self._aidle = weakref.WeakKeyDictionary()

    def _unavailable(self, timeout: float, cause: BaseException | None) -> SidecarError:
        reason = f": {cause}" if cause else ""
        return SidecarUnavailable(
            f"cannot reach the sidecar at {self.path} within {timeout:g}s{reason}"
        )

    # --- async ---------------------------------------------------------------------------

    async def acall(self, route: Route[Req, Resp], request: Req, timeout: float) -> Resp:
        deadline = time.monotonic() + timeout
        backoff = _BACKOFF_FIRST
        last: BaseException | None = None
        while True:
            try:
                status, body = await self._aexchange(route.name, request, deadline)
                return _result(route, status, body)
            except _Retry as exc:
                last = exc.__cause__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unavailable(timeout, last)
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _aexchange(self, route: str, request: object, deadline: float) -> tuple[int, Any]:
        self._check_fork()
        pool = self._aidle.setdefault(asyncio.get_running_loop(), [])
        keep = False
        fresh = not pool
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                if fresh:
                    reader, writer = await asyncio.open_unix_connection(self.path)
                else:
                    reader, writer = pool.pop()
        except TimeoutError:
            raise DeadlineExceeded(f"connecting to the sidecar at {self.path} timed out") from None
        except OSError as exc:
            raise _Retry() from exc
        try:
            out = framing.request_frame(route, _deadline_ms(deadline), request)
            writer.write(framing.PREFACE + out if fresh else out)
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                header = await reader.readexactly(_HEADER.size)
                payload = await reader.readexactly(_HEADER.unpack(header)[0])
            status, body = framing.parse_response(payload)
            keep = status != ProtocolMismatch.status
            return status, body
        except TimeoutError:
            raise DeadlineExceeded(f"no answer from the sidecar at {self.path} in time") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise _Retry() from exc
        finally:
            if keep:
                pool.append((reader, writer))
            else:
                writer.close()

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()
        pools, self._aidle = self._aidle, weakref.WeakKeyDictionary()
        for pool in pools.values():
            for _, writer in pool:
                writer.close()


def _loop_deadline(deadline: float) -> float:
    """Convert a ``time.monotonic`` deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


def _recv_frame(sock: socket.socket) -> bytes:
    buf = sock.recv(_RECV_CHUNK)
    if not buf:
        raise EOFError("sidecar closed the connection")
    while len(buf) < _HEADER.size:
        more = sock.recv(_RECV_CHUNK)
        if not more:
            raise EOFError("sidecar closed the connection")
        buf += more
    (length,) = _HEADER.unpack_from(buf)
    end = _HEADER.size + length
    if len(buf) >= end:
        return buf[_HEADER.size : end]
    view = bytearray(buf[_HEADER.size :])
    while len(view) < length:
        more = sock.recv(min(_RECV_CHUNK, length - len(view)))
        if not more:
            raise EOFError("sidecar closed the connection")
        view += more
    return bytes(view)
