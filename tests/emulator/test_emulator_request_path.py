"""The request path without sockets (``Emulator.answer``): what happens around the state when
a request or an answer is not what the model allows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.model import ServiceModel

from agentpersistence.emulator import wire
from agentpersistence.emulator.errors import ApiError
from agentpersistence.emulator.model import DATA_PLANE, load_services
from agentpersistence.emulator.operations import Params
from agentpersistence.emulator.server import SERVICES, Emulator
from agentpersistence.emulator.state import Settings, State

MEMORY_ID = "mem_a-AbCdEf1234"
ACTORS = f"/memories/{MEMORY_ID}/actors"
# Signed as botocore signs both AgentCore planes (the signature itself is not checked).
SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/bedrock-agentcore"
    "/aws4_request, SignedHeaders=host, Signature=00"
}


@pytest.fixture(scope="module")
def models() -> dict[str, ServiceModel]:
    return load_services(SERVICES)


def answer_actors(models: dict[str, ServiceModel], answer: Any) -> wire.Response:
    """ListActors served by a handler that answers ``answer`` (or raises it)."""

    def handler(state: State, params: Params) -> dict[str, Any]:
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    emulator = Emulator(State(), models, {(DATA_PLANE, "ListActors"): handler})
    _, response = emulator.answer("POST", ACTORS, {}, SIGNED, b"{}")
    return response


def error_of(response: wire.Response) -> tuple[int, str, dict[str, Any]]:
    return response.status, response.headers["x-amzn-ErrorType"], json.loads(response.body)


def test_an_answer_outside_the_output_shape_is_never_sent(
    models: dict[str, ServiceModel],
) -> None:
    status, code, body = error_of(answer_actors(models, {"actorSummaries": [{"actorId": ""}]}))
    assert (status, code) == (500, "ServiceException")
    assert "an emulator bug" in body["message"]
    assert "Value at 'actorSummaries[0].actorId' failed to satisfy constraint" in body["message"]


def test_an_answer_with_an_unknown_member_is_never_sent(models: dict[str, ServiceModel]) -> None:
    status, _, body = error_of(answer_actors(models, {"actorSummaries": [], "extra": True}))
    assert status == 500
    assert "Value at 'extra'" in body["message"]


def test_a_failing_handler_answers_500(models: dict[str, ServiceModel]) -> None:
    status, code, _ = error_of(answer_actors(models, RuntimeError("boom")))
    assert (status, code) == (500, "ServiceException")


def test_an_unmodelled_error_becomes_a_500(models: dict[str, ServiceModel]) -> None:
    status, code, body = error_of(answer_actors(models, ApiError("NoSuchError", "what")))
    assert (status, code) == (500, "ServiceException")
    assert "NoSuchError" in body["message"]


def test_an_error_outside_its_shape_becomes_a_500(models: dict[str, ServiceModel]) -> None:
    wrong = ApiError("ValidationException", "bad", reason="NotAReason")
    status, _, body = error_of(answer_actors(models, wrong))
    assert status == 500
    assert "reason" in body["message"]


def test_a_modelled_error_is_answered_with_its_status(models: dict[str, ServiceModel]) -> None:
    status, code, body = error_of(answer_actors(models, ApiError("ThrottledException", "slow")))
    assert (status, code, body) == (429, "ThrottledException", {"message": "slow"})


def test_an_unknown_route_is_an_unknown_operation(models: dict[str, ServiceModel]) -> None:
    emulator = Emulator(State(), models)
    name, response = emulator.answer("GET", "/no/such/thing", {}, SIGNED, b"")
    assert name == "-"
    assert error_of(response)[:2] == (404, "UnknownOperationException")


def test_a_body_over_the_limit_is_a_validation_exception(models: dict[str, ServiceModel]) -> None:
    emulator = Emulator(State(), models)
    name, response = emulator.answer("POST", ACTORS, {}, SIGNED, None)
    status, code, body = error_of(response)
    assert (name, status, code) == ("ListActors", 400, "ValidationException")
    assert "larger than 10485760 bytes" in body["message"]


def test_a_body_that_is_not_json_cannot_be_parsed(models: dict[str, ServiceModel]) -> None:
    emulator = Emulator(State(), models)
    _, response = emulator.answer("POST", ACTORS, {}, SIGNED, b"{oops")
    status, code, body = error_of(response)
    assert (status, code, body["reason"]) == (400, "ValidationException", "CannotParse")


def test_an_invalid_request_names_every_problem(models: dict[str, ServiceModel]) -> None:
    emulator = Emulator(State(), models)
    path = f"/memories/{MEMORY_ID}/actor/bad%20actor/sessions/s"
    body = json.dumps({"maxResults": 0, "includePayloads": "yes"}).encode()
    _, response = emulator.answer("POST", path, {}, SIGNED, body)
    status, code, error = error_of(response)
    assert (status, code, error["reason"]) == (400, "ValidationException", "FieldValidationFailed")
    assert error["message"].startswith("3 validation errors detected: ")
    assert {f["name"] for f in error["fieldList"]} == {"actorId", "maxResults", "includePayloads"}


def test_a_memory_activates_after_the_configured_reads(models: dict[str, ServiceModel]) -> None:
    emulator = Emulator(State(Settings(activation_reads=3)), models)
    body = json.dumps({"name": "m", "eventExpiryDuration": 7}).encode()
    _, created = emulator.answer("POST", "/memories/create", {}, SIGNED, body)
    memory_id = json.loads(created.body)["memory"]["id"]
    statuses = []
    for _ in range(4):
        _, got = emulator.answer("GET", f"/memories/{memory_id}/details", {}, SIGNED, b"")
        statuses.append(json.loads(got.body)["memory"]["status"])
    assert statuses == ["CREATING", "CREATING", "CREATING", "ACTIVE"]
