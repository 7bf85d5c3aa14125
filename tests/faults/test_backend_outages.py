"""A backend that stops and comes back: calls in the outage fail with ``BackendUnavailable``
before their deadline (never hang, never answer falsely), ``/readyz`` reports the backend
down and then up, and after the restart every write acknowledged before it reads back.

The servers keep their data on disk (Valkey's append-only file, fsynced at every write;
DynamoDB Local's ``-dbPath``), so a restart stands for a primary that comes back, not for
one that lost its disk. Every wait is for an event: a process's exit, a typed error, the
readiness reply changing; no call's deadline is what ends it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint

from agentpersistence.client import (
    BackendUnavailable,
    SidecarCache,
    SidecarSaver,
    SidecarStore,
)
from rig import unix_http
from rig.dynamodb import (
    AwsEndpoints,
    DynamoDBLocal,
    MotoServer,
    dynamodb_checkpointer,
    install_dynamodb_local,
)
from rig.sidecar import SidecarProcess
from rig.valkey import LOOPBACK, ValkeyProcess, free_port, start_valkey
from rig.waiting import eventually

DEADLINE_S = 3.0
"""The deadline of calls made during an outage, which each must fail before."""
PATIENT_S = 60.0
"""A safety net only: the deadline of calls that should succeed."""
EVENT_TIMEOUT_S = 60.0
"""A safety net only: how long an awaited event (readiness changing) may take."""
WRITES = 20
"""Checkpoints acknowledged before the outage."""

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")
"""Valkey flags: every acknowledged write is on disk before the reply."""


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def _checkpoint(step: int) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"step": step, "text": "x" * 512}
    checkpoint["channel_versions"] = {"step": step + 1, "text": step + 1}
    return checkpoint


def _readiness(sidecar: SidecarProcess) -> tuple[int, dict[str, Any]]:
    status, body = unix_http.request(sidecar.socket, "GET", "/readyz")
    ready: dict[str, Any] = json.loads(body)
    return status, ready


def _probe_port_readiness(port: int) -> tuple[int, dict[str, Any]]:
    """``/readyz`` on the sidecar's TCP probe port, as the kubelet asks it."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=EVENT_TIMEOUT_S)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        ready: dict[str, Any] = json.loads(response.read())
        return response.status, ready
    finally:
        conn.close()


def _ready_is(sidecar: SidecarProcess, ready: bool) -> dict[str, Any]:
    """Wait until ``/readyz`` says ``ready``; its body."""

    def probe() -> dict[str, Any] | None:
        status, body = _readiness(sidecar)
        return body if (status == 200) == ready and body["ready"] is ready else None

    return eventually(probe, f"/readyz to report ready={ready}", EVENT_TIMEOUT_S, 0.05)


class Acknowledged:
    """What the sidecar acknowledged: checkpoint ids per thread, with their pending writes."""

    def __init__(self, saver: SidecarSaver) -> None:
        self.saver = saver
        self.threads: dict[str, list[str]] = {}

    def write(self, count: int) -> None:
        for i in range(count):
            thread = f"outage-{uuid.uuid4().hex[:12]}"
            stored = self.saver.put(
                _config(thread), _checkpoint(i), {"source": "loop", "step": i}, {"step": i + 1}
            )
            self.saver.put_writes(stored, [("step", i), ("text", f"w{i}")], f"task-{i}")
            self.threads[thread] = [stored["configurable"]["checkpoint_id"]]

    def check(self) -> int:
        """Read every acknowledged checkpoint back whole; how many were read."""
        for thread, ids in self.threads.items():
            got = self.saver.get_tuple(_config(thread))
            assert got is not None, f"thread {thread} lost its acknowledged checkpoint"
            assert got.config["configurable"]["checkpoint_id"] == ids[-1]
            step = got.metadata["step"]
            assert got.checkpoint["channel_values"] == {"step": step, "text": "x" * 512}
            assert got.pending_writes == [
                (f"task-{step}", "step", step),
                (f"task-{step}", "text", f"w{step}"),
            ]
            listed = list(self.saver.list(_config(thread)))
            assert [t.config["configurable"]["checkpoint_id"] for t in listed] == ids
        return len(self.threads)


def _fails_unavailable(call: Callable[[], object]) -> BackendUnavailable:
    """``call`` raises ``BackendUnavailable``; that error. The type shows it came before the
    deadline: at the deadline the client raises ``DeadlineExceeded`` (or the sidecar answers
    it), and a call that hung would end that way."""
    with pytest.raises(BackendUnavailable) as caught:
        call()
    return caught.value


# --- Valkey -----------------------------------------------------------------------------------


@pytest.fixture
def persistent_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    server = start_valkey(tmp_path / "valkey", extra_args=PERSISTENT)
    yield server
    server.stop()


def _valkey_config(url: str) -> dict[str, Any]:
    block = {"url": url, "keyPrefix": "outage"}
    return {
        "checkpointer": {"backend": "valkey", "valkey": block},
        "store": {"backend": "valkey", "valkey": block},
        "cache": {"backend": "valkey", "valkey": block},
    }


def test_valkey_stopped_then_restarted(
    persistent_valkey: ValkeyProcess, sidecar_factory: Callable[..., SidecarProcess]
) -> None:
    probe_port = free_port()
    sidecar = sidecar_factory(
        _valkey_config(persistent_valkey.url), "--probe-port", str(probe_port)
    )
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    store = SidecarStore(sidecar.socket, timeout=PATIENT_S)
    cache: SidecarCache[Any] = SidecarCache(sidecar.socket, timeout=PATIENT_S)
    acknowledged = Acknowledged(saver)
    acknowledged.write(WRITES)
    store.put(("outage", "users"), "alice", {"plan": "pro"})
    cache.set({(("outage",), "node-1"): ({"answer": 42}, None)})
    assert _readiness(sidecar)[0] == 200

    persistent_valkey.stop()  # returns once the server has exited

    down = _ready_is(sidecar, False)
    assert {b["block"] for b in down["backends"] if not b["ok"]} == {
        "checkpointer",
        "store",
        "cache",
    }
    assert all("unreachable" in b["message"] for b in down["backends"])
    status, probed = _probe_port_readiness(probe_port)
    assert status == 503
    assert [b["ok"] for b in probed["backends"]] == [False, False, False]
    saver.timeout = store.timeout = cache.timeout = DEADLINE_S
    thread = next(iter(acknowledged.threads))
    lost = f"outage-{uuid.uuid4().hex[:12]}"
    error = _fails_unavailable(
        lambda: saver.put(_config(lost), _checkpoint(0), {"source": "input", "step": 0}, {})
    )
    assert "Valkey at 127.0.0.1" in error.message
    assert "unreachable" in error.message
    _fails_unavailable(lambda: saver.get_tuple(_config(thread)))
    _fails_unavailable(lambda: asyncio.run(saver.aget_tuple(_config(thread))))
    _fails_unavailable(lambda: list(saver.list(_config(thread))))
    _fails_unavailable(lambda: store.get(("outage", "users"), "alice"))
    _fails_unavailable(lambda: store.put(("outage", "users"), "bob", {}))
    _fails_unavailable(lambda: cache.get([(("outage",), "node-1")]))

    persistent_valkey.start()  # same port, same append-only file
    _ready_is(sidecar, True)
    assert _probe_port_readiness(probe_port)[0] == 200
    saver.timeout = store.timeout = cache.timeout = PATIENT_S
    assert acknowledged.check() == WRITES
    assert saver.get_tuple(_config(lost)) is None, "a put that failed was applied"
    item = store.get(("outage", "users"), "alice")
    assert item is not None
    assert item.value == {"plan": "pro"}
    assert store.get(("outage", "users"), "bob") is None
    assert cache.get([(("outage",), "node-1")]) == {(("outage",), "node-1"): {"answer": 42}}
    acknowledged.write(3)  # the sidecar writes again, on the connection it opened anew
    assert acknowledged.check() == WRITES + 3
    for client in (saver, store, cache):
        client.close()


# --- DynamoDB ---------------------------------------------------------------------------------


QUICK_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
"""Java flags that shorten DynamoDB Local's start (it starts twice here) on a busy machine."""


@pytest.fixture
def persistent_dynamodb(tmp_path: Path) -> Iterator[DynamoDBLocal]:
    """DynamoDB Local of this test alone, its database in a file (``-dbPath``)."""
    db = tmp_path / "dynamodb-data"
    db.mkdir()
    jar = install_dynamodb_local()
    server = DynamoDBLocal(
        free_port(), tmp_path / "dynamodb", jar=jar, db_path=db, jvm_args=QUICK_JVM
    )
    server.start()
    yield server
    server.stop()


def test_dynamodb_stopped_then_restarted(
    persistent_dynamodb: DynamoDBLocal,
    moto_s3: MotoServer,
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    endpoints = AwsEndpoints(persistent_dynamodb.endpoint_url, moto_s3.endpoint_url)
    name = f"ap-outage-{uuid.uuid4().hex[:8]}"
    config = dynamodb_checkpointer(name, name)
    config["store"] = {"backend": "dynamodb", "dynamodb": {"tableName": f"{name}-store"}}
    sidecar = sidecar_factory(config, "--provision", env=endpoints.env())
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    store = SidecarStore(sidecar.socket, timeout=PATIENT_S)
    acknowledged = Acknowledged(saver)
    acknowledged.write(WRITES)
    store.put(("outage", "users"), "alice", {"plan": "pro"})
    assert _readiness(sidecar)[0] == 200

    persistent_dynamodb.stop()

    down = _ready_is(sidecar, False)
    assert {b["block"] for b in down["backends"] if not b["ok"]} == {"checkpointer", "store"}
    assert all("is unreachable" in b["message"] for b in down["backends"]), down
    saver.timeout = store.timeout = DEADLINE_S
    thread = next(iter(acknowledged.threads))
    lost = f"outage-{uuid.uuid4().hex[:12]}"
    error = _fails_unavailable(
        lambda: saver.put(_config(lost), _checkpoint(0), {"source": "input", "step": 0}, {})
    )
    assert "unreachable" in error.message
    _fails_unavailable(lambda: saver.get_tuple(_config(thread)))
    _fails_unavailable(lambda: list(saver.list(_config(thread))))
    _fails_unavailable(lambda: store.get(("outage", "users"), "alice"))
    _fails_unavailable(lambda: store.put(("outage", "users"), "bob", {}))

    persistent_dynamodb.start()  # same port, same database file
    _ready_is(sidecar, True)
    saver.timeout = store.timeout = PATIENT_S
    assert acknowledged.check() == WRITES
    assert saver.get_tuple(_config(lost)) is None, "a put that failed was applied"
    item = store.get(("outage", "users"), "alice")
    assert item is not None
    assert item.value == {"plan": "pro"}
    assert store.get(("outage", "users"), "bob") is None
    acknowledged.write(3)
    assert acknowledged.check() == WRITES + 3
    for client in (saver, store):
        client.close()
