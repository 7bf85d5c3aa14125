"""The bucket for payloads too large for a DynamoDB item: private, encrypted, expiring.

Public access block, default encryption and the expiry lifecycle rule are the DynamoDB
backend's (``schema.PUBLIC_ACCESS_BLOCK``, ``schema.ENCRYPTION``, ``schema.lifecycle_rule``),
applied by its ``provisioning.ensure_bucket``, which keeps lifecycle rules it finds (objects
written under an earlier TTL keep expiring). Any default encryption counts as encrypted (an
adopted bucket may use KMS). Deleting empties the bucket first (every object version).

The claim (:mod:`..ownership`) is in the bucket's tags, merged with the tags it has (S3
replaces a bucket's whole tag set on every write, so a claim is read, compared and written;
S3 offers no conditional tagging, so two resources claiming one bucket within the same
moment is the one race this cannot close).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from agentpersistence.sidecar.backends import aws as aws_codes
from agentpersistence.sidecar.backends.dynamodb import provisioning, schema
from agentpersistence.sidecar.settings import S3OffloadSettings

from .. import errors, ownership
from ..bodies import Outputs
from ..ownership import Claim

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef, TagTypeDef

MISSING_BUCKET = ("404", "NoSuchBucket", "NotFound")
NOT_CONFIGURED = (
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchLifecycleConfiguration",
    "NoSuchTagSet",
)
DELETE_BATCH = 1000
"""Objects per ``DeleteObjects`` call (S3's limit)."""


@dataclass(frozen=True)
class BucketState:
    name: str
    public_access_blocked: bool
    encrypted: bool
    lifecycle_rules: frozenset[str]
    """IDs of the enabled lifecycle rules."""


class S3Bucket:
    def __init__(
        self,
        client: S3Client,
        settings: S3OffloadSettings,
        ttl_seconds: int | None,
        region: str | None,
        partition: str,
    ) -> None:
        self.client = client
        self.settings = settings
        self.name = settings.bucket_name
        self.ttl_seconds = ttl_seconds
        self.region = region
        self.partition = partition
        self.description = f"S3 bucket {self.name}"
        self.recorded_as = ("bucketName", self.name)

    async def read(self) -> BucketState | None:
        with errors.guarded("aws", self.description):
            if not await self._exists():
                return None
            return BucketState(
                name=self.name,
                public_access_blocked=await self._public_access_blocked(),
                encrypted=await self._encrypted(),
                lifecycle_rules=await self._lifecycle_rules(),
            )

    def delta(self, observed: BucketState) -> list[str]:
        problems = []
        if not observed.public_access_blocked:
            problems.append(f"{self.description} does not block public access")
        if not observed.encrypted:
            problems.append(f"{self.description} has no default encryption")
        rule = self._rule_id()
        if rule is not None and rule not in observed.lifecycle_rules:
            problems.append(f"{self.description} lacks the lifecycle rule {rule}")
        return problems

    async def create(self, claim: Claim) -> BucketState:
        state = await self._ensure()
        await self.write_claim(state, claim, None)
        return state

    async def read_claim(self, observed: BucketState) -> Claim | None:
        with errors.guarded("aws", self.description):
            return Claim.from_tags(await self._tags())

    async def write_claim(
        self, observed: BucketState, claim: Claim, replacing: Claim | None
    ) -> None:
        with errors.guarded("aws", self.description):
            tags = await self._tags()
            if Claim.from_tags(tags) != replacing:
                raise ownership.claimed_meanwhile(self.description)
            await self._put_tags({**tags, **claim.tags()})

    async def clear_claim(self, observed: BucketState, claim: Claim) -> None:
        with errors.guarded("aws", self.description):
            tags = await self._tags()
            if Claim.from_tags(tags) != claim:
                return
            kept = {k: v for k, v in tags.items() if k not in ownership.TAG_KEYS}
            if kept:
                await self._put_tags(kept)
            else:
                await self.client.delete_bucket_tagging(Bucket=self.name)

    async def update(self, observed: BucketState) -> BucketState:
        return await self._ensure()

    async def delete(self) -> None:
        with errors.guarded("aws", self.description):
            try:
                await self._empty()
                await self.client.delete_bucket(Bucket=self.name)
            except ClientError as exc:
                if aws_codes.code_of(exc) not in MISSING_BUCKET:
                    raise

    def outputs(self, observed: BucketState) -> Outputs:
        return {"bucketName": self.name, "bucketArn": f"arn:{self.partition}:s3:::{self.name}"}

    # ------------------------------------------------------------------ reading

    async def _exists(self) -> bool:
        try:
            await self.client.head_bucket(Bucket=self.name)
        except ClientError as exc:
            code = aws_codes.code_of(exc)
            if code in MISSING_BUCKET:
                return False
            if code in ("403", "AccessDenied"):
                raise errors.Terminal(
                    f"{self.description} exists but this account cannot use it (bucket names "
                    "are global: it may belong to another account): choose another bucketName",
                    reason="BucketNotAdoptable",
                ) from None
            raise
        return True

    async def _public_access_blocked(self) -> bool:
        try:
            found = await self.client.get_public_access_block(Bucket=self.name)
        except ClientError as exc:
            return _unconfigured(exc)
        config = found.get("PublicAccessBlockConfiguration", {})
        return all(config.get(key) is True for key in schema.PUBLIC_ACCESS_BLOCK)

    async def _encrypted(self) -> bool:
        try:
            found = await self.client.get_bucket_encryption(Bucket=self.name)
        except ClientError as exc:
            return _unconfigured(exc)
        rules = found.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        return any(r.get("ApplyServerSideEncryptionByDefault") for r in rules)

    async def _lifecycle_rules(self) -> frozenset[str]:
        try:
            found = await self.client.get_bucket_lifecycle_configuration(Bucket=self.name)
        except ClientError as exc:
            _unconfigured(exc)
            return frozenset()
        rules = found.get("Rules", [])
        return frozenset(r.get("ID", "") for r in rules if r.get("Status") == "Enabled")

    async def _tags(self) -> dict[str, str]:
        try:
            found = await self.client.get_bucket_tagging(Bucket=self.name)
        except ClientError as exc:
            _unconfigured(exc)
            return {}
        return {tag["Key"]: tag["Value"] for tag in found.get("TagSet", [])}

    async def _put_tags(self, tags: dict[str, str]) -> None:
        tag_set: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in tags.items()]
        await self.client.put_bucket_tagging(Bucket=self.name, Tagging={"TagSet": tag_set})

    def _rule_id(self) -> str | None:
        return schema.lifecycle_rule(self.ttl_seconds)["ID"] if self.ttl_seconds else None

    # ------------------------------------------------------------------ writing

    async def _ensure(self) -> BucketState:
        with errors.guarded("aws", self.description):
            await provisioning.ensure_bucket(
                self.client, self.settings, self.ttl_seconds, self.region
            )
        state = await self.read()
        if state is None:
            raise errors.Retryable(f"{self.description} vanished after creation", reason="Gone")
        return state

    async def _empty(self) -> None:
        """Delete every object version and delete marker (a bucket must be empty to go)."""
        paginator = self.client.get_paginator("list_object_versions")
        async for page in paginator.paginate(Bucket=self.name):
            doomed: list[ObjectIdentifierTypeDef] = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            for start in range(0, len(doomed), DELETE_BATCH):
                batch = doomed[start : start + DELETE_BATCH]
                await self.client.delete_objects(
                    Bucket=self.name, Delete={"Objects": batch, "Quiet": True}
                )


def _unconfigured(exc: ClientError) -> bool:
    """False for "this configuration is not set"; re-raise anything else."""
    if aws_codes.code_of(exc) in NOT_CONFIGURED:
        return False
    raise exc
