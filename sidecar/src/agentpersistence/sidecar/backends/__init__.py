"""Storage backends, one package each, and the factory that opens the configured ones.

Every backend implements the interfaces in :mod:`.base` on opaque blobs; its schema and
provisioning code live in its own package, so the operator can reuse them.
"""

from __future__ import annotations

from ..settings import CacheConfig, CheckpointerConfig, StoreConfig
from .base import CacheBackend, CheckpointBackend, StoreBackend


def checkpoint_backend(config: CheckpointerConfig) -> CheckpointBackend:
    """Build (not start) the checkpoint backend the config names."""
    if config.backend == "memory":
        from .memory.checkpoint import MemoryCheckpointBackend

        return MemoryCheckpointBackend()
    if config.backend == "valkey":
        from .valkey.checkpoint import ValkeyCheckpointBackend

        assert config.valkey is not None  # enforced by the settings model
        return ValkeyCheckpointBackend(config.valkey)
    if config.backend == "dynamodb":
        from .dynamodb.checkpoint import DynamoDBCheckpointBackend

        assert config.dynamodb is not None  # enforced by the settings model
        return DynamoDBCheckpointBackend(config.dynamodb)
    if config.backend == "agentcore-memory":
        from .agentcore_memory.checkpoint import AgentCoreMemoryCheckpointBackend

        assert config.agentcore_memory is not None  # enforced by SidecarConfig
        return AgentCoreMemoryCheckpointBackend(config.agentcore_memory)
    if config.backend == "agentcore-valkey":
        from .agentcore_valkey.checkpoint import AgentCoreValkeyCheckpointBackend

        assert config.agentcore_valkey is not None  # enforced by the settings model
        return AgentCoreValkeyCheckpointBackend(config.agentcore_valkey)
    if config.backend == "bedrock-session":
        from ..settings import BedrockSessionSettings
        from .bedrock_session.checkpoint import BedrockSessionCheckpointBackend

        return BedrockSessionCheckpointBackend(config.bedrock_session or BedrockSessionSettings())
    raise AssertionError(f"unhandled backend {config.backend!r}")  # the model rejects others


def store_backend(config: StoreConfig) -> StoreBackend:
    """Build (not start) the store backend the config names."""
    distance = config.index.distance if config.index else "cosine"
    if config.backend == "memory":
        from .memory.store import MemoryStoreBackend

        return MemoryStoreBackend(distance)
    if config.backend == "agentcore-memory":
        from .agentcore_memory.store import AgentCoreMemoryStoreBackend

        assert config.agentcore_memory is not None  # enforced by SidecarConfig
        return AgentCoreMemoryStoreBackend(config.agentcore_memory)
    if config.backend == "dynamodb":
        from .dynamodb.store import DynamoDBStoreBackend

        assert config.dynamodb is not None  # enforced by the settings model
        return DynamoDBStoreBackend(config.dynamodb, config.index)
    from .valkey.store import ValkeyStoreBackend

    assert config.valkey is not None  # enforced by the settings model
    return ValkeyStoreBackend(config.valkey, config.index)


def cache_backend(config: CacheConfig) -> CacheBackend:
    """Build (not start) the cache backend the config names."""
    if config.backend == "memory":
        from .memory.cache import MemoryCacheBackend

        return MemoryCacheBackend()
    from .valkey.cache import ValkeyCacheBackend

    assert config.valkey is not None  # enforced by the settings model
    return ValkeyCacheBackend(config.valkey)
