"""The config file: one model, camelCase like the CR, errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentpersistence.sidecar.settings import ConfigError, load_config, parse_config


def test_valkey_block_in_camel_case() -> None:
    config = parse_config(
        {"checkpointer": {"backend": "valkey", "valkey": {"url": "valkey://h:1", "ttlSeconds": 60}}}
    )
    assert config.checkpointer is not None
    assert config.checkpointer.valkey is not None
    assert config.checkpointer.valkey.ttl_seconds == 60


MEMORY_ID = "support_memory-a1B2c3D4e5"
AGENTCORE_STORE = {"backend": "agentcore-memory", "agentcoreMemory": {"memoryId": MEMORY_ID}}


def agentcore_store(**settings: object) -> dict[str, object]:
    block = {"memoryId": MEMORY_ID, **settings}
    return {"store": {"backend": "agentcore-memory", "agentcoreMemory": block}}


def test_agentcore_memory_store_block() -> None:
    config = parse_config({"store": AGENTCORE_STORE, "cache": {"backend": "memory"}})
    assert config.store is not None
    settings = config.store.agentcore_memory
    assert settings is not None
    assert (settings.memory_id, settings.mode, settings.max_scan) == (MEMORY_ID, "records", 10_000)
    template = "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}"
    conversational = parse_config(
        agentcore_store(
            mode="conversational", namespaceTemplate=template, memoryStrategyId="sums-a1B2c3D4e5"
        )
    )
    assert conversational.store is not None
    assert conversational.store.agentcore_memory is not None
    assert conversational.store.agentcore_memory.namespace_template == template


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "configure at least one block"),
        ({"checkpointer": {"backend": "cassandra"}}, "checkpointer.backend"),
        ({"checkpointer": {"backend": "valkey"}}, "needs a 'valkey' block"),
        (
            {"checkpointer": {"backend": "memory", "valkey": {"url": "valkey://h"}}},
            "keep only the block of the chosen backend",
        ),
        ({"checkpointer": {"backend": "valkey", "valkey": {"uri": "x"}}}, "valkey.uri"),
        (
            {"checkpointer": {"backend": "valkey", "valkey": {"url": "v", "ttlSeconds": 0}}},
            "ttlSeconds",
        ),
        ({"checkpointers": {}}, "checkpointers"),
        ({"store": {"backend": "agentcore-memory"}}, "store.agentcoreMemory.memoryId"),
        (
            {"store": {"backend": "agentcore-memory", "agentcoreMemory": {"memoryId": None}}},
            "store.agentcoreMemory.memoryId",
        ),
        (
            {"store": {**AGENTCORE_STORE, "index": {"dims": 8}}},
            "AgentCore's own semantic retrieval: remove the index block",
        ),
        (agentcore_store(mode="conversational"), "needs namespaceTemplate"),
        (
            agentcore_store(mode="conversational", namespaceTemplate="/users/facts"),
            "must contain {actorId}",
        ),
        (
            agentcore_store(mode="conversational", namespaceTemplate="/t/{tenant}/{actorId}"),
            "the store fills only",
        ),
        (
            agentcore_store(mode="conversational", namespaceTemplate="/s/{sessionId}/{actorId}"),
            "before {actorId}",
        ),
        (
            agentcore_store(
                mode="conversational", namespaceTemplate="/s/{memoryStrategyId}/{actorId}"
            ),
            "before {actorId}",
        ),
        (agentcore_store(maxScan=0), "maxScan"),
        (agentcore_store(mode="graph"), "mode"),
    ],
)
def test_invalid_configs_name_the_problem(data: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        parse_config(data)


def test_yaml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("checkpointer:\n  backend: memory\n")
    (tmp_path / "c.json").write_text('{"checkpointer": {"backend": "memory"}}')
    assert load_config(tmp_path / "c.yaml") == load_config(tmp_path / "c.json")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("checkpointer: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML/JSON"):
        load_config(tmp_path / "bad.yaml")


# --- Valkey credentials ------------------------------------------------------------------

IAM = {"userId": "iam-user", "cacheName": "my-cache"}


def valkey_blocks(**settings: object) -> list[dict[str, object]]:
    """The same Valkey settings in the checkpointer, the store and the cache block."""
    return [
        {block: {"backend": "valkey", "valkey": settings}}
        for block in ("checkpointer", "store", "cache")
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "valkey://h:1/0", "passwordFile": "/run/secrets/valkey/password"},
        {"url": "valkey://agent@h", "passwordFile": "/p"},
        {"url": "valkey://h", "passwordFile": "/p", "usernameFile": "/u"},
        {"url": "valkeys://cache.example:6379", "iamAuth": IAM},
        {"url": "valkeys://c", "iamAuth": {**IAM, "region": "eu-west-1", "serverless": True}},
    ],
)
def test_valkey_credentials_outside_the_url(settings: dict[str, object]) -> None:
    for data in valkey_blocks(**settings):
        config = parse_config(data)
        block = config.checkpointer or config.store or config.cache
        assert block is not None
        assert block.valkey is not None
        assert block.valkey.password_file == settings.get("passwordFile")
        assert block.valkey.username_file == settings.get("usernameFile")
        iam = block.valkey.iam_auth
        assert (iam is not None) == ("iamAuth" in settings)
        assert iam is None or (iam.user_id, iam.cache_name) == ("iam-user", "my-cache")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (
            {"url": "valkey://:hunter2@h", "passwordFile": "/p"},
            "the url carries a password and passwordFile is given",
        ),
        (
            {"url": "valkeys://u:hunter2@h", "iamAuth": IAM},
            "the url carries a password and iamAuth is given",
        ),
        (
            {"url": "valkeys://h", "passwordFile": "/p", "iamAuth": IAM},
            "passwordFile and iamAuth are both given",
        ),
        ({"url": "valkey://h", "iamAuth": IAM}, "iamAuth needs a valkeys:// url, not valkey://"),
        ({"url": "valkeys://u@h", "iamAuth": IAM}, "iamAuth logs in as its userId"),
        ({"url": "valkey://h", "usernameFile": "/u"}, "usernameFile needs passwordFile"),
        (
            {"url": "valkey://u@h", "passwordFile": "/p", "usernameFile": "/u"},
            "the url names a user and usernameFile is given",
        ),
        ({"url": "valkey://h", "passwordFile": ""}, "passwordFile"),
        ({"url": "valkeys://h", "iamAuth": {"userId": "u"}}, "iamAuth.cacheName"),
        ({"url": "valkeys://h", "iamAuth": {**IAM, "role": "r"}}, "iamAuth.role"),
    ],
)
def test_contradicting_valkey_credentials_are_refused(
    settings: dict[str, object], fragment: str
) -> None:
    for data in valkey_blocks(**settings):
        with pytest.raises(ConfigError) as caught:
            parse_config(data)
        assert fragment in str(caught.value)
        assert "hunter2" not in str(caught.value)
