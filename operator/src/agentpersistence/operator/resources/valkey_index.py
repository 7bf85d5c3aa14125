"""The store's vector search index on Valkey (valkey-search, or RediSearch in tests).

Name, definition, creation and comparison are the Valkey store backend's
(``store_schema.index_name``, ``expected_shape``, ``parse_info``, ``differences``,
``ensure_index``). An existing index with the same definition is adopted; one with another
definition is a terminal error (changing dimensions or metric means re-embedding: drop the
index by hand, documents stay, and the next reconcile creates it). Deleting drops the index
only: the documents are the store's data, written by the sidecar, and stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentpersistence.sidecar.backends.valkey import errors as valkey_errors
from agentpersistence.sidecar.backends.valkey import store_schema
from agentpersistence.sidecar.backends.valkey.connection import Connection, Refusal
from agentpersistence.sidecar.settings import IndexSettings, ValkeyStoreSettings

from .. import errors
from ..bodies import Outputs


@dataclass(frozen=True)
class IndexState:
    name: str
    shape: store_schema.IndexShape


class ValkeyIndex:
    def __init__(
        self, connection: Connection, settings: ValkeyStoreSettings, index: IndexSettings
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.index = index
        self.name = store_schema.index_name(settings)
        self.description = f"Valkey search index {self.name} at {connection.where}"
        self.claim = ("indexName", self.name)

    async def read(self) -> IndexState | None:
        with errors.guarded("valkey", self.description):
            reply = await self.connection.ask(("FT.INFO", self.name))
        if isinstance(reply, Refusal):
            self._check_refusal(reply)
            return None
        return IndexState(self.name, store_schema.parse_info(reply))

    def delta(self, observed: IndexState) -> list[str]:
        expected = store_schema.expected_shape(self.settings, self.index)
        found = store_schema.differences(observed.shape, expected)
        return [f"{self.description}: {problem}" for problem in found]

    async def create(self) -> IndexState:
        return await self._ensure()

    async def update(self, observed: IndexState) -> IndexState:
        return await self._ensure()

    async def delete(self) -> None:
        with errors.guarded("valkey", self.description):
            reply = await self.connection.ask(("FT.DROPINDEX", self.name))
        if isinstance(reply, Refusal) and not valkey_errors.is_unknown_index(reply.message):
            raise errors.Retryable(
                f"{self.description} could not be dropped: {reply.message}", reason="ValkeyError"
            )

    def outputs(self, observed: IndexState) -> Outputs:
        return {"indexName": observed.name}

    async def _ensure(self) -> IndexState:
        with errors.guarded("valkey", self.description):
            await self.connection.call(self._ensure_with)
        state = await self.read()
        if state is None:
            raise errors.Retryable(f"{self.description} vanished after creation", reason="Gone")
        return state

    async def _ensure_with(self, client: Any) -> str:
        return await store_schema.ensure_index(client, self.settings, self.index)

    def _check_refusal(self, refusal: Refusal) -> None:
        """Nothing for "no such index"; raise for anything else."""
        if valkey_errors.is_unknown_index(refusal.message):
            return
        if valkey_errors.is_unknown_command(refusal.message):
            raise errors.from_valkey(valkey_errors.no_search_module(self.name), self.description)
        raise errors.Retryable(
            f"{self.description}: FT.INFO answered {refusal.message}", reason="ValkeyError"
        )
