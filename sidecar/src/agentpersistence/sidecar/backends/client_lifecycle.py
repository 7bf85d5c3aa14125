"""The lifecycle of a backend whose storage is reached through one client.

``start`` opens the client, ``close`` closes it, ``health`` makes one cheap call that raises
the protocol's error when the storage is missing or unreachable (and reports that error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from agentpersistence.client.protocol import messages as m
from agentpersistence.client.protocol.errors import SidecarError

from .base import Backend

Ping = Callable[[], Awaitable[None]]
"""One cheap call to the storage, raising a ``SidecarError`` when it does not answer."""


class Client(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


class ClientLifecycle(Backend):
    """``start``, ``close`` and ``health`` of a backend, through its ``client`` and ``ping``."""

    def __init__(self, client: Client, ping: Ping) -> None:
        self._client = client
        self._ping = ping

    async def start(self) -> None:
        await self._client.open()

    async def close(self) -> None:
        await self._client.close()

    async def health(self) -> m.BackendHealth:
        try:
            await self._ping()
        except SidecarError as exc:
            return m.BackendHealth(self.block, self.name, False, exc.message)
        return m.BackendHealth(self.block, self.name, True)
