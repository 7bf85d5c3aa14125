"""Long-term memory through boto3's data-plane client: records in batches, listing by
namespace, the retrieval stand-in's ranking, and the extraction stand-in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rig.emulator import EmulatorProcess, conversational, error_of

BASE = datetime(2025, 1, 1, tzinfo=UTC)


def create(data: Any, memory_id: str, *records: dict[str, Any], **params: Any) -> list[str]:
    """Records ``{"text", "namespace", ...}`` created in one batch; their ids, in order."""
    inputs = [
        {
            "requestIdentifier": f"r{index}",
            "namespaces": [record["namespace"]],
            "content": {"text": record["text"]},
            "timestamp": BASE,
            **{k: v for k, v in record.items() if k not in ("text", "namespace")},
        }
        for index, record in enumerate(records)
    ]
    answer = data.batch_create_memory_records(memoryId=memory_id, records=inputs, **params)
    assert answer["failedRecords"] == []
    done = answer["successfulRecords"]
    assert [r["requestIdentifier"] for r in done] == [i["requestIdentifier"] for i in inputs]
    assert {r["status"] for r in done} <= {"SUCCEEDED"}
    return [r["memoryRecordId"] for r in done]


def texts(summaries: list[dict[str, Any]]) -> list[str]:
    return [summary["content"]["text"] for summary in summaries]


def listed(data: Any, memory_id: str, **params: Any) -> list[str]:
    return texts(data.list_memory_records(memoryId=memory_id, **params)["memoryRecordSummaries"])


def retrieved(data: Any, memory_id: str, query: str, **criteria: Any) -> list[dict[str, Any]]:
    answer = data.retrieve_memory_records(
        memoryId=memory_id,
        namespacePath="/",
        searchCriteria={"searchQuery": query, **criteria},
    )
    summaries: list[dict[str, Any]] = answer["memoryRecordSummaries"]
    return summaries


def test_a_record_is_created_read_updated_and_deleted(data: Any, memory_id: str) -> None:
    (record_id,) = create(
        data,
        memory_id,
        {"text": "likes tea", "namespace": "/users/a", "metadata": {"n": {"numberValue": 3}}},
    )
    assert re.fullmatch(r"mem-[a-zA-Z0-9-_]{36,46}", record_id)
    record = data.get_memory_record(memoryId=memory_id, memoryRecordId=record_id)["memoryRecord"]
    assert record["content"] == {"text": "likes tea"}
    assert record["namespaces"] == ["/users/a"]
    assert record["memoryStrategyId"] == "custom"  # what a record without a strategy reports
    assert record["metadata"] == {"n": {"numberValue": 3.0}}
    assert record["timestamp"] == BASE
    updated = data.batch_update_memory_records(
        memoryId=memory_id,
        records=[
            {
                "memoryRecordId": record_id,
                "timestamp": BASE + timedelta(days=1),
                "content": {"text": "likes green tea"},
                "namespaces": ["/users/a/prefs"],
            },
            {"memoryRecordId": "mem-" + "0" * 36, "timestamp": BASE},
        ],
    )
    assert [r["memoryRecordId"] for r in updated["successfulRecords"]] == [record_id]
    (failed,) = updated["failedRecords"]
    assert (failed["status"], failed["errorCode"]) == ("FAILED", 404)
    record = data.get_memory_record(memoryId=memory_id, memoryRecordId=record_id)["memoryRecord"]
    assert (record["content"]["text"], record["namespaces"]) == (
        "likes green tea",
        ["/users/a/prefs"],
    )
    deleted = data.delete_memory_record(memoryId=memory_id, memoryRecordId=record_id)
    assert deleted["memoryRecordId"] == record_id


def test_records_are_deleted_in_batches(data: Any, memory_id: str) -> None:
    kept, gone = create(
        data, memory_id, {"text": "a", "namespace": "/n"}, {"text": "b", "namespace": "/n"}
    )
    answer = data.batch_delete_memory_records(
        memoryId=memory_id,
        records=[{"memoryRecordId": gone}, {"memoryRecordId": "mem-" + "1" * 36}],
    )
    assert [r["memoryRecordId"] for r in answer["successfulRecords"]] == [gone]
    assert [r["errorCode"] for r in answer["failedRecords"]] == [404]
    assert listed(data, memory_id, namespace="/n") == ["a"]
    with pytest.raises(ClientError) as raised:
        data.get_memory_record(memoryId=memory_id, memoryRecordId=gone)
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")
    data.delete_memory_record(memoryId=memory_id, memoryRecordId=kept)
    with pytest.raises(ClientError) as raised:
        data.delete_memory_record(memoryId=memory_id, memoryRecordId=kept)
    assert error_of(raised)[:2] == (404, "ResourceNotFoundException")


def test_a_repeated_batch_token_creates_nothing_more(data: Any, memory_id: str) -> None:
    first = create(data, memory_id, {"text": "once", "namespace": "/t"}, clientToken="batch-1")
    again = create(data, memory_id, {"text": "once", "namespace": "/t"}, clientToken="batch-1")
    assert again == first
    assert listed(data, memory_id, namespace="/t") == ["once"]


def test_namespace_is_exact_and_namespace_path_is_hierarchical(data: Any, memory_id: str) -> None:
    create(
        data,
        memory_id,
        {"text": "a", "namespace": "/users/a"},
        {"text": "a facts", "namespace": "/users/a/facts"},
        {"text": "ab", "namespace": "/users/ab"},
        {"text": "b", "namespace": "/users/b"},
    )
    assert listed(data, memory_id, namespace="/users/a") == ["a"]
    assert listed(data, memory_id, namespacePath="/users/a") == ["a facts", "a"]
    assert listed(data, memory_id, namespacePath="/users/a/") == ["a facts", "a"]
    assert listed(data, memory_id, namespacePath="/users") == ["b", "ab", "a facts", "a"]
    assert listed(data, memory_id, namespace="/users") == []
    with pytest.raises(ClientError) as raised:
        data.list_memory_records(memoryId=memory_id)
    status, code, message = error_of(raised)
    assert (status, code) == (400, "ValidationException")
    assert "namespace or namespacePath" in message


def test_records_filter_by_strategy_and_metadata(data: Any, memory_id: str) -> None:
    create(
        data,
        memory_id,
        {"text": "x", "namespace": "/m", "memoryStrategyId": "s1"},
        {"text": "y", "namespace": "/m", "metadata": {"n": {"numberValue": 5}}},
        {"text": "z", "namespace": "/m", "metadata": {"tags": {"stringListValue": ["a", "b"]}}},
    )
    assert listed(data, memory_id, namespace="/m", memoryStrategyId="s1") == ["x"]

    def where(operator: str, **right: Any) -> list[str]:
        expression: dict[str, Any] = {
            "left": {"metadataKey": next(iter(right))},
            "operator": operator,
        }
        value = next(iter(right.values()))
        if value is not None:
            expression["right"] = {"metadataValue": value}
        return listed(data, memory_id, namespace="/m", metadataFilters=[expression])

    assert where("GREATER_THAN", n={"numberValue": 4}) == ["y"]
    assert where("LESS_THAN", n={"numberValue": 4}) == []
    assert where("CONTAINS", tags={"stringValue": "b"}) == ["z"]
    assert where("EXISTS", n=None) == ["y"]
    assert where("NOT_EXISTS", n=None) == ["z", "x"]


def test_records_are_listed_newest_first_in_pages(data: Any, memory_id: str) -> None:
    for text in ("one", "two", "three"):
        create(data, memory_id, {"text": text, "namespace": "/p"})
    first = data.list_memory_records(memoryId=memory_id, namespace="/p", maxResults=2)
    assert texts(first["memoryRecordSummaries"]) == ["three", "two"]
    create(data, memory_id, {"text": "four", "namespace": "/p"})
    rest = data.list_memory_records(
        memoryId=memory_id, namespace="/p", maxResults=2, nextToken=first["nextToken"]
    )
    assert texts(rest["memoryRecordSummaries"]) == ["one"]
    assert "nextToken" not in rest


def test_retrieval_ranks_by_shared_words(data: Any, memory_id: str) -> None:
    create(
        data,
        memory_id,
        {"text": "The user drinks green tea every morning", "namespace": "/r"},
        {"text": "Green tea. Green tea!", "namespace": "/r"},
        {"text": "The user prefers coffee", "namespace": "/r"},
        {"text": "green TEA", "namespace": "/elsewhere"},
    )
    ranked = retrieved(data, memory_id, "green tea")
    assert texts(ranked) == [
        "green TEA",
        "Green tea. Green tea!",
        "The user drinks green tea every morning",
    ]
    scores = [r["score"] for r in ranked]
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(1.0)
    assert 0 < scores[2] < scores[1]
    assert texts(retrieved(data, memory_id, "green tea", topK=1)) == ["green TEA"]
    assert retrieved(data, memory_id, "zebra crossing") == []
    only_r = data.retrieve_memory_records(
        memoryId=memory_id, namespace="/r", searchCriteria={"searchQuery": "coffee please"}
    )["memoryRecordSummaries"]
    assert texts(only_r) == ["The user prefers coffee"]


def test_extraction_writes_a_user_message_into_each_strategy(
    agentcore_emulator: EmulatorProcess, control: Any, data: Any
) -> None:
    memory_id = agentcore_emulator.create_active_memory(
        strategies=[
            {
                "semanticMemoryStrategy": {
                    "name": "facts",
                    "namespaceTemplates": ["/users/{actorId}/facts"],
                }
            },
            {"summaryMemoryStrategy": {"name": "summaries"}},
            {
                "userPreferenceMemoryStrategy": {
                    "name": "prefs",
                    "namespaceTemplates": ["/tenants/{tenant}/{actorId}"],
                }
            },
        ]
    )
    facts, summaries, prefs = control.get_memory(memoryId=memory_id)["memory"]["strategies"]

    def say(text: str, role: str = "USER", **extra: Any) -> None:
        data.create_event(
            memoryId=memory_id,
            actorId="alice",
            sessionId="s1",
            eventTimestamp=BASE,
            payload=[conversational(text, role)],
            **extra,
        )

    say("I live in Lisbon", clientToken="say-1")
    say("I live in Lisbon", clientToken="say-1")  # a retry: nothing more is extracted
    say("Noted, you live in Lisbon", role="ASSISTANT")
    say("do not remember this", extractionMode="SKIP")
    say("I work at night", extractionConfig={"namespaceVariables": {"tenant": "acme"}})

    def records(path: str) -> list[tuple[str, str, str]]:
        summaries_ = data.list_memory_records(memoryId=memory_id, namespacePath=path)[
            "memoryRecordSummaries"
        ]
        return [
            (r["namespaces"][0], r["memoryStrategyId"], r["content"]["text"]) for r in summaries_
        ]

    session_ns = f"/strategies/{summaries['strategyId']}/actors/alice/sessions/s1"
    assert records("/users") == [
        ("/users/alice/facts", facts["strategyId"], "I work at night"),
        ("/users/alice/facts", facts["strategyId"], "I live in Lisbon"),
    ]
    assert records("/strategies") == [
        (session_ns, summaries["strategyId"], "I work at night"),
        (session_ns, summaries["strategyId"], "I live in Lisbon"),
    ]
    # {tenant} is only known when the event names it
    assert records("/tenants") == [("/tenants/acme/alice", prefs["strategyId"], "I work at night")]
    assert (
        texts(retrieved(data, memory_id, "where does alice live Lisbon"))[0] == "I live in Lisbon"
    )


def test_a_memory_without_strategies_extracts_nothing(data: Any, memory_id: str) -> None:
    data.create_event(
        memoryId=memory_id,
        actorId="bob",
        sessionId="s",
        eventTimestamp=BASE,
        payload=[conversational("remember me")],
    )
    assert (
        data.list_memory_records(memoryId=memory_id, namespacePath="/")["memoryRecordSummaries"]
        == []
    )
