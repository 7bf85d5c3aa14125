"""The unix socket: one listener, two framings, and the sidecar's lifecycle.

The first byte of a connection decides its framing: ``\\x00`` starts the lean frame
protocol of :mod:`agentpersistence.client.protocol.framing` (the client's hot path), any
other byte is HTTP/1.1 handed to aiohttp. Both reach the same :class:`Dispatcher`.

The socket is bound under a temporary name, given mode 0660 and renamed into place once
the backends are started, so its appearance means the sidecar is ready.

On SIGTERM the sidecar drains: the socket is removed and the listener closed (new calls
fail to connect and the client retries them), then every frame connection stops reading,
answers the requests it has already read and closes at that request boundary; a request
the client sends afterwards is never read, so the client sees the connection closed
before a reply and retries it on a new connection (nothing acknowledged is lost, nothing
half-done is answered). Only when the connections are closed (or the grace period is
over, when the rest are aborted without a reply) do the backends close.

Back-pressure: a frame connection holds at most :data:`MAX_QUEUED` requests read ahead of
the one being served, and stops serving (and reading) while its transport holds more than
:data:`WRITE_HIGH_WATER` bytes of replies the client has not read; it resumes when the client
has drained them below :data:`WRITE_LOW_WATER`. A client that never reads its replies thus
costs the sidecar a bounded buffer, never a growing one, and other connections are served
meanwhile. A reply larger than ``max_response_bytes`` is replaced by a ``payload_too_large``
error saying so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web, web_protocol

from agentpersistence.client.protocol import errors, framing
from agentpersistence.client.protocol.routes import CONTENT_TYPE, PROTOCOL_VERSION

from .dispatch import Dispatcher
from .eventloop import Answer, RequestTasks
from .peers import Peer, PeerPolicy, peer_of

log = logging.getLogger("agentpersistence.sidecar")

_HEADER = framing.HEADER

WRITE_HIGH_WATER = 1024 * 1024
"""Bytes of unread replies at which a frame connection stops serving and reading."""
WRITE_LOW_WATER = 256 * 1024
"""Bytes of unread replies below which it serves and reads again."""
MAX_QUEUED = 32
"""Requests read ahead of the one being served, past which a connection stops reading."""
LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the sidecar accepts them (the kernel caps it at
``net.core.somaxconn``); past it a client's connect fails with EAGAIN and the client retries."""


@dataclass(frozen=True)
class ServerSettings:
    socket_path: Path
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request accepted, in bytes; larger ones get ``payload_too_large``."""
    max_response_bytes: int = 64 * 1024 * 1024
    """Largest reply sent, in bytes; a larger one is replaced by ``payload_too_large``.
    List pages are cut far below it (``backends.listing.PAGE_BYTES``); only a single record
    whose pending writes outgrew it meets this limit."""
    max_deadline_seconds: float = 60.0
    """Upper bound on a request's run time, whatever deadline the caller sent."""
    shutdown_grace_seconds: float = 20.0
    """How long SIGTERM waits for in-flight requests; connections still busy after it are
    dropped unanswered (the client retries their requests on the next sidecar)."""
    probe_port: int | None = None
    """TCP port for /healthz, /readyz and /metrics (kubelet, Prometheus); None: socket only."""
    peers: PeerPolicy | None = None
    """Who may connect (uid/gid allow-list); None: whoever the socket's mode admits."""


class InFlight:
    """Counts requests being served, so shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


Pending = bytes | Answer
"""A frame's place in a connection's queue: a request to serve, or a refusal already decided
(an oversize frame's), which waits its turn so replies keep the order of requests."""


class Connections:
    """The open frame connections, so shutdown can drain them and wait until they close."""

    def __init__(self) -> None:
        self._open: set[FrameProtocol] = set()
        self._closed = asyncio.Event()
        self._closed.set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._open)

    def add(self, conn: FrameProtocol) -> None:
        self._open.add(conn)
        self._closed.clear()
        if self.draining:
            conn.drain()

    def discard(self, conn: FrameProtocol) -> None:
        self._open.discard(conn)
        if not self._open:
            self._closed.set()

    def drain(self) -> None:
        """Ask every connection to close at its next request boundary."""
        self.draining = True
        for conn in list(self._open):
            conn.drain()

    def abort(self) -> None:
        """Drop the connections still open, unanswered (the grace period is over)."""
        for conn in list(self._open):
            conn.abort()

    async def wait_closed(self) -> None:
        await self._closed.wait()


class FrameProtocol(asyncio.Protocol):
    """Length-prefixed msgpack frames; requests on one connection are answered in order,
    refusals of frames too large to read included."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        max_body: int,
        inflight: InFlight,
        tasks: RequestTasks,
        connections: Connections | None = None,
        max_response: int = ServerSettings.max_response_bytes,
    ) -> None:
        self._dispatcher = dispatcher
        self._connections = connections
        self._draining = False
        self._tasks = tasks
        self._max_body = max_body
        self._max_response = max_response
        self._inflight = inflight
        self._buf = bytearray()
        self._preface_ok = False
        self._skip = 0
        self._queue: collections.deque[Pending] = collections.deque()
        self._busy = False
        self._held = False
        """Serving stopped until the client reads its replies (``busy`` stays set)."""
        self._writes_paused = False
        self._reading_paused = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        assert self._transport is not None
        self._transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        if self._connections is not None:
            self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._connections is not None:
            self._connections.discard(self)

    def drain(self) -> None:
        """Read nothing more; close once the requests already read are answered."""
        self._draining = True
        if self._transport is None:
            return
        with contextlib.suppress(RuntimeError):  # already closing
            self._transport.pause_reading()
        if not self._busy:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_writing(self) -> None:
        self._writes_paused = True
        self._pace_reading()

    def resume_writing(self) -> None:
        self._writes_paused = False
        if self._held:
            self._held = False
            self._serve(self._queue.popleft() if self._queue else None)
        self._pace_reading()

    def _pace_reading(self) -> None:
        """Read only while replies are drained and few requests wait (back-pressure)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._draining:
            return
        stop = self._writes_paused or len(self._queue) >= MAX_QUEUED
        if stop != self._reading_paused:
            self._reading_paused = stop
            if stop:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # left unread: the client sees the connection close and retries
        buf = self._buf
        buf += data
        if not self._preface_ok and not self._read_preface():
            return
        while True:
            if self._skip:
                dropped = min(self._skip, len(buf))
                del buf[:dropped]
                self._skip -= dropped
                if self._skip:
                    return
            if len(buf) < _HEADER.size:
                return
            (length,) = _HEADER.unpack_from(buf)
            if length > self._max_body:
                del buf[: _HEADER.size]
                self._skip = length
                exc = errors.PayloadTooLarge(
                    f"request frame is over the {self._max_body}-byte limit"
                )
                self._submit((exc.status, exc.to_wire()))
                continue
            end = _HEADER.size + length
            if len(buf) < end:
                return
            payload = bytes(buf[_HEADER.size : end])
            del buf[:end]
            self._submit(payload)
            self._pace_reading()

    def _read_preface(self) -> bool:
        if len(self._buf) < len(framing.PREFACE):
            return False
        preface = bytes(self._buf[: len(framing.PREFACE)])
        del self._buf[: len(framing.PREFACE)]
        if preface[:3] != framing.MAGIC or preface[3] != PROTOCOL_VERSION:
            exc = errors.ProtocolMismatch(
                f"the sidecar speaks protocol {PROTOCOL_VERSION}; "
                f"the client's connection preface was {preface!r}"
            )
            self._respond(exc.status, exc.to_wire())
            if self._transport is not None:
                self._transport.close()
            return False
        self._preface_ok = True
        return True

    def _submit(self, pending: Pending) -> None:
        if self._busy:
            self._queue.append(pending)
        else:
            self._serve(pending)

    def _serve(self, pending: Pending | None) -> None:
        """Answer ``pending`` and then the queued requests, until one has to wait."""
        while pending is not None:
            if self._writes_paused:  # resume_writing serves it once the client reads
                self._queue.appendleft(pending)
                self._busy = self._held = True
                return
            if isinstance(pending, tuple):
                self._respond(*pending)
            elif self._start(pending):
                self._busy = True
                return
            pending = self._queue.popleft() if self._queue else None
        self._busy = False
        if self._draining and self._transport is not None:
            self._transport.close()  # a request boundary: written replies are flushed first

    @functools.cached_property
    def _peer(self) -> Peer | None:
        """The connecting process, which the replies remembered for retries are keyed by."""
        return None if self._transport is None else peer_of(self._transport)

    def _start(self, payload: bytes) -> bool:
        """Answer one request, or start its task and a timer for its deadline; True if
        the answer has to wait for the task."""
        try:
            route, deadline_ms, body, request_id = framing.parse_request(payload)
        except errors.SidecarError as exc:
            self._respond(exc.status, exc.to_wire())
            return False
        peer = None if request_id is None else self._peer
        budget = self._dispatcher.budget(deadline_ms)
        serving = self._dispatcher.serve(
            route, body, wire=True, request_id=request_id, peer=peer, budget=budget
        )
        task = self._tasks.start(serving)
        if task.done():  # answered during its eager start
            self._respond(*self._outcome(route, task))
            return False
        timer = task.get_loop().call_later(budget, task.cancel)
        self._inflight.enter()
        task.add_done_callback(functools.partial(self._finished, route, timer))
        return True

    def _finished(self, route: str, timer: asyncio.TimerHandle, task: asyncio.Task[Answer]) -> None:
        timer.cancel()
        self._inflight.leave()
        self._respond(*self._outcome(route, task))
        self._serve(self._queue.popleft() if self._queue else None)
        self._pace_reading()

    def _outcome(self, route: str, task: asyncio.Task[Answer]) -> Answer:
        return self._dispatcher.late(route) if task.cancelled() else task.result()

    def _respond(self, status: int, body: Any) -> None:
        if self._transport is not None and not self._transport.is_closing():
            reply = framing.frame([status, body])
            if len(reply) - _HEADER.size > self._max_response:
                exc = response_too_large(len(reply) - _HEADER.size, self._max_response)
                reply = framing.frame([exc.status, exc.to_wire()])
            self._transport.write(reply)


def response_too_large(size: int, limit: int) -> errors.PayloadTooLarge:
    """The error that replaces a reply over the response limit."""
    return errors.PayloadTooLarge(
        f"the reply is {size} bytes, over the sidecar's {limit}-byte response limit "
        "(--max-response-bytes); prune the checkpoint's pending writes or raise the limit"
    )


class TypedHTTPErrors(web_protocol.RequestHandler):
    """aiohttp's HTTP/1.1 protocol, answering what it cannot parse (a garbled request line,
    bad headers) with the typed ``{"code", "message"}`` body of every other refusal instead
    of aiohttp's plain text; the connection is closed after it."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        kind = errors.PayloadTooLarge if status == 413 else errors.RequestRejected
        refusal = kind(f"not an HTTP/1.1 request the sidecar can read: {message or exc}")
        log.warning("refused an unreadable HTTP request", extra={"error": type(exc).__name__})
        response = web.Response(
            status=refusal.status, body=framing.pack(refusal.to_wire()), content_type=CONTENT_TYPE
        )
        response.force_close()
        return response


class _Sniffer(asyncio.Protocol):
    """Checks who connected, reads the first byte of a connection and hands it to the
    framing it announces (or answers a refused peer in that framing and closes)."""

    def __init__(
        self,
        frames: Callable[[], FrameProtocol],
        http: Callable[[], asyncio.Protocol],
        peers: PeerPolicy | None,
    ) -> None:
        self._frames = frames
        self._http = http
        self._peers = peers
        self._refusal: errors.PeerNotAllowed | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._peers is None:
            return
        peer = peer_of(transport)
        if peer is not None and not self._peers.admits(peer):
            self._refusal = errors.PeerNotAllowed(
                f"uid {peer.uid} gid {peer.gid} may not use this sidecar; it allows "
                f"{self._peers.describe()}"
            )
            log.warning(
                "refused a connection",
                extra={"pid": peer.pid, "uid": peer.uid, "gid": peer.gid},
            )

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._refusal is not None:
            self._refuse(self._refusal, frames=data[:1] == b"\x00")
            return
        protocol: asyncio.Protocol = self._frames() if data[:1] == b"\x00" else self._http()
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(data)

    def _refuse(self, refusal: errors.SidecarError, *, frames: bool) -> None:
        assert self._transport is not None
        body = framing.pack(refusal.to_wire())
        if frames:
            self._transport.write(framing.frame([refusal.status, refusal.to_wire()]))
        else:
            head = (
                f"HTTP/1.1 {refusal.status} Forbidden\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            self._transport.write(head.encode() + body)
        self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def bind_socket(
    path: Path, factory: Callable[[], asyncio.Protocol]
) -> asyncio.AbstractServer:
    """Listen on ``path`` with mode 0660; the path appears only once listening."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    server = await asyncio.get_running_loop().create_unix_server(
        factory, path=str(staging), backlog=LISTEN_BACKLOG
    )
    os.chmod(staging, 0o660)
    os.replace(staging, path)
    return server


class SocketServer:
    """Both framings on one unix socket, plus the optional TCP probe port."""

    def __init__(
        self,
        settings: ServerSettings,
        dispatcher: Dispatcher,
        app: web.Application,
        probe_app: web.Application | None,
        tasks: RequestTasks,
    ) -> None:
        self.settings = settings
        self._tasks = tasks
        self._dispatcher = dispatcher
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        self._probe_runner = (
            web.AppRunner(probe_app, handle_signals=False, access_log=None) if probe_app else None
        )
        self._inflight = InFlight()
        self._connections = Connections()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        await self._runner.setup()
        http = self._runner.server
        assert http is not None
        loop = asyncio.get_running_loop()

        def typed_http() -> asyncio.Protocol:
            # access_log=None as the runner is built with: no access log.
            return TypedHTTPErrors(http, loop=loop, access_log=None)  # type: ignore[arg-type]

        max_body = self.settings.max_body_bytes
        max_response = self.settings.max_response_bytes

        def frames() -> FrameProtocol:
            return FrameProtocol(
                self._dispatcher,
                max_body,
                self._inflight,
                self._tasks,
                self._connections,
                max_response,
            )

        def factory() -> asyncio.Protocol:
            return _Sniffer(frames, typed_http, self.settings.peers)

        if self._probe_runner is not None:
            await self._probe_runner.setup()
            site = web.TCPSite(self._probe_runner, "0.0.0.0", self.settings.probe_port)
            await site.start()
        self._server = await bind_socket(self.settings.socket_path, factory)

    async def stop(self) -> None:
        """Stop accepting, drain the frame connections (bounded by the grace period), then
        shut HTTP down; the caller closes the backends after this returns."""
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket_path.unlink()
        if self._server is not None:
            self._server.close()
        self._connections.drain()
        try:
            async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                await self._connections.wait_closed()
                await self._inflight.wait_idle()
        except TimeoutError:
            log.warning(
                "in-flight requests outlived the grace period; their connections are dropped",
                extra={"count": self._inflight.count, "connections": len(self._connections)},
            )
            self._connections.abort()
        await self._runner.shutdown()
        await self._runner.cleanup()
        if self._probe_runner is not None:
            await self._probe_runner.cleanup()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
