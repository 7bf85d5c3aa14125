"""The operator killed mid-reconcile resumes: it reaches Ready without duplicating storage,
and deleting the resource afterwards leaves nothing behind.

On the real control plane with DynamoDB Local, moto's S3, the AgentCore emulator and Valkey
with RediSearch. The operator runs under :mod:`rig.operator_hold`, which stops it right after
a chosen AWS call has been answered (the table created, the bucket created, the bucket's
claim written, the memory created); the test waits for those calls, checks the storage is in
the half-done state it names, SIGKILLs the operator and starts a new one. The same is done
during deletion (a memory deleted, a bucket deleted, the rest not yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import valkey
from botocore.exceptions import ClientError

from agentpersistence.operator import naming, ownership
from agentpersistence.sidecar.backends.dynamodb import schema as dynamodb_schema
from rig.kube import KubeControlPlane
from rig.operator import (
    AwsClients,
    Backends,
    Cluster,
    OperatorLogReporter,
    OperatorProcess,
    aws_clients,
    backends,
    cluster,
    crd,
    eventually,
    ft_info,
    namespace,
    start_operator,
)
from rig.provisioned import Names, full_spec, manifest

__all__ = ["backends", "cluster", "crd", "namespace"]

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("crd")]

CONTROL = "bedrock-agentcore-control"


Launch = Callable[[Path, Sequence[tuple[str, str]]], OperatorProcess]


@pytest.fixture
def launch(
    kube_control_plane: KubeControlPlane,
    cluster: Cluster,
    backends: Backends,
    pytestconfig: pytest.Config,
) -> Iterator[Launch]:
    """Starts operators watching the namespace, each held at the ``(event, name)`` calls
    given (see :mod:`rig.operator_hold`); every one is stopped at the end, and its log tail
    added to the report of a failure."""
    started: list[tuple[OperatorProcess, str]] = []

    def start(workdir: Path, holds: Sequence[tuple[str, str]] = ()) -> OperatorProcess:
        workdir.mkdir()
        specs = [{"event": event, "name": name} for event, name in holds]
        process = start_operator(
            kube_control_plane, cluster.namespace, backends, workdir, holds=specs
        )
        plugin = f"replay-operator-log-{workdir.name}"
        pytestconfig.pluginmanager.register(OperatorLogReporter(process, "launch"), plugin)
        started.append((process, plugin))
        return process

    yield start
    for process, plugin in started:
        process.stop()
        pytestconfig.pluginmanager.unregister(name=plugin)


def held(operator: OperatorProcess, workdir: Path, count: int) -> None:
    """Wait until each of the operator's ``count`` holds has stopped its call."""

    def all_held() -> bool:
        operator.healthy()  # fails the test at once if the operator exited
        return all((workdir / f"{position}.held").exists() for position in range(count))

    eventually(all_held, f"the operator to reach its {count} holds")


class Storage:
    """What exists on the local servers, read through one set of clients."""

    def __init__(self, aws: AwsClients, backends: Backends) -> None:
        self.aws = aws
        self.valkey_url = backends.valkey_url

    async def table_exists(self, names: Names) -> bool:
        try:
            await self.aws.dynamodb.describe_table(TableName=names.table)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
        return True

    async def bucket_exists(self, names: Names) -> bool:
        try:
            await self.aws.s3.head_bucket(Bucket=names.bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchBucket"):
                return False
            raise
        return True

    def index_exists(self, names: Names) -> bool:
        return ft_info(self.valkey_url, names.index) is not None

    async def memories(self, names: Names) -> list[dict[str, Any]]:
        """Every memory named ``names.memory``, whatever its status (a duplicate would show
        here). The emulator's ids start with the name, as AgentCore's do."""
        found = []
        async for page in self.aws.agentcore.get_paginator("list_memories").paginate():
            for summary in page["memories"]:
                if summary["id"].startswith(f"{names.memory}-"):
                    memory = await self.aws.agentcore.get_memory(memoryId=summary["id"])
                    found.append(dict(memory["memory"]))
        return [m for m in found if m.get("name") == names.memory]

    async def live_memory(self, names: Names) -> dict[str, Any] | None:
        live = [m for m in await self.memories(names) if m["status"] != "DELETING"]
        assert len(live) <= 1, live
        return live[0] if live else None

    async def claims(self, names: Names) -> dict[str, dict[str, str]]:
        """The claim of each piece of storage, where the operator keeps it ({} where none)."""
        item = await self.aws.dynamodb.get_item(
            TableName=names.table,
            Key={"PK": {"S": dynamodb_schema.CLAIM_PK}, "SK": {"S": dynamodb_schema.CLAIM_SK}},
            ConsistentRead=True,
        )
        table = {k: v["S"] for k, v in item.get("Item", {}).items() if k not in ("PK", "SK")}
        memory = await self.live_memory(names)
        memory_tags = {}
        if memory is not None:
            found = await self.aws.agentcore.list_tags_for_resource(resourceArn=memory["arn"])
            memory_tags = dict(found["tags"])
        with valkey.Valkey.from_url(self.valkey_url) as client:
            marker = client.get(f"{names.index}:owner")
        return {
            "table": table,
            "bucket": ours(await self.bucket_tags(names)),
            "memory": ours(memory_tags),
            "index": json.loads(marker) if marker else {},
        }

    async def bucket_tags(self, names: Names) -> dict[str, str]:
        try:
            tagging = await self.aws.s3.get_bucket_tagging(Bucket=names.bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchTagSet", "NoSuchBucket"):
                return {}
            raise
        return {t["Key"]: t["Value"] for t in tagging["TagSet"]}


def ours(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith(naming.GROUP)}


def claim_of(cluster: Cluster, name: str) -> dict[str, str]:
    return {
        f"{naming.GROUP}/owner-uid": cluster.must_get(name)["metadata"]["uid"],
        f"{naming.GROUP}/owner": f"{cluster.namespace}/{name}",
        f"{naming.GROUP}/claim": "created",
    }


async def test_an_operator_killed_mid_reconcile_resumes_without_duplicating_or_leaking(
    cluster: Cluster,
    backends: Backends,
    launch: Launch,
    tmp_path: Path,
) -> None:
    async with aws_clients(backends) as aws:
        await replayed(cluster, backends, launch, tmp_path, Storage(aws, backends))


async def replayed(
    cluster: Cluster, backends: Backends, launch: Launch, tmp_path: Path, storage: Storage
) -> None:
    table_made, bucket_made, bucket_claimed, memory_made = (Names.fresh() for _ in range(4))
    every = (table_made, bucket_made, bucket_claimed, memory_made)
    first = launch(
        tmp_path / "first",
        [
            ("after-call.dynamodb.CreateTable", table_made.table),
            ("after-call.s3.CreateBucket", bucket_made.bucket),
            ("after-call.s3.PutBucketTagging", bucket_claimed.bucket),
            (f"after-call.{CONTROL}.CreateMemory", memory_made.memory),
        ],
    )  # fmt: skip
    for names in every:
        spec = full_spec(names, backends, "Delete")
        cluster.apply(manifest(cluster.namespace, names.resource, spec))
    held(first, tmp_path / "first", 4)

    # Each resource is stopped where its hold says, with nothing reported yet.
    assert await storage.table_exists(table_made)
    assert (await storage.claims(table_made))["table"] == {}
    assert not await storage.bucket_exists(table_made)
    assert await storage.bucket_exists(bucket_made)
    assert await storage.bucket_tags(bucket_made) == {}
    claimed = await storage.bucket_tags(bucket_claimed)
    assert ours(claimed) == claim_of(cluster, bucket_claimed.resource)
    assert await storage.memories(bucket_claimed) == []
    assert await storage.live_memory(memory_made) is not None
    for names in every:
        assert cluster.must_get(names.resource).get("status", {}).get("outputs") is None
    first.kill()

    second = launch(
        tmp_path / "second",
        [
            (f"after-call.{CONTROL}.DeleteMemory", table_made.memory),
            ("after-call.s3.DeleteBucket", bucket_made.bucket),
        ],
    )  # fmt: skip
    for names in every:
        cluster.wait_condition(names.resource, "Ready", "True")
        found = cluster.must_get(names.resource)
        outputs = found["status"]["outputs"]
        memories = await storage.memories(names)
        assert [m["status"] for m in memories] == ["ACTIVE"], names
        assert outputs["memoryId"] == memories[0]["id"]
        assert (outputs["tableName"], outputs["bucketName"]) == (names.table, names.bucket)
        assert storage.index_exists(names)
        created = claim_of(cluster, names.resource)
        assert await storage.claims(names) == dict.fromkeys(
            ("table", "bucket", "memory", "index"), created
        ), names
        annotations = found["metadata"].get("annotations", {})
        assert ownership.INTENT_ANNOTATION not in annotations, annotations
        reasons = cluster.reasons(names.resource)
        assert not {"AdoptionRefused", "ClaimChanged"} & set(reasons), reasons

    # Deletion stopped halfway: a memory deleted (the rest not), a bucket deleted (not its table).
    for names in every:
        cluster.delete(names.resource)
    held(second, tmp_path / "second", 2)
    assert await storage.live_memory(table_made) is None
    assert await storage.table_exists(table_made)
    assert not await storage.bucket_exists(bucket_made)
    assert await storage.table_exists(bucket_made)
    second.kill()

    launch(tmp_path / "third", ())
    for names in every:
        cluster.wait_gone(names.resource)
    for names in every:
        assert not await storage.table_exists(names), names
        assert not await storage.bucket_exists(names), names
        assert not storage.index_exists(names), names
        assert await storage.live_memory(names) is None, names
        assert len(await storage.memories(names)) <= 1, names
    with valkey.Valkey.from_url(backends.valkey_url) as client:
        assert not any(client.exists(f"{names.index}:owner") for names in every)
