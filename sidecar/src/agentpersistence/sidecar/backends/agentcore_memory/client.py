"""The ``bedrock-agentcore`` client of one memory, shared by the checkpointer and the store.

Opened by ``open()`` (the backends' ``start()``), closed by ``close()``. Every call goes
through :meth:`MemoryClient.translated`, which maps botocore's and aiohttp's exceptions to
the protocol's errors (:mod:`..aws`), naming the memory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from agentpersistence.client.protocol.errors import SidecarError

from ...settings import AgentCoreMemorySettings
from .. import aws

if TYPE_CHECKING:
    from types_aiobotocore_bedrock_agentcore import BedrockAgentCoreClient

log = logging.getLogger("agentpersistence.sidecar.agentcore_memory")


class MemoryClient:
    """An aiobotocore ``bedrock-agentcore`` client bound to one memory id."""

    def __init__(self, settings: AgentCoreMemorySettings) -> None:
        if settings.memory_id is None:  # SidecarConfig refuses this; the operator fills it in
            raise SidecarError("agentcore-memory needs agentcoreMemory.memoryId")
        self.settings = settings
        self.memory_id = settings.memory_id
        self.where = f"AgentCore Memory {self.memory_id}"
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: BedrockAgentCoreClient | None = None

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        with self.translated():
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "bedrock-agentcore",
                    region_name=aws.region(self.settings),
                    config=aws.client_config(self.settings),
                )
            )
            aws.bound_retries(self._client)
        self._stack = stack
        log.info("AgentCore client ready", extra={"memory": self.memory_id})

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> BedrockAgentCoreClient:
        if self._client is None:
            raise SidecarError("the AgentCore backend is used before start() or after close()")
        return self._client

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        with aws.translated(self.where):
            yield
