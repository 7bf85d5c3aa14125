"""The checkpointer's DynamoDB table: keys ``PK``/``SK``, on-demand billing, TTL on ``expires``.

The definition and the creation are the DynamoDB backend's (``schema.table_definition``,
``provisioning.ensure_table``). An existing table is adopted when its keys are the backend's;
other keys are a terminal error (the backend cannot use the table). TTL is always enabled: the
attribute is only written when ``ttlSeconds`` is set, and DynamoDB allows one TTL change per
hour, so switching ``ttlSeconds`` on later needs no table change. Billing mode and capacity
are left as found (a platform team may choose provisioned capacity).

The claim (:mod:`..ownership`) is an item of the table itself (``schema.CLAIM_PK``), written
and removed with conditions, so two resources racing for one table cannot both win; a table
the operator creates also carries the claim as tags from its creation (for IAM conditions and
cost reports; the item is what the operator reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from agentpersistence.sidecar.backends import aws as aws_codes
from agentpersistence.sidecar.backends.dynamodb import provisioning, schema

from .. import errors, ownership
from ..bodies import Outputs
from ..ownership import Claim

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import CreateTableInputTypeDef

KeySchema = tuple[tuple[str, str], ...]
"""``((attribute, HASH|RANGE), ...)``."""

TTL_ON = ("ENABLED", "ENABLING")


@dataclass(frozen=True)
class TableState:
    name: str
    arn: str
    status: str
    keys: KeySchema
    ttl_status: str
    ttl_attribute: str | None


def wanted_keys(table_name: str) -> KeySchema:
    definition = schema.table_definition(table_name)
    return tuple((k["AttributeName"], k["KeyType"]) for k in definition["KeySchema"])


class DynamoDBTable:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        definition: CreateTableInputTypeDef | None = None,
        output: Literal["table", "storeTable"] = "table",
    ) -> None:
        """``definition``: the store's (with its vector index) instead of the checkpointer's;
        ``output``: the status outputs' prefix (``tableName`` or ``storeTableName``)."""
        self.client = client
        self.name = table_name
        self.definition = definition
        self.output = output
        self.description = f"DynamoDB table {table_name}"
        self.recorded_as = (f"{output}Name", table_name)

    async def read(self) -> TableState | None:
        with errors.guarded("aws", self.description):
            try:
                described = await self.client.describe_table(TableName=self.name)
            except ClientError as exc:
                if aws_codes.code_of(exc) == "ResourceNotFoundException":
                    return None
                raise
            ttl = await self.client.describe_time_to_live(TableName=self.name)
        table = described["Table"]
        spec = ttl.get("TimeToLiveDescription", {})
        return TableState(
            name=self.name,
            arn=table.get("TableArn", ""),
            status=table.get("TableStatus", ""),
            keys=tuple((k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])),
            ttl_status=spec.get("TimeToLiveStatus", "DISABLED"),
            ttl_attribute=spec.get("AttributeName"),
        )

    def delta(self, observed: TableState) -> list[str]:
        problems = []
        if observed.keys != wanted_keys(self.name):
            problems.append(f"{self.description} has keys {_keys(observed.keys)}")
        if observed.status == "DELETING":
            problems.append(f"{self.description} is being deleted")
        if observed.ttl_status not in TTL_ON or observed.ttl_attribute != schema.EXPIRES:
            attribute = observed.ttl_attribute or "no attribute"
            problems.append(
                f"{self.description} has TTL {observed.ttl_status} on {attribute} "
                f"(want ENABLED on {schema.EXPIRES})"
            )
        return problems

    async def create(self, claim: Claim) -> TableState:
        state = await self._ensure(claim.tags())
        await self.write_claim(state, claim, None)
        return state

    async def read_claim(self, observed: TableState) -> Claim | None:
        if observed.keys != wanted_keys(self.name):
            return None  # it cannot hold the claim's item (nor the backend's)
        with errors.guarded("aws", self.description):
            found = await self.client.get_item(
                TableName=self.name, Key=CLAIM_KEY, ConsistentRead=True
            )
        item = found.get("Item", {})
        return Claim.from_tags({k: v["S"] for k, v in item.items() if "S" in v})

    async def write_claim(
        self, observed: TableState, claim: Claim, replacing: Claim | None
    ) -> None:
        self._check_keys(observed)
        item = {**CLAIM_KEY, **{k: {"S": v} for k, v in claim.tags().items()}}
        with errors.guarded("aws", self.description):
            try:
                await self.client.put_item(TableName=self.name, Item=item, **_unchanged(replacing))
            except ClientError as exc:
                if aws_codes.code_of(exc) == CONDITION_FAILED:
                    raise ownership.claimed_meanwhile(self.description) from None
                raise

    async def clear_claim(self, observed: TableState, claim: Claim) -> None:
        with errors.guarded("aws", self.description):
            try:
                await self.client.delete_item(
                    TableName=self.name, Key=CLAIM_KEY, **_unchanged(claim)
                )
            except ClientError as exc:
                if aws_codes.code_of(exc) != CONDITION_FAILED:
                    raise

    async def update(self, observed: TableState) -> TableState:
        self._check_keys(observed)
        if observed.status == "DELETING":
            raise errors.Retryable(f"{self.description} is being deleted", reason="Deleting")
        if observed.ttl_status in TTL_ON and observed.ttl_attribute != schema.EXPIRES:
            raise errors.Terminal(
                f"{self.description} has TTL on {observed.ttl_attribute}; the backend expires "
                f"items with {schema.EXPIRES}: disable that TTL or choose another tableName",
                reason="TableNotAdoptable",
            )
        return await self._ensure()

    async def delete(self) -> None:
        with errors.guarded("aws", self.description):
            try:
                await self.client.delete_table(TableName=self.name)
            except ClientError as exc:
                if aws_codes.code_of(exc) != "ResourceNotFoundException":
                    raise

    def outputs(self, observed: TableState) -> Outputs:
        if self.output == "storeTable":
            return {"storeTableName": observed.name, "storeTableArn": observed.arn}
        return {"tableName": observed.name, "tableArn": observed.arn}

    def _check_keys(self, observed: TableState) -> None:
        if observed.keys != wanted_keys(self.name):
            raise errors.Terminal(
                f"{self.description} exists with keys {_keys(observed.keys)}; the DynamoDB "
                f"backend needs {_keys(wanted_keys(self.name))}: choose another tableName",
                reason="TableNotAdoptable",
            )

    async def _ensure(self, tags: dict[str, str] | None = None) -> TableState:
        with errors.guarded("aws", self.description):
            await provisioning.ensure_table(self.client, self.name, tags, self.definition)
        state = await self.read()
        if state is None:
            raise errors.Retryable(f"{self.description} vanished after creation", reason="Gone")
        return state


CLAIM_KEY: dict[str, Any] = {
    schema.PK: {"S": schema.CLAIM_PK},
    schema.SK: {"S": schema.CLAIM_SK},
}


CONDITION_FAILED = "ConditionalCheckFailedException"


def _unchanged(claim: Claim | None) -> dict[str, Any]:
    """The condition that the claim item is still ``claim`` (None: that there is none)."""
    if claim is None:
        return {
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": schema.PK},
        }
    return {
        "ConditionExpression": "#uid = :uid",
        "ExpressionAttributeNames": {"#uid": ownership.UID_TAG},
        "ExpressionAttributeValues": {":uid": {"S": claim.uid}},
    }


def _keys(keys: KeySchema) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in keys) or "none"
