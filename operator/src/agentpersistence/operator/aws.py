"""The operator's aiobotocore clients: one per AWS service and region, opened on first use and
closed when the operator stops (kopf's cleanup).

Endpoints and credentials come from the standard chain (``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_BEDROCK_AGENTCORE_CONTROL``, web identity for IRSA,
the container credentials of EKS Pod Identity, ...). Calls are retried a few times by
botocore's standard mode; longer retries are kopf's (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from .config import OperatorConfig

if TYPE_CHECKING:
    from types_aiobotocore_bedrock_agentcore_control import BedrockAgentCoreControlClient
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0


class AwsClients:
    """Lazily opened clients, shared by every handler of the operator."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._session = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = asyncio.Lock()

    def region(self, region: str | None) -> str | None:
        """The block's region, else the operator's default (None: botocore's chain)."""
        return region or self.config.aws_region

    def partition(self, region: str | None) -> str:
        """The ARN partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``...)."""
        name = self.region(region)
        return str(self._session.get_partition_for_region(name)) if name else "aws"

    async def dynamodb(self, region: str | None) -> DynamoDBClient:
        return cast("DynamoDBClient", await self._client("dynamodb", region))

    async def s3(self, region: str | None) -> S3Client:
        return cast("S3Client", await self._client("s3", region))

    async def agentcore(self, region: str | None) -> BedrockAgentCoreControlClient:
        client = await self._client("bedrock-agentcore-control", region)
        return cast("BedrockAgentCoreControlClient", client)

    async def close(self) -> None:
        self._clients.clear()
        await self._stack.aclose()

    async def _client(self, service: str, region: str | None) -> Any:
        key = (service, self.region(region))
        async with self._lock:
            if key not in self._clients:
                create: Callable[..., Any] = self._session.create_client  # any service name
                creator = create(service, region_name=key[1], config=self._client_config())
                self._clients[key] = await self._stack.enter_async_context(creator)
            return self._clients[key]

    def _client_config(self) -> AioConfig:
        return AioConfig(
            retries={"mode": "standard", "total_max_attempts": self.config.aws_max_attempts},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            max_pool_connections=self.config.reconcile_concurrency,  # one call per pass at most
        )
