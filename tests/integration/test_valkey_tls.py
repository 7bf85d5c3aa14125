"""``valkeys://``: the sidecar verifies the server's certificate *and* its hostname by default.

The Valkey here has no TLS of its own, so a TLS terminator in this process (its certificate
signed by a throw-away CA) forwards to it. A certificate for another host is refused unless
the URL opts out with ``ssl_check_hostname=false``; a certificate for the host dialled works.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.valkey.checkpoint import ValkeyCheckpointBackend
from agentpersistence.sidecar.settings import ValkeySettings
from rig.kube import CertificateAuthority, KeyPair
from rig.valkey import LOOPBACK, ValkeyProcess


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("valkey-tls"))


@contextlib.asynccontextmanager
async def terminator(pair: KeyPair, upstream: ValkeyProcess) -> AsyncIterator[int]:
    """A TLS listener on loopback with ``pair``, forwarding to ``upstream``; its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    pumps: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(LOOPBACK, upstream.port)
        writers.extend((writer, up_writer))
        for task in (pump(reader, up_writer), pump(up_reader, writer)):
            pumps.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(handle, LOOPBACK, 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await server.wait_closed()


Open = Callable[[str], Awaitable[ValkeyCheckpointBackend]]


@pytest_asyncio.fixture
async def backend_for() -> AsyncIterator[Open]:
    opened: list[ValkeyCheckpointBackend] = []

    async def start(url: str) -> ValkeyCheckpointBackend:
        backend = ValkeyCheckpointBackend(ValkeySettings(url=url, key_prefix="tls"))
        opened.append(backend)
        await backend.start()
        return backend

    yield start
    for backend in opened:
        await backend.close()


def url(port: int, ca: Path, *query: str) -> str:
    return "&".join([f"valkeys://{LOOPBACK}:{port}/0?ssl_ca_certs={ca}", *query])


async def test_a_certificate_for_another_host_is_refused_by_default(
    authority: CertificateAuthority, valkey_server: ValkeyProcess, backend_for: Open
) -> None:
    wrong = authority.issue("wrong-host", "wrong.example", hosts=["wrong.example"])
    async with terminator(wrong, valkey_server) as port:
        with pytest.raises(BackendUnavailable, match="certificate is not valid for"):
            await backend_for(url(port, authority.cert_path))
        # The explicit opt-out (a URL query argument) accepts it.
        backend = await backend_for(url(port, authority.cert_path, "ssl_check_hostname=false"))
        assert await backend.get_tuple(m.GetTupleRequest("tls")) is None


async def test_a_certificate_for_the_host_dialled_is_accepted(
    authority: CertificateAuthority, valkey_server: ValkeyProcess, backend_for: Open
) -> None:
    right = authority.issue("loopback", LOOPBACK, hosts=[LOOPBACK])
    async with terminator(right, valkey_server) as port:
        backend = await backend_for(url(port, authority.cert_path))
        assert await backend.get_tuple(m.GetTupleRequest("tls")) is None
