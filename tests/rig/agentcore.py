"""The ``agentcore-memory`` backend on the project's AgentCore Memory emulator.

Fixtures: ``agentcore_sidecar`` (session) is a sidecar whose checkpointer is a memory of the
session's emulator (``rig.emulator``); ``agentcore_backend`` (function) is the backend
in-process on a fresh memory, with an :class:`CallCounter` of the AgentCore calls it makes
(counted from botocore's ``before-call`` events, so retries inside botocore count once).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentpersistence.sidecar.backends.agentcore_memory.checkpoint import (
    AgentCoreMemoryCheckpointBackend,
)
from agentpersistence.sidecar.settings import AgentCoreMemorySettings
from rig.emulator import EmulatorProcess, unique_name
from rig.sidecar import SidecarProcess

__all__ = ["CallCounter", "agentcore_backend", "agentcore_checkpointer", "agentcore_sidecar"]


def agentcore_checkpointer(memory_id: str, **settings: Any) -> dict[str, Any]:
    block = {"memoryId": memory_id, **settings}
    return {"checkpointer": {"backend": "agentcore-memory", "agentcoreMemory": block}}


@pytest.fixture(scope="session")
def agentcore_sidecar(agentcore_emulator: EmulatorProcess) -> Iterator[SidecarProcess]:
    memory_id = agentcore_emulator.create_active_memory(unique_name("sidecar"))
    sidecar = SidecarProcess(
        agentcore_checkpointer(memory_id),
        Path(tempfile.mkdtemp(prefix="ap-sidecar-")),
        [],
        agentcore_emulator.env(),
    )
    yield sidecar.start()
    sidecar.stop()


@dataclass(eq=False)  # hashable: botocore keys its handlers by them
class CallCounter:
    """AgentCore operations called, by name (``CreateEvent``...)."""

    calls: Counter[str] = field(default_factory=Counter)

    def __call__(self, model: Any, **_: object) -> None:
        self.calls[model.name] += 1

    def reset(self) -> Counter[str]:
        seen, self.calls = self.calls, Counter()
        return seen


@dataclass
class AgentCoreBackend:
    backend: AgentCoreMemoryCheckpointBackend
    counter: CallCounter
    memory_id: str
    emulator: EmulatorProcess


@pytest_asyncio.fixture
async def agentcore_backend(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AgentCoreBackend]:
    for name, value in agentcore_emulator.env().items():
        monkeypatch.setenv(name, value)
    memory_id = agentcore_emulator.create_active_memory(unique_name("backend"))
    backend = AgentCoreMemoryCheckpointBackend(AgentCoreMemorySettings(memory_id=memory_id))
    await backend.start()
    counter = CallCounter()
    backend.log.client.meta.events.register("before-call.bedrock-agentcore", counter)
    try:
        yield AgentCoreBackend(backend, counter, memory_id, agentcore_emulator)
    finally:
        await backend.close()
