"""A lean RESP2 client for the hot path: one multiplexed connection to a standalone server.

Why: a round trip (``PING``) costs about 117 µs through valkey-py's asyncio client on these
2-core machines, 38 µs through this one and 31 µs through a bare asyncio ``Protocol`` (uvloop,
loopback). :class:`.connection.Connection` sends its batches (``run``/``run_one``) through a
:class:`Link` when the server is standalone; cluster mode, ``ask``, ``call`` and ``SCRIPT
LOAD`` keep valkey-py (not hot).

The pieces:

- :func:`pack`: a batch as one buffer of RESP arrays, arguments encoded as valkey-py encodes
  them (bytes as they are, str in UTF-8, int and float by ``repr``; bool refused with
  ``DataError``). A command's name goes as given: ``("SCRIPT", "LOAD", ...)``, never
  ``("SCRIPT LOAD", ...)`` (valkey-py splits such names; no caller of ``run`` sends one).
- :class:`Parser`: replies out of a stream fed in arbitrary pieces. Nested arrays are kept
  on a stack between pieces; a piece that ends inside an element waits until the bytes the
  element needs have arrived (one join per element however it was cut, so a large bulk costs
  two copies, not one per piece).
- :class:`Link`: one connection (a :class:`Wire`, an asyncio ``Protocol``), opened lazily
  with ``AUTH`` and ``SELECT``: the login asked of its :mod:`.credentials` source for each
  new connection (by default the URL's user and password), the database from the URL (parsed
  by valkey-py's own ``parse_url``: host, port, ``/db``, user and password, ``valkeys://``
  with valkey-py's TLS context from the ``ssl_*`` query arguments, ``unix://`` paths). A
  batch is one write; replies are matched to batches by order (a FIFO), so concurrent
  callers share the connection (multiplexing): their batches queue on the socket instead of
  waiting for a free pooled connection. Measured here with 8 to 64 concurrent callers:
  50-60k batches/s on one connection, about 6x valkey-py's pool of 64; a second connection
  added under 10%, so there is one (``max_connections`` bounds valkey-py's pool, which
  serves the rest).

**Replies are raw RESP2**, as valkey-py's parser gives them before its response callbacks:
bulk strings as bytes, integers as int, simple strings as bytes, arrays as lists (nested),
nil as None, and error replies as *instances* (not raised) of the exception valkey-py's
``parse_error`` picks (``ResponseError``, ``NoScriptError`` for ``NOSCRIPT``,
``AuthenticationError`` for ``WRONGPASS``/``NOAUTH``, ...), in their place in the batch, as
valkey-py's pipelines with ``raise_on_error=False`` give them. The callers were audited
instead of reproducing valkey-py's callbacks. Of the commands they send through ``run`` and
``run_one`` (``EVALSHA``, ``ZADD``, ``SADD``, ``SREM``, ``ZREM``, ``EXPIRE``, ``SMEMBERS``,
``ZRANGEBYLEX``, ``MGET``, ``SET``, ``DEL``, ``ZREMRANGEBYSCORE``, ``PING``; ``FT._LIST`` in
a test), valkey-py converts only ``PING`` (to True), ``SET`` (True), ``EXPIRE`` (bool) and
``ZADD`` (an int stays an int), and no caller reads those replies; ``SMEMBERS``,
``ZRANGEBYLEX`` and ``MGET`` have no callback in RESP2, ``EVALSHA`` never has one. Commands
whose converted replies a caller reads (``INFO`` to a dict, ``SCRIPT LOAD`` to str,
``FT.INFO``, ``FT.SEARCH``) go through valkey-py (:meth:`.connection.Connection.ask` and
``call``). ``tests/integration/test_valkey_resp.py`` compares the replies with valkey-py's.

**Failures** are valkey-py's exception types, so :func:`.errors.translate` maps them as
before: a refused or lost connection fails every pending batch with ``ConnectionError``, a
batch without its reply after ``timeout`` seconds fails every pending batch with
``TimeoutError`` (the stream can no longer be matched to requests); either way the connection
is dropped and the next call opens a new one. A caller cancelled while waiting leaves its
batch in the FIFO, so its replies are read and dropped and later batches stay matched.
Writes are not flow-controlled: a batch is buffered whole in the transport (batches are
bounded by the requests that build them; a server that stops reading trips the timeout).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from valkey import connection as vc
from valkey import exceptions as vx
from valkey._parsers.base import BaseParser
from valkey.asyncio.connection import ValkeySSLContext

from .credentials import Credentials, Login, Static

Arg = str | bytes | int | float
Command = tuple[Arg, ...]

DEFAULT_HOST, DEFAULT_PORT = "localhost", 6379
"""Where a URL without host or port points (valkey-py's defaults)."""
_TIMER_SLACK_S = 0.001
"""A deadline timer may fire this early (uvloop's timers have millisecond resolution)."""

_CRLF = b"\r\n"
_BULK, _ARRAY, _INTEGER, _SIMPLE, _ERROR = b"$*:+-"


# --- requests ----------------------------------------------------------------------------


def pack(commands: Sequence[Command]) -> bytes:
    """The batch as RESP arrays of bulk strings, in one buffer."""
    parts: list[bytes] = []
    append = parts.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            if type(arg) is bytes:
                data = arg
            elif type(arg) is str:
                data = arg.encode()
            elif type(arg) is int:
                data = b"%d" % arg
            else:
                data = _encode_other(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(_CRLF)
    return b"".join(parts)


def _encode_other(arg: object) -> bytes:
    """Arguments of other types, as valkey-py's ``Encoder`` takes them."""
    if isinstance(arg, bool):
        raise vx.DataError(_refused_type("bool"))
    if isinstance(arg, bytes | bytearray | memoryview):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int | float):
        return repr(arg).encode()
    raise vx.DataError(_refused_type(type(arg).__name__))


def _refused_type(name: str) -> str:
    return f"Invalid input of type: {name!r}. Convert to a bytes, string, int or float first."


# --- replies -----------------------------------------------------------------------------


class Parser:
    """Complete RESP2 replies out of a stream fed in pieces of any size."""

    def __init__(self) -> None:
        self._arrays: list[tuple[list[Any], int]] = []
        """Arrays being filled, innermost last: their items so far and their length."""
        self._pieces: list[bytes] = []
        """The unparsed end of the stream: an element not complete yet, from its first byte."""
        self._have = 0
        self._need = 0
        """Bytes ``_pieces`` must hold before that element can be complete."""

    def feed(self, data: bytes) -> list[Any]:
        """The replies ``data`` completes, in order (each may have begun in earlier pieces).

        Raises ``InvalidResponse`` if the stream is not RESP2: nothing after that is usable.
        """
        if self._pieces:
            self._pieces.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            data = b"".join(self._pieces)
            self._pieces = []
        replies: list[Any] = []
        try:
            pos = self._parse(data, replies)
        except ValueError:  # a length or integer that is not a number
            raise vx.InvalidResponse("Protocol Error: a malformed number") from None
        if pos < len(data):
            self._pieces = [data[pos:]]
            self._have = len(data) - pos
        return replies

    def _parse(self, data: bytes, replies: list[Any]) -> int:
        """Append the replies completed in ``data`` to ``replies``; where parsing stopped.

        One loop over the elements, without calls per element: this is the hot path of
        every reply (a checkpoint read is about a dozen elements).
        """
        arrays = self._arrays
        pos, size = 0, len(data)
        while pos < size:
            end = data.find(_CRLF, pos)
            if end < 0:
                self._need = size - pos + 1
                return pos
            kind = data[pos]
            value: Any
            if kind == _BULK:
                length = int(data[pos + 1 : end])
                if length < 0:
                    value, pos = None, end + 2
                else:
                    stop = end + 2 + length
                    if stop + 2 > size:
                        self._need = stop + 2 - pos
                        return pos
                    value, pos = data[end + 2 : stop], stop + 2
            elif kind == _ARRAY:
                length = int(data[pos + 1 : end])
                pos = end + 2
                if length > 0:
                    arrays.append(([], length))
                    continue
                value = [] if length == 0 else None
            elif kind == _INTEGER:
                value, pos = int(data[pos + 1 : end]), end + 2
            elif kind == _SIMPLE:
                value, pos = data[pos + 1 : end], end + 2
            elif kind == _ERROR:
                value, pos = error(data[pos + 1 : end]), end + 2
            else:
                raise vx.InvalidResponse(f"Protocol Error: {data[pos : pos + 40]!r}")
            while arrays:  # the value completes its array, which may complete its parent...
                items, length = arrays[-1]
                items.append(value)
                if len(items) < length:
                    break
                arrays.pop()
                value = items
            else:  # ...up to a whole reply
                replies.append(value)
        return pos


def error(message: bytes) -> vx.ValkeyError:
    """The exception valkey-py gives for the error reply ``-message`` (not raised)."""
    exc: vx.ValkeyError = BaseParser.parse_error(  # type: ignore[no-untyped-call]
        message.decode("utf-8", "replace")
    )
    return exc


# --- where to connect --------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """Where and as whom to connect, from a Valkey URL."""

    host: str
    port: int
    path: str | None
    """A unix socket's path (``unix://``); host and port are then unused."""
    db: int
    username: str | None
    password: str | None = field(repr=False)
    tls: ssl.SSLContext | None

    @classmethod
    def from_url(cls, url: str) -> Address:
        """The address in ``url``, read by valkey-py's own ``parse_url`` (ValueError if bad)."""
        kwargs: dict[str, Any] = dict(vc.parse_url(url))
        unix = kwargs.get("connection_class") is vc.UnixDomainSocketConnection
        tls = kwargs.get("connection_class") is vc.SSLConnection
        return cls(
            host=kwargs.get("host", DEFAULT_HOST),
            port=int(kwargs.get("port", DEFAULT_PORT)),
            path=kwargs.get("path", "") if unix else None,
            db=int(kwargs.get("db", 0)),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            tls=_tls_context(kwargs) if tls else None,
        )

    def credentials(self) -> Static | None:
        """The URL's user and password, if it has a password."""
        return None if self.password is None else Static(self.username, self.password)

    def handshake(self, login: Login | None) -> list[Command]:
        """What a new connection sends first: ``AUTH`` as ``login``, ``SELECT`` as the URL asks."""
        commands: list[Command] = []
        if login is not None:
            user = (login.username,) if login.username else ()
            commands.append(("AUTH", *user, login.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


def _tls_context(kwargs: dict[str, Any]) -> ssl.SSLContext:
    """valkey-py's TLS context for ``valkeys://``, from the URL's ``ssl_*`` query arguments.

    Unlike valkey-py, the server's hostname is checked unless the URL says
    ``ssl_check_hostname=false``: a certificate valid for another host is refused."""
    context: ssl.SSLContext = ValkeySSLContext(
        keyfile=kwargs.get("ssl_keyfile"),
        certfile=kwargs.get("ssl_certfile"),
        cert_reqs=kwargs.get("ssl_cert_reqs", "required"),
        ca_certs=kwargs.get("ssl_ca_certs"),
        ca_data=kwargs.get("ssl_ca_data"),
        check_hostname=bool(kwargs.get("ssl_check_hostname", True)),
        ciphers=kwargs.get("ssl_ciphers"),
    ).get()
    return context


# --- one connection ----------------------------------------------------------------------


class _Batch:
    """Commands written together, waiting for their replies."""

    __slots__ = ("deadline", "future", "replies", "size")

    def __init__(self, future: asyncio.Future[list[Any]], size: int, deadline: float) -> None:
        self.future = future
        self.size = size
        self.deadline = deadline
        self.replies: list[Any] = []


class Wire(asyncio.Protocol):
    """One connection: each batch written whole, replies handed to the batches in order.

    One timer watches the deadlines: it fires at the oldest pending batch's deadline and,
    if that batch has been answered meanwhile, moves on to the next one's. So a steady
    stream of batches costs one timer per ``timeout`` seconds, not one per batch.
    """

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._parser = Parser()
        self._pending: collections.deque[_Batch] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self.failure: vx.ValkeyError | None = None
        """Why the connection is no longer usable; None while it is."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream transport

    def send(self, payload: bytes, size: int) -> asyncio.Future[list[Any]]:
        """Write a batch of ``size`` commands; the future of their replies."""
        if self.failure is not None or self._transport is None:
            raise vx.ConnectionError(str(self.failure or "the connection is not open"))
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout
        self._pending.append(_Batch(future, size, deadline))
        self._transport.write(payload)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
        return future

    def data_received(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except vx.InvalidResponse as exc:
            self._fail(vx.InvalidResponse, str(exc))
            return
        pending = self._pending
        for reply in replies:
            if not pending:
                self._fail(vx.InvalidResponse, "Protocol Error: a reply to no command")
                return
            batch = pending[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.size:
                pending.popleft()
                if not batch.future.done():  # else its caller was cancelled: drop the replies
                    batch.future.set_result(batch.replies)

    def eof_received(self) -> bool | None:
        """The server closed its end: unusable from now on (the transport closes itself)."""
        self._fail(vx.ConnectionError, "the server closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = f"the connection was lost: {exc}" if exc else "the server closed the connection"
        self._fail(vx.ConnectionError, reason)
        if not self._lost.done():
            self._lost.set_result(None)

    async def close(self) -> None:
        """Drop the connection (pending batches fail) and wait until the socket is closed."""
        self._fail(vx.ConnectionError, "the connection was closed")
        await asyncio.wait([self._lost], timeout=self._timeout)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        deadline = self._pending[0].deadline
        if self._loop.time() + _TIMER_SLACK_S >= deadline:
            self._fail(vx.TimeoutError, f"no reply within {self._timeout:g}s")
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _fail(self, kind: type[vx.ValkeyError], message: str) -> None:
        """Make the connection unusable: fail every pending batch and drop the socket.

        Once a reply is late or garbled, the ones after it cannot be matched to requests.
        """
        if self.failure is None:
            self.failure = kind(message)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, collections.deque()
        for batch in pending:
            if not batch.future.done():
                batch.future.set_exception(kind(message))
        if self._transport is not None:
            self._transport.abort()


# --- the client --------------------------------------------------------------------------


class Link:
    """Batches to one standalone server over one connection, opened again when it fails."""

    def __init__(
        self, address: Address, timeout: float, credentials: Credentials | None = None
    ) -> None:
        self.address = address
        self.timeout = timeout
        """Seconds for connecting, and for each batch's replies."""
        self.credentials = credentials if credentials is not None else address.credentials()
        """Asked for a login by each new connection; None sends no ``AUTH``."""
        self._wire: Wire | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether a connection is open and usable (the next call opens one if not)."""
        return self._wire is not None and self._wire.failure is None

    def execute(self, commands: Sequence[Command]) -> Awaitable[list[Any]]:
        """Send ``commands`` in one write; their replies (error replies as instances).

        A plain function returning the batch's future while the connection is open (the hot
        path: no coroutine of its own), a coroutine that connects first when it is not.
        """
        payload = pack(commands)
        wire = self._wire
        if wire is not None and wire.failure is None:
            return wire.send(payload, len(commands))
        return self._send_reconnected(payload, len(commands))

    async def _send_reconnected(self, payload: bytes, size: int) -> list[Any]:
        wire = await self.open()
        replies: list[Any] = await wire.send(payload, size)
        return replies

    async def open(self) -> Wire:
        """The open connection, connecting (again) if there is none."""
        async with self._opening:
            wire = self._wire
            if wire is not None and wire.failure is None:
                return wire
            self._wire = None
            if wire is not None:
                await wire.close()
            wire = await self._connect()
            if self._closed:
                await wire.close()
                raise vx.ConnectionError("the client was closed")
            self._wire = wire
            return wire

    async def close(self) -> None:
        """Close the connection; calls after this fail."""
        self._closed = True
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.close()

    async def _connect(self) -> Wire:
        if self._closed:
            raise vx.ConnectionError("the client was closed")
        try:
            async with asyncio.timeout(self.timeout):
                wire = await self._dial()
        except TimeoutError:
            raise vx.TimeoutError(f"no connection within {self.timeout:g}s") from None
        except OSError as exc:
            raise vx.ConnectionError(f"cannot connect: {exc}") from None
        try:
            await self._handshake(wire)
        except BaseException:
            await wire.close()
            raise
        return wire

    async def _dial(self) -> Wire:
        loop = asyncio.get_running_loop()
        address = self.address
        if address.path is not None:
            _, wire = await loop.create_unix_connection(self._wire_factory, address.path)
        else:
            _, wire = await loop.create_connection(
                self._wire_factory, address.host, address.port, ssl=address.tls
            )
        return wire

    def _wire_factory(self) -> Wire:
        return Wire(self.timeout)

    async def _handshake(self, wire: Wire) -> None:
        """``AUTH`` and ``SELECT``; raise the first refusal (e.g. ``AuthenticationError``)."""
        login = self.credentials.login() if self.credentials is not None else None
        commands = self.address.handshake(login)
        if not commands:
            return
        for reply in await wire.send(pack(commands), len(commands)):
            if isinstance(reply, Exception):
                raise reply
