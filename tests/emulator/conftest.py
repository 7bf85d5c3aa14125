"""Clients on the session's emulator and a fresh ACTIVE memory per test."""

from __future__ import annotations

from typing import Any

import pytest

from rig.emulator import CONTROL, DATA, EmulatorProcess


@pytest.fixture
def control(agentcore_emulator: EmulatorProcess) -> Any:
    return agentcore_emulator.client(CONTROL)


@pytest.fixture
def data(agentcore_emulator: EmulatorProcess) -> Any:
    return agentcore_emulator.client(DATA)


@pytest.fixture
def lax_data(agentcore_emulator: EmulatorProcess) -> Any:
    """A data-plane client that sends what the model forbids (no client-side validation)."""
    return agentcore_emulator.client(DATA, parameter_validation=False)


@pytest.fixture
def memory_id(agentcore_emulator: EmulatorProcess) -> str:
    return agentcore_emulator.create_active_memory()
