"""A Valkey failover: the primary is SIGKILLed, its replica promoted (``REPLICAOF NO ONE``),
and the sidecar reaches the new primary through the same address.

With ``waitReplicas: 1`` every write the sidecar acknowledged is on the promoted replica,
even with the replication link cut before the kill (writes then fail with
``BackendUnavailable`` instead of being acknowledged). Without it replication is
asynchronous: a write acknowledged after the link was cut is lost in the failover, which
the docs say.

Two relays stand for the network: one for the endpoint's DNS name, which the test moves to
the replica as ElastiCache moves its primary endpoint; one for the replication link, which
the test cuts. Every wait is for an event: a reply, a typed error, a process's exit, the
replication link reported up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import BackendUnavailable, SidecarError, SidecarSaver
from agentpersistence.sidecar.backends.valkey.connection import Connection
from agentpersistence.sidecar.settings import ConfigError, ValkeySettings, parse_config
from rig import unix_http
from rig.sidecar import SidecarProcess
from rig.valkey import LOOPBACK, ValkeyProcess, start_valkey, start_valkey_cluster
from rig.waiting import eventually

PATIENT_S = 30.0
"""A safety net only: the deadline of each call."""
EVENT_TIMEOUT_S = 30.0
"""A safety net only: how long an awaited event may take."""
WAIT_TIMEOUT_MS = 1000
WRITERS = 4
ACKNOWLEDGED_FIRST = 20
"""Writes acknowledged before the replication link is cut."""


class Relay:
    """A TCP relay on 127.0.0.1 to a port the test chooses: :meth:`switch` closes every
    relayed connection and sends new ones to another port; :meth:`cut` refuses them."""

    def __init__(self, target: int | None) -> None:
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._target = target
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def switch(self, target: int | None) -> None:
        with self._lock:
            self._target = target
            dropped, self._open = self._open, []
        for sock in dropped:
            _shut(sock)

    def cut(self) -> None:
        self.switch(None)

    def close(self) -> None:
        self.cut()
        _shut(self._listener)
        for thread in self._threads:
            thread.join(EVENT_TIMEOUT_S)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                target = self._target
            upstream = None
            if target is not None:
                with contextlib.suppress(OSError):
                    upstream = socket.create_connection((LOOPBACK, target), timeout=5)
                    upstream.settimeout(None)
            if upstream is None:
                _shut(client)
                continue
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=_pump, args=(source, sink), daemon=True)
                self._threads.append(pump)
                pump.start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    _shut(sink)
    _shut(source)


def _shut(sock: socket.socket) -> None:
    """Shut down (waking a thread blocked on it) and close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass
class Pair:
    """A primary and a replica replicating from it through :attr:`link`."""

    primary: ValkeyProcess
    replica: ValkeyProcess
    link: Relay
    endpoint: Relay
    """Where the sidecar connects: the primary, then the promoted replica."""

    def promote(self) -> None:
        """Kill the primary, promote the replica, move the endpoint to it."""
        self.primary.kill()
        admin = valkey.Valkey(host=LOOPBACK, port=self.replica.port)
        try:
            assert admin.execute_command("REPLICAOF", "NO", "ONE") in (b"OK", "OK")
            assert _replication(admin)["role"] == "master"
        finally:
            admin.close()
        self.endpoint.switch(self.replica.port)


def _replication(admin: valkey.Valkey) -> dict[str, Any]:
    return cast(dict[str, Any], admin.info("replication"))


def _link_up(replica: ValkeyProcess) -> bool:
    admin = valkey.Valkey(host=LOOPBACK, port=replica.port)
    try:
        return _replication(admin).get("master_link_status") == "up"
    finally:
        admin.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    # A replica's first sync starts at once, not after the default 5 s wait for others.
    primary = start_valkey(tmp_path / "primary", extra_args=["--repl-diskless-sync-delay", "0"])
    link = Relay(primary.port)
    replica = start_valkey(
        tmp_path / "replica", extra_args=["--replicaof", LOOPBACK, str(link.port)]
    )
    endpoint = Relay(primary.port)
    try:
        eventually(lambda: _link_up(replica), "the replica's link to the primary", EVENT_TIMEOUT_S)
        yield Pair(primary, replica, link, endpoint)
    finally:
        endpoint.close()
        link.close()
        replica.stop()
        primary.stop()


def _reconnected(sidecar: SidecarProcess) -> None:
    """Wait until ``/readyz`` answers 200: a PING went through a connection opened after the
    endpoint moved (the old one, cut by the relay, cannot answer one)."""

    def ready() -> bool:
        return unix_http.request(sidecar.socket, "GET", "/readyz")[0] == 200

    eventually(ready, "the sidecar to reach the promoted replica", EVENT_TIMEOUT_S, 0.05)


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def _sidecar_config(url: str, **settings: Any) -> dict[str, Any]:
    return {"checkpointer": {"backend": "valkey", "valkey": {"url": url, **settings}}}


@dataclass
class Writers:
    """Threads writing a checkpoint and its pending writes per thread id, until stopped."""

    saver: SidecarSaver
    acknowledged: dict[str, str] = field(default_factory=dict)
    """thread id -> checkpoint id, once both the put and the put_writes were acknowledged."""
    failures: list[SidecarError] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.is_set():
            thread = f"failover-{uuid.uuid4().hex[:12]}"
            try:
                stored = self.saver.put(
                    _config(thread), empty_checkpoint(), {"source": "loop", "step": 1}, {}
                )
                self.saver.put_writes(stored, [("messages", thread)], "task-1")
            except SidecarError as exc:
                with self.changed:
                    self.failures.append(exc)
                    self.changed.notify_all()
                continue
            with self.changed:
                self.acknowledged[thread] = stored["configurable"]["checkpoint_id"]
                self.changed.notify_all()

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, EVENT_TIMEOUT_S), f"waited for {what}"


def _replica_errors(failures: list[SidecarError]) -> list[SidecarError]:
    return [f for f in failures if "replicas required (waitReplicas)" in f.message]


def test_failover_keeps_every_write_acknowledged_with_wait_replicas(
    pair: Pair, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    url = f"valkey://{LOOPBACK}:{pair.endpoint.port}/0"
    config = _sidecar_config(url, waitReplicas=1, waitTimeoutMs=WAIT_TIMEOUT_MS)
    sidecar = sidecar_factory(config)
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    writers = Writers(saver)
    threads = [threading.Thread(target=writers.run) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        writers.wait_for(lambda: len(writers.acknowledged) >= ACKNOWLEDGED_FIRST, "writes")
        pair.link.cut()  # the primary keeps writing; no replica confirms
        writers.wait_for(lambda: bool(_replica_errors(writers.failures)), "a refused write")
        pair.promote()
    finally:
        writers.stopping.set()
        for thread in threads:
            thread.join(PATIENT_S)
    assert not any(thread.is_alive() for thread in threads)
    _reconnected(sidecar)

    # Everything the sidecar acknowledged is on the promoted replica, whole.
    for thread_id, checkpoint_id in writers.acknowledged.items():
        got = saver.get_tuple(_config(thread_id))
        assert got is not None, f"{thread_id}: an acknowledged checkpoint was lost"
        assert got.config["configurable"]["checkpoint_id"] == checkpoint_id
        assert got.pending_writes == [("task-1", "messages", thread_id)]
    # Every failure was typed and retriable; none was an acknowledgement.
    assert writers.failures
    assert all(isinstance(f, BackendUnavailable) for f in writers.failures), {
        type(f).__name__ for f in writers.failures
    }
    # The promoted replica has no replica of its own: writes are refused, not acknowledged.
    lonely = f"failover-{uuid.uuid4().hex[:12]}"
    with pytest.raises(BackendUnavailable, match=r"0 of the 1 replicas required"):
        saver.put(_config(lonely), empty_checkpoint(), {"source": "input", "step": 0}, {})
    saver.close()


def test_without_wait_replicas_a_failover_can_lose_acknowledged_writes(
    pair: Pair, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    sidecar = sidecar_factory(_sidecar_config(f"valkey://{LOOPBACK}:{pair.endpoint.port}/0"))
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    pair.link.cut()
    lost = f"failover-{uuid.uuid4().hex[:12]}"
    saver.put(_config(lost), empty_checkpoint(), {"source": "input", "step": 0}, {})
    assert saver.get_tuple(_config(lost)) is not None  # acknowledged, on the primary only

    pair.promote()
    _reconnected(sidecar)

    assert saver.get_tuple(_config(lost)) is None
    saver.close()


def test_wait_replicas_is_refused_where_it_cannot_hold(tmp_path: Path) -> None:
    """A WAIT longer than the socket timeout would be cut off as an unreachable server; a
    cluster's writes go to several primaries, which one WAIT cannot cover."""
    block = {"url": "valkey://127.0.0.1:6379/0", "waitReplicas": 1, "waitTimeoutMs": 5000}
    with pytest.raises(ConfigError, match=r"waitTimeoutMs \(5000\) must be below"):
        parse_config({"checkpointer": {"backend": "valkey", "valkey": block}})

    cluster = start_valkey_cluster(tmp_path / "cluster", nodes=1)
    try:
        connection = Connection(ValkeySettings(url=cluster.url, wait_replicas=1))
        with pytest.raises(BackendUnavailable, match="cluster mode, where waitReplicas is not"):
            asyncio.run(connection.open())  # what a sidecar's start-up does, and then exits
    finally:
        cluster.stop()
