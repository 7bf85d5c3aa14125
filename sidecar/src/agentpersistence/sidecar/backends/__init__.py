"""Storage backends, one package each, and the factory that opens the configured ones.

Every backend implements the interfaces in :mod:`.base` on opaque blobs; its schema and
provisioning code live in its own package, so the operator can reuse them.
"""

from __future__ import annotations

from ..settings import CheckpointerConfig
from .base import CheckpointBackend


def checkpoint_backend(config: CheckpointerConfig) -> CheckpointBackend:
    """Build (not start) the checkpoint backend the config names."""
    if config.backend == "memory":
        from .memory.checkpoint import MemoryCheckpointBackend

        return MemoryCheckpointBackend()
    if config.backend == "valkey":
        from .valkey.checkpoint import ValkeyCheckpointBackend

        assert config.valkey is not None  # enforced by the settings model
        return ValkeyCheckpointBackend(config.valkey)
    raise AssertionError(f"unhandled backend {config.backend!r}")  # the model rejects others
