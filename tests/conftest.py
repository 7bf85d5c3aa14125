"""Fixtures shared by every tier; the rig lives in ``tests/rig`` (on sys.path via pytest)."""

from rig.sidecar import any_sidecar, memory_sidecar, sidecar_factory, valkey_sidecar
from rig.valkey import valkey_server

__all__ = ["any_sidecar", "memory_sidecar", "sidecar_factory", "valkey_server", "valkey_sidecar"]
