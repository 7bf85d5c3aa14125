"""The ConfigMap holds the sidecar's config resolved from the spec, and only that
(:mod:`...operator.spec`, :mod:`...operator.resources.sidecar_configmap`)."""

from __future__ import annotations

import pytest
import yaml

from agentpersistence.operator import naming
from agentpersistence.operator.resources.sidecar_configmap import Owner, render
from agentpersistence.operator.spec import InvalidSpec, MemoryPending, parse_spec, sidecar_config
from agentpersistence.sidecar.settings import SidecarConfig, parse_config

OWNER = Owner("agents", "support", "0b1e7a4c-0000-4000-8000-000000000001")
SPEC = {
    "deletionPolicy": "Delete",
    "serviceAccountName": "support-agent",
    "checkpointer": {
        "backend": "dynamodb",
        "dynamodb": {"tableName": "checkpoints", "s3Offload": {"bucketName": "payloads"}},
    },
    "store": {"backend": "valkey", "valkey": {"url": "valkey://v:6379"}, "index": {"dims": 8}},
    "agentcoreMemory": {"name": "support_memory"},
    "sidecar": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": 1}}},
}


def test_the_config_is_the_sidecars_blocks_with_defaults_filled_in() -> None:
    config = sidecar_config(parse_spec(SPEC))
    assert set(config) == {"checkpointer", "store"}
    dynamodb = config["checkpointer"]["dynamodb"]
    assert dynamodb["tableName"] == "checkpoints"
    assert dynamodb["s3Offload"] == {
        "bucketName": "payloads",
        "thresholdBytes": 350 * 1024,
        "keyPrefix": "agentpersistence/",
    }
    assert config["store"]["valkey"]["keyPrefix"] == "ap"
    assert config["store"]["index"]["dims"] == 8


def test_the_sidecar_reads_back_exactly_the_blocks_of_the_spec() -> None:
    spec = parse_spec(SPEC)
    configmap = render(spec, OWNER)
    read = parse_config(yaml.safe_load(configmap["data"][naming.CONFIG_KEY]))
    assert read == SidecarConfig.model_validate(spec.model_dump(include={"checkpointer", "store"}))


def test_operator_fields_stay_out_of_the_sidecars_file() -> None:
    text = render(parse_spec(SPEC), OWNER)["data"][naming.CONFIG_KEY]
    for field in ("deletionPolicy", "serviceAccountName", "agentcoreMemory", "sidecar:"):
        assert field not in text


def test_the_configmap_is_named_labelled_and_owned_by_the_resource() -> None:
    configmap = render(parse_spec(SPEC), OWNER)
    metadata = configmap["metadata"]
    assert metadata["name"] == "support-sidecar-config"
    assert metadata["namespace"] == "agents"
    assert metadata["labels"] == {
        "app.kubernetes.io/managed-by": naming.FIELD_MANAGER,
        "agentpersistence.io/name": "support",
    }
    assert metadata["ownerReferences"] == [
        {
            "apiVersion": "agentpersistence.io/v1alpha1",
            "kind": "AgentPersistence",
            "name": "support",
            "uid": OWNER.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_rendering_is_deterministic() -> None:
    assert render(parse_spec(SPEC), OWNER) == render(parse_spec(dict(SPEC)), OWNER)


def test_the_sidecars_own_validation_applies_to_the_spec() -> None:
    with pytest.raises(InvalidSpec, match="keep only the block of the chosen backend"):
        parse_spec({"cache": {"backend": "memory", "valkey": {"url": "valkey://v"}}})
    with pytest.raises(InvalidSpec, match="configure at least one block"):
        parse_spec({"deletionPolicy": "Retain"})
    with pytest.raises(InvalidSpec, match=r"spec\.agentcoreMemory\.eventExpiryDays"):
        parse_spec(SPEC | {"agentcoreMemory": {"name": "m", "eventExpiryDays": 1}})


MEMORY_ARN = "arn:aws:bedrock-agentcore:eu-west-1:123456789012:memory/support_memory-a1B2c3D4e5"


def test_a_store_on_agentcore_memory_without_a_memory_id_gets_the_provisioned_one() -> None:
    """The store block, like the checkpointer's, names the memory the operator provisions;
    its own settings are kept, and a block that names a memory keeps it."""
    spec = parse_spec(
        SPEC
        | {
            "store": {
                "backend": "agentcore-memory",
                "agentcoreMemory": {"mode": "records", "maxScan": 500},
            }
        }
    )
    assert spec.unnamed_memories() == ["store"]
    with pytest.raises(MemoryPending, match="store waits for the AgentCore Memory"):
        sidecar_config(spec)
    block = sidecar_config(spec, MEMORY_ARN)["store"]["agentcoreMemory"]
    assert (block["memoryId"], block["region"]) == ("support_memory-a1B2c3D4e5", "eu-west-1")
    assert (block["mode"], block["maxScan"]) == ("records", 500)
    no_block = parse_spec(SPEC | {"store": {"backend": "agentcore-memory"}})
    store = sidecar_config(no_block, MEMORY_ARN)["store"]
    assert store["agentcoreMemory"]["memoryId"] == "support_memory-a1B2c3D4e5"
    named = {"backend": "agentcore-memory", "agentcoreMemory": {"memoryId": "other-0123456789"}}
    kept = sidecar_config(parse_spec(SPEC | {"store": named}), MEMORY_ARN)["store"]
    assert kept["agentcoreMemory"]["memoryId"] == "other-0123456789"
    without_memory = {k: v for k, v in SPEC.items() if k != "agentcoreMemory"}
    with pytest.raises(InvalidSpec, match=r"store\.agentcoreMemory\.memoryId"):
        parse_spec(without_memory | {"store": {"backend": "agentcore-memory"}})


@pytest.mark.parametrize(
    ("sidecar", "where"),
    [
        (
            {"awsIdentity": {"roleArn": "arn:aws:iam::12:role/x"}},
            "spec.sidecar.awsIdentity.roleArn",
        ),
        ({"awsIdentity": {}}, "spec.sidecar.awsIdentity.roleArn"),
        ({"allowedPeers": {"uids": ["root"]}}, "spec.sidecar.allowedPeers.uids.0"),
    ],
)
def test_bad_sidecar_identity_and_peers_are_refused_naming_the_field(
    sidecar: dict[str, object], where: str
) -> None:
    with pytest.raises(InvalidSpec, match=where.replace(".", r"\.")):
        parse_spec({"checkpointer": {"backend": "memory"}, "sidecar": sidecar})


VALKEY = {"backend": "valkey", "valkey": {"url": "valkey://vk:6379"}}
CREDENTIALS = {"secretName": "vk-auth", "usernameKey": "user"}


def test_valkey_credentials_become_files_in_every_valkey_block_and_never_a_password() -> None:
    spec = parse_spec({"checkpointer": VALKEY, "cache": VALKEY, "valkeyCredentials": CREDENTIALS})
    config = sidecar_config(spec)
    for block in ("checkpointer", "cache"):
        valkey = config[block]["valkey"]
        assert valkey["passwordFile"] == naming.VALKEY_PASSWORD_FILE
        assert valkey["usernameFile"] == naming.VALKEY_USERNAME_FILE
    assert "vk-auth" not in yaml.safe_dump(config)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"checkpointer": {"backend": "memory"}}, "no checkpointer, store or cache uses"),
        (
            {"checkpointer": {**VALKEY, "valkey": {"url": "valkey://:pw@vk:6379"}}},
            "checkpointer.valkey.url carries a password",
        ),
        (
            {"checkpointer": {**VALKEY, "valkey": {"url": "valkey://vk", "passwordFile": "/p"}}},
            "checkpointer.valkey.passwordFile and valkeyCredentials are both set",
        ),
        ({"checkpointer": VALKEY, "valkeyCredentials": {"secretName": "Bad_Name"}}, "secretName"),
    ],
)
def test_bad_valkey_credentials_are_refused_saying_what_to_change(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSpec, match=message.replace(".", r"\.")):
        parse_spec({"valkeyCredentials": CREDENTIALS} | spec)


def test_existing_storage_needs_adopt_existing_as_a_boolean() -> None:
    assert parse_spec({"checkpointer": {"backend": "memory"}}).adopt_existing is False
    with pytest.raises(InvalidSpec, match=r"spec\.adoptExisting"):
        parse_spec({"checkpointer": {"backend": "memory"}, "adoptExisting": "maybe"})
