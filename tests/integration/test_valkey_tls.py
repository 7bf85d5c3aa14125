"""``valkeys://``: the sidecar verifies the server's certificate *and* its hostname by default.

The Valkey here has no TLS of its own, so a TLS proxy in this process (its certificate
signed by a throw-away CA) forwards to it. A certificate for another host is refused unless
the URL opts out with ``ssl_check_hostname=false``; a certificate for the host dialled works.
"""

from __future__ import annotations

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
from rig.valkey import LOOPBACK, ValkeyProcess, tls_proxy


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("valkey-tls"))


def serving(pair: KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    return context


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
    async with tls_proxy(serving(wrong), valkey_server.port) as port:
        with pytest.raises(BackendUnavailable, match="certificate is not valid for"):
            await backend_for(url(port, authority.cert_path))
        # The explicit opt-out (a URL query argument) accepts it.
        backend = await backend_for(url(port, authority.cert_path, "ssl_check_hostname=false"))
        assert await backend.get_tuple(m.GetTupleRequest("tls")) is None


async def test_a_certificate_for_the_host_dialled_is_accepted(
    authority: CertificateAuthority, valkey_server: ValkeyProcess, backend_for: Open
) -> None:
    right = authority.issue("loopback", LOOPBACK, hosts=[LOOPBACK])
    async with tls_proxy(serving(right), valkey_server.port) as port:
        backend = await backend_for(url(port, authority.cert_path))
        assert await backend.get_tuple(m.GetTupleRequest("tls")) is None
