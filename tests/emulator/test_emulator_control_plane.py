"""The memory lifecycle through boto3's control-plane client: CREATING → ACTIVE by GetMemory
calls, idempotent creation, name conflicts, update, delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rig.emulator import (
    CONTROL,
    DATA,
    EmulatorProcess,
    conversational,
    error_of,
    error_reason,
    start_emulator,
    unique_name,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
SEMANTIC = {"semanticMemoryStrategy": {"name": "facts", "namespaceTemplates": ["/u/{actorId}"]}}
SUMMARY = {"summaryMemoryStrategy": {"name": "summaries", "description": "per session"}}


def list_events(data: Any, memory_id: str) -> Any:
    return data.list_events(memoryId=memory_id, actorId="a", sessionId="s")


def all_memory_ids(control: Any) -> list[str]:
    """Every memory's id, through ListMemories' pages."""
    pages = control.get_paginator("list_memories").paginate(PaginationConfig={"PageSize": 50})
    return [memory["id"] for page in pages for memory in page["memories"]]


def test_a_new_memory_is_creating_until_get_memory_has_seen_it(control: Any, data: Any) -> None:
    name = unique_name("life")
    created = control.create_memory(name=name, eventExpiryDuration=30)["memory"]
    assert created["status"] == "CREATING"
    with pytest.raises(ClientError) as raised:
        list_events(data, created["id"])
    status, code, message = error_of(raised)
    assert (status, code) == (400, "ValidationException")
    assert "CREATING, not ACTIVE" in message
    assert control.get_memory(memoryId=created["id"])["memory"]["status"] == "CREATING"
    assert control.get_memory(memoryId=created["id"])["memory"]["status"] == "ACTIVE"
    assert list_events(data, created["id"])["events"] == []


def test_ids_and_arns_have_the_models_shape(control: Any) -> None:
    name = unique_name("ids")
    memory = control.create_memory(name=name, eventExpiryDuration=7)["memory"]
    assert re.fullmatch(rf"{name}-[a-zA-Z0-9]{{10}}", memory["id"])
    assert (
        memory["arn"] == f"arn:aws:bedrock-agentcore:us-east-1:123456789012:memory/{memory['id']}"
    )
    assert memory["name"] == name
    assert memory["eventExpiryDuration"] == 7
    assert memory["createdAt"] == memory["updatedAt"]


def test_strategies_are_kept_with_ids_types_and_namespaces(control: Any) -> None:
    memory = control.create_memory(
        name=unique_name("strat"), eventExpiryDuration=7, memoryStrategies=[SEMANTIC, SUMMARY]
    )["memory"]
    facts, summaries = memory["strategies"]
    assert re.fullmatch(r"facts-[a-zA-Z0-9]{10}", facts["strategyId"])
    assert (facts["type"], facts["namespaceTemplates"]) == ("SEMANTIC", ["/u/{actorId}"])
    assert summaries["type"] == "SUMMARIZATION"
    assert summaries["description"] == "per session"
    assert summaries["namespaceTemplates"] == [
        "/strategies/{memoryStrategyId}/actors/{actorId}/sessions/{sessionId}"
    ]
    fetched = control.get_memory(memoryId=memory["id"])["memory"]
    assert fetched["strategies"] == memory["strategies"]


def test_the_same_client_token_returns_the_same_memory(control: Any) -> None:
    name = unique_name("token")
    first = control.create_memory(name=name, eventExpiryDuration=7, clientToken="create-1")
    again = control.create_memory(name=name, eventExpiryDuration=7, clientToken="create-1")
    assert again["memory"]["id"] == first["memory"]["id"]
    assert [i for i in all_memory_ids(control) if i.startswith(f"{name}-")] == [
        first["memory"]["id"]
    ]
    with pytest.raises(ClientError) as raised:
        control.create_memory(name=name, eventExpiryDuration=8, clientToken="create-1")
    assert error_of(raised)[:2] == (400, "ValidationException")
    assert error_reason(raised) == "IdempotentParameterMismatchException"


def test_a_second_memory_with_the_same_name_conflicts(control: Any) -> None:
    name = unique_name("dup")
    control.create_memory(name=name, eventExpiryDuration=7)
    with pytest.raises(ClientError) as raised:
        control.create_memory(name=name, eventExpiryDuration=7)
    status, code, message = error_of(raised)
    assert (status, code) == (409, "ConflictException")
    assert name in message


def test_update_changes_what_later_reads_see(
    agentcore_emulator: EmulatorProcess, control: Any
) -> None:
    memory_id = agentcore_emulator.create_active_memory(strategies=[SEMANTIC])
    before = control.get_memory(memoryId=memory_id)["memory"]
    facts_id = before["strategies"][0]["strategyId"]
    updated = control.update_memory(
        memoryId=memory_id,
        description="now described",
        eventExpiryDuration=90,
        memoryStrategies={
            "addMemoryStrategies": [SUMMARY],
            "deleteMemoryStrategies": [{"memoryStrategyId": facts_id}],
        },
    )["memory"]
    assert (updated["description"], updated["eventExpiryDuration"]) == ("now described", 90)
    assert [s["name"] for s in updated["strategies"]] == ["summaries"]
    after = control.get_memory(memoryId=memory_id)["memory"]
    assert after == updated
    assert after["status"] == "ACTIVE"
    assert after["updatedAt"] >= before["updatedAt"]
    with pytest.raises(ClientError) as raised:  # the strategy is gone: nothing else changes
        control.update_memory(
            memoryId=memory_id,
            description="must not stick",
            memoryStrategies={"deleteMemoryStrategies": [{"memoryStrategyId": facts_id}]},
        )
    assert error_of(raised)[:2] == (400, "ValidationException")
    assert control.get_memory(memoryId=memory_id)["memory"]["description"] == "now described"


def test_a_deleted_memory_is_gone_for_every_later_call(
    agentcore_emulator: EmulatorProcess, control: Any, data: Any
) -> None:
    memory_id = agentcore_emulator.create_active_memory()
    data.create_event(
        memoryId=memory_id,
        actorId="a",
        sessionId="s",
        eventTimestamp=NOW,
        payload=[conversational("hello")],
    )
    deleted = control.delete_memory(memoryId=memory_id)
    assert (deleted["memoryId"], deleted["status"]) == (memory_id, "DELETING")
    calls = [
        lambda: control.get_memory(memoryId=memory_id),
        lambda: control.update_memory(memoryId=memory_id, description="x"),
        lambda: control.delete_memory(memoryId=memory_id),
        lambda: list_events(data, memory_id),
        lambda: data.list_actors(memoryId=memory_id),
    ]
    for call in calls:
        with pytest.raises(ClientError) as raised:
            call()
        assert error_of(raised)[:2] == (404, "ResourceNotFoundException")
    assert memory_id not in all_memory_ids(control)


def test_a_retried_delete_answers_as_the_first_one(
    agentcore_emulator: EmulatorProcess, control: Any
) -> None:
    memory_id = agentcore_emulator.create_active_memory()
    first = control.delete_memory(memoryId=memory_id, clientToken="delete-1")
    again = control.delete_memory(memoryId=memory_id, clientToken="delete-1")
    assert (again["memoryId"], again["status"]) == (first["memoryId"], "DELETING")


def test_an_unknown_memory_is_not_found(control: Any, data: Any) -> None:
    unknown = "nothing_here-AbCdEf1234"
    with pytest.raises(ClientError) as raised:
        control.get_memory(memoryId=unknown)
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as raised:
        list_events(data, unknown)
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")


def test_list_memories_pages_in_creation_order(control: Any) -> None:
    names = [unique_name("page") for _ in range(3)]
    ids = [control.create_memory(name=n, eventExpiryDuration=7)["memory"]["id"] for n in names]
    seen: list[str] = []
    token: str | None = None
    while True:
        answer = control.list_memories(maxResults=2, **({"nextToken": token} if token else {}))
        assert len(answer["memories"]) <= 2
        seen += [m["id"] for m in answer["memories"]]
        token = answer.get("nextToken")
        if token is None:
            break
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i in ids] == ids
    summary = control.list_memories(maxResults=1)["memories"][0]
    assert set(summary) == {"arn", "id", "status", "createdAt", "updatedAt"}


def test_activation_reads_is_a_start_up_option(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path, "--activation-reads", "2", "--region", "eu-west-1")
    try:
        control = emulator.client(CONTROL)
        memory = control.create_memory(name="slow", eventExpiryDuration=7)["memory"]
        assert memory["arn"].startswith("arn:aws:bedrock-agentcore:eu-west-1:123456789012:")
        statuses = [control.get_memory(memoryId=memory["id"])["memory"]["status"] for _ in "abc"]
        assert statuses == ["CREATING", "CREATING", "ACTIVE"]
    finally:
        emulator.stop()


def test_clients_find_both_services_through_the_standard_variables(
    agentcore_emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3  # type: ignore[import-untyped]

    for name, value in agentcore_emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = boto3.session.Session()
    control, data = session.client(CONTROL), session.client(DATA)
    memory = control.create_memory(name=unique_name("env"), eventExpiryDuration=7)["memory"]
    control.get_memory(memoryId=memory["id"])
    assert data.list_actors(memoryId=memory["id"])["actorSummaries"] == []
    assert control.meta.endpoint_url == agentcore_emulator.endpoint_url
    assert data.meta.endpoint_url == agentcore_emulator.endpoint_url


def test_tags_given_at_creation_are_listed_added_and_removed(control: Any) -> None:
    created = control.create_memory(
        name=unique_name(), eventExpiryDuration=30, tags={"team": "a", "owner": "x"}
    )["memory"]
    arn = created["arn"]
    assert control.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "a", "owner": "x"}
    control.tag_resource(resourceArn=arn, tags={"owner": "y", "cost": "c1"})
    control.untag_resource(resourceArn=arn, tagKeys=["team", "absent"])
    assert control.list_tags_for_resource(resourceArn=arn)["tags"] == {"owner": "y", "cost": "c1"}


def test_tagging_names_a_memory_by_its_arn_only(control: Any) -> None:
    created = control.create_memory(name=unique_name(), eventExpiryDuration=30)["memory"]
    assert control.list_tags_for_resource(resourceArn=created["arn"])["tags"] == {}
    with pytest.raises(ClientError) as raised:
        control.list_tags_for_resource(resourceArn=created["arn"].replace(created["id"], "no-1"))
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as raised:
        control.list_tags_for_resource(resourceArn=created["id"])  # the model's ARN pattern
    assert error_of(raised)[:2] == (400, "ValidationException")
