"""Valkey credentials that never pass through a URL: ``passwordFile`` (with ``usernameFile``),
``iamAuth`` and the ``credentials=`` a caller hands over, on real servers.

Every new connection of both clients (the lean RESP link and valkey-py's pool) asks its
credentials source again, so a rotated password file is used by the next connection. No
password or token appears in a log record, an error message or a repr. ElastiCache's IAM
authentication is stood in for by the rig's TLS proxy, which checks each token's SigV4
signature (:mod:`rig.elasticache`) and logs in to the server with the real password.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import valkey
from botocore.credentials import ReadOnlyCredentials
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from valkey import exceptions as vx

from agentpersistence.client import SidecarSaver
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.valkey import resp
from agentpersistence.sidecar.backends.valkey.checkpoint import ValkeyCheckpointBackend
from agentpersistence.sidecar.backends.valkey.connection import Connection, translate
from agentpersistence.sidecar.backends.valkey.credentials import (
    CredentialsUnavailable,
    PasswordFile,
    Static,
    for_settings,
)
from agentpersistence.sidecar.settings import ValkeySettings
from rig.aws import REGION, local_env
from rig.checkpoints import record
from rig.elasticache import IamGate
from rig.kube import CertificateAuthority
from rig.sidecar import SidecarProcess, valkey_checkpointer
from rig.valkey import LOOPBACK, ValkeyProcess, start_valkey, tls_proxy

PASSWORD = "first-Secret-4711"
ROTATED = "second-Secret-0815"
AGENT, AGENT_PASSWORD = "agent", "agent-Secret-1234"
IAM_USER, IAM_PASSWORD = "iam-user", "iam-Secret-9876"
CACHE = "my-cache"
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "AKIDTESTING", "test-secret-key", "test-session-token"
AWS = ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)

Open = Callable[..., Awaitable[ValkeyCheckpointBackend]]


# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A server of this test's own whose default user needs :data:`PASSWORD`."""
    process = start_valkey(tmp_path / "valkey", extra_args=["--requirepass", PASSWORD])
    yield process
    process.stop()


@pytest.fixture
def server_admin(server: ValkeyProcess) -> Iterator[valkey.Valkey]:
    client = valkey.Valkey(host=LOOPBACK, port=server.port, password=PASSWORD)
    yield client
    client.close()


def add_user(admin: valkey.Valkey, name: str, password: str) -> None:
    """An ACL user allowed everything, logging in with ``password``."""
    admin.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
    )


@pytest.fixture
async def open_backend() -> AsyncIterator[Open]:
    """Start checkpoint backends on settings; all are closed at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(url: str, **settings: Any) -> ValkeyCheckpointBackend:
            config = ValkeySettings(url=url, socket_timeout_seconds=2.0, **settings)
            backend = ValkeyCheckpointBackend(config)
            stack.push_async_callback(backend.close)
            await backend.start()
            return backend

        yield start


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record, down to DEBUG, of every logger."""
    caplog.set_level(logging.DEBUG)
    return caplog


def secret_file(path: Path, text: str) -> Path:
    """``text`` in a file as ``kubectl create secret`` or ``echo`` leave it (newline)."""
    path.write_text(text + "\n")
    return path


async def round_trip(backend: ValkeyCheckpointBackend, thread: str) -> None:
    await backend.put(m.PutRequest(record(thread, 1), None))
    assert await backend.get_tuple(m.GetTupleRequest(thread)) == record(thread, 1)


def assert_never_shown(secret: str, logs: pytest.LogCaptureFixture, *texts: object) -> None:
    """``secret`` in no log record (message, arguments, extra fields) and none of ``texts``."""
    for entry in logs.records:
        assert secret not in entry.getMessage(), entry
        assert secret not in repr(vars(entry)), entry
    for text in texts:
        assert secret not in str(text)
        assert secret not in repr(text)


# --- passwordFile ------------------------------------------------------------------------


async def test_a_password_file_logs_in_and_is_shown_nowhere(
    server: ValkeyProcess, tmp_path: Path, open_backend: Open, logs: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path / "password", PASSWORD)
    backend = await open_backend(server.url, password_file=str(path))
    await round_trip(backend, "t1")
    assert await backend.conn.ask(("PING",)) is True  # valkey-py's pool is logged in too

    conn = backend.conn
    assert_never_shown(PASSWORD, logs, backend.settings, conn.credentials, conn.where)


async def test_a_wrong_password_is_the_credentials_error_and_is_shown_nowhere(
    server: ValkeyProcess, tmp_path: Path, open_backend: Open, logs: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-Secret-0000"
    path = secret_file(tmp_path / "password", wrong)
    with pytest.raises(BackendUnavailable, match="refused the credentials") as refused:
        await open_backend(server.url, password_file=str(path))
    assert_never_shown(wrong, logs, refused.value)

    # The lean link's own handshake (the pool's came first above).
    link = resp.Link(resp.Address.from_url(server.url), 2.0, PasswordFile(path))
    with pytest.raises(vx.AuthenticationError) as again:
        await link.execute([("PING",)])
    await link.close()
    translated = translate(again.value, server.url)
    assert "refused the credentials" in str(translated)
    assert_never_shown(wrong, logs, translated)


async def test_a_rotated_password_is_used_by_new_connections(
    server: ValkeyProcess,
    server_admin: valkey.Valkey,
    tmp_path: Path,
    open_backend: Open,
    logs: pytest.LogCaptureFixture,
) -> None:
    path = secret_file(tmp_path / "password", PASSWORD)
    backend = await open_backend(server.url, password_file=str(path))
    await round_trip(backend, "before")

    server_admin.config_set("requirepass", ROTATED)  # open connections stay logged in
    secret_file(path, ROTATED)  # as the kubelet updates a mounted Secret
    await backend.conn.close()
    await backend.conn.open()
    await round_trip(backend, "after")
    assert await backend.conn.ask(("PING",)) is True

    fresh = await open_backend(server.url, password_file=str(path))
    assert await fresh.get_tuple(m.GetTupleRequest("after")) == record("after", 1)
    old = valkey.Valkey(host=LOOPBACK, port=server.port, password=PASSWORD)
    with pytest.raises(valkey.AuthenticationError):
        old.ping()
    old.close()
    assert_never_shown(ROTATED, logs, fresh.conn.credentials)


async def test_a_username_file_logs_in_as_that_acl_user(
    server: ValkeyProcess, server_admin: valkey.Valkey, tmp_path: Path, open_backend: Open
) -> None:
    add_user(server_admin, AGENT, AGENT_PASSWORD)
    password = secret_file(tmp_path / "password", AGENT_PASSWORD)
    username = secret_file(tmp_path / "username", AGENT)

    backend = await open_backend(
        server.url, password_file=str(password), username_file=str(username)
    )
    await round_trip(backend, "t1")
    assert await backend.conn.run_one(("ACL", "WHOAMI")) == AGENT.encode()  # the lean link
    assert await backend.conn.ask(("ACL", "WHOAMI")) == AGENT.encode()  # valkey-py

    # Without usernameFile, the URL's user (the URL holds no password).
    by_url = await open_backend(
        f"valkey://{AGENT}@{LOOPBACK}:{server.port}/0", password_file=str(password)
    )
    assert await by_url.conn.run_one(("ACL", "WHOAMI")) == AGENT.encode()
    assert await by_url.conn.ask(("ACL", "WHOAMI")) == AGENT.encode()


@pytest.mark.parametrize("setting", ["passwordFile", "usernameFile"])
async def test_a_missing_file_is_a_typed_error_naming_the_setting_and_path(
    server: ValkeyProcess, tmp_path: Path, open_backend: Open, setting: str
) -> None:
    missing = tmp_path / "mounted" / "missing"
    files: dict[str, Any] = {"password_file": str(secret_file(tmp_path / "password", PASSWORD))}
    files["password_file" if setting == "passwordFile" else "username_file"] = str(missing)

    with pytest.raises(CredentialsUnavailable) as caught:  # valkey-py's pool asked first
        await open_backend(server.url, **files)
    credentials = ValkeySettings(url=server.url, **files)
    link = resp.Link(resp.Address.from_url(server.url), 2.0, for_settings(credentials))
    with pytest.raises(CredentialsUnavailable) as by_link:  # the lean link's handshake
        await link.execute([("PING",)])
    await link.close()

    for error in (caught.value, by_link.value):
        assert setting in error.message
        assert str(missing) in error.message
        assert "No such file or directory" in error.message
        assert PASSWORD not in str(error)


async def test_an_empty_password_file_is_refused_before_any_login(
    server: ValkeyProcess, tmp_path: Path, open_backend: Open
) -> None:
    path = tmp_path / "password"
    path.write_text("\n")
    with pytest.raises(CredentialsUnavailable, match=r"passwordFile .* is empty"):
        await open_backend(server.url, password_file=str(path))


async def test_a_caller_may_hand_over_static_credentials(
    server: ValkeyProcess, logs: pytest.LogCaptureFixture
) -> None:
    """As the operator does with a password it read from a Kubernetes Secret."""
    credentials = Static(None, PASSWORD)
    conn = Connection(ValkeySettings(url=server.url), credentials=credentials)
    await conn.open()
    try:
        assert await conn.run_one(("PING",)) == b"PONG"
        assert await conn.ask(("PING",)) is True
    finally:
        await conn.close()
    assert_never_shown(PASSWORD, logs, credentials, conn.credentials)


# --- the sidecar process -----------------------------------------------------------------


def test_the_sidecar_reads_its_password_from_a_file(
    server: ValkeyProcess,
    tmp_path: Path,
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    path = secret_file(tmp_path / "password", PASSWORD)
    sidecar = sidecar_factory(valkey_checkpointer(server.url, passwordFile=str(path)))
    saver = SidecarSaver(sidecar.socket, timeout=10.0)
    config: RunnableConfig = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    try:
        stored = saver.put(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
        got = saver.get_tuple(config)
    finally:
        saver.close()
    assert got is not None
    assert got.config == stored
    assert PASSWORD not in sidecar.log()


# --- iamAuth -----------------------------------------------------------------------------


@pytest.fixture
def iam_server(server: ValkeyProcess, server_admin: valkey.Valkey) -> ValkeyProcess:
    """The server with the IAM-enabled user, whose real password only the gate knows."""
    add_user(server_admin, IAM_USER, IAM_PASSWORD)
    return server


@pytest.fixture
def aws_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default AWS chain finds :data:`AWS` in the environment, and nothing else."""
    for name, value in local_env({}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("valkey-iam-tls"))


@pytest.fixture(scope="module")
def serving(authority: CertificateAuthority) -> ssl.SSLContext:
    pair = authority.issue("loopback", LOOPBACK, hosts=[LOOPBACK])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pair.cert, pair.key)
    return context


def tls_url(port: int, authority: CertificateAuthority) -> str:
    return f"valkeys://{LOOPBACK}:{port}/0?ssl_ca_certs={authority.cert_path}"


def gate(*, serverless: bool = False) -> IamGate:
    return IamGate(CACHE, IAM_USER, REGION, AWS, IAM_PASSWORD, serverless=serverless)


@pytest.mark.parametrize(
    ("serverless", "region"), [(False, REGION), (True, None)], ids=["node-based", "serverless"]
)
@pytest.mark.usefixtures("aws_chain")
async def test_iam_tokens_log_in_through_the_gate(
    iam_server: ValkeyProcess,
    authority: CertificateAuthority,
    serving: ssl.SSLContext,
    open_backend: Open,
    logs: pytest.LogCaptureFixture,
    serverless: bool,
    region: str | None,
) -> None:
    """A checkpoint put and read with IAM tokens (region from the block, or AWS_REGION)."""
    checker = gate(serverless=serverless)
    iam = {"userId": IAM_USER, "cacheName": CACHE, "region": region, "serverless": serverless}
    async with tls_proxy(serving, iam_server.port, rewrite=checker.rewrite) as port:
        backend = await open_backend(tls_url(port, authority), iam_auth=iam)
        await round_trip(backend, "t1")
        assert await backend.conn.ask(("ACL", "WHOAMI")) == IAM_USER.encode()
        assert await backend.conn.run_one(("ACL", "WHOAMI")) == IAM_USER.encode()

        await backend.conn.close()  # new connections: new tokens
        await backend.conn.open()
        assert await backend.get_tuple(m.GetTupleRequest("t1")) == record("t1", 1)

    assert checker.refusals == []
    assert len(checker.accepted) >= 4  # the link's and the pool's, twice
    for token in checker.accepted:
        assert_never_shown(token, logs, backend.conn.credentials, backend.settings)


@pytest.mark.usefixtures("aws_chain")
async def test_an_iam_token_for_another_cache_is_refused(
    iam_server: ValkeyProcess,
    authority: CertificateAuthority,
    serving: ssl.SSLContext,
    open_backend: Open,
) -> None:
    checker = gate()
    iam = {"userId": IAM_USER, "cacheName": "another-cache"}
    async with tls_proxy(serving, iam_server.port, rewrite=checker.rewrite) as port:
        with pytest.raises(BackendUnavailable, match="refused the credentials"):
            await open_backend(tls_url(port, authority), iam_auth=iam)

    assert checker.accepted == []
    assert checker.refusals == [f"the token is for cache 'another-cache', not '{CACHE}'"]


async def test_iam_auth_without_a_region_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch,
    aws_chain: None,
    iam_server: ValkeyProcess,
    authority: CertificateAuthority,
    serving: ssl.SSLContext,
    open_backend: Open,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    iam = {"userId": IAM_USER, "cacheName": CACHE}
    async with tls_proxy(serving, iam_server.port, rewrite=gate().rewrite) as port:
        with pytest.raises(CredentialsUnavailable, match="iamAuth has no region"):
            await open_backend(tls_url(port, authority), iam_auth=iam)
