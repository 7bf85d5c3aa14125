"""Storage the operator provisions, seen from the tests: names for one resource's storage,
its spec, and probes of each kind of storage on the local servers."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from agentpersistence.operator import naming
from agentpersistence.sidecar.backends.valkey import store_schema
from agentpersistence.sidecar.settings import ValkeyStoreSettings
from rig.operator import Backends, Cluster, aws_clients, eventually
from rig.operator import unique as unique_name

TTL_SECONDS = 2 * 86400
DIMS = 8
CHANGES = {"Created", "Updated", "Adopted"}


@dataclass(frozen=True)
class Names:
    resource: str
    table: str
    bucket: str
    prefix: str
    memory: str

    @classmethod
    def fresh(cls) -> Names:
        suffix = unique_name("x")[2:]
        return cls(
            f"agent-{suffix}",
            f"ap-table-{suffix}",
            f"ap-bucket-{suffix}",
            f"ap{suffix}",
            f"mem_{suffix}",
        )

    @property
    def index(self) -> str:
        return store_schema.index_name(
            ValkeyStoreSettings(url="valkey://x", key_prefix=self.prefix)
        )


def full_spec(names: Names, backends: Backends, policy: str) -> dict[str, Any]:
    valkey = {"url": backends.valkey_url, "keyPrefix": names.prefix}
    return {
        "deletionPolicy": policy,
        "checkpointer": {
            "backend": "dynamodb",
            "dynamodb": {
                "tableName": names.table,
                "ttlSeconds": TTL_SECONDS,
                "s3Offload": {"bucketName": names.bucket},
            },
        },
        "store": {"backend": "valkey", "valkey": valkey, "index": {"dims": DIMS}},
        "cache": {"backend": "valkey", "valkey": valkey},
        "agentcoreMemory": {"name": names.memory, "eventExpiryDays": 30},
    }


def manifest(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": naming.API_VERSION,
        "kind": naming.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def request_reconcile(cluster: Cluster, name: str) -> None:
    """Annotate the resource and wait until kopf has handled that change."""
    stamp = datetime.datetime.now(datetime.UTC).isoformat()
    cluster.kube.kubectl(
        "annotate", naming.CRD_NAME, name, "-n", cluster.namespace, "--overwrite",
        f"{naming.RECONCILE_ANNOTATION}={stamp}",
    )  # fmt: skip

    def handled() -> bool:
        annotations = cluster.must_get(name)["metadata"].get("annotations", {})
        last = annotations.get(f"{naming.KOPF_ANNOTATION_PREFIX}/last-handled-configuration")
        return last is not None and stamp in last

    eventually(handled, f"{name} to be reconciled after the annotation")


async def memory_named(backends: Backends, name: str) -> dict[str, Any] | None:
    async with aws_clients(backends) as aws:
        async for page in aws.agentcore.get_paginator("list_memories").paginate():
            for summary in page["memories"]:
                memory = (await aws.agentcore.get_memory(memoryId=summary["id"]))["memory"]
                if memory.get("name") == name and memory["status"] != "DELETING":
                    return dict(memory)
    return None


async def table_exists(backends: Backends, table: str) -> bool:
    async with aws_clients(backends) as aws:
        try:
            await aws.dynamodb.describe_table(TableName=table)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
    return True


async def bucket_exists(backends: Backends, bucket: str) -> bool:
    async with aws_clients(backends) as aws:
        try:
            await aws.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchBucket"):
                return False
            raise
    return True
