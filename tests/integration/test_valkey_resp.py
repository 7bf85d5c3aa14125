"""The lean RESP2 client of the Valkey backends (``backends/valkey/resp.py``).

The parser on streams cut anywhere; requests and replies byte for byte as valkey-py's; and,
against real servers, what the hot path relies on: concurrent batches sharing one connection
keep their replies apart, a lost server fails the pending batches and the next call connects
again, passwords and databases from the URL, timeouts, unix sockets and TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import random
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import valkey
import valkey.asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from valkey import exceptions as vx

from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.valkey import errors, resp, scripts
from agentpersistence.sidecar.backends.valkey.connection import Connection
from agentpersistence.sidecar.settings import ValkeySettings
from rig.valkey import ValkeyProcess, start_valkey, tls_proxy

PASSWORD = "s3cret"

# --- the parser --------------------------------------------------------------------------

STREAM = (
    b"+OK\r\n"
    b":-42\r\n"
    b"$5\r\nhe\r\no\r\n"  # a bulk string holding CRLF
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b"*-1\r\n"
    b"*0\r\n"
    b"*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*0\r\n$-1\r\n"
    b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    b"*2\r\n$2\r\nid\r\n-ERR inside an array\r\n"
)
EXPECTED: list[Any] = [
    b"OK",
    -42,
    b"he\r\no",
    b"",
    None,
    None,
    [],
    [[1, [b"x"]], [], None],
    vx.NoScriptError("No matching script. Please use EVAL."),
    [b"id", vx.ResponseError("inside an array")],
]


def comparable(value: Any) -> Any:
    """Replies with exceptions as (type, message), so they compare by value."""
    if isinstance(value, Exception):
        return type(value), str(value)
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def feed_in_pieces(stream: bytes, sizes: Iterator[int]) -> list[Any]:
    parser = resp.Parser()
    replies: list[Any] = []
    pos = 0
    while pos < len(stream):
        size = next(sizes)
        replies += parser.feed(stream[pos : pos + size])
        pos += size
    return replies


def test_a_stream_parses_the_same_whole_or_byte_by_byte() -> None:
    whole = resp.Parser().feed(STREAM)
    by_byte = feed_in_pieces(STREAM, iter(lambda: 1, 0))

    assert comparable(whole) == comparable(EXPECTED)
    assert comparable(by_byte) == comparable(EXPECTED)


@pytest.mark.parametrize("seed", range(20))
def test_a_stream_cut_at_random_places_parses_the_same(seed: int) -> None:
    rng = random.Random(seed)
    stream = STREAM * 5

    replies = feed_in_pieces(stream, iter(lambda: rng.randint(1, 40), 0))

    assert comparable(replies) == comparable(EXPECTED * 5)


def test_error_replies_are_valkey_pys_exception_types() -> None:
    replies = resp.Parser().feed(
        b"-NOSCRIPT gone\r\n-WRONGPASS invalid username-password pair\r\n-NOAUTH needed\r\n"
        b"-OOM no memory\r\n-READONLY replica\r\n-LOADING dataset\r\n-WRONGTYPE bad key\r\n"
    )

    assert [type(r) for r in replies] == [
        vx.NoScriptError,
        vx.AuthenticationError,
        vx.AuthenticationError,
        vx.OutOfMemoryError,
        vx.ReadOnlyError,
        vx.BusyLoadingError,
        vx.ResponseError,
    ]
    assert str(replies[-1]) == "WRONGTYPE bad key"  # unknown codes keep their prefix


def test_a_bulk_string_of_several_megabytes_in_socket_sized_pieces() -> None:
    value = bytes(range(256)) * (8 * 4096)  # 8 MiB
    stream = b"*2\r\n$%d\r\n%b\r\n:7\r\n" % (len(value), value)
    parser = resp.Parser()

    replies: list[Any] = []
    for pos in range(0, len(stream), 65536):
        replies += parser.feed(stream[pos : pos + 65536])

    assert len(replies) == 1
    assert replies[0][0] == value
    assert replies[0][1] == 7


def test_a_stream_that_is_not_resp_is_refused() -> None:
    with pytest.raises(vx.InvalidResponse):
        resp.Parser().feed(b"?what\r\n")
    with pytest.raises(vx.InvalidResponse):
        resp.Parser().feed(b"$x\r\n")


# --- requests ----------------------------------------------------------------------------


def test_requests_are_encoded_as_valkey_py_encodes_them() -> None:
    commands: list[resp.Command] = [
        ("EVALSHA", "a" * 40, 1, "key", b"\x00\xff\r\n", "ünï", -3, 2**70, 1.5, 1e-7, ""),
        ("PING",),
        ("SET", b"k", b"v" * 100_000),
    ]
    reference = b"".join(valkey.connection.Connection().pack_commands(commands))

    assert resp.pack(commands) == reference


def test_bool_arguments_are_refused_as_valkey_py_refuses_them() -> None:
    with pytest.raises(vx.DataError):
        resp.pack([("SET", "k", True)])


# --- against a server --------------------------------------------------------------------


async def test_replies_are_valkey_pys_replies_before_its_callbacks(valkey_flushed: str) -> None:
    """Every command the backends batch, answered as valkey-py's parser answers it."""
    commands: list[resp.Command] = [
        ("SET", "s", b"\x00value"),
        ("SET", "t", "x", "PX", 60_000),
        ("MGET", "s", "missing", "t"),
        ("ZADD", "z", 0, "b", 0, "a"),
        ("ZRANGEBYLEX", "z", "-", "+", "LIMIT", 0, 10),
        ("SADD", "set", "m"),
        ("SMEMBERS", "set"),
        ("EXPIRE", "set", 100),
        ("HSET", "h", "f", "v"),
        ("HGETALL", "h"),
        ("EVAL", "return {1, 'two', {3}, redis.status_reply('ok'), false}", 0),
        ("EVAL", "return redis.error_reply('MINE refused')", 0),
        ("EVALSHA", "0" * 40, 0),
        ("INCR", "s"),
        ("ZREM", "z", "a"),
        ("SREM", "set", "m"),
        ("ZREMRANGEBYSCORE", "z", "-inf", 0),
        ("DEL", "s", "t"),
        ("PING",),
    ]
    link = resp.Link(resp.Address.from_url(valkey_flushed), 2.0)
    ours = await link.execute(commands)
    await link.close()
    client = valkey.asyncio.Valkey.from_url(valkey_flushed)
    client.response_callbacks.clear()  # valkey-py's parser alone
    await client.flushall()  # the same commands on the same (empty) server
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        theirs = await pipe.execute(raise_on_error=False)
    await client.aclose()

    assert comparable(ours) == comparable(theirs)
    assert isinstance(ours[12], vx.NoScriptError)


async def test_concurrent_batches_on_one_connection_keep_their_replies_apart(
    valkey_flushed: str, admin: valkey.Valkey
) -> None:
    def connected() -> int:
        return int(cast(dict[str, Any], admin.info("clients"))["connected_clients"])

    before = connected()  # the admin, and whatever other tests' sidecars hold open
    link = resp.Link(resp.Address.from_url(valkey_flushed), 5.0)
    rng = random.Random(7)
    values = [rng.randbytes(rng.choice([0, 10, 5_000, 300_000])) for _ in range(200)]

    async def round_trip(i: int) -> list[Any]:
        commands: list[resp.Command] = [("SET", f"k{i}", values[i]), ("GET", f"k{i}")]
        return await link.execute(commands * (1 + i % 3))

    try:
        replies = await asyncio.gather(*(round_trip(i) for i in range(200)))
        clients = cast(dict[str, Any], admin.info("clients"))["connected_clients"]
    finally:
        await link.close()

    for i, got in enumerate(replies):
        assert got == [b"OK", values[i]] * (1 + i % 3)
    assert clients == before + 1  # the link's one connection


async def test_a_cancelled_caller_leaves_later_batches_matched(
    valkey_flushed: str, admin: valkey.Valkey
) -> None:
    link = resp.Link(resp.Address.from_url(valkey_flushed), 5.0)
    await link.execute([("PING",)])
    try:
        with paused(admin):  # both batches are written before the server answers either
            first = asyncio.ensure_future(link.execute([("INCRBY", "n", 1)]))
            second = asyncio.ensure_future(link.execute([("INCRBY", "n", 10)]))
            await asyncio.sleep(0)
            first.cancel()
        assert await second == [11]  # its own reply, not the cancelled batch's
        assert await link.execute([("GET", "n")]) == [b"11"]
    finally:
        await link.close()
    assert first.cancelled()


async def test_a_large_pipeline_and_a_large_value_round_trip(valkey_flushed: str) -> None:
    link = resp.Link(resp.Address.from_url(valkey_flushed), 5.0)
    value = random.Random(3).randbytes(6 << 20)
    try:
        await link.execute([("SET", "big", value)])
        [got] = await link.execute([("GET", "big")])
        many = await link.execute([("INCR", "n")] * 5000)
    finally:
        await link.close()
    assert got == value
    assert many == list(range(1, 5001))


async def test_the_database_of_the_url_is_selected(valkey_flushed: str) -> None:
    url = valkey_flushed.removesuffix("/0") + "/3"
    link = resp.Link(resp.Address.from_url(url), 2.0)
    try:
        await link.execute([("SET", "where", "db3")])
    finally:
        await link.close()
    other = valkey.Valkey.from_url(url)
    try:
        assert other.get("where") == b"db3"
    finally:
        other.close()


async def test_a_unix_socket_url(tmp_path: Path) -> None:
    socket_path = tmp_path / "valkey.sock"
    args = ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    server = start_valkey(tmp_path / "valkey", extra_args=args)
    link = resp.Link(resp.Address.from_url(f"unix://{socket_path}?db=2"), 2.0)
    try:
        assert await link.execute([("SET", "k", "v"), ("GET", "k")]) == [b"OK", b"v"]
    finally:
        await link.close()
        server.stop()


async def test_a_valkeys_url_speaks_tls_and_checks_the_certificate(
    valkey_flushed: str, tmp_path: Path
) -> None:
    ca_file = write_self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca_file, tmp_path / "key.pem")
    plain = resp.Address.from_url(valkey_flushed)
    async with tls_proxy(context, plain.port) as port:
        trusted = resp.Link(
            resp.Address.from_url(f"valkeys://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}"), 2.0
        )
        try:
            assert await trusted.execute([("SET", "k", "v"), ("GET", "k")]) == [b"OK", b"v"]
        finally:
            await trusted.close()
        untrusted = resp.Link(resp.Address.from_url(f"valkeys://127.0.0.1:{port}/0"), 2.0)
        with pytest.raises(vx.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.execute([("PING",)])


async def test_close_fails_pending_batches_and_later_calls(
    valkey_flushed: str, admin: valkey.Valkey
) -> None:
    link = resp.Link(resp.Address.from_url(valkey_flushed), 5.0)
    await link.execute([("PING",)])
    with paused(admin):
        pending = asyncio.ensure_future(link.execute([("INCR", "n")]))
        await asyncio.sleep(0)
        await link.close()

    with pytest.raises(vx.ConnectionError):
        await pending
    with pytest.raises(vx.ConnectionError):
        await link.execute([("PING",)])


# --- failures, through the backend's Connection -------------------------------------------


async def test_a_server_restarted_mid_use_fails_pending_batches_then_recovers(
    own_server: ValkeyProcess,
) -> None:
    conn = await open_connection(own_server, socket_timeout_seconds=5.0)
    try:
        await conn.run(("SET", "k", "v"))
        with server_client(own_server) as admin, paused(admin):
            in_flight = [asyncio.ensure_future(conn.run(("SET", "k", i))) for i in range(3)]
            await asyncio.sleep(0.05)
            assert not any(task.done() for task in in_flight)
            own_server.restart()

        for task in in_flight:
            with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{own_server.port}"):
                await task
        assert await conn.run(("SET", "k", "again"), ("GET", "k")) == [b"OK", b"again"]
        script = scripts.CACHE_CLEAR  # the restarted server lost the scripts: loaded again
        assert await conn.run_one(("EVALSHA", script.sha, 1, "ap:{c:x:}:keys", "p")) == 0
    finally:
        await conn.close()


async def test_a_server_that_does_not_answer_times_out_then_recovers(
    own_server: ValkeyProcess,
) -> None:
    conn = await open_connection(own_server, socket_timeout_seconds=0.3)
    try:
        await conn.run(("PING",))
        with server_client(own_server) as admin, paused(admin):
            batches = [conn.run(("INCR", "n")), conn.run(("PING",), ("INCR", "n"))]
            failures = await asyncio.gather(*batches, return_exceptions=True)

        assert [type(f) for f in failures] == [BackendUnavailable, BackendUnavailable]
        assert "no reply within 0.3s" in str(failures[0])
        assert await conn.run(("PING",)) == [b"PONG"]  # on a new connection
    finally:
        await conn.close()


async def test_the_password_of_the_url_authenticates_every_connection(
    own_server: ValkeyProcess,
) -> None:
    url = f"valkey://default:{PASSWORD}@127.0.0.1:{own_server.port}/0"
    link = resp.Link(resp.Address.from_url(url), 2.0)
    try:
        assert await link.execute([("PING",)]) == [b"PONG"]
        kill_clients(own_server)
        await wait_until(lambda: not link.connected)
        assert await link.execute([("PING",)]) == [b"PONG"]  # a new connection, authenticated
    finally:
        await link.close()


async def test_a_wrong_or_missing_password_is_a_clear_backend_unavailable(
    own_server: ValkeyProcess,
) -> None:
    where = f"127.0.0.1:{own_server.port}"
    wrong = resp.Link(resp.Address.from_url(f"valkey://:nope@{where}/0"), 2.0)
    with pytest.raises(vx.AuthenticationError) as refused:
        await wrong.execute([("PING",)])
    assert "nope" not in str(errors.translate(refused.value, where))
    assert "refused the credentials" in str(errors.translate(refused.value, where))

    missing = resp.Link(resp.Address.from_url(f"valkey://{where}/0"), 2.0)
    try:
        [reply] = await missing.execute([("PING",)])
    finally:
        await missing.close()
    assert "refused the credentials" in str(errors.translate(reply, where))

    settings = ValkeySettings(url=f"valkey://:nope@{where}/0", socket_timeout_seconds=2.0)
    with pytest.raises(BackendUnavailable, match="refused the credentials"):
        await Connection(settings).open()


async def test_an_unreachable_server_is_backend_unavailable(own_server: ValkeyProcess) -> None:
    conn = await open_connection(own_server, socket_timeout_seconds=1.0)
    try:
        own_server.stop()  # blocks the loop: the connection's end is seen on the next call
        with pytest.raises(BackendUnavailable, match="unreachable: the server closed"):
            await conn.run(("PING",))
        with pytest.raises(BackendUnavailable, match="unreachable: cannot connect"):
            await conn.run(("PING",))
    finally:
        await conn.close()


# --- helpers and fixtures ----------------------------------------------------------------


def url_of(server: ValkeyProcess) -> str:
    return f"valkey://:{PASSWORD}@127.0.0.1:{server.port}/0"


async def open_connection(server: ValkeyProcess, **settings: Any) -> Connection:
    conn = Connection(ValkeySettings(url=url_of(server), **settings), scripts.CACHE)
    await conn.open()
    return conn


def server_client(server: ValkeyProcess) -> valkey.Valkey:
    return valkey.Valkey.from_url(url_of(server))


@contextlib.contextmanager
def paused(client: valkey.Valkey) -> Iterator[None]:
    """Hold other clients' writes until the block ends (``ALL`` would hold the unpause too).

    A held write blocks its connection: what was sent after it waits as well.
    """
    client.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        yield
    finally:
        with contextlib.suppress(valkey.ConnectionError):  # a server restarted meanwhile
            client.execute_command("CLIENT", "UNPAUSE")


def kill_clients(server: ValkeyProcess) -> None:
    with server_client(server) as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds (the loop must run for a socket event to land)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a socket event, no Event to wait for
            await asyncio.sleep(0.005)


def write_self_signed_certificate(directory: Path) -> Path:
    """A certificate for 127.0.0.1 (its own CA) in ``cert.pem``, its key in ``key.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "valkey test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file = directory / "cert.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_file


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A server of this test's own, with a password, that it may stop and restart."""
    server = start_valkey(tmp_path / "valkey", extra_args=["--requirepass", PASSWORD])
    yield server
    server.stop()
