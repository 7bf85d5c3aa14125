"""The operator on a real API server provisions, keeps and releases the storage a CR describes.

Backends: DynamoDB Local (table), moto (S3 bucket), the AgentCore emulator (memories), Valkey
with RediSearch (the store's index). One ``AgentPersistence`` with every kind of storage goes
through its life in order: Ready with outputs, the storage as the backends define it, a
second reconcile that changes nothing, drift reported then repaired, deletion with
``Retain``. Other tests cover ``Delete`` and a terminal error; ``test_storage_ownership`` covers
adoption and a second claimant.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agentpersistence.client import SidecarSaver
from agentpersistence.operator import naming
from agentpersistence.sidecar.backends.dynamodb import schema as dynamodb_schema
from agentpersistence.sidecar.settings import parse_config
from rig.operator import REGION, Backends, Cluster, aws_clients, eventually, ft_info
from rig.provisioned import (
    CHANGES,
    DIMS,
    TTL_SECONDS,
    Names,
    bucket_exists,
    full_spec,
    manifest,
    memory_named,
    request_reconcile,
    table_exists,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("operator")]


async def snapshot(backends: Backends, names: Names) -> dict[str, Any]:
    """Everything observable about the storage (to compare before and after a reconcile)."""
    async with aws_clients(backends) as aws:
        table = (await aws.dynamodb.describe_table(TableName=names.table))["Table"]
        ttl = await aws.dynamodb.describe_time_to_live(TableName=names.table)
        lifecycle = await aws.s3.get_bucket_lifecycle_configuration(Bucket=names.bucket)
        encryption = await aws.s3.get_bucket_encryption(Bucket=names.bucket)
        public = await aws.s3.get_public_access_block(Bucket=names.bucket)
        memories = [
            summary
            async for page in aws.agentcore.get_paginator("list_memories").paginate()
            for summary in page["memories"]
        ]
    return {
        "table": table,
        "ttl": ttl["TimeToLiveDescription"],
        "lifecycle": lifecycle["Rules"],
        "encryption": encryption["ServerSideEncryptionConfiguration"],
        "public": public["PublicAccessBlockConfiguration"],
        "memories": memories,
        "index": stable_index_info(backends, names),
    }


def stable_index_info(backends: Backends, names: Names) -> dict[str, Any] | None:
    """The index's definition and size (FT.INFO also counts its own uses and timings)."""
    info = ft_info(backends.valkey_url, names.index)
    if info is None:
        return None
    return {key: info.get(key) for key in ("index_definition", "attributes", "num_docs")}


# --------------------------------------------------------------------------- one life


@pytest.fixture(scope="module")
def retained(cluster: Cluster, backends: Backends) -> Iterator[Names]:
    """A resource with every kind of storage and ``deletionPolicy: Retain``, applied once."""
    names = Names.fresh()
    cluster.apply(manifest(cluster.namespace, names.resource, full_spec(names, backends, "Retain")))
    yield names
    if cluster.get(names.resource) is not None:
        cluster.delete(names.resource)


def test_resource_becomes_ready_with_outputs(cluster: Cluster, retained: Names) -> None:
    ready = cluster.wait_condition(retained.resource, "Ready", "True")
    body = cluster.must_get(retained.resource)
    status = body["status"]
    assert ready["observedGeneration"] == body["metadata"]["generation"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert cluster.status_of(retained.resource, "Synced") == "True"
    assert cluster.status_of(retained.resource, "Terminal") == "False"
    outputs = status["outputs"]
    assert outputs["tableName"] == retained.table
    assert outputs["tableArn"].endswith(f":table/{retained.table}")
    assert outputs["bucketName"] == retained.bucket
    assert outputs["bucketArn"] == f"arn:aws:s3:::{retained.bucket}"
    assert outputs["indexName"] == retained.index
    assert outputs["memoryId"]
    assert outputs["memoryArn"].endswith(outputs["memoryId"])
    assert outputs["configMapName"] == naming.sidecar_configmap(retained.resource)
    created = {e["message"] for e in cluster.events(retained.resource) if e["reason"] == "Created"}
    assert any(retained.table in message for message in created)


async def test_storage_is_what_the_backends_define(
    cluster: Cluster, backends: Backends, retained: Names
) -> None:
    cluster.wait_condition(retained.resource, "Ready", "True")
    found = await snapshot(backends, retained)
    keys = [(k["AttributeName"], k["KeyType"]) for k in found["table"]["KeySchema"]]
    wanted = dynamodb_schema.table_definition(retained.table)["KeySchema"]
    assert keys == [(k["AttributeName"], k["KeyType"]) for k in wanted]
    assert found["ttl"]["TimeToLiveStatus"] in ("ENABLED", "ENABLING")
    assert found["ttl"]["AttributeName"] == dynamodb_schema.EXPIRES
    assert [r["ID"] for r in found["lifecycle"]] == [
        dynamodb_schema.lifecycle_rule(TTL_SECONDS)["ID"]
    ]
    assert found["public"] == dynamodb_schema.PUBLIC_ACCESS_BLOCK
    assert found["index"] is not None, "FT.INFO found no index"
    memory = await memory_named(backends, retained.memory)
    assert memory is not None
    assert memory["status"] == "ACTIVE"
    assert memory["eventExpiryDuration"] == 30
    assert cluster.must_get(retained.resource)["status"]["outputs"]["memoryId"] == memory["id"]


def test_configmap_holds_the_resolved_sidecar_config(cluster: Cluster, retained: Names) -> None:
    cluster.wait_condition(retained.resource, "Ready", "True")
    configmap = cluster.configmap(naming.sidecar_configmap(retained.resource))
    assert configmap is not None
    owner = cluster.must_get(retained.resource)["metadata"]["uid"]
    assert [r["uid"] for r in configmap["metadata"]["ownerReferences"]] == [owner]
    config = parse_config(yaml.safe_load(configmap["data"][naming.CONFIG_KEY]))
    assert config.checkpointer is not None
    assert config.checkpointer.dynamodb is not None
    assert config.checkpointer.dynamodb.table_name == retained.table
    assert config.store is not None
    assert config.store.index is not None
    assert config.store.index.dims == DIMS
    text = configmap["data"][naming.CONFIG_KEY]
    assert "agentcoreMemory" not in text
    assert "deletionPolicy" not in text


async def test_a_second_reconcile_changes_nothing(
    cluster: Cluster, backends: Backends, retained: Names
) -> None:
    cluster.wait_condition(retained.resource, "Ready", "True")
    before = cluster.must_get(retained.resource)
    storage_before = await snapshot(backends, retained)
    configmap = naming.sidecar_configmap(retained.resource)
    version_before = cluster.configmap_version(configmap)
    changes_before = sum(r in CHANGES for r in cluster.reasons(retained.resource))

    request_reconcile(cluster, retained.resource)

    after = cluster.must_get(retained.resource)
    assert after["status"] == before["status"]  # conditions keep their transition times
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert await snapshot(backends, retained) == storage_before
    assert cluster.configmap_version(configmap) == version_before
    assert sum(r in CHANGES for r in cluster.reasons(retained.resource)) == changes_before


async def test_a_spec_change_updates_the_storage_in_place(
    cluster: Cluster, backends: Backends, retained: Names
) -> None:
    cluster.wait_condition(retained.resource, "Synced", "True")
    memory_id = cluster.must_get(retained.resource)["status"]["outputs"]["memoryId"]
    patch = json.dumps({"spec": {"agentcoreMemory": {"eventExpiryDays": 60}}})
    cluster.kube.kubectl(
        "patch", naming.CRD_NAME, retained.resource, "-n", cluster.namespace, "--type=merge",
        f"--patch={patch}",
    )  # fmt: skip

    def reconciled() -> bool:
        status = cluster.must_get(retained.resource).get("status", {})
        return bool(status.get("observedGeneration") == 2)

    eventually(reconciled, "generation 2 to be reconciled")
    synced = cluster.wait_condition(retained.resource, "Synced", "True")
    assert synced["observedGeneration"] == 2
    memory = await memory_named(backends, retained.memory)
    assert memory is not None
    assert (memory["id"], memory["eventExpiryDuration"]) == (memory_id, 60)
    updates = [e["message"] for e in cluster.events(retained.resource) if e["reason"] == "Updated"]
    assert any("keeps events 30 days (want 60)" in message for message in updates)


async def test_drift_is_reported_and_a_reconcile_repairs_it(
    cluster: Cluster, backends: Backends, retained: Names
) -> None:
    cluster.wait_condition(retained.resource, "Synced", "True")
    async with aws_clients(backends) as aws:
        await aws.s3.delete_bucket_lifecycle(Bucket=retained.bucket)

    drifted = cluster.wait_condition(retained.resource, "Synced", "False", "Drifted")
    assert "lifecycle rule" in drifted["message"]
    assert cluster.status_of(retained.resource, "Ready") == "True"
    assert "Drifted" in cluster.reasons(retained.resource)

    request_reconcile(cluster, retained.resource)
    cluster.wait_condition(retained.resource, "Synced", "True")
    async with aws_clients(backends) as aws:
        rules = await aws.s3.get_bucket_lifecycle_configuration(Bucket=retained.bucket)
    assert [r["ID"] for r in rules["Rules"]] == [dynamodb_schema.lifecycle_rule(TTL_SECONDS)["ID"]]


async def test_deleting_with_retain_keeps_the_storage(
    cluster: Cluster, backends: Backends, retained: Names
) -> None:
    cluster.wait_condition(retained.resource, "Ready", "True")
    cluster.delete(retained.resource)
    cluster.wait_gone(retained.resource)
    assert await table_exists(backends, retained.table)
    assert await bucket_exists(backends, retained.bucket)
    assert ft_info(backends.valkey_url, retained.index) is not None
    assert await memory_named(backends, retained.memory) is not None
    assert cluster.configmap(naming.sidecar_configmap(retained.resource)) is None
    assert "Retained" in cluster.reasons(retained.resource)


# --------------------------------------------------------------------------- other lives


async def test_delete_policy_removes_the_storage_the_resource_created(
    cluster: Cluster, backends: Backends
) -> None:
    names = Names.fresh()
    cluster.apply(manifest(cluster.namespace, names.resource, full_spec(names, backends, "Delete")))
    cluster.wait_condition(names.resource, "Ready", "True")

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    assert not await table_exists(backends, names.table)
    assert not await bucket_exists(backends, names.bucket)
    assert ft_info(backends.valkey_url, names.index) is None
    assert await memory_named(backends, names.memory) is None
    assert cluster.configmap(naming.sidecar_configmap(names.resource)) is None


async def test_a_table_with_other_keys_is_a_terminal_error_and_is_never_deleted(
    cluster: Cluster, backends: Backends
) -> None:
    names = Names.fresh()
    async with aws_clients(backends) as aws:
        await aws.dynamodb.create_table(
            TableName=names.table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    checkpointer = {"backend": "dynamodb", "dynamodb": {"tableName": names.table}}
    spec = {"deletionPolicy": "Delete", "adoptExisting": True, "checkpointer": checkpointer}
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    terminal = cluster.wait_condition(names.resource, "Terminal", "True", "TableNotAdoptable")
    assert "id (HASH)" in terminal["message"]
    assert "choose another tableName" in terminal["message"]
    assert cluster.status_of(names.resource, "Ready") == "False"
    assert "TableNotAdoptable" in cluster.reasons(names.resource)
    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    assert await table_exists(backends, names.table)  # never adopted: never deleted
    retained = [e["message"] for e in cluster.events(names.resource) if e["reason"] == "Retained"]
    assert retained == [f"Retained DynamoDB table {names.table} (never provisioned or adopted)"]


# --------------------------------------------------------------------------- agentcore-memory


def test_a_checkpointer_on_the_provisioned_memory_gets_its_id_and_serves(
    cluster: Cluster, backends: Backends, sidecar_factory: Any
) -> None:
    """``checkpointer.backend: agentcore-memory`` without a memoryId: the operator names the
    memory it provisioned in the ConfigMap, and a sidecar started on that file serves."""
    names = Names.fresh()
    spec = {
        "deletionPolicy": "Delete",
        "checkpointer": {"backend": "agentcore-memory"},
        "agentcoreMemory": {"name": names.memory},
    }
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    cluster.wait_condition(names.resource, "Ready", "True")
    outputs = cluster.must_get(names.resource)["status"]["outputs"]
    configmap = cluster.configmap(naming.sidecar_configmap(names.resource))
    assert configmap is not None
    config = yaml.safe_load(configmap["data"][naming.CONFIG_KEY])
    block = config["checkpointer"]["agentcoreMemory"]
    assert block["memoryId"] == outputs["memoryId"]
    assert block["region"] == REGION

    sidecar = sidecar_factory(config, env=backends.env())
    with SidecarSaver(sidecar.socket) as saver:
        thread: RunnableConfig = {"configurable": {"thread_id": "t-1", "checkpoint_ns": ""}}
        stored = saver.put(thread, empty_checkpoint(), {"step": 0}, {})
        found = saver.get_tuple(thread)
    assert found is not None
    assert found.config == stored

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)


# --------------------------------------------------------------------------- ownership


def test_a_configmap_the_operator_did_not_create_is_never_taken_over(cluster: Cluster) -> None:
    names = Names.fresh()
    configmap_name = naming.sidecar_configmap(names.resource)
    theirs = {"sidecar.yaml": "someone else's file\n"}
    cluster.kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": configmap_name, "namespace": cluster.namespace},
            "data": theirs,
        }
    )
    spec = {"checkpointer": {"backend": "memory"}}
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    terminal = cluster.wait_condition(names.resource, "Terminal", "True", "ConfigMapNotOwned")
    assert "never takes it over" in terminal["message"]
    assert cluster.status_of(names.resource, "Ready") == "False"
    found = cluster.configmap(configmap_name)
    assert found is not None
    assert found["data"] == theirs
    assert "ownerReferences" not in found["metadata"]

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    after = cluster.configmap(configmap_name)
    assert after is not None
    assert after["data"] == theirs
    retained = [e["message"] for e in cluster.events(names.resource) if e["reason"] == "Retained"]
    assert retained == [f"Retained ConfigMap {configmap_name} (not this resource's)"]
