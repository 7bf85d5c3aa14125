"""rest-json against botocore's own serializer and parser: what botocore sends parses into
the input it was given; what the emulator answers parses the way botocore reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from agentpersistence.emulator import wire
from agentpersistence.emulator.model import CONTROL_PLANE, DATA_PLANE, load_services

MEMORY_ID = "mem_a-AbCdEf1234"
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture(scope="module")
def models() -> dict[str, ServiceModel]:
    return load_services([DATA_PLANE, CONTROL_PLANE])


def operation(models: dict[str, ServiceModel], service: str, name: str) -> OperationModel:
    return models[service].operation_model(name)


def sent_and_parsed(op: OperationModel, params: dict[str, Any], labels: dict[str, str]) -> Any:
    """botocore's request for ``params``, parsed back by the emulator."""
    request = create_serializer("rest-json").serialize_to_request(params, op)
    query_string, body = request["query_string"], request["body"]
    if isinstance(query_string, dict):  # rest serializers leave the query as a dict
        query = {k: v if isinstance(v, list) else [str(v)] for k, v in query_string.items()}
    else:
        query = {k: list(v) for k, v in parse_qs(query_string).items()}
    body = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
    return wire.parse_request(op, labels, query, request["headers"], body)


def test_a_body_request_round_trips(models: dict[str, ServiceModel]) -> None:
    op = operation(models, DATA_PLANE, "CreateEvent")
    params = {
        "memoryId": MEMORY_ID,
        "actorId": "user/1",
        "eventTimestamp": WHEN,
        "payload": [
            {"conversational": {"content": {"text": "hi"}, "role": "USER"}},
            {"blob": {"nested": [1, None, "x"]}},
        ],
        "metadata": {"k": {"stringValue": "v"}},
        "clientToken": "token-1",
    }
    parsed = sent_and_parsed(op, params, {"memoryId": MEMORY_ID})
    assert parsed == {**params, "eventTimestamp": WHEN.timestamp()}


def test_uri_and_query_members_are_read_from_their_locations(
    models: dict[str, ServiceModel],
) -> None:
    op = operation(models, DATA_PLANE, "DeleteMemoryRecord")
    record_id = "mem-" + "a" * 36
    params = {"memoryId": MEMORY_ID, "memoryRecordId": record_id, "namespace": "/users/a"}
    labels = {"memoryId": MEMORY_ID, "memoryRecordId": record_id}
    assert sent_and_parsed(op, params, labels) == params
    get_memory = operation(models, CONTROL_PLANE, "GetMemory")
    parsed = wire.parse_request(get_memory, {"memoryId": MEMORY_ID}, {"view": ["full"]}, {}, b"")
    assert parsed == {"memoryId": MEMORY_ID, "view": "full"}


def test_values_of_the_wrong_type_are_passed_on_for_validation(
    models: dict[str, ServiceModel],
) -> None:
    op = operation(models, DATA_PLANE, "ListEvents")
    body = json.dumps({"maxResults": "ten", "includePayloads": None, "unknown": 1}).encode()
    labels = {"memoryId": MEMORY_ID, "actorId": "a", "sessionId": "s"}
    parsed = wire.parse_request(op, labels, {}, {}, body)
    assert parsed == {**labels, "maxResults": "ten"}  # null is absent; unknown is ignored


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_cannot_be_parsed(
    models: dict[str, ServiceModel], body: bytes
) -> None:
    op = operation(models, DATA_PLANE, "ListActors")
    with pytest.raises(wire.CannotParse):
        wire.parse_request(op, {"memoryId": MEMORY_ID}, {}, {}, body)


def test_an_output_reads_back_through_botocores_parser(models: dict[str, ServiceModel]) -> None:
    op = operation(models, DATA_PLANE, "CreateEvent")
    event = {
        "memoryId": MEMORY_ID,
        "actorId": "a",
        "sessionId": "s",
        "eventId": "1735787045678#00ab",
        "eventTimestamp": WHEN.timestamp(),
        "payload": [{"blob": {"k": [1, 2]}}],
    }
    response = wire.output_response(op, {"event": event})
    assert response.status == 201  # CreateEvent's responseCode
    assert op.output_shape is not None
    parsed = create_parser("rest-json").parse(
        {"status_code": response.status, "headers": response.headers, "body": response.body},
        op.output_shape,
    )
    assert parsed["event"] == {**event, "eventTimestamp": WHEN}
    assert wire.parse_output(op, response.headers, response.body) == {"event": event}


def lowered(headers: dict[str, str]) -> dict[str, str]:
    """Headers as botocore's parser sees them (HTTP header names are case-insensitive)."""
    return {k.lower(): v for k, v in headers.items()}


def test_an_error_reads_back_as_its_code_and_message(models: dict[str, ServiceModel]) -> None:
    op = operation(models, DATA_PLANE, "GetEvent")
    shape = models[DATA_PLANE].shape_for("ValidationException")
    fields = {"reason": "FieldValidationFailed", "fieldList": [{"name": "a", "message": "b"}]}
    response = wire.error_response(shape, "bad request", fields)
    assert response.status == 400
    assert response.headers["x-amzn-ErrorType"] == "ValidationException"
    assert json.loads(response.body) == {"message": "bad request", **fields}
    assert op.output_shape is not None
    parsed = create_parser("rest-json").parse(
        {
            "status_code": response.status,
            "headers": lowered(response.headers),
            "body": response.body,
        },
        op.output_shape,
    )
    assert parsed["Error"] == {"Code": "ValidationException", "Message": "bad request"}


def test_a_server_fault_without_a_status_is_a_500(models: dict[str, ServiceModel]) -> None:
    shape = models[CONTROL_PLANE].shape_for("ServiceException")
    assert wire.error_response(shape, "boom", {}).status == 500
