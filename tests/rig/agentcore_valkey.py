"""The ``agentcore-valkey`` backend on the session's valkey-server.

Fixtures: ``agentcore_valkey_sidecar`` (session) is a sidecar whose checkpointer is
``agentcore-valkey`` on ``valkey_server``; :func:`agentcore_valkey_checkpointer` builds the
config block for other sidecars.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rig.sidecar import SidecarProcess
from rig.valkey import ValkeyProcess

__all__ = ["agentcore_valkey_checkpointer", "agentcore_valkey_sidecar"]


def agentcore_valkey_checkpointer(url: str, **settings: Any) -> dict[str, Any]:
    block = {"url": url, **settings}
    return {"checkpointer": {"backend": "agentcore-valkey", "agentcoreValkey": block}}


@pytest.fixture(scope="session")
def agentcore_valkey_sidecar(valkey_server: ValkeyProcess) -> Iterator[SidecarProcess]:
    sidecar = SidecarProcess(
        agentcore_valkey_checkpointer(valkey_server.url),
        Path(tempfile.mkdtemp(prefix="ap-sidecar-")),
    )
    yield sidecar.start()
    sidecar.stop()
