"""A Bedrock AgentCore Memory (control plane ``bedrock-agentcore-control``).

Found by the id the status last reported, else by name (names are unique per account and
region). The API lists summaries without names, but a memory's id is its name, ``-`` and ten
letters or digits (the service model's pattern for ``memoryId``; names have no ``-``), so
only ids of that form are read: finding a memory costs a listing and a read or two, not a
read of every memory in the account. Creation is idempotent through a client token derived
from the resource's uid and the name. A new memory is ``CREATING`` for a while: a pass waits
for ``ACTIVE`` up to the operator's ``memory_wait_seconds`` and otherwise retries later
(``Ready=False``, reason ``Creating``). ``eventExpiryDays`` and ``description`` are updated
in place (an unset description leaves the memory's as it is); the name is immutable (the CRD
says so). Deleting starts the deletion (``DELETING``) and returns.

The claim (:mod:`..ownership`) is in the memory's tags: given to ``CreateMemory`` for a new
memory (so it is never unclaimed), added with ``TagResource`` to an adopted one.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from agentpersistence.sidecar.backends import aws as aws_codes

from .. import errors, ownership
from ..bodies import Outputs
from ..ownership import Claim
from ..spec import AgentCoreMemorySpec

if TYPE_CHECKING:
    from types_aiobotocore_bedrock_agentcore_control import BedrockAgentCoreControlClient

POLL_INTERVAL_S = 1.0
ID_SUFFIX = "-[a-zA-Z0-9]{10}"
"""What follows the name in a memory's id (``memoryId``'s pattern in the service model)."""
LIST_PAGE_SIZE = 100
"""Memories per ``ListMemories`` page (the API's maximum)."""
CREATING_RETRY_DELAY_S = 10.0


@dataclass(frozen=True)
class MemoryState:
    id: str
    arn: str
    name: str
    status: str
    event_expiry_days: int
    description: str


class AgentCoreMemory:
    def __init__(
        self,
        client: BedrockAgentCoreControlClient,
        spec: AgentCoreMemorySpec,
        *,
        owner_uid: str,
        known_id: str | None,
        wait_seconds: float,
    ) -> None:
        self.client = client
        self.spec = spec
        self.owner_uid = owner_uid
        self.known_id = known_id
        self.wait_seconds = wait_seconds
        self.description = f"AgentCore Memory {spec.name}"
        self.recorded_as = ("memoryId", known_id or "")

    async def read(self) -> MemoryState | None:
        with errors.guarded("aws", self.description):
            state = await self._by_id(self.known_id) if self.known_id else None
            if state is None or state.name != self.spec.name:
                state = await self._by_name()
        return state

    def delta(self, observed: MemoryState) -> list[str]:
        problems = []
        if observed.status != "ACTIVE":
            problems.append(f"{self.description} is {observed.status}")
        if observed.event_expiry_days != self.spec.event_expiry_days:
            problems.append(
                f"{self.description} keeps events {observed.event_expiry_days} days "
                f"(want {self.spec.event_expiry_days})"
            )
        if self.spec.description is not None and observed.description != self.spec.description:
            problems.append(f"{self.description} has another description")
        return problems

    async def create(self, claim: Claim) -> MemoryState:
        request: dict[str, Any] = {
            "name": self.spec.name,
            "eventExpiryDuration": self.spec.event_expiry_days,
            "clientToken": self._client_token(),
            "tags": claim.tags(),
        }
        if self.spec.description:
            request["description"] = self.spec.description
        with errors.guarded("aws", self.description):
            created = await self.client.create_memory(**request)
        return await self._settled(_state(created["memory"]))

    async def read_claim(self, observed: MemoryState) -> Claim | None:
        with errors.guarded("aws", self.description):
            return Claim.from_tags(await self._tags(observed))

    async def write_claim(
        self, observed: MemoryState, claim: Claim, replacing: Claim | None
    ) -> None:
        with errors.guarded("aws", self.description):
            if Claim.from_tags(await self._tags(observed)) != replacing:
                raise ownership.claimed_meanwhile(self.description)
            await self.client.tag_resource(resourceArn=observed.arn, tags=claim.tags())

    async def clear_claim(self, observed: MemoryState, claim: Claim) -> None:
        with errors.guarded("aws", self.description):
            if Claim.from_tags(await self._tags(observed)) == claim:
                await self.client.untag_resource(
                    resourceArn=observed.arn, tagKeys=list(ownership.TAG_KEYS)
                )

    async def _tags(self, observed: MemoryState) -> dict[str, str]:
        found = await self.client.list_tags_for_resource(resourceArn=observed.arn)
        return dict(found.get("tags", {}))

    async def update(self, observed: MemoryState) -> MemoryState:
        state = await self._settled(observed)
        if self.delta(state) == []:
            return state
        request: dict[str, Any] = {
            "memoryId": state.id,
            "eventExpiryDuration": self.spec.event_expiry_days,
        }
        if self.spec.description is not None:
            request["description"] = self.spec.description
        with errors.guarded("aws", self.description):
            updated = await self.client.update_memory(**request)
        return await self._settled(_state(updated["memory"]))

    async def delete(self) -> None:
        state = await self.read()
        if state is None or state.status == "DELETING":
            return
        with errors.guarded("aws", self.description):
            try:
                await self.client.delete_memory(memoryId=state.id)
            except ClientError as exc:
                if aws_codes.code_of(exc) != "ResourceNotFoundException":
                    raise

    def outputs(self, observed: MemoryState) -> Outputs:
        return {"memoryId": observed.id, "memoryArn": observed.arn}

    # ------------------------------------------------------------------ helpers

    async def _by_id(self, memory_id: str) -> MemoryState | None:
        try:
            found = await self.client.get_memory(memoryId=memory_id)
        except ClientError as exc:
            if aws_codes.code_of(exc) == "ResourceNotFoundException":
                return None
            raise
        return _state(found["memory"])

    async def _by_name(self) -> MemoryState | None:
        ids: list[str] = []
        named = re.compile(re.escape(self.spec.name) + ID_SUFFIX)
        paginator = self.client.get_paginator("list_memories")
        async for page in paginator.paginate(PaginationConfig={"PageSize": LIST_PAGE_SIZE}):
            for memory in page.get("memories", []):
                if memory.get("status") != "DELETING" and named.fullmatch(memory["id"]):
                    ids.append(memory["id"])
        for memory_id in ids:
            state = await self._by_id(memory_id)
            if state is not None and state.name == self.spec.name:
                return state
        return None

    async def _settled(self, state: MemoryState) -> MemoryState:
        """Wait (bounded) while the memory is CREATING or UPDATING; refuse a FAILED one."""
        deadline = time.monotonic() + self.wait_seconds
        while state.status in ("CREATING", "UPDATING") and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL_S)
            with errors.guarded("aws", self.description):
                state = await self._by_id(state.id) or state
        if state.status in ("CREATING", "UPDATING"):
            raise errors.Retryable(
                f"{self.description} ({state.id}) is {state.status}; checking again shortly",
                reason="Creating",
                delay=CREATING_RETRY_DELAY_S,
            )
        if state.status == "FAILED":
            raise errors.Terminal(
                f"{self.description} ({state.id}) FAILED; delete it in AgentCore and request "
                "a reconcile",
                reason="MemoryFailed",
            )
        if state.status == "DELETING":
            raise errors.Retryable(f"{self.description} is being deleted", reason="Deleting")
        return state

    def _client_token(self) -> str:
        """The same for every retry of this resource's creation of this memory."""
        seed = f"{self.owner_uid}/{self.spec.name}".encode()
        return hashlib.sha256(seed).hexdigest()


def _state(memory: Any) -> MemoryState:
    return MemoryState(
        id=str(memory["id"]),
        arn=str(memory.get("arn", "")),
        name=str(memory.get("name", "")),
        status=str(memory.get("status", "")),
        event_expiry_days=int(memory.get("eventExpiryDuration", 0)),
        description=str(memory.get("description", "")),
    )
