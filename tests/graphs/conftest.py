"""Fixtures for the graph tests: fresh savers on the test's sidecar, and unique threads.

The sidecars are session-scoped, so every test works on its own thread id. ``new_saver``
hands out a new ``SidecarSaver`` each call: a graph resumed through a second saver proves
that nothing survived in the first one's memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from langchain_core.runnables import RunnableConfig

from agentpersistence.client import SidecarSaver
from rig.sidecar import SidecarProcess

SaverFactory = Callable[[], SidecarSaver]


@pytest.fixture
def new_saver(any_sidecar: SidecarProcess) -> Iterator[SaverFactory]:
    """Make savers on the sidecar under test; each is closed at the end of the test."""
    savers: list[SidecarSaver] = []

    def make() -> SidecarSaver:
        saver = SidecarSaver(any_sidecar.socket)
        savers.append(saver)
        return saver

    yield make
    for saver in savers:
        saver.close()


@pytest.fixture
def thread() -> RunnableConfig:
    """A config naming a thread no other test uses."""
    return {"configurable": {"thread_id": f"graphs-{uuid.uuid4()}"}}
