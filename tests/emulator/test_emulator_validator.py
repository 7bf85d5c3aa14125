"""The emulator's validator on botocore's shapes directly: every kind of constraint, with the
path of the member that breaks it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.model import DenormalizedStructureBuilder, ServiceModel, Shape, StructureShape

from agentpersistence.emulator.model import (
    CONTROL_PLANE,
    DATA_PLANE,
    Problem,
    describe,
    load_services,
    unsupported_patterns,
    validate,
)
from agentpersistence.emulator.operations import HANDLERS
from agentpersistence.emulator.server import SERVICES

Json = dict[str, Any]


@pytest.fixture(scope="module")
def models() -> dict[str, ServiceModel]:
    return load_services(SERVICES)


def input_shape(models: dict[str, ServiceModel], service: str, operation: str) -> StructureShape:
    shape = models[service].operation_model(operation).input_shape
    assert shape is not None
    return shape


def create_event(**overrides: Any) -> Json:
    params: Json = {
        "memoryId": "mem_a-AbCdEf1234",
        "actorId": "user-1",
        "sessionId": "session-1",
        "eventTimestamp": 1_700_000_000.25,
        "payload": [{"conversational": {"content": {"text": "hello"}, "role": "USER"}}],
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def constraints_at(problems: list[Problem], path: str) -> list[str]:
    return [p.constraint for p in problems if p.path == path]


def test_a_valid_input_has_no_problems(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    event = create_event(
        metadata={"k": {"stringValue": "v"}},
        branch={"name": "alt", "rootEventId": "1700000000250#abc"},
        payload=[
            {"conversational": {"content": {"text": "hi"}, "role": "ASSISTANT"}},
            {"blob": {"any": ["json", 1, None, True, {"x": 1.5}]}},
            {"json": {"content": {"a": 1}}},
        ],
    )
    assert validate(shape, event) == []


def test_a_missing_required_member_is_named(models: dict[str, ServiceModel]) -> None:
    problems = validate(input_shape(models, DATA_PLANE, "CreateEvent"), create_event(actorId=None))
    assert problems == [Problem("actorId", "Member must not be null")]


def test_a_bad_enum_is_reported_at_its_nested_path(models: dict[str, ServiceModel]) -> None:
    payload = [{"conversational": {"content": {"text": "x"}, "role": "ROBOT"}}]
    problems = validate(
        input_shape(models, DATA_PLANE, "CreateEvent"), create_event(payload=payload)
    )
    (constraint,) = constraints_at(problems, "payload[0].conversational.role")
    assert constraint == "Member must satisfy enum value set: [ASSISTANT, USER, TOOL, OTHER]"


def test_wrong_types_are_reported(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "ListEvents")
    params = {
        "memoryId": "mem_a-AbCdEf1234",
        "actorId": "a",
        "sessionId": "s",
        "maxResults": "ten",
        "includePayloads": 1,
        "filter": ["not", "a", "structure"],
    }
    problems = validate(shape, params)
    assert constraints_at(problems, "maxResults") == ["Member must be of type integer"]
    assert constraints_at(problems, "includePayloads") == ["Member must be of type boolean"]
    assert constraints_at(problems, "filter") == ["Member must be a structure"]


def test_a_boolean_is_not_an_integer(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "ListActors")
    problems = validate(shape, {"memoryId": "mem_a-AbCdEf1234", "maxResults": True})
    assert constraints_at(problems, "maxResults") == ["Member must be of type integer"]


def test_string_lengths_are_checked_both_ways(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    too_long = validate(shape, create_event(sessionId="s" * 101))
    assert constraints_at(too_long, "sessionId") == [
        "Member must have length less than or equal to 100"
    ]
    assert validate(shape, create_event(sessionId="s" * 100)) == []
    too_short = validate(shape, create_event(actorId=""))
    assert "Member must have length greater than or equal to 1" in constraints_at(
        too_short, "actorId"
    )


def test_patterns_must_match_the_whole_value(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    # "user 1" starts with a match of the ActorId pattern; anchored, the space breaks it.
    for bad in ("-user", "user 1", "user!"):
        (constraint,) = constraints_at(validate(shape, create_event(actorId=bad)), "actorId")
        assert constraint.startswith("Member must satisfy regular expression pattern: ")
    assert validate(shape, create_event(actorId="tenant:user/1")) == []


def test_a_union_needs_exactly_one_member(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    two = [{"conversational": {"content": {"text": "x"}, "role": "USER"}, "blob": {"a": 1}}]
    (constraint,) = constraints_at(validate(shape, create_event(payload=two)), "payload[0]")
    assert constraint == "Member must have exactly one member set, found 2: conversational, blob"
    (constraint,) = constraints_at(validate(shape, create_event(payload=[{}])), "payload[0]")
    assert constraint == "Member must have exactly one member set, found 0: none"


def test_numbers_are_checked_against_their_range(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, CONTROL_PLANE, "CreateMemory")
    problems = validate(shape, {"name": "m", "eventExpiryDuration": 2})
    assert constraints_at(problems, "eventExpiryDuration") == [
        "Member must have value greater than or equal to 3"
    ]
    problems = validate(shape, {"name": "m", "eventExpiryDuration": 366})
    assert constraints_at(problems, "eventExpiryDuration") == [
        "Member must have value less than or equal to 365"
    ]
    assert validate(shape, {"name": "m", "eventExpiryDuration": 365}) == []


def test_list_and_map_sizes_and_map_keys_are_checked(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    item = {"conversational": {"content": {"text": "x"}, "role": "USER"}}
    problems = validate(shape, create_event(payload=[item] * 101))
    assert constraints_at(problems, "payload") == [
        "Member must have length less than or equal to 100"
    ]
    metadata = {f"k{i}": {"stringValue": "v"} for i in range(16)}
    problems = validate(shape, create_event(metadata=metadata))
    assert constraints_at(problems, "metadata") == [
        "Member must have length less than or equal to 15"
    ]
    problems = validate(shape, create_event(metadata={"bad|key": {"stringValue": "v"}}))
    assert [p.path for p in problems] == ["metadata[bad|key].<key>"]


def test_documents_take_any_json_and_nothing_else(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    assert validate(shape, create_event(payload=[{"blob": [1, "two", None]}])) == []
    assert validate(shape, create_event(payload=[{"blob": "just a string"}])) == []
    problems = validate(shape, create_event(payload=[{"blob": {"x": object()}}]))
    assert constraints_at(problems, "payload[0].blob") == ["Member must be a JSON document"]
    problems = validate(shape, create_event(payload=[{"blob": {"x": float("nan")}}]))
    assert constraints_at(problems, "payload[0].blob") == ["Member must be a JSON document"]


def test_timestamps_are_epoch_seconds(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    assert validate(shape, create_event(eventTimestamp=1_700_000_000)) == []
    for bad in ("2024-01-01T00:00:00Z", True, float("inf")):
        problems = validate(shape, create_event(eventTimestamp=bad))
        assert constraints_at(problems, "eventTimestamp") == [
            "Member must be a timestamp (epoch seconds)"
        ]


def test_blobs_and_doubles_with_bounds() -> None:
    shape = (
        DenormalizedStructureBuilder()
        .with_members(
            {
                "data": {"type": "blob", "min": 1, "max": 3},
                "ratio": {"type": "double", "min": 0.5, "max": 1.5},
            }
        )
        .build_model()
    )
    assert validate(shape, {"data": b"abc", "ratio": 1}) == []
    problems = validate(shape, {"data": b"abcd", "ratio": 2.0})
    assert constraints_at(problems, "data") == ["Member must have length less than or equal to 3"]
    assert constraints_at(problems, "ratio") == ["Member must have value less than or equal to 1.5"]
    problems = validate(shape, {"data": "YWJj", "ratio": "1"})
    assert constraints_at(problems, "data") == ["Member must be a blob (base64 in JSON)"]
    assert constraints_at(problems, "ratio") == ["Member must be of type double"]


def test_members_outside_the_shape_are_reported(models: dict[str, ServiceModel]) -> None:
    shape = models[DATA_PLANE].operation_model("DeleteEvent").output_shape
    assert shape is not None
    problems = validate(shape, {"eventId": "1#a", "extra": 1})
    assert problems == [Problem("extra", "Member is not defined in DeleteEventOutput")]


def test_every_problem_is_reported_and_described(models: dict[str, ServiceModel]) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    problems = validate(shape, create_event(actorId=None, sessionId="s" * 101, payload=None))
    assert {p.path for p in problems} == {"actorId", "sessionId", "payload"}
    message = describe(problems)
    assert message.startswith("3 validation errors detected: Value at '")
    assert all(str(problem) in message for problem in problems)
    assert describe(problems[:1]).startswith("1 validation error detected: ")


def test_a_value_that_is_not_a_structure_is_named_by_its_shape(
    models: dict[str, ServiceModel],
) -> None:
    shape = input_shape(models, DATA_PLANE, "CreateEvent")
    assert validate(shape, []) == [Problem("CreateEventInput", "Member must be a structure")]


def test_javas_unicode_class_patterns_are_checked(models: dict[str, ServiceModel]) -> None:
    """The control plane's ``[^\\p{C}]*`` (Java) is checked as "no control characters"."""
    shape: Shape = models[CONTROL_PLANE].shape_for("PaymentsDescription")
    assert validate(shape, "a plain description") == []
    assert validate(shape, "a bell\x07") != []


def test_every_pattern_of_both_models_compiles(models: dict[str, ServiceModel]) -> None:
    assert unsupported_patterns(models[DATA_PLANE]) == []
    assert unsupported_patterns(models[CONTROL_PLANE]) == []


def test_the_served_operations_exist_in_the_models(models: dict[str, ServiceModel]) -> None:
    for service, name in HANDLERS:
        assert name in models[service].operation_names
