"""Every served operation (AgentCore Memory and Bedrock Agent Runtime sessions) once, with a
valid request, through boto3 (botocore parses every
response) — and every success response checked against its output shape by the emulator's
own validator (the rig's clients do that on each call)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from agentpersistence.emulator.operations import HANDLERS
from rig.emulator import (
    AGENT_RUNTIME,
    CONTROL,
    DATA,
    EmulatorProcess,
    conversational,
    unique_name,
)

WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_every_served_operation_answers_inside_its_model(
    agentcore_emulator: EmulatorProcess,
) -> None:
    before = Counter(agentcore_emulator.checked_by_service)
    control, data = agentcore_emulator.client(CONTROL), agentcore_emulator.client(DATA)
    strategy = {"semanticMemoryStrategy": {"name": "facts", "namespaces": ["/facts/{actorId}"]}}

    memory = control.create_memory(
        name=unique_name("tour"),
        description="every operation",
        eventExpiryDuration=30,
        memoryStrategies=[strategy],
        tags={"team": "platform"},
    )["memory"]
    memory_id = memory["id"]
    statuses = [control.get_memory(memoryId=memory_id)["memory"]["status"] for _ in "ab"]
    assert statuses == ["CREATING", "ACTIVE"]
    control.list_memories(maxResults=5)
    control.update_memory(memoryId=memory_id, eventExpiryDuration=60)
    control.tag_resource(resourceArn=memory["arn"], tags={"cost": "c1"})
    control.untag_resource(resourceArn=memory["arn"], tagKeys=["cost"])
    assert control.list_tags_for_resource(resourceArn=memory["arn"])["tags"] == {"team": "platform"}

    place = {"memoryId": memory_id, "actorId": "tourist", "sessionId": "day-1"}
    event = data.create_event(
        **place,
        eventTimestamp=WHEN,
        payload=[conversational("I collect stamps"), {"blob": {"k": [1, "v"]}}],
        metadata={"topic": {"stringValue": "hobbies"}},
    )["event"]
    data.get_event(**place, eventId=event["eventId"])
    data.list_events(**place, includePayloads=False, filter={"branch": {"name": "main"}})
    data.list_sessions(memoryId=memory_id, actorId="tourist")
    data.list_actors(memoryId=memory_id)

    created = data.batch_create_memory_records(
        memoryId=memory_id,
        records=[
            {
                "requestIdentifier": "r1",
                "namespaces": ["/facts/tourist"],
                "content": {"text": "collects stamps and coins"},
                "timestamp": WHEN,
                "metadata": {"when": {"dateTimeValue": WHEN}, "tags": {"stringListValue": ["a"]}},
            }
        ],
        recordExpirySpecification={"recordExpiryDurationDays": 31},
    )
    record_id = created["successfulRecords"][0]["memoryRecordId"]
    data.batch_update_memory_records(
        memoryId=memory_id,
        records=[{"memoryRecordId": record_id, "timestamp": WHEN, "content": {"text": "coins"}}],
    )
    record = data.get_memory_record(memoryId=memory_id, memoryRecordId=record_id)["memoryRecord"]
    assert record["expiresAt"] > record["createdAt"]
    data.list_memory_records(memoryId=memory_id, namespacePath="/facts", maxResults=10)
    found = data.retrieve_memory_records(
        memoryId=memory_id,
        namespace="/facts/tourist",
        searchCriteria={"searchQuery": "stamps", "topK": 5},
    )["memoryRecordSummaries"]
    assert [r["content"]["text"] for r in found] == ["I collect stamps"]  # the extracted one
    data.delete_memory_record(memoryId=memory_id, memoryRecordId=found[0]["memoryRecordId"])
    data.batch_delete_memory_records(memoryId=memory_id, records=[{"memoryRecordId": record_id}])
    data.delete_event(**place, eventId=event["eventId"])
    control.delete_memory(memoryId=memory_id)

    _tour_sessions(agentcore_emulator.client(AGENT_RUNTIME))

    seen = Counter(agentcore_emulator.checked_by_service)
    seen.subtract(before)
    assert set(HANDLERS) <= {key for key, count in seen.items() if count > 0}


def _tour_sessions(runtime: Any) -> None:
    """Every Bedrock Agent Runtime session operation once."""
    key = "arn:aws:kms:us-east-1:123456789012:key/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12
    session = runtime.create_session(
        sessionMetadata={"user": "tourist"}, encryptionKeyArn=key, tags={"team": "platform"}
    )
    session_id = session["sessionId"]
    runtime.get_session(sessionIdentifier=session["sessionArn"])
    runtime.update_session(sessionIdentifier=session_id, sessionMetadata={"user": "guide"})
    runtime.list_sessions(maxResults=5)
    invocation = runtime.create_invocation(sessionIdentifier=session_id, description="tour")
    runtime.list_invocations(sessionIdentifier=session_id)
    place = {"sessionIdentifier": session_id, "invocationIdentifier": invocation["invocationId"]}
    step = runtime.put_invocation_step(
        **place,
        invocationStepTime=WHEN,
        payload={"contentBlocks": [{"text": "hello"}]},
    )
    runtime.get_invocation_step(**place, invocationStepId=step["invocationStepId"])
    runtime.list_invocation_steps(**place)
    runtime.tag_resource(resourceArn=session["sessionArn"], tags={"cost": "c1"})
    runtime.untag_resource(resourceArn=session["sessionArn"], tagKeys=["cost"])
    runtime.list_tags_for_resource(resourceArn=session["sessionArn"])
    runtime.end_session(sessionIdentifier=session_id)
    runtime.delete_session(sessionIdentifier=session_id)
