"""Create the table and bucket of :mod:`.schema` where missing (``--provision``, the operator).

Both functions are idempotent and only add: an existing table keeps its settings (TTL is
enabled on it if it is not), an existing bucket keeps its lifecycle rules (the rule for this
TTL is added beside them). The sidecar calls them only when started with ``--provision``;
while serving it never changes a table's or a bucket's configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ...settings import S3OffloadSettings
from .. import aws as errors
from . import schema, store_schema

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import CreateTableInputTypeDef
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import LifecycleRuleTypeDef

TABLE_WAIT_DELAY_S = 1
TABLE_WAIT_ATTEMPTS = 300

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


async def ensure_table(
    client: DynamoDBClient,
    table_name: str,
    tags: Mapping[str, str] | None = None,
    definition: CreateTableInputTypeDef | None = None,
) -> None:
    """Create the table (on-demand billing, with ``tags`` if new) and enable TTL on
    ``expires``; wait until active. ``definition`` defaults to the checkpointer's table."""
    try:
        definition = definition or schema.table_definition(table_name)
        if tags:
            definition["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        await client.create_table(**definition)
        log.info("created DynamoDB table", extra={"table": table_name})
    except client.exceptions.ResourceInUseException:
        pass  # exists, or is being created
    await client.get_waiter("table_exists").wait(
        TableName=table_name,
        WaiterConfig={"Delay": TABLE_WAIT_DELAY_S, "MaxAttempts": TABLE_WAIT_ATTEMPTS},
    )
    ttl = await client.describe_time_to_live(TableName=table_name)
    status = ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
    if status not in ("ENABLED", "ENABLING"):
        await client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.EXPIRES},
        )
        log.info("enabled TTL on the table", extra={"table": table_name})


async def ensure_store_table(
    client: DynamoDBClient,
    table_name: str,
    vector_index: tuple[int, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> None:
    """The store's table (:func:`.store_schema.table_definition`): the checkpointer's layout,
    with the vector index of ``vector_index`` (dimensions, distance) when given. An existing
    table is adopted as it is (a missing vector index is not added to it)."""
    definition = store_schema.table_definition(table_name, vector_index)
    await ensure_table(client, table_name, tags, definition)


async def ensure_bucket(
    client: S3Client, settings: S3OffloadSettings, ttl_seconds: int | None, region: str | None
) -> None:
    """Create the bucket, block public access, encrypt by default (keeping the encryption
    an adopted bucket already has, such as a KMS key), add the expiry rule."""
    bucket = settings.bucket_name
    if not await _bucket_exists(client, bucket):
        if region and region != "us-east-1":
            await client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        else:
            await client.create_bucket(Bucket=bucket)
        log.info("created S3 bucket", extra={"bucket": bucket})
    await client.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=schema.PUBLIC_ACCESS_BLOCK
    )
    await _ensure_encryption(client, bucket)
    if ttl_seconds:
        await _ensure_lifecycle_rule(client, bucket, schema.lifecycle_rule(ttl_seconds))


async def _ensure_encryption(client: S3Client, bucket: str) -> None:
    try:
        current = await client.get_bucket_encryption(Bucket=bucket)
    except ClientError as exc:
        if errors.code_of(exc) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
    else:
        if current.get("ServerSideEncryptionConfiguration", {}).get("Rules"):
            return
    await client.put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration=schema.ENCRYPTION
    )


async def _bucket_exists(client: S3Client, bucket: str) -> bool:
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if errors.code_of(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


async def _ensure_lifecycle_rule(client: S3Client, bucket: str, rule: LifecycleRuleTypeDef) -> None:
    try:
        current = await client.get_bucket_lifecycle_configuration(Bucket=bucket)
        rules: list[LifecycleRuleTypeDef] = list(current.get("Rules", []))  # type: ignore[arg-type]
    except ClientError as exc:
        if errors.code_of(exc) != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    if any(r.get("ID") == rule["ID"] for r in rules):
        return
    await client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*rules, rule]}
    )
    log.info("added the expiry lifecycle rule", extra={"bucket": bucket, "rule": rule["ID"]})
