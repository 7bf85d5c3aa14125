"""A stopped sidecar gives a typed error once a call's deadline has passed; a restarted one
serves the same client object again, with everything acknowledged before the stop still there.

Every wait is for an event (a process's exit, a refused connection, the socket's appearance,
a reply); a call's deadline is what ends it only where the test expects the typed error."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import valkey
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import DeadlineExceeded, SidecarSaver, SidecarUnavailable
from rig.sidecar import SidecarProcess, valkey_checkpointer

PATIENT_S = 30.0
"""A safety net only: the deadline of every call that should succeed."""
EVENT_TIMEOUT_S = 30.0
"""A safety net only: how long an awaited event may take."""
HOLD_MS = "120000"
"""``CLIENT PAUSE``'s own limit, a safety net only: the test unpauses Valkey itself."""


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


@contextlib.contextmanager
def _deadline(saver: SidecarSaver, seconds: float) -> Iterator[None]:
    """Calls made inside get ``seconds`` as their deadline: for a call meant to run out of it."""
    patient, saver.timeout = saver.timeout, seconds
    try:
        yield
    finally:
        saver.timeout = patient


def _refusals(monkeypatch: pytest.MonkeyPatch, path: str) -> threading.Event:
    """Set once a connection attempt to ``path`` fails (no sidecar listens there)."""
    refused = threading.Event()
    connect = socket.socket.connect

    def watched(sock: socket.socket, address: Any) -> None:
        try:
            connect(sock, address)
        except OSError:
            if address == path:
                refused.set()
            raise

    monkeypatch.setattr(socket.socket, "connect", watched)
    return refused


def test_stopped_sidecar_then_restart_sync(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    thread = str(uuid.uuid4())
    stored = saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    saver.put_writes(stored, [("messages", "hello")], "task-1")

    assert sidecar.stop() == 0
    # The message is written only once the deadline has passed, naming it and the last cause.
    expected = r"cannot reach the sidecar at .* within 1s: \[Errno 2\]"
    with _deadline(saver, 1.0), pytest.raises(SidecarUnavailable, match=expected) as caught:
        saver.get_tuple(_config(thread))
    assert "Check that the sidecar container is running" in str(caught.value)

    sidecar.start()
    got = saver.get_tuple(_config(thread))
    assert got is not None
    assert got.config["configurable"]["checkpoint_id"] == stored["configurable"]["checkpoint_id"]
    assert got.pending_writes == [("task-1", "messages", "hello")]
    saver.close()


async def test_stopped_sidecar_then_restart_async(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    thread = str(uuid.uuid4())
    stored = await saver.aput(
        _config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {}
    )

    assert sidecar.stop() == 0
    with _deadline(saver, 1.0), pytest.raises(SidecarUnavailable, match=r"within 1s: \[Errno 2\]"):
        await saver.aget_tuple(_config(thread))

    await asyncio.to_thread(sidecar.start)
    got = await saver.aget_tuple(_config(thread))
    assert got is not None
    assert got.config == stored
    saver.close()


def test_a_call_waits_for_a_restarting_sidecar(
    sidecar_factory: Callable[..., SidecarProcess],
    valkey_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call made while the sidecar is down keeps trying, and succeeds once it is back."""
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    thread = str(uuid.uuid4())
    saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    assert sidecar.stop() == 0
    refused = _refusals(monkeypatch, sidecar.socket)

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(saver.get_tuple, _config(thread))
        assert refused.wait(EVENT_TIMEOUT_S), "the call never tried the sidecar's socket"
        assert not call.done(), "the call gave up on the stopped sidecar instead of waiting"
        sidecar.start()  # returns once the new socket has appeared
        assert call.result(PATIENT_S * 2) is not None
    saver.close()


def test_wait_ready_times_out_with_a_typed_error(tmp_path: Any) -> None:
    saver = SidecarSaver(str(tmp_path / "absent.sock"))
    with pytest.raises(SidecarUnavailable, match=r"did not answer within 0\.3s"):
        saver.wait_ready(0.3)


def test_a_stalled_backend_gives_deadline_exceeded_within_the_deadline(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any, admin: valkey.Valkey
) -> None:
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=PATIENT_S)
    thread = str(uuid.uuid4())
    saver.get_tuple(_config(thread))  # a pooled connection, its kernel timeouts set long
    admin.execute_command("CLIENT", "PAUSE", HOLD_MS, "WRITE")
    try:
        with _deadline(saver, 0.5), pytest.raises(DeadlineExceeded):
            saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
        # Valkey still holds writes: the call ended at its own deadline, not on the backend.
        assert cast(dict[str, Any], admin.info("clients"))["paused_actions"] == "write"
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    # A call past its deadline may or may not have been applied; the saver serves again.
    stored = saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    got = saver.get_tuple(_config(thread))
    assert got is not None
    assert got.config == stored
    saver.close()
