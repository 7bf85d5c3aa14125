"""The aiobotocore clients of the backend: one DynamoDB client, one S3 client when offloading.

Endpoints and credentials come from the standard AWS chain (``AWS_ENDPOINT_URL_DYNAMODB``,
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, web identity, instance roles...); the region
from the settings, else ``AWS_REGION``, else the chain. Throttling and 5xx answers are retried
by botocore's *adaptive* retry mode (which also rate-limits the client while throttled), not
by loops here. Every call goes through :meth:`Clients.table` or :meth:`Clients.bucket`, which
translate whatever the call raises with :func:`..aws.translate`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from agentpersistence.client.protocol.errors import SidecarError

from ...settings import DynamoDBSettings, DynamoDBStoreSettings
from ..aws import bound_retries, client_config, region, translated

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("agentpersistence.sidecar.dynamodb")


class Clients:
    """Opened by the backend's ``start()``, closed by its ``close()``."""

    def __init__(self, settings: DynamoDBSettings | DynamoDBStoreSettings) -> None:
        self.settings = settings
        self.table_name = settings.table_name
        offload = settings.s3_offload if isinstance(settings, DynamoDBSettings) else None
        self.bucket_name = offload.bucket_name if offload else None
        self.where_table = f"DynamoDB table {self.table_name}"
        self.where_bucket = f"S3 bucket {self.bucket_name}"
        self._stack: contextlib.AsyncExitStack | None = None
        self._dynamodb: DynamoDBClient | None = None
        self._s3: S3Client | None = None

    async def open(self) -> None:
        session = get_session()
        config, name = client_config(self.settings), region(self.settings)
        stack = contextlib.AsyncExitStack()
        try:
            with self.table():
                self._dynamodb = await stack.enter_async_context(
                    session.create_client("dynamodb", region_name=name, config=config)
                )
                bound_retries(self._dynamodb)
            if self.bucket_name is not None:
                with self.bucket():
                    self._s3 = await stack.enter_async_context(
                        session.create_client("s3", region_name=name, config=config)
                    )
                    bound_retries(self._s3)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        log.info(
            "AWS clients ready",
            extra={"table": self.table_name, "bucket": self.bucket_name, "region": name},
        )

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._dynamodb = self._s3 = None
        if stack is not None:
            await stack.aclose()

    @property
    def dynamodb(self) -> DynamoDBClient:
        if self._dynamodb is None:
            raise SidecarError("the DynamoDB backend is used before start() or after close()")
        return self._dynamodb

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            raise SidecarError("S3 is used without s3Offload configured, or before start()")
        return self._s3

    @property
    def offloading(self) -> bool:
        return self.bucket_name is not None

    @contextlib.contextmanager
    def table(self) -> Iterator[None]:
        """Translate what a DynamoDB call raises (callers catch expected errors inside)."""
        with translated(self.where_table):
            yield

    @contextlib.contextmanager
    def bucket(self) -> Iterator[None]:
        with translated(self.where_bucket):
            yield
