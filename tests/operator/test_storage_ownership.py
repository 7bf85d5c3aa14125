"""Storage belongs to the resource that created it: adoption only when asked, a second
claimant refused naming the owner, deletion only of what a resource created.

On the real control plane with the operator, DynamoDB Local, moto's S3, the AgentCore
emulator and Valkey with RediSearch. The claims are read where the operator keeps them (the
table's claim item, the bucket's and the memory's tags, the index's ``:owner`` key), so every
check here could fail on a wrong claim, not only on a wrong condition.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import valkey
from botocore.exceptions import ClientError

from agentpersistence.operator import naming
from agentpersistence.sidecar.backends.dynamodb import schema as dynamodb_schema
from agentpersistence.sidecar.backends.valkey import store_schema
from agentpersistence.sidecar.settings import IndexSettings, ValkeyStoreSettings
from rig.operator import Backends, Cluster, aws_clients, ft_info
from rig.provisioned import (
    Names,
    bucket_exists,
    full_spec,
    manifest,
    memory_named,
    request_reconcile,
    table_exists,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("operator")]


async def claims(backends: Backends, names: Names) -> dict[str, Any]:
    """Each piece of storage's claim, as stored (None where there is none)."""
    async with aws_clients(backends) as aws:
        item = await aws.dynamodb.get_item(
            TableName=names.table,
            Key={"PK": {"S": dynamodb_schema.CLAIM_PK}, "SK": {"S": dynamodb_schema.CLAIM_SK}},
            ConsistentRead=True,
        )
        try:
            tagging = await aws.s3.get_bucket_tagging(Bucket=names.bucket)
            bucket_tags = {t["Key"]: t["Value"] for t in tagging["TagSet"]}
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchTagSet":
                raise
            bucket_tags = {}
    memory = await memory_named(backends, names.memory)
    assert memory is not None
    async with aws_clients(backends) as aws:
        memory_tags = (await aws.agentcore.list_tags_for_resource(resourceArn=memory["arn"]))[
            "tags"
        ]
    with valkey.Valkey.from_url(backends.valkey_url) as client:
        marker = client.get(f"{names.index}:owner")
    return {
        "table": {k: v["S"] for k, v in item.get("Item", {}).items() if k not in ("PK", "SK")},
        "bucket": {k: v for k, v in bucket_tags.items() if k.startswith(naming.GROUP)},
        "memory": {k: v for k, v in memory_tags.items() if k.startswith(naming.GROUP)},
        "index": json.loads(marker) if marker else {},
    }


def claim_of(cluster: Cluster, name: str, kind: str) -> dict[str, str]:
    uid = cluster.must_get(name)["metadata"]["uid"]
    return {
        f"{naming.GROUP}/owner-uid": uid,
        f"{naming.GROUP}/owner": f"{cluster.namespace}/{name}",
        f"{naming.GROUP}/claim": kind,
    }


async def make_storage(backends: Backends, names: Names) -> None:
    """Every kind of storage, made outside the operator (as a platform team's earlier tool
    would have), each with the definition the backends expect."""
    async with aws_clients(backends) as aws:
        await aws.dynamodb.create_table(**dynamodb_schema.table_definition(names.table))
        await aws.s3.create_bucket(Bucket=names.bucket)
        await aws.agentcore.create_memory(name=names.memory, eventExpiryDuration=30)
    settings = ValkeyStoreSettings(url=backends.valkey_url, key_prefix=names.prefix)
    client = valkey.asyncio.Valkey.from_url(backends.valkey_url)
    async with client:
        await store_schema.ensure_index(client, settings, IndexSettings(dims=8))


async def all_exist(backends: Backends, names: Names) -> bool:
    return (
        await table_exists(backends, names.table)
        and await bucket_exists(backends, names.bucket)
        and ft_info(backends.valkey_url, names.index) is not None
        and await memory_named(backends, names.memory) is not None
    )


def retained_messages(cluster: Cluster, name: str) -> list[str]:
    return [e["message"] for e in cluster.events(name) if e["reason"] == "Retained"]


async def test_existing_storage_is_adopted_only_when_asked_and_survives_delete(
    cluster: Cluster, backends: Backends
) -> None:
    names = Names.fresh()
    await make_storage(backends, names)
    unclaimed = await claims(backends, names)
    assert unclaimed == {"table": {}, "bucket": {}, "memory": {}, "index": {}}

    spec = full_spec(names, backends, "Delete")
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    refused = cluster.wait_condition(names.resource, "Terminal", "True", "AdoptionRefused")
    assert f"DynamoDB table {names.table} exists" in refused["message"]
    assert "set spec.adoptExisting: true" in refused["message"]
    assert cluster.status_of(names.resource, "Ready") == "False"
    assert await claims(backends, names) == unclaimed
    assert cluster.configmap(naming.sidecar_configmap(names.resource)) is None

    cluster.apply(manifest(cluster.namespace, names.resource, {**spec, "adoptExisting": True}))
    cluster.wait_condition(names.resource, "Ready", "True")
    adopted = claim_of(cluster, names.resource, "adopted")
    assert await claims(backends, names) == dict.fromkeys(unclaimed, adopted)
    events = [e["message"] for e in cluster.events(names.resource) if e["reason"] == "Adopted"]
    for storage in (names.table, names.bucket, names.index, names.memory):
        assert any(storage in message for message in events), (storage, events)

    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    assert await all_exist(backends, names)  # deletionPolicy: Delete spares adopted storage
    assert await claims(backends, names) == unclaimed  # and lets go of it
    retained = retained_messages(cluster, names.resource)
    assert f"Retained DynamoDB table {names.table} (adopted)" in retained
    assert len([m for m in retained if m.endswith("(adopted)")]) == 4


async def test_a_second_resource_claiming_owned_storage_is_refused_and_changes_nothing(
    cluster: Cluster, backends: Backends
) -> None:
    names = Names.fresh()
    spec = full_spec(names, backends, "Delete")
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    cluster.wait_condition(names.resource, "Ready", "True")
    owned = await claims(backends, names)
    assert owned == dict.fromkeys(owned, claim_of(cluster, names.resource, "created"))
    configmap_version = cluster.configmap_version(naming.sidecar_configmap(names.resource))

    intruder = f"{names.resource}-two"
    greedy = {**spec, "adoptExisting": True, "cache": {"backend": "memory"}}
    cluster.apply(manifest(cluster.namespace, intruder, greedy))
    refused = cluster.wait_condition(intruder, "Terminal", "True", "OwnedByAnother")
    owner_uid = cluster.must_get(names.resource)["metadata"]["uid"]
    assert f"belongs to AgentPersistence {cluster.namespace}/{names.resource}" in refused["message"]
    assert owner_uid in refused["message"]
    assert await claims(backends, names) == owned
    assert cluster.configmap(naming.sidecar_configmap(intruder)) is None

    cluster.delete(intruder)  # its deletionPolicy: Delete must not touch the owner's storage
    cluster.wait_gone(intruder)
    assert await all_exist(backends, names)
    assert await claims(backends, names) == owned
    assert all(
        m.endswith("(never provisioned or adopted)") for m in retained_messages(cluster, intruder)
    )

    request_reconcile(cluster, names.resource)  # the owner keeps working
    assert cluster.status_of(names.resource, "Synced") == "True"
    assert cluster.status_of(names.resource, "Ready") == "True"
    assert cluster.configmap_version(naming.sidecar_configmap(names.resource)) == configmap_version
    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    assert not await table_exists(backends, names.table)
    assert not await bucket_exists(backends, names.bucket)
    assert ft_info(backends.valkey_url, names.index) is None
    assert await memory_named(backends, names.memory) is None


async def test_storage_retained_by_a_deleted_resource_is_adopted_only_when_asked(
    cluster: Cluster, backends: Backends
) -> None:
    names = Names.fresh()
    spec = full_spec(names, backends, "Retain")
    cluster.apply(manifest(cluster.namespace, names.resource, spec))
    cluster.wait_condition(names.resource, "Ready", "True")
    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
    released = await claims(backends, names)
    assert released == {"table": {}, "bucket": {}, "memory": {}, "index": {}}

    cluster.apply(manifest(cluster.namespace, names.resource, spec))  # same name, new uid
    cluster.wait_condition(names.resource, "Terminal", "True", "AdoptionRefused")
    cluster.apply(manifest(cluster.namespace, names.resource, {**spec, "adoptExisting": True}))
    cluster.wait_condition(names.resource, "Ready", "True")
    adopted = claim_of(cluster, names.resource, "adopted")
    assert await claims(backends, names) == dict.fromkeys(released, adopted)
    cluster.delete(names.resource)
    cluster.wait_gone(names.resource)
