"""The store's vector search index on Valkey (valkey-search, or RediSearch in tests).

Name, definition, creation and comparison are the Valkey store backend's
(``store_schema.index_name``, ``expected_shape``, ``parse_info``, ``differences``,
``ensure_index``). An existing index with the same definition is adopted; one with another
definition is a terminal error (changing dimensions or metric means re-embedding: drop the
index by hand, documents stay, and the next reconcile creates it). Deleting drops the index
only: the documents are the store's data, written by the sidecar, and stay.

An index has no tags: the claim (:mod:`..ownership`) is a key beside it, ``<index>:owner``
(outside the store's keys), holding the claim as JSON and changed only by a compare-and-set
script, so two resources racing for one index cannot both win. Dropping the index removes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agentpersistence.sidecar.backends.valkey import errors as valkey_errors
from agentpersistence.sidecar.backends.valkey import store_schema
from agentpersistence.sidecar.backends.valkey.connection import Connection, Refusal
from agentpersistence.sidecar.settings import IndexSettings, ValkeyStoreSettings

from .. import errors, ownership
from ..bodies import Outputs
from ..ownership import Claim

COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
  return 1
end
return 0
"""
"""Replace the claim key's value ARGV[1] ('' = absent) by ARGV[2] ('' = delete); 1 if done."""


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
        self.recorded_as = ("indexName", self.name)
        self.claim_key = f"{self.name}:owner"

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

    async def create(self, claim: Claim) -> IndexState:
        state = await self._ensure()
        await self.write_claim(state, claim, None)
        return state

    async def read_claim(self, observed: IndexState) -> Claim | None:
        with errors.guarded("valkey", self.description):
            raw = await self.connection.ask(("GET", self.claim_key))
        if isinstance(raw, Refusal):
            raise errors.Retryable(
                f"{self.description}: reading {self.claim_key} failed: {raw.message}",
                reason="ValkeyError",
            )
        return None if raw is None else Claim.from_tags(json.loads(raw))

    async def write_claim(
        self, observed: IndexState, claim: Claim, replacing: Claim | None
    ) -> None:
        if not await self._swap(replacing, claim):
            raise ownership.claimed_meanwhile(self.description)

    async def clear_claim(self, observed: IndexState, claim: Claim) -> None:
        await self._swap(claim, None)

    async def _swap(self, expected: Claim | None, new: Claim | None) -> bool:
        command = ("EVAL", COMPARE_AND_SET, 1, self.claim_key, _text(expected), _text(new))
        with errors.guarded("valkey", self.description):
            reply = await self.connection.ask(command, route=self.claim_key)
        if isinstance(reply, Refusal):
            raise errors.Retryable(
                f"{self.description}: writing {self.claim_key} failed: {reply.message}",
                reason="ValkeyError",
            )
        return bool(reply)

    async def update(self, observed: IndexState) -> IndexState:
        return await self._ensure()

    async def delete(self) -> None:
        with errors.guarded("valkey", self.description):
            reply = await self.connection.ask(("FT.DROPINDEX", self.name))
        if isinstance(reply, Refusal) and not valkey_errors.is_unknown_index(reply.message):
            raise errors.Retryable(
                f"{self.description} could not be dropped: {reply.message}", reason="ValkeyError"
            )
        with errors.guarded("valkey", self.description):
            await self.connection.ask(("DEL", self.claim_key))

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


def _text(claim: Claim | None) -> str:
    """The claim key's value for ``claim`` ('' for none): canonical, so it compares equal."""
    return "" if claim is None else json.dumps(claim.tags(), sort_keys=True, separators=(",", ":"))
