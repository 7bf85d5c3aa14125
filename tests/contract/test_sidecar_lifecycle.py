"""The sidecar's process contract: socket appears only when ready (mode 0660), readiness
reports each backend, SIGTERM lets in-flight requests finish, logs are JSON without
payloads, metrics count per route and backend."""

from __future__ import annotations

import json
import os
import signal
import stat
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver
from rig import unix_http
from rig.sidecar import MEMORY_CONFIG, SidecarProcess, valkey_checkpointer
from rig.waiting import eventually

EVENT_TIMEOUT_S = 30.0
"""A safety net only: how long an awaited event (a held write, a removed socket) may take."""
CALL_TIMEOUT_S = 30.0
"""A safety net only: each call's deadline; nothing here should come near it."""
HOLD_MS = "120000"
"""``CLIENT PAUSE``'s own limit, a safety net only: longer than every wait made while Valkey
holds writes; the test unpauses Valkey itself."""


def _get(sock: str, path: str) -> tuple[int, bytes]:
    return unix_http.request(sock, "GET", path)


def test_socket_mode_and_readiness(any_sidecar: SidecarProcess) -> None:
    assert stat.S_IMODE(os.stat(any_sidecar.socket).st_mode) == 0o660
    status, body = _get(any_sidecar.socket, "/readyz")
    ready = json.loads(body)
    backend = any_sidecar.config["checkpointer"]["backend"]
    assert status == 200
    assert ready == {
        "ready": True,
        "backends": [{"block": "checkpointer", "backend": backend, "ok": True, "message": ""}],
    }
    assert _get(any_sidecar.socket, "/healthz") == (200, b'{"status": "ok"}')


def test_no_socket_when_the_backend_is_unreachable(tmp_path: Path) -> None:
    sidecar = SidecarProcess(valkey_checkpointer("valkey://127.0.0.1:1/0"), tmp_path)
    with pytest.raises(RuntimeError, match="sidecar exited with 1"):
        sidecar.start()
    assert not os.path.exists(sidecar.socket)
    lines = [json.loads(line) for line in sidecar.log().splitlines()]
    errors = [line for line in lines if line["level"] == "error"]
    assert errors
    assert "127.0.0.1:1" in errors[-1]["error"]


def test_invalid_config_exits_2_with_the_reason(tmp_path: Path) -> None:
    sidecar = SidecarProcess({"checkpointer": {"backend": "cassandra"}}, tmp_path)
    with pytest.raises(RuntimeError, match="sidecar exited with 2"):
        sidecar.start()
    assert "checkpointer.backend" in sidecar.log()


def test_sigterm_finishes_in_flight_requests(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any, admin: valkey.Valkey
) -> None:
    """A put held by the backend when SIGTERM arrives is answered by the draining sidecar,
    which exits 0 only after that."""
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    process = sidecar.proc
    assert process is not None
    saver = SidecarSaver(sidecar.socket, timeout=CALL_TIMEOUT_S)
    thread = str(uuid.uuid4())
    config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    saver.get_tuple(config)  # warm the connection
    admin.execute_command("CLIENT", "PAUSE", HOLD_MS, "WRITE")
    with ThreadPoolExecutor(1) as pool:
        try:
            put = pool.submit(
                saver.put, config, empty_checkpoint(), {"source": "input", "step": -1}, {}
            )
            _await(lambda: _held_writes(admin) > 0, "the put to wait on the paused Valkey")
            process.send_signal(signal.SIGTERM)
            _await(lambda: not os.path.exists(sidecar.socket), "the sidecar to remove its socket")
            assert not put.done(), "the put was answered while Valkey still held it"
            assert process.poll() is None, "the sidecar exited with a put in flight"
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        # No sidecar listens any more: only the draining one can have answered this put.
        stored = put.result(CALL_TIMEOUT_S * 2)
    assert process.wait(EVENT_TIMEOUT_S) == 0, "the sidecar did not exit cleanly after the put"
    sidecar.start()
    got = saver.get_tuple(config)
    assert got is not None
    assert got.config == stored
    saver.close()


def _await(condition: Callable[[], bool], what: str) -> None:
    eventually(condition, what, EVENT_TIMEOUT_S, interval=0.01)


def _held_writes(admin: valkey.Valkey) -> int:
    """Commands Valkey is holding back (here: writes postponed by ``CLIENT PAUSE WRITE``)."""
    return int(cast(dict[str, Any], admin.info("clients"))["blocked_clients"])


def test_logs_are_json_and_never_contain_payloads(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG, "--log-level", "debug")
    secret = "s3cr3t-payload-value"
    with SidecarSaver(sidecar.socket) as saver:
        config: RunnableConfig = {"configurable": {"thread_id": "log-thread", "checkpoint_ns": ""}}
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": secret}
        stored = saver.put(config, checkpoint, {"source": "input", "step": -1}, {})
        saver.put_writes(stored, [("messages", secret)], "task")
        with pytest.raises(Exception, match="prune strategy"):
            saver.prune(["log-thread"], strategy="sideways")
    sidecar.stop()
    log = sidecar.log()
    entries = [json.loads(line) for line in log.splitlines()]
    assert any(e["msg"] == "ready" for e in entries)
    assert any(e.get("code") == "invalid_request" for e in entries)
    assert secret not in log


def test_metrics_count_per_route_and_backend(
    sidecar_factory: Callable[..., SidecarProcess],
) -> None:
    sidecar = sidecar_factory(MEMORY_CONFIG)
    with SidecarSaver(sidecar.socket) as saver:
        for _ in range(3):
            saver.get_tuple({"configurable": {"thread_id": "m"}})
        with pytest.raises(Exception, match="prune strategy"):
            saver.prune(["m"], strategy="sideways")
    status, body = _get(sidecar.socket, "/metrics")
    samples = _samples(body.decode())
    assert status == 200
    get = ("memory", "ok", "checkpoint.get_tuple")
    assert samples["agentpersistence_requests_total", get] == 3.0
    prune = ("memory", "invalid_request", "checkpoint.prune")
    assert samples["agentpersistence_requests_total", prune] == 1.0
    latency = ("memory", "checkpoint.get_tuple")
    assert samples["agentpersistence_request_duration_seconds_count", latency] == 3.0


def _samples(text: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """Prometheus text → {(name, label values in label-name order): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(v for _, v in sorted(sample.labels.items()))
            found[sample.name, key] = sample.value
    return found
