"""Requests the model forbids are refused as AWS refuses them: HTTP 400 ValidationException
naming every problem. Sent by boto3 with its own validation off, so they reach the server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rig.emulator import EmulatorProcess, conversational, error_of

BASE = datetime(2025, 1, 1, tzinfo=UTC)


def event(memory_id: str, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "memoryId": memory_id,
        "actorId": "a",
        "sessionId": "s",
        "eventTimestamp": BASE,
        "payload": [conversational("hi")],
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def refused(call: Any, **params: Any) -> tuple[str, list[dict[str, str]]]:
    """The ValidationException's message and fieldList."""
    with pytest.raises(ClientError) as raised:
        call(**params)
    status, code, message = error_of(raised)
    assert (status, code) == (400, "ValidationException")
    response: Any = raised.value.response
    return message, response.get("fieldList", [])


@pytest.mark.parametrize(
    ("overrides", "path", "constraint"),
    [
        ({"actorId": None}, "actorId", "Member must not be null"),
        (
            {"payload": [conversational("x", role="ROBOT")]},
            "payload[0].conversational.role",
            "Member must satisfy enum value set",
        ),
        (
            {"sessionId": "s" * 101},
            "sessionId",
            "Member must have length less than or equal to 100",
        ),
        ({"actorId": "not an actor!"}, "actorId", "Member must satisfy regular expression pattern"),
        (
            {"payload": [{**conversational("x"), "blob": {"also": "this"}}]},
            "payload[0]",
            "Member must have exactly one member set, found 2",
        ),
        (
            {"metadata": {"k": {"stringValue": "x" * 257}}},
            "metadata[k].stringValue",
            "Member must have length less than or equal to 256",
        ),
    ],
    ids=["missing-required", "bad-enum", "too-long", "pattern", "union-of-two", "map-value"],
)
def test_create_event_refuses_what_the_model_forbids(
    lax_data: Any, memory_id: str, overrides: dict[str, Any], path: str, constraint: str
) -> None:
    message, fields = refused(lax_data.create_event, **event(memory_id, **overrides))
    assert f"Value at '{path}' failed to satisfy constraint: {constraint}" in message
    assert [f["name"] for f in fields] == [path]
    assert constraint in fields[0]["message"]


def test_a_wrong_type_is_refused(lax_data: Any, memory_id: str) -> None:
    message, fields = refused(
        lax_data.list_events, memoryId=memory_id, actorId="a", sessionId="s", maxResults="ten"
    )
    assert "Value at 'maxResults' failed to satisfy constraint: Member must be of type integer" in (
        message
    )
    assert fields == [{"name": "maxResults", "message": "Member must be of type integer"}]


def test_every_problem_is_named_at_once(lax_data: Any, memory_id: str) -> None:
    message, fields = refused(
        lax_data.create_event, **event(memory_id, actorId=None, sessionId="-s", payload=[{}])
    )
    assert message.startswith("3 validation errors detected: ")
    assert {f["name"] for f in fields} == {"actorId", "sessionId", "payload[0]"}


def test_equals_to_without_a_right_operand_is_refused(lax_data: Any, memory_id: str) -> None:
    no_right = {"left": {"metadataKey": "k"}, "operator": "EQUALS_TO"}
    message, fields = refused(
        lax_data.list_events,
        memoryId=memory_id,
        actorId="a",
        sessionId="s",
        filter={"eventMetadata": [no_right]},
    )
    assert "EQUALS_TO needs a right operand" in message
    assert [f["name"] for f in fields] == ["filter.eventMetadata[0].right"]


def test_exists_with_a_right_operand_is_refused(lax_data: Any, memory_id: str) -> None:
    right = {"metadataValue": {"stringValue": "v"}}
    with_right = {"left": {"metadataKey": "k"}, "operator": "EXISTS", "right": right}
    message, _ = refused(
        lax_data.list_events,
        memoryId=memory_id,
        actorId="a",
        sessionId="s",
        filter={"eventMetadata": [with_right]},
    )
    assert "EXISTS takes no right operand" in message


def test_a_record_comparison_needs_a_matching_operand(lax_data: Any, memory_id: str) -> None:
    expression = {
        "left": {"metadataKey": "n"},
        "operator": "GREATER_THAN",
        "right": {"metadataValue": {"stringValue": "5"}},
    }
    message, _ = refused(
        lax_data.list_memory_records,
        memoryId=memory_id,
        namespace="/",
        metadataFilters=[expression],
    )
    assert "GREATER_THAN compares a numberValue" in message


def test_a_bad_limit_is_refused(lax_data: Any, memory_id: str) -> None:
    message, _ = refused(lax_data.list_actors, memoryId=memory_id, maxResults=101)
    assert "Value at 'maxResults' failed to satisfy constraint: Member must have value less" in (
        message
    )


def test_a_body_over_ten_mebibytes_is_refused(lax_data: Any, memory_id: str) -> None:
    huge = "x" * (10 * 1024 * 1024 + 1)
    message, _ = refused(lax_data.create_event, **event(memory_id, payload=[conversational(huge)]))
    assert "larger than 10485760 bytes" in message
    assert lax_data.list_events(memoryId=memory_id, actorId="a", sessionId="s")["events"] == []


# What botocore sends for bedrock-agentcore (the signature itself is not checked).
AGENTCORE_SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/bedrock-agentcore"
    "/aws4_request, SignedHeaders=host, Signature=00"
}


def refusal(url: str, headers: dict[str, str]) -> tuple[int, str, str]:
    """The status, error code and message of a raw request the emulator refuses."""
    request = urllib.request.Request(url, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    with raised.value as response:
        message = json.loads(response.read())["message"]
        return raised.value.code, response.headers["x-amzn-ErrorType"], message


def test_an_unknown_route_is_an_unknown_operation(agentcore_emulator: EmulatorProcess) -> None:
    url = f"{agentcore_emulator.endpoint_url}/no/such/route"
    status, code, message = refusal(url, AGENTCORE_SIGNED)
    assert (status, code) == (404, "UnknownOperationException")
    assert "GET /no/such/route" in message


def test_an_unsigned_request_is_refused_naming_the_services(
    agentcore_emulator: EmulatorProcess,
) -> None:
    url = f"{agentcore_emulator.endpoint_url}/memories/"
    status, code, message = refusal(url, {})
    assert (status, code) == (403, "MissingAuthenticationTokenException")
    assert "bedrock, bedrock-agentcore" in message
    other = {
        "Authorization": AGENTCORE_SIGNED["Authorization"].replace("/bedrock-agentcore/", "/s3/")
    }
    status, code, message = refusal(url, other)
    assert (status, code) == (403, "InvalidSignatureException")
    assert "'s3'" in message
