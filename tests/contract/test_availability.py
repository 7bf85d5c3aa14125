"""A stopped sidecar gives a typed error within the deadline; a restarted one serves the
same client object again, with everything acknowledged before the stop still there."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import DeadlineExceeded, SidecarSaver, SidecarUnavailable
from rig.sidecar import SidecarProcess, valkey_checkpointer


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def test_stopped_sidecar_then_restart_sync(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=1.0)
    thread = str(uuid.uuid4())
    stored = saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    saver.put_writes(stored, [("messages", "hello")], "task-1")

    assert sidecar.stop() == 0
    began = time.monotonic()
    with pytest.raises(SidecarUnavailable, match="cannot reach the sidecar") as caught:
        saver.get_tuple(_config(thread))
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 1.5, elapsed
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
    saver = SidecarSaver(sidecar.socket, timeout=1.0)
    thread = str(uuid.uuid4())
    stored = await saver.aput(
        _config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {}
    )

    sidecar.stop()
    began = time.monotonic()
    with pytest.raises(SidecarUnavailable):
        await saver.aget_tuple(_config(thread))
    assert time.monotonic() - began < 1.5

    await asyncio.to_thread(sidecar.start)
    got = await saver.aget_tuple(_config(thread))
    assert got is not None
    assert got.config == stored
    saver.close()


def test_a_call_waits_for_a_restarting_sidecar(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    """A call made while the sidecar restarts succeeds once it is back, within its deadline."""
    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=20.0)
    thread = str(uuid.uuid4())
    saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    sidecar.stop()

    import threading

    restarter = threading.Timer(0.5, sidecar.start)
    restarter.start()
    try:
        assert saver.get_tuple(_config(thread)) is not None
    finally:
        restarter.join()
    saver.close()


def test_wait_ready_times_out_with_a_typed_error(tmp_path: Any) -> None:
    saver = SidecarSaver(str(tmp_path / "absent.sock"))
    with pytest.raises(SidecarUnavailable, match=r"did not answer within 0\.3s"):
        saver.wait_ready(0.3)


def test_a_stalled_backend_gives_deadline_exceeded_within_the_deadline(
    sidecar_factory: Callable[..., SidecarProcess], valkey_server: Any
) -> None:
    import valkey

    sidecar = sidecar_factory(valkey_checkpointer(valkey_server.url))
    saver = SidecarSaver(sidecar.socket, timeout=0.5)
    thread = str(uuid.uuid4())
    saver.get_tuple(_config(thread))  # a pooled connection with its kernel timeouts set
    admin = valkey.Valkey.from_url(valkey_server.url)
    admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
    try:
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
        assert time.monotonic() - began < 0.9
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    # A call past its deadline may or may not have been applied; the saver serves again.
    stored = saver.put(_config(thread), empty_checkpoint(), {"source": "input", "step": -1}, {})
    got = saver.get_tuple(_config(thread))
    assert got is not None
    assert got.config == stored
    saver.close()
