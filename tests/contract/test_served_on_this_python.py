"""The sidecar serves on the Python running this suite, and stops cleanly.

``make test`` runs this tier on every Python the project claims (``make test-pythons``):
the sidecar must answer a framed request and an HTTP one on each, with eager task starts
wherever the Python has them, and exit 0 on SIGTERM.
"""

from __future__ import annotations

import json
import platform
import sys
import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver
from rig import unix_http
from rig.sidecar import MEMORY_CONFIG, SidecarProcess


def _ready_line(sidecar: SidecarProcess) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [json.loads(line) for line in sidecar.log().splitlines()]
    ready = [e for e in entries if e["msg"] == "ready"]
    assert ready, sidecar.log()
    return ready[-1]


def test_both_framings_are_served_on_this_python(sidecar_factory: Any) -> None:
    sidecar: SidecarProcess = sidecar_factory(MEMORY_CONFIG)
    config: RunnableConfig = {"configurable": {"thread_id": f"py-{uuid.uuid4()}"}}
    checkpoint = empty_checkpoint()
    with SidecarSaver(sidecar.socket, timeout=5.0) as saver:
        saved = saver.put(config, checkpoint, {"source": "input", "step": -1}, {})
        got = saver.get_tuple(config)
    assert got is not None
    assert got.config == saved
    assert got.checkpoint["id"] == checkpoint["id"]
    status, body = unix_http.request(sidecar.socket, "GET", "/readyz")
    assert (status, json.loads(body)["ready"]) == (200, True)
    assert sidecar.stop() == 0

    ready = _ready_line(sidecar)
    assert ready["python"] == platform.python_version()
    assert ready["loop"] == "uvloop.Loop"
    assert ready["eager_start"] is (sys.version_info >= (3, 12))
    assert not [e for e in map(json.loads, sidecar.log().splitlines()) if e["level"] == "error"]
