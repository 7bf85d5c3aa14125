"""The emulator's state: memories (the control plane) and, in each, its events and records;
and Bedrock Agent Runtime sessions (``sessions``).

Pure Python, no I/O and no timers: time comes from ``clock`` and randomness from ``rng``, so
tests can make both deterministic. Operations take the validated input (internal form) and
return the output; failures are :class:`errors.ApiError`.
"""

from __future__ import annotations

import copy
import itertools
import random
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import tags
from .errors import conflict, invalid, not_found
from .events import EventLog
from .idempotency import Tokens
from .pagination import page, scope_of
from .records import RecordStore
from .sessions import SessionStore

__all__ = ["Memory", "Settings", "State", "Strategy"]

Json = dict[str, Any]
Params = Mapping[str, Any]
Clock = Callable[[], float]

CREATING, ACTIVE, DELETING = "CREATING", "ACTIVE", "DELETING"
LIST_MEMORIES_DEFAULT = 10  # ListMemories' documented default page size

# The strategy union's members, the type each one has, and its namespace when none is given
# (AWS's defaults for the built-in strategies).
STRATEGY_TYPES = {
    "semanticMemoryStrategy": "SEMANTIC",
    "summaryMemoryStrategy": "SUMMARIZATION",
    "userPreferenceMemoryStrategy": "USER_PREFERENCE",
    "customMemoryStrategy": "CUSTOM",
    "episodicMemoryStrategy": "EPISODIC",
}
_ACTOR_NAMESPACE = "/strategies/{memoryStrategyId}/actors/{actorId}"
_SESSION_NAMESPACE = "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}"
DEFAULT_NAMESPACES = {
    "SEMANTIC": _ACTOR_NAMESPACE,
    "USER_PREFERENCE": _ACTOR_NAMESPACE,
    "CUSTOM": _ACTOR_NAMESPACE,
    "SUMMARIZATION": _SESSION_NAMESPACE,
    "EPISODIC": _SESSION_NAMESPACE,
}
# A custom strategy's configuration member and the override type GetMemory reports for it.
OVERRIDE_TYPES = {
    "semanticOverride": "SEMANTIC_OVERRIDE",
    "summaryOverride": "SUMMARY_OVERRIDE",
    "userPreferenceOverride": "USER_PREFERENCE_OVERRIDE",
    "episodicOverride": "EPISODIC_OVERRIDE",
    "selfManagedConfiguration": "SELF_MANAGED",
}
# Memory settings kept as given and answered back unchanged.
_KEPT_AS_GIVEN = (
    "encryptionKeyArn",
    "memoryExecutionRoleArn",
    "indexedKeys",
    "namespaceKeys",
    "streamDeliveryResources",
)


@dataclass(frozen=True)
class Settings:
    """What the process was started with (``agentpersistence-emulator --help``)."""

    region: str = "us-east-1"
    account: str = "123456789012"
    activation_reads: int = 1  # GetMemory calls that answer CREATING before a memory is ACTIVE
    # Seconds a Bedrock session may go unmodified before it is EXPIRED. AWS documents the
    # state, not the duration: one day is the emulator's choice.
    session_expiry_seconds: float = 86400.0


@dataclass
class Strategy:
    """A memory strategy: its namespace templates drive the extraction stand-in."""

    id: str
    name: str
    type: str
    namespaces: list[str]
    created_at: float
    updated_at: float
    description: str | None = None
    override_type: str | None = None
    record_schema: Json | None = None
    record_expiry_days: int | None = None

    def view(self) -> Json:
        return _without_none(
            {
                "strategyId": self.id,
                "name": self.name,
                "description": self.description,
                "type": self.type,
                "namespaces": list(self.namespaces),
                "namespaceTemplates": list(self.namespaces),
                "configuration": (
                    None if self.override_type is None else {"type": self.override_type}
                ),
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "status": ACTIVE,
                "memoryRecordSchema": self.record_schema,
                "recordExpiryDurationDays": self.record_expiry_days,
            }
        )


@dataclass
class Memory:
    """One AgentCore memory: its settings, strategies, events and long-term records."""

    id: str
    arn: str
    name: str
    event_expiry_days: int
    created_at: float
    updated_at: float
    seq: int
    events: EventLog
    records: RecordStore
    status: str = CREATING
    reads: int = 0
    description: str | None = None
    strategies: list[Strategy] = field(default_factory=list)
    settings: Json = field(default_factory=dict)
    tokens: Tokens = field(default_factory=Tokens)  # data-plane clientTokens
    tags: dict[str, str] = field(default_factory=dict)

    def view(self) -> Json:
        return _without_none(
            {
                "arn": self.arn,
                "id": self.id,
                "name": self.name,
                "description": self.description,
                "eventExpiryDuration": self.event_expiry_days,
                "status": self.status,
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "strategies": [strategy.view() for strategy in self.strategies],
                **self.settings,
            }
        )

    def summary(self) -> Json:
        return {
            "arn": self.arn,
            "id": self.id,
            "status": self.status,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


class State:
    """Every memory of one emulator process."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        namespace_ok: Callable[[str], bool] = lambda namespace: True,
    ) -> None:
        self.settings = settings or Settings()
        self.clock = clock
        self.rng = rng or random.Random()
        self.namespace_ok = namespace_ok  # whether a record may live in a namespace
        self.memories: dict[str, Memory] = {}
        self.sessions = SessionStore(
            self.settings.region,
            self.settings.account,
            expiry_seconds=self.settings.session_expiry_seconds,
            clock=clock,
            rng=self.rng,
        )
        self._tokens = Tokens()
        self._seq = itertools.count()

    # --- control plane ---------------------------------------------------------------------

    def create_memory(self, params: Params) -> Json:
        token = params.get("clientToken")
        replayed = self._tokens.replay("CreateMemory", token, params)
        if replayed is not None:
            return replayed
        name = params["name"]
        if any(memory.name == name for memory in self.memories.values()):
            raise conflict(f"A memory named {name} already exists; choose another name")
        now = self.clock()
        strategies: list[Strategy] = []
        for spec in params.get("memoryStrategies", []):
            strategies.append(self._new_strategy(strategies, spec, now))
        memory_id = f"{name}-{self._suffix()}"
        memory = Memory(
            id=memory_id,
            arn=f"arn:aws:bedrock-agentcore:{self.settings.region}:{self.settings.account}"
            f":memory/{memory_id}",
            name=name,
            event_expiry_days=params["eventExpiryDuration"],
            created_at=now,
            updated_at=now,
            seq=next(self._seq),
            events=EventLog(memory_id, clock=self.clock, rng=self.rng),
            records=RecordStore(memory_id, clock=self.clock, rng=self.rng),
            description=params.get("description"),
            strategies=strategies,
            settings={k: params[k] for k in _KEPT_AS_GIVEN if params.get(k) is not None},
            tags=dict(params.get("tags", {})),
        )
        if self.settings.activation_reads <= 0:
            memory.status = ACTIVE
        self.memories[memory_id] = memory
        answer = {"memory": memory.view()}
        self._tokens.remember("CreateMemory", token, params, answer)
        return answer

    def get_memory(self, params: Params) -> Json:
        """A CREATING memory answers CREATING to its first ``activation_reads`` calls; then it
        is ACTIVE (no timers: the clients' own polling drives it)."""
        memory = self.memory(params["memoryId"])
        answer = {"memory": memory.view()}
        if memory.status == CREATING:
            memory.reads += 1
            if memory.reads >= self.settings.activation_reads:
                memory.status = ACTIVE
                memory.updated_at = self.clock()
        return answer

    def list_memories(self, params: Params) -> Json:
        memories = sorted(self.memories.values(), key=lambda m: m.seq)
        chosen, token = page(
            memories,
            lambda m: (m.seq,),
            scope=scope_of("ListMemories"),
            token=params.get("nextToken"),
            limit=params.get("maxResults", LIST_MEMORIES_DEFAULT),
            descending=False,
        )
        return _without_none({"memories": [m.summary() for m in chosen], "nextToken": token})

    def update_memory(self, params: Params) -> Json:
        """All or nothing: every change is checked before the memory changes."""
        memory = self.memory(params["memoryId"])
        token = params.get("clientToken")
        replayed = memory.tokens.replay("UpdateMemory", token, params)
        if replayed is not None:
            return replayed
        now = self.clock()
        strategies = copy.deepcopy(memory.strategies)
        changes = params.get("memoryStrategies", {})
        for spec in changes.get("deleteMemoryStrategies", []):
            strategies.remove(_strategy(memory.id, strategies, spec["memoryStrategyId"]))
        for spec in changes.get("modifyMemoryStrategies", []):
            _modify_strategy(_strategy(memory.id, strategies, spec["memoryStrategyId"]), spec, now)
        for spec in changes.get("addMemoryStrategies", []):
            strategies.append(self._new_strategy(strategies, spec, now))
        indexed = _indexed_keys(memory, params.get("addIndexedKeys", []))
        memory.strategies = strategies
        if indexed:
            memory.settings["indexedKeys"] = indexed
        if "description" in params:
            memory.description = params["description"]
        if "eventExpiryDuration" in params:
            memory.event_expiry_days = params["eventExpiryDuration"]
        for key in ("memoryExecutionRoleArn", "namespaceKeys", "streamDeliveryResources"):
            if key in params:
                memory.settings[key] = params[key]
        memory.updated_at = now
        answer = {"memory": memory.view()}
        memory.tokens.remember("UpdateMemory", token, params, answer)
        return answer

    def delete_memory(self, params: Params) -> Json:
        """Answers DELETING; the memory is gone for every later call."""
        token = params.get("clientToken")
        replayed = self._tokens.replay("DeleteMemory", token, params)
        if replayed is not None:
            return replayed
        memory = self.memory(params["memoryId"])
        del self.memories[memory.id]
        answer = {"memoryId": memory.id, "status": DELETING}
        self._tokens.remember("DeleteMemory", token, params, answer)
        return answer

    # --- tags (of memories, the only taggable resource the emulator has) --------------------

    def tag_resource(self, params: Params) -> Json:
        tags.add(tags.by_arn(self.memories, params["resourceArn"], "memory").tags, params["tags"])
        return {}

    def untag_resource(self, params: Params) -> Json:
        memory = tags.by_arn(self.memories, params["resourceArn"], "memory")
        tags.remove(memory.tags, params["tagKeys"])
        return {}

    def list_tags_for_resource(self, params: Params) -> Json:
        return {"tags": dict(tags.by_arn(self.memories, params["resourceArn"], "memory").tags)}

    # --- lookups ---------------------------------------------------------------------------

    def memory(self, memory_id: str) -> Memory:
        """A memory by id or ARN, or ResourceNotFoundException."""
        key = memory_id.rpartition(":memory/")[2]
        memory = self.memories.get(key)
        if memory is None:
            raise not_found(f"Memory {key} not found")
        return memory

    def active_memory(self, memory_id: str) -> Memory:
        """A memory the data plane may use: it exists and is ACTIVE."""
        memory = self.memory(memory_id)
        if memory.status != ACTIVE:
            raise invalid(
                f"Memory {memory.id} is {memory.status}, not ACTIVE; "
                "wait until GetMemory reports ACTIVE"
            )
        return memory

    # --- helpers ---------------------------------------------------------------------------

    def _suffix(self) -> str:
        """The 10 random alphanumerics AWS appends to memory and strategy ids."""
        alphabet = string.ascii_letters + string.digits
        return "".join(self.rng.choice(alphabet) for _ in range(10))

    def _new_strategy(self, existing: list[Strategy], spec: Params, now: float) -> Strategy:
        ((kind, body),) = spec.items()  # a union: validated to one member
        if kind not in STRATEGY_TYPES:
            raise invalid(f"The emulator does not know the {kind} strategy kind")
        if any(s.name == body["name"] for s in existing):
            raise invalid(f"The memory already has a strategy named {body['name']}")
        kind_type = STRATEGY_TYPES[kind]
        configuration = body.get("configuration") or {}
        overrides = [OVERRIDE_TYPES[k] for k in configuration if k in OVERRIDE_TYPES]
        return Strategy(
            id=f"{body['name']}-{self._suffix()}",
            name=body["name"],
            type=kind_type,
            namespaces=_namespaces(body) or [DEFAULT_NAMESPACES[kind_type]],
            created_at=now,
            updated_at=now,
            description=body.get("description"),
            override_type=overrides[0] if overrides else None,
            record_schema=body.get("memoryRecordSchema"),
            record_expiry_days=_expiry_days(body.get("recordExpirySpecification"), None),
        )


def _indexed_keys(memory: Memory, added: list[Json]) -> list[Json]:
    """The memory's indexed keys with ``added`` appended (none when nothing is added)."""
    if not added:
        return []
    keys = list(memory.settings.get("indexedKeys", []))
    known = {entry["key"] for entry in keys}
    for entry in added:
        if entry["key"] in known:
            raise invalid(f"Memory {memory.id} already indexes the key {entry['key']}")
        keys.append(entry)
        known.add(entry["key"])
    return keys


def _strategy(memory_id: str, strategies: list[Strategy], strategy_id: str) -> Strategy:
    for strategy in strategies:
        if strategy.id == strategy_id:
            return strategy
    raise invalid(f"Memory {memory_id} has no strategy {strategy_id}")


def _modify_strategy(strategy: Strategy, spec: Params, now: float) -> None:
    if "description" in spec:
        strategy.description = spec["description"]
    namespaces = _namespaces(spec)
    if namespaces:
        strategy.namespaces = namespaces
    if "memoryRecordSchema" in spec:
        strategy.record_schema = spec["memoryRecordSchema"]
    if "recordExpirySpecification" in spec:
        strategy.record_expiry_days = _expiry_days(
            spec["recordExpirySpecification"], strategy.record_expiry_days
        )
    strategy.updated_at = now


def _namespaces(spec: Params) -> list[str]:
    """``namespaceTemplates``, or the legacy ``namespaces`` (the same templates)."""
    return list(spec.get("namespaceTemplates") or spec.get("namespaces") or [])


def _expiry_days(specification: Params | None, current: int | None) -> int | None:
    if specification is None:
        return current
    if specification.get("action") == "REMOVE":
        return None
    days = specification.get("recordExpiryDurationDays")
    return current if days is None else int(days)


def _without_none(document: Json) -> Json:
    return {k: v for k, v in document.items() if v is not None}
