"""The ``bedrock-session`` checkpointer on the project's emulator (Bedrock Agent Runtime sessions).

Fixtures: ``bedrock_session_sidecar`` (session) is a sidecar whose checkpointer keeps threads
in sessions of the session's emulator (``rig.emulator``), finding its directory session by
name; ``bedrock_session_backend`` (function) is the backend in-process with a directory of
its own and a :class:`~rig.agentcore.CallCounter` of the calls it makes.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentpersistence.sidecar.backends.bedrock_session.checkpoint import (
    BedrockSessionCheckpointBackend,
)
from agentpersistence.sidecar.settings import BedrockSessionSettings
from rig.agentcore import CallCounter
from rig.emulator import EmulatorProcess, unique_name
from rig.sidecar import SidecarProcess

__all__ = ["bedrock_session_backend", "bedrock_session_checkpointer", "bedrock_session_sidecar"]


def bedrock_session_checkpointer(**settings: Any) -> dict[str, Any]:
    return {"checkpointer": {"backend": "bedrock-session", "bedrockSession": settings}}


@pytest.fixture(scope="session")
def bedrock_session_sidecar(agentcore_emulator: EmulatorProcess) -> Iterator[SidecarProcess]:
    sidecar = SidecarProcess(
        bedrock_session_checkpointer(directoryName=unique_name("directory")),
        Path(tempfile.mkdtemp(prefix="ap-sidecar-")),
        [],
        agentcore_emulator.env(),
    )
    yield sidecar.start()
    sidecar.stop()


@dataclass
class BedrockSessionBackend:
    backend: BedrockSessionCheckpointBackend
    counter: CallCounter
    emulator: EmulatorProcess


async def open_backend(
    emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> BedrockSessionBackend:
    """A started backend on the emulator (a directory session of its own unless given)."""
    for name, value in emulator.env().items():
        monkeypatch.setenv(name, value)
    if "directory_session_id" not in settings:
        runtime = emulator.client("bedrock-agent-runtime")
        settings["directory_session_id"] = runtime.create_session()["sessionId"]
    backend = BedrockSessionCheckpointBackend(BedrockSessionSettings(**settings))
    await backend.start()
    counter = CallCounter()
    backend.calls.client.meta.events.register("before-call.bedrock-agent-runtime", counter)
    return BedrockSessionBackend(backend, counter, emulator)


@pytest_asyncio.fixture
async def bedrock_session_backend(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BedrockSessionBackend]:
    opened = await open_backend(agentcore_emulator, monkeypatch)
    try:
        yield opened
    finally:
        await opened.backend.close()
