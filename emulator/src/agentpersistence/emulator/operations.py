"""The operations served, by service and name: each takes the validated input and answers
the output, on :class:`state.State`. Data-plane calls need an ACTIVE memory; Bedrock Agent
Runtime session calls go to ``state.sessions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import extraction
from .model import AGENT_RUNTIME, CONTROL_PLANE, DATA_PLANE
from .sessions import SessionStore
from .state import Memory, State

__all__ = ["HANDLERS", "Handler"]

Json = dict[str, Any]
Params = Mapping[str, Any]
Handler = Callable[[State, Params], Json]


def create_event(state: State, params: Params) -> Json:
    """A repeated clientToken answers the original event and creates nothing (no event, no
    extracted record); with other parameters it is refused."""
    memory = state.active_memory(params["memoryId"])
    token = params.get("clientToken")
    replayed = memory.tokens.replay("CreateEvent", token, params)
    if replayed is not None:
        return replayed
    event = memory.events.create(params)
    if params.get("extractionMode") != "SKIP":
        variables = (params.get("extractionConfig") or {}).get("namespaceVariables")
        _extract(state, memory, event.body, variables)
    answer = {"event": event.body}
    memory.tokens.remember("CreateEvent", token, params, answer)
    return answer


def _extract(
    state: State, memory: Memory, event: Json, variables: Mapping[str, str] | None
) -> None:
    templates = [
        extraction.StrategyTemplate(strategy.id, namespace)
        for strategy in memory.strategies
        for namespace in strategy.namespaces
    ]
    expiry = {strategy.id: strategy.record_expiry_days for strategy in memory.strategies}
    drafts = extraction.drafts(
        event, templates, namespace_ok=state.namespace_ok, variables=variables
    )
    for draft in drafts:
        memory.records.add(
            draft.text,
            [draft.namespace],
            strategy_id=draft.strategy_id,
            timestamp=draft.timestamp,
            expiry_days=expiry[draft.strategy_id],
        )


def get_event(state: State, params: Params) -> Json:
    memory = state.active_memory(params["memoryId"])
    event = memory.events.get(params["actorId"], params["sessionId"], params["eventId"])
    return {"event": event.body}


def list_events(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).events.list_events(params)


def delete_event(state: State, params: Params) -> Json:
    memory = state.active_memory(params["memoryId"])
    memory.events.delete(params["actorId"], params["sessionId"], params["eventId"])
    return {"eventId": params["eventId"]}


def list_sessions(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).events.list_sessions(params)


def list_actors(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).events.list_actors(params)


def batch_create_memory_records(state: State, params: Params) -> Json:
    memory = state.active_memory(params["memoryId"])
    token = params.get("clientToken")
    replayed = memory.tokens.replay("BatchCreateMemoryRecords", token, params)
    if replayed is not None:
        return replayed
    answer = memory.records.batch_create(params)
    memory.tokens.remember("BatchCreateMemoryRecords", token, params, answer)
    return answer


def batch_update_memory_records(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).records.batch_update(params)


def batch_delete_memory_records(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).records.batch_delete(params)


def get_memory_record(state: State, params: Params) -> Json:
    memory = state.active_memory(params["memoryId"])
    return {"memoryRecord": memory.records.get(params["memoryRecordId"]).full()}


def delete_memory_record(state: State, params: Params) -> Json:
    memory = state.active_memory(params["memoryId"])
    memory.records.delete(params["memoryRecordId"])
    return {"memoryRecordId": params["memoryRecordId"]}


def list_memory_records(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).records.list_records(params)


def retrieve_memory_records(state: State, params: Params) -> Json:
    return state.active_memory(params["memoryId"]).records.retrieve(params)


def _on_sessions(method: Callable[[SessionStore, Params], Json]) -> Handler:
    """A SessionStore method as a handler on the whole state."""
    return lambda state, params: method(state.sessions, params)


SESSION_OPERATIONS = {
    "CreateSession": SessionStore.create_session,
    "GetSession": SessionStore.get_session,
    "UpdateSession": SessionStore.update_session,
    "EndSession": SessionStore.end_session,
    "DeleteSession": SessionStore.delete_session,
    "ListSessions": SessionStore.list_sessions,
    "CreateInvocation": SessionStore.create_invocation,
    "ListInvocations": SessionStore.list_invocations,
    "PutInvocationStep": SessionStore.put_invocation_step,
    "GetInvocationStep": SessionStore.get_invocation_step,
    "ListInvocationSteps": SessionStore.list_invocation_steps,
    "TagResource": SessionStore.tag_resource,
    "UntagResource": SessionStore.untag_resource,
    "ListTagsForResource": SessionStore.list_tags_for_resource,
}

HANDLERS: dict[tuple[str, str], Handler] = {
    (CONTROL_PLANE, "CreateMemory"): State.create_memory,
    (CONTROL_PLANE, "GetMemory"): State.get_memory,
    (CONTROL_PLANE, "ListMemories"): State.list_memories,
    (CONTROL_PLANE, "UpdateMemory"): State.update_memory,
    (CONTROL_PLANE, "DeleteMemory"): State.delete_memory,
    (CONTROL_PLANE, "TagResource"): State.tag_resource,
    (CONTROL_PLANE, "UntagResource"): State.untag_resource,
    (CONTROL_PLANE, "ListTagsForResource"): State.list_tags_for_resource,
    (DATA_PLANE, "CreateEvent"): create_event,
    (DATA_PLANE, "GetEvent"): get_event,
    (DATA_PLANE, "ListEvents"): list_events,
    (DATA_PLANE, "DeleteEvent"): delete_event,
    (DATA_PLANE, "ListSessions"): list_sessions,
    (DATA_PLANE, "ListActors"): list_actors,
    (DATA_PLANE, "BatchCreateMemoryRecords"): batch_create_memory_records,
    (DATA_PLANE, "BatchUpdateMemoryRecords"): batch_update_memory_records,
    (DATA_PLANE, "BatchDeleteMemoryRecords"): batch_delete_memory_records,
    (DATA_PLANE, "GetMemoryRecord"): get_memory_record,
    (DATA_PLANE, "DeleteMemoryRecord"): delete_memory_record,
    (DATA_PLANE, "ListMemoryRecords"): list_memory_records,
    (DATA_PLANE, "RetrieveMemoryRecords"): retrieve_memory_records,
    **{(AGENT_RUNTIME, name): _on_sessions(method) for name, method in SESSION_OPERATIONS.items()},
}
